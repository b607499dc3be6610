"""Progress lines and timers shared by every stage.

All long loops go through :func:`progress` so that ``--quiet`` silences them in
one place; :class:`Timer` prints an openTSNE-style "===> step ... done in 1.2 s";
:class:`quiet_lightning` keeps Lightning's own chatter off the console while a model fits.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("morphospace")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) progress bars and timer lines process-wide."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress bars and timer lines are silenced (:func:`set_quiet`)."""
    return _QUIET


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar on stderr unless quiet (``initial``: steps done before it, of ``total``)."""
    return iter(
        tqdm(
            iterable,
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            disable=_QUIET,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
    )


class Timer:
    """Context manager that logs how long a named step took.

    Examples
    --------
    >>> with Timer("fitting PCA"):
    ...     pass
    """

    def __init__(self, message: str):
        self.message = message
        self.elapsed = 0.0

    def __enter__(self) -> "Timer":
        self._start = time.perf_counter()
        # the start line goes to the run's log only (extra "banner"): on the console a failing step
        # would otherwise print it above its one-line error; the "done" line and the bars show progress
        log.info("===> %s ...", self.message, extra={"banner": True})
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self._start
        if exc[0] is None:
            log.info("     %s done in %.2f s", self.message, self.elapsed)


def with_bars(trainer_kwargs: dict) -> dict:
    """``pl.Trainer`` keyword arguments with its progress bar on stderr, or none under ``--quiet``
    or where they say ``enable_progress_bar=False``.

    Lightning's own bar writes to stdout, where a command's data goes (``morphospace similar ...
    > hits.csv``); this is the same bar, opened with stderr as its stream. Apply it to the final
    keyword arguments, the caller's ``trainer_kwargs`` included.
    """
    show = bool(trainer_kwargs.get("enable_progress_bar", True)) and not is_quiet()
    out = dict(trainer_kwargs, enable_progress_bar=show)
    if show:
        out["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), _stderr_bar_class()()]
    return out


_STDERR_BAR = None


def _stderr_bar_class():
    """Lightning's TQDM bar with each of its bars opened while stdout points at stderr, the
    training bar naming the epoch out of how many (``Epoch 38/60``, counted from 1).

    Built on first use: importing Lightning costs a second that commands without training
    should not pay.
    """
    global _STDERR_BAR
    if _STDERR_BAR is None:
        from contextlib import redirect_stdout

        from lightning.pytorch.callbacks import TQDMProgressBar
        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

        def on_stderr(name):
            def init(self):
                with redirect_stdout(sys.stderr):  # Lightning reads sys.stdout when it opens a bar
                    return getattr(TQDMProgressBar, name)(self)
            return init

        def epoch_of(trainer) -> str:
            # "Epoch 38/60", counted from 1 (Lightning's own read "Epoch 37", no total)
            total = trainer.max_epochs
            return f"Epoch {trainer.current_epoch + 1}" + (f"/{total}" if total is not None and total > 0 else "")

        def init_train_tqdm(self):
            # Lightning's own bar, opened with the epoch and its number of batches (Lightning's first
            # read "Training: 0/?" until the epoch began)
            return Tqdm(desc=self.train_description, total=convert_inf(self.total_train_batches),
                        position=2 * self.process_position, disable=self.is_disabled, leave=True,
                        dynamic_ncols=True, file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT)

        def on_train_epoch_start(self, trainer, *_):
            # as Lightning's, with the epoch named before the bar is drawn again
            if getattr(self, "_leave", False):  # Lightning >= 2.4 has the option
                self.train_progress_bar = self.init_train_tqdm()
            bar = self.train_progress_bar
            bar.set_description(epoch_of(trainer), refresh=False)
            bar.initial = 0
            bar.reset(total=convert_inf(self.total_train_batches))

        names = ("init_sanity_tqdm", "init_validation_tqdm", "init_predict_tqdm", "init_test_tqdm")
        methods = {n: on_stderr(n) for n in names}
        methods.update(init_train_tqdm=init_train_tqdm, on_train_epoch_start=on_train_epoch_start,
                       train_description=property(lambda self: epoch_of(self.trainer)))
        _STDERR_BAR = type("StderrProgressBar", (TQDMProgressBar,), methods)
        _STDERR_BAR.__module__ = __name__  # pickled by name (a spawned process's trainer): see __getattr__
    return _STDERR_BAR


def __getattr__(name: str):
    """``morphospace.progress.StderrProgressBar``, built on first use: a spawning strategy
    (``ddp_spawn``) pickles the trainer's callbacks by their class's name."""
    if name == "StderrProgressBar":
        return _stderr_bar_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class quiet_lightning:
    """Lightning's info lines (tips, device summaries) down to warnings while fitting.

    The processes a spawning strategy starts meanwhile (``ddp_spawn``) are quiet for their whole
    life: they find :data:`SPAWNED_QUIET` in their environment when they import this module.
    """

    NAMES = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.callbacks.model_checkpoint", "lightning.pytorch.accelerators.cuda",
             "lightning.fabric.utilities.seed", "lightning.pytorch.utilities.seed",
             "lightning.fabric.utilities.distributed", "lightning.fabric.utilities.rank_zero")

    WARNINGS = (r"Checkpoint directory .* exists and is not empty",  # hparams.json and logs live there
                r".*isinstance\(treespec, LeafSpec\).*",  # inside Lightning, not ours
                r".*litlogger.*",
                # the VaDE sums its epoch terms across processes itself, then logs them from rank 0
                r"It is recommended to use `self.log\('[^']*', \.\.\., sync_dist=True\)`")

    def __enter__(self):
        self.levels = {n: logging.getLogger(n).level for n in self.NAMES}
        for n in self.NAMES:
            logging.getLogger(n).setLevel(logging.WARNING)
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        for message in self.WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        self.env = os.environ.get(SPAWNED_QUIET)
        os.environ[SPAWNED_QUIET] = "1"

    def __exit__(self, *exc):
        if self.env is None:
            os.environ.pop(SPAWNED_QUIET, None)
        else:
            os.environ[SPAWNED_QUIET] = self.env
        self.catch.__exit__(*exc)
        for n, level in self.levels.items():
            logging.getLogger(n).setLevel(level)


# Set while a quiet_lightning block runs; a process spawned meanwhile inherits it
SPAWNED_QUIET = "MORPHOSPACE_QUIET_LIGHTNING"

if os.environ.get(SPAWNED_QUIET) == "1":
    import lightning.pytorch  # noqa: F401  (its import sets its loggers' levels; ours must come after)

    quiet_lightning().__enter__()  # left entered: for the life of this spawned worker
