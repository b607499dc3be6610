"""A command run as one task of a distributed job started from outside: a stop is the job's.

The task that stops on an error tells the others through the run (:mod:`morphospace.run.job`);
they stop too, with one line naming it, rather than wait for it until torch's timeout, or fail
on the closed connection with a traceback that hides why.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from ..run.job import JobTask, follow_launcher, forget_launcher, is_launcher, mark_launcher, watching_once_launched
from .logs import _close_run_log, _in_run_log
from .options import printable

_TASK: JobTask | None = None  # this command as a task of a job
_WATCH = ExitStack()
_STOPPING = threading.Lock()  # one stop said per process: the watcher's or the command's own


def watch_peers(run_path: Path, command: str) -> None:
    """From here to :func:`command_ended`, stop when another task of this job stops on an error.

    A process Lightning's launcher started from a command ends with that command's process; the
    command's own process, from which the launcher may start others, takes its task of the job
    once it has."""
    global _TASK
    follow_launcher()
    mark_launcher()
    _TASK = JobTask.of_this_process(run_path, command)
    if _TASK is not None:
        _WATCH.enter_context(_TASK.watching_peers(_stop_with_peer))
    elif is_launcher():
        _WATCH.enter_context(watching_once_launched(run_path, command, _take, _stop_with_peer))


def _take(task: JobTask) -> None:
    global _TASK
    _TASK = task


def _peer_line(note: dict) -> str:
    return (f"another process of this job (rank {note.get('rank', '?')}) stopped: {note.get('message', '')}; "
            f"this one stops too")


def _stop_with_peer(note: dict) -> None:
    """The watcher's: the main thread may be inside torch, waiting for the stopped task."""
    if not _STOPPING.acquire(blocking=False):
        return
    line = _peer_line(note)
    print(f"morphospace: error: {printable(line)}", file=sys.stderr, flush=True)
    _in_run_log(f"error: {line}")
    _close_run_log()
    os._exit(_code(note))


def _code(note: dict) -> int:
    code = note.get("code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def stopping(message: str, code: int) -> None:
    """This task stops on an error: tell the others (once)."""
    if _TASK is not None and _STOPPING.acquire(blocking=False):
        _TASK.tell_peers(message, code)


# what torch raises in a task whose peer has gone (gloo's closed connection; NCCL's and the store's errors)
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "DistBackendError",
              "DistNetworkError", "DistStoreError", "NCCL")


def stopped_by_peer(exc: BaseException, wait_s: float = 10.0) -> tuple[str, int] | None:
    """Where an unexpected error follows another task's stop, that task's reason and status, to
    say in its place; None where the error is this task's own.

    The error a peer's stop causes (its connection closed) can come before its note: the stopped
    task closes its connections while Lightning tears its trainer down, then reaches the command's
    end, which writes the note. So for such an error a task waits ``wait_s`` for one; any other
    error is its own, said at once (and its note the job's)."""
    if _TASK is None:
        return None
    text = f"{type(exc).__name__}: {exc}"
    deadline = time.monotonic() + (wait_s if any(word in text for word in _PEER_GONE) else 0.0)
    while (note := _TASK.peer_stop()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if note is None or not _STOPPING.acquire(blocking=False):
        return None
    return _peer_line(note), _code(note)


def command_ended(succeeded: bool) -> None:
    """Stop watching; the job's first task, done, removes an earlier launch's note."""
    global _TASK
    _WATCH.close()
    forget_launcher()
    if _TASK is not None and succeeded and _TASK.rank == "0":
        _TASK.forget_earlier_stops()
    _TASK = None
    if _STOPPING.locked():
        _STOPPING.release()
