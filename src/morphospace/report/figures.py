"""Static figures of the report (matplotlib, Agg), each saved as a PNG under ``RUN/figures/``.

Every function takes plain arrays and tables, draws one figure, writes it
atomically to the path it is given and returns that path. Figures share one
quiet style (:data:`STYLE`) and the categorical :data:`PALETTE` that the
explorer uses, so a cluster has the same colour everywhere in the report.
Image grids (mosaics, galleries) are tiled with Pillow at the cube's own
resolution rather than through matplotlib, which would resample them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..run import atomic_path

PALETTE = ["#4e9df5", "#f5a623", "#e5484d", "#30c48d", "#a07cf0", "#ff7fbf", "#38c5d8", "#c7d93a",
           "#f07a3a", "#7a8cff", "#2fb37a", "#d65db1", "#8fd0ff", "#ffcf70", "#b5e48c", "#ff9f9f",
           "#9aa7ff", "#66d9c2", "#e0a3ff", "#c9a27e"]
GREY = "#8b93a1"  # noise, missing, "not in this clustering"
INK = "#1f2430"
MUTED = "#5c6577"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "axes.edgecolor": "#c9ced8",
    "axes.labelcolor": MUTED,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.titlepad": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e9ecf2",
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.12,
}


def colour(k: int) -> str:
    """Palette colour of category ``k`` (negative: grey)."""
    return GREY if k < 0 else PALETTE[k % len(PALETTE)]


def colormap_lut(name: str = "magma", n: int = 256, lo: float = 0.12, hi: float = 1.0) -> list[list[int]]:
    """``n`` RGB triplets of a matplotlib colormap (the explorer's continuous colours)."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    vals = cmap(np.linspace(lo, hi, n))[:, :3]
    return np.round(vals * 255).astype(int).tolist()


def _figure(width: float, height: float):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ctx = matplotlib.rc_context(STYLE)
    ctx.__enter__()
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, ctx


def _save(fig, ctx, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        ctx.__exit__(None, None, None)
    return path


def _short(text: object, n: int = 28) -> str:
    s = str(text)
    return s if len(s) <= n else s[: n - 1] + "\u2026"


# --- the data ----------------------------------------------------------------------------

def flags_figure(flags: pd.DataFrame, path: Path) -> Path:
    """Horizontal bars of galaxies per quality flag; ``flags`` has columns flag, count, excluded."""
    flags = flags.sort_values("count")
    fig, ctx = _figure(7.0, 0.8 + 0.34 * len(flags))
    ax = fig.add_subplot()
    cols = ["#e5484d" if ex else "#f5a623" for ex in flags["excluded"]]
    pos = np.arange(len(flags))
    bars = ax.barh(pos, flags["count"], color=cols, height=0.62)
    ax.set_yticks(pos, [_short(f) for f in flags["flag"]])
    ax.bar_label(bars, padding=3, fontsize=8.5, color=MUTED)
    ax.set_xlabel("galaxies")
    ax.grid(axis="y", visible=False)
    ax.set_title("Quality flags (red: kept out of the cube, amber: kept)")
    ax.margins(x=0.12)
    return _save(fig, ctx, path)


def labels_figure(counts: dict[str, pd.Series], path: Path) -> Path:
    """One bar panel per label column (value -> galaxies in the cube)."""
    cols = list(counts)
    height = max(len(counts[c]) for c in cols)
    fig, ctx = _figure(3.6 * len(cols) + 0.6, 0.9 + 0.3 * max(height, 3))
    for j, col in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), j + 1)
        s = counts[col]
        pos = np.arange(len(s))[::-1]
        bars = ax.barh(pos, s.to_numpy(), color=[GREY if str(v) == "(missing)" else colour(k)
                                                  for k, v in enumerate(s.index)], height=0.66)
        ax.set_yticks(pos, [_short(v, 22) for v in s.index])
        ax.bar_label(bars, padding=3, fontsize=8, color=MUTED)
        ax.set_title(_short(col, 30))
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.16)
    fig.tight_layout()
    return _save(fig, ctx, path)


# --- image grids (Pillow) --------------------------------------------------------------------

