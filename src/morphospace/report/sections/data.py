"""The report's data section: counts, quality flags (with example galaxies), labels, a random sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...data.ingest.catalogue import storable_texts
from ..context import ReportContext, Section, Thumb, natural, pct
from ..explorer import is_absolute_text, shareable_paths
from ..figures import draw_flags, draw_labels
from ..grids import mosaic_image, save_image
from ..html import data_uri, render
from ..views import figure
from ..sprites import image_file_thumbnail, to_uint8
from ..style import save_figure

__all__ = ["data_section", "flag_rows"]


def flag_rows(ctx: ReportContext) -> pd.DataFrame:
    """The quality flags raised at ingest, from the ingest summary (else the catalogue's flag columns).

    Parameters
    ----------
    ctx : ReportContext

    Returns
    -------
    DataFrame
        One row per raised flag: ``flag``, ``meaning``, ``count``,
        ``excluded`` (kept out of the cube), ``examples`` (up to 5 ids),
        ``thumbnails`` (paths of example images the ingest saved, if any) and ``in_cube`` (those in
        the cube: fewer than ``count`` where another flag kept some out).
    """
    summary = ctx.contents.summary or {}
    cat = ctx.contents.catalogue
    rows = []
    flags = summary.get("flags") if isinstance(summary.get("flags"), dict) else {}
    for name, info in flags.items():
        info = info if isinstance(info, dict) else {}
        count = int(info.get("count", 0) or 0)
        examples = [str(x) for x in (info.get("examples") or [])]
        if cat is not None and not examples and f"flag_{name}" in cat.columns:
            examples = cat.loc[cat[f"flag_{name}"].fillna(False).astype(bool), "id"].head(5).tolist()
        rows.append({"flag": str(name), "meaning": str(info.get("meaning", "")), "count": count,
                     "excluded": bool(info.get("excluded", False)), "examples": examples,
                     "thumbnails": [str(t) for t in (info.get("thumbnails") or [])],
                     "in_cube": int(info.get("n_in_cube", count) or 0)})
    if not rows and cat is not None:
        for col in ctx.contents.flag_columns:
            hit = cat[col].fillna(False).astype(bool)
            if hit.any():
                excluded = bool((cat.loc[hit, "cube_index"] < 0).all()) if "cube_index" in cat else False
                rows.append({"flag": col[5:], "meaning": "", "count": int(hit.sum()), "excluded": excluded,
                             "examples": cat.loc[hit, "id"].head(5).tolist(), "thumbnails": [],
                             "in_cube": int((cat.loc[hit, "cube_index"] >= 0).sum()) if "cube_index" in cat
                             else int(hit.sum())})
    return pd.DataFrame(rows, columns=["flag", "meaning", "count", "excluded", "examples", "thumbnails", "in_cube"])


def _flag_example(ctx: ReportContext, gid: str, thumb_path: str | None, flag: str | None = None) -> Thumb:
    """A flagged galaxy's thumbnail: from the cube, a thumbnail file, its source file, or "no image".
    With ``flag``, the record that carries it: a duplicate left out shares its id with the galaxy
    kept, whose picture is not the one left out."""
    cat = ctx.contents.catalogue
    flagged = None
    if cat is not None and flag and f"flag_{flag}" in cat.columns and "cube_index" in cat.columns:
        flagged = cat[(cat["id"].astype(str) == str(gid)) & cat[f"flag_{flag}"].fillna(False).astype(bool)]
        flagged = flagged if len(flagged) else None
    row = int(flagged["cube_index"].iloc[0]) if flagged is not None else int(ctx.contents.rows_of([gid])[0])
    if row >= 0:
        return ctx.thumb(row)
    candidates = []
    if thumb_path:
        p = Path(thumb_path)
        candidates.append(p if p.is_absolute() else ctx.run.path / p)
    if cat is not None and "source" in cat.columns:
        src = (flagged if flagged is not None else cat.loc[cat["id"] == gid])["source"]
        if len(src) and isinstance(src.iloc[0], str) and "#" not in src.iloc[0]:
            candidates.append(Path(src.iloc[0]))
    for p in candidates:
        if p.is_file():
            data = image_file_thumbnail(p, 96)
            if data is not None:
                return Thumb(gid, uri=data_uri(data, "image/jpeg"))
    return Thumb(gid)


def _shareable_source(ctx: ReportContext, source: object) -> str:
    """The survey's folder as the report shows it: relative to the run where it lies inside it, else
    its name (a report is shared, the user's folders are not; as the explorer's tooltips, :func:`shareable_paths`).

    Parameters
    ----------
    ctx : ReportContext
    source : object
        The ingest summary's ``source``; None or empty: nothing shown.

    Returns
    -------
    str
    """
    text = str(source or "").rstrip("/\\")  # "/data/survey/" named "survey", not ""
    if not text:
        return ""
    if not is_absolute_text(text):  # relative ("../../home/alice/survey"): from the working folder, as Python reads it
        text = str(Path(text).resolve())
    # against the run's folder resolved (a run named "run" holds a survey named absolute); a folder of
    # another encoding as the catalogue stores it
    shown = shareable_paths(pd.Series(storable_texts([text]), dtype=object), str(ctx.run.path.resolve()))
    return str(shown.iloc[0])


def _framing_stat(pre: object) -> tuple[str, str, str] | None:
    """How the frames were cut, from the ingest summary's ``preprocess``: by each galaxy's size, or one
    crop for all, with the spread of the sampled sizes that chose it; None where the summary says
    neither (an ingest from before the framing)."""
    if not isinstance(pre, dict):
        return None
    spread = pre.get("size_spread")
    sizes = f"sampled sizes spread {spread:.2f}x (10-90%)" if isinstance(spread, (int, float)) else ""
    if pre.get("framing") == "galaxy":
        return ("framed by each galaxy", f"{pre.get('galaxy_r90s', 4.3):g} R90",
                "a square about each" + (f"; {sizes}" if sizes else ""))
    crop = pre.get("crop")
    if isinstance(crop, (int, float)):
        return ("crop of the frame", f"{crop:g}", "the same for every frame" + (f"; {sizes}" if sizes else ""))
    return None


def data_section(ctx: ReportContext) -> Section:
    """What went in: counts, the quality flags with example galaxies, the labels, a random sample.

    Parameters
    ----------
    ctx : ReportContext

    Returns
    -------
    Section
        Always present (the run has a cube). Saves ``report_flags.png``,
        ``report_labels.png`` (when the catalogue has label columns) and
        ``report_mosaic.png`` (48 random galaxies).
    """
    c = ctx.contents
    summary = c.summary or {}
    cat = c.catalogue
    n_records = int(summary.get("n_records", len(cat) if cat is not None else c.n))
    shape = c.cube.shape
    stats = [("galaxies listed", f"{n_records:,}"),
             ("in the cube", f"{c.n:,}", pct(c.n, n_records) + " of those listed"),
             ("left out", f"{n_records - c.n:,}", "quality flags"),
             ("image", f"{shape[2]}\u00d7{shape[3]} px", f"{shape[1]} channel{'s' if shape[1] > 1 else ''}")]
    sizes = summary.get("frame_sizes")
    if isinstance(sizes, dict) and {"min", "max", "distinct"} <= set(sizes):  # said by the ingest's log alone
        stats.append(("frames", f"{sizes['min']}–{sizes['max']} px",
                      f"{sizes['distinct']} sizes resampled to {shape[3]} px: see frame_px in the nuisance audit"))
    if summary.get("layout"):
        stats.append(("layout", summary["layout"]))
    framing = _framing_stat(summary.get("preprocess"))
    if framing:
        stats.append(framing)

    flags = flag_rows(ctx)
    flags_figure, flag_views = None, []
    if len(flags):
        flags_figure = figure(save_figure(draw_flags(flags), ctx.fig_path("flags")), "Galaxies per quality flag.")
        for r in flags.itertuples(index=False):
            examples = [_flag_example(ctx, gid, r.thumbnails[j] if j < len(r.thumbnails) else None, r.flag)
                        for j, gid in enumerate(r.examples[:5])]
            flag_views.append({"flag": r.flag, "meaning": r.meaning, "count": r.count, "excluded": r.excluded,
                               "in_cube": r.in_cube, "examples": examples})

    labels_figure = None
    label_cols = c.label_columns[:3]
    if label_cols:
        counts = {}
        for col in label_cols:
            vals = pd.Series(c.labels(col), dtype=object).fillna("(missing)")
            vc = vals.astype(str).value_counts()
            order = [str(k) for k in natural(vc.index) if k != "(missing)"] + (["(missing)"] if "(missing)" in vc else [])
            counts[col] = vc.reindex(order)
        labels_figure = figure(save_figure(draw_labels(counts, c.class_colours), ctx.fig_path("labels")), "Label distribution.")

    rng = np.random.default_rng(ctx.seed)
    k = min(48, c.n)
    rows = np.sort(rng.choice(c.n, size=k, replace=False))
    mosaic = save_image(mosaic_image(to_uint8(np.asarray(c.cube[rows])), cols=12), ctx.fig_path("mosaic"))
    centreless = c.centreless
    html = render("data.html", stats=stats, source=_shareable_source(ctx, summary.get("source")), flags=flag_views,
                  flags_figure=flags_figure, labels_figure=labels_figure, truth=c.truth,
                  centreless=len(centreless), centreless_examples=[ctx.thumb(int(r))
                                                                    for r in centreless[:8]],
                  mosaic=figure(mosaic, f"{k} random galaxies.", wide=True))
    return Section("data", "Data", html)
