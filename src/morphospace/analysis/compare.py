"""Agreement between clusterings, and between clusterings and labels.

:func:`score_pair` scores two labellings of the same galaxies by the adjusted
Rand index (ARI), adjusted / normalised mutual information (AMI, NMI),
V-measure, Fowlkes-Mallows, the Hungarian-matched accuracy (the best
one-to-one mapping of clusters onto classes, rectangular allowed) and purity.
Missing labels (None, NaN, "") are always dropped; noise (label ``-1``) is
either its own cluster (``noise="own"``) or dropped (``noise="exclude"``).
What counts as missing, and which catalogue columns are labels, is
:mod:`morphospace.analysis.labels`.

:func:`compare_run` scores every clustering of a run against every other and
against each categorical label column of the catalogue, and draws the ARI and
AMI matrices.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_mutual_info_score

from ..errors import UserError
from ..progress import Timer, progress
from ..run import RunDir, atomic_path, safe_name, write_table
from .labels import (Encoded, clustering_in_cube_order, contingency_counts, encode, label_columns,
                     labels_in_cube_order, truth_column)
from .probe import probe_run

log = logging.getLogger("morphospace")

__all__ = [
    "METRICS",
    "NOISE_MODES",
    "score_pair",
    "contingency_table",
    "hungarian_accuracy",
    "purity",
    "plot_heatmap",
    "compare_run",
]

METRICS = ("ari", "ami", "nmi", "v_measure", "fowlkes_mallows", "hungarian_accuracy", "purity", "inverse_purity")
NOISE_MODES = ("own", "exclude")


# --- scores ---------------------------------------------------------------------------

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
    """Fraction of rows on the best one-to-one matching of rows to columns of a contingency table.

    Rectangular tables are allowed: the surplus clusters (or classes) match nothing.
    """
    table = np.asarray(table)
    n = table.sum()
    if n == 0:
        return float("nan")
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / n)


def purity(table: np.ndarray) -> float:
    """Fraction of rows in their cluster's majority class (rows of ``table`` are clusters)."""
    table = np.asarray(table)
    n = table.sum()
    return float(table.max(axis=1).sum() / n) if n else float("nan")


