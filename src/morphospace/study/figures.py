"""The feature study's static figures: maps, k-selection curves and cluster galleries.

What the seed study drew, for papers (every file also shows in the report's "Other figures"):

- ``map_<reduction>.png``: the 2-D map coloured by the truth label ("true distribution") and,
  one panel each, by every clustering computed on that map (so DBSCAN on t-SNE, K-Means 8 on
  PCA and K-Means 8 on LDA are all there); noise points (label -1) in grey;
- ``k_selection_<representation>.png``: silhouette and Calinski-Harabasz of K-Means against
  k, and the BIC of the Gaussian mixtures, the selected k marked;
- ``gallery_<clustering>.png``: random members of every cluster, for the seed study's
  clusterings (K-Means 8 on PCA and on LDA, DBSCAN on t-SNE) and the VaDE's.

Each ``draw_*`` function returns a :class:`matplotlib.figure.Figure` made without pyplot (so a
notebook's backend is never touched: display the figure, or save it); each ``*_figure``
function draws the same figure and saves it as a PNG, atomically.

Reads only the run directory (framework-free: numpy, pandas, matplotlib).

Examples
--------
>>> import numpy as np
>>> fig = draw_map(np.random.default_rng(0).normal(size=(30, 2)), [("parity", np.arange(30) % 2)], "a map")
>>> len(fig.axes)
1
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis.clusterers import k_selection_curves
from ..analysis.labels import label_columns, labels_in_cube_order, missing_mask, truth_column
from ..image.display import display_image, figure_text
from ..image.palettes import class_colours, colour, natural
from ..run import RunDir, atomic_path
from ..run.provenance import read_record

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("morphospace")

__all__ = ["write_study_figures", "draw_map", "map_figure", "draw_k_selection", "k_selection_figure", "draw_gallery",
           "gallery_figure", "NOISE_GREY"]

GALLERY_MAPS = {"kmeans8": ("pca", "lda"), "dbscan": ("tsne",)}  # the seed study's clusterings
MAX_PANELS = 16
GALLERY_COLUMNS = 10
GALLERY_ROWS = 12


NOISE_GREY = "#c8c8c8"  # noise (label -1) and galaxies without a label, on every map


def _save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def _category_colours(cats: list[str], kind: str, palette: dict[str, str] | None = None) -> dict[str, str]:
    """The colour of each category, as the report and the explorer give it: a cluster by its number
    (:func:`~morphospace.image.palettes.colour`), a class by its value in ``palette`` (the run's,
    :func:`~morphospace.image.palettes.class_colours`; by default of ``cats`` alone). ``kind``:
    ``labels``, ``clusters``, or ``auto`` (clusters where every category is a whole number)."""
    def whole(c: str) -> bool:
        try:
            return float(c) == int(float(c))
        except (ValueError, OverflowError):
            return False

    if kind == "clusters" or (kind == "auto" and all(whole(c) for c in cats)):
        n = max((int(float(c)) for c in cats), default=-1) + 1
        return {c: colour(int(float(c)), n) for c in cats}
    palette = class_colours([cats]) if palette is None else palette
    return {c: palette.get(c, NOISE_GREY) for c in cats}


def _scatter(ax, xy: np.ndarray, labels: np.ndarray, title: str, size: float, kind: str = "auto", palette=None) -> None:
    """Categorical scatter; a clustering's -1 (noise; of labels, a class) and missing in grey, drawn first."""
    labels = np.asarray(labels, dtype=object)
    missing = missing_mask(labels)
    noise = np.array([kind != "labels" and not m and str(v) == "-1" for v, m in zip(labels, missing)], dtype=bool)
    grey = missing | noise
    if grey.any():
        ax.scatter(xy[grey, 0], xy[grey, 1], s=size, c=NOISE_GREY, linewidths=0, rasterized=True)
    text = labels.astype(str)
    cats = natural({str(v) for v in labels[~grey]})
    colours = _category_colours(cats, kind, palette)
    # the largest class first, the smaller over it: drawn in name order, 2,345 ellipticals hid 405 spirals
    sizes = {c: int((~grey & (text == c)).sum()) for c in cats}
    for c in sorted(cats, key=lambda c: -sizes[c]):
        sel = ~grey & (text == c)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=size, color=colours[c], linewidths=0, rasterized=True)
    ax.set_title(figure_text(title), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if 0 < len(cats) <= 12:  # in natural order, beside the panel: inside ("best") it lay over the points
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", ms=4, color=colours[c], label=figure_text(c)) for c in cats]
        if grey.any():
            handles.append(Line2D([], [], ls="", marker="o", ms=4, color=NOISE_GREY,
                                  label="noise or no label" if noise.any() and missing.any()
                                  else "noise" if noise.any() else "no label"))
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                  handletextpad=0.2, borderaxespad=0.2)


