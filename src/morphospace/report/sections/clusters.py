"""The report's cluster section: the primary clustering's sizes, label mix, anomaly and exemplars."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..clusterings import MISSING, Clustering
from ..context import PREFIX, ReportContext, Section, cluster_of_figure, natural, pct
from ..figures import draw_anomaly_by_cluster, draw_cluster_sizes, draw_label_mix
from ..grids import gallery_image, save_image
from ..html import render
from ..views import category_colours, figure, mix_bar
from ..sprites import thumbnails
from ..style import colour, save_figure

__all__ = ["cluster_section", "exemplars"]


def exemplars(ctx: ReportContext, cl: Clustering, k: int, n: int) -> tuple[list[int], str]:
    """Up to ``n`` cube rows that represent cluster ``k``, and how they were chosen.

    Parameters
    ----------
    ctx : ReportContext
    cl : Clustering
    k : int
        The cluster (-1: noise).
    n : int
        How many.

    Returns
    -------
    rows : list of int
        The most probable members (a soft clustering; the nearest the cluster's centre in the
        clustering's representation first among those as probable to two decimals), else the
        members nearest the centre, else random members.
    how : str
        Which of the three (empty when the cluster has no member).
    """
    members = np.flatnonzero(cl.labels == k)
    if len(members) == 0:
        return [], ""
    X = _representation(ctx, cl)
    d = None
    if X is not None and k >= 0:
        centre = X[members].mean(axis=0)
        d = np.linalg.norm(X[members] - centre, axis=1)
    if cl.probs is not None and 0 <= k < cl.probs.shape[1] and np.isfinite(cl.probs[members, k]).any():
        # q(c|x) saturates (half a survey's galaxies at 1.0 in float32, often on a cluster's outskirts,
        # far from the other components): among members as probable to two decimals, the most central
        # first, not the first in cube order
        p = np.round(np.nan_to_num(cl.probs[members, k], nan=-1.0), 2)
        if d is None:
            return members[np.argsort(-p, kind="stable")[:n]].tolist(), "most probable members"
        return members[np.lexsort((d, -p))[:n]].tolist(), \
            "most probable members, the most central first among those as probable"
    if d is not None:
        return members[np.argsort(d, kind="stable")[:n]].tolist(), "members nearest the cluster centre"
    rng = np.random.default_rng(ctx.seed + k + 1)
    return rng.choice(members, size=min(n, len(members)), replace=False).tolist(), "random members"


def _representation(ctx: ReportContext, cl: Clustering) -> np.ndarray | None:
    c = ctx.contents
    rep = cl.meta.get("representation")
    if rep is None:
        m = re.match(r"[a-z]+\d*_(.+)$", cl.name)
        rep = m.group(1) if m else (cl.name if cl.name in c.embeddings else None)
    try:
        if rep in c.embeddings:
            return c.embedding(rep)
        if rep is not None and ctx.run.reduction_path(rep).exists():
            arr = np.load(ctx.run.reduction_path(rep))
            if len(arr) == c.n:
                return np.asarray(arr, dtype=np.float32)
    except Exception:
        pass
    return None


def _few_names(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _fit_sample(clustering) -> int | None:
    """The sample a clustering was fitted on (``cluster.fit_sample``), None where it was fitted on all
    galaxies or its meta file does not say it as a whole number (an edited or damaged file)."""
    n = clustering.meta.get("fit_sample")
    if isinstance(n, float) and n.is_integer():  # is_integer: not NaN nor infinite
        n = int(n)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _sample_sizes(clusterings) -> str:
    sizes = sorted({_fit_sample(x) for x in clusterings})
    return " or ".join(f"{s:,}" for s in sizes)


def cluster_section(ctx: ReportContext) -> Section | None:
    """The primary clustering: sizes, label mix, anomaly by cluster, and a card of exemplars per cluster.

    Parameters
    ----------
    ctx : ReportContext

    Returns
    -------
    Section or None
        None when the run has no clustering. Saves ``report_cluster_sizes.png``,
        ``report_cluster_label_mix.png`` (with a truth label),
        ``report_cluster_anomaly.png`` (with an anomaly score) and
        ``report_cluster_gallery.png`` (every cluster's exemplars).
    """
    c = ctx.contents
    cl = c.primary
    if cl is None:
        return None
    clusters = cl.clusters
    covered = cl.labels != MISSING
    total = int(covered.sum())
    names = ["noise" if k < 0 else str(k) for k in clusters]
    sizes = [int((cl.labels == k).sum()) for k in clusters]
    n_colours = max([*clusters, *cl.empty], default=-1) + 1  # as the explorer colours them
    cols = [colour(k, n_colours) for k in clusters]
    anomaly = c.anomaly
    truth = c.truth
    truth_vals = pd.Series(c.labels(truth), dtype=object).fillna("(missing)").astype(str) if truth else None
    truth_order = ([str(v) for v in natural(truth_vals.unique()) if v != "(missing)"]
                   + (["(missing)"] if truth_vals is not None and (truth_vals == "(missing)").any() else [])
                   ) if truth else []
    truth_colours = category_colours(truth_order, c.class_colours)  # by value: as the explorer and the Data section

    figs = [figure(save_figure(draw_cluster_sizes(names, sizes, cols, f"Galaxies per cluster of {cl.name}"),
                               ctx.fig_path("cluster_sizes")), "Cluster sizes.")]
    if truth:
        mix = pd.crosstab(pd.Series(cl.labels[covered]).map(lambda v: "noise" if v < 0 else str(v)),
                          truth_vals[covered].to_numpy()).reindex(index=names, columns=truth_order, fill_value=0)
        figs.append(figure(save_figure(draw_label_mix(mix, f"{truth} within each cluster", truth_colours),
                                       ctx.fig_path("cluster_label_mix")), f"Label mix ({truth})."))
    if anomaly is not None:
        groups = [(nm, col, anomaly[1][cl.labels == k]) for nm, col, k in zip(names, cols, clusters)]
        figs.append(figure(save_figure(draw_anomaly_by_cluster(groups, anomaly[0]), ctx.fig_path("cluster_anomaly")),
                           "Anomaly score by cluster."))

    # the model's own clusters' strips (vade_generated_<k>): another clustering's cluster k is other galaxies
    per_cluster_generated = {k: p for p in c.figures() if (k := cluster_of_figure(p)) is not None} \
        if cl.name == "vade" else {}
    n_ex = max(1, int(getattr(ctx.cfg.report, "gallery_size", 16)))
    cards, gallery_rows = [], []
    how_chosen = ""
    for name, size, col, k in zip(names, sizes, cols, clusters):
        rows, how = exemplars(ctx, cl, k, n_ex)
        how_chosen = how_chosen or how
        meta = [f"{size:,} galaxies", pct(size, total)]
        if anomaly is not None:
            vals = anomaly[1][cl.labels == k]
            if np.isfinite(vals).any():
                meta.append(f"mean anomaly {float(np.nanmean(vals)):.2f}")  # fmt's 3 figures read 6.9995 as "7"
        view = {"name": name, "noise": k < 0, "colour": col, "meta": " \u00b7 ".join(meta),
                "thumbs": [ctx.thumb(r) for r in rows], "mix": None, "generated": None}
        if truth:
            vc = truth_vals[cl.labels == k].value_counts()
            view["mix"] = mix_bar([(lab, int(vc.get(lab, 0)), truth_colours[lab]) for lab in truth_order])
        if k in per_cluster_generated:
            p = per_cluster_generated[k]
            ctx.placed.add(p.name)
            view["generated"] = figure(p)
        cards.append(view)
        if rows:
            gallery_rows.append((("noise" if k < 0 else f"cluster {name}") + f" ({size})", col,
                                 thumbnails(c.cube, rows, min(64, c.cube.shape[2]), desc="gallery")))
    for k in cl.empty:  # the model's clusters no galaxy went to: what the model makes there, said so
        view = {"name": str(k), "noise": False, "colour": colour(k, n_colours),
                "meta": "no galaxy: none is most likely here", "thumbs": [], "mix": None, "generated": None}
        if k in per_cluster_generated:
            ctx.placed.add(per_cluster_generated[k].name)
            view["generated"] = figure(per_cluster_generated[k])
        cards.append(view)
    if gallery_rows:
        # the galleries as one PNG as well (the page shows them from the sprite sheets)
        save_image(gallery_image(gallery_rows, n_ex), ctx.fig_path("cluster_gallery"))
    others = [x for x in c.clusterings if x.name != cl.name and _fit_sample(x)]
    sampled_others = (f"Of the run's other clusterings, {len(others)} ({_few_names([x.name for x in others])}) {'was' if len(others) == 1 else 'were'} "
                      f"fitted on a random sample of {_sample_sizes(others)} galaxies and extended to the rest by "
                      "prediction (`cluster.fit_sample`)." if others else "")
    html = render("clusters.html", name=cl.name, why=c.primary_choice[1], representation=cl.meta.get("representation"),
                  fit_sample=_fit_sample(cl), minibatch=cl.meta.get("minibatch"),
                  count=cl.count_text(), total=total,
                  noise=sizes[-1] if clusters and clusters[-1] < 0 else None, figures=figs, how_chosen=how_chosen,
                  truth=truth, prefix=PREFIX, clusters=cards, sampled_others=sampled_others, gallery=bool(gallery_rows))
    return Section("clusters", "Clusters", html)
