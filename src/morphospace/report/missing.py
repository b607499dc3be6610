"""The figures other stages saved under ``RUN/figures/`` that a report expects and does not find (the
folder or some of its files deleted by hand): said at the page's top, naming them and the stage that
makes them again, not left out without a word.

Only figures a stage always writes are expected: the VaDE's (``embed``, once it has embedded the
run's current model) and the k-selection curves and the model's cluster gallery (``compare``, once
its results are the run's). The comparison matrices and the nuisance audit are not: the report
draws its own where they are gone.
"""

from __future__ import annotations

import re

from ..run import RunDir
from .collect import RunContents

__all__ = ["missing_figures", "missing_notice"]

# what `embed` draws of a model whatever it is (vade/figures.py: write_figures); the training curves and
# the choice of K only where there is something of the kind to draw
EMBED_FIGURES = ("vade_reconstructions.png", "vade_clusters.png", "vade_component_means.png", "vade_generated.png")
STRIP = re.compile(r"vade_generated_(cluster)?\d+\.png")


def _embed_figures(run: RunDir, contents: RunContents, have: set[str]) -> list[str]:
    from ..vade.io import model_file

    if (contents.stale_model or contents.model_not_embedded or not model_file(run).is_file()
            or not run.embedding_path("vade").exists()):
        return []  # no model embedded, or an earlier one's results: said otherwise
    missing = [name for name in EMBED_FIGURES if name not in have]
    if "vade" in run.clusterings() and not any(STRIP.fullmatch(name) for name in have):
        missing.append("vade_generated_<k>.png (one per cluster)")
    return missing


def _compare_figures(run: RunDir, contents: RunContents, have: set[str]) -> list[str]:
    comparisons = run.path / "comparisons"
    from ..analysis.compare import INPUTS

    if contents.stale_comparisons is not None or not (comparisons / INPUTS).is_file():
        return []  # not compared, or compared before the run's clusterings changed: said otherwise
    wanted = [f"{p.stem}.png" for p in sorted(comparisons.glob("k_selection_*.csv")) if _has_a_curve(p)]
    if "vade" in run.clusterings():
        wanted.append("gallery_vade.png")
    return [name for name in wanted if name not in have]


def _has_a_curve(path) -> bool:
    """Whether compare draws a figure of this k-selection table (a curve of
    :func:`~morphospace.analysis.clusterers.k_selection_curves`)."""
    import pandas as pd

    from ..analysis.clusterers import k_selection_curves

    try:
        return bool(k_selection_curves(pd.read_csv(path)))
    except (OSError, ValueError):
        return False


def missing_figures(run: RunDir, contents: RunContents) -> list[tuple[str, list[str]]]:
    """``(stage, [file names])`` for each stage whose figures the run should hold and does not.

    Parameters
    ----------
    run : RunDir
    contents : RunContents

    Returns
    -------
    list of (str, list of str)
        The command that makes them again (``embed``, ``compare``) and the figures it would write.
    """
    folder = run.path / "figures"
    have = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    out = []
    for stage, missing in (("embed", _embed_figures(run, contents, have)),
                           ("compare", _compare_figures(run, contents, have))):
        if missing:
            out.append((stage, missing))
    return out


def missing_notice(run: RunDir, contents: RunContents) -> str | None:
    """The page's line on the figures :func:`missing_figures` finds, or None."""
    missing = missing_figures(run, contents)
    if not missing:
        return None
    gone = "; ".join(f"{', '.join(names)} (made by `morphospace {stage}`)" for stage, names in missing)
    rerun = " and ".join(f"`morphospace {stage} RUN`" for stage, _ in missing)
    return (f"Figures missing from figures/ (deleted since they were made, or not drawn: the run's log.txt says "
            f"why), so not on this page: {gone}. Run {rerun} to make them again, then the report.")
