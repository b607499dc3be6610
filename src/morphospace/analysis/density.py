"""Density clusterers as scikit-learn estimators: DBSCAN with ``eps`` at the knee of the k-distance
curve, and HDBSCAN with a minimum cluster size that scales with the data.

Both also *predict*: a new row joins the cluster of its nearest core row when it lies within that
cluster's reach, else it is noise (-1). That lets a run fit them on a reproducible sample of a
large set and extend the labels to every row (``cluster.fit_sample``), since neither fits a
million rows in memory and time (both are quadratic at worst).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN
from sklearn.neighbors import NearestNeighbors

from ..errors import InvalidArgument
from .chunked_dbscan import EDGE_BUDGET, dbscan  # here before they had a module of their own
from .inputs import fit_input, job_count, new_input, positive_number, whole_number

log = logging.getLogger("morphospace")

__all__ = ["DENSITY_MAX_DIMS", "EDGE_BUDGET", "k_distances", "knee_index", "dbscan", "DBSCANAuto", "HDBSCANClusterer"]

# above this many dimensions density clustering is unreliable (distances concentrate)
DENSITY_MAX_DIMS = 10
# rows per chunk of a prediction: bounds the neighbour queries' memory
_CHUNK = 65_536


def k_distances(X: np.ndarray, k: int, n_jobs: int | None = None) -> np.ndarray:
    """Sorted distance of every row to its k-th nearest row, counting the row itself.

    With ``k = min_samples`` this is, per row, the smallest ``eps`` at which
    DBSCAN makes it a core point. ``n_jobs``: threads of the (exact) neighbour search.
    """
    return np.sort(neighbour_distances(X, k, n_jobs)[:, -1])


def neighbour_distances(X: np.ndarray, k: int, n_jobs: int | None = None) -> np.ndarray:
    """Each row's distances to its k nearest rows, itself first (N, k), ascending."""
    k = int(min(k, X.shape[0]))
    return NearestNeighbors(n_neighbors=k, n_jobs=n_jobs).fit(X).kneighbors(X)[0]


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
    n_jobs : int or None
        Threads of the neighbour searches (exact, so the labels do not depend on it).

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

    def __init__(self, min_samples: int | None = None, eps: float | None = None, n_jobs: int | None = None):
        self.min_samples = min_samples
        self.eps = eps
        self.n_jobs = n_jobs

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
        if self.min_samples is not None:
            whole_number(self.min_samples, "min_samples")
        if self.eps is not None:
            positive_number(self.eps, "eps")
        job_count(self.n_jobs)
        X = fit_input(self, X)
        if X.shape[1] > DENSITY_MAX_DIMS:
            log.warning("DBSCAN on %d dimensions: density clustering is unreliable above %d "
                        "(distances concentrate); cluster a 2-D reduction instead",
                        X.shape[1], DENSITY_MAX_DIMS)
        if self.min_samples is not None and self.min_samples > X.shape[0]:
            # clipped to the rows, every row was a core row and all of them one cluster
            raise InvalidArgument(f"min_samples ({self.min_samples}) exceeds the {X.shape[0]} rows: no row could be a "
                                  "core row; give at most as many, or None to choose it from the data")
        ms = self.min_samples or int(np.clip(2 * X.shape[1], 4, 100))
        ms = int(min(ms, X.shape[0]))
        self.min_samples_ = ms
        row_dist = neighbour_distances(X, ms, self.n_jobs)  # once: the k-distance curve and predict's rule
        self.k_distances_ = np.sort(row_dist[:, -1])
        self.knee_index_ = knee_index(self.k_distances_)
        if self.eps is not None:
            eps = float(self.eps)
        else:
            eps = float(self.k_distances_[self.knee_index_])
            if eps <= 0:  # duplicated rows: take the smallest positive distance
                positive = self.k_distances_[self.k_distances_ > 0]
                eps = float(positive[0]) if positive.size else 1e-12
        self.eps_ = eps
        self.labels_, self.core_sample_indices_ = dbscan(X, eps, ms, n_jobs=self.n_jobs)
        self.components_ = X[self.core_sample_indices_]
        # what predict asks of a new row: would it be a core row among the fitted ones, or make one of them one
        self.X_fit_ = X
        self.core_with_one_more_ = row_dist[:, ms - 2] <= eps if ms > 1 else np.ones(len(X), dtype=bool)
        self.n_clusters_ = int(np.unique(self.labels_[self.labels_ >= 0]).size)
        self.noise_fraction_ = float(np.mean(self.labels_ < 0))
        return self

    def predict(self, X):
        """DBSCAN's rules applied to each new row as if it were one more fitted row: the cluster of
        the nearest core row within ``eps_`` (a border row); else the cluster of the nearest
        clustered fitted row within ``eps_`` that the new row makes a core row (it has
        ``min_samples_ - 1`` rows within ``eps_``, itself included), or that the new row itself,
        were it fitted, would be a core row beside (``min_samples_ - 1`` fitted rows within
        ``eps_``); else noise (-1). With the first rule alone, rows outside a fitting sample came
        out noise more often than rows in it (0.073 against 0.058 on two Gaussian blobs), since a
        fitted row counts towards its neighbours' density and a new one did not. For new rows: a
        fitted row given again counts twice (itself and its copy), so a border or noise row of
        ``labels_`` may be given a cluster here.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples,), int64
        """
        X = new_input(self, X)
        labels = np.full(X.shape[0], -1, dtype=np.int64)
        if not len(self.components_):
            return labels
        core_labels = self.labels_[self.core_sample_indices_]
        nn = NearestNeighbors(n_neighbors=1, n_jobs=self.n_jobs).fit(self.components_)
        others = self.min_samples_ - 1  # the fitted rows a new row needs within eps to be a core row
        rows_nn = NearestNeighbors(n_neighbors=others, n_jobs=self.n_jobs).fit(self.X_fit_) if others else None
        for start in range(0, X.shape[0], _CHUNK):
            chunk = labels[start:start + _CHUNK]
            dist, idx = nn.kneighbors(X[start:start + _CHUNK])
            near = dist[:, 0] <= self.eps_
            chunk[near] = core_labels[idx[near, 0]]
            rest = np.flatnonzero(~near)
            if rows_nn is None or not len(rest):
                continue
            dist, idx = rows_nn.kneighbors(X[start:start + _CHUNK][rest])
            dense = dist[:, -1:] <= self.eps_  # the new row would be a core row
            joined = (dist <= self.eps_) & (self.labels_[idx] >= 0) & (dense | self.core_with_one_more_[idx])
            joins = joined.any(1)
            nearest = idx[np.arange(len(rest)), joined.argmax(1)]  # neighbours come sorted by distance
            chunk[rest[joins]] = self.labels_[nearest[joins]]
        return labels


