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

from ..config.outputs import MIN_MAP_ROWS
from ..data.sample import sample_rows
from ..errors import InvalidArgument, UserError
from ..progress import Timer, progress
from ..run import RunDir, write_json, write_npy
from ..run.provenance import input_stamp
from .labels import labels_in_cube_order, missing_mask, truth_column
from .neighbour_index import SimilarityIndex
from .probe import fine_tuning_rows
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
    "place_by_neighbours",
    "SAMPLED_MAPS",
    "LDA_HELD_OUT",
    "lda_fit_rows",
    "pack_rows",
    "unpack_rows",
]

SAMPLED_MAPS = ("tsne", "umap")  # the reductions fitted on a sample above cluster.map_sample
PLACEMENT_K = 10  # fitted neighbours whose median position places a row outside the sample
# Of a row's true nearest fitted rows, the share the placing's search must find. The median of 10
# positions moves little when a few of them are other near rows: on a fake 10^6-galaxy run the
# placing's own error (a fitted row placed from its other neighbours, against where t-SNE put it)
# was 21.9 local map scales with exact neighbours, 22.4 at recall 0.82 and 24.5 at 0.46, while
# recall 0.95 cost twice the search of 0.8 (the README's *Large surveys*).
PLACEMENT_RECALL = 0.8


def place_by_neighbours(fitted: np.ndarray, positions: np.ndarray, new: np.ndarray, k: int = PLACEMENT_K,
                        random_state: Any = 0, chunk: int = 100_000, space=None,
                        rows: np.ndarray | None = None) -> np.ndarray:
    """Map positions of new rows: the median position of their ``k`` nearest fitted rows.

    openTSNE's "median" initialisation of new points, used alone: a row lands among the rows it
    resembles, and a large map costs one approximate-neighbour query per row instead of an
    optimisation over all of them.

    Parameters
    ----------
    fitted : ndarray (n, d)
        The rows the map was fitted on, in the space the map saw (after its PCA).
    positions : ndarray (n, 2)
        Their map positions.
    new : ndarray (m, d) or (m, D)
        Rows to place: in the same space, or in one that ``space`` maps to it.
    k : int
    random_state : int
        Of the approximate index.
    chunk : int
        Rows queried at a time (bounds memory; one progress step each).
    space : callable, optional
        Maps a chunk of ``new`` into the space of ``fitted`` (e.g. the map's own PCA).
    rows : ndarray of int, optional
        Place only these rows of ``new`` (read a chunk at a time, never copied whole).

    Returns
    -------
    ndarray (m, 2)
    """
    # every row of a large run queried: approximate
    index = SimilarityIndex(target_recall=PLACEMENT_RECALL, random_state=random_state, exact_below=0).fit(fitted)
    m = len(new) if rows is None else len(rows)
    out = np.empty((m, positions.shape[1]), dtype=np.float64)
    starts = range(0, m, chunk)
    for s in progress(starts, total=len(starts), desc="placing rows on the map", unit="chunk"):
        part = new[s:s + chunk] if rows is None else new[rows[s:s + chunk]]
        _, idx = index.kneighbors(part if space is None else space(part), k=k)
        out[s:s + chunk] = np.median(positions[idx], axis=1)
    return out


def _fit_map(reducer: BaseEstimator, X: np.ndarray, y, rows: np.ndarray | None, random_state: Any) -> np.ndarray:
    """The reducer's map of every row of X: fitted on all, or on ``rows`` with the rest placed."""
    if rows is None:
        return reducer.fit_transform(X, y)
    fitted = np.asarray(reducer.fit_transform(X[rows]), dtype=np.float64)
    Z = np.empty((len(X), fitted.shape[1]), dtype=np.float64)
    Z[rows] = fitted
    rest = np.setdiff1d(np.arange(len(X)), rows, assume_unique=True)
    space = reducer.map_space  # the space the map saw: after its own PCA
    Z[rest] = place_by_neighbours(space(X[rows]), Z[rows], X, random_state=random_state, space=space,
                                  rows=rest)
    return Z


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


# of the labelled galaxies of each class, the share an LDA map never sees: the compare stage scores its
# clusterings against the labels on those alone (fitted on every label, K-Means(3) of it read AMI 0.90
# on 185 SDSS galaxies whose frozen features give 0.13, and 0.61 where the fine-tuning was at chance)
LDA_HELD_OUT = 0.2


