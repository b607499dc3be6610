"""Training checkpoints written inside the run, atomically: Lightning's ``CheckpointIO`` with our write.

Lightning's own ``TorchCheckpointIO`` saves through fsspec, which stages the file in the
system's temporary folder (``$TMPDIR``) and moves it into place: a run then writes outside its
folder, a process killed mid-save leaves the partial file there, and where the temporary folder
is another file system (a tmpfs ``/tmp``) the move becomes a copy over the previous checkpoint,
which a kill or a full disk leaves truncated, so that ``train --resume`` has nothing to resume.
Here the checkpoint is written beside its target under a temporary name and renamed onto it
(:func:`~morphospace.run.atomic_path`): the previous checkpoint stays whole until the new one is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..run import atomic_path
from .saving import written_by_torch

log = logging.getLogger("morphospace")

__all__ = ["AtomicCheckpointIO", "with_atomic_checkpoints", "resumed_from"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose saves are a temporary file beside the checkpoint, renamed onto it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:  # what Lightning's own refuses, refused alike
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp, written_by_torch(path):
            torch.save(checkpoint, tmp)


def with_atomic_checkpoints(trainer_kwargs: dict) -> dict:
    """``pl.Trainer`` keyword arguments whose checkpoints :class:`AtomicCheckpointIO` writes."""
    return dict(trainer_kwargs, plugins=[*(trainer_kwargs.get("plugins") or []), AtomicCheckpointIO()])


def resumed_from(last: Path, what: str, epochs: int) -> str | None:
    """``str(last)`` for ``trainer.fit(ckpt_path=...)`` where it is there, with a log line saying from
    which epoch ``what`` resumes (a resume said nothing of where it went on from); None otherwise."""
    if not last.is_file():
        return None
    try:
        done = int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - Lightning's own reading of it says what is wrong
        return str(last)
    log.info("resuming %s from %s: %d of %d epochs done", what, last, done, epochs)
    return str(last)
