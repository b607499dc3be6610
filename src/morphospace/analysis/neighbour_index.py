"""Nearest neighbours in an embedding, exact or approximate: the one rule for every stage.

:class:`SimilarityIndex` searches an embedding as it is (Euclidean; no per-axis
standardisation, which would give a noise axis the weight of an informative one): exactly
(scikit-learn) below ``exact_below`` rows, through faiss's inverted file from there up: the
rows are split into about 4 sqrt(N) cells by k-means, and a search visits the cells nearest
the query and compares every row in them. How many cells that must be depends on the
rows, not on their number: 32 of 1,789 find 99% of the true neighbours of 200,000 rows in
groups, as a form embedding's are, and a third where the rows are in no groups (one 64-d
Gaussian). So each index measures itself as it is built, with no label: the 10 nearest of
:data:`CALIBRATION_ROWS` of its rows, drawn with the seed, are searched exactly and with the
index, and the fewest cells that find ``target_recall`` of them are chosen (doubling from
:data:`MIN_PROBES`, then halving the last step); its estimate is ``recall_``. Where that
would be more than :data:`MAX_PROBE_SHARE` of the cells, the inverted file is no faster than
an exact search (which compares rows by matrix products, about 4 times as fast a row), and
the index searches exactly instead, through faiss's flat index. A run searches exactly
below :data:`EXACT_BELOW` galaxies ("more like this", the explorer's rings, the anomaly score,
UMAP's neighbour graph, the placing of galaxies on a map fitted on a sample). faiss's k-means
and searches give the same result for the same rows and seed on every run of a machine, with
its threads. The inverted file replaced pynndescent, whose numba compilation cost 30-150 s in
each process that first built an index, and faiss's HNSW graph, whose build must run on one
thread to be reproducible; on 64-number embeddings in groups it finds as many of the true
neighbours as either or more, in less time, from 20,000 rows to 10^6, and on rows in no groups
it searches exactly rather than miss most of them (``benchmarks/bench_neighbour_index.py``;
the README's *Large surveys* has the table).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ..errors import InvalidArgument
from .inputs import fit_input, fraction, new_input, whole_number

__all__ = ["SimilarityIndex", "EXACT_BELOW", "INDEX_KIND", "searches_exactly"]

EXACT_BELOW = 100_000  # galaxies below which a run's neighbours are searched exactly (see the module docstring)
MIN_PROBES = 8  # cells a search visits at least (a small index's cells hold few rows)
ROWS_PER_CELL = 39  # faiss's k-means asks at least this many training rows a cell
TRAIN_ROWS_PER_CELL = 64  # the k-means is trained on this many rows a cell, drawn with the seed
TARGET_RECALL = 0.95  # of the true 10 nearest an approximate search finds, measured as the index is built
CALIBRATION_ROWS = 512  # rows searched exactly to measure the recall (its standard error about 0.004 at 0.95)
MAX_PROBE_SHARE = 0.25  # of the cells, beyond which the inverted file is slower than an exact search
INDEX_KIND = "faiss-ivf-calibrated"  # in the stamps of pickled indexes: one pickled with another kind of index is rebuilt

log = logging.getLogger("morphospace")


def searches_exactly(n_rows: int, exact_below: int = EXACT_BELOW) -> bool:
    """Whether an index over ``n_rows`` rows searches exactly (scikit-learn) for its size alone: the one
    rule for every stage. Above it an index may still search exactly, where its inverted file would
    gain nothing (its ``exact_`` says, and what reports say of it comes from there)."""
    return n_rows < exact_below


class SimilarityIndex(BaseEstimator):
    """k-nearest-neighbour search over an embedding (Euclidean): approximate for large sets.

    Parameters
    ----------
    target_recall : float
        Of each row's true 10 nearest, the share the approximate search must find, measured on
        :data:`CALIBRATION_ROWS` of the rows as the index is built: the fewest cells that find
        it are visited.
    probe_fraction : float or None
        None (the default): the cells chosen for ``target_recall``. A number: this fraction of
        the cells (at least :data:`MIN_PROBES`; 1: every cell, an exact search) is visited
        whatever its recall (still measured: ``recall_``).
    random_state : int, RandomState or None
        Seed of the approximate index's k-means (its start and the rows it is trained on) and
        of the rows its recall is measured on.
    exact_below : int
        Below this many rows the search is exact (scikit-learn's ``NearestNeighbors``), as the
        command line's (:data:`EXACT_BELOW`, the default); 0: always the approximate index.

    Attributes
    ----------
    index_ : faiss.IndexIVFFlat, faiss.IndexFlatL2 or sklearn.neighbors.NearestNeighbors
        The inverted file; or, where the search is exact, scikit-learn's (below ``exact_below``)
        or faiss's flat index (where the inverted file would gain nothing).
    exact_ : bool
        Whether the search is exact: below ``exact_below`` rows, or where the inverted file would
        have to visit more than :data:`MAX_PROBE_SHARE` of its cells to reach ``target_recall``.
    n_probes_ : int
        Cells a search of the approximate index visits (absent when exact).
    recall_ : float
        Of the true 10 nearest of the rows searched exactly as the index was built, the share
        the search finds (1.0 when exact).
    n_samples_ : int
    """

    def __init__(self, target_recall: float = TARGET_RECALL, probe_fraction: float | None = None,
                 random_state: int = 0, exact_below: int = EXACT_BELOW):
        self.target_recall = target_recall
        self.probe_fraction = probe_fraction
        self.random_state = random_state
        self.exact_below = exact_below

    def fit(self, X, y=None) -> "SimilarityIndex":
        """Build the index over the rows of ``X`` (N, D); ``y`` is ignored."""
        f = fraction(self.probe_fraction, "probe_fraction", open_low=True, optional=True)
        target = fraction(self.target_recall, "target_recall")
        exact_below = whole_number(self.exact_below, "exact_below", minimum=0)
        X = fit_input(self, X)
        self.n_samples_ = len(X)
        self.exact_ = searches_exactly(len(X), exact_below)
        self.recall_ = 1.0
        if self.exact_:
            from sklearn.neighbors import NearestNeighbors

            self.index_ = NearestNeighbors().fit(X)
            return self
        rng = check_random_state(self.random_state)
        self.index_ = _inverted_file(X, rng)
        rows, reach = _truth(self.index_, X, rng)
        if f is None:
            probes, self.recall_ = _fewest_probes(self.index_, rows, reach, target)
        else:
            probes = int(min(self.index_.nlist, max(MIN_PROBES, np.ceil(f * self.index_.nlist))))
            self.recall_ = _recall(self.index_, rows, reach, probes)
        if probes is None:
            faiss = _faiss()  # its flat index: faster than scikit-learn's (200,000 rows: 0.6-0.8x the time)
            self.exact_, self.index_ = True, faiss.IndexFlatL2(X.shape[1])
            self.index_.add(np.ascontiguousarray(X, dtype=np.float32))
        else:
            self.n_probes_ = probes
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
        if hasattr(self.index_, "kneighbors"):  # scikit-learn's
            return self.index_.kneighbors(X, n_neighbors=k)
        return _search(self.index_, X, k, getattr(self, "n_probes_", None))

    def __getstate__(self):
        state = self.__dict__.copy()
        if "index_" in state and not hasattr(state["index_"], "kneighbors"):  # a faiss index pickles as its own bytes
            state["index_"] = _faiss().serialize_index(state["index_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("index_"), np.ndarray):
            state["index_"] = _faiss().deserialize_index(state["index_"])
        self.__dict__.update(state)


def _faiss():
    """faiss, imported once scikit-learn has listed the thread pools it limits. faiss's OpenBLAS is
    the OpenMP build, where limiting BLAS to one thread, as scikit-learn does around its exact
    neighbour search, sets OpenMP's thread count too: scikit-learn's own loop then ran on one core
    in any process that had imported faiss before scikit-learn first limited its threads (20,000
    rows' nearest: 1.9 s against 1.0)."""
    try:  # scikit-learn's own (private) controller, cached at its first call: tests/test_similar.py watches it
        from sklearn.utils.parallel import _get_threadpool_controller
    except ImportError:
        pass
    else:
        _get_threadpool_controller()
    import faiss

    return faiss


def _inverted_file(X: np.ndarray, rng: np.random.RandomState) -> object:
    """faiss's inverted file over the rows of ``X``: about 4 sqrt(N) cells (faiss's guide), at least
    :data:`ROWS_PER_CELL` rows a cell, found by k-means on a sample drawn with ``rng``."""
    faiss = _faiss()

    n, d = X.shape
    cells = max(1, min(int(round(4 * np.sqrt(n))), n // ROWS_PER_CELL))
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


def _truth(index, X: np.ndarray, rng: np.random.RandomState, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, reach)``: :data:`CALIBRATION_ROWS` rows of ``X`` drawn with ``rng`` (all, when fewer),
    and the distance of each one's true ``k``-th nearest other row (every cell of ``index`` searched)."""
    n, k = len(X), min(k, len(X) - 1)
    rows = X[np.sort(rng.choice(n, CALIBRATION_ROWS, replace=False))] if n > CALIBRATION_ROWS else X
    if k < 1:
        return rows[:0], np.empty(0)
    true, _ = _search(index, rows, k + 1, index.nlist)  # the row itself first
    return rows, true[:, k] * (1 + 1e-6)  # float32 distances: the k-th itself counts


def _recall(index, rows: np.ndarray, reach: np.ndarray, probes: int, k: int = 10) -> float:
    """Of the true ``k`` nearest of ``rows``, the share a search visiting ``probes`` cells finds: a
    neighbour found counts when it is as near as the true k-th (rows at equal distances are
    interchangeable). 1.0 where every cell is visited, or with no rows to measure."""
    if probes >= index.nlist or len(rows) == 0:
        return 1.0
    k = min(k, index.ntotal - 1)
    found, _ = _search(index, rows, k + 1, probes)
    return float(np.mean((found[:, 1:] <= reach[:, None]).sum(1) / k))


def _fewest_probes(index, rows: np.ndarray, reach: np.ndarray, target: float) -> tuple[int | None, float]:
    """``(probes, recall)``: about the fewest cells (to an eighth; at least :data:`MIN_PROBES`) a
    search of ``index`` must visit to find ``target`` of the true neighbours of ``rows``, and the
    share it finds there; ``(None, 1.0)`` where that is more than :data:`MAX_PROBE_SHARE` of the
    cells (an exact search is faster)."""
    nlist = index.nlist
    lo = hi = min(MIN_PROBES, nlist)  # hi is being tried; once it has met the target, lo missed it (or is the floor)
    while (recall := _recall(index, rows, reach, hi)) < target:
        lo, hi = hi, min(2 * hi, nlist)
        if hi > max(MIN_PROBES, MAX_PROBE_SHARE * nlist):
            log.info("neighbour index: %d of %d cells find %.3f of the true nearest of %d rows; more than %.0f%% "
                     "of the cells would be needed for %.2f: searching exactly", lo, nlist, recall, len(rows),
                     100 * MAX_PROBE_SHARE, target)
            return None, 1.0
    while hi - lo > max(1, hi // 8):  # halve the last step while it is more than an eighth
        mid = (lo + hi) // 2
        found = _recall(index, rows, reach, mid)
        lo, hi, recall = (lo, mid, found) if found >= target else (mid, hi, recall)
    log.info("neighbour index: %d rows in %d cells, %d visited a search: %.3f of the true nearest of %d "
             "rows found", index.ntotal, nlist, hi, recall, len(rows))
    return hi, recall


def _search(index, X: np.ndarray, k: int, probes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of ``X``'s ``k`` nearest rows in the faiss ``index``: an inverted file
    visiting ``probes`` cells, or a flat index (``probes`` None); a row whose cells held fewer than
    ``k`` rows (``-1`` in faiss) is searched again in every cell, exactly."""
    faiss = _faiss()

    X = np.ascontiguousarray(X, dtype=np.float32)
    if probes is None:
        dist, idx = index.search(X, k)
        return np.sqrt(np.maximum(dist, 0.0)).astype(np.float64), idx.astype(np.int64)
    dist, idx = index.search(X, k, params=faiss.SearchParametersIVF(nprobe=probes))
    short = np.flatnonzero((idx < 0).any(axis=1))
    if short.size:
        dist[short], idx[short] = index.search(X[short], k, params=faiss.SearchParametersIVF(nprobe=index.nlist))
    # squared L2 in float32: rows at the same place can read a hair below zero
    return np.sqrt(np.maximum(dist, 0.0)).astype(np.float64), idx.astype(np.int64)
