"""The command line's logging: the console (warnings alone under ``--quiet``) and the run's
``log.txt``, which a full disk cannot turn into tracebacks; library warnings kept off the console
under ``--quiet``; what ended a command written to the run's log too."""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

from ..run import RunDir
from ..run.runlog import FORMAT, RunLogFile
from .options import printable


class _RunLog(RunLogFile):
    """The run's ``log.txt``; where it cannot be written (a full disk), one line says so and the
    command goes on logging to the console alone."""

    def cannot_write(self, exc: OSError) -> None:
        logging.getLogger("morphospace").removeHandler(self)
        self.close()
        print(f"morphospace: warning: cannot write {printable(str(self.baseFilename))} "
              f"({printable(exc.strerror or str(exc))}): logging to the console alone", file=sys.stderr)


def _setup_logging(quiet: bool, run: RunDir | None, later_rank: bool = False, reads_only: bool = False) -> None:
    """Log to stderr and to the run's log.txt; a distributed job's later processes (``later_rank``)
    only warn on stderr, so the run's log is its first process's, each line once. A command that
    ``reads_only`` logs to stderr alone where the run's log cannot be written."""
    root = logging.getLogger("morphospace")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet or later_rank else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(lambda record: not getattr(record, "banner", False))
    root.addHandler(console)
    if run is not None and not later_rank:
        try:
            fh = _RunLog(run.log)
        except OSError:
            if not reads_only:
                raise
        else:
            fh.setFormatter(logging.Formatter(FORMAT))
            root.addHandler(fh)
    root.propagate = False


def _warnings_captured() -> bool:
    """Whether :func:`logging.captureWarnings` is on (logging keeps the ``showwarning`` it replaced)."""
    return getattr(logging, "_warnings_showwarning", None) is not None


@contextmanager
def _logging_as_found() -> Iterator[None]:
    """The ``morphospace`` and ``py.warnings`` loggers (handlers, level, propagation) and the capture of
    Python's warnings as they were when the block began, whichever way it ends. Within it a command
    logs as it does in its own process (:func:`_setup_logging` takes the caller's handlers off, adds
    its console and the run's log, stops propagation); called from Python (a notebook, a test) it
    left its console on, bound to the stderr of that moment and propagating nothing: the caller's
    own logging never saw morphospace's lines again, and INFO lines went on reaching that stderr."""
    loggers = [logging.getLogger(name) for name in ("morphospace", "py.warnings")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    captured = _warnings_captured()
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            for h in lg.handlers[:]:
                if h not in handlers:  # the command's own (its console; its run's log, closed already)
                    lg.removeHandler(h)
                    h.close()
            lg.handlers[:] = handlers  # the caller's, in their order (the setup took them off, unclosed)
            lg.propagate = propagate
            lg.setLevel(level)
        if _warnings_captured() != captured:
            logging.captureWarnings(captured)


def _close_run_log() -> None:
    """The run's log.txt closed when a command returns: a later command of the same process (a
    notebook, a test) writes its own run's log, never this one's."""
    root = logging.getLogger("morphospace")
    for h in list(root.handlers):
        if isinstance(h, _RunLog):  # the command's own: a caller's file handler stays open
            root.removeHandler(h)
            h.close()


def _in_run_log(message: str) -> None:
    """What ended a command, in the run's log.txt too (the console has had it): the log says why
    a stage stopped, not only how far it got."""
    record = logging.makeLogRecord({"name": "morphospace", "levelno": logging.ERROR, "levelname": "ERROR",
                                    "msg": "%s", "args": (printable(message),)})
    try:
        _ToRunLog().handle(record)
    except Exception:  # noqa: BLE001 - the log itself unwritable: the console has said it
        pass


class _ToRunLog(logging.Handler):
    """Hands a record to the run's log the command has opened on the ``morphospace`` logger, if any (a
    caller's own file handlers are not the run's)."""

    def emit(self, record: logging.LogRecord) -> None:
        for h in logging.getLogger("morphospace").handlers:
            if isinstance(h, _RunLog):
                h.handle(record)


class _quiet_warnings:
    """Under --quiet, Python warnings from libraries (e.g. Pillow's DecompressionBombWarning) stay
    off stderr; they are still written to the run's log."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        import warnings

        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        self.saved = None
        self.captured = _warnings_captured()  # a caller's capture (a notebook's) stays on after the command
        if self.quiet:
            logging.captureWarnings(True)  # to the `py.warnings` logger, which writes the run's log only
            pw = logging.getLogger("py.warnings")
            self.saved = (pw.handlers[:], pw.propagate)
            pw.handlers = [_ToRunLog()]  # the run's log is opened later, once the command knows its run
            pw.propagate = False
        return self

    def __exit__(self, *exc):
        if not self.captured:
            logging.captureWarnings(False)
        if self.saved is not None:
            pw = logging.getLogger("py.warnings")
            pw.handlers, pw.propagate = self.saved
        self.catch.__exit__(*exc)


def _on_stderr(line: str) -> None:
    """``line`` on stderr, where a reader gone away (a `| tee` a scheduler killed too) is no second error:
    it stopped the line in the run's log that follows it."""
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):  # a closed pipe or stream
        pass


def _reader_gone() -> int:
    """A command whose reader went away (`| head`, a `| tee` a scheduler killed): said in the run's log
    (it ended there without a word), stdout sent to /dev/null (no second error when Python flushes);
    the status a shell gives a tool that SIGPIPE ended."""
    _in_run_log("stopped: the reader of its output went away (a closed pipe)")
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 128 + int(getattr(signal, "SIGPIPE", 13))
