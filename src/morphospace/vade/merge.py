"""Over-cluster and merge: mixture components combined into clusters by entropy.

A Gaussian mixture fitted by BIC describes the *density* of the latent space, and a group
of galaxies that is not Gaussian (a curved or skewed cloud) takes several components: on the
SDSS galaxies the BIC wants every component it is offered. Baudry et al. (2010, "Combining
mixture components for clustering", JCGS 19, 332) merge components greedily: at each step
the pair whose union lowers the entropy of the soft assignment the most,

    E = - sum_i sum_k p_ik log p_ik,

is joined (its probabilities add), down to one cluster. The number of clusters is the elbow
of E against the number of clusters: a two-segment piecewise-linear fit (their section 4),
where the merges of overlapping components (large drops, since the galaxies were split
between them) give way to merges of separate groups. No label is involved at any point.

:class:`ComponentMerger` follows scikit-learn: ``fit`` on the (N, K) responsibilities,
fitted state in ``groups_``, ``n_clusters_``, ``entropy_path_``; ``transform`` sums a new
(N, K) matrix into (N, n_clusters_) cluster probabilities and ``predict`` takes the argmax.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

__all__ = ["ComponentMerger", "entropy", "elbow"]


def entropy(proba: np.ndarray) -> float:
    """``- sum p log p`` of a soft assignment (0 log 0 = 0)."""
    p = np.asarray(proba, dtype=np.float64)
    return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())


def _plogp(p: np.ndarray) -> np.ndarray:
    return p * np.log(np.where(p > 0, p, 1.0))


def elbow(n_clusters: np.ndarray, values: np.ndarray, min_k: int = 2) -> int:
    """The breakpoint of the best two-segment piecewise-linear fit of ``values`` against ``n_clusters``.

    Both segments share the breakpoint; the returned ``n_clusters`` is at least ``min_k``.
    """
    x = np.asarray(n_clusters, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    order = np.argsort(x)
    x, y = x[order], y[order]
    best, best_sse = int(x[-1]), np.inf
    for b in range(1, len(x) - 1):
        if x[b] < min_k:
            continue
        sse = 0.0
        for seg in (slice(0, b + 1), slice(b, len(x))):
            xs, ys = x[seg], y[seg]
            if len(xs) >= 2:
                coef = np.polyfit(xs, ys, 1)
                sse += float(((np.polyval(coef, xs) - ys) ** 2).sum())
        if sse < best_sse:
            best, best_sse = int(x[b]), sse
    return best


class ComponentMerger(BaseEstimator):
    """Merge mixture components into clusters by entropy (see the module docstring).

    Parameters
    ----------
    n_clusters : int or None
        Fix the number of clusters; ``None`` takes the elbow of the entropy path.
    min_clusters : int
        The elbow is not taken below this.
    """

    def __init__(self, n_clusters: int | None = None, min_clusters: int = 2):
        self.n_clusters = n_clusters
        self.min_clusters = min_clusters

    def fit(self, proba: np.ndarray) -> "ComponentMerger":
        """Merge the components greedily down to one, and keep the grouping at the chosen number of clusters.

        That number is ``n_clusters`` if set, else the elbow of the entropy path (not below
        ``min_clusters``); with two components or fewer, every component is its own cluster.

        Parameters
        ----------
        proba : ndarray of shape (N, K)
            Component probabilities of each row (finite, non-negative).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            ``proba`` is not a finite non-negative (N, K) matrix, or ``n_clusters`` is not in 1..K.
        """
        p = np.asarray(proba, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] < 1 or len(p) < 1:
            raise ValueError(f"expected an (N, K) matrix of cluster probabilities, got shape {p.shape}")
        if not np.isfinite(p).all() or (p < 0).any():
            raise ValueError("cluster probabilities must be finite and non-negative")
        k = p.shape[1]
        if self.n_clusters is not None and not 1 <= self.n_clusters <= k:
            raise ValueError(f"n_clusters must be in 1..{k}, got {self.n_clusters}")
        groups: list[list[int]] = [[c] for c in range(k)]
        cur = p.copy()
        path = {k: ([list(g) for g in groups], entropy(cur))}
        own = _plogp(cur).sum(0)
        while cur.shape[1] > 1:
            best = (-np.inf, 0, 1)
            for a in range(cur.shape[1]):
                # entropy decrease of merging a with every b > a, vectorised over b
                joint = _plogp(cur[:, a:a + 1] + cur[:, a + 1:]).sum(0)
                gain = joint - own[a] - own[a + 1:]
                if len(gain) and gain.max() > best[0]:
                    best = (float(gain.max()), a, a + 1 + int(gain.argmax()))
            _, a, b = best
            cur[:, a] += cur[:, b]
            cur = np.delete(cur, b, 1)
            groups[a] = sorted(groups[a] + groups[b])
            del groups[b]
            own = _plogp(cur).sum(0)
            path[cur.shape[1]] = ([list(g) for g in groups], entropy(cur))
        ks = np.array(sorted(path))
        ents = np.array([path[kk][1] for kk in ks])
        chosen = self.n_clusters if self.n_clusters is not None else (
            elbow(ks, ents, min_k=min(self.min_clusters, k)) if k > 2 else k)
        self.groups_ = path[chosen][0]
        self.n_clusters_ = len(self.groups_)
        self.entropy_path_ = {int(kk): float(path[kk][1]) for kk in ks}
        self.n_components_in_ = k
        # component -> cluster
        self.cluster_of_component_ = np.empty(k, dtype=np.int64)
        for g, members in enumerate(self.groups_):
            self.cluster_of_component_[members] = g
        return self

    def _check(self, proba: np.ndarray) -> np.ndarray:
        if not hasattr(self, "groups_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this ComponentMerger is not fitted yet: call fit first")
        p = np.asarray(proba, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != self.n_components_in_:
            raise ValueError(f"expected (N, {self.n_components_in_}) probabilities, got shape {p.shape}")
        return p

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Cluster probabilities (N, n_clusters_): each cluster's component probabilities summed."""
        p = self._check(proba)
        return np.stack([p[:, g].sum(1) for g in self.groups_], 1)

    def predict(self, proba: np.ndarray) -> np.ndarray:
        """Cluster of each row: the argmax of :meth:`transform`.

        Parameters
        ----------
        proba : ndarray of shape (N, K)

        Returns
        -------
        ndarray of shape (N,)

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``proba`` does not have the K columns of the fitted matrix.
        """
        return self.transform(proba).argmax(1)

    def fit_predict(self, proba: np.ndarray) -> np.ndarray:
        """:meth:`fit` on ``proba``, then :meth:`predict` of it.

        Parameters
        ----------
        proba : ndarray of shape (N, K)

        Returns
        -------
        ndarray of shape (N,)
        """
        return self.fit(proba).predict(proba)
