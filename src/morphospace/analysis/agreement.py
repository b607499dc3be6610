"""Agreement between two labellings of the same galaxies: the scores and the contingency table.

:func:`score_pair` scores two labellings by the adjusted Rand index (ARI),
adjusted / normalised mutual information (AMI, NMI), V-measure and
Fowlkes-Mallows, as :mod:`sklearn.metrics` defines them but all computed from one
contingency table (scikit-learn builds and validates it again for every score: a
compare stage scores thousands of pairs, over up to millions of galaxies), and by the Hungarian-matched
accuracy (the best one-to-one mapping of clusters onto classes, rectangular
allowed) and purity, from the contingency table
(:func:`sklearn.metrics.cluster.contingency_matrix`). Missing labels (None,
NaN, "") are always dropped; noise (label ``-1``) is either its own cluster
(``noise="own"``) or dropped (``noise="exclude"``). What counts as missing is
:mod:`morphospace.analysis.labels`.

Examples
--------
>>> score_pair([0, 0, 1, 1, -1], ["e", "e", "s", "s", "s"], noise="exclude")["ari"]
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm
from sklearn.metrics.cluster import contingency_matrix
from sklearn.metrics.cluster._expected_mutual_info_fast import expected_mutual_information

from ..errors import UserError
from .labels import Encoded, encode

__all__ = ["METRICS", "NOISE_MODES", "compare", "score_pair", "contingency_table", "hungarian_accuracy", "purity"]

METRICS = ("ari", "ami", "nmi", "v_measure", "fowlkes_mallows", "hungarian_accuracy", "purity", "inverse_purity")
NOISE_MODES = ("own", "exclude")


def _key(v: Any) -> str:
    """A class value as text for tables: 3.0 -> '3'."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _prepare(a: Any, b: Any, noise: str) -> tuple[np.ndarray, np.ndarray, Encoded, Encoded]:
    """Codes of the rows both labellings can score (missing, and noise if excluded, dropped)."""
    if noise not in NOISE_MODES:
        raise UserError(f"noise must be one of {', '.join(NOISE_MODES)}, got '{noise}'")
    ea, eb = encode(a), encode(b)
    if ea.codes.shape != eb.codes.shape:
        raise UserError(f"labellings differ in length: {ea.codes.shape[0]} vs {eb.codes.shape[0]}")
    keep = ~ea.missing & ~eb.missing
    if noise == "exclude":
        keep &= ~ea.noise & ~eb.noise
    return ea.codes[keep], eb.codes[keep], ea, eb


def hungarian_accuracy(table: np.ndarray) -> float:
    """Fraction of rows on the best one-to-one matching of clusters to classes.

    Parameters
    ----------
    table : array-like, shape (n_clusters, n_classes)
        A contingency table of counts. Rectangular tables are allowed: the
        surplus clusters (or classes) match nothing.

    Returns
    -------
    float
        The matched counts over the total (NaN for an empty table), the
        matching found by :func:`scipy.optimize.linear_sum_assignment`.

    Examples
    --------
    >>> hungarian_accuracy([[5, 0, 1], [0, 4, 0]])
    0.9
    """
    table = np.asarray(table)
    n = table.sum()
    if n == 0:
        return float("nan")
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / n)


def purity(table: np.ndarray) -> float:
    """Fraction of rows in their cluster's majority class.

    Parameters
    ----------
    table : array-like, shape (n_clusters, n_classes)
        A contingency table of counts, clusters as rows (pass ``table.T`` for
        the inverse purity).

    Returns
    -------
    float
        The sum of each row's largest count over the total (NaN when empty).

    Examples
    --------
    >>> purity([[3, 1], [0, 2]])
    0.8333333333333334
    """
    table = np.asarray(table)
    n = table.sum()
    return float(table.max(axis=1).sum() / n) if n else float("nan")


def contingency_table(a: Any, b: Any, noise: str = "own") -> pd.DataFrame:
    """Counts of rows per (a, b) value pair.

    Parameters
    ----------
    a, b : array-like or Encoded
        Two labellings of the same rows (see :func:`score_pair`).
    noise : {"own", "exclude"}
        How the noise label -1 is treated (see :func:`score_pair`).

    Returns
    -------
    DataFrame
        :func:`sklearn.metrics.cluster.contingency_matrix` of the rows both
        labellings score, index = the values of ``a`` and columns = the values
        of ``b`` (as text, numbers in numeric order). Values seen only on
        dropped rows do not appear.

    Examples
    --------
    >>> contingency_table([0, 0, 1], ["x", "y", "y"]).to_numpy().tolist()
    [[1, 1], [0, 1]]
    """
    ca, cb, ea, eb = _prepare(a, b, noise)
    full = contingency_matrix(ca, cb) if ca.size else np.zeros((0, 0), dtype=np.int64)
    rows, cols = np.unique(ca), np.unique(cb)  # the codes present, as contingency_matrix orders them
    table = pd.DataFrame(full, index=pd.Index([_key(u) for u in ea.uniques[rows]], name="a"),
                         columns=pd.Index([_key(u) for u in eb.uniques[cols]], name="b"))
    # cluster numbers in numeric order
    return table.loc[_natural(table.index), _natural(table.columns)]