def lda_fit_rows(y: np.ndarray, trained: np.ndarray | None, seed: int) -> np.ndarray:
    """The rows whose labels an LDA map is fitted on: the labelled rows that trained the embedding
    (a fine-tuning's training and validation splits) where they can fit one, else all labelled rows but
    :data:`LDA_HELD_OUT` of each class among those no label trained (at random, seeded; a class of
    one galaxy is fitted on, not held out)."""
    known = ~missing_mask(y)
    if trained is not None:
        fit = known & trained
        if _lda_unfittable(np.where(fit, np.asarray(y, dtype=object), None), 0) is None:
            return fit  # their labels are learnt already: the rest is held out of the LDA too
    # the galaxies no label trained (all, or those another run's fine-tuning did not see)
    fresh = known & ~trained if trained is not None else known
    fit = known.copy()
    rng = np.random.default_rng(seed)
    text = pd.Series(np.asarray(y, dtype=object)).astype(str).to_numpy()
    for cls in np.unique(text[fresh]):
        rows = np.flatnonzero(fresh & (text == cls))
        n_held = min(int(round(LDA_HELD_OUT * len(rows))), len(rows) - 1)
        fit[rng.choice(rows, n_held, replace=False)] = False
    return fit


def pack_rows(mask: np.ndarray) -> str:
    """A boolean row mask as short text for a JSON record (a bit a row, base64)."""
    import base64

    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def unpack_rows(text: str, n: int) -> np.ndarray | None:
    """:func:`pack_rows` read back for ``n`` rows; None where it is not such a mask."""
    import base64
    import binascii

    try:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8))
    except (binascii.Error, TypeError, ValueError):
        return None
    return bits[:n].astype(bool) if len(bits) >= n and len(bits) - n < 8 else None


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




def _drop_map(run: RunDir, rid: str) -> None:
    """A map not made this time: an earlier one of the same name must not stand in for it."""
    run.reduction_path(rid).unlink(missing_ok=True)
    run.reduction_path(rid).with_suffix(".json").unlink(missing_ok=True)


def _drop_maps_of_embeddings_gone(run: RunDir) -> None:
    """Maps whose embedding the run no longer holds (deleted by hand, say), with their clusterings and
    k-selection tables: stale everywhere, and no reduce would make them again. Set aside in
    ``superseded/<time>/``, not deleted (an embedding deleted by mistake took its results with it)."""
    from ..run.provenance import made_from, read_record
    from ..run.set_aside import set_aside

    held = set(run.embeddings())
    gone = {str(e) for rid in run.reductions()
            if (e := read_record(run.reduction_path(rid).with_suffix(".json")).get("embedding")) and str(e) not in held}
    if gone:
        set_aside(run, made_from(run, sorted(gone)),
                  f"what was made from the embeddings the run no longer holds ({', '.join(sorted(gone))})", log)


