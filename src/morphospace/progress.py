"""Progress lines and timers shared by every stage.

All long loops go through :func:`progress` so that ``--quiet`` silences them in
one place; :class:`Timer` prints an openTSNE-style "===> step ... done in 1.2 s".
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
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
    return _QUIET


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar on stderr unless quiet."""
    return iter(
        tqdm(
            iterable,
            total=total,
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


@contextmanager
def timed(message: str):
    """Functional spelling of :class:`Timer`."""
    with Timer(message) as t:
        yield t