def contingency_table(a: Any, b: Any, noise: str = "own") -> pd.DataFrame:
    """Counts of rows per (a, b) value pair; index = values of a, columns = values of b (as text)."""
    ca, cb, ea, eb = _prepare(a, b, noise)
    full = contingency_counts(ca, cb, ea.uniques.size, eb.uniques.size)
    rows, cols = full.sum(axis=1) > 0, full.sum(axis=0) > 0  # values seen only on dropped rows go
    table = pd.DataFrame(full[rows][:, cols], index=pd.Index([_key(u) for u in ea.uniques[rows]], name="a"),
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
        ``n`` (rows scored) and the :data:`METRICS`: ari, ami, nmi, v_measure,
        fowlkes_mallows, hungarian_accuracy, purity (``a``'s clusters against
        ``b``'s classes) and inverse_purity (the other way round). NaN when
        fewer than 2 rows remain.

    Examples
    --------
    >>> score_pair([0, 0, 1, 1], [1, 1, 0, 0])["ari"]
    1.0
    """
    ca, cb, ea, eb = _prepare(a, b, noise)
    n = int(ca.size)
    if n < 2:
        return {"n": n, **{m: float("nan") for m in METRICS}}
    table = contingency_counts(ca, cb, ea.uniques.size, eb.uniques.size)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    return {
        "n": n,
        **_table_scores(table),
        # AMI's expected-MI term has no short closed form: scikit-learn's (Cython) one
        "ami": float(adjusted_mutual_info_score(ca, cb)),
        "hungarian_accuracy": hungarian_accuracy(table),
        "purity": purity(table),
        "inverse_purity": purity(table.T),
    }


def _entropy(counts: np.ndarray, n: float) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def _table_scores(table: np.ndarray) -> dict[str, float]:
    """ARI, NMI (arithmetic mean), V-measure and Fowlkes-Mallows from a contingency table.

    The same numbers as scikit-learn's functions (tested), without rebuilding the
    table for each: a run compares thousands of pairs.
    """
    t = table.astype(np.float64)
    n = t.sum()
    a, b = t.sum(axis=1), t.sum(axis=0)
    # adjusted Rand index on pair counts
    comb = lambda x: x * (x - 1) / 2.0  # noqa: E731
    s_ij, s_a, s_b = comb(t).sum(), comb(a).sum(), comb(b).sum()
    expected = s_a * s_b / comb(n)
    top = (s_a + s_b) / 2.0
    ari = 1.0 if top == expected else (s_ij - expected) / (top - expected)
    # mutual information and entropies
    nz = t > 0
    mi = float((t[nz] / n * np.log(n * t[nz] / np.outer(a, b)[nz])).sum())
    mi = max(mi, 0.0)
    ha, hb = _entropy(a, n), _entropy(b, n)
    if a.size == b.size == 1:
        nmi = 1.0  # nothing split on either side: a perfect (trivial) match
    else:
        nmi = mi / max((ha + hb) / 2.0, np.finfo(np.float64).eps)
    homogeneity = 1.0 if hb == 0 else mi / hb  # b taken as the classes, a as the clusters
    completeness = 1.0 if ha == 0 else mi / ha
    v = 0.0 if homogeneity + completeness == 0 else 2 * homogeneity * completeness / (homogeneity + completeness)
    tk = (t**2).sum() - n
    pk, qk = (a**2).sum() - n, (b**2).sum() - n
    fm = float(np.sqrt(tk / pk) * np.sqrt(tk / qk)) if tk != 0 else 0.0
    return {"ari": float(ari), "nmi": float(nmi), "v_measure": float(v), "fowlkes_mallows": fm}


# --- figures -------------------------------------------------------------------------

def plot_heatmap(matrix: pd.DataFrame, path: str | Path, title: str, vmin: float | None = None,
                 vmax: float = 1.0, split_rows: int | None = None, split_cols: int | None = None,
                 cmap: str = "viridis") -> Path:
    """An annotated heatmap of a score matrix, sized so 20+ rows stay readable.

    ``split_rows`` / ``split_cols`` draw a line after that many rows / columns
    (between clusterings and label columns).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = matrix.to_numpy(dtype=float)
    nr, nc = values.shape
    cell = 0.42 if max(nr, nc) <= 30 else 0.32
    longest = max([len(str(x)) for x in list(matrix.index) + list(matrix.columns)] + [4])
    margin = 0.3 + 0.075 * longest
    fig = Figure(figsize=(nc * cell + margin + 1.6, nr * cell + margin + 0.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([margin / (nc * cell + margin + 1.6), margin / (nr * cell + margin + 0.8),
                       nc * cell / (nc * cell + margin + 1.6), nr * cell / (nr * cell + margin + 0.8)])
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else min(0.0, float(finite.min()) if finite.size else 0.0)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=vmax, aspect="auto",
                   interpolation="nearest")
    font = max(4.5, min(8.0, 150.0 / max(nr, nc)))
    norm = im.norm
    cm = im.get_cmap()
    for i in range(nr):
        for j in range(nc):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            r, g, b, _ = cm(norm(v))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, f"{v:.2f}".replace("0.", ".", 1) if abs(v) < 1 else f"{v:.1f}",
                    ha="center", va="center", fontsize=font, color=ink)
    ax.set_xticks(range(nc))
    ax.set_yticks(range(nr))
    ax.set_xticklabels([str(c) for c in matrix.columns], rotation=60, ha="right", fontsize=font + 1)
    ax.set_yticklabels([str(r) for r in matrix.index], fontsize=font + 1)
    if split_rows is not None and 0 < split_rows < nr:
        ax.axhline(split_rows - 0.5, color="white", lw=2.5)
    if split_cols is not None and 0 < split_cols < nc:
        ax.axvline(split_cols - 0.5, color="white", lw=2.5)
    ax.set_title(title, fontsize=10)
    cax = fig.add_axes([1 - 1.1 / (nc * cell + margin + 1.6), 0.25, 0.2 / (nc * cell + margin + 1.6), 0.5])
    fig.colorbar(im, cax=cax)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


# --- the run stage ----------------------------------------------------------------------

def compare_run(run: RunDir, cfg: Any) -> dict[str, Path]:
    """Score every clustering of a run against every other and against the label columns.

    Writes ``comparisons/scores_long.csv`` (columns a, b, kind_a, kind_b, noise,
    metric, value, n: one row per unordered pair, metric and noise mode),
    ``comparisons/ari.csv`` and ``comparisons/ami.csv`` (square matrices with
    noise as its own cluster; clusterings then labels on both axes; first
    column ``name``), ``comparisons/contingency_<clustering>__<truth>.csv``
    (rows: cluster labels, -1 = noise; columns: truth classes) and the figures
    ``figures/ari_matrix.png`` and ``figures/ami_matrix.png``.

    Returns
    -------
    dict
        Output name -> path.
    """
    clusterings = run.clusterings()
    if not clusterings:
        raise UserError(f"no clusterings in {run.path}: run `morphospace cluster` first")
    catalogue = run.read_catalogue()
    ids = run.cube_ids()
    labels = label_columns(catalogue, cfg)
    truth = truth_column(catalogue, cfg, candidates=labels)
    items: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name in clusterings:
        items[name] = clustering_in_cube_order(run, name, ids)
        kinds[name] = "clustering"
    for col in labels:
        if col in items:  # a label column named like a clustering: keep the clustering
            log.warning("label column '%s' has the name of a clustering; left out of the comparison", col)
            continue
        items[col] = labels_in_cube_order(run, col, catalogue)
        kinds[col] = "label"
    names = list(items)
    encoded = {name: encode(values) for name, values in items.items()}
    comp = run.sub("comparisons")
    out: dict[str, Path] = {}

    rows = []
    matrices = {m: pd.DataFrame(np.eye(len(names)), index=names, columns=names) for m in ("ari", "ami")}
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    with Timer(f"comparing {len(clusterings)} clusterings and {len(names) - len(clusterings)} labels"):
        for i, j in progress(pairs, desc="compare", unit="pair"):
            a, b = names[i], names[j]
            for mode in NOISE_MODES:
                s = score_pair(encoded[a], encoded[b], noise=mode)
                for metric in METRICS:
                    rows.append((a, b, kinds[a], kinds[b], mode, metric, s[metric], s["n"]))
                if mode == "own":
                    for m in ("ari", "ami"):
                        matrices[m].iloc[i, j] = matrices[m].iloc[j, i] = s[m]
    long = pd.DataFrame(rows, columns=["a", "b", "kind_a", "kind_b", "noise", "metric", "value", "n"])
    write_table(comp / "scores_long.csv", long)
    out["scores_long"] = comp / "scores_long.csv"
    n_clust = sum(1 for k in kinds.values() if k == "clustering")
    for m, title in (("ari", "Adjusted Rand index"), ("ami", "Adjusted mutual information")):
        write_table(comp / f"{m}.csv", matrices[m].rename_axis("name").reset_index())
        out[m] = comp / f"{m}.csv"
        out[f"{m}_figure"] = plot_heatmap(matrices[m], run.figure_path(f"{m}_matrix"),
                                          f"{title} (noise = own cluster)", split_rows=n_clust,
                                          split_cols=n_clust)
    if truth is not None and truth in items:
        for name in clusterings:
            table = contingency_table(encoded[name], encoded[truth], noise="own")
            path = comp / f"contingency_{safe_name(name)}__{safe_name(truth)}.csv"
            write_table(path, table.rename_axis(index="cluster", columns=None).reset_index())
            out[f"contingency_{name}"] = path
    if truth is not None and run.embeddings():
        with Timer(f"linear probes of {len(run.embeddings())} embeddings against '{truth}'"):
            probe = probe_run(run, truth, catalogue, random_state=int(getattr(cfg.cluster, "seed", 0)))
        if len(probe):
            write_table(comp / "linear_probe.csv", probe)
            out["linear_probe"] = comp / "linear_probe.csv"
    return out
