"""The tasks of a distributed job started from outside (``srun``, ``torchrun``) stop together.

Each task of such a job runs the whole command. One that stops on an error exits, and the others
waited for it in the collective they were in (the process group's rendezvous, a barrier) until
torch's timeout, half an hour, holding their GPUs: where a peer's exit closes the connection
(gloo, once the group is up) they stopped at once, but with a traceback that hid the reason.

A task that stops on an error leaves a note in the run (``.job_stopped.<job>.json``: its rank, its
one-line message, its exit status); every other task of the job watches for it
(:meth:`JobTask.watching_peers`) and stops too, with one line naming the task and its reason. A note
belongs to the job that wrote it (the launcher's ids, :func:`job_key`) and to this launch of it
(written by a task that started when this one did, give or take a margin for tasks started a
little apart): an earlier job's note is not read as this one's, nor that of an earlier launch with
the same ids that ran a while and stopped just before this one was started.

This is the fallback. A launcher that ends every task when one fails does it first and also
when a task is killed outright (``srun --kill-on-bad-exit=1``, ``torchrun``).

Lightning's own launcher (``morphospace train RUN --devices 2``) starts the command again as the
job's other processes from inside the first fit, and sets the job's size and address only then:
the command's first process (:func:`mark_launcher`) takes its task of the job once they are set
(:func:`watching_once_launched`), and the processes it started end with it (:func:`follow_launcher`):
killed outright, it left them waiting for it in torch's rendezvous for half an hour.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..orphans import die_with
from .lock import job_size, launch_rank

__all__ = ["NOTE_PREFIX", "JobTask", "follow_launcher", "forget_launcher", "is_launcher", "job_key", "mark_launcher",
           "watching_once_launched"]

NOTE_PREFIX = ".job_stopped."  # + a digest of the job's key + ".json"
_STARTED = time.time()
_TOKEN = uuid.uuid4().hex  # this process, in a note: pids repeat across nodes and containers
# how much earlier than this process another task of its launch may have started and failed
_START_SPREAD_S = 15.0
# The launcher's ids of a job: SLURM's job, step and requeue count (a new step for each srun); torchrun's
# run and restart; the rendezvous address that every task of one launch is given
_KEY_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID",
                  "TORCHELASTIC_RESTART_COUNT")
_ADDRESS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")
LAUNCHER_ENV = "MORPHOSPACE_LAUNCHER_PID"  # a command's first process, for those Lightning starts from it


def job_key(command: str = "") -> str:
    """The launch of a job this process is a task of, as its launcher names it, and its ``command``.

    SLURM's ids when there are some (Lightning sets ``MASTER_PORT`` inside a SLURM task later,
    so the address is left out of a SLURM job's key); otherwise torchrun's and the rendezvous
    address (Lightning's own launcher, a job started by hand). A single-node torchrun names every
    launch alike (run id "none", port 29500): its agent, the tasks' parent, tells launches apart.
    """
    names = _KEY_VARIABLES if os.environ.get("SLURM_JOB_ID") else _KEY_VARIABLES + _ADDRESS_VARIABLES
    parts = [f"{name}={os.environ.get(name, '')}" for name in names]
    if os.environ.get("TORCHELASTIC_RUN_ID", "none") == "none" and os.environ.get("LOCAL_WORLD_SIZE") \
            and os.environ.get("LOCAL_WORLD_SIZE") == os.environ.get("WORLD_SIZE"):
        parts.append(f"agent={os.getppid()}")
    return "|".join(parts + [f"command={command}"])


def _without_address(key: str) -> str:
    """A job's key without its rendezvous address: the same for every launch of one command."""
    return "|".join(part for part in key.split("|") if part.partition("=")[0] not in _ADDRESS_VARIABLES)


@dataclass(frozen=True)
class JobTask:
    """This process as one task of a distributed job, and the run the job writes.

    Taken when the command starts (:meth:`of_this_process`): Lightning removes ``WORLD_SIZE``
    from the environment when its trainer is torn down, before an error reaches the command.
    """

    run_path: Path
    key: str
    rank: str

    @property
    def note_path(self) -> Path:
        """This job's note: one file per job, so that a job refused the run (another job holds it)
        leaves its note beside that job's, not over it."""
        import hashlib

        digest = hashlib.blake2b(self.key.encode("utf-8"), digest_size=6).hexdigest()
        return self.run_path / f"{NOTE_PREFIX}{digest}.json"

    @classmethod
    def of_this_process(cls, run_path: str | Path, command: str = "") -> "JobTask | None":
        """None for a lone process."""
        return cls(Path(run_path), job_key(command), launch_rank()) if job_size() >= 2 else None

    def tell_peers(self, message: str, code: int) -> None:
        """Leave this task's stop in the run for the others, unless one of them has left its own
        first: the first stop is the job's reason (the others then stop on it, or are ended by the
        launcher, and say so). Best effort: a run that cannot be written to leaves them to their
        launcher."""
        path = self.note_path
        note = {"job": self.key, "rank": self.rank, "task": _TOKEN, "time": time.time(), "started": _STARTED,
                "message": message, "code": int(code)}
        tmp = path.with_name(f"{path.name}.{_TOKEN}.partial")
        try:
            tmp.write_text(json.dumps(note))  # whole before it is seen under its name
            try:
                os.link(tmp, path)  # only where there is none: never over a note of this launch
            except FileExistsError:
                if self._note(path, own=True) is None:  # an earlier launch's: replaced
                    os.replace(tmp, path)
        except OSError:
            pass
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a read-only run: best effort, as the rest (it ended a one-line error in a traceback)
                pass

    def peer_stop(self) -> dict | None:
        """The note of another task of this launch of the job that stopped on an error, or None."""
        return self._note(self.note_path)

    def _note(self, path: Path, own: bool = False) -> dict | None:
        """The note at ``path`` where it is of this launch (``own``: this task's too), or None."""
        try:
            note = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(note, dict) or note.get("job") != self.key or (note.get("task") == _TOKEN and not own):
            return None
        # this launch's: written after this task started (an earlier launch's was written before it),
        # or, written before, by a task that started with this one, give or take the spread (a peer
        # that failed at once); a launch of the same ids that ran a while and stopped just before this
        # one was relaunched is neither
        written, started = note.get("time"), note.get("started", note.get("time"))
        if not all(isinstance(t, (int, float)) for t in (written, started)):
            return None
        if written < _STARTED and started < _STARTED - _START_SPREAD_S:
            return None  # an earlier launch's
        return note

    def forget_earlier_stops(self, older_than_s: float = 86400.0) -> None:
        """Remove the notes of earlier launches of this job (the same ids and command at any rendezvous
        address: Lightning's own launcher picks a port afresh each time, and its stopped launches'
        notes piled up in the run), and other jobs' notes older than a day (the job's first task,
        done without error)."""
        mine = _without_address(self.key)
        for path in self.run_path.glob(f"{NOTE_PREFIX}*.json"):
            try:
                if path == self.note_path:
                    stale = self.peer_stop() is None
                else:
                    stale = time.time() - path.stat().st_mtime > older_than_s or \
                        _without_address(str(json.loads(path.read_text()).get("job", ""))) == mine
                if stale:
                    path.unlink()
            except (OSError, ValueError, AttributeError):
                pass

    def watching_peers(self, stop: Callable[[dict], None], every_s: float = 1.0):
        """A context manager: while in its block, call ``stop(note)`` (from a thread of its own) once
        another task of this job has left a stop note in the run. ``stop`` must end the process: the
        main thread may be waiting for the stopped task inside torch, where no Python exception
        reaches it."""
        return _watching(self.peer_stop, stop, every_s, "morphospace-peers")


@contextmanager
def _watching(stop_note: Callable[[], dict | None], stop: Callable[[dict], None], every_s: float,
              name: str) -> Iterator[None]:
    """While in the block, a thread calls ``stop(note)`` once ``stop_note()`` gives a note."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every_s):
            note = stop_note()
            if note is not None:
                stop(note)
                return

    thread = threading.Thread(target=watch, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5.0)  # not stopping this process once its command is over


def mark_launcher() -> None:
    """In a command's process that is no task of a job: name it the launcher of the processes
    Lightning may start from it (they inherit its environment), until :func:`forget_launcher`."""
    if job_size() < 2:
        os.environ[LAUNCHER_ENV] = str(os.getpid())


def forget_launcher() -> None:
    """At the command's end: a process started later from this one (a notebook's ``srun``) is none
    of its job's."""
    if is_launcher():
        del os.environ[LAUNCHER_ENV]