def image_grid(images: np.ndarray, cols: int, gap: int = 2, background: int = 255,
               scale: int = 1) -> Image.Image:
    """Tile N x H x W x C uint8 images in a grid with ``gap`` pixels between them."""
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), background, dtype=np.uint8)
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        grid[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = img
    pil = Image.fromarray(grid[..., 0] if c == 1 else grid, "L" if c == 1 else "RGB")
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    return pil


def mosaic_figure(images: np.ndarray, path: Path, cols: int = 12) -> Path:
    """A mosaic of galaxies at the cube's resolution (upscaled x2 when smaller than 64 px)."""
    scale = 2 if images.shape[1] < 64 else 1
    pil = image_grid(images, cols, gap=2, scale=scale)
    with atomic_path(path) as tmp:
        pil.save(tmp, "PNG")
    return path


def gallery_figure(rows: list[tuple[str, str, np.ndarray]], path: Path, per_row: int) -> Path:
    """One row of images per cluster, its name in a coloured band at the left.

    ``rows`` holds (title, hex colour, K x H x W x C uint8 images).
    """
    h, w, c = rows[0][2].shape[1:]
    band, gap = 150, 2
    width = band + per_row * (w + gap)
    height = len(rows) * (h + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (title, hexcol, imgs) in enumerate(rows):
        y = i * (h + gap)
        draw.rectangle([0, y, 6, y + h - 1], fill=hexcol)
        draw.text((12, y + h // 2 - 6), _short(title, 22), fill=INK)
        for k, img in enumerate(imgs[:per_row]):
            tile = Image.fromarray(img[..., 0] if c == 1 else img, "L" if c == 1 else "RGB").convert("RGB")
            canvas.paste(tile, (band + k * (w + gap), y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, "PNG")
    return path


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


def training_figure(logs: list[tuple[str, pd.DataFrame]], path: Path, max_panels: int = 8) -> Path | None:
    """Training curves from Lightning ``metrics.csv`` logs, one panel per metric family.

    Each curve is plotted against the epoch when every logged row has one (a
    per-step metric is averaged within its epoch), else against the step.
    Returns None when the logs hold no numeric metric.
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
    fig, ctx = _figure(4.1 * ncols, 2.9 * nrows)
    for j, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        for k, (label, x, y) in enumerate(panels[name]):
            style = "--" if label.split(": ")[-1].startswith(("val", "valid")) else "-"
            ax.plot(x, y, style, color=colour(k), lw=1.8, marker="o" if len(x) <= 30 else None, ms=3,
                    label=_short(label, 40))
        ax.set_title(_short(name, 34))
        ax.set_xlabel(xlabel)
        finite = np.concatenate([y[np.isfinite(y)] for _, _, y in panels[name]])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 50:
            ax.set_yscale("log")  # losses that fall by orders of magnitude
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return _save(fig, ctx, path)


# --- the clusters ---------------------------------------------------------------------------

def cluster_sizes_figure(names: Sequence[str], sizes: Sequence[int], colours: Sequence[str], path: Path,
                         title: str) -> Path:
    fig, ctx = _figure(max(5.0, 0.55 * len(names) + 1.5), 3.2)
    ax = fig.add_subplot()
    pos = np.arange(len(names))
    bars = ax.bar(pos, sizes, color=colours, width=0.7)
    ax.set_xticks(pos, [_short(n, 12) for n in names])
    ax.bar_label(bars, padding=2, fontsize=8, color=MUTED)
    ax.set_ylabel("galaxies")
    ax.grid(axis="x", visible=False)
    ax.set_title(title)
    ax.margins(y=0.15)
    if len(names) > 10:
        ax.tick_params(axis="x", rotation=60)
    return _save(fig, ctx, path)


def label_mix_figure(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Stacked horizontal bars: for each cluster (row), the fraction of each label (column)."""
    frac = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    fig, ctx = _figure(5.0, 1.5 + 0.34 * len(frac) + 0.22 * ((len(frac.columns) + 2) // 3))
    ax = fig.add_subplot()
    left = np.zeros(len(frac))
    pos = np.arange(len(frac))[::-1]
    ax.set_yticks(pos, [_short(r, 16) for r in frac.index])
    for k, col in enumerate(frac.columns):
        vals = frac[col].to_numpy()
        ax.barh(pos, vals, left=left, color=GREY if str(col) == "(missing)" else colour(k),
                height=0.7, label=_short(col, 20))
        left += vals
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of the cluster")
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    # legend under the bars: the figure stays narrow enough to sit beside the others
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8)
    return _save(fig, ctx, path)


def anomaly_by_cluster_figure(groups: list[tuple[str, str, np.ndarray]], path: Path, what: str) -> Path:
    """Box plots of the anomaly score per cluster; ``groups`` holds (name, colour, scores)."""
    fig, ctx = _figure(max(5.0, 0.55 * len(groups) + 1.5), 3.0)
    ax = fig.add_subplot()
    data = [g[2][np.isfinite(g[2])] for g in groups]
    bp = ax.boxplot(data, patch_artist=True, showfliers=False, widths=0.6,
                    medianprops={"color": INK, "lw": 1.2})
    for patch, (_, col, _) in zip(bp["boxes"], groups):
        patch.set_facecolor(col)
        patch.set_alpha(0.85)
        patch.set_edgecolor("white")
    ax.set_xticks(range(1, len(groups) + 1), [_short(g[0], 12) for g in groups],
                  rotation=60 if len(groups) > 10 else 0)
    ax.set_ylabel(what)
    ax.grid(axis="x", visible=False)
    ax.set_title("Anomaly score by cluster")
    return _save(fig, ctx, path)


def anomaly_histogram(scores: np.ndarray, threshold: float, path: Path, what: str) -> Path:
    s = scores[np.isfinite(scores)]
    fig, ctx = _figure(6.4, 2.6)
    ax = fig.add_subplot()
    ax.hist(s, bins=min(80, max(10, int(np.sqrt(len(s))))), color="#7a8cff", alpha=0.9)
    ax.axvline(threshold, color="#e5484d", lw=1.5, ls="--")
    ax.text(threshold, ax.get_ylim()[1] * 0.92, " strangest", color="#e5484d", fontsize=8.5, va="top")
    ax.set_yscale("log")
    ax.set_xlabel(what)
    ax.set_ylabel("galaxies")
    ax.set_title("Distribution of the anomaly score")
    return _save(fig, ctx, path)


def heatmap_figure(matrix: pd.DataFrame, path: Path, title: str, vmin: float | None = None) -> Path:
    """A score matrix drawn like the comparison stage draws it (``compare.plot_heatmap``)."""
    from ..analysis.compare import plot_heatmap

    return plot_heatmap(matrix, path, title, vmin=vmin)
