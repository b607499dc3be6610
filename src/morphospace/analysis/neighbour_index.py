"""Nearest neighbours in an embedding, exact or approximate: the one rule for every stage.

:class:`SimilarityIndex` searches an embedding as it is (Euclidean; no per-axis
standardisation, which would give a noise axis the weight of an informative one): exactly
(scikit-learn) below ``exact_below`` rows, through faiss's inverted file from there up: the
rows are split into about 4 sqrt(N) cells by k-means, and a search visits the cells nearest
the query (``probe_fraction`` of them) and compares every row in them. A run searches exactly
below :data:`EXACT_BELOW` galaxies ("more like this", the explorer's rings, the anomaly score,
UMAP's neighbour graph, the placing of galaxies on a map fitted on a sample). faiss's k-means
and searches give the same result for the same rows and seed on every run of a machine, with
its threads. The inverted file replaced pynndescent, whose numba compilation cost 30-150 s in
each process that first built an index, and faiss's HNSW graph, whose build must run on one
thread to be reproducible; on 64-number embeddings in groups it finds more of the true
neighbours than either, in less time, from 20,000 rows to 10^6 (on rows in no groups at all,
fewer than pynndescent did: ``benchmarks/bench_neighbour_index.py``; the README's *Large
surveys* has the table).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ..errors import InvalidArgument
from .inputs import fit_input, new_input, whole_number

__all__ = ["SimilarityIndex", "EXACT_BELOW", "INDEX_KIND", "searches_exactly"]

EXACT_BELOW = 100_000  # galaxies below which a run's neighbours are searched exactly (see the module docstring)
PROBE_FRACTION = 1 / 56  # of the cells a search visits: recall@10 0.99 at 200,000 and 10^6 rows (the module docstring)
MIN_PROBES = 8  # cells a search visits at least (a small index's cells hold few rows)
ROWS_PER_CELL = 39  # faiss's k-means asks at least this many training rows a cell
TRAIN_ROWS_PER_CELL = 64  # the k-means is trained on this many rows a cell, drawn with the seed
INDEX_KIND = "faiss-ivf"  # in the stamps of pickled indexes: one pickled with another kind of index is rebuilt


def searches_exactly(n_rows: int, exact_below: int = EXACT_BELOW) -> bool:
    """Whether an index over ``n_rows`` rows searches exactly (scikit-learn) rather than
    approximately (faiss's inverted file): the one rule, for :class:`SimilarityIndex` and what reports say of it."""
    return n_rows < exact_below


class SimilarityIndex(BaseEstimator):
    """k-nearest-neighbour search over an embedding (Euclidean): approximate for large sets.

    Parameters
    ----------
    probe_fraction : float
        Of the approximate index's cells, the fraction a search visits (at least
        :data:`MIN_PROBES`; 1: every cell, an exact search): more, slower and more accurate.
    random_state : int, RandomState or None
        Seed of the approximate index's k-means (its start and the rows it is trained on).
    exact_below : int
        Below this many rows the search is exact (scikit-learn's ``NearestNeighbors``), as the
        command line's (:data:`EXACT_BELOW`, the default); 0: always the approximate index.

    Attributes
    ----------
    index_ : faiss.IndexIVFFlat or sklearn.neighbors.NearestNeighbors
    exact_ : bool
        Whether the search is exact.
    n_probes_ : int
        Cells a search of the approximate index visits (absent when exact).
    n_samples_ : int
    """

    def __init__(self, probe_fraction: float = PROBE_FRACTION, random_state: int = 0, exact_below: int = EXACT_BELOW):
        self.probe_fraction = probe_fraction
        self.random_state = random_state
        self.exact_below = exact_below

    def fit(self, X, y=None) -> "SimilarityIndex":
        """Build the index over the rows of ``X`` (N, D); ``y`` is ignored."""
        f = self.probe_fraction
        if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, float, np.integer, np.floating)) or not 0 < f <= 1:
            raise InvalidArgument(f"probe_fraction must be a number in (0, 1], got {f!r}")
        exact_below = whole_number(self.exact_below, "exact_below", minimum=0)
        X = fit_input(self, X)
        self.n_samples_ = len(X)
        self.exact_ = searches_exactly(len(X), exact_below)
        if self.exact_:
            from sklearn.neighbors import NearestNeighbors

            self.index_ = NearestNeighbors().fit(X)
            return self
        self.index_ = _inverted_file(X, self.random_state)
        self.n_probes_ = int(min(self.index_.nlist, max(MIN_PROBES, np.ceil(f * self.index_.nlist))))
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
        return _search(self.index_, X, k, self.n_probes_)

    def __getstate__(self):
        state = self.__dict__.copy()
        if not state.get("exact_", True) and "index_" in state:  # a faiss index pickles as its own bytes
            import faiss

            state["index_"] = faiss.serialize_index(state["index_"])
        return state

    def __setstate__(self, state):
        if not state.get("exact_", True) and isinstance(state.get("index_"), np.ndarray):
            import faiss

            state["index_"] = faiss.deserialize_index(state["index_"])
        self.__dict__.update(state)


def _inverted_file(X: np.ndarray, random_state) -> object:
    """faiss's inverted file over the rows of ``X``: about 4 sqrt(N) cells (faiss's guide), at least
    :data:`ROWS_PER_CELL` rows a cell, found by k-means on a sample drawn with ``random_state``."""
    import faiss

    n, d = X.shape
    cells = max(1, min(int(round(4 * np.sqrt(n))), n // ROWS_PER_CELL))
    rng = check_random_state(random_state)
    X = np.ascontiguousarray(X, dtype=np.float32)
    quantiser = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantiser, d, cells)
    quantiser.this.disown()  # the index owns (and serialises) its quantiser
    index.own_fields = True
    index.cp.seed = int(rng.randint(2**31 - 1))
    index.cp.min_points_per_centroid = 1  # a small index is one cell of few rows: no warning on stderr
    train = X if n <= TRAIN_ROWS_PER_CELL * cells else X[np.sort(rng.choice(n, TRAIN_ROWS_PER_CELL * cells, replace=False))]
    index.train(train)
    index.add(X)
    return index


def _search(index, X: np.ndarray, k: int, probes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of ``X``'s ``k`` nearest rows in the inverted file ``index``, visiting
    ``probes`` cells; a row whose cells held fewer than ``k`` rows (``-1`` in faiss) is searched again
    in every cell, exactly."""
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    dist, idx = index.search(X, k, params=faiss.SearchParametersIVF(nprobe=probes))
    short = np.flatnonzero((idx < 0).any(axis=1))
    if short.size:
        dist[short], idx[short] = index.search(X[short], k, params=faiss.SearchParametersIVF(nprobe=index.nlist))
    # squared L2 in float32: rows at the same place can read a hair below zero
    return np.sqrt(np.maximum(dist, 0.0)).astype(np.float64), idx.astype(np.int64)
