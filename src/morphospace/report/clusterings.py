"""The run's clusterings as the report reads them: aligned to the cube, and which one the report is about.

:func:`aligned_clustering` puts a clustering table (``id``, ``label``,
``prob_<k>``) in cube order; :func:`primary_choice` picks the clustering
the report's cluster section shows: the VaDE's own, else the K-Means at its
selected k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MISSING", "Clustering", "aligned_clustering", "primary_choice"]

MISSING = -2  # code of a galaxy a clustering does not cover (-1 is noise)
REPRESENTATION_ORDER = ("features", "vade", "pixels_pca")  # ties between clusterings go to the first


@dataclass
class Clustering:
    """One clustering aligned to the cube order.

    Attributes
    ----------
    name : str
        The clustering's name (its file under ``RUN/clusterings/``).
    labels : ndarray of int64
        One label per cube row: the cluster, -1 for noise, :data:`MISSING`
        where the clustering has no row.
    probs : ndarray or None
        N x K membership probabilities (columns ``prob_0`` ... of a soft
        clustering), NaN where it has no row; None for a hard clustering.
    meta : dict
        The clustering's JSON side file (method, k, representation, ...).
    """

    name: str
    labels: np.ndarray  # int64, -1 noise, MISSING where the clustering has no row
    probs: np.ndarray | None  # N x K (columns prob_0..prob_K-1) or None
    meta: dict

    @property
    def clusters(self) -> list[int]:
        """Cluster labels in order, noise (-1) last when present."""
        present = sorted(int(v) for v in np.unique(self.labels) if v >= 0)
        return present + ([-1] if (self.labels == -1).any() else [])

    @property
    def empty(self) -> list[int]:
        """The clusters of a soft clustering (its ``prob_<k>`` columns) that hold no galaxy: none has
        its highest probability there (a mixture that collapsed, or a small component)."""
        if self.probs is None:
            return []
        present = {int(v) for v in np.unique(self.labels) if v >= 0}
        return [k for k in range(self.probs.shape[1]) if k not in present]

    def count_text(self) -> str:
        """"3 clusters", "1 cluster", "9 clusters (8 hold no galaxy)": every cluster, noise aside."""
        held, empty = sum(1 for k in self.clusters if k >= 0), len(self.empty)
        n = held + empty
        return f"{n} cluster{'' if n == 1 else 's'}" + (
            f" ({empty} hold{'s' if empty == 1 else ''} no galaxy)" if empty else "")


def aligned_clustering(name: str, table: pd.DataFrame, rows: np.ndarray, n: int, meta: Any = None) -> Clustering:
    """A clustering table in cube order.

    Parameters
    ----------
    name : str
        The clustering's name.
    table : DataFrame
        Columns ``label`` and, for a soft clustering, ``prob_0`` ...
        ``prob_<K-1>``.
    rows : ndarray of int
        The cube row of each table row (-1: not in the cube, left out).
    n : int
        Galaxies in the cube.
    meta : object, optional
        The clustering's JSON side file (anything but a dict counts as none).

    Returns
    -------
    Clustering
        Galaxies the table does not cover are :data:`MISSING` (probabilities
        NaN); a label that is not a number is :data:`MISSING` too.
    """
    ok = rows >= 0
    labels = np.full(n, MISSING, dtype=np.int64)
    labels[rows[ok]] = pd.to_numeric(table["label"], errors="coerce").fillna(MISSING).to_numpy(np.int64)[ok]
    pcols = sorted((c for c in table.columns if re.fullmatch(r"prob_\d+", c)), key=lambda c: int(c[5:]))
    probs = None
    if pcols:
        probs = np.full((n, len(pcols)), np.nan, dtype=np.float32)
        probs[rows[ok]] = table[pcols].to_numpy(np.float32)[ok]
    return Clustering(name, labels, probs, meta if isinstance(meta, dict) else {})


def primary_choice(clusterings: list[Clustering], comparisons: Path) -> tuple[Clustering | None, str]:
    """The clustering the report is about, and why it was chosen (the report's words).

    Parameters
    ----------
    clusterings : list of Clustering
    comparisons : Path
        ``RUN/comparisons``, where ``k_selection_<representation>.csv`` tell
        which k had the best silhouette.

    Returns
    -------
    (Clustering or None, str)
        ``vade``; else the K-Means at its selected k (``best_k`` of its
        metadata, else the silhouette-best k), on CNN features before the
        VaDE's latent space before pixels; else the first GMM, K-Means,
        HDBSCAN or DBSCAN clustering that found a cluster; else the first
        clustering. None (and "") when there is none.
    """
    by_name = {c.name: c for c in clusterings}
    if "vade" in by_name:
        return by_name["vade"], ("the VaDE's own clusters: its mixture components, merged by entropy where they "
                                 "overlap; each galaxy goes to the cluster most likely to have made it")
    if not by_name:
        return None, ""

    def rep_rank(c: Clustering) -> int:
        rep = c.meta.get("representation") or c.name.split("_", 1)[-1]
        return REPRESENTATION_ORDER.index(rep) if rep in REPRESENTATION_ORDER else len(REPRESENTATION_ORDER)

    kmeans = [c for c in clusterings if c.name.startswith("kmeans")]
    chosen = [c for c in kmeans if c.meta.get("best_k") is not None and c.meta.get("k") == c.meta.get("best_k")]
    if not chosen:
        chosen = _kmeans_by_silhouette(kmeans, comparisons)
    if chosen:
        return sorted(chosen, key=lambda c: (rep_rank(c), c.name))[0], "K-Means at the number of clusters with the best silhouette"
    found = [c for c in clusterings if any(k >= 0 for k in c.clusters)]  # an all-noise one shows nothing
    for prefix, method in (("gmm", "GMM"), ("kmeans", "K-Means"), ("hdbscan", "HDBSCAN"), ("dbscan", "DBSCAN")):
        picks = [c for c in found if c.name.startswith(prefix)]
        if picks:
            return sorted(picks, key=lambda c: (rep_rank(c), c.name))[0], f"the run's first {method} clustering that found clusters"
    return clusterings[0], "the run's first clustering"


def _kmeans_by_silhouette(kmeans: list[Clustering], comparisons: Path) -> list[Clustering]:
    """K-means clusterings whose k is the silhouette-best of ``comparisons/k_selection_<rep>.csv``."""
    out = []
    for path in sorted(comparisons.glob("k_selection_*.csv")):
        rep = path.stem[len("k_selection_"):]
        try:
            table = pd.read_csv(path)
            rows = table[table.get("method", "kmeans") == "kmeans"]
            best = int(rows.loc[rows["silhouette"].idxmax(), "k"])
        except Exception:
            continue
        out += [c for c in kmeans if c.name == f"kmeans{best}_{rep}"]
    return out
