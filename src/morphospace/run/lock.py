"""One writer per run: an exclusive ``flock`` on ``RUN/.lock``, held until the process ends.

A second process that tries to write the same run gets a one-line :class:`UserError` instead
of interleaving its files with the first one's. The processes of one distributed job (a
``train`` or ``embed`` under ``srun``, ``torchrun`` or Lightning's own launcher) are one writer:
the first takes the lock, the others share it.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import RunInUse, UserError

log = logging.getLogger("morphospace")

__all__ = ["LOCK_FILE", "built_by_one", "folder_turns", "hold_lock", "writer_of", "job_size", "launch_rank", "launched_as_later_rank",
           "release_locks"]

LOCK_FILE = ".lock"
_HELD_LOCKS: dict[Path, Any] = {}  # run path -> open lock file, held by this process
# What a distributed launcher tells the processes it starts: Lightning's own children (LOCAL_RANK,
# NODE_RANK), torchrun (RANK) and srun (SLURM_PROCID). Any of them positive: not the job's first process.
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
# ... and how many processes the job has (Lightning's launcher and torchrun: WORLD_SIZE; srun: SLURM_NTASKS;
# MPI launchers): a rank variable alone (left in a shell, an interactive allocation) makes no job
_SIZE_VARIABLES = ("WORLD_SIZE", "SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launched_as_later_rank() -> bool:
    """Whether a distributed launcher started this process as any rank but the job's first.

    Returns
    -------
    bool
        True when :func:`launch_rank` is not the first's (``RANK``, else ``SLURM_PROCID``, else
        ``LOCAL_RANK`` / ``NODE_RANK`` positive) in a job of more than one process (``WORLD_SIZE``,
        ``SLURM_NTASKS``, ...): a stray ``SLURM_PROCID=1`` in a lone process skipped the run's lock
        and half its work.
    """
    return job_size() >= 2 and launch_rank() != "0"


def launch_rank() -> str:
    """This process's rank as its launcher numbers it, as text: ``"0"`` for the job's first process
    (and a lone one): torchrun's ``RANK`` where it is set (inside srun too, where it need not be
    ``SLURM_PROCID``), else srun's ``SLURM_PROCID`` where positive, else the local rank Lightning's
    own launcher gives its children, with the node's (``"1 of node 2"``) past the first node. A
    child of Lightning's launcher in a batch script keeps the script's ``SLURM_PROCID=0``: it is
    its ``LOCAL_RANK`` that tells it from the first.

    Returns
    -------
    str
        ``"0"`` for the job's first process.
    """
    ranks = {n: int(v) for n in _RANK_VARIABLES if (v := os.environ.get(n, "").strip()).isdigit()}
    if "RANK" in ranks:  # torchrun's, the group's own: inside srun, its c10d rendezvous numbers by arrival
        return str(ranks["RANK"])
    if ranks.get("SLURM_PROCID", 0) > 0:
        return str(ranks["SLURM_PROCID"])
    local, node = ranks.get("LOCAL_RANK", 0), ranks.get("NODE_RANK", 0)
    return f"{local} of node {node}" if node else str(local)


def _open_lock_file(path: Path):
    """The lock file opened for reading and appending, never through a link: a ``.lock`` that is a
    link to a file elsewhere had that file truncated and overwritten with the holder's pid."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        if path.is_symlink():
            raise UserError(f"{path} is a link, not a lock file: remove it") from None
        raise exc
    return os.fdopen(fd, "a+")


def job_size() -> int:
    """How many processes the distributed job this process belongs to has, as its launcher says
    (``WORLD_SIZE``, ``SLURM_NTASKS``, ...); 1 for a lone process."""
    sizes = [os.environ.get(name, "").strip() for name in _SIZE_VARIABLES]
    return max([int(v) for v in sizes if v.isdigit()] + [1])


def release_locks() -> None:
    """Release every run lock this process holds (the command line does so when a command ends)."""
    while _HELD_LOCKS:
        _, fh = _HELD_LOCKS.popitem()
        fh.close()


def hold_lock(run_path: Path, distributed: bool = False) -> bool:
    """Hold ``run_path/.lock`` (an exclusive ``flock``) until this process ends; whether this call took it.

    Released by :func:`release_locks`, or by the operating system when the holder exits, killed
    or not, so a stale lock never blocks.

    Parameters
    ----------
    run_path : Path
        The run directory.
    distributed : bool
        The command may run as several processes of one job: only its first process takes the
        lock, the others (:func:`launched_as_later_rank`) go on without it.

    Returns
    -------
    bool
        True where this call took the lock; False where this process held it already, a later
        process of a job goes on without it, or the file system has no locks.

    Raises
    ------
    UserError
        When another process holds it.
    """
    key = Path(run_path).resolve()
    if key in _HELD_LOCKS or (distributed and launched_as_later_rank()):
        return False
    fh = _open_lock_file(Path(run_path) / LOCK_FILE)
    try:
        _lock_now(fh)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            # a file system without locks (ENOLCK: some NFS and Lustre mounts) was "in use by" its last
            # holder for ever: the command goes on, one writer no longer enforced, and says so
            log.warning("cannot lock %s (%s): one writer at a time is not enforced on this file system",
                        Path(run_path) / LOCK_FILE, exc.strerror or exc)
            fh.close()
            return False
        else:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunInUse(f"run {run_path} is in use by {holder}: wait for it to finish "
                           f"(one morphospace process writes a run at a time)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"morphospace process {os.getpid()}")
    fh.flush()
    _HELD_LOCKS[key] = fh
    return True


def _lock_now(fh) -> None:
    """An exclusive ``flock`` on ``fh`` without waiting for a writer; a reader's look
    (:func:`writer_of`, a shared lock for an instant) is waited out: tried again twice, 50 ms apart."""
    import fcntl
    import time

    for wait in (0.05, 0.05, None):
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if wait is None or exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            time.sleep(wait)


def writer_of(run_path: Path) -> str | None:
    """Who holds ``run_path``'s lock (a command writing the run), or None: a reader's look, a shared
    lock taken and released at once (a writer starting in that instant tries again, :func:`_lock_now`);
    a lock file that is missing, unreadable or not lockable counts as none."""
    import fcntl

    try:
        fd = os.open(Path(run_path) / LOCK_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "r") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return fh.read().strip() or "another process"
        return None  # closing the file releases the shared lock


@contextmanager
def built_by_one(lock_path: str | Path) -> Iterator[None]:
    """Around "build this file unless it is up to date": the processes of one job take turns.

    The processes of a job started together (``srun``, ``torchrun``) all need, say, the masked
    cube; inside this block (an exclusive ``flock`` on ``lock_path``, waited for) the first to
    come builds it and the others find it built, instead of every process building its own copy.
    The operating system releases the lock of a process that dies. Where the file system has no
    ``flock`` (some cluster file systems), the block runs unlocked.
    """
    import fcntl

    try:
        fh = _open_lock_file(Path(lock_path))
    except PermissionError:  # another user's lock file in a shared folder: unlocked, as without flock
        log.warning("cannot open %s to take turns (permission denied): going on without it", lock_path)
        yield
        return
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:  # no flock here: each process checks and builds for itself, as before
            pass
        yield
    finally:
        fh.close()  # releases the lock


@contextmanager
def folder_turns(folder: str | Path) -> Iterator[None]:
    """Around writing a set of files into ``folder``: the processes that write there take turns,
    on a hidden lock file in it (:func:`built_by_one`; a lock on the folder itself is no lock on
    NFS, where an exclusive lock needs a file open for writing)."""
    with built_by_one(Path(folder) / ".morphospace.lock"):
        yield
