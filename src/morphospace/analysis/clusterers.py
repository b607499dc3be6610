"""The clusterers of the feature study, as scikit-learn estimators: K-Means and Gaussian mixtures
over a range of K (chosen by silhouette / BIC, no labels); the density clusterers (DBSCAN,
HDBSCAN) are in :mod:`.density`. Each follows scikit-learn (``fit``, ``labels_``, ``predict``)
and passes its ``check_estimator`` (tests/test_estimator_checks.py).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state

from ..errors import InvalidArgument
from .inputs import fit_input, new_input, whole_number

__all__ = ["internal_scores", "k_selection_curves", "KMeansSelect", "GMMSelect"]

# the curves a k-selection table (``comparisons/k_selection_<rep>.csv``) can hold: (method, score)
K_CURVES = (("kmeans", "silhouette"), ("kmeans", "calinski_harabasz"), ("gmm", "bic"))


def k_selection_curves(table) -> list[tuple[str, str]]:
    """The curves of :data:`K_CURVES` a k-selection table holds a value of: what its figure draws
    (none for a run of DBSCAN or HDBSCAN alone, or of fewer galaxies than every k)."""
    if "method" not in table:
        return []
    return [(method, col) for method, col in K_CURVES
            if col in table and table.loc[table["method"] == method, col].notna().any()]

log = logging.getLogger("morphospace")


def _valid_ks(k_range: Iterable[int] | int, n: int) -> list[int]:
    """The cluster counts of ``k_range`` (one whole number, or several) that ``n`` samples allow."""
    if isinstance(k_range, (int, np.integer)) and not isinstance(k_range, bool):
        k_range = [k_range]
    if isinstance(k_range, Iterator):  # used up by the first fit: a second would see no k at all
        raise InvalidArgument(f"k_range must be a list, tuple or range, not a one-time iterator ({k_range!r})")
    try:
        given = list(k_range)
    except TypeError:
        raise InvalidArgument(f"k_range must be whole numbers (e.g. [3, 4, 5]), got {k_range!r}") from None
    ks = sorted({whole_number(k, "every k of k_range", 1) for k in given})
    if not ks or ks[0] < 2:
        raise InvalidArgument(f"cluster counts must be >= 2, got {ks}")
    ok = [k for k in ks if k < n]
    if not ok:
        raise InvalidArgument(f"{n} samples are too few for {ks[0]} clusters")
    if len(ok) < len(ks):  # said, not dropped silently
        log.warning("%d samples are too few for %s clusters: skipped", n, _listed([k for k in ks if k >= n]))
    return ok


def _listed(ks: list[int]) -> str:
    """Sorted whole numbers said briefly: runs of three or more as a range (``300-399``, not 100 numbers)."""
    parts, start = [], 0
    for i in range(1, len(ks) + 1):
        if i == len(ks) or ks[i] != ks[i - 1] + 1:
            run = ks[start:i]
            parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)))
            start = i
    return ", ".join(parts)


def internal_scores(X: np.ndarray, labels: np.ndarray, sample_size: int | None = 5000,
                    random_state: Any = 0) -> dict[str, float]:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin of a labelling (noise rows left out).

    The silhouette is O(n^2); above ``sample_size`` rows it is estimated on a
    random sample of that size (NaN when the sample holds one cluster only). Scores are NaN
    when fewer than 2 clusters remain.
    """
    keep = labels >= 0
    Xk, lk = X[keep], labels[keep]
    n_clusters = np.unique(lk).size
    if n_clusters < 2 or n_clusters >= lk.size:
        return {"silhouette": np.nan, "calinski_harabasz": np.nan, "davies_bouldin": np.nan}
    silhouette = np.nan
    if sample_size and lk.size > sample_size:
        # the estimate on a sample: a tiny cluster beside a huge one may be missing from it
        rows = check_random_state(random_state).permutation(lk.size)[:sample_size]  # scikit-learn's own draw
        if np.unique(lk[rows]).size >= 2:
            silhouette = float(silhouette_score(Xk[rows], lk[rows]))
    else:
        silhouette = float(silhouette_score(Xk, lk))
    return {
        "silhouette": silhouette,
        "calinski_harabasz": float(calinski_harabasz_score(Xk, lk)),
        "davies_bouldin": float(davies_bouldin_score(Xk, lk)),
    }


