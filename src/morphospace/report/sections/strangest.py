"""The report's last sections: the strangest galaxies, and every figure no other section shows."""

from __future__ import annotations

import numpy as np

from ..clusterings import MISSING
from ..context import PREFIX, ReportContext, Section, fmt
from ..figures import draw_anomaly_histogram
from ..grids import mosaic_image, save_image
from ..html import render
from ..views import figure
from ..sprites import to_uint8
from ..style import save_figure

__all__ = ["strangest_section", "other_figures"]


def strangest_section(ctx: ReportContext, n: int = 24) -> Section | None:
    """The galaxies with the highest anomaly scores, where they sit in the distribution.

    The score is the form embedding's (``RUN/anomaly.parquet``, re-ranked by the user's tags) when
    the run has one, else the VaDE's likelihood; the text says which.

    Parameters
    ----------
    ctx : ReportContext
    n : int
        How many galaxies.

    Returns
    -------
    Section or None
        None without an anomaly score. Saves ``report_anomaly_histogram.png``
        and ``report_strangest.png`` (the same galaxies as a mosaic, strangest
        first).
    """
    c = ctx.contents
    if c.anomaly is None:
        return None
    what, score = c.anomaly
    finite = np.flatnonzero(np.isfinite(score))
    top = finite[np.argsort(-score[finite], kind="stable")[:n]]
    if len(top) == 0:
        return None
    hist = save_figure(draw_anomaly_histogram(score, float(score[top[-1]]), what), ctx.fig_path("anomaly_histogram"))
    images = to_uint8(np.asarray(c.cube[np.sort(top)]))[np.argsort(np.argsort(top))]  # read in order, shown by rank
    save_image(mosaic_image(images, cols=8), ctx.fig_path("strangest"))
    truth = c.truth
    truth_vals = c.labels(truth) if truth else None
    primary = c.primary
    centreless = set(c.centreless.tolist())
    galaxies = []
    for rank, row in enumerate(top, 1):
        bits = [f"#{rank}", f"score {fmt(float(score[row]))}"]
        if row in centreless:  # an artefact, a galaxy off centre, or a merger's nuclei either side of it
            bits.append("no source at the centre")
        if truth_vals is not None:  # an unlabelled galaxy said so: the strangest are often mergers or don't-knows
            bits.append(str(truth_vals[row]) if truth_vals[row] is not None else f"no {truth} label")
        if primary is not None and primary.labels[row] != MISSING:
            bits.append("noise" if primary.labels[row] < 0 else f"cluster {primary.labels[row]}")
        galaxies.append(ctx.thumb(row, caption=" \u00b7 ".join(bits), size="big"))
    html = render("strangest.html", histogram=figure(hist, "Where the strangest sit in the distribution."),
                  what=what, source=c.anomaly_source, tags=c.anomaly_tags, how=c.anomaly_description,
                  tags_changed=c.anomaly_tags_changed,
                  galaxies=galaxies, prefix=PREFIX)
    return Section("strangest", "Strangest", html)


def other_figures(ctx: ReportContext) -> Section | None:
    """Every PNG under ``RUN/figures/`` that no section placed (and that the report did not make).

    Parameters
    ----------
    ctx : ReportContext
        Call it last: it reads which figures the other sections placed.

    Returns
    -------
    Section or None
        None when there is no such figure.
    """
    rest = [p for p in ctx.contents.figures() if p.name not in ctx.placed and not p.name.startswith(PREFIX)]
    if not rest:
        return None
    html = render("other_figures.html", figures=[figure(p, p.stem.replace("_", " ")) for p in rest])
    return Section("other-figures", "Other figures", html)
