"""Over-cluster and merge: mixture components combined into clusters by entropy.

A Gaussian mixture fitted by BIC describes the *density* of the latent space, and a group
of galaxies that is not Gaussian (a curved or skewed cloud) takes several components: on the
SDSS galaxies the BIC wants every component it is offered. Baudry et al. (2010, "Combining
mixture components for clustering", JCGS 19, 332) merge components greedily: at each step
the pair whose union lowers the entropy of the soft assignment the most,

    E = - sum_i sum_k p_ik log p_ik,

is joined (its probabilities add), down to one cluster. The number of clusters is the elbow
of their *rescaled* entropy plot: E against the cumulated number of galaxies the merges have
involved (those assigned to either merged group), a two-segment piecewise-linear fit (their
section 4 and abstract; mclust's ``entPlot(abc = "normalized")``), where the merges of
overlapping components (large drops for the galaxies involved, since they were split between
them) give way to merges of separate groups. Where even the best first merge lowers the entropy
by almost nothing (less than ``tol`` nats a galaxy of the two it joins), no two components share galaxies and there is
no elbow to find: every component stays its own cluster (the two-segment fit, whose breakpoint is
an inner point, would otherwise join two separate groups, and of three always two). Against the
number of clusters instead (``elbow_on = "clusters"``, the standard plot), a merge of two small components counts as much
as one of two large ones, and the elbow moves with every small component: on sdss-gz1 framed
by the galaxy it stopped at 5, 6 and 8 clusters for three seeds (seed ARI 0.32), on the
rescaled plot at 7, 7 and 8 (0.57). No label is involved at any point.

:class:`ComponentMerger` follows scikit-learn: ``fit`` on the (N, K) responsibilities,
fitted state in ``groups_``, ``n_clusters_``, ``entropy_path_``, ``merged_path_``;
``transform`` sums a new (N, K) matrix into (N, n_clusters_) cluster probabilities and
``predict`` takes the argmax; ``fit_transform`` and ``fit_predict`` do both on the same rows.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator

__all__ = ["ComponentMerger", "entropy", "elbow"]


def entropy(proba: np.ndarray) -> float:
    """``- sum p log p`` of a soft assignment (0 log 0 = 0)."""
    p = np.asarray(proba, dtype=np.float64)
    return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())


def _plogp(p: np.ndarray) -> np.ndarray:
    return p * np.log(np.where(p > 0, p, 1.0))


def elbow(n_clusters: np.ndarray, values: np.ndarray, min_k: int = 2, x: np.ndarray | None = None) -> int:
    """The breakpoint of the best two-segment piecewise-linear fit of ``values`` against ``x``.

    Parameters
    ----------
    n_clusters : array of int
        The number of clusters of each point.
    values : array of float
        The entropy (or any curve) at each point.
    min_k : int
        No breakpoint at fewer clusters than this.
    x : array of float, optional
        The abscissa (default ``n_clusters``; :class:`ComponentMerger` passes the cumulated
        number of galaxies merged). Both segments share the breakpoint, which is an inner point.

    Returns
    -------
    int
        The ``n_clusters`` of the breakpoint (the largest ``n_clusters`` when no inner point
        qualifies).
    """
    k = np.asarray(n_clusters, dtype=np.int64)
    y = np.asarray(values, dtype=np.float64)
    xs_all = k.astype(np.float64) if x is None else np.asarray(x, dtype=np.float64)
    order = np.lexsort((-k, xs_all))  # by x; equal x (a merge of no galaxy) by falling K
    k, xs_all, y = k[order], xs_all[order], y[order]
    best, best_sse = int(k.max()), np.inf
    for b in range(1, len(k) - 1):
        if k[b] < min_k:
            continue
        sse = sum(_line_sse(xs_all[seg], y[seg]) for seg in (slice(0, b + 1), slice(b, len(k))))
        if sse < best_sse:
            best, best_sse = int(k[b]), sse
    return best


def _probabilities(proba, k: int | None = None) -> np.ndarray:
    """``proba`` as a float64 (N, K) matrix; a ValueError unless it is one, finite and non-negative (what
    ``fit`` refuses, ``transform`` and ``predict`` refuse alike: a NaN row would be put in cluster 0)."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected an (N, K) matrix of cluster probabilities, got shape {p.shape}")
    if k is not None and p.shape[1] != k:
        raise ValueError(f"expected (N, {k}) probabilities, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("cluster probabilities must be finite and non-negative")
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > 1e-3)
    if off.size:  # scores, counts or log-probabilities: the entropies and merges would be of something else
        raise ValueError(f"each row of cluster probabilities must sum to 1: {off.size} of {len(p)} do not (row "
                         f"{off[0]} sums to {sums[off[0]]:.4g})")
    return p


