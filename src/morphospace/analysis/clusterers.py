"""The clusterers of the feature study, as scikit-learn estimators: K-Means and Gaussian mixtures
over a range of K (chosen by silhouette / BIC, no labels), DBSCAN with eps from the k-distance
knee, HDBSCAN. Each follows scikit-learn (``fit``, ``labels_``, ``predict`` where it exists) and
passes its ``check_estimator`` (tests/test_estimator_checks.py).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Iterable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from ..errors import InvalidArgument
from .inputs import fit_input, new_input

log = logging.getLogger("morphospace")

__all__ = ["DENSITY_MAX_DIMS",
           "internal_scores",
           "KMeansSelect",
           "k_distances",
           "knee_index",
           "DBSCANAuto",
           "HDBSCANClusterer",
           "GMMSelect"]


# above this many dimensions density clustering is unreliable (distances concentrate)
DENSITY_MAX_DIMS = 10


def _valid_ks(k_range: Iterable[int], n: int) -> list[int]:
    ks = sorted({int(k) for k in k_range})
    if not ks or ks[0] < 2:
        raise InvalidArgument(f"cluster counts must be >= 2, got {ks}")
    ok = [k for k in ks if k < n]
    if not ok:
        raise InvalidArgument(f"{n} samples are too few for {ks[0]} clusters")
    return ok


def internal_scores(X: np.ndarray, labels: np.ndarray, sample_size: int | None = 5000,
                    random_state: Any = 0) -> dict[str, float]:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin of a labelling (noise rows left out).

    The silhouette is O(n^2); above ``sample_size`` rows it is estimated on a
    random sample of that size. Scores are NaN when fewer than 2 clusters remain.
    """
    keep = labels >= 0
    Xk, lk = X[keep], labels[keep]
    n_clusters = np.unique(lk).size
    if n_clusters < 2 or n_clusters >= lk.size:
        return {"silhouette": np.nan, "calinski_harabasz": np.nan, "davies_bouldin": np.nan}
    ss = sample_size if sample_size and lk.size > sample_size else None
    return {
        "silhouette": float(silhouette_score(Xk, lk, sample_size=ss, random_state=random_state)),
        "calinski_harabasz": float(calinski_harabasz_score(Xk, lk)),
        "davies_bouldin": float(davies_bouldin_score(Xk, lk)),
    }


class KMeansSelect(ClusterMixin, BaseEstimator):
    """K-Means for every k of ``k_range``, scored, with the silhouette-best k selected.

    Parameters
    ----------
    k_range : iterable of int
        Cluster counts to fit (those >= n_samples are skipped).
    random_state : int or None
    n_init : int
        K-Means restarts per k (the best inertia is kept).
    silhouette_sample : int or None
        Rows used to estimate the silhouette (None: all; it is O(n^2)).

    Attributes
    ----------
    scores_ : DataFrame
        One row per k: k, silhouette, calinski_harabasz, davies_bouldin, inertia.
    best_k_ : int
        The k of highest silhouette.
    models_ : dict of int -> KMeans
    labels_by_k_ : dict of int -> ndarray
    labels_ : ndarray
        Labels at ``best_k_``.
    """

    def __init__(self, k_range: Iterable[int] = (3, 4, 5, 6, 7, 8), random_state: Any = 0, n_init: int = 3,
                 silhouette_sample: int | None = 5000):
        self.k_range = k_range
        self.random_state = random_state
        self.n_init = n_init
        self.silhouette_sample = silhouette_sample

    def fit(self, X, y=None):
        """Fit K-Means for every usable k of ``k_range`` and keep the silhouette-best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        InvalidArgument
            ``X`` is invalid, ``k_range`` holds a k below 2, or no k is below ``n_samples``.
        """
        X = fit_input(self, X)
        rows = []
        self.models_, self.labels_by_k_ = {}, {}
        for k in _valid_ks(self.k_range, X.shape[0]):
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(X)
            self.models_[k] = km
            self.labels_by_k_[k] = km.labels_.astype(np.int64)
            rows.append({"k": k, **internal_scores(X, km.labels_, self.silhouette_sample, self.random_state),
                         "inertia": float(km.inertia_)})
        self.scores_ = pd.DataFrame(rows)
        sil = self.scores_["silhouette"].to_numpy()
        idx = int(np.nanargmax(sil)) if np.any(np.isfinite(sil)) else 0
        self.best_k_ = int(self.scores_["k"].iloc[idx])
        self.labels_ = self.labels_by_k_[self.best_k_]
        self.cluster_centers_ = self.models_[self.best_k_].cluster_centers_
        return self

    def predict(self, X, k: int | None = None):
        """Nearest-centre labels at ``k`` (default: ``best_k_``)."""
        X = new_input(self, X)
        return self.models_[self.best_k_ if k is None else k].predict(X)