def is_launcher() -> bool:
    """Whether this process is a command's first, from which Lightning's launcher may start others."""
    return os.environ.get(LAUNCHER_ENV) == str(os.getpid())


def follow_launcher() -> None:
    """In a process Lightning's launcher started from a command (the command's process named in the
    environment, a local rank past the first): end when that command's process ends, at once where it
    already has. Nothing in any other process (a lone command; a task of srun or torchrun, whose
    launcher ends its tasks itself)."""
    launcher = os.environ.get(LAUNCHER_ENV, "")
    if launcher.isdigit() and int(launcher) != os.getpid() and job_size() >= 2 \
            and os.environ.get("LOCAL_RANK", "0").strip() not in ("", "0"):
        die_with(int(launcher))


def watching_once_launched(run_path: str | Path, command: str, taken: Callable[[JobTask], None],
                           stop: Callable[[dict], None], every_s: float = 1.0):
    """In a command's first process, a context manager: while in its block, once Lightning's launcher
    has made it the first of several (the job's size set), take its task of the job (``taken(task)``)
    and call ``stop(note)`` once another process of the job has left a stop note, as
    :meth:`JobTask.watching_peers` does."""
    task: list[JobTask] = []

    def stop_note() -> dict | None:
        if not task:
            if (mine := JobTask.of_this_process(run_path, command)) is None:
                return None
            task.append(mine)
            taken(mine)
        return task[0].peer_stop()

    return _watching(stop_note, stop, every_s, "morphospace-launched")
