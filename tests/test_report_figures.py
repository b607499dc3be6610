"""The report's figures, tested by what they show: panels, the colours of what is drawn, tiles and placeholders."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex, to_rgb
from PIL import Image

from morphospace.report.figures import (draw_anomaly_by_cluster, draw_anomaly_histogram, draw_cluster_sizes,
                                        draw_flags, draw_label_mix, draw_labels, draw_training)
from morphospace.report.grids import GALLERY_BAND, gallery_image, image_grid, mosaic_image, save_image
from morphospace.report.style import EXCLUDED, GREY, KEPT, STYLE, colour, label_colour, save_figure

from fixtures import crop, rendered


def pixels_of(img: np.ndarray, hex_colour: str, tol: float = 0.02) -> int:
    """How many pixels have this colour (within ``tol`` on every channel)."""
    return int((np.abs(img - np.asarray(to_rgb(hex_colour))).max(axis=-1) < tol).sum())


def test_drawing_leaves_matplotlib_as_it_was():
    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    draw_cluster_sizes(["0"], [3], [colour(0)], "t")
    with pytest.raises(KeyError):
        draw_flags(pd.DataFrame({"flag": ["x"]}))  # fails half-way: the style is restored anyway
    assert matplotlib.get_backend() == backend
    assert {k: v for k, v in matplotlib.rcParams.items() if before.get(k) != v} == {}
    # and the figure keeps the style wherever it is drawn: the ticks were made in it
    fig = draw_cluster_sizes(["0", "1"], [3, 4], [colour(0), colour(1)], "t")
    assert to_rgb(fig.axes[0].xaxis.get_major_ticks()[0].label1.get_color()) == to_rgb(STYLE["xtick.color"])


def test_cluster_sizes_shows_a_bar_of_each_colour_as_tall_as_its_cluster():
    names, sizes = ["0", "1", "2", "noise"], [40, 20, 10, 5]
    cols = [colour(0), colour(1), colour(2), GREY]
    fig = draw_cluster_sizes(names, sizes, cols, "sizes")
    assert len(fig.axes) == 1
    panel = crop(rendered(fig), fig.axes[0])
    counts = [pixels_of(panel, c) for c in cols]
    assert min(counts) > 0
    # the bars have one width: their areas go as the cluster sizes
    np.testing.assert_allclose(np.array(counts) / counts[0], np.array(sizes) / sizes[0], atol=0.04)
    assert pixels_of(panel, colour(3)) == 0  # no fifth cluster


def test_flags_are_red_when_excluded_and_amber_when_kept():
    flags = pd.DataFrame({"flag": ["blank", "nonfinite"], "count": [30, 10], "excluded": [True, False]})
    fig = draw_flags(flags)
    panel = crop(rendered(fig), fig.axes[0])
    red, amber = pixels_of(panel, EXCLUDED), pixels_of(panel, KEPT)
    assert red > 0 and amber > 0
    assert red / amber == pytest.approx(3.0, rel=0.1)  # bars as long as the counts
    kept_only = draw_flags(flags.assign(excluded=False))
    panel = crop(rendered(kept_only), kept_only.axes[0])
    assert pixels_of(panel, EXCLUDED) == 0 and pixels_of(panel, KEPT) > 0


def test_labels_have_one_panel_per_column_and_missing_in_grey():
    counts = {"morphology": pd.Series([30, 20, 5], index=["spiral", "elliptical", "(missing)"]),
              "bar": pd.Series([10, 45], index=["yes", "no"])}
    fig = draw_labels(counts)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["morphology", "bar"]
    img = rendered(fig)
    morph, bar = crop(img, fig.axes[0]), crop(img, fig.axes[1])
    # colours keyed by value, the classes of each panel apart: elliptical, spiral 0 and 1; no, yes too
    assert pixels_of(morph, label_colour(0)) > 0 and pixels_of(morph, label_colour(1)) > 0
    assert pixels_of(bar, label_colour(0)) > 0 and pixels_of(bar, label_colour(1)) > 0
    assert pixels_of(morph, colour(0)) == 0  # classes in their own tones, not the clusters'
    # galaxies without the label: a bar in the placeholder grey (elsewhere only the edges of grey text)
    assert pixels_of(morph, GREY) > 1000 and pixels_of(bar, GREY) < 50
    assert pixels_of(bar, label_colour(2)) == 0  # two values, two colours


def test_label_mix_fills_each_cluster_with_its_label_fractions():
    table = pd.DataFrame([[9, 1], [0, 10]], index=["0", "1"], columns=["spiral", "elliptical"])
    fig = draw_label_mix(table, "mix")
    panel = crop(rendered(fig), fig.axes[0])
    # colours by value: elliptical first in natural order, spiral second, whatever the columns' order
    a, b = pixels_of(panel, label_colour(1)), pixels_of(panel, label_colour(0))
    assert a / b == pytest.approx(9 / 11, rel=0.1)  # 9 of 20 galaxies are spirals, 11 ellipticals


def test_training_has_one_panel_per_metric_family_and_none_without_metrics():
    log = pd.DataFrame({"epoch": [0, 0, 1, 1], "train_loss": [5.0, np.nan, 3.0, np.nan],
                        "val_loss": [np.nan, 6.0, np.nan, 4.0], "val_acc": [np.nan, 0.5, np.nan, 0.7]})
    fig = draw_training([("train", log)])
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["loss", "acc"]
    loss = fig.axes[0]
    assert [line.get_linestyle() for line in loss.get_lines()] == ["-", "--"]  # validation dashed
    np.testing.assert_allclose(loss.get_lines()[1].get_ydata(), [6.0, 4.0])
    panel = crop(rendered(fig), loss)
    assert pixels_of(panel, colour(0), tol=0.05) > 10 and pixels_of(panel, colour(1), tol=0.05) > 10
    assert draw_training([("train", pd.DataFrame({"epoch": [0, 1], "note": ["a", "b"]}))]) is None


def test_anomaly_figures_show_the_scores():
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0, 1, 500), [np.nan, np.inf]]
    fig = draw_anomaly_histogram(scores, 2.5, "anomaly score")
    panel = crop(rendered(fig), fig.axes[0])
    assert pixels_of(panel, "#7a8cff", tol=0.1) > 200  # the bars
    assert pixels_of(panel, "#e5484d", tol=0.1) > 20  # the threshold line
    groups = [("0", colour(0), rng.normal(0, 1, 50)), ("1", colour(1), rng.normal(3, 1, 50))]
    fig = draw_anomaly_by_cluster(groups, "anomaly score")
    panel = crop(rendered(fig), fig.axes[0])
    for c in (colour(0), colour(1)):  # each box in its cluster's colour (85% opaque, on white)
        assert pixels_of(panel, to_hex(0.85 * np.array(to_rgb(c)) + 0.15), tol=0.03) > 50


def test_save_figure_writes_what_is_drawn(tmp_path):
    fig = draw_cluster_sizes(["0", "1"], [3, 4], [colour(0), colour(1)], "t")
    path = save_figure(fig, tmp_path / "sizes.png")
    img = np.asarray(Image.open(path).convert("RGB")) / 255.0
    assert img.std() > 0.05 and pixels_of(img, colour(1)) > 100
    assert [p.name for p in tmp_path.iterdir()] == ["sizes.png"]  # no temporary file left


def test_mosaic_tiles_are_the_galaxies_themselves():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    img = np.asarray(mosaic_image(small, cols=3))  # small galaxies: upscaled x2, nearest neighbour
    assert img.shape == (2 * (2 * 8 + 2), 2 * (3 * 8 + 2 * 2), 3)
    for k in range(5):
        r, c = divmod(k, 3)
        tile = img[2 * r * 10:2 * r * 10 + 16, 2 * c * 10:2 * c * 10 + 16]
        np.testing.assert_array_equal(tile, small[k].repeat(2, axis=0).repeat(2, axis=1))
    assert img[2 * 10:, 2 * 2 * 10:].min() == 255  # the empty sixth cell stays white
    big = rng.integers(0, 256, (2, 64, 64, 1), dtype=np.uint8)
    grey = np.asarray(mosaic_image(big, cols=2))
    np.testing.assert_array_equal(grey[:, :64], big[0, ..., 0])  # kept at its resolution
    assert np.asarray(image_grid(big, cols=1)).shape == (130, 64)


def test_gallery_rows_carry_their_cluster_colour_and_blank_missing_cells(tmp_path):
    rng = np.random.default_rng(2)
    rows = [("cluster 0 (12)", colour(0), rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)),
            ("noise (2)", GREY, rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8))]
    path = save_image(gallery_image(rows, per_row=4), tmp_path / "gallery.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (2 * 18, GALLERY_BAND + 4 * 18, 3)
    for i, (_, hexcol, tiles) in enumerate(rows):
        y = i * 18
        assert tuple(img[y + 8, 3]) == tuple(round(255 * v) for v in to_rgb(hexcol))  # the band
        for k in range(4):
            cell = img[y:y + 16, GALLERY_BAND + k * 18:GALLERY_BAND + k * 18 + 16]
            if k < len(tiles):
                np.testing.assert_array_equal(cell, tiles[k])
            else:
                assert cell.min() == 255  # fewer members than cells: white


def test_figure_modules_never_touch_pyplot_or_the_backend():
    """Library code makes Figures directly: a notebook's backend and pyplot state are left alone."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "morphospace"
    modules = [*(src / "report").rglob("*.py"), src / "study" / "figures.py", src / "analysis" / "compare.py",
               src / "analysis" / "agreement.py", src / "export.py"]
    bad = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}: imports {n}" for n in names if "pyplot" in n]
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("matplotlib.use", "use", "plt.switch_backend"):
                bad.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert bad == []