def k_distances(X: np.ndarray, k: int) -> np.ndarray:
    """Sorted distance of every row to its k-th nearest row, counting the row itself.

    With ``k = min_samples`` this is, per row, the smallest ``eps`` at which
    DBSCAN makes it a core point.
    """
    k = int(min(k, X.shape[0]))
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    dist, _ = nn.kneighbors(X)
    return np.sort(dist[:, -1])


def knee_index(curve: np.ndarray) -> int:
    """Index of the knee of an increasing curve: the point farthest from its chord.

    Both axes are scaled to [0, 1] first, so the answer does not depend on units.
    For the sorted k-distance curve (flat, then steep) the knee is where the
    dense rows end and the sparse ones begin.
    """
    y = np.asarray(curve, dtype=np.float64)
    if y.size < 3 or y[-1] == y[0]:
        return int(y.size // 2)
    x = np.linspace(0.0, 1.0, y.size)
    yn = (y - y[0]) / (y[-1] - y[0])
    # distance to the chord y = x, up to the constant 1/sqrt(2); below the chord is positive
    return int(np.argmax(x - yn))


class DBSCANAuto(ClusterMixin, BaseEstimator):
    """DBSCAN with ``eps`` at the knee of the sorted k-distance curve.

    Parameters
    ----------
    min_samples : int or None
        DBSCAN's ``min_samples`` (the row itself included) and the k of the
        k-distance curve. None: ``2 * n_features``, at least 4 and at most 100
        (the Sander et al. rule, bounded).
    eps : float or None
        A fixed ``eps``; None chooses it at the knee.

    Attributes
    ----------
    eps_ : float
    min_samples_ : int
    k_distances_ : ndarray
        The sorted k-distance curve.
    knee_index_ : int
    labels_ : ndarray (-1 = noise)
    n_clusters_ : int
    noise_fraction_ : float
    """

    def __init__(self, min_samples: int | None = None, eps: float | None = None):
        self.min_samples = min_samples
        self.eps = eps

    def fit(self, X, y=None):
        """Run DBSCAN with ``eps`` at the knee of the k-distance curve (unless fixed).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        X = fit_input(self, X)
        if X.shape[1] > DENSITY_MAX_DIMS:
            log.warning("DBSCAN on %d dimensions: density clustering is unreliable above %d "
                        "(distances concentrate); cluster a 2-D reduction instead",
                        X.shape[1], DENSITY_MAX_DIMS)
        ms = self.min_samples or int(np.clip(2 * X.shape[1], 4, 100))
        ms = int(min(ms, X.shape[0]))
        self.min_samples_ = ms
        self.k_distances_ = k_distances(X, ms)
        self.knee_index_ = knee_index(self.k_distances_)
        if self.eps is not None:
            eps = float(self.eps)
        else:
            eps = float(self.k_distances_[self.knee_index_])
            if eps <= 0:  # duplicated rows: take the smallest positive distance
                positive = self.k_distances_[self.k_distances_ > 0]
                eps = float(positive[0]) if positive.size else 1e-12
        self.eps_ = eps
        db = DBSCAN(eps=eps, min_samples=ms).fit(X)
        self.labels_ = db.labels_.astype(np.int64)
        self.core_sample_indices_ = db.core_sample_indices_
        self.n_clusters_ = int(np.unique(self.labels_[self.labels_ >= 0]).size)
        self.noise_fraction_ = float(np.mean(self.labels_ < 0))
        return self


class HDBSCANClusterer(ClusterMixin, BaseEstimator):
    """HDBSCAN (scikit-learn's), with a minimum cluster size that scales with the data.

    Parameters
    ----------
    min_cluster_size : int or None
        None: 1% of the rows, at least 5 (scikit-learn's fixed default of 5
        splits 20,000 galaxies into hundreds of tiny clusters).
    min_samples : int or None
        None: same as ``min_cluster_size`` (scikit-learn's convention).

    Attributes
    ----------
    labels_ : ndarray (-1 = noise)
    probabilities_ : ndarray
        Strength of each row's membership of its cluster (0 for noise).
    n_clusters_ : int
    noise_fraction_ : float
    min_cluster_size_ : int
    """

    def __init__(self, min_cluster_size: int | None = None, min_samples: int | None = None):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples

    def fit(self, X, y=None):
        """Run HDBSCAN with the minimum cluster size scaled to the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        X = fit_input(self, X)
        if X.shape[1] > DENSITY_MAX_DIMS:
            log.warning("HDBSCAN on %d dimensions: slow and unreliable above %d; "
                        "cluster a 2-D reduction instead", X.shape[1], DENSITY_MAX_DIMS)
        mcs = self.min_cluster_size or max(5, X.shape[0] // 100)
        mcs = int(max(2, min(mcs, X.shape[0])))
        self.min_cluster_size_ = mcs
        kw: dict[str, Any] = {"min_cluster_size": mcs, "min_samples": self.min_samples}
        if "copy" in inspect.signature(HDBSCAN.__init__).parameters:
            kw["copy"] = True  # scikit-learn 1.9 warns unless told
        hd = HDBSCAN(**kw).fit(X)
        self.labels_ = hd.labels_.astype(np.int64)
        # HDBSCAN marks infinite rows -2, -3 ...; only finite rows reach here, but be safe
        self.labels_[self.labels_ < -1] = -1
        self.probabilities_ = np.asarray(hd.probabilities_, dtype=np.float64)
        self.n_clusters_ = int(np.unique(self.labels_[self.labels_ >= 0]).size)
        self.noise_fraction_ = float(np.mean(self.labels_ < 0))
        return self


class GMMSelect(ClusterMixin, BaseEstimator):
    """Gaussian mixtures for every k of ``k_range``; the BIC-best one is kept.

    Parameters
    ----------
    k_range : iterable of int
    covariance_type : {"diag", "full", "spherical", "tied"}
    random_state : int or None
    n_init : int
    reg_covar : float
    max_iter : int

    Attributes
    ----------
    scores_ : DataFrame
        One row per k: k, bic, aic, log_likelihood (mean per row), converged.
    best_k_ : int
        The k of lowest BIC.
    model_ : GaussianMixture
        The mixture at ``best_k_``.
    labels_ : ndarray
    probabilities_ : ndarray of shape (n_samples, best_k_)
    """

    def __init__(self, k_range: Iterable[int] = (3, 4, 5, 6, 7, 8), covariance_type: str = "diag",
                 random_state: Any = 0, n_init: int = 1, reg_covar: float = 1e-6, max_iter: int = 200):
        self.k_range = k_range
        self.covariance_type = covariance_type
        self.random_state = random_state
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.max_iter = max_iter

    def fit(self, X, y=None):
        """Fit a Gaussian mixture for every usable k of ``k_range`` and keep the BIC-best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        InvalidArgument
            ``X`` is invalid, ``covariance_type`` unknown, or no usable k (as in :class:`KMeansSelect`).
        """
        X = fit_input(self, X)
        if self.covariance_type not in ("diag", "full", "spherical", "tied"):
            raise InvalidArgument(f"unknown GMM covariance type '{self.covariance_type}'")
        rows, models = [], {}
        for k in _valid_ks(self.k_range, X.shape[0]):
            gm = GaussianMixture(n_components=k, covariance_type=self.covariance_type,
                                 random_state=self.random_state, n_init=self.n_init,
                                 reg_covar=self.reg_covar, max_iter=self.max_iter).fit(X)
            models[k] = gm
            rows.append({"k": k, "bic": float(gm.bic(X)), "aic": float(gm.aic(X)),
                         "log_likelihood": float(gm.score(X)), "converged": bool(gm.converged_)})
        self.models_ = models
        self.scores_ = pd.DataFrame(rows)
        self.best_k_ = int(self.scores_["k"].iloc[int(np.argmin(self.scores_["bic"].to_numpy()))])
        self.model_ = models[self.best_k_]
        self.n_iter_ = int(self.model_.n_iter_)
        self.probabilities_ = self.model_.predict_proba(X)
        self.labels_ = np.argmax(self.probabilities_, axis=1).astype(np.int64)
        return self

    def predict(self, X):
        """Most probable component of each row under the BIC-best mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples,), int64
        """
        X = new_input(self, X)
        return self.model_.predict(X).astype(np.int64)

    def predict_proba(self, X):
        """Probability of each component of the BIC-best mixture, per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, best_k_)
        """
        X = new_input(self, X)
        return self.model_.predict_proba(X)