def _natural(keys: pd.Index) -> list:
    try:
        return sorted(keys, key=lambda k: float(k))
    except (TypeError, ValueError):
        return list(keys)


def score_pair(a: Any, b: Any, noise: str = "own") -> dict[str, float]:
    """Agreement between two labellings of the same rows.

    Parameters
    ----------
    a, b : array-like or Encoded
        Labellings (ints, strings, ...); a clustering's noise is -1. Encode a
        labelling once with :func:`encode` to score it against many others.
    noise : {"own", "exclude"}
        ``own``: -1 is one more cluster; ``exclude``: rows where either side
        is -1 are dropped. Missing labels are dropped in both modes.

    Returns
    -------
    dict
        ``n`` (rows scored) and the :data:`METRICS`: ari, ami, nmi (arithmetic
        normalisation), v_measure and fowlkes_mallows from
        :mod:`sklearn.metrics` (``b`` taken as the classes), then
        hungarian_accuracy, purity (``a``'s clusters against ``b``'s classes)
        and inverse_purity (the other way round) from their contingency
        table. NaN when fewer than 2 rows remain.

    Raises
    ------
    UserError
        When the labellings differ in length or ``noise`` is unknown.

    Examples
    --------
    >>> score_pair([0, 0, 1, 1], [1, 1, 0, 0])["ari"]
    1.0
    """
    ca, cb, ea, eb = _prepare(a, b, noise)
    n = int(ca.size)
    if n < 2:
        return {"n": n, **{m: float("nan") for m in METRICS}}
    table = _contingency(ca, cb)
    return {"n": n, **table_scores(table), "hungarian_accuracy": hungarian_accuracy(table),
            "purity": purity(table), "inverse_purity": purity(table.T)}


