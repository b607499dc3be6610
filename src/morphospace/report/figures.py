"""Static charts of the report (matplotlib), each a Figure the report saves as a PNG under ``RUN/figures/``.

Every ``draw_*`` function takes plain arrays and tables and returns one
:class:`matplotlib.figure.Figure`, made without pyplot so a notebook's backend
is never touched (display it, or save it with :func:`~morphospace.report.style.save_figure`).
The figures are drawn in the report's style and palette
(:mod:`morphospace.report.style`); image grids (mosaics, galleries) are
:mod:`morphospace.report.grids`.

Examples
--------
>>> from morphospace.report.style import GREY, colour
>>> fig = draw_cluster_sizes(["0", "1", "noise"], [40, 25, 3], [colour(0), colour(1), GREY], "sizes")
>>> len(fig.axes)
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..image.display import figure_text
from ..image.palettes import class_colours
from .style import EXCLUDED, GREY, INK, KEPT, MUTED, colour, new_figure, short, styled

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw_flags", "draw_labels", "draw_training", "draw_cluster_sizes", "draw_label_mix",
           "draw_anomaly_by_cluster", "draw_anomaly_histogram"]


# --- the data ----------------------------------------------------------------------------

def _label(text: object, n: int = 28) -> str:
    """:func:`~morphospace.report.style.short` text as a matplotlib figure shows it ($ escaped)."""
    return figure_text(short(text, n))


@styled
def draw_flags(flags: pd.DataFrame) -> Figure:
    """Horizontal bars of galaxies per quality flag.

    Parameters
    ----------
    flags : DataFrame
        Columns ``flag``, ``count`` and ``excluded`` (the flag's galaxies were
        kept out of the cube).

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one bar per flag (fewest at the bottom, each labelled with
        its count): red (:data:`EXCLUDED`) for flags that keep galaxies out of
        the cube, amber (:data:`KEPT`) for the others.
    """
    flags = flags.sort_values("count")
    fig = new_figure(7.0, 0.8 + 0.34 * len(flags))
    ax = fig.add_subplot()
    cols = [EXCLUDED if ex else KEPT for ex in flags["excluded"]]
    pos = np.arange(len(flags))
    bars = ax.barh(pos, flags["count"], color=cols, height=0.62)
    ax.set_yticks(pos, [_label(f) for f in flags["flag"]])
    ax.bar_label(bars, padding=3, fontsize=8.5, color=MUTED)
    ax.set_xlabel("galaxies")
    ax.grid(axis="y", visible=False)
    ax.set_title("Quality flags (red: kept out of the cube, amber: kept)")
    ax.margins(x=0.12)
    return fig


@styled
def draw_labels(counts: dict[str, pd.Series], colours: dict[str, str] | None = None) -> Figure:
    """One bar panel per label column.

    Parameters
    ----------
    counts : dict of str to Series
        Label column -> galaxies per value (index: the values, in the order
        drawn from the top; ``"(missing)"`` is drawn in :data:`GREY`).
    colours : dict of str to str, optional
        Class -> colour, keyed by value (the page's,
        :attr:`~morphospace.report.collect.RunContents.class_colours`); by default
        :func:`~morphospace.image.palettes.class_colours` of every panel's values, so a value has
        one colour in every panel.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per label column, side by side.
    """
    cols = list(counts)
    colours = class_colours(counts[c].index for c in cols) if colours is None else colours
    height = max(len(counts[c]) for c in cols)
    fig = new_figure(3.6 * len(cols) + 0.6, 0.9 + 0.3 * max(height, 3))
    for j, col in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), j + 1)
        s = counts[col]
        pos = np.arange(len(s))[::-1]
        bars = ax.barh(pos, s.to_numpy(), color=[colours.get(str(v), GREY) for v in s.index], height=0.66)
        ax.set_yticks(pos, [_label(v, 22) for v in s.index])
        ax.bar_label(bars, padding=3, fontsize=8, color=MUTED)
        ax.set_title(_label(col, 30))
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.16)
    fig.tight_layout()
    return fig


# --- the model ------------------------------------------------------------------------------

def _metric_family(name: str) -> str:
    """``train_loss`` / ``val_loss`` / ``loss_epoch`` -> ``loss``: train and validation on one panel."""
    base = name
    for prefix in ("train_", "val_", "valid_", "validation_", "test_", "train/", "val/", "valid/"):
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    for suffix in ("_epoch", "_step"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


@styled
def draw_training(logs: list[tuple[str, pd.DataFrame]], max_panels: int = 8) -> Figure | None:
    """Training curves from Lightning ``metrics.csv`` logs, one panel per metric family.

    Parameters
    ----------
    logs : list of (str, DataFrame)
        ``(run name, metrics.csv table)``; numeric columns other than
        ``epoch`` and ``step`` are metrics. ``train_loss`` and ``val_loss``
        are one family (``loss``) and share a panel (validation dashed).
    max_panels : int
        At most this many panels (loss families first).

    Returns
    -------
    matplotlib.figure.Figure or None
        Up to three panels to a row. Each curve is plotted against the epoch
        when every logged row has one (a per-step metric is averaged within
        its epoch), else against the step; a panel whose values span more than
        a factor 50 has a log scale. None when the logs hold no numeric metric.
    """
    panels: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    xlabel = "epoch"
    for title, table in logs:
        metrics = [c for c in table.columns if c not in ("epoch", "step") and pd.api.types.is_numeric_dtype(table[c])]
        for m in metrics:
            keys = [c for c in ("epoch", "step") if c in table.columns]
            rows = table[keys + [m]].dropna(subset=[m])
            if rows.empty:
                continue
            if "epoch" in rows and rows["epoch"].notna().all():
                per = rows.groupby("epoch")[m].mean()
                x, y = per.index.to_numpy(dtype=float) + 1, per.to_numpy(dtype=float)
            elif "step" in rows:
                x, y, xlabel = rows["step"].to_numpy(dtype=float), rows[m].to_numpy(dtype=float), "step"
            else:
                x, y = np.arange(1, len(rows) + 1, dtype=float), rows[m].to_numpy(dtype=float)
            label = m if len(logs) == 1 else f"{title}: {m}"
            panels.setdefault(_metric_family(m), []).append((label, x, y))
    if not panels:
        return None
    names = sorted(panels, key=lambda k: (0 if "loss" in k else 1, k))[:max_panels]
    ncols = min(3, len(names))
    nrows = (len(names) + ncols - 1) // ncols
    fig = new_figure(4.1 * ncols, 2.9 * nrows)
    for j, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        for k, (label, x, y) in enumerate(panels[name]):
            style = "--" if label.split(": ")[-1].startswith(("val", "valid")) else "-"
            ax.plot(x, y, style, color=colour(k), lw=1.8, marker="o" if len(x) <= 30 else None, ms=3,
                    label=_label(label, 40))
        ax.set_title(_label(name, 34))
        ax.set_xlabel(xlabel)
        finite = np.concatenate([y[np.isfinite(y)] for _, _, y in panels[name]])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 50:
            ax.set_yscale("log")  # losses that fall by orders of magnitude
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig


# --- the clusters ---------------------------------------------------------------------------

@styled
def draw_cluster_sizes(names: Sequence[str], sizes: Sequence[int], colours: Sequence[str], title: str) -> Figure:
    """Vertical bars of galaxies per cluster.

    Parameters
    ----------
    names : sequence of str
        Cluster names, in the order drawn.
    sizes : sequence of int
        Galaxies per cluster.
    colours : sequence of str
        One colour per cluster (the explorer's, :func:`colour`).
    title : str
        The axes' title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, each bar labelled with its count.
    """
    fig = new_figure(max(5.0, 0.55 * len(names) + 1.5), 3.2)
    ax = fig.add_subplot()
    pos = np.arange(len(names))
    bars = ax.bar(pos, sizes, color=colours, width=0.7)
    ax.set_xticks(pos, [_label(n, 12) for n in names])
    ax.bar_label(bars, padding=2, fontsize=8, color=MUTED)
    ax.set_ylabel("galaxies")
    ax.grid(axis="x", visible=False)
    ax.set_title(figure_text(title))
    ax.margins(y=0.15)
    if len(names) > 10:
        ax.tick_params(axis="x", rotation=60)
    return fig


@styled
def draw_label_mix(table: pd.DataFrame, title: str, colours: dict[str, str] | None = None) -> Figure:
    """Stacked horizontal bars: for each cluster, the fraction of each label.

    Parameters
    ----------
    table : DataFrame
        Counts, clusters as rows and label values as columns
        (``"(missing)"`` is drawn in :data:`GREY`).
    title : str
        The axes' title.
    colours : dict of str to str, optional
        Label value -> colour (the page's, apart from the clusters'); by default
        :func:`~morphospace.image.palettes.class_colours` of the columns.

    Returns
    -------
    matplotlib.figure.Figure
        One axes (fractions from 0 to 1), the legend under the bars.
    """
    frac = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    fig = new_figure(5.0, 1.5 + 0.34 * len(frac) + 0.22 * ((len(frac.columns) + 2) // 3))
    ax = fig.add_subplot()
    left = np.zeros(len(frac))
    pos = np.arange(len(frac))[::-1]
    ax.set_yticks(pos, [_label(r, 16) for r in frac.index])
    colours = class_colours([frac.columns]) if colours is None else colours
    for col in frac.columns:
        vals = frac[col].to_numpy()
        ax.barh(pos, vals, left=left, color=colours.get(str(col), GREY),
                height=0.7, label=_label(col, 20))
        left += vals
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of the cluster")
    ax.grid(axis="y", visible=False)
    ax.set_title(figure_text(title))
    # legend under the bars: the figure stays narrow enough to sit beside the others
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8)
    return fig


@styled
def draw_anomaly_by_cluster(groups: list[tuple[str, str, np.ndarray]], what: str) -> Figure:
    """Box plots of the anomaly score per cluster.

    Parameters
    ----------
    groups : list of (str, str, ndarray)
        ``(cluster name, colour, scores)``; non-finite scores are left out.
    what : str
        What the score is (the y label).

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one box per cluster in its colour (no fliers).
    """
    fig = new_figure(max(5.0, 0.55 * len(groups) + 1.5), 3.0)
    ax = fig.add_subplot()
    data = [g[2][np.isfinite(g[2])] for g in groups]
    # the galaxies beyond the whiskers as small dots: left out, a cluster's strangest (the top of the
    # strangest list) did not show at all
    bp = ax.boxplot(data, patch_artist=True, showfliers=True, widths=0.6, medianprops={"color": INK, "lw": 1.2},
                    flierprops={"marker": ".", "markersize": 2.5, "markeredgewidth": 0, "markerfacecolor": MUTED,
                                "alpha": 0.6})
    for patch, (_, col, _) in zip(bp["boxes"], groups):
        patch.set_facecolor(col)
        patch.set_alpha(0.85)
        patch.set_edgecolor("white")
    ax.set_xticks(range(1, len(groups) + 1), [_label(g[0], 12) for g in groups],
                  rotation=60 if len(groups) > 10 else 0)
    ax.set_ylabel(what)
    ax.grid(axis="x", visible=False)
    ax.set_title("Anomaly score by cluster")
    ax.set_xlabel("cluster")
    return fig


@styled
def draw_anomaly_histogram(scores: np.ndarray, threshold: float, what: str) -> Figure:
    """Histogram of the anomaly score (log counts), the strangest galaxies' threshold marked.

    Parameters
    ----------
    scores : ndarray
        One score per galaxy (non-finite ones left out).
    threshold : float
        The lowest score among the galaxies shown as the strangest: a dashed
        red line.
    what : str
        What the score is (the x label).

    Returns
    -------
    matplotlib.figure.Figure
        One axes.
    """
    s = scores[np.isfinite(scores)]
    fig = new_figure(6.4, 2.6)
    ax = fig.add_subplot()
    ax.hist(s, bins=min(80, max(10, int(np.sqrt(len(s))))), color="#7a8cff", alpha=0.9)
    ax.axvline(threshold, color="#e5484d", lw=1.5, ls="--")
    ax.text(threshold, ax.get_ylim()[1] * 0.92, " strangest", color="#e5484d", fontsize=8.5, va="top")
    ax.set_yscale("log")
    ax.set_xlabel(what)
    ax.set_ylabel("galaxies")
    ax.set_title("Distribution of the anomaly score")
    return fig