MAX_DRAWN = 100_000  # points per map panel: beyond, a fixed random subset (a static figure cannot show more)


def draw_map(xy: np.ndarray, panels: list[tuple[str, np.ndarray]], title: str, seed: int = 0, palette=None) -> Figure:
    """One scatter panel per labelling of the same 2-D map.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        The map (e.g. a t-SNE of an embedding).
    panels : list of (str, array-like) or (str, array-like, str)
        ``(panel title, n labels)``, or with a third item saying what the labels are
        (``"labels"``, ``"clusters"``; default ``"auto"``: clusters where every value is a whole
        number): the truth label, a clustering, ... Labels are categorical; each category gets
        the colour the report gives it (:mod:`morphospace.image.palettes`: a cluster by its
        number, a class by its value in ``palette``). The largest category is
        drawn first, the smaller over it. Noise (-1) and missing labels (None, NaN, "") are drawn
        first of all in :data:`NOISE_GREY`, so a panel whose labels are all missing shows every
        galaxy in grey.
    title : str
        The figure's title.
    seed : int
        Of the random :data:`MAX_DRAWN` rows drawn when the map has more (said in the title).
    palette : dict of str to str, optional
        Class -> colour (:func:`~morphospace.image.palettes.class_colours` of the run's label columns).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel, at most four panels to a row. Made without pyplot:
        it never changes a notebook's backend.
    """
    from matplotlib.figure import Figure

    n = len(panels)
    cols = min(4, n)
    rows = -(-n // cols)
    # room beside each panel for its legend (drawn outside the points)
    fig = Figure(figsize=(4.4 * cols, 3.1 * rows))
    fig.subplots_adjust(wspace=0.55, right=0.88)
    size = 4.0 if len(xy) < 2000 else (1.5 if len(xy) < 10000 else 0.6)
    shown = slice(None)
    if len(xy) > MAX_DRAWN:
        shown = np.sort(np.random.default_rng(seed).choice(len(xy), MAX_DRAWN, replace=False))
        title = f"{title} (a random {MAX_DRAWN:,} of {len(xy):,} galaxies drawn)"
    for i, (name, labels, *kind) in enumerate(panels):
        _scatter(fig.add_subplot(rows, cols, i + 1), xy[shown], np.asarray(labels, dtype=object)[shown], name, size,
                 *kind, palette=palette)
    fig.suptitle(figure_text(title), fontsize=11)
    return fig


def map_figure(xy: np.ndarray, panels: list[tuple[str, np.ndarray]], path: Path, title: str, palette=None) -> Path:
    """Save :func:`draw_map` as a PNG (80 dpi), atomically; return ``path``.

    Parameters
    ----------
    xy, panels, title, palette
        As for :func:`draw_map`.
    path : Path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.
    """
    return _save(draw_map(xy, panels, title, palette=palette), path, dpi=80)


def draw_k_selection(table: pd.DataFrame, title: str) -> Figure | None:
    """Silhouette and Calinski-Harabasz (K-Means) and BIC (GMM) against k, the selected k marked.

    Parameters
    ----------
    table : DataFrame
        ``comparisons/k_selection_<representation>.csv``: columns ``method``
        (kmeans or gmm), ``k``, ``selected`` and the scores ``silhouette``,
        ``calinski_harabasz``, ``bic``.
    title : str
        The figure's title.

    Returns
    -------
    matplotlib.figure.Figure or None
        One panel per curve with at least one value (up to three), the
        selected k circled in red; None when the table holds no curve.
    """
    from matplotlib.figure import Figure

    names = {"silhouette": "K-Means: silhouette (higher is better)",
             "calinski_harabasz": "K-Means: Calinski-Harabasz (higher is better)", "bic": "GMM: BIC (lower is better)"}
    curves = [(table[table["method"] == method].sort_values("k"), col, names[col])
              for method, col in k_selection_curves(table)]
    if not curves:
        return None
    fig = Figure(figsize=(3.6 * len(curves), 2.9))
    for i, (frame, col, name) in enumerate(curves):
        ax = fig.add_subplot(1, len(curves), i + 1)
        ax.plot(frame["k"], frame[col], "o-", color="#3b6ea8")
        chosen = frame[frame["selected"].astype(bool)] if "selected" in frame else frame.iloc[0:0]
        if len(chosen):
            # a BIC that still falls at the last k tried: the range chose, not the data (said on the panel)
            edge = col == "bic" and len(frame) > 1 and int(chosen["k"].iloc[0]) == int(frame["k"].max())
            ax.plot(chosen["k"], chosen[col], "o", ms=11, mfc="none", mec="#d1495b", mew=2,
                    label="selected: the largest k tried,\nstill falling (widen the range)" if edge else "selected")
            ax.legend(fontsize=7, frameon=False)
        ax.set_xlabel("k")
        ax.set_title(name, fontsize=8)
    fig.suptitle(figure_text(title), fontsize=10, y=1.03)
    return fig


def k_selection_figure(table: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Save :func:`draw_k_selection` as a PNG, atomically.

    Parameters
    ----------
    table, title
        As for :func:`draw_k_selection`.
    path : Path
        The PNG to write.

    Returns
    -------
    Path or None
        ``path``, or None (and nothing written) when the table holds no curve.
    """
    fig = draw_k_selection(table, title)
    return None if fig is None else _save(fig, path)


def draw_gallery(cube: np.ndarray, labels: np.ndarray, title: str, seed: int = 0) -> Figure:
    """Rows of random members of each cluster: the largest clusters first, noise last.

    Parameters
    ----------
    cube : ndarray, shape (n, C, H, W)
        The images, in ~[0, 1] (three channels shown as RGB, others as the
        grey of their mean).
    labels : array-like of int, shape (n,)
        One cluster per image; -1 is noise.
    title : str
        The figure's title.
    seed : int
        Seed of the random choice of members.

    Returns
    -------
    matplotlib.figure.Figure
        :data:`GALLERY_COLUMNS` axes per row, one row for each of the
        :data:`GALLERY_ROWS` largest clusters (then noise, if there is room),
        labelled with the cluster and its size. A cluster with fewer members
        than columns leaves the rest of its row blank (white).
    """
    from matplotlib.figure import Figure

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    ks, counts = np.unique(labels, return_counts=True)
    order = [k for _, k in sorted(zip(-counts, ks)) if k != -1][:GALLERY_ROWS]
    if -1 in ks and len(order) < GALLERY_ROWS:
        order.append(-1)
    fig = Figure(figsize=(GALLERY_COLUMNS * 0.9 + 1.2, len(order) * 0.95 + 0.5))
    for r, k in enumerate(order):
        members = np.flatnonzero(labels == k)
        pick = np.sort(rng.choice(members, size=min(GALLERY_COLUMNS, len(members)), replace=False))
        for c in range(GALLERY_COLUMNS):
            ax = fig.add_subplot(len(order), GALLERY_COLUMNS, r * GALLERY_COLUMNS + c + 1)
            ax.axis("off")
            if c < len(pick):
                img = cube[pick[c]]
                ax.imshow(display_image(img), cmap=None if img.shape[0] == 3 else "gray", vmin=0, vmax=255,
                          interpolation="nearest")
            if c == 0:
                ax.text(-0.15, 0.5, f"{'noise' if k == -1 else k}\nn={len(members)}", transform=ax.transAxes,
                        ha="right", va="center", fontsize=7)
    fig.suptitle(figure_text(title), fontsize=10, y=1.03)
    return fig


def gallery_figure(cube: np.ndarray, labels: np.ndarray, path: Path, title: str, seed: int = 0) -> Path:
    """Save :func:`draw_gallery` as a PNG, atomically; return ``path``.

    Parameters
    ----------
    cube, labels, title, seed
        As for :func:`draw_gallery`.
    path : Path
        The PNG to write, at 72 dpi: about one screen pixel per image pixel
        (noisy cutouts compress badly).

    Returns
    -------
    Path
        ``path``.
    """
    return _save(draw_gallery(cube, labels, title, seed), path, dpi=72)


def _labels_by_id(run: RunDir, name: str, ids: np.ndarray) -> np.ndarray:
    t = run.read_clustering(name)
    s = pd.Series(t["label"].to_numpy(), index=t["id"].astype(str))
    return s.reindex(ids).fillna(-1).astype(int).to_numpy()


def write_study_figures(run: RunDir, cfg=None) -> list[Path]:
    """Write every figure of this module that the run's reductions and clusterings allow.

    Parameters
    ----------
    run : RunDir
        The run; figures go to ``RUN/figures/``.
    cfg : Config, optional
        Uses ``data.truth_label`` (the label of the "true distribution" panels).

    Returns
    -------
    list of Path
        The PNGs written: ``map_<reduction>.png`` for every 2-D reduction with
        a label or a clustering to show, ``k_selection_<representation>.png``
        for every k-selection table, ``gallery_<clustering>.png`` for the seed
        study's clusterings and the VaDE's. Empty when the run has neither
        reductions nor clusterings.
    """
    written: list[Path] = []
    reductions, clusterings = run.reductions(), run.clusterings()
    if not reductions and not clusterings:
        return written
    ids = run.cube_ids().astype(str)
    read: dict[str, np.ndarray] = {}  # a clustering drawn on its map and in a gallery is read once
    made_from: dict[str, str | None] = {}

    def representation_of(name: str) -> str | None:
        if name not in made_from:
            made_from[name] = read_record(run.clustering_path(name).with_suffix(".json")).get("representation")
        return made_from[name]

    def labels_of(name: str) -> np.ndarray:
        if name not in read:
            read[name] = _labels_by_id(run, name, ids)
        return read[name]

    cat = run.read_catalogue()
    truth = truth_column(cat, cfg)
    # the truth as the report shows it (T-types 1, not 1.0), its panel in the report's class colours
    truth_values = labels_in_cube_order(run, truth, cat) if truth is not None and reductions else None
    palette = None if truth_values is None else class_colours(
        labels_in_cube_order(run, c, cat) for c in label_columns(cat, cfg))
    for red in reductions:
        xy = run.read_reduction(red)
        if xy.ndim != 2 or xy.shape[1] < 2 or len(xy) != len(ids):
            continue
        # by each clustering's record of what it clustered: by the name's end, the VaDE's PCA map's
        # kmeans3_vade_pca (or the pixels' kmeans8_pixels_pca) was drawn on the features' map_pca
        on_map = [c for c in clusterings if representation_of(c) == red
                  or (representation_of(c) is None and c.endswith("_" + red))]  # recorded before records
        panels = ([(f"true distribution ({truth})", truth_values, "labels")] if truth_values is not None else [])
        panels += [(c, labels_of(c)) for c in on_map]
        if panels:
            written.append(map_figure(xy[:, :2], panels[:MAX_PANELS], run.figure_path(f"map_{red}"),
                                      f"{red}: coloured by the labels and by each clustering on it", palette=palette))
    comp = run.path / "comparisons"
    for csv in sorted(comp.glob("k_selection_*.csv")) if comp.is_dir() else []:
        rep = csv.stem[len("k_selection_"):]
        p = k_selection_figure(pd.read_csv(csv), run.figure_path(f"k_selection_{rep}"), f"choosing k on {rep}")
        if p is not None:
            written.append(p)

    def seed_study(name: str) -> bool:  # kmeans8_pca, kmeans8_vade_lda, dbscan_tsne, ...
        method, _, rest = name.partition("_")
        return rest.rsplit("_", 1)[-1] in GALLERY_MAPS.get(method, ())

    wanted = [c for c in clusterings if c == "vade" or seed_study(c)]
    if wanted:
        cube = run.read_cube()
        for c in wanted:
            written.append(gallery_figure(cube, labels_of(c), run.figure_path(f"gallery_{c}"),
                                          f"{c}: random members of each cluster"))
    kept = {Path(p).resolve() for p in written}
    for pattern in ("gallery_*.png", "map_*.png", "k_selection_*.png"):  # of clusterings or maps gone: not shown
        for stale in run.path.joinpath("figures").glob(pattern):
            if stale.resolve() not in kept:
                stale.unlink(missing_ok=True)
    log.info("study figures: %d written (maps, k-selection curves, galleries)", len(written))
    return written