class KMeansSelect(ClusterMixin, BaseEstimator):
    """K-Means for every k of ``k_range``, scored, with the silhouette-best k selected.

    Parameters
    ----------
    k_range : int, or a list, tuple or range of int
        Cluster counts to fit (those >= n_samples are skipped).
    random_state : int or None
    n_init : int
        K-Means restarts per k (the best inertia is kept).
    silhouette_sample : int or None
        Rows used to estimate the silhouette (None: all; it is O(n^2)).
    minibatch_above : int or None
        Above this many rows, MiniBatchKMeans (batches of 4,096 rows: time and memory grow
        linearly) instead of Lloyd's K-Means over every row at every step. None: never.

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

    def __init__(self, k_range: Iterable[int] | int = (3, 4, 5, 6, 7, 8), random_state: Any = 0, n_init: int = 3,
                 silhouette_sample: int | None = 5000, minibatch_above: int | None = None):
        self.k_range = k_range
        self.random_state = random_state
        self.n_init = n_init
        self.silhouette_sample = silhouette_sample
        self.minibatch_above = minibatch_above

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
        whole_number(self.n_init, "n_init")  # scikit-learn's refusal named KMeans, not this estimator
        if self.minibatch_above is not None:  # text failed comparing, a TypeError
            whole_number(self.minibatch_above, "minibatch_above", 0)
        X = fit_input(self, X)
        if self.silhouette_sample is not None:  # a negative one left rows out of the silhouette
            whole_number(self.silhouette_sample, "silhouette_sample", 2)
        rows = []
        self.models_, self.labels_by_k_ = {}, {}
        minibatch = self.minibatch_above is not None and X.shape[0] > self.minibatch_above
        for k in _valid_ks(self.k_range, X.shape[0]):
            if minibatch:
                km = MiniBatchKMeans(n_clusters=k, n_init=self.n_init, batch_size=4096,
                                     random_state=self.random_state).fit(X)
            else:
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
        """Nearest-centre labels at ``k`` (default: ``best_k_``; one of ``k_range``), int64 as ``labels_``."""
        X = new_input(self, X)
        k = self.best_k_ if k is None else k
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k not in self.models_:
            raise InvalidArgument(f"k must be one of the fitted k_range {sorted(self.models_)}, got {k!r}")
        return self.models_[k].predict(X).astype(np.int64)


class GMMSelect(ClusterMixin, BaseEstimator):
    """Gaussian mixtures for every k of ``k_range``; the BIC-best one is kept.

    Parameters
    ----------
    k_range : int, or a list, tuple or range of int
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
    at_range_top_ : bool
        Whether ``best_k_`` is the largest k tried (of more than one): the BIC was
        still falling there, so the range chose k, not the data.
    model_ : GaussianMixture
        The mixture at ``best_k_``.
    labels_ : ndarray
    probabilities_ : ndarray of shape (n_samples, best_k_)
    """

    def __init__(self, k_range: Iterable[int] | int = (3, 4, 5, 6, 7, 8), covariance_type: str = "diag",
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
        whole_number(self.n_init, "n_init")
        whole_number(self.max_iter, "max_iter")  # 0: a mixture that never ran an EM step, unsaid
        if isinstance(self.reg_covar, (bool, np.bool_)) or not isinstance(self.reg_covar, (int, float, np.number)) \
                or not np.isfinite(self.reg_covar) or self.reg_covar < 0:
            raise InvalidArgument(f"reg_covar must be a finite number >= 0, got {self.reg_covar!r}")
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
        self.at_range_top_ = len(models) > 1 and self.best_k_ == max(models)
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
