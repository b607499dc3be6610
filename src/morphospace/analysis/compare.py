"""The compare stage: agreement between clusterings, and between clusterings and labels.

:func:`compare_run` scores every clustering of a run against every other and
against each categorical label column of the catalogue (the scores of
:mod:`morphospace.analysis.agreement`: ARI, AMI, NMI, V-measure,
Fowlkes-Mallows from :mod:`sklearn.metrics`, Hungarian accuracy and purity),
writes the tables and draws the ARI and AMI matrices (:func:`draw_heatmap`).
The scores are re-exported here (``from morphospace.analysis.compare import
score_pair``).

Examples
--------
>>> from morphospace.config import Config
>>> from morphospace.run import RunDir
>>> compare_run(RunDir("runs/gz1"), Config())["ari"]  # doctest: +SKIP
PosixPath('runs/gz1/comparisons/ari.csv')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..image.display import figure_text
from ..progress import Timer, progress
from ..run import RunDir, atomic_path, safe_name, write_json, write_table
from ..run.provenance import comparison_inputs, read_record, stale_results
from .agreement import METRICS, NOISE_MODES, contingency_table, hungarian_accuracy, purity, score_pair
from .labels import Encoded, clustering_in_cube_order, encode, label_columns, labels_in_cube_order, truth_column
from .probe import fine_tuning_rows, probe_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("morphospace")

__all__ = [
    "METRICS",
    "NOISE_MODES",
    "score_pair",
    "contingency_table",
    "hungarian_accuracy",
    "purity",
    "draw_heatmap",
    "plot_heatmap",
    "compare_run",
    "CONTINGENCY_INDEX",
    "HELD_OUT",
    "trained_rows",
]

CONTINGENCY_INDEX = "contingency.json"  # each contingency file's clustering and truth, as spelled
# the clusterings of features fine-tuned on labels or of an LDA map, scored against labels on the labelled
# galaxies held out of that training (how many, per clustering)
HELD_OUT = "held_out.json"
# what was compared (run.provenance.comparison_inputs: clusterings, embeddings, catalogue), written last; marked
# incomplete while the stage runs
INPUTS = "inputs.json"


# --- labels a representation was trained on -------------------------------------------

def trained_rows(run: RunDir, clusterings: list[str]) -> dict[str, np.ndarray]:
    """The cube rows whose labels may have trained what each clustering clusters (a study's
    fine-tuned features, or a map of them: :func:`~morphospace.analysis.probe.fine_tuning_rows`;
    an LDA map: the labelled rows it was fitted on), for the clusterings of such a representation only."""
    from .reduce import unpack_rows

    embeddings, by_embedding, out = set(run.embeddings()), {}, {}
    n, old_maps = len(run.cube_ids()), set()
    for name in clusterings:
        embedding = str(read_record(run.clustering_path(name).with_suffix(".json")).get("representation", ""))
        fitted = None  # the rows whose labels a map learnt (an LDA's)
        if embedding and embedding not in embeddings:  # a map: the embedding it was made from
            made = read_record(run.reduction_path(embedding).with_suffix(".json"))
            if made.get("reduction") == "lda":
                fitted = unpack_rows(made.get("fitted_rows", ""), n)
                if fitted is None:  # written before LDA maps held labels out: it learnt from all of them
                    if embedding not in old_maps:
                        old_maps.add(embedding)
                        log.warning("the LDA map %s was fitted on every label (made by an earlier version): its "
                                    "clusterings are not scored against the labels; `morphospace reduce %s` makes "
                                    "it again, holding a fifth of them out", embedding, run.path)
                    fitted = np.ones(n, dtype=bool)
            embedding = str(made.get("embedding", ""))
        tuned = None
        if embedding in embeddings:
            if embedding not in by_embedding:
                by_embedding[embedding] = fine_tuning_rows(run, embedding, who="compare")
            tuned = by_embedding[embedding]
        if tuned is not None or fitted is not None:
            out[name] = (tuned if tuned is not None else False) | (fitted if fitted is not None else False)
    return out


def _held_out(labels: Encoded, trained: np.ndarray | None) -> Encoded:
    """``labels`` with the rows in ``trained`` missing (left out of every score), or as they are."""
    if trained is None:
        return labels
    return Encoded(np.where(trained, -1, labels.codes), labels.missing | trained, labels.noise & ~trained,
                   labels.uniques)


# --- figures -------------------------------------------------------------------------

def draw_heatmap(matrix: pd.DataFrame, title: str, vmin: float | None = None, vmax: float = 1.0,
                 split_rows: int | None = None, split_cols: int | None = None,
                 cmap: str = "viridis") -> Figure:
    """An annotated heatmap of a score matrix, sized so 20+ rows stay readable.

    Parameters
    ----------
    matrix : DataFrame
        Scores; its index and columns label the rows and columns.
    title : str
        The title above the matrix.
    vmin, vmax : float, optional
        The colour scale; ``vmin`` defaults to the smaller of 0 and the
        lowest finite score.
    split_rows, split_cols : int, optional
        Draw a white line after that many rows / columns (between the
        clusterings and the label columns).
    cmap : str
        A matplotlib colormap name.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the matrix (every finite cell annotated with its value) and
        its colour bar. A NaN cell is left blank (the white of the figure,
        without a number). The figure is made without pyplot, so it never
        touches the backend of a notebook (display it, or save it with
        ``fig.savefig``).
    """
    from matplotlib.figure import Figure

    values = matrix.to_numpy(dtype=float)
    nr, nc = values.shape
    cell = 0.42 if max(nr, nc) <= 30 else 0.32
    longest = max([len(str(x)) for x in list(matrix.index) + list(matrix.columns)] + [4])
    margin = 0.3 + 0.075 * longest
    fig = Figure(figsize=(nc * cell + margin + 1.6, nr * cell + margin + 0.8), dpi=110)
    ax = fig.add_axes([margin / (nc * cell + margin + 1.6), margin / (nr * cell + margin + 0.8),
                       nc * cell / (nc * cell + margin + 1.6), nr * cell / (nr * cell + margin + 0.8)])
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else min(0.0, float(finite.min()) if finite.size else 0.0)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=vmax, aspect="auto",
                   interpolation="nearest")
    # sized to the cell, which has a fixed size in inches: tied to the count, 61 clusterings printed at
    # 4.5 pt, about 5 px, in cells that hold 6.5 pt
    font = 7.5 if cell > 0.4 else 6.5
    norm = im.norm
    cm = im.get_cmap()
    for i in range(nr):
        for j in range(nc):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            r, g, b, _ = cm(norm(v))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            text = f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"
            text = "0.00" if text == "-0.00" else text  # chance, not "-.00"
            ax.text(j, i, text.replace("0.", ".", 1) if abs(v) < 1 else text,
                    ha="center", va="center", fontsize=font, color=ink)
    ax.set_xticks(range(nc))
    ax.set_yticks(range(nr))
    ax.set_xticklabels([figure_text(c) for c in matrix.columns], rotation=60, ha="right", fontsize=font + 1)
    ax.set_yticklabels([figure_text(r) for r in matrix.index], fontsize=font + 1)
    if split_rows is not None and 0 < split_rows < nr:
        ax.axhline(split_rows - 0.5, color="white", lw=2.5)
    if split_cols is not None and 0 < split_cols < nc:
        ax.axvline(split_cols - 0.5, color="white", lw=2.5)
    ax.set_title(figure_text(title), fontsize=10)
    cax = fig.add_axes([1 - 1.1 / (nc * cell + margin + 1.6), 0.25, 0.2 / (nc * cell + margin + 1.6), 0.5])
    fig.colorbar(im, cax=cax)
    return fig


def plot_heatmap(matrix: pd.DataFrame, path: str | Path, title: str, vmin: float | None = None,
                 vmax: float = 1.0, split_rows: int | None = None, split_cols: int | None = None,
                 cmap: str = "viridis") -> Path:
    """Draw :func:`draw_heatmap` and save it as a PNG, atomically.

    Parameters
    ----------
    matrix, title, vmin, vmax, split_rows, split_cols, cmap
        As for :func:`draw_heatmap`.
    path : str or Path
        The PNG to write (at the figure's 110 dpi).

    Returns
    -------
    Path
        ``path``.
    """
    fig = draw_heatmap(matrix, title, vmin=vmin, vmax=vmax, split_rows=split_rows, split_cols=split_cols,
                       cmap=cmap)
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
    ``figures/ari_matrix.png`` and ``figures/ami_matrix.png``, then the linear
    probes of the run's embeddings against the truth label
    (``comparisons/linear_probe.csv``).

    Parameters
    ----------
    run : RunDir
        A run with at least one clustering (``morphospace cluster``).
    cfg : Config
        Uses ``data.truth_label`` (which label column is the truth) and
        ``cluster.seed`` (the probes' random state).

    Returns
    -------
    dict
        Output name -> path.

    Raises
    ------
    UserError
        When the run has no clustering.
    """
    stale = stale_results(run)
    clusterings = [c for c in run.clusterings() if f"clusterings/{c}" not in stale]
    for name in sorted(set(run.clusterings()) - set(clusterings)):  # beside the new, as if of the same
        log.warning("clustering %s left out of the comparisons: %s (`morphospace %s` makes it again)", name,
                    stale[f"clusterings/{name}"], run.stage_making_clustering(name))
    for name in run.missing_clusterings():
        log.warning("clusterings/%s.parquet is missing: left out of the comparisons (`morphospace %s` makes it "
                    "again)", name, run.stage_making_clustering(name))
    if not clusterings and stale:
        raise UserError(f"no current clusterings in {run.path}: they were made from an earlier embedding or map "
                        f"(run `morphospace cluster` again)")
    if not clusterings:
        raise UserError(f"no clusterings in {run.path}: run `morphospace cluster` first")
    inputs = comparison_inputs(run)
    write_json(run.sub("comparisons") / INPUTS, {"incomplete": True})  # results half rewritten are no one's
    catalogue = run.read_catalogue()
    ids = run.cube_ids()
    labels = label_columns(catalogue, cfg)
    truth = truth_column(catalogue, cfg, candidates=labels)
    if truth is not None and not cfg.data.truth_label:  # guessed: said, with how to choose another
        log.info("the comparisons score against the label column '%s' (set data.truth_label to choose another)",
                 truth)
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
    encoded = {name: encode(values, noise=kinds[name] == "clustering") for name, values in items.items()}
    comp = run.sub("comparisons")
    out: dict[str, Path] = {}
    # a clustering of features fine-tuned on labels meets the labels on the galaxies it held out only:
    # on the rest its agreement with them is a training score
    trained = trained_rows(run, clusterings)
    labelled = ~encoded[truth].missing if truth in encoded else np.ones(len(ids), dtype=bool)
    held = {name: int((~mask & labelled).sum()) for name, mask in trained.items()}  # what is scored
    if trained:
        log.info("%d clusterings of features fine-tuned on labels or of an LDA map are scored against the labels "
                 "on the labelled galaxies held out of that training (%s)", len(trained),
                 ", ".join(sorted({f"{n:,} of {len(ids):,}" for n in held.values()})))
    write_json(comp / HELD_OUT, {"held_out": held, "galaxies": len(ids)})

    def scored(a: str, b: str) -> tuple[Encoded, Encoded]:
        ea, eb = encoded[a], encoded[b]
        if kinds[a] != kinds[b]:  # a clustering against a label column
            mask = trained.get(a if kinds[a] == "clustering" else b)
            ea, eb = (ea, _held_out(eb, mask)) if kinds[a] == "clustering" else (_held_out(ea, mask), eb)
        return ea, eb

    rows = []
    matrices = {m: pd.DataFrame(np.eye(len(names)), index=names, columns=names) for m in ("ari", "ami")}
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    with Timer(f"comparing {len(clusterings)} clusterings and {len(names) - len(clusterings)} labels"):
        for i, j in progress(pairs, desc="compare", unit="pair"):
            a, b = names[i], names[j]
            pair = scored(a, b)
            for mode in NOISE_MODES:
                s = score_pair(*pair, noise=mode)
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
    written: dict[Path, dict[str, str]] = {}
    if truth is not None and truth in items:
        for name in clusterings:
            table = contingency_table(*scored(name, truth), noise="own")
            path = comp / f"contingency_{safe_name(name)}__{safe_name(truth)}.csv"
            write_table(path, table.rename_axis(index="cluster", columns=None).reset_index())
            out[f"contingency_{name}"] = path
            written[path] = {"file": path.name, "clustering": str(name), "truth": str(truth)}
    for stale in comp.glob("contingency_*.csv"):  # of clusterings gone or another truth: not this comparison's
        if stale not in written:
            stale.unlink(missing_ok=True)
    # the names as the user wrote them: a file name cannot hold every character of a column's
    write_json(comp / CONTINGENCY_INDEX, list(written.values()))
    if truth is not None and run.embeddings():
        with Timer(f"linear probes of {len(run.embeddings())} embeddings against '{truth}'"):
            probe = probe_run(run, truth, catalogue, random_state=cfg.cluster.seed,
                              n_jobs=cfg.ingest.workers if hasattr(cfg, "ingest") else 1)
        if len(probe):
            write_table(comp / "linear_probe.csv", probe)
            out["linear_probe"] = comp / "linear_probe.csv"
        else:
            (comp / "linear_probe.csv").unlink(missing_ok=True)  # a previous run's would be read as this one's
    else:  # no truth or no embedding: no probe, and none of an earlier compare left to read as this one's
        (comp / "linear_probe.csv").unlink(missing_ok=True)
    write_json(comp / INPUTS, {**inputs, "truth": truth})  # the truth scored against: a report of another says so
    out["inputs"] = comp / INPUTS
    return out
