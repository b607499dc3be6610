"""What a trainer whose strategy spawns its processes needs around ``fit`` and ``predict``.

Under ``ddp_spawn`` (what ``morphospace run`` and the notebook estimator use for several devices)
and ``ddp_notebook`` Lightning starts the workers itself, and two things go wrong unless we step in:

- the first worker saves the trained weights to a checkpoint in a new folder under the system's
  temporary folder; the calling process loads the file, deletes it and leaves the empty folder
  behind, one per training. A run writes nothing outside its own folder, so the checkpoint is
  pointed into the run and what is left of it removed;
- a spawned worker leaves the process group to the interpreter's exit, and on CPU processes
  (gloo) the group's threads are then now and then destroyed while still joinable: the worker
  aborts ("terminate called without an active exception") after its work is done, failing the
  command (3 runs in 40 of a two-process fit of a toy model). Each worker waits for the others
  and leaves the group itself once the trainer is done with it.

A spawned worker also ends with the process that spawned it (a parent killed with SIGKILL frees
the run's lock, and its workers must not go on writing into the run), and a worker killed
mid-fit is one line on the command line, not torch's traceback.

Processes started from outside (``srun``, ``torchrun``) stay in their group for the whole command;
they abort at exit the same way (6 runs in 30 of the same fit), so the command line leaves the
group before it returns (:func:`leave_process_group`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lightning.pytorch as pl
from torch.multiprocessing.spawn import ProcessExitedException

from ..errors import UserError, first_line
from ..orphans import die_with

__all__ = ["LeaveProcessGroup", "die_with_parent", "leave_process_group", "spawned_workers", "spawns"]


def leave_process_group(wait: bool = True) -> None:
    """Leave the process group this process belongs to, if any: after every member has come
    here too (``wait``), then destroy it, so that the interpreter's exit does not.

    ``wait=False`` when this process stops on an error, which the others may not share: it
    leaves at once. A peer gone meanwhile is no reason to fail what has already been done.
    """
    dist = sys.modules.get("torch.distributed")  # none imported: no group to leave
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    try:
        if wait and dist.get_world_size() > 1:
            dist.barrier()
    except Exception:  # noqa: BLE001 - a peer stopped on an error: leave all the same
        pass
    dist.destroy_process_group()


PARENT_ENV = "MORPHOSPACE_SPAWNING_PID"  # the process that spawned the workers, for them to watch


def die_with_parent() -> None:
    """In a spawned worker: end when the process that started it ends. Killed, the parent frees the
    run's lock; its workers went on writing checkpoints into the run for half a minute, beside any
    writer let in meanwhile. A worker whose parent is already gone ends at once."""
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit():
        die_with(int(parent))


class LeaveProcessGroup(pl.Callback):
    """In a spawned worker: at the trainer's setup, end with the process that spawned it
    (:func:`die_with_parent`); at its teardown, wait for every worker, then leave the process
    group, so that none is torn down by the interpreter's exit."""

    def setup(self, trainer, pl_module, stage) -> None:
        if spawns(trainer) and os.getpid() != int(os.environ.get(PARENT_ENV, "0") or 0):
            die_with_parent()

    def teardown(self, trainer, pl_module, stage) -> None:
        if spawns(trainer):
            leave_process_group()


def spawns(trainer) -> bool:
    """Whether ``trainer`` starts its processes by spawning or forking them (``ddp_spawn``, ``ddp_notebook``)."""
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


@contextmanager
def spawned_workers(trainer, weights_in: str | Path | None = None) -> Iterator[None]:
    """Around ``trainer.fit`` or ``trainer.predict``: spawned workers leave their process group
    themselves, and the weights a spawned fit passes back go through ``weights_in`` (removed after).

    Nothing changes for a trainer that does not start its processes by spawning or forking (one
    process, or ``ddp`` under ``srun`` or ``torchrun``, whose processes stay in their group for
    what the command does next and pass no weights back).
    """
    if not spawns(trainer):
        yield
        return
    if not any(isinstance(c, LeaveProcessGroup) for c in trainer.callbacks):
        trainer.callbacks.append(LeaveProcessGroup())
    os.environ[PARENT_ENV] = str(os.getpid())  # spawned workers read it when they start
    with _worker_lost():
        if weights_in is None:
            yield
        else:
            with _weights_through(Path(weights_in)):
                yield


@contextmanager
def _worker_lost() -> Iterator[None]:
    """A spawned worker killed (out of memory, a signal) is one line saying what to do, not
    torch's traceback of ``ProcessExitedException`` (nor torch's warning that it is terminating the
    others, which that line says)."""
    import logging

    torch_log = logging.getLogger("torch.multiprocessing.spawn")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        yield
    except ProcessExitedException as exc:
        raise UserError(f"a spawned process stopped ({first_line(exc)}): run the command again "
                        "(`morphospace train RUN --resume` continues a training from its last checkpoint)") from None
    finally:
        torch_log.setLevel(level)


@contextmanager
def _weights_through(folder: Path) -> Iterator[None]:
    """The weights a spawned fit passes back go through ``folder`` (removed after), not the
    system's temporary folder."""
    folder.mkdir(parents=True, exist_ok=True)
    saved_env, saved_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    # spawned workers read the variable when they start; forked ones inherit the module's value
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)
