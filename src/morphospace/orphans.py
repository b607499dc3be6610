"""Worker processes that exit when their parent dies.

A pool's workers outlive a parent killed outright (``kill -9``, the out-of-memory killer): they go
on with the work already queued (a synthetic survey kept rendering images into a folder no one would
read) and then wait for more forever. :func:`exit_with_parent` is a pool's ``initializer``: a thread
in each worker checks twice a second that the parent is still there, and ends the worker otherwise.
:func:`die_with` asks the kernel instead, for a process that may sit inside torch where no thread of
ours gets to run: the workers of a spawned training, the processes Lightning's launcher starts.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["die_with", "exit_with_parent"]


def exit_with_parent(parent_pid: int) -> None:
    """Start, in this worker, the watch that ends it once ``parent_pid`` is gone.

    Parameters
    ----------
    parent_pid : int
        The pool's owner (``os.getpid()`` where the pool is made). Watched by pid as well as by
        this process's parent: a worker of a forkserver or a spawned pool has a go-between as its
        parent.
    """
    start_ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != start_ppid or not _alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but another user's: a pid reused would be, too; rare enough
        return True
    return True


def die_with(parent_pid: int) -> None:
    """End this process (SIGKILL) when its parent, ``parent_pid``, ends: Linux's parent-death signal.
    A process whose parent is already gone ends at once. Elsewhere than Linux, nothing.

    Parameters
    ----------
    parent_pid : int
        The process that started this one.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl here: as before
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)
