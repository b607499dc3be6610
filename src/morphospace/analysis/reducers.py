"""The reducers of the feature study, as scikit-learn transformers: PCA, LDA (shrunk), t-SNE
(openTSNE) and UMAP (umap-learn), the last two after a PCA to 50 dimensions when wider. Each
passes scikit-learn's ``check_estimator`` except where a neighbour embedding cannot by design
(tests/test_estimator_checks.py).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from ..errors import InvalidArgument
from .inputs import fit_input, new_input
from .labels import missing_mask

__all__ = ["PCAReducer", "LDAReducer", "TSNEReducer", "UMAPReducer", "REDUCERS"]


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
        """Fit the PCA, ``n_components`` clipped to ``min(n_samples, n_features)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        X = fit_input(self, X)
        n_comp = min(self.n_components, *X.shape)
        self.pca_ = PCA(n_components=n_comp, random_state=self.random_state).fit(X)
        self.n_components_ = n_comp
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    def transform(self, X):
        """Coordinates of rows on the principal axes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components_)
        """
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
        """Fit the shrunk LDA on the labelled rows, and the within-class PCA padding when needed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (compared as strings); missing ones are left out of the fit.

        Returns
        -------
        self

        Raises
        ------
        InvalidArgument
            ``y`` is None, of another length than ``X`` or with fewer than 2 classes.
        """
        if y is None:
            raise InvalidArgument("LDA requires y to be passed, but the target y is None: give it a label column")
        X = fit_input(self, X)
        y = np.asarray(y, dtype=object)
        if y.shape[0] != X.shape[0]:
            raise InvalidArgument(f"LDA: {y.shape[0]} labels for {X.shape[0]} rows")
        keep = ~missing_mask(y)
        yk = np.array([str(v) for v in y[keep]])
        classes = np.unique(yk)
        if classes.size < 2:
            raise InvalidArgument(f"LDA needs at least 2 label classes, found {classes.size}")
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
        """Discriminant coordinates of rows, then the within-class padding columns.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, min(n_components, n_features_in_))
        """
        X = new_input(self, X)
        Z = self.lda_.transform(X)
        if self.pad_pca_ is not None:
            extra = (X - self._pad_mean) @ self.pad_pca_.components_.T
            Z = np.hstack([Z, extra])
        return Z


class _MapAfterPCA:
    """What the neighbour embeddings share: a PCA to ``pca_dims`` first (``pca_``, None when narrower)."""

    def _pre(self, X: np.ndarray) -> np.ndarray:
        return self.pca_.transform(X) if self.pca_ is not None else X

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


class TSNEReducer(_MapAfterPCA, TransformerMixin, BaseEstimator):
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
        """Fit, and return the training map itself (not the training rows re-projected into it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        # the training map itself, not a re-projection of the training rows into it
        return np.asarray(self.fit(X, y).embedding_)

    def transform(self, X):
        """Place new rows in the fitted map (openTSNE's ``transform``; the map does not move).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        return np.asarray(self.embedding_.transform(self._pre(new_input(self, X))))


UMAP_EXACT_BELOW = 4096  # umap-learn's own line: below it, every pairwise distance, no approximate search


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) in float64 (umap-learn's own function differs by
    rounding only: the same neighbour graph)."""
    from scipy.spatial.distance import cdist

    return cdist(a.astype(np.float64), b.astype(np.float64))


class UMAPReducer(_MapAfterPCA, TransformerMixin, BaseEstimator):
    """UMAP through umap-learn, after a PCA to ``pca_dims`` when wider.

    With a ``random_state`` umap-learn runs single-threaded (its parallel
    optimiser is not reproducible); ``random_state=None`` uses ``n_jobs`` threads.
    Below :data:`UMAP_EXACT_BELOW` rows umap-learn computes every pairwise distance, calling
    its distance function from Python once per pair (16 s for 3,359 rows, most of a run's
    UMAP); here scipy computes the same Euclidean matrix and umap-learn takes it as
    ``metric="precomputed"``, the same neighbour graph in a fraction of a second.

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
        X = fit_input(self, X, min_samples=4)  # UMAP's neighbour graph needs a few neighbours
        with warnings.catch_warnings():
            # umap-learn imports numba/pynndescent, which warn about things we do not control
            warnings.simplefilter("ignore")
            import umap

            self.pca_ = _pre_pca(X, self.pca_dims, self.random_state)
            Xp = np.asarray(self._pre(X), dtype=np.float32)  # what umap-learn computes distances in
            self.train_rows_ = Xp if len(Xp) < UMAP_EXACT_BELOW else None
            self.umap_ = umap.UMAP(
                n_components=self.n_components,
                n_neighbors=int(min(self.n_neighbors, X.shape[0] - 1)),
                min_dist=self.min_dist,
                metric="euclidean" if self.train_rows_ is None else "precomputed",
                random_state=self.random_state,
                n_jobs=1 if self.random_state is not None else self.n_jobs,
                verbose=False,
            )
            self.embedding_ = self.umap_.fit_transform(Xp if self.train_rows_ is None else _distances(Xp, Xp))
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
        return np.asarray(self.fit(X, y).embedding_, dtype=np.float64)

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


REDUCERS: dict[str, type] = {
    "pca": PCAReducer,
    "lda": LDAReducer,
    "tsne": TSNEReducer,
    "umap": UMAPReducer,
}
