"""A run's ``log.txt`` for a stage started from Python (``ms.ingest``), as the command line writes it
(:mod:`morphospace.cli.logs`): the ``morphospace`` logger's lines from INFO up, each with its time and
level, and what stopped the stage. Only for the call: the handler is gone afterwards, and the
logger's level, handlers and propagation are as they were, so a notebook shows what it showed before
(no INFO lines on a console that did not have them; warnings still reach logging's last resort)."""

from __future__ import annotations

import logging
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import first_line

__all__ = ["FORMAT", "RunLogFile", "logged_to_run"]

FORMAT = "%(asctime)s %(levelname)s %(message)s"  # the command line's log.txt lines


class RunLogFile(logging.FileHandler):
    """A run's ``log.txt`` that a full disk cannot turn into tracebacks (logging's own handler printed
    one for every line it could not write, and its close failed the command): the first line it
    cannot write goes to :meth:`cannot_write`, which says so once; its close never fails. A path of
    another encoding (its bytes kept by Python as surrogates) is written escaped (byte ``\\xff`` as ``\\udcff``):
    strict UTF-8 printed '--- Logging error ---' and left its line out of the log."""

    def __init__(self, filename: str | Path, mode: str = "a", encoding: str | None = None, delay: bool = False,
                 errors: str | None = "backslashreplace"):
        super().__init__(filename, mode, encoding, delay, errors)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            return super().handleError(record)
        self.cannot_write(exc)

    def cannot_write(self, exc: OSError) -> None:
        """What the stage does once its log cannot be written (here: nothing more is written)."""
        raise NotImplementedError

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # its last lines could not be flushed: said where they were written
            pass


class _LogFile(RunLogFile):
    """``log.txt`` of a stage started from Python: where it cannot be written, one warning says so
    and the stage goes on without it."""

    def cannot_write(self, exc: OSError) -> None:
        self.broken = True
        warnings.warn(f"cannot write {self.baseFilename} ({exc.strerror or exc}): this run's log is left incomplete",
                      RuntimeWarning, stacklevel=3)

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(self, "broken", False):
            super().emit(record)


class _AsBefore(logging.Handler):
    """Hands a record to where the logger sent it before its level was lowered for the log file:
    its own handlers, then its ancestors' while it propagated, else logging's last resort; only
    records of the level it let through then."""

    def __init__(self, level: int, handlers: list[logging.Handler], propagate: bool, parent: logging.Logger | None):
        super().__init__(level)
        self.handlers, self.propagate, self.parent = handlers, propagate, parent

    def emit(self, record: logging.LogRecord) -> None:
        found = 0
        for h in self.handlers:
            found += 1
            if record.levelno >= h.level:
                h.handle(record)
        logger = self.parent if self.propagate else None
        while logger is not None:  # as Logger.callHandlers
            for h in logger.handlers:
                found += 1
                if record.levelno >= h.level:
                    h.handle(record)
            logger = logger.parent if logger.propagate else None
        if not found and logging.lastResort is not None and record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(record)


def _write(handler: logging.Handler, message: str) -> None:
    handler.handle(logging.makeLogRecord({"name": "morphospace", "levelno": logging.ERROR, "levelname": "ERROR",
                                          "msg": "%s", "args": (message,)}))


@contextmanager
def logged_to_run(path: str | Path, name: str = "morphospace") -> Iterator[None]:
    """Append the ``name`` logger's lines from INFO up to the file ``path`` (a run's ``log.txt``)
    while the block runs, and the error or interruption that ends it; nothing is left attached."""
    logger = logging.getLogger(name)
    level, handlers, propagate = logger.level, logger.handlers[:], logger.propagate
    before = logger.getEffectiveLevel()
    file = _LogFile(path, encoding="utf-8")
    file.setLevel(logging.INFO)
    file.setFormatter(logging.Formatter(FORMAT))
    onward = _AsBefore(before, handlers, propagate, logger.parent)
    logger.handlers = [file, onward]
    logger.propagate = False
    logger.setLevel(min(before, logging.INFO))
    try:
        yield
    except KeyboardInterrupt:
        _write(file, "interrupted")
        raise
    except Exception as exc:
        _write(file, f"error: {first_line(exc)}")
        raise
    finally:
        added = [h for h in logger.handlers if h not in (file, onward) and h not in handlers]
        logger.handlers = handlers + added
        logger.propagate = propagate
        logger.setLevel(level)
        file.close()