def test_the_component_figures_name_each_row_s_cluster():
    """`vade_clusters.png` was titled "clusters" but showed the mixture components, numbered 0..K-1
    like the report's clusters: a row "6" read as cluster 6 was another group of galaxies."""
    import types

    import torch

    from morphospace.vade.figures import fig_clusters, fig_component_means, fig_generated

    k = 4
    model = types.SimpleNamespace(prior=types.SimpleNamespace(n_components=k), canonicalise=True,
                                  prepare=lambda x: x,
                                  generate=lambda c, n, temperature, seed: np.zeros((n, 1, 8, 8), np.float32))
    proba = np.eye(k)[np.arange(12) % k]
    enc = {"proba": proba, "groups": [[0, 3], [1], [2]]}
    cube = np.random.default_rng(0).random((12, 1, 8, 8)).astype(np.float32)
    for fig in (fig_clusters(model, cube, enc, per_row=3), fig_generated(model, n=2, enc=enc)):
        labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
        assert [lab.split("\n")[:2] for lab in labels] == [["comp. 0", "(cluster 0)"], ["comp. 1", "(cluster 1)"],
                                                            ["comp. 2", "(cluster 2)"], ["comp. 3", "(cluster 0)"]]
        assert "component" in fig._suptitle.get_text()
    assert "canonical orientation" in fig._suptitle.get_text()
    model.prior.means = torch.zeros(k, 2)
    model.prior.log_weights = torch.log(torch.full((k,), 1 / k))
    model.decode = lambda z: torch.zeros(len(z), 1, 8, 8)
    titles = [ax.get_title() for ax in fig_component_means(model, enc=enc).axes if ax.get_title()]
    assert titles[3] == "comp. 3\n(cluster 0)\npi=0.25"
    unmerged = fig_generated(model, n=2, enc={"proba": proba})
    assert [ax.get_ylabel() for ax in unmerged.axes if ax.get_ylabel()] == [f"comp. {c}" for c in range(k)]


