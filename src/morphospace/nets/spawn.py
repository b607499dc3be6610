"""Where Lightning's spawning strategies leave the trained weights on their way back.

Under ``ddp_spawn`` (what ``morphospace run`` and the notebook estimator use for several devices)
and ``ddp_notebook`` the first worker saves the trained weights to a checkpoint in a new folder
under the system's temporary folder; the calling process loads the file, deletes it and leaves
the empty folder behind, one per training. A run writes nothing outside its own folder:
:func:`spawned_weights_in` points that checkpoint into the run and removes what is left of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["spawned_weights_in"]


@contextmanager
def spawned_weights_in(trainer, folder: str | Path | None) -> Iterator[None]:
    """Around ``trainer.fit``: a spawning strategy's weights pass through ``folder``, removed after.

    Nothing changes for a trainer that does not start its processes by spawning or forking
    (one process, or ``ddp`` under ``srun`` or ``torchrun``, which pass no weights back), nor
    without a ``folder``.
    """
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

    if folder is None or not isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher):
        yield
        return
    folder = Path(folder)
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
