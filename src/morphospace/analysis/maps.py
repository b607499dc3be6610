"""The neighbour-graph maps, t-SNE (openTSNE) and UMAP (umap-learn), as scikit-learn
transformers, each after a PCA to 50 dimensions when its input is wider (neighbours in 50-d
are as good and far cheaper to find). Each passes scikit-learn's ``check_estimator`` except
where a neighbour embedding cannot by design (tests/test_estimator_checks.py).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import PCA

from ..errors import InvalidArgument
from .inputs import fit_input, fraction, job_count, new_input, positive_number, whole_number
from .neighbour_index import SimilarityIndex, searches_exactly

__all__ = ["TSNEReducer", "UMAPReducer", "UMAP_EXACT_BELOW"]


def _check_map_settings(est) -> None:
    """The settings a neighbour map shares, checked in ``fit`` (one line naming the parameter,
    not an IndexError from deep in openTSNE, nor a negative ``pca_dims`` taken as None)."""
    whole_number(est.n_components, "n_components")
    job_count(est.n_jobs)
    if est.pca_dims is not None:
        whole_number(est.pca_dims, "pca_dims")


def _pre_pca(X: np.ndarray, dims: int | None, random_state: Any) -> PCA | None:
    """A PCA to ``dims`` components when X is wider, else None (neighbour searches are cheaper)."""
    if dims is None or X.shape[1] <= dims:
        return None
    n_comp = min(dims, X.shape[0])
    return PCA(n_components=n_comp, random_state=random_state).fit(X)


class _MapAfterPCA:
    """What the neighbour embeddings share: a PCA to ``pca_dims`` first (``pca_``, None when narrower)."""

    @property
    def _n_features_out(self) -> int:  # get_feature_names_out: tsnereducer0, ...; NotFittedError before fit
        return int(self.embedding_.shape[1])

    def _pre(self, X: np.ndarray) -> np.ndarray:
        # row-major: openTSNE's map of the same rows differed with their layout in memory (a
        # DataFrame's values are column-major), by 8 on a map 21 wide
        return np.ascontiguousarray(self.pca_.transform(X) if self.pca_ is not None else X)

    def map_space(self, X) -> np.ndarray:
        """Rows in the space the map was fitted in (after the PCA to ``pca_dims``), float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_dims)
        """
        return np.asarray(self._pre(new_input(self, X)), dtype=np.float64)


class TSNEReducer(_MapAfterPCA, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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
        Threads of openTSNE. The map depends on this number (for a given seed it is the same
        on any machine with the same ``n_jobs``); 2 threads fit 100,000 points in 0.72x the
        time of one.
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
                 n_jobs: int = 2, random_state: Any = 0, n_iter: int = 500):
        self.n_components = n_components
        self.perplexity = perplexity
        self.pca_dims = pca_dims
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.n_iter = n_iter

    def fit(self, X, y=None):
        """Fit openTSNE, perplexity clipped to ``(n_samples - 1) / 3``; at least 4 rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        import openTSNE

        positive_number(self.perplexity, "perplexity")
        _check_map_settings(self)
        whole_number(self.n_iter, "n_iter")  # 0 returned the starting layout as a map
        X = fit_input(self, X, min_samples=4)  # t-SNE's perplexity needs a few neighbours
        self.pca_ = _pre_pca(X, self.pca_dims, self.random_state)
        Xp = self._pre(X)
        perplexity = float(min(self.perplexity, (X.shape[0] - 1) / 3.0))
        self.perplexity_ = perplexity
        tsne = openTSNE.TSNE(
            n_components=self.n_components,
            perplexity=perplexity,
            n_iter=self.n_iter,
            # openTSNE starts from a PCA of the rows, which needs as many columns as the map
            initialization="pca" if Xp.shape[1] >= self.n_components else "spectral",
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            verbose=False,
        )
        # openTSNE logs its solver choices at INFO: keep the run log to our own lines
        tsne_log = logging.getLogger("openTSNE")
        level = tsne_log.level
        tsne_log.setLevel(max(level, logging.WARNING))
        try:
            with np.errstate(all="ignore"):  # identical rows: openTSNE divides by zero (said below)
                embedding = tsne.fit(Xp)
        finally:
            tsne_log.setLevel(level)
        if not np.isfinite(np.asarray(embedding)).all():
            raise InvalidArgument(f"t-SNE: {int((~np.isfinite(np.asarray(embedding))).any(axis=1).sum())} rows "
                                  "of the map are not finite (the rows barely differ: identical galaxies?)")
        self.embedding_ = embedding
        return self

    def __deepcopy__(self, memo):
        # openTSNE's fitted map keeps what ``transform`` needs (its affinities) through pickling alone:
        # a deep copy (numpy's, of the array it is) could not place new rows
        import pickle

        return pickle.loads(pickle.dumps(self))

    def fit_transform(self, X, y=None, **kw):
        """Fit, and return the training map itself (not the training rows re-projected into it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        # the training map itself, not a re-projection of the training rows into it; a copy, so that
        # nothing done to either changes the other
        return np.array(self.fit(X, y).embedding_, copy=True)

    def transform(self, X):
        """Place new rows in the fitted map (openTSNE's ``transform``; the map does not move).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        X = new_input(self, X)  # NotFittedError before the fitted map is looked up
        fitted = np.array(self.embedding_, copy=True)
        try:
            placed = np.array(self.embedding_.transform(self._pre(X)), copy=True)
            # openTSNE's transform first centres the reference map's bounding box (a translation, by
            # up to 0.45 on a map 16 wide) and places the rows there: they are moved back with it
            return placed + (fitted - np.asarray(self.embedding_)).mean(axis=0)
        finally:
            # the fitted map stays as fitted, and every call places in the same one
            np.copyto(np.asarray(self.embedding_), fitted)


UMAP_EXACT_BELOW = 4096  # umap-learn's own line: below it, every pairwise distance, no approximate search


class _Search:
    """What umap-learn's ``transform`` asks of the search index it keeps (``query`` and
    ``_angular_trees``), answered by the :class:`SimilarityIndex` that found the fit's neighbours,
    so a new row meets the neighbours a training row would."""

    _angular_trees = False  # umap-learn reads it to choose pynndescent's search tolerance

    def __init__(self, rows: np.ndarray, exact: bool, random_state: Any):
        self.index = SimilarityIndex(random_state=random_state, exact_below=len(rows) + 1 if exact else 0).fit(rows)

    def query(self, X, k: int, epsilon: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self.index.kneighbors(X, k=k)
        return idx.astype(np.int32), dist.astype(np.float32)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) in float64 (umap-learn's own function differs by
    rounding only: the same neighbour graph)."""
    from scipy.spatial.distance import cdist

    return cdist(a.astype(np.float64), b.astype(np.float64))


class UMAPReducer(_MapAfterPCA, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """UMAP through umap-learn, after a PCA to ``pca_dims`` when wider.

    With a ``random_state`` umap-learn runs single-threaded (its parallel
    optimiser is not reproducible); ``random_state=None`` uses ``n_jobs`` threads.
    Below :data:`UMAP_EXACT_BELOW` rows umap-learn computes every pairwise distance, calling
    its distance function from Python once per pair (16 s for 3,359 rows, most of a run's
    UMAP); here scipy computes the same Euclidean matrix and umap-learn takes it as
    ``metric="precomputed"``, the same neighbour graph in a fraction of a second. From there
    up, the neighbours come from :class:`SimilarityIndex` (exact below
    :data:`~morphospace.analysis.neighbour_index.EXACT_BELOW` rows, faiss's inverted file above)
    and are handed to umap-learn as ``precomputed_knn``, with the same search for ``transform``:
    umap-learn's own search, pynndescent, spends 30-150 s compiling in each process that first
    uses it (20,000 rows of 64 numbers: the whole fit 17-19 s against 49-51 s).

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
    train_rows_ : ndarray or None
        The (PCA-reduced) training rows where the distances were precomputed: new rows are
        placed from their distances to them.
    neighbours_ : str
        How the neighbour graph was found: ``"all pairs"``, ``"exact"`` or ``"approximate"``.
    """

    def __init__(self, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1,
                 pca_dims: int | None = 50, n_jobs: int = 1, random_state: Any = 0):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.pca_dims = pca_dims
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit umap-learn, ``n_neighbors`` clipped to ``n_samples - 1``; at least 4 rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        whole_number(self.n_neighbors, "n_neighbors", 2)
        _check_map_settings(self)
        fraction(self.min_dist, "min_dist")  # at most UMAP's spread (1)
        X = fit_input(self, X, min_samples=4)  # UMAP's neighbour graph needs a few neighbours
        with warnings.catch_warnings():
            # umap-learn imports numba/pynndescent, which warn about things we do not control
            warnings.simplefilter("ignore")
            import umap

            self.pca_ = _pre_pca(X, self.pca_dims, self.random_state)
            Xp = np.asarray(self._pre(X), dtype=np.float32)  # what umap-learn computes distances in
            self.train_rows_ = Xp if len(Xp) < UMAP_EXACT_BELOW else None
            k = int(min(self.n_neighbors, X.shape[0] - 1))
            self.n_neighbors_ = k  # what was used (the map's .json records it)
            precomputed_knn: tuple = (None, None, None)
            if self.train_rows_ is not None:
                self.neighbours_ = "all pairs"
            else:
                search = _Search(Xp, searches_exactly(len(Xp)), self.random_state)
                # the index may search exactly above the line too, where an approximate search would gain nothing
                self.neighbours_ = "exact" if search.index.exact_ else "approximate"
                precomputed_knn = (*search.query(Xp, k), search)
            self.umap_ = umap.UMAP(
                n_components=self.n_components,
                n_neighbors=k,
                min_dist=self.min_dist,
                metric="euclidean" if self.train_rows_ is None else "precomputed",
                precomputed_knn=precomputed_knn,
                random_state=self.random_state,
                n_jobs=1 if self.random_state is not None else self.n_jobs,
                verbose=False,
            )
            self.embedding_ = self.umap_.fit_transform(Xp if self.train_rows_ is None else _distances(Xp, Xp))
            if self.train_rows_ is not None:  # umap-learn keeps the N x N distances; its transform reads their count
                self.umap_._raw_data = np.empty((len(Xp), 0), np.float32)
        return self

    def fit_transform(self, X, y=None, **kw):
        """Fit, and return the training embedding ``embedding_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_components), float64
        """
        return np.array(self.fit(X, y).embedding_, dtype=np.float64, copy=True)

    def transform(self, X):
        """Embed new rows with the fitted UMAP (umap-learn's ``transform``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components), float64
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Xp = np.asarray(self._pre(new_input(self, X)), dtype=np.float32)
            if self.train_rows_ is not None:  # precomputed: the distances to the training rows
                Xp = _distances(Xp, self.train_rows_)
            return self.umap_.transform(Xp).astype(np.float64)