def test_the_model_s_choice_of_k_and_of_its_clusters_is_drawn(tmp_path):
    """The report's "how training went" showed no trace of how K (the BIC) or the clusters (the merge
    path and its elbow) were chosen, though the run keeps both."""
    import json

    from morphospace.run import RunDir
    from morphospace.vade.figures import fig_mixture_choice

    run = RunDir(tmp_path / "run", create=True)
    mdir = run.path / "models" / "vade"
    mdir.mkdir(parents=True)
    assert fig_mixture_choice(run=run) is None  # nothing kept: nothing drawn
    (mdir / "training.json").write_text(json.dumps({"init": {"linear": {"bic": {"2": 30.0, "3": 10.0, "4": 12.0}}}}))
    (mdir / "clusters.json").write_text(json.dumps({"n_clusters": 2, "entropy_path": {"1": 0.0, "2": 1.0, "3": 9.0},
                                                    "merged_path": {"1": 50, "2": 20, "3": 0}}))
    fig = fig_mixture_choice(run=run)
    assert [ax.get_title() for ax in fig.axes] == ["mixture components: BIC (lowest at K = 3)",
                                                   "components merged into 2 clusters (the elbow)"]
    assert list(fig.axes[1].lines[0].get_xdata()) == [50, 20, 0]
    (mdir / "training.json").write_text(json.dumps({"init": {"linear": {"bic": {"2": 30.0, "3": 10.0}}}}))
    title = fig_mixture_choice(run=run).axes[0].get_title()
    assert title.startswith("mixture components: BIC (lowest at K = 3, the largest tried") and "k_max" in title