def reduce_run(run: RunDir, cfg: Any, embedding: str = "features",
               reductions: Sequence[str] | None = None,
               labels: Any = None) -> dict[str, Path]:
    """Reduce one embedding of a run to 2-D maps, stored as ``reductions/<id>.npy``.

    Parameters
    ----------
    run : RunDir
    cfg : Config
        Uses ``cluster.seed``, ``cluster.n_jobs``, ``cluster.tsne_perplexity``,
        ``cluster.umap_n_neighbors``, ``cluster.map_sample`` and ``data.truth_label``.
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
    # checked before any map is written: not three maps of the wrong rows and then an error
    X = np.asarray(run.embedding_of_cube(embedding, "re-run the stage that made it (`morphospace embed` for "
                                                    "the model's)"), dtype=np.float64)
    n = X.shape[0]
    made_from = input_stamp(run, embedding)  # recorded in each map: compare and the report know a map of an earlier one
    _drop_maps_of_embeddings_gone(run)
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
        rid = representation_id(embedding, name)
        y = None
        label_name = None
        if name == "lda":
            if labels is None:
                label_name = truth_column(run.read_catalogue(), cfg)
                if label_name is None:
                    log.warning("LDA skipped: the run has no column of classes to fit it to (a catalogue column "
                                "of classes, named with data.truth_label)")
                    _drop_map(run, rid)  # not an earlier one in its place
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
            fit_rows = lda_fit_rows(y, fine_tuning_rows(run, embedding, who="LDA"), ccfg.seed)
            held_out = int((~missing_mask(y) & ~fit_rows).sum())
            y = np.where(fit_rows, np.asarray(y, dtype=object), None)  # the held-out labels unseen
            why = _lda_unfittable(y, X.shape[1])
            if why:
                log.warning("LDA skipped: %s", why)
                _drop_map(run, rid)  # not an earlier one in its place
                continue
        if name in ("tsne", "umap") and (X.shape[1] < 2 or n < MIN_MAP_ROWS):
            log.warning("%s of %s skipped: a 2-D map needs at least 2 columns and %d galaxies (got %d x %d)",
                        name, embedding, MIN_MAP_ROWS, n, X.shape[1])
            _drop_map(run, rid)
            continue
        reducer = make_reducer(name, **options)
        rows = sample_rows(n, ccfg.map_sample, ccfg.seed) if name in SAMPLED_MAPS else None
        if rows is not None:
            log.info("%s of %s: fitted on a random sample of %d of the %d rows (cluster.map_sample); "
                     "the others placed among their %d nearest fitted rows", name, embedding, len(rows), n,
                     PLACEMENT_K)
        try:
            with Timer(f"{name} of {embedding} ({n} x {X.shape[1]})") as t:
                Z = _fit_map(reducer, X, y, rows, ccfg.seed)
        except InvalidArgument as e:
            if name == "lda":
                log.warning("LDA skipped: %s", str(e).removeprefix("LDA: "))  # the labels cannot carry it; the maps need no labels
                _drop_map(run, rid)  # not an earlier one in its place
                continue
            if "not finite" not in str(e):
                raise
            # t-SNE of identical rows: no map, said (clusterings would choke on it)
            log.warning("%s of %s skipped: the map is not finite (%s)", name, embedding,
                        str(e).removeprefix("t-SNE: "))
            _drop_map(run, rid)
            continue
        if not np.isfinite(Z).all():  # e.g. t-SNE of identical rows: no map, said (clusterings would choke on it)
            log.warning("%s of %s skipped: the map is not finite (%d rows with NaN or inf; identical galaxies?)",
                        name, embedding, int((~np.isfinite(Z)).any(axis=1).sum()))
            _drop_map(run, rid)
            continue
        path = run.reduction_path(rid)
        write_npy(path, np.asarray(Z, dtype=np.float32))
        meta: dict[str, Any] = {
            "representation": rid,
            "embedding": embedding,
            "input_stamp": made_from,
            "reduction": name,
            "params": reducer.get_params(),
            "input_shape": list(X.shape),
            "seconds": round(t.elapsed, 3),
            "fit_sample": None if rows is None else len(rows),
        }
        if name == "umap":
            meta["neighbours"] = reducer.neighbours_  # all pairs, exact or approximate (faiss's inverted file)
            meta["n_neighbors_used"] = int(reducer.n_neighbors_)
        if name == "tsne":
            meta["perplexity_used"] = float(reducer.perplexity_)
        for used, asked in (("perplexity_used", "perplexity"), ("n_neighbors_used", "n_neighbors")):
            if used in meta and meta[used] < meta["params"][asked]:
                log.info("%s of %s: %s %g for %d galaxies (%g asked)", name, embedding, asked, meta[used], n,
                         meta["params"][asked])
        if name == "pca":
            meta["explained_variance_ratio"] = [float(v) for v in reducer.explained_variance_ratio_]
        if name == "lda":
            meta["labels"] = label_name
            meta["classes"] = [str(c) for c in reducer.classes_]
            meta["n_discriminants"] = int(reducer.n_discriminants_)
            meta["fitted_rows"] = pack_rows(fit_rows)  # whose labels it learnt: not scored against them
            log.info("LDA of %s fitted on the labels of %d galaxies; %d labelled galaxies held out, on which its "
                     "clusterings meet the labels", embedding, int(fit_rows.sum()), held_out)
        write_json(path.with_suffix(".json"), meta)
        out[rid] = path
    if reductions is None:  # the configured stage: a map it no longer makes must not be clustered as this one's
        for name in sorted(set(REDUCERS) - {n.lower() for n in names}):
            rid = representation_id(embedding, name)
            if run.reduction_path(rid).exists():
                _drop_map(run, rid)
                log.info("removed map %s: cluster.reductions no longer makes it", rid)
    return out
