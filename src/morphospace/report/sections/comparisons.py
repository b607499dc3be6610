"""The report's comparison section: agreement matrices, agreement with the truth, linear probes,
contingency tables and the nuisance audit."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...analysis.compare import CONTINGENCY_INDEX, plot_heatmap
from ...analysis.labels import missing_mask
from ..context import ReportContext, Section, fmt
from ..html import render
from ..views import TableView, figure, table
from .invariance import invariance_view

__all__ = ["comparison_section", "probe_view", "read_matrix"]

log = logging.getLogger("morphospace")

# the figures the compare stage draws of the clusterings (study/figures.py, a sibling layer: named here)
COMPARE_FIGURES = ("map_", "k_selection_", "gallery_")


def read_matrix(path: Path) -> pd.DataFrame | None:
    """A score matrix or contingency table written by the compare stage, first column as the index.

    Parameters
    ----------
    path : Path

    Returns
    -------
    DataFrame or None
        None when the file is unreadable (logged), empty or has a single column.
    """
    try:
        t = pd.read_csv(path)
    except Exception as exc:
        log.warning("report: %s unreadable (%s)", path, exc)
        return None
    if t.empty or t.shape[1] < 2:
        return None
    return t.set_index(t.columns[0])


def probe_view(path: Path | None) -> dict[str, Any] | None:
    """The linear probes of the run's embeddings: balanced accuracy by labelled fraction.

    Parameters
    ----------
    path : Path or None
        ``comparisons/linear_probe.csv`` (columns embedding, fraction,
        balanced_accuracy, chance, label, and rows: which galaxies were probed).

    Returns
    -------
    dict or None
        ``label`` (the probed label), ``chance`` (as text) and ``table`` (one
        row per embedding, best first, one column per labelled fraction);
        None when there is no readable probe.
    """
    if path is None:
        return None
    try:
        t = pd.read_csv(path)
        if "rows" in t:  # an embedding fine-tuned on labels is probed on the galaxies it held out: said
            held = t["rows"].astype(str) == "held out from fine-tuning"
            t.loc[held, "embedding"] = t.loc[held, "embedding"].astype(str) + " (galaxies its fine-tuning held out)"
        wide = t.pivot_table(index="embedding", columns="fraction", values="balanced_accuracy")
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    if wide.empty:
        return None
    # how many galaxies each fraction trained on, and that "100%" is a cross-validation over them all
    n_train = t.groupby("fraction")["n_train"].max() if "n_train" in t else pd.Series(dtype=float)
    # an embedding fine-tuned on labels is probed on the galaxies its fine-tuning held out: fewer
    varies = t.groupby("fraction")["n_train"].nunique() > 1 if "n_train" in t else pd.Series(dtype=bool)
    upto = {f: "up to " if bool(varies.get(f, False)) else "" for f in wide.columns}
    labels, all_labels = "labels", "all labels"  # above the probe's size, a stratified sample: said (it read "all labels")
    if {"labelled", "labelled_of"} <= set(t.columns) and (t["labelled"] < t["labelled_of"]).any():
        all_labels = f"a sample of {int(t['labelled'].max()):,} of {int(t['labelled_of'].max()):,} labels"
        labels = f"labels (a sample of {int(t['labelled'].max()):,} of {int(t['labelled_of'].max()):,})"
    wide.columns = [(f"{all_labels} (5-fold CV, {upto[f]}{int(n_train[f]):,} a fold)" if f >= 1 else
                     f"{100 * f:g}% of {labels} ({upto[f]}{int(n_train[f]):,})")
                    if f in n_train.index and np.isfinite(n_train[f])
                    else (f"{100 * f:g}% of {labels}" if f < 1 else f"{all_labels} (5-fold CV)") for f in wide.columns]
    wide = wide.sort_values(wide.columns[min(1, len(wide.columns) - 1)], ascending=False).reset_index()
    # one chance level per embedding: a fine-tuned one, probed on its held-out galaxies, may lack a class
    chances = pd.to_numeric(t["chance"], errors="coerce").dropna().unique() if "chance" in t else np.array([])
    chance = float(chances.min()) if len(chances) else float("nan")
    text = fmt(chance) if len(chances) < 2 else f"{fmt(chance)}-{fmt(float(chances.max()))}"
    label = str(t["label"].iloc[0]) if "label" in t else "the labels"
    return {"label": label, "chance": text,
            "table": table(wide, heat=True, heat_range=(chance if np.isfinite(chance) else 0.0, 1.0))}


TRUTH_ROWS = 15  # clusterings shown against the truth label


def _truth_table(ctx: ReportContext, matrices: dict[str, pd.DataFrame]) -> tuple[TableView, str] | None:
    """The clusterings that agree best (AMI, else ARI) with the truth label, and the caption that
    says what the table shows: how many of how many, by which score, how noise counts, that an LDA
    map was fitted on the labels themselves, and when the labels have one class."""
    c = ctx.contents
    truth = c.truth
    if not (truth and matrices and all(truth in mat.columns for mat in matrices.values())):
        return None
    rows = []
    clusterings = {cc.name for cc in c.clusterings}
    for name in next(iter(matrices.values())).index:
        if name == truth or name not in clusterings:
            continue
        rows.append({"clustering": name, **{m.upper(): pd.to_numeric(mat.loc[name, truth], errors="coerce")
                                             for m, mat in matrices.items() if name in mat.index}})
    if not rows:
        return None
    best = pd.DataFrame(rows)
    key = "AMI" if "AMI" in best else best.columns[1]
    shown = best.sort_values(key, ascending=False).head(TRUTH_ROWS)
    caption = (f"The {len(shown)} of {len(best)} clusterings that recover the truth label best"
               if len(shown) < len(best) else f"The {len(best)} clusterings") + \
        f", ranked by {key} (1 = the same partition, 0 = chance); DBSCAN and HDBSCAN noise counts as one cluster."
    held = ctx.contents.held_out
    if any(n.endswith("_lda") and n not in held for n in shown["clustering"]):  # compared by an earlier version
        caption += (" Clusterings of an LDA map (names ending in _lda) are not unsupervised: LDA was fitted on "
                    "these labels, so part of their agreement is by construction.")
    tuned = [n for n in shown["clustering"] if n in held]
    if tuned:
        counts = sorted({held[n] for n in tuned})
        caption += (f" {len(tuned)} of them cluster features fine-tuned on labels or an LDA map (names ending in "
                    f"_lda), fitted on labels: those are scored on the {' / '.join(f'{n:,}' for n in counts)} "
                    "labelled galaxies held out of that fitting, not on the ones it learnt from.")
    labels = np.asarray(c.labels(truth), dtype=object)
    classes = {str(v) for v in labels[~missing_mask(labels)]}
    if best[key].isna().all():  # fewer than two labelled galaxies: the compare stage wrote no score
        caption = ("No clustering can be scored against the truth label (shown as -): too few galaxies of "
                   "the cube carry it.")
    elif len(classes) < 2:
        caption += (f" The truth label has {len(classes)} class{'' if len(classes) == 1 else 'es'} among the "
                    "galaxies: agreement with it is undefined (scored 0), and there is no linear probe.")
    return table(shown, heat=True, heat_range=(0.0, 1.0)), caption


PICK_AT = 8  # more tables than this: one at a time, chosen from a list, not a long column of them


def _pairs(ctx: ReportContext, matrices: dict[str, pd.DataFrame]) -> list[tuple[str, TableView]]:
    """For each clustering (and label) of matrices too large to read as figures, its agreement with
    every other, best first: what a row of the 62 x 62 matrices of a feature study says, legibly.
    Empty for matrices of up to :data:`PICK_AT` rows, which their figures show well."""
    if not matrices:
        return []
    first = next(iter(matrices.values()))
    names = [str(n) for n in first.index]
    if len(names) <= PICK_AT:
        return []
    lead = [n for n in (ctx.contents.primary.name if ctx.contents.primary else None, ctx.contents.truth) if n in names]
    out = []
    for name in lead + [n for n in names if n not in lead]:
        cols = {m.upper(): pd.to_numeric(mat.loc[name], errors="coerce").drop(name, errors="ignore")
                for m, mat in matrices.items() if name in mat.index}
        frame = pd.DataFrame(cols)
        if frame.empty:
            continue
        key = "AMI" if "AMI" in frame else frame.columns[0]
        frame = frame.sort_values(key, ascending=False).rename_axis("with").reset_index()
        out.append((name, table(frame, heat=True, heat_range=(0.0, 1.0))))
    return out


def _contingencies(ctx: ReportContext) -> list[tuple[str, TableView]]:
    """Every ``comparisons/contingency_*.csv``, the primary clustering's first."""
    c = ctx.contents
    folder = c.path / "comparisons"
    conts = sorted(folder.glob("contingency_*.csv")) if folder.is_dir() else []
    names = {p.name: _spelled(p) for p in conts} | _contingency_names(folder)
    primary = c.primary.name if c.primary else None
    # the primary first, then kmeans3 before kmeans10
    conts.sort(key=lambda p: (0 if primary and names[p.name][0] == primary else 1,
                              [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", p.name)]))
    out = []
    for p in conts:
        t = read_matrix(p)
        if t is None:
            continue
        clustering, truth = names[p.name]
        t = t.reset_index()
        numeric = t.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
        hi = float(np.nanmax(numeric.to_numpy())) if numeric.size else 1.0
        out.append((f"{clustering} \u00d7 {truth}" if truth else clustering,
                    table(t, heat=True, heat_range=(0.0, hi if np.isfinite(hi) and hi > 0 else 1.0),
                          cls="contingency")))
    return out


def _spelled(path: Path) -> tuple[str, str]:
    """(clustering, truth) as a contingency file's name spells them (a run compared before the
    compare stage wrote its index)."""
    clustering, _, truth = path.stem[len("contingency_"):].rpartition("__")
    return (clustering, truth) if clustering else (truth, "")


def _contingency_names(folder: Path) -> dict[str, tuple[str, str]]:
    """File name -> (clustering, truth) from the compare stage's index; empty where it is absent
    or damaged (the file names then title the tables)."""
    try:
        entries = json.loads((folder / CONTINGENCY_INDEX).read_text())
        return {e["file"]: (str(e["clustering"]), str(e["truth"])) for e in entries}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _audit(ctx: ReportContext) -> dict[str, Any] | None:
    """The nuisance audit: its figure (another stage's, else drawn here) and its numbers."""
    csv = ctx.contents.comparison("nuisance_audit.csv")
    fig = ctx.existing_figure("nuisance_audit.png")
    if not (csv or fig):
        return None
    audit = read_matrix(csv) if csv else None
    if fig is None and audit is not None and audit.shape[1] > 0:
        fig = plot_heatmap(audit.apply(pd.to_numeric, errors="coerce"), ctx.fig_path("nuisance_audit"),
                           "AMI with nuisances (lower is better)", vmin=0.0)
    numbers, verdict, glossary, reference = None, "", [], {"truth": False, "anomaly": False}
    if audit is None or audit.shape[1] == 0:  # every nuisance the same for every galaxy: left out by compare
        verdict = ("No nuisance the audit measures varies among these galaxies (position angle, companions, "
                   "the catalogue's nuisance columns): nothing to audit.") if fig is None else ""
    else:
        vals = audit.apply(pd.to_numeric, errors="coerce")
        hi = float(np.nanmax(vals.to_numpy())) if vals.size and np.isfinite(vals.to_numpy()).any() else 0.2
        numbers = table(audit.reset_index(), heat=True, heat_range=(0.0, max(0.2, hi)))
        primary = ctx.contents.primary
        verdict = _audit_verdict(vals, primary.name if primary is not None else "", ctx.contents.truth)
        glossary = [(c, NUISANCE_MEANING.get(c) or _flag_meaning(ctx, str(c)) or "a column of the catalogue")
                    for c in audit.columns]
        # the rows under the clusterings, where the run has them: said only then
        reference = {"truth": ctx.contents.truth in vals.index,
                     "anomaly": any("anomaly" in str(r) for r in vals.index)}
    return {"figure": figure(fig, "Nuisance audit.", wide=True) if fig is not None else None, "table": numbers,
            "verdict": verdict, "glossary": glossary, "reference": reference}


# what each nuisance column of the audit is (the measured ones and the synthetic survey's truths)
NUISANCE_MEANING = {
    "pa_bin": "position angle of the elongated galaxies, measured on the image (round ones have none)",
    "companion": "whether a second source sits beside the galaxy, measured", "companion_quadrant": "where it sits",
    "position_angle": "position angle (catalogue)", "winding": "the arms' handedness (catalogue)",
    "inclination": "inclination (catalogue)", "size_px": "apparent size in pixels (catalogue)",
    "psf_fwhm_px": "seeing, the PSF's width (catalogue)", "sky_noise": "sky noise (catalogue)",
    "n_companions": "companions placed (catalogue)", "n_field": "other sources in the frame (catalogue)",
    "frame_px": "the frame's size as the file stores it", "crop": "the fraction of its frame the row shows",
    "handedness": "the spiral's winding, clockwise or anticlockwise (from gz1_name's cw / acw)",
}
def _flag_meaning(ctx: ReportContext, column: str) -> str:
    """What an ingest quality flag column (``flag_<name>``) means, as the ingest summary says; ``""``
    for any other column."""
    if not column.startswith("flag_"):
        return ""
    flags = (ctx.contents.summary or {}).get("flags")
    info = flags.get(column[5:]) if isinstance(flags, dict) else None
    meaning = str(info.get("meaning", "")) if isinstance(info, dict) else ""
    return f"the ingest's quality flag: {meaning}" if meaning else "a quality flag of the ingest"


_AIM = 0.02  # the form-first issue's bound on a nuisance's AMI with the clusters


def _audit_verdict(vals: pd.DataFrame, primary: str, truth: str | None) -> str:
    """One sentence a reader can act on: what the report's clusters follow most, against the 0.02 aim,
    beside what the truth label itself follows, and the clustering that follows a nuisance most."""
    def top(row: pd.Series) -> tuple[str, float]:
        row = row.dropna()
        return (str(row.idxmax()), float(row.max())) if len(row) else ("", float("nan"))

    parts = []
    if primary in vals.index:
        col, v = top(vals.loc[primary])
        if col:
            parts.append(f"The report's clusters ({primary}) follow {col} most, at {v:.3f} "
                         f"({'within' if v <= _AIM else 'above'} the {_AIM} aimed at)")
            if truth and truth in vals.index and col in vals.columns and np.isfinite(vals.loc[truth, col]):
                parts[-1] += f"; the truth label itself follows it at {vals.loc[truth, col]:.3f}"
    others = vals.drop(index=[r for r in vals.index if r in (primary, truth) or "anomaly" in str(r)], errors="ignore")
    if others.size and np.isfinite(others.to_numpy()).any():
        stacked = others.stack()
        (row, col), v = stacked.idxmax(), float(stacked.max())
        parts.append(f"the clustering that follows a nuisance most is {row}, on {col} ({v:.3f})")
    return ("; ".join(parts) + ".") if parts else ""


def comparison_section(ctx: ReportContext) -> Section | None:
    """How the clusterings agree with each other, with the labels and with the viewing conditions.

    Parameters
    ----------
    ctx : ReportContext

    Returns
    -------
    Section or None
        The ARI and AMI matrices (the compare stage's figures, else drawn
        here as ``report_ari.png`` / ``report_ami.png``), the clusterings
        ranked against the truth, the linear probes, the contingency tables
        and the nuisance audit: whichever the run holds; None when it holds
        none.
    """
    c = ctx.contents
    stale = c.stale_comparisons
    if stale is not None:  # partitions or embeddings the run no longer holds: said, not shown
        why, clusterings_stale, probes_stale = stale
        if clusterings_stale:
            # their figures are not shown elsewhere either ("other figures"): the matrices, the audit, and
            # the maps, k-selection curves and galleries the compare stage draws of the clusterings
            ctx.placed.update({"ari_matrix.png", "ami_matrix.png", "nuisance_audit.png"})
            ctx.placed.update(p.name for p in c.figures() if p.name.startswith(COMPARE_FIGURES))
            probe = None if probes_stale else probe_view(c.comparison("linear_probe.csv"))
            return Section("comparisons", "Comparisons", render("comparisons.html", matrices=[], truth=c.truth,
                                                                truth_table=None, truth_caption=None, probe=probe,
                                                                contingencies=[], pairs=[], pick_at=PICK_AT,
                                                                stale_clusterings=True,
                                                                audit=None, invariance=None, stale=why))
    figs, matrices = [], {}
    for m, title in (("ari", "Adjusted Rand index"), ("ami", "Adjusted mutual information")):
        csv = c.comparison(f"{m}.csv")
        mat = read_matrix(csv) if csv else None
        if mat is not None:
            matrices[m] = mat
        fig = ctx.existing_figure(f"{m}_matrix.png")
        if fig is None and mat is not None:
            fig = plot_heatmap(mat.apply(pd.to_numeric, errors="coerce"), ctx.fig_path(m), title)
        if fig is not None:
            figs.append(figure(fig, f"{title} between every pair of clusterings and labels.", wide=True))
    probes_stale = stale is not None and stale[2]
    truth_table = _truth_table(ctx, matrices)
    view = {"matrices": figs, "truth": c.truth, "truth_table": truth_table and truth_table[0],
            "truth_caption": truth_table and truth_table[1],
            "probe": None if probes_stale else probe_view(c.comparison("linear_probe.csv")),
            "pairs": _pairs(ctx, matrices), "contingencies": _contingencies(ctx), "pick_at": PICK_AT,
            "audit": _audit(ctx), "invariance": invariance_view(ctx), "stale": stale[0] if probes_stale else None,
            "stale_clusterings": False}
    if not any(view[k] for k in ("matrices", "truth_table", "probe", "contingencies", "audit", "invariance", "stale")):
        return None
    return Section("comparisons", "Comparisons", render("comparisons.html", **view))
