"""Whether a training is complete: the checkpoints a resume would continue from, marked in the model.

A model saved at a training's end records, for each checkpoint a ``--resume`` would continue from
(the SSL heads'; an MLP core's or the pixel VaDE's ``last.ckpt``), a sha256 of its bytes. A resume
then has nothing to do when the model in the run records the checkpoints as they are now and each has
done the epochs asked: a requeued job that finds its training done says so instead of rebuilding the
form embedding and retraining the image decoder (~85 s on sdss-gz1) to end with the same model.

A content mark, not file times: a copied run (``cp -r`` gives every file a new time) is still
complete, and a model put back by hand from another training (``superseded/``) or one saved before
a resume that went on with more epochs records other checkpoints, so the resume goes on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ..run import RunDir
from .hparams import with_earlier_form
from .io import MODEL_FILE, model_dir

__all__ = ["checkpoint_marks", "finished_training"]

_CHUNK = 1 << 20


def _resumed_checkpoints(hp: dict[str, Any]) -> list[tuple[str, int]]:
    """(checkpoint relative to the model folder, the epochs it must have done), for each a resume of a
    training with ``hp`` continues from."""
    if hp.get("preset") != "form":
        return [("last.ckpt", int(hp["epochs"]))]
    form = with_earlier_form(hp["form"])
    # an ensemble's heads past the first checkpoint in folders of their own (ssl.training.fit_embedder)
    stages = [("ssl/last.ckpt" if i == 0 else f"ssl/head{i}/last.ckpt", int(form["ssl_epochs"]))
              for i in range(int(form.get("heads") or 1))]
    if form.get("core") == "mlp":
        stages.append(("last.ckpt", int(hp["epochs"])))
    return stages


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_marks(mdir: Path, hp: dict[str, Any]) -> dict[str, str]:
    """The marks a model saved now in ``mdir`` records: {checkpoint: sha256 of its bytes} for those a
    resume of ``hp``'s training continues from that are there."""
    return {name: _sha256(mdir / name) for name, _ in _resumed_checkpoints(hp) if (mdir / name).is_file()}


def _epochs_done(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state.get("epoch", -1)) + 1 if isinstance(state, dict) else 0


def finished_training(run: RunDir, hp: dict[str, Any]) -> str | None:
    """A line saying the run's training is complete, where a resume with ``hp`` has nothing to go on
    with; None where it has (or where that cannot be told: the resume then goes on as before).

    Complete: the run's model records, for every checkpoint the resume would continue from, the
    bytes that checkpoint holds now, and each has done the epochs ``hp`` asks. Call it after
    :func:`~morphospace.vade.fitting.check_resumable`, which refuses changed settings."""
    mdir = model_dir(run)
    model = mdir / MODEL_FILE
    stages = _resumed_checkpoints(hp)
    try:
        saved = torch.load(model, map_location="cpu", weights_only=True, mmap=True)
        marks = saved.get("extra", {}).get("checkpoints") if isinstance(saved, dict) else None
        if not isinstance(marks, dict) or set(marks) != {name for name, _ in stages}:
            return None  # a model saved before the marks, or by another kind of training
        for name, epochs in stages:
            if _epochs_done(mdir / name) < epochs or _sha256(mdir / name) != marks[name]:
                return None
    except Exception:  # noqa: BLE001 - no model or checkpoint, or a damaged one: not known complete
        return None
    name, epochs = stages[-1]
    what = f"{epochs} of {epochs} {'SSL ' if name.startswith('ssl/') else ''}epochs"
    return (f"the training is complete ({what} done, model in {model.relative_to(run.path)}): nothing to "
            "resume (give more epochs to go on, or train again without --resume)")