def test_the_report_says_how_k_was_chosen_as_the_run_s_records_say(tmp_path):
    """The card said "K by the BIC" and "merged" for every model, an imported AstroVaDEr (K as
    published, no merge) and a K set by hand included."""
    import json

    from morphospace.report.html import render
    from morphospace.run import RunDir
    from morphospace.vade.figures import mixture_choice

    run = RunDir(tmp_path / "run", create=True)
    mdir = run.path / "models" / "vade"
    mdir.mkdir(parents=True)
    (mdir / "imported.json").write_text("{}")

    from PIL import Image

    from morphospace.report.views import figure

    Image.new("RGB", (4, 4)).save(tmp_path / "choice.png")

    def card(how):
        html = render("model.html", training=[], sampled=[], n_galaxies=10, how=how,
                      choice=[figure(tmp_path / "choice.png", "How the clusters were chosen.", wide=True)],
                      reconstructions=[], generated=[])
        return " ".join(html.split())

    imported = card(mixture_choice(run))
    assert "K as the imported model has it; each component is a cluster." in imported and "BIC" not in imported
    (mdir / "imported.json").unlink()
    assert "K as set (<code>model.n_components</code>); each component" in card(mixture_choice(run))
    (mdir / "training.json").write_text(json.dumps({"init": {"linear": {"bic": {"2": 30.0, "3": 10.0, "4": 12.0}}}}))
    (mdir / "clusters.json").write_text("{}")
    chosen = card(mixture_choice(run))
    assert "K by the BIC (the lowest), then the components merged into clusters" in chosen
    # the BIC still falling at the largest K tried: the range chose K (sdss-gz1: K = 12 of 2..12), said
    (mdir / "training.json").write_text(json.dumps({"init": {"linear": {"bic": {"2": 30.0, "3": 10.0}}}}))
    assert "the largest K tried, the BIC still falling</b>, so the range chose K" in card(mixture_choice(run))


def test_the_anomaly_box_plot_shows_each_cluster_s_strangest():
    """Drawn without its outliers, cluster 3's box stopped at 13.2 though its galaxy of 15.8 tops the
    strangest list: the plot hid the galaxies it is there to place."""
    from morphospace.report.figures import draw_anomaly_by_cluster

    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(5, 1, 200), 15.8]
    fig = draw_anomaly_by_cluster([("0", "#4e9df5", rng.normal(4, 1, 200)), ("3", "#e5484d", scores)], "anomaly")
    shown = np.concatenate([line.get_ydata() for line in fig.axes[0].lines if line.get_marker() == "."])
    assert 15.8 in shown and fig.axes[0].get_xlabel() == "cluster"