def _contingency(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """Dense counts of the codes' pairs (codes in increasing order, those absent left out):
    scikit-learn's ``contingency_matrix``, from one pass of ``np.bincount`` (no sort)."""
    ka, kb = int(ca.max()) + 1, int(cb.max()) + 1
    if ka * kb > max(10_000_000, 4 * ca.size):  # codes spread thin (rows dropped): compact them first
        ca, cb = np.unique(ca, return_inverse=True)[1], np.unique(cb, return_inverse=True)[1]
        ka, kb = int(ca.max()) + 1, int(cb.max()) + 1
    full = np.bincount(ca.astype(np.int64) * kb + cb, minlength=ka * kb).reshape(ka, kb)
    return full[full.any(axis=1)][:, full.any(axis=0)]


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a labelling from its class counts, as ``sklearn.metrics.cluster.entropy``."""
    pi = counts[counts > 0].astype(np.float64)
    if pi.size <= 1:
        return 0.0
    total = pi.sum()
    return float(-np.sum((pi / total) * (np.log(pi) - np.log(total))))


EXACT_EMI_BELOW = 200_000  # rows: the AMI's expected mutual information exactly below, asymptotically above


def expected_mi(table: np.ndarray, n: int) -> float:
    """The expected mutual information of the AMI (nats), under random labellings with the table's margins.

    Exact (scikit-learn's sum over the hypergeometric model) below :data:`EXACT_EMI_BELOW`
    rows; above, its large-sample limit ``(R - 1)(C - 1) / (2 n)`` (``2 n MI`` is the G statistic,
    chi-squared with ``(R - 1)(C - 1)`` degrees of freedom under independence). The exact sum
    costs about a second a pair at 10^6 rows, the limit nothing, and they differ by far less than
    the scores' own precision there (``tests/test_compare.py``).

    Parameters
    ----------
    table : ndarray of int, shape (R, C)
    n : int
        Its total.

    Returns
    -------
    float
    """
    if n < EXACT_EMI_BELOW:
        return float(expected_mutual_information(table, n))
    return (table.shape[0] - 1) * (table.shape[1] - 1) / (2.0 * n)


def table_scores(table: np.ndarray) -> dict[str, float]:
    """ARI, AMI, NMI (arithmetic), V-measure and Fowlkes-Mallows of a contingency table.

    The definitions and edge cases are scikit-learn's (``a`` as rows, ``b`` as columns, ``b``
    the classes of the V-measure), computed once from the table instead of from the labels
    five times; ``tests/test_compare.py`` checks them against scikit-learn.

    Parameters
    ----------
    table : ndarray of int, shape (n_a, n_b)
        Counts with no empty row or column.

    Returns
    -------
    dict
        ``ari``, ``ami``, ``nmi``, ``v_measure``, ``fowlkes_mallows``.
    """
    c = np.asarray(table, dtype=np.int64)
    n = int(c.sum())
    rows, cols = c.sum(axis=1), c.sum(axis=0)
    # pair counts as Python ints: products reach 10^24 at a million galaxies
    sum_sq = int((c.astype(object) ** 2).sum())
    same_a = int((rows.astype(object) ** 2).sum()) - n
    same_b = int((cols.astype(object) ** 2).sum()) - n
    tp = sum_sq - n
    fp, fn = same_a - tp, same_b - tp  # pairs together in a only, in b only
    tn = n * n - n - tp - fp - fn
    if fn == 0 and fp == 0:
        ari = 1.0
    else:
        ari = 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    fmi = float(np.sqrt(tp / same_a) * np.sqrt(tp / same_b)) if tp != 0 else 0.0
    h_a, h_b = _entropy(rows), _entropy(cols)
    mi = float(skm.mutual_info_score(None, None, contingency=c))
    single = c.shape[0] == c.shape[1] == 1
    nmi = 1.0 if single else (0.0 if mi == 0 else mi / ((h_a + h_b) / 2))
    if single:
        ami = 1.0
    else:
        emi = expected_mi(c, n)
        denominator = (h_a + h_b) / 2 - emi
        eps = np.finfo("float64").eps
        denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
        ami = (mi - emi) / denominator
    homogeneity = mi / h_b if h_b else 1.0  # b holds the classes
    completeness = mi / h_a if h_a else 1.0
    total = homogeneity + completeness
    v = 0.0 if total == 0 else 2 * homogeneity * completeness / total
    return {"ari": float(ari), "ami": float(ami), "nmi": float(nmi), "v_measure": float(v),
            "fowlkes_mallows": fmi}


# --- the notebook's ms.compare --------------------------------------------------------------

def _paired_by_index(a, b):
    """Two pandas Series indexed by the same galaxies in another order (a run's clustering by
    galaxy id, a table indexed by id or sorted) paired by their index, not by position; Series
    indexed by other galaxies are a ``ValueError`` (paired by position, they scored the wrong
    galaxies against each other), unless one has a plain 0..N-1 index (a column of
    ``run.catalogue``, in cube order) and the other is a run's clustering still in cube order,
    which pair by position."""
    from ..run import keeps_cube_order

    if not (isinstance(a, pd.Series) and isinstance(b, pd.Series)) or a.index.equals(b.index):
        return a, b
    unique = a.index.is_unique and b.index.is_unique
    if unique and len(a) == len(b) and a.index.isin(b.index).all():
        return a, b.reindex(a.index)
    plain = [isinstance(s.index, pd.RangeIndex) and s.index.start == 0 and s.index.step == 1 for s in (a, b)]
    if any(plain) and len(a) == len(b):
        other = b if plain[0] else a
        if all(plain) or keeps_cube_order(other):
            return a, b
        raise ValueError("one Series is in plain 0..N-1 order (a column of run.catalogue, in cube order) and the "
                         "other is indexed by galaxy but not known to be in cube order (sorted, or made "
                         "elsewhere): index both by galaxy id (catalogue.set_index('id')[column]) to pair them "
                         "by galaxy, or pass arrays in the same order")
    if not unique:
        raise ValueError("a Series is indexed with repeated labels, and the two are in another order: "
                         "pass arrays in the same order")
    raise ValueError("the two Series are indexed by different galaxies: align them first "
                     "(a, b = a.align(b, join='inner')) or pass arrays in the same order")


def compare(a, b, names: tuple[str, str] = ("a", "b")):
    """How well two labellings of the same galaxies agree: ARI, AMI, ... as a one-column table.

    Parameters
    ----------
    a, b : array-like (N,)
        Cluster labels, classes or any categorical values; missing values (None, NaN, "") are
        left out pairwise. Two pandas Series indexed by galaxy (e.g. ``run.clusterings``) are
        paired by their index, in any order; arrays by position, and so a Series with a plain
        0..N-1 index (a column of ``run.catalogue``, in cube order) with an array or with a run's
        clustering still in cube order. A plain Series with one indexed by galaxy in another
        order (sorted) is a ``ValueError``: index both by id to pair them by galaxy.
    names : (str, str)
        Names of the two labellings, for the column header.

    Returns
    -------
    DataFrame
        One column; its first row ``n``, the rows scored, then one row per measure (ARI, AMI,
        NMI, V-measure, Fowlkes-Mallows, ...).
    """
    if names is None:
        names = ("a", "b")
    if isinstance(names, str) or not hasattr(names, "__len__") or len(names) != 2:  # a string: letter by letter
        raise ValueError(f"names must be two names, one per labelling, got {names!r}")
    for name, labels in zip(names, (a, b)):
        if labels is None:
            raise ValueError(f"a labelling is one value per galaxy, got None for {name}")
    a, b = _paired_by_index(a, b)
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"a labelling is one value per galaxy, got shapes {a.shape} and {b.shape}")
    if len(a) != len(b):
        raise ValueError(f"the two labellings differ in length ({len(a)} and {len(b)})")
    scores = score_pair(a, b)
    return pd.DataFrame({f"{names[0]} vs {names[1]}": pd.Series(scores, dtype=float)})
