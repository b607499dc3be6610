"""A trained VaDE on disk: where a run keeps it, how it is written and read back.

``RUN/models/vade/model.pt`` holds the weights and the hyper-parameters (plus free-form
``extra``), loadable without Lightning. :func:`load_vade` rebuilds the model from its
hyper-parameters (any preset: ``default``, ``astrovader`` or the form-first ``form``).
"""

from __future__ import annotations

import json
import shlex
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MissingFile, UserError, first_line
from ..nets.saving import written_by_torch
from ..run import RunDir, atomic_path

__all__ = ["MODEL_NAME", "MODEL_FILE", "model_dir", "model_file", "plain_values", "save_model", "load_vade", "cluster_groups"]

MODEL_NAME = "vade"  # RUN/models/vade/
MODEL_FILE = "model.pt"  # the final model: weights + hyper-parameters, loadable without Lightning
SET_ASIDE_NOTE = "set_aside.json"  # beside a model a new training set aside: which cube it was for
CLUSTERS_FILE = "clusters.json"  # beside it: which components the embedding merged into each cluster
EMBED_UNDERWAY = "underway"  # in embeddings/vade.json while embed writes: a killed embed is not current


def model_dir(run: RunDir) -> Path:
    """``RUN/models/vade/`` (created)."""
    return run.model_dir(MODEL_NAME)


def model_file(run: RunDir) -> Path:
    """``RUN/models/vade/model.pt``, whether it is there or not: nothing is created to look for it
    (``generate`` and ``export`` only read a run)."""
    return run.model_path(MODEL_NAME) / MODEL_FILE


def save_model(model, hp: dict[str, Any], path: Path, extra: dict | None = None) -> None:
    """Write a VaDE's weights and hyper-parameters (atomically), loadable by :func:`load_vade`.

    ``hp`` and ``extra`` hold plain values and tensors only: the file is read back with
    ``torch.load(weights_only=True)``, which runs no code a file may carry."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp, written_by_torch(path):
        torch.save({"hparams": hp, "state_dict": state, "extra": extra or {}}, tmp)


def plain_values(value):
    """``value`` with NumPy scalars and arrays as Python numbers and lists (``torch.load`` with
    ``weights_only`` reads nothing else back)."""
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_values(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def model_fingerprint(path: str | Path) -> str:
    """What identifies a trained model: a sha256 of its hyper-parameters and weights, not of the
    file (a resume with nothing left to train writes the same model again, with other notes and
    another time; a copied run keeps its model).

    Raises
    ------
    OSError
        The file cannot be read.
    UserError
        It is not a model file.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return fingerprint(blob["hparams"], blob["state_dict"])
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or not a model: pickle, zip and key errors
        raise _unreadable(path, exc) from None


def embeddings_outdated(run: RunDir) -> str | None:
    """Why the embeddings ``embed`` wrote from the run's model (``vade``, and ``form`` beside it) are
    not those of the model now in the run, or None: it was trained again after them (the fingerprint
    ``embeddings/vade.json`` records differs), or it is gone or damaged. Runs embedded before the
    fingerprint was recorded, or not embedded, read as current."""
    if _embedding_note(run).get(EMBED_UNDERWAY):
        return "the last `morphospace embed` did not finish"
    made_by = _embedded_by(run)
    if made_by is None:
        return None
    try:
        now = model_fingerprint(model_file(run))
    except OSError:
        return "the model they came from is no longer in the run"
    except UserError:
        return "the run's model file is damaged"
    return None if now == made_by else "the model was trained again after `morphospace embed` made them"


