"""A report of a run whose figures/ (or some of its files) was deleted by hand says which figures are
missing and the stage that makes them again, on the page and in the log; it does not fail."""

from __future__ import annotations

import html as htmllib
import logging
import shutil

from PIL import Image

from morphospace.config import Config
from morphospace.report import build_report
from morphospace.vade.io import model_file

from report_fakerun import make_fake_run

EMBEDS = ["vade_reconstructions", "vade_clusters", "vade_component_means", "vade_generated", "vade_generated_0"]


def _embedded_run(path):
    """A fake run as `embed` leaves it: a model, its embedding and clusters, and the figures it draws."""
    run = make_fake_run(path, n=40, size=16)
    model_file(run).write_bytes(b"a model")
    for name in EMBEDS:
        Image.new("RGB", (20, 10), (90, 90, 90)).save(run.figure_path(name))
    return run


def _notice(page: str) -> str:
    notice = page[page.index("Figures missing"):]
    return notice[:notice.index("then the report")]


def test_figures_deleted_by_hand_are_named_with_the_stage_that_makes_them(tmp_path, caplog):
    run = _embedded_run(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="morphospace"):
        page = htmllib.unescape(build_report(run, Config()).read_text())
    assert "Figures missing" not in page and "Figures missing" not in caplog.text
    assert "vade_reconstructions.png" in page  # shown (as an image of the model section)

    (run.path / "figures" / "vade_reconstructions.png").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="morphospace"):
        page = htmllib.unescape(build_report(run, Config()).read_text())
    line = next(r.getMessage() for r in caplog.records if "Figures missing" in r.getMessage())
    assert caplog.records[[r.getMessage() for r in caplog.records].index(line)].levelno == logging.WARNING
    for text in (line, _notice(page)):
        assert "vade_reconstructions.png" in text and "morphospace embed RUN" in text
        assert "vade_clusters.png" not in text  # only what is gone

    shutil.rmtree(run.path / "figures")  # the whole folder
    page = htmllib.unescape(build_report(run, Config()).read_text())
    notice = _notice(page)
    for name in EMBEDS[:4]:
        assert f"{name}.png" in notice
    assert "vade_generated_<k>.png (one per cluster)" in notice and "morphospace embed RUN" in notice


def test_a_k_selection_table_without_a_curve_expects_no_figure(tmp_path):
    """compare draws no k-selection figure of a table without a K-Means or GMM curve (DBSCAN or
    HDBSCAN alone, or fewer galaxies than every k): such a table expects no figure, one with a curve
    does (a fresh run of HDBSCAN alone was told its figure was deleted)."""
    import pandas as pd

    from morphospace.report.missing import _has_a_curve
    from morphospace.study.figures import draw_k_selection

    tables = {"density": pd.DataFrame({"method": ["hdbscan"], "k": [4], "selected": [True], "silhouette": [0.2]}),
              "too_few": pd.DataFrame({"method": ["kmeans"], "k": [3], "selected": [False], "silhouette": [None]}),
              "curves": pd.DataFrame({"method": ["kmeans", "kmeans"], "k": [3, 4], "selected": [True, False],
                                      "silhouette": [0.3, 0.2]}),
              "bic": pd.DataFrame({"method": ["gmm"], "k": [3], "selected": [True], "bic": [10.0]})}
    for name, table in tables.items():
        table.to_csv(tmp_path / f"k_selection_{name}.csv", index=False)
        drawn = draw_k_selection(table, name) is not None  # what compare does with the table
        assert _has_a_curve(tmp_path / f"k_selection_{name}.csv") is drawn, name
        assert drawn is (name in ("curves", "bic")), name
