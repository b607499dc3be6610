"""Dimensionality reduction of embeddings: PCA, LDA, t-SNE and UMAP.

Every reducer is a scikit-learn-style estimator (``fit`` / ``transform`` /
``fit_transform``, fitted state in attributes with a trailing underscore,
``random_state``). :func:`reduce_run` applies a list of them to one embedding
of a run and stores 2-D maps as ``reductions/<representation id>.npy``.

Representation ids follow the run-directory contract: the reduction name when
the embedding is ``features`` (``pca``, ``tsne``, ``umap``, ``lda``) and
``<embedding>_<reduction>`` otherwise (``vade_tsne``). The same 2-D arrays are
what :func:`morphospace.analysis.cluster.cluster_run` clusters, as in the seed study
(which clustered its 2-D reductions); to cluster a wide representation, cluster
the embedding itself (e.g. ``kmeans8_features``).

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(200, 20))
>>> PCAReducer(n_components=2).fit_transform(X).shape
(200, 2)
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..errors import UserError
from ..progress import Timer
from ..run import RunDir, write_json, write_npy
from .labels import labels_in_cube_order, missing_mask, truth_column
# the stage's estimators, re-exported for their users
from .reducers import REDUCERS, PCAReducer, LDAReducer, TSNEReducer, UMAPReducer  # noqa: F401

log = logging.getLogger("morphospace")

__all__ = [
    "PCAReducer",
    "LDAReducer",
    "TSNEReducer",
    "UMAPReducer",
    "REDUCERS",
    "make_reducer",
    "representation_id",
    "reduce_run",
]


def make_reducer(name: str, **kw: Any) -> BaseEstimator:
    """Build a reducer by registry name (``pca``, ``lda``, ``tsne``, ``umap``).

    Keyword arguments the reducer does not take are ignored, so one set of
    options (``n_jobs``, ``random_state``, ...) can be passed to any of them.
    """
    key = name.lower()
    if key not in REDUCERS:
        raise UserError(f"unknown reduction '{name}' (known: {', '.join(REDUCERS)})")
    cls = REDUCERS[key]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in kw.items() if k in accepted})


def representation_id(embedding: str, reduction: str) -> str:
    """``<reduction>`` for the CNN ``features`` embedding, else ``<embedding>_<reduction>``."""
    return reduction if embedding == "features" else f"{embedding}_{reduction}"


def _lda_unfittable(y: np.ndarray, n_features: int) -> str | None:
    """Why LDA cannot be fitted on labels ``y`` (missing values left out), or None."""
    known = pd.Series(np.asarray(y, dtype=object))[~missing_mask(y)].astype(str)
    counts = known.value_counts()
    if len(counts) < 2:
        return f"the labels have {len(counts)} class(es); LDA needs at least 2"
    if len(known) <= len(counts):
        return f"{len(known)} labelled galaxies for {len(counts)} classes; LDA needs more galaxies than classes"
    if (counts < 2).all():
        return "every class has a single galaxy"
    return None


def reduce_run(run: RunDir, cfg: Any, embedding: str = "features",
               reductions: Sequence[str] | None = None,
               labels: Any = None) -> dict[str, Path]:
    """Reduce one embedding of a run to 2-D maps, stored as ``reductions/<id>.npy``.

    Parameters
    ----------
    run : RunDir
    cfg : Config
        Uses ``cluster.seed``, ``cluster.n_jobs``, ``cluster.tsne_perplexity``,
        ``cluster.umap_n_neighbors`` and ``data.truth_label``.
    embedding : str
        Name of ``embeddings/<name>.npy``.
    reductions : sequence of str or None
        Reducer names; ``None`` takes ``cfg.cluster.reductions``.
    labels : None, str or array
        For LDA: an array aligned with the embedding rows, a catalogue column
        name, or None for the run's truth label column. When no label column
        exists LDA is skipped with a warning (an explicit but unusable
        ``labels`` is an error).

    Returns
    -------
    dict
        Representation id -> path of the written ``.npy``. A ``.json`` beside
        each says what produced it (reducer, parameters, seconds, and for PCA
        the explained variance ratio).
    """
    ccfg = cfg.cluster
    names = list(reductions) if reductions is not None else list(ccfg.reductions)
    for name in names:
        if name.lower() not in REDUCERS:
            raise UserError(f"unknown reduction '{name}' (known: {', '.join(REDUCERS)})")
    X = np.asarray(run.read_embedding(embedding), dtype=np.float64)
    n = X.shape[0]
    options = dict(
        n_components=2,
        random_state=ccfg.seed,
        n_jobs=ccfg.n_jobs,
        perplexity=ccfg.tsne_perplexity,
        n_neighbors=ccfg.umap_n_neighbors,
    )
    out: dict[str, Path] = {}
    for name in names:
        name = name.lower()
        y = None
        label_name = None
        if name == "lda":
            if labels is None:
                label_name = truth_column(run.read_catalogue(), cfg)
                if label_name is None:
                    log.warning("LDA skipped: the catalogue has no label column (set data.truth_label)")
                    continue
                y = labels_in_cube_order(run, label_name)
            elif isinstance(labels, str):
                label_name = labels
                y = labels_in_cube_order(run, labels)
            else:
                label_name = "<array>"
                y = np.asarray(labels, dtype=object)
            if len(y) != n:
                raise UserError(f"LDA: {len(y)} labels for {n} rows of embedding '{embedding}'")
            why = _lda_unfittable(y, X.shape[1])
            if why:
                log.warning("LDA skipped: %s", why)
                continue
        rid = representation_id(embedding, name)
        reducer = make_reducer(name, **options)
        with Timer(f"{name} of {embedding} ({n} x {X.shape[1]})") as t:
            Z = reducer.fit_transform(X, y)
        path = run.reduction_path(rid)
        write_npy(path, np.asarray(Z, dtype=np.float32))
        meta: dict[str, Any] = {
            "representation": rid,
            "embedding": embedding,
            "reduction": name,
            "params": reducer.get_params(),
            "input_shape": list(X.shape),
            "seconds": round(t.elapsed, 3),
        }
        if name == "pca":
            meta["explained_variance_ratio"] = [float(v) for v in reducer.explained_variance_ratio_]
        if name == "lda":
            meta["labels"] = label_name
            meta["classes"] = [str(c) for c in reducer.classes_]
            meta["n_discriminants"] = int(reducer.n_discriminants_)
        write_json(path.with_suffix(".json"), meta)
        out[rid] = path
    return out
