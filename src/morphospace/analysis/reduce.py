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
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from ..errors import UserError
from ..progress import Timer
from ..run import RunDir, write_json, write_npy
from .inputs import fit_input, new_input
from .labels import labels_in_cube_order, missing_mask, truth_column

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


def _pre_pca(X: np.ndarray, dims: int | None, random_state: Any) -> PCA | None:
    """A PCA to ``dims`` components when X is wider, else None (neighbour searches are cheaper)."""
    if dims is None or dims <= 0 or X.shape[1] <= dims:
        return None
    n_comp = min(dims, X.shape[0])
    return PCA(n_components=n_comp, random_state=random_state).fit(X)


class PCAReducer(TransformerMixin, BaseEstimator):
    """Principal component analysis to ``n_components`` dimensions.

    Parameters
    ----------
    n_components : int
        Output dimensions (clipped to the data's rank limit).
    random_state : int or None
        Seed of the randomised SVD solver (used on large inputs).

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
    explained_variance_ratio_ : ndarray of shape (n_components_,)
    n_components_ : int
    """

    def __init__(self, n_components: int = 2, random_state: Any = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        X = fit_input(self, X)
        n_comp = min(self.n_components, *X.shape)
        self.pca_ = PCA(n_components=n_comp, random_state=self.random_state).fit(X)
        self.n_components_ = n_comp
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    def transform(self, X):
        return self.pca_.transform(new_input(self, X))


class LDAReducer(TransformerMixin, BaseEstimator):
    """Linear discriminant analysis: the projection that best separates labelled classes.

    Rows whose label is missing (None, NaN, "") are ignored when fitting and
    transformed like every other row. LDA gives at most ``n_classes - 1``
    discriminant axes; when fewer than ``n_components`` exist (two classes give
    one), the remaining columns are the leading principal components of the
    class-centred data (the largest spread *within* classes), so a 2-D map is
    always 2-D. ``n_discriminants_`` says how many columns are discriminants.

    Parameters
    ----------
    n_components : int
    random_state : int or None
        Only used by the within-class PCA padding.

    Attributes
    ----------
    lda_ : sklearn.discriminant_analysis.LinearDiscriminantAnalysis
    classes_ : ndarray
    n_discriminants_ : int
    pad_pca_ : PCA or None
    """

    def __init__(self, n_components: int = 2, random_state: Any = 0):
        self.n_components = n_components
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit(self, X, y=None):
        if y is None:
            raise UserError("LDA requires y to be passed, but the target y is None: give it a label column")
        X = fit_input(self, X)
        y = np.asarray(y, dtype=object)
        if y.shape[0] != X.shape[0]:
            raise UserError(f"LDA: {y.shape[0]} labels for {X.shape[0]} rows")
        keep = ~missing_mask(y)
        yk = np.array([str(v) for v in y[keep]])
        classes = np.unique(yk)
        if classes.size < 2:
            raise UserError(f"LDA needs at least 2 label classes, found {classes.size}")
        Xk = X[keep]
        n_disc = min(self.n_components, classes.size - 1, X.shape[1])
        # Ledoit-Wolf shrinkage of the within-class covariance: on 1,280 frozen ImageNet features
        # of 3,269 SDSS galaxies the unregularised (svd) LDA flung a few galaxies thousands of
        # units out and K-Means(3) on it scored AMI 0.00 against the classes; shrunk, 0.53
        self.lda_ = LinearDiscriminantAnalysis(n_components=n_disc, solver="eigen", shrinkage="auto").fit(Xk, yk)
        self.classes_ = classes
        self.n_discriminants_ = n_disc
        n_pad = min(self.n_components, X.shape[1]) - n_disc
        self.pad_pca_ = None
        if n_pad > 0:
            means = {c: Xk[yk == c].mean(axis=0) for c in classes}
            centred = Xk - np.stack([means[c] for c in yk])
            self.pad_pca_ = PCA(n_components=n_pad, random_state=self.random_state).fit(centred)
            # centre the padding projection on the data mean, not the (zero) class-centred mean
            self._pad_mean = Xk.mean(axis=0)
        return self

    def transform(self, X):
        X = new_input(self, X)
        Z = self.lda_.transform(X)
        if self.pad_pca_ is not None:
            extra = (X - self._pad_mean) @ self.pad_pca_.components_.T
            Z = np.hstack([Z, extra])
        return Z


class TSNEReducer(TransformerMixin, BaseEstimator):
    """t-SNE through openTSNE (FFT-accelerated), after a PCA to ``pca_dims`` when wider.

    Parameters
    ----------
    n_components : int
    perplexity : float
        Clipped to ``(n_samples - 1) / 3`` on tiny inputs.
    pca_dims : int or None
        Reduce to this many principal components first when the input is wider
        (the usual t-SNE practice; neighbours in 50-d are as good and far cheaper).
    n_jobs : int
        Threads of openTSNE.
    random_state : int or None
    n_iter : int
        Optimisation iterations after the early-exaggeration phase.

    Attributes
    ----------
    embedding_ : openTSNE.TSNEEmbedding
        The fitted map of the training rows (``transform`` places new rows in it).
    pca_ : PCA or None
    """

    def __init__(self, n_components: int = 2, perplexity: float = 30.0, pca_dims: int | None = 50,
                 n_jobs: int = 1, random_state: Any = 0, n_iter: int = 500):
        self.n_components = n_components
        self.perplexity = perplexity
        self.pca_dims = pca_dims
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.n_iter = n_iter

    def _pre(self, X: np.ndarray) -> np.ndarray:
        return self.pca_.transform(X) if self.pca_ is not None else X

    def fit(self, X, y=None):
        import openTSNE

        X = fit_input(self, X, min_samples=4)  # t-SNE's perplexity needs a few neighbours
        self.pca_ = _pre_pca(X, self.pca_dims, self.random_state)
        Xp = self._pre(X)
        perplexity = float(min(self.perplexity, (X.shape[0] - 1) / 3.0))
        self.perplexity_ = perplexity
        tsne = openTSNE.TSNE(
            n_components=self.n_components,
            perplexity=perplexity,
            n_iter=self.n_iter,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            verbose=False,
        )
        # openTSNE logs its solver choices at INFO: keep the run log to our own lines
        tsne_log = logging.getLogger("openTSNE")
        level = tsne_log.level
        tsne_log.setLevel(max(level, logging.WARNING))
        try:
            self.embedding_ = tsne.fit(Xp)
        finally:
            tsne_log.setLevel(level)
        return self

    def fit_transform(self, X, y=None, **kw):
        # the training map itself, not a re-projection of the training rows into it
        return np.asarray(self.fit(X, y).embedding_)

    def transform(self, X):
        return np.asarray(self.embedding_.transform(self._pre(new_input(self, X))))


class UMAPReducer(TransformerMixin, BaseEstimator):
    """UMAP through umap-learn, after a PCA to ``pca_dims`` when wider.

    With a ``random_state`` umap-learn runs single-threaded (its parallel
    optimiser is not reproducible); ``random_state=None`` uses ``n_jobs`` threads.

    Parameters
    ----------
    n_components : int
    n_neighbors : int
        Clipped to ``n_samples - 1`` on tiny inputs.
    min_dist : float
    pca_dims : int or None
    n_jobs : int
    random_state : int or None

    Attributes
    ----------
    umap_ : umap.UMAP
    embedding_ : ndarray of shape (n_samples, n_components)
    pca_ : PCA or None
    """

    def __init__(self, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1,
                 pca_dims: int | None = 50, n_jobs: int = 1, random_state: Any = 0):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.pca_dims = pca_dims
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _pre(self, X: np.ndarray) -> np.ndarray:
        return self.pca_.transform(X) if self.pca_ is not None else X

    def fit(self, X, y=None):
        X = fit_input(self, X, min_samples=4)  # UMAP's neighbour graph needs a few neighbours
        with warnings.catch_warnings():
            # umap-learn imports numba/pynndescent, which warn about things we do not control
            warnings.simplefilter("ignore")
            import umap

            self.pca_ = _pre_pca(X, self.pca_dims, self.random_state)
            Xp = self._pre(X)
            self.umap_ = umap.UMAP(
                n_components=self.n_components,
                n_neighbors=int(min(self.n_neighbors, X.shape[0] - 1)),
                min_dist=self.min_dist,
                random_state=self.random_state,
                n_jobs=1 if self.random_state is not None else self.n_jobs,
                verbose=False,
            )
            self.embedding_ = self.umap_.fit_transform(Xp)
        return self

    def fit_transform(self, X, y=None, **kw):
        return np.asarray(self.fit(X, y).embedding_, dtype=np.float64)

    def transform(self, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.umap_.transform(self._pre(new_input(self, X))).astype(np.float64)


REDUCERS: dict[str, type] = {
    "pca": PCAReducer,
    "lda": LDAReducer,
    "tsne": TSNEReducer,
    "umap": UMAPReducer,
}


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
