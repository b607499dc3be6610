"""The report's model section: training curves, reconstructions and generated galaxies."""

from __future__ import annotations

import json
import logging
import re

import pandas as pd

from ..context import ReportContext, Section, cluster_of_figure, slug
from ..figures import draw_training
from ..html import render
from ..views import figure
from ..style import save_figure

__all__ = ["model_section"]

log = logging.getLogger("morphospace")


def model_section(ctx: ReportContext) -> Section | None:
    """How training went and what the model reconstructs and generates.

    Parameters
    ----------
    ctx : ReportContext

    Returns
    -------
    Section or None
        Training curves of every model with Lightning logs
        (``report_training_<model>.png``), the reconstruction figures and the
        generated galaxies (not per cluster) other stages saved; None when the
        run has none of them.
    """
    c = ctx.contents
    training = []
    for model, files in c.metrics_files().items():
        logs = []
        for f in files:
            try:
                logs.append((f.parent.parent.name if f.parent.name.startswith("version_") else f.parent.name,
                             pd.read_csv(f)))
            except Exception as exc:
                log.warning("report: %s unreadable (%s)", f, exc)
        if not logs:
            continue
        fig = draw_training(logs)
        if fig is not None:
            path = save_figure(fig, ctx.fig_path(f"training_{slug(model)}"))
            rel = ", ".join(str(f.relative_to(ctx.run.path)) for f in files)
            training.append({"model": model, "figure": figure(path, f"Training curves from {rel}.", wide=True)})
    sampled = _trained_on_samples(ctx)
    recon = [p for p in c.figures() if re.search(r"reconstruction", p.stem)]
    generated = [p for p in c.figures() if p.stem.startswith("vade_generated") and cluster_of_figure(p) is None]
    choice = [p for p in c.figures() if p.stem == "vade_mixture_choice"]
    ctx.placed.update(p.name for p in recon + generated + choice)
    if training:  # the report's own drawing of the same logs: not again under "Other figures"
        ctx.placed.add("vade_training_curves.png")
    if not (training or recon or generated or sampled or choice):
        return None
    how = {}
    if choice:
        from ...vade.figures import mixture_choice

        how = mixture_choice(ctx.run)
    html = render("model.html", training=training, sampled=sampled, n_galaxies=c.n, how=how,
                  choice=[figure(p, "How the clusters were chosen.", wide=True) for p in choice],
                  reconstructions=[figure(p, "Reconstructions.", wide=True) for p in recon],
                  generated=[figure(p, "Generated galaxies.", wide=True) for p in generated])
    return Section("model", "Model", html)


def _trained_on_samples(ctx: ReportContext) -> list[dict]:
    """``{"model", "n"}`` for every model of the run that trained on a sample (``train.sample``)."""
    out = []
    for path in sorted((ctx.run.path / "models").glob("*/training.json")):
        try:
            n = int(json.loads(path.read_text()).get("train_sample") or 0)
        except (OSError, ValueError, AttributeError, TypeError):
            continue  # an unreadable summary says nothing about sampling
        if n:
            out.append({"model": path.parent.name, "n": n})
    try:  # the pixel-PCA baseline fits on the same sample (its record alone said so)
        n = int(json.loads(ctx.run.embedding_path("pixels_pca").with_suffix(".json").read_text()).get("fit_sample") or 0)
    except (OSError, ValueError, AttributeError, TypeError):
        n = 0
    if n:
        out.append({"model": "pixels_pca (the pixel-PCA baseline)", "n": n})
    return out
