"""Errors that reach the user as one clear line.

Anything the user can fix (a missing folder, an unknown config key, a file in a
format we do not read) raises :class:`UserError`; the command line prints its
message on one line and exits with status 2. Everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit status 2."""

    exit_code = 2


class RunInUse(UserError):
    """Another process writes the run: said on the console alone, never in that run's log."""


class InvalidArgument(UserError, ValueError):
    """A wrong argument to an estimator: a ``ValueError``, as scikit-learn's conventions want,
    that the command line still prints as one line. (Not every :class:`UserError` is a
    ``ValueError``: pydantic would wrap one raised in a config validator into a longer message.)
    """


class Terminated(SystemExit):
    """SIGTERM (``timeout``, ``kill``, a scheduler's time limit) raised as an exception where a command
    must clean up first (:func:`sigterm_raises`); the command line exits with status 143."""

    def __init__(self) -> None:
        super().__init__(143)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated`, so that its ``except`` and ``finally``
    clauses run as on Ctrl-C (left alone, it ended the process where it stood). Only where SIGTERM
    has the default handler, in the main thread: a handler of the user's or a framework's is kept."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(_signum, _frame):
        _quiet_broken_pools()
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _quiet_broken_pools() -> None:
    """After SIGTERM: a process pool whose workers the same signal ended (sent to the whole group by
    `timeout` or a scheduler) breaks while it shuts down, and Python 3.11's pool thread then fails on
    the futures already cancelled (InvalidStateError), a traceback beside the command's one line.
    That thread's failure is not shown; any other thread's still is."""
    import threading

    shown = threading.excepthook
    if getattr(shown, "quiet_broken_pools", False):
        return

    def hook(args) -> None:
        pool_thread = type(args.thread).__name__ == "_ExecutorManagerThread"
        if not (pool_thread and type(args.exc_value).__name__ == "InvalidStateError"):
            shown(args)

    hook.quiet_broken_pools = True
    threading.excepthook = hook


class MissingFile(UserError):
    """A file a run should hold is not there (an earlier stage not run yet)."""


@contextmanager
def python_errors() -> Iterator[None]:
    """Around the notebook API's reads: a :class:`UserError` becomes the standard exception a
    Python user catches, with the same one-line message: a missing file a ``FileNotFoundError``,
    anything else a ``ValueError`` (those that are one already pass unchanged)."""
    try:
        yield
    except MissingFile as exc:
        raise FileNotFoundError(str(exc)) from None
    except UserError as exc:
        if isinstance(exc, ValueError):
            raise
        raise ValueError(str(exc)) from None


class NotAvailableError(UserError):
    """A stage or backend that is not installed or not built yet."""


def missing_package(exc: ImportError) -> NotAvailableError | None:
    """The one-line error for a dependency that is not installed (e.g. astropy, imported lazily);
    None when the missing module is morphospace's own or has no name (a bug: keep its traceback)."""
    package = (exc.name or "").split(".")[0]
    if not package or package == "morphospace":
        return None
    return NotAvailableError(f"the Python package '{package}' is not installed ({first_line(exc)}): "
                             "install morphospace's dependencies")