MAX_DEFAULT_MIN_SAMPLES = 50  # the default min_samples follows min_cluster_size up to this


class HDBSCANClusterer(ClusterMixin, BaseEstimator):
    """HDBSCAN (scikit-learn's), with a minimum cluster size that scales with the data.

    Parameters
    ----------
    min_cluster_size : int or None
        None: 1% of the rows, at least 5 (scikit-learn's fixed default of 5
        splits 20,000 galaxies into hundreds of tiny clusters).
    min_samples : int or None
        None: ``min_cluster_size`` up to :data:`MAX_DEFAULT_MIN_SAMPLES` (scikit-learn's
        convention, capped: every row's core distance is its ``min_samples``-th neighbour, and
        the 1% of a 50,000-row sample, 500 neighbours a row, made HDBSCAN and its extension to
        10^6 rows the slowest part of the cluster stage).
    n_jobs : int or None
        Threads of the neighbour searches (exact, so the labels do not depend on it).

    Attributes
    ----------
    labels_ : ndarray (-1 = noise)
    probabilities_ : ndarray
        Strength of each row's membership of its cluster (0 for noise).
    n_clusters_ : int
    noise_fraction_ : float
    min_cluster_size_ : int
    """

    def __init__(self, min_cluster_size: int | None = None, min_samples: int | None = None,
                 n_jobs: int | None = None):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.n_jobs = n_jobs

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
        if self.min_cluster_size is not None:
            whole_number(self.min_cluster_size, "min_cluster_size", 2)
        if self.min_samples is not None:
            whole_number(self.min_samples, "min_samples")
        job_count(self.n_jobs)
        X = fit_input(self, X)
        if X.shape[1] > DENSITY_MAX_DIMS:
            log.warning("HDBSCAN on %d dimensions: slow and unreliable above %d; "
                        "cluster a 2-D reduction instead", X.shape[1], DENSITY_MAX_DIMS)
        for name in ("min_cluster_size", "min_samples"):
            # clipped to the rows, every row came out noise without a word
            if (given := getattr(self, name)) is not None and given > X.shape[0]:
                raise InvalidArgument(f"{name} ({given}) exceeds the {X.shape[0]} rows: no cluster could form; give at "
                                      "most as many, or None to choose it from the data")
        mcs = self.min_cluster_size or max(5, X.shape[0] // 100)
        mcs = int(max(2, min(mcs, X.shape[0])))
        self.min_cluster_size_ = mcs
        ms = int(min(self.min_samples or min(mcs, MAX_DEFAULT_MIN_SAMPLES), X.shape[0]))
        kw: dict[str, Any] = {"min_cluster_size": mcs, "min_samples": ms, "n_jobs": self.n_jobs}
        if "copy" in inspect.signature(HDBSCAN.__init__).parameters:
            kw["copy"] = True  # scikit-learn 1.9 warns unless told
        hd = HDBSCAN(**kw).fit(X)
        self.labels_ = hd.labels_.astype(np.int64)
        # HDBSCAN marks infinite rows -2, -3 ...; only finite rows reach here, but be safe
        self.labels_[self.labels_ < -1] = -1
        self.probabilities_ = np.asarray(hd.probabilities_, dtype=np.float64)
        self.n_clusters_ = int(np.unique(self.labels_[self.labels_ >= 0]).size)
        self.noise_fraction_ = float(np.mean(self.labels_ < 0))
        # what predict needs: the rows, their core distances (as HDBSCAN counts them: the row
        # itself is its first neighbour) and each cluster's reach (its sparsest member's core)
        self.min_samples_ = ms
        self.X_fit_ = X
        self.core_distances_ = neighbour_distances(X, self.min_samples_, self.n_jobs)[:, -1]
        self.cluster_reach_ = np.array([self.core_distances_[self.labels_ == c].max()
                                        for c in range(self.n_clusters_)], dtype=np.float64)
        return self

    def predict(self, X):
        """Labels of new rows: among each row's ``min_samples_`` nearest fitted rows, the clustered one
        nearest in mutual-reachability distance (HDBSCAN's own metric) gives the cluster, unless the
        new row is sparser than every member of that cluster (noise, -1).

        This approximates the ``hdbscan`` package's ``approximate_predict``, which scikit-learn's
        HDBSCAN lacks; a fitted row that HDBSCAN called noise may be given a cluster here.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples,), int64
        """
        return self._assign(new_input(self, X))[0]

    def predict_membership(self, X):
        """``(labels, membership)`` of new rows: the membership is the chosen fitted row's,
        scaled down by how much farther (in mutual reachability) the new row is; 0 for noise."""
        return self._assign(new_input(self, X))

    def _new_core_distances(self, dist: np.ndarray) -> np.ndarray:
        """The core distance of new rows from their distances to the ``min_samples_`` nearest fitted
        rows, as a fitted row's is counted (itself its first neighbour): the (min_samples - 1)th
        fitted row, the distance it would have were it one more fitted row. The min_samples-th
        made new rows sparser than fitted ones, and noise more often."""
        if self.min_samples_ < 2:
            return np.zeros(len(dist))
        return dist[:, self.min_samples_ - 2]

    def _assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.full(X.shape[0], -1, dtype=np.int64)
        member = np.zeros(X.shape[0], dtype=np.float64)
        if not self.n_clusters_:
            return labels, member
        nn = NearestNeighbors(n_neighbors=self.min_samples_, n_jobs=self.n_jobs).fit(self.X_fit_)
        for start in range(0, X.shape[0], _CHUNK):
            dist, idx = nn.kneighbors(X[start:start + _CHUNK])
            core = self._new_core_distances(dist)[:, None]
            mrd = np.maximum(np.maximum(dist, core), self.core_distances_[idx])
            mrd[self.labels_[idx] < 0] = np.inf  # only clustered rows can pass on a cluster
            best = np.argmin(mrd, axis=1)
            rows = np.arange(len(idx))
            near, reach = idx[rows, best], mrd[rows, best]
            lab = self.labels_[near]
            ok = np.isfinite(reach) & (core[:, 0] <= self.cluster_reach_[np.maximum(lab, 0)])
            labels[start:start + _CHUNK][ok] = lab[ok]
            scale = np.divide(self.core_distances_[near], reach, out=np.ones_like(reach), where=reach > 0)
            member[start:start + _CHUNK][ok] = (self.probabilities_[near] * np.minimum(scale, 1.0))[ok]
        return labels, member
