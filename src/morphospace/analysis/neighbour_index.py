"""Nearest neighbours in an embedding, exact or approximate: the one rule for every stage.

:class:`SimilarityIndex` searches an embedding as it is (Euclidean; no per-axis
standardisation, which would give a noise axis the weight of an informative one): exactly
(scikit-learn) below ``exact_below`` rows, through pynndescent's approximate index (as
umap-learn uses) from there up. A run searches exactly below :data:`EXACT_BELOW` galaxies
("more like this", the explorer's rings, the anomaly score, UMAP's neighbour graph):
pynndescent's first use in a process spends ~30-40 s of CPU on numba compilation, and up to
100,000 rows the exact search is done sooner (every row's 9 nearest, 64 numbers a row, 2 cores:
exact 1.5 / 6.4 / 27.1 s, pynndescent with its compilation 29.8 / 37.6 / 47.8 s at 20,000 /
50,000 / 100,000 rows).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import InvalidArgument
from .inputs import fit_input, new_input, whole_number

__all__ = ["SimilarityIndex", "EXACT_BELOW", "searches_exactly"]

EXACT_BELOW = 100_000  # galaxies below which a run's neighbours are searched exactly (see the module docstring)


def searches_exactly(n_rows: int, exact_below: int = EXACT_BELOW) -> bool:
    """Whether an index over ``n_rows`` rows searches exactly (scikit-learn) rather than
    approximately (pynndescent): the one rule, for :class:`SimilarityIndex` and what reports say of it."""
    return n_rows < exact_below


class SimilarityIndex(BaseEstimator):
    """k-nearest-neighbour search over an embedding (Euclidean): approximate for large sets.

    Parameters
    ----------
    n_neighbors : int
        Degree of the approximate index's graph (more: slower to build, more accurate).
    random_state : int
        Seed of the approximate index's random projections.
    exact_below : int
        Below this many rows the search is exact (scikit-learn's ``NearestNeighbors``), as the
        command line's (:data:`EXACT_BELOW`, the default: building an approximate index over a few
        thousand rows costs more than searching them all); 0: always pynndescent.

    Attributes
    ----------
    index_ : pynndescent.NNDescent or sklearn.neighbors.NearestNeighbors
    exact_ : bool
        Whether the search is exact.
    n_samples_ : int
    """

    def __init__(self, n_neighbors: int = 30, random_state: int = 0, exact_below: int = EXACT_BELOW):
        self.n_neighbors = n_neighbors
        self.random_state = random_state
        self.exact_below = exact_below

    def fit(self, X, y=None) -> "SimilarityIndex":
        """Build the index over the rows of ``X`` (N, D); ``y`` is ignored."""
        import warnings

        n = self.n_neighbors
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            # a graph of degree 0 or 1 builds, and then misses most true neighbours
            raise InvalidArgument(f"n_neighbors must be an integer of at least 2, got {n!r}")
        exact_below = whole_number(self.exact_below, "exact_below", minimum=0)
        X = fit_input(self, X)
        self.n_samples_ = len(X)
        self.exact_ = searches_exactly(len(X), exact_below)
        if self.exact_:
            from sklearn.neighbors import NearestNeighbors

            self.index_ = NearestNeighbors().fit(X)
            return self
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's and pynndescent's own notices
            from pynndescent import NNDescent

            self.index_ = NNDescent(X, n_neighbors=min(self.n_neighbors, len(X) - 1),
                                    random_state=self.random_state, n_jobs=1)
            self.index_.prepare()
        return self

    def kneighbors(self, X, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)``, each (n_queries, k'), nearest first; k' = min(k, N); float64 and
        int64 whether the search is exact or not."""
        if X is None:  # scikit-learn's "the fitted rows, each without itself": not offered here
            raise InvalidArgument("X must be the rows to search for (n, d), got None; for the fitted galaxies' "
                                  "own neighbours pass the embedding again and drop each row's first hit (itself)")
        X = new_input(self, X)
        # 2.5 is not quietly 2, nor "3" a TypeError; 3.0 is 3
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, float, np.integer, np.floating)) \
                or not float(k).is_integer() or k < 1:
            raise InvalidArgument(f"k must be a whole number of at least 1, got {k!r}")
        k = min(int(k), self.n_samples_)
        if self.exact_:
            return self.index_.kneighbors(X, n_neighbors=k)
        idx, dist = self.index_.query(X, k=k)
        return dist.astype(np.float64), idx.astype(np.int64)
