"""A job of several processes that each run the whole command: those Lightning's own launcher
starts from it (``morphospace train RUN --devices 2``: the command again, as rank 1) and those
``srun`` or ``torchrun`` start. Two things left them running:

- **SIGTERM** (``kill``, a scheduler's time limit): Lightning's handler forwards the signal to the
  processes it started, then broadcasts from inside the handler, a collective that the others,
  elsewhere in their step (or in the barrier with which a trainer starts its stage), never join. A
  two-process training on a CPU sent one ``kill`` was still running ten minutes later, both
  processes waiting. In a trainer of several processes, :class:`StopOnSigterm` takes that handler's
  place from the trainer's setup on, before Lightning installs it: each process raises
  :class:`~morphospace.errors.Terminated` (status 143, one line; the last epoch's checkpoint is on
  disk for ``--resume``), the command's first process having ended the processes Lightning started
  from it (SIGKILL: one waiting inside a collective would not see a softer signal; Lightning's watch
  of them told first, or it SIGKILLed the first process too on seeing them killed). The others of
  a job started from outside learn of the stop from its note in the run (:mod:`morphospace.run.job`)
  or from their closed connection.
- **the first process killed outright** (``kill -9``, the out-of-memory killer): the processes it
  had started waited for it in torch's rendezvous until its timeout, half an hour. They now end
  with it (:func:`morphospace.run.job.follow_launcher`; Linux's parent-death signal).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager, suppress
from typing import Iterator

import lightning.pytorch as pl

from ..errors import Terminated
from .spawn import spawns

__all__ = ["StopOnSigterm", "ctrl_c_raised", "fit_kwargs", "with_job_signals"]


# the lists of processes Lightning's launcher started from this one (its first trainer's; those of
# later trainers are empty), the very lists its watch of them reads
_LAUNCHED: list[list] = []


class StopOnSigterm(pl.Callback):
    """In a trainer of several processes started otherwise than by spawning: SIGTERM ends the
    processes Lightning started from this one, if any, and raises :class:`Terminated`, with no
    collective in the handler.

    Lightning installs its handler when the trainer starts its stage (after ``setup`` and
    ``on_fit_start``), composed of its own notifier and the handler found; at ``setup`` the notifier
    is replaced by this handler for the trainer, and the handler itself at the stage's start (where a
    later Lightning builds its handler otherwise)."""

    def _applies(self, trainer) -> bool:
        main_thread = threading.current_thread() is threading.main_thread()
        return trainer.world_size >= 2 and not spawns(trainer) and main_thread

    def setup(self, trainer, pl_module, stage) -> None:
        if not self._applies(trainer):
            return  # one process: no collective in Lightning's handler; spawned workers end with their parent
        procs = getattr(trainer.strategy.launcher, "procs", None)
        if isinstance(procs, list) and procs and not any(procs is known for known in _LAUNCHED):
            _LAUNCHED.append(procs)
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "_sigterm_notifier_fn"):
            connector._sigterm_notifier_fn = _stop  # its broadcast from inside the handler hung both processes

    def _take_over(self, trainer) -> None:
        if self._applies(trainer):
            signal.signal(signal.SIGTERM, _stop)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._take_over(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._take_over(trainer)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._take_over(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.training:  # within a fit, the train start took over already
            self._take_over(trainer)


def _stop(_signum, _frame) -> None:
    """SIGTERM in a process of a job: the processes Lightning started from this one end (taken out of
    its watch first: it SIGKILLed this process on seeing them killed), then :class:`Terminated`."""
    for procs in _LAUNCHED:
        started = list(procs)
        procs.clear()
        for proc in started:
            with suppress(OSError):
                proc.kill()
    raise Terminated()


def with_job_signals(trainer_kwargs: dict) -> dict:
    """``pl.Trainer`` keyword arguments with :class:`StopOnSigterm` among the callbacks."""
    return dict(trainer_kwargs, callbacks=[*(trainer_kwargs.get("callbacks") or []), StopOnSigterm()])


def fit_kwargs(trainer_kwargs: dict) -> dict:
    """``pl.Trainer`` keyword arguments of a fit: its checkpoints written atomically inside the run
    (:func:`~morphospace.nets.checkpoints.with_atomic_checkpoints`) and SIGTERM without collectives
    (:func:`with_job_signals`)."""
    from .checkpoints import with_atomic_checkpoints

    return with_job_signals(with_atomic_checkpoints(trainer_kwargs))


@contextmanager
def ctrl_c_raised() -> Iterator[None]:
    """Around ``trainer.fit`` or ``trainer.predict``: Ctrl-C raises :class:`KeyboardInterrupt`, as it
    does anywhere else, and Ctrl-C works after it.

    Lightning turns Ctrl-C in a fit into ``sys.exit(1)`` once it has stopped (a notebook's
    ``VaDE.fit`` showed ``SystemExit: 1``; a script ended with status 1 without a word) and ignores
    Ctrl-C from then on; where the Ctrl-C came before its own handlers were installed (while it set
    up the data or restored a checkpoint) it left SIGINT ignored for the rest of the process."""
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        yield
    except SystemExit as exc:
        if type(exc) is SystemExit and isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise
    finally:
        if before is not None and before is not signal.SIG_IGN and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, before)
