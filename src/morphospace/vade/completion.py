"""Whether a training is complete: the checkpoints a resume would continue from, marked in the model.

A model saved at a training's end records a sha256 of each checkpoint a ``--resume`` would continue
from (the SSL heads'; an MLP core's or the pixel VaDE's ``last.ckpt``) and of the settings the
training began with (``training_began.json``). A resume then has nothing to do when the model in the
run records those files as they are now and each checkpoint has done the epochs asked: a requeued
job that finds its training done says so instead of rebuilding the form embedding and retraining
the image decoder (~85 s on sdss-gz1) to end with the same model.

A content mark, not file times: a copied run (``cp -r`` gives every file a new time) is still
complete, and a model put back by hand from another training (``superseded/``), or one saved before
a resume that went on with more epochs, records other files, so the resume goes on. The settings are
marked as well as the checkpoints: two trainings that differ only in the core (``model.latent_dim``)
train the same SSL head, whose checkpoints may hold the same bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..run import RunDir
from .fitting import LAST_CHECKPOINT, TRAINING_BEGAN, resume_checkpoint
from .hparams import with_earlier_form
from .io import MODEL_FILE, model_dir

__all__ = ["Finished", "checkpoint_marks", "finished_training"]

_CHUNK = 1 << 20


def _resumed_checkpoints(hp: dict[str, Any]) -> list[tuple[str, int]]:
    """(checkpoint relative to the model folder, the epochs it must have done), for each a resume of a
    training with ``hp`` continues from."""
    if hp.get("preset") != "form":
        return [(LAST_CHECKPOINT, int(hp["epochs"]))]
    from ..ssl.training import head_folder  # the form model's SSL side, imported when used

    form = with_earlier_form(hp["form"])
    ssl_dir = Path(resume_checkpoint(hp)).parent
    stages = [((head_folder(ssl_dir, i) / LAST_CHECKPOINT).as_posix(), int(form["ssl_epochs"]))
              for i in range(int(form.get("heads") or 1))]
    if form.get("core") == "mlp":
        stages.append((LAST_CHECKPOINT, int(hp["epochs"])))
    return stages


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def began_mark(mdir: Path) -> str | None:
    """The sha256 of the settings the training in ``mdir`` began with (its ``training_began.json``),
    or None where there is none: what tells this training's leftovers (a view bank) from another's."""
    try:
        return _sha256(mdir / TRAINING_BEGAN)
    except OSError:
        return None


def _marked(mdir: Path, hp: dict[str, Any]) -> list[str]:
    """The files a model saved now in ``mdir`` marks: the checkpoints a resume of ``hp``'s training
    continues from that are there, and the settings it began with."""
    names = [name for name, _ in _resumed_checkpoints(hp)] + [TRAINING_BEGAN]
    return [name for name in names if (mdir / name).is_file()]


def checkpoint_marks(mdir: Path, hp: dict[str, Any]) -> dict[str, str]:
    """What a model saved now in ``mdir`` records: {file: sha256 of its bytes} (:func:`_marked`)."""
    return {name: _sha256(mdir / name) for name in _marked(mdir, hp)}


def _epochs_done(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state.get("epoch", -1)) + 1 if isinstance(state, dict) else 0


class Finished(NamedTuple):
    """A complete training: the line that says so, and the saved model's hyper-parameters."""

    line: str
    hparams: dict


def finished_training(run: RunDir, hp: dict[str, Any]) -> Finished | None:
    """The run's training, where it is complete and a resume with ``hp`` has nothing to go on with;
    None where it has (or where that cannot be told: the resume then goes on as before).

    Complete: the run's model records, for every checkpoint the resume would continue from and for
    the settings the training began with, the bytes those files hold now, and each checkpoint has
    done the epochs ``hp`` asks. Call it after :func:`~morphospace.vade.fitting.check_resumable`,
    which refuses changed settings."""
    mdir = model_dir(run)
    model = mdir / MODEL_FILE
    stages = _resumed_checkpoints(hp)
    try:
        saved = torch.load(model, map_location="cpu", weights_only=True, mmap=True)
        marks = saved.get("extra", {}).get("checkpoints") if isinstance(saved, dict) else None
        if not isinstance(marks, dict) or set(marks) != {name for name, _ in stages} | {TRAINING_BEGAN}:
            return None  # a model saved before the marks, or by another kind of training
        if any(_sha256(mdir / name) != mark for name, mark in marks.items()):
            return None
        if any(_epochs_done(mdir / name) < epochs for name, epochs in stages):
            return None
        hparams = dict(saved["hparams"])
    except Exception:  # noqa: BLE001 - no model or checkpoint, or a damaged one: not known complete
        return None
    name, epochs = stages[-1]
    what = f"{epochs} of {epochs} {'SSL ' if name.startswith('ssl/') else ''}epochs"
    # a linear core is refitted, not trained by epochs: its SSL head's epochs cannot be raised on a resume
    onward = ("give more epochs (train.epochs) to go on, or train again without --resume" if name == LAST_CHECKPOINT
              else "train again without --resume to train anew")
    return Finished(f"the training is complete ({what} done, model in {model.relative_to(run.path)}): "
                    f"nothing to resume ({onward})", hparams)