def _line_sse(x: np.ndarray, y: np.ndarray) -> float:
    """Squared residuals of the least-squares line through (x, y) (a constant where x does not vary)."""
    if len(x) < 2:
        return 0.0
    if np.ptp(x) == 0:
        return float(((y - y.mean()) ** 2).sum())
    coef = np.polyfit(x, y, 1)
    return float(((np.polyval(coef, x) - y) ** 2).sum())


class ComponentMerger(BaseEstimator):
    """Merge mixture components into clusters by entropy (see the module docstring).

    Parameters
    ----------
    n_clusters : int or None
        Fix the number of clusters; ``None`` takes the elbow of the entropy path.
    min_clusters : int
        The elbow is not taken below this.
    elbow_on : {"observations", "clusters"}
        The abscissa of the elbow: the cumulated number of galaxies merged (Baudry et al.'s
        rescaled plot, the default) or the number of clusters (their standard plot).
    tol : float
        Entropy decrease (nats) per galaxy of the two components it joins below which the best
        first merge joins components that share no galaxies: then every component is its own
        cluster (``n_clusters=None``).

    Attributes
    ----------
    groups_ : list of list of int
        The components of each cluster.
    n_clusters_ : int
    cluster_of_component_ : ndarray of shape (K,)
    labels_ : ndarray of shape (N,)
        The cluster of each fitted row.
    entropy_path_, merged_path_ : dict
        Per number of clusters on the greedy path: the entropy, and the galaxies merged so far.
    """

    def __init__(self, n_clusters: int | None = None, min_clusters: int = 2, elbow_on: str = "observations",
                 tol: float = 1e-3):
        self.n_clusters = n_clusters
        self.min_clusters = min_clusters
        self.elbow_on = elbow_on
        self.tol = tol

    def fit(self, proba: np.ndarray, y=None) -> "ComponentMerger":
        """Merge the components greedily down to one, and keep the grouping at the chosen number of clusters.

        That number is ``n_clusters`` if set, else the elbow of the entropy path against
        ``elbow_on`` (not below ``min_clusters``); with two components or fewer, or components
        that share no galaxies (the best merge lowers the entropy by less than ``tol`` a galaxy),
        every component is its own cluster.

        Parameters
        ----------
        proba : ndarray of shape (N, K)
            Component probabilities of each row (finite, non-negative, each row summing to 1
            within 1e-3).
        y : None
            Ignored (scikit-learn's signature, for pipelines).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            ``proba`` is not a finite non-negative (N, K) matrix whose rows sum to 1, or
            ``n_clusters`` is not in 1..K.
        """
        p = _probabilities(proba)
        if p.shape[1] < 1 or len(p) < 1:
            raise ValueError(f"expected an (N, K) matrix of cluster probabilities, got shape {p.shape}")
        k = p.shape[1]
        if self.n_clusters is not None and (isinstance(self.n_clusters, bool) or not isinstance(
                self.n_clusters, numbers.Integral) or not 1 <= self.n_clusters <= k):
            raise ValueError(f"n_clusters must be an integer in 1..{k} or None, got {self.n_clusters!r}")
        if self.elbow_on not in ("observations", "clusters"):
            raise ValueError(f"elbow_on must be 'observations' or 'clusters', got {self.elbow_on!r}")
        if isinstance(self.min_clusters, bool) or not isinstance(self.min_clusters, numbers.Integral) \
                or self.min_clusters < 1:
            raise ValueError(f"min_clusters must be an integer of at least 1, got {self.min_clusters!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) or not 0 <= self.tol < np.inf:
            raise ValueError(f"tol must be a finite number of at least 0, got {self.tol!r}")
        groups: list[list[int]] = [[c] for c in range(k)]
        cur = p.copy()
        path = {k: ([list(g) for g in groups], entropy(cur), 0)}
        own = _plogp(cur).sum(0)
        merged = 0  # galaxies involved in the merges so far (assigned to either merged group)
        first_drop = None  # (entropy drop of the first merge over its galaxies, how many they are)
        while cur.shape[1] > 1:
            best = (-np.inf, 0, 1)
            for a in range(cur.shape[1]):
                # entropy decrease of merging a with every b > a, vectorised over b
                joint = _plogp(cur[:, a:a + 1] + cur[:, a + 1:]).sum(0)
                gain = joint - own[a] - own[a + 1:]
                if len(gain) and gain.max() > best[0]:
                    best = (float(gain.max()), a, a + 1 + int(gain.argmax()))
            _, a, b = best
            assigned = cur.argmax(1)
            involved = (assigned == a) | (assigned == b)
            merged += int(np.count_nonzero(involved))
            if first_drop is None:  # the largest drop, counted on the galaxies of the two it joins
                rows = cur[involved]
                first_drop = (float((_plogp(rows[:, a] + rows[:, b]) - _plogp(rows[:, a]) - _plogp(rows[:, b])).sum()),
                              int(involved.sum()))
            cur[:, a] += cur[:, b]
            cur = np.delete(cur, b, 1)
            groups[a] = sorted(groups[a] + groups[b])
            del groups[b]
            own = _plogp(cur).sum(0)
            path[cur.shape[1]] = ([list(g) for g in groups], entropy(cur), merged)
        ks = np.array(sorted(path))
        ents = np.array([path[kk][1] for kk in ks])
        x = np.array([path[kk][2] for kk in ks], dtype=np.float64) if self.elbow_on == "observations" else None
        # the greedy merges' largest drop, per galaxy of the two components it joins and on those galaxies
        # alone (not the survey's: a small component split with a large one is no separate group however
        # large the survey, and the other components' leftovers are no overlap of these two)
        separate = first_drop is not None and first_drop[0] < self.tol * max(first_drop[1], 1)
        chosen = self.n_clusters if self.n_clusters is not None else (
            elbow(ks, ents, min_k=min(self.min_clusters, k), x=x) if k > 2 and not separate else k)
        self.groups_ = path[chosen][0]
        self.n_clusters_ = len(self.groups_)
        self.entropy_path_ = {int(kk): float(path[kk][1]) for kk in ks}
        self.merged_path_ = {int(kk): int(path[kk][2]) for kk in ks}
        self.n_components_in_ = k
        self.n_features_in_ = k  # scikit-learn's name for the columns fit saw
        # component -> cluster
        self.cluster_of_component_ = np.empty(k, dtype=np.int64)
        for g, members in enumerate(self.groups_):
            self.cluster_of_component_[members] = g
        # scikit-learn's clusterers keep the fitted rows' clusters
        self.labels_ = np.stack([p[:, grp].sum(1) for grp in self.groups_], 1).argmax(1)
        return self

    def _check(self, proba: np.ndarray) -> np.ndarray:
        if not hasattr(self, "groups_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this ComponentMerger is not fitted yet: call fit first")
        return _probabilities(proba, self.n_components_in_)

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

    def fit_predict(self, proba: np.ndarray, y=None) -> np.ndarray:
        """:meth:`fit` on ``proba``, then its rows' clusters (``labels_``).

        Parameters
        ----------
        proba : ndarray of shape (N, K)
        y : None
            Ignored (scikit-learn's signature, for pipelines).

        Returns
        -------
        ndarray of shape (N,)
        """
        return self.fit(proba).labels_

    def fit_transform(self, proba: np.ndarray, y=None) -> np.ndarray:
        """:meth:`fit` on ``proba`` (N, K), then the (N, n_clusters_) cluster probabilities of the same rows
        (:meth:`transform`); ``y`` is ignored, as in :meth:`fit_predict`."""
        return self.fit(proba).transform(proba)