def fingerprint(hp: dict[str, Any], state: dict) -> str:
    """:func:`model_fingerprint` of a model's hyper-parameters and weights (``state_dict()``) in memory."""
    import hashlib

    digest = hashlib.sha256(json.dumps(hp, sort_keys=True, default=str).encode("utf-8"))
    for key in sorted(state):
        digest.update(key.encode("utf-8"))
        digest.update(state[key].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _set_aside(path: Path) -> str:
    """Where a run's model file is missing: the words that point to the model a training set aside
    when it started (``superseded/<time>/models/vade/``, its note saying it was for the cube the run
    holds; a training stopped before it finished leaves none in its place), or ""."""
    from ..run.writes import stamp_is_current

    parts = path.parts
    if len(parts) < 4 or parts[-3:] != ("models", MODEL_NAME, MODEL_FILE):
        return ""
    root = Path(*parts[:-3])
    for kept in sorted(root.glob(f"superseded/*/models/{MODEL_NAME}/{MODEL_FILE}"), reverse=True):
        try:
            note = json.loads((kept.parent / SET_ASIDE_NOTE).read_text())
        except (OSError, ValueError):
            continue  # set aside by an ingest of other galaxies, or before notes were written
        if isinstance(note, dict) and note.get("by") == "train" and note.get("cube") is not None \
                and stamp_is_current(note["cube"], root / "cube.npy"):
            return (f", or put back the model set aside when a training started, {kept.parent} (move its files "
                    f"into {path.parent})")
    return ""


def load_vade(path: str | Path, trusted: bool = False):
    """``(vade, hparams, extra)`` from a file written by :func:`save_model` (CPU, eval mode).

    Read with ``torch.load(weights_only=True)``: a file that holds other Python objects (one
    written by an estimator's ``save`` of an earlier version, or not by morphospace) is refused
    unless ``trusted``, since unpickling them could run any code the file carries."""
    from .networks import build_model

    path = Path(path)
    if not path.is_file():
        # a training stopped half way left its checkpoints: a plain `train` (the advice alone) deleted them
        stopped = any((path.parent / where).exists() for where in ("last.ckpt", "ssl/last.ckpt")) or \
            any(path.parent.glob("epoch[0-9][0-9][0-9]*.ckpt"))  # one whose last.ckpt link a kill removed
        run = shlex.quote(str(path.parent.parent.parent))
        first = (f"a training stopped before it finished: `morphospace train {run} --resume` finishes it"
                 if stopped else "run `morphospace train` first")
        raise MissingFile(f"no trained VaDE at {path}: {first}{_set_aside(path)}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=not trusted)
        hp, state = blob["hparams"], blob["state_dict"]
        extra = blob.get("extra") or {}
        if not (isinstance(hp, dict) and isinstance(state, dict) and isinstance(extra, dict)):
            raise TypeError("its hyper-parameters, weights or notes are not tables")
    except pickle.UnpicklingError as exc:
        # only a pickled object names a global ("Unsupported global", torch < 2.4: "Unsupported class");
        # garbage fails on an opcode ("Unsupported operand")
        if "Weights only load failed" not in str(exc) or not any(
                what in str(exc) for what in ("Unsupported global", "Unsupported class")):
            raise _unreadable(path, exc) from None
        raise UserError(f"{path} holds Python objects besides weights and settings (an estimator saved by an "
                        "earlier version, or a file not written by morphospace): not loaded, as unpickling them "
                        "could run code; if you wrote it yourself, load it with VaDE.load(path, trusted=True) "
                        "and save it again") from None
    except Exception as exc:  # truncated or not a model: zip and key errors
        raise _unreadable(path, exc) from None
    try:
        if hp["preset"] == "form":
            from .form_model import build_form_vade  # the form-first VaDE: embedder + core + image decoder

            model = build_form_vade(hp)
        else:
            model = build_model(hp)
        model.load_state_dict(state)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # a setting missing or of another kind (a file edited, or written by another version)
        what = f"no setting {exc}" if isinstance(exc, KeyError) else first_line(exc)[:160]
        raise UserError(f"{path} does not fit its own hyper-parameters ({what}): re-run `morphospace train`") from None
    model.eval()
    return model, hp, extra


def _unreadable(path, exc: Exception) -> UserError:
    """The one line for a model file torch cannot load: not a torch archive at all (an image given
    for a model: it was called damaged, with torch's advice cut off mid-sentence), or a damaged one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        archive = len(head) < 4 or head == b"PK\x03\x04"  # a torch archive's first bytes, even cut short
    except OSError:
        archive = True
    if not archive:
        return UserError(f"{path} is not a model file (a model morphospace saves is a torch archive, as a run's "
                         f"models/vade/model.pt)")
    why = "it does not unpickle as weights" if "Weights only load failed" in str(exc) else first_line(exc)[:160]
    return UserError(f"{path} is damaged ({why}): re-run `morphospace train`")


def _not_embedded(run: RunDir, made_by: str) -> bool:
    """Whether the model ``made_by`` names has not been embedded though it could be: the run's
    embedding came from another model (``embeddings/vade.json``'s fingerprint), or there is none and
    the run has a cube to embed. An embedding from before fingerprints were recorded, or a run of an
    imported model alone, counts as embedded: its clusters are its components."""
    if not run.embedding_path("vade").with_suffix(".json").exists():
        return run.cube.is_file()
    if _embedding_note(run).get(EMBED_UNDERWAY):  # an embed killed half way
        return True
    fingerprint = _embedded_by(run)
    return fingerprint is not None and fingerprint != made_by


def _embedding_note(run: RunDir) -> dict:
    """``embeddings/vade.json``, or {} where it is missing or unreadable."""
    try:
        record = json.loads(run.embedding_path("vade").with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _embedded_by(run: RunDir) -> str | None:
    """The fingerprint of the model the run's embedding came from (``embeddings/vade.json``); None
    where it is not recorded (embedded before it was) or the note is missing or unreadable."""
    return _embedding_note(run).get("model_fingerprint")


def cluster_groups(run: RunDir, n_components: int, made_by: str | None = None) -> list[list[int]]:
    """The mixture components of each of the run's own clusters, as its embedding merged them
    (``models/vade/clusters.json``); each component a cluster of its own where none were merged.
    ``made_by``: the model's fingerprint, which the file must name (a later model's clusters are not
    an earlier one's merge)."""
    path = model_file(run).parent / CLUSTERS_FILE
    k = int(n_components)
    if not path.is_file():
        if made_by is not None and _not_embedded(run, made_by):
            # a model trained but not embedded yet: its clusters are not its components (the merge
            # comes with `embed`), and cluster 3 was drawn from component 3, which the merge then
            # put in cluster 2
            raise UserError(f"the run's clusters are made when `morphospace embed` merges the model's mixture "
                            f"components, and this model has not been embedded: run `morphospace embed "
                            f"{shlex.quote(str(run.path))}` first, or draw from a component (--component)")
        if made_by is not None and _embedding_note(run).get("components_merged") is True:
            # the embedding merged components, and its record of which went where is gone: cluster 5
            # drawn from component 5 is not the report's cluster 5 (and may not exist)
            raise UserError(f"{path} is missing, and the run's clusters are components merged by "
                            f"`morphospace embed`: run `morphospace embed {shlex.quote(str(run.path))}` to write "
                            "it again, or draw from a component (--component)")
        return [[c] for c in range(k)]
    try:
        record = json.loads(path.read_text())
        groups = record["groups"]
        flat = [c for g in groups for c in g]
        ok = (all(isinstance(g, list) and g for g in groups) and len(set(flat)) == len(flat)
              and all(type(c) is int and 0 <= c < k for c in flat))
        ok = ok and (made_by is None or record.get("model_fingerprint") in (None, made_by))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(f"{path} is damaged or of another model: `morphospace embed {shlex.quote(str(run.path))}` writes it again")
    return [list(g) for g in groups]
