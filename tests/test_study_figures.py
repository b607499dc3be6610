"""The feature study's static figures, tested by what they show: a map per reduction, k-selection
curves, galleries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from morphospace.image.palettes import colour, label_colour
from morphospace.run import RunDir, write_npy, write_table
from morphospace.study.figures import (GALLERY_COLUMNS, NOISE_GREY, draw_gallery, draw_k_selection, draw_map,
                                       k_selection_figure, write_study_figures)

from fixtures import crop, rendered

# the report's colours: clusters by number, the classes of a label column in natural order
CLUSTER_RGB = [to_rgb(colour(k)) for k in range(10)]
CLASS_RGB = [to_rgb(label_colour(k)) for k in range(10)]



def pixels_of(img: np.ndarray, rgb, tol: float = 0.03) -> int:
    """How many pixels have this colour (within ``tol`` on every channel)."""
    return int((np.abs(img - np.asarray(rgb)).max(axis=-1) < tol).sum())


def fake_run(path, n=60):
    """A run with three labelled forms, three 2-D reductions, four clusterings and a k-selection table."""
    rng = np.random.default_rng(0)
    run = RunDir(path, create=True)
    classes = np.array(["elliptical", "spiral", "edge_on"])[np.arange(n) % 3]
    ids = np.array([f"g{i:02d}" for i in range(n)])
    morph = pd.array(np.where(np.arange(n) % 10 == 9, None, classes), dtype="string")  # some unlabelled
    write_table(run.catalogue, pd.DataFrame({"id": ids, "source": "x", "morph3": morph, "cube_index": np.arange(n)}))
    write_npy(run.cube, rng.random((n, 3, 16, 16)).astype(np.float32))
    for red in ("pca", "tsne", "lda"):
        write_npy(run.reduction_path(red), rng.normal(size=(n, 2)).astype(np.float32))
    run.write_clustering("kmeans8_pca", ids, np.arange(n) % 8)
    run.write_clustering("kmeans3_pca", ids, np.arange(n) % 3)
    run.write_clustering("dbscan_tsne", ids, np.where(np.arange(n) % 5 == 0, -1, np.arange(n) % 2))
    run.write_clustering("kmeans8_lda", ids, np.arange(n) % 8)
    write_table(run.sub("comparisons") / "k_selection_pca.csv", k_table())
    return run


def k_table() -> pd.DataFrame:
    """A k-selection table: K-Means silhouette and Calinski-Harabasz, GMM BIC, the chosen k marked."""
    return pd.DataFrame({"method": ["kmeans"] * 3 + ["gmm"] * 3, "k": [3, 4, 5] * 2,
                         "selected": [True, False, False, False, True, False],
                         "silhouette": [0.5, 0.4, 0.3, np.nan, np.nan, np.nan],
                         "calinski_harabasz": [30.0, 20.0, 10.0, np.nan, np.nan, np.nan],
                         "bic": [np.nan] * 3 + [100.0, 90.0, 95.0]})


def test_maps_k_selection_and_galleries_are_written(tmp_path):
    run = fake_run(tmp_path / "run")
    written = {p.name for p in write_study_figures(run)}
    assert written == {"map_pca.png", "map_tsne.png", "map_lda.png", "k_selection_pca.png",
                       "gallery_kmeans8_pca.png", "gallery_dbscan_tsne.png", "gallery_kmeans8_lda.png"}
    for name in written:
        img = np.asarray(Image.open(run.path / "figures" / name).convert("RGB")) / 255.0
        assert img.std() > 0.05, name  # something is drawn on the white page
    # the map of the PCA shows the truth (3 classes) and both clusterings on it (8 and 3 clusters):
    # the eight cluster colours of K-Means 8 are there, as the report and the explorer colour them
    pca = np.asarray(Image.open(run.path / "figures" / "map_pca.png").convert("RGB")) / 255.0
    assert sum(pixels_of(pca, c, tol=0.05) > 0 for c in CLUSTER_RGB[:8]) == 8
    # a clustering that is not the seed study's gets no gallery
    assert not (run.path / "figures" / "gallery_kmeans3_pca.png").exists()
    # a clustering gone (re-clustered with other settings): its gallery goes too, the report shows every figure
    run.clustering_path("kmeans8_lda").unlink()
    write_study_figures(run)
    assert not (run.path / "figures" / "gallery_kmeans8_lda.png").exists()
    assert (run.path / "figures" / "gallery_kmeans8_pca.png").exists()


def test_map_shows_each_category_in_its_colour_and_missing_in_grey():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cls = np.repeat([0, 1, 2], 40)
    xy = centres[cls] + rng.normal(0, 0.8, (120, 2))
    labels = np.array(["a", "b", "c"], dtype=object)[cls]
    labels[:5] = None  # unlabelled: grey
    clusters = cls.copy()
    clusters[40:45] = -1  # noise: grey
    fig = draw_map(xy, [("truth", labels), ("clusters", clusters), ("nothing", np.full(120, None))], "map")
    assert len(fig.axes) == 3  # one panel per labelling
    img = rendered(fig)
    truth, clus, nothing = (crop(img, ax) for ax in fig.axes)
    for panel, rgb in ((truth, CLASS_RGB), (clus, CLUSTER_RGB)):  # the report's: a class deep, a cluster bright
        for shade in rgb[:3]:  # three categories, three colours
            assert pixels_of(panel, shade) > 30
        assert pixels_of(panel, rgb[3]) == 0  # and no fourth
        assert pixels_of(panel, to_rgb(NOISE_GREY)) > 5  # the unlabelled / noise galaxies
    # a labelling with nothing in it: every galaxy in grey, no category colour
    assert pixels_of(nothing, to_rgb(NOISE_GREY)) > 100
    assert all(pixels_of(nothing, c) == 0 for c in CLASS_RGB[:3] + CLUSTER_RGB[:3])


def test_a_map_draws_its_largest_class_first_and_its_legend_beside_the_points():
    """Drawn in name order, 2,345 ellipticals covered 405 spirals; the legend ("best") lay over the
    points of a crowded panel, and grey (noise, no label) had no entry."""
    rng = np.random.default_rng(0)
    labels = np.repeat(["elliptical", "spiral", "edge_on"], [300, 40, 30]).astype(object)
    labels[:10] = None
    xy = rng.normal(size=(len(labels), 2))
    ax = draw_map(xy, [("truth", labels)], "map").axes[0]
    drawn = [len(c.get_offsets()) for c in ax.collections]
    assert drawn == [10, 290, 40, 30]  # grey, then the largest class, the smaller over it
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["edge_on", "elliptical", "spiral", "no label"]
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1  # beside the panel, not over it


def test_k_selection_has_one_panel_per_curve_and_marks_the_choice(tmp_path):
    fig = draw_k_selection(k_table(), "choosing k")
    assert [ax.get_title() for ax in fig.axes] == ["K-Means: silhouette (higher is better)",
                                                   "K-Means: Calinski-Harabasz (higher is better)",
                                                   "GMM: BIC (lower is better)"]
    img = rendered(fig)
    for ax in fig.axes:
        panel = crop(img, ax)
        assert pixels_of(panel, to_rgb("#3b6ea8")) > 20  # the curve
        assert pixels_of(panel, to_rgb("#d1495b")) > 10  # the selected k, circled
    labels = [ax.get_legend().get_texts()[0].get_text() for ax in fig.axes]
    assert labels == ["selected"] * 3  # GMM chose 4 of 3-5
    edge = draw_k_selection(k_table().assign(selected=[True, False, False, False, False, True]), "k")
    assert "the largest k tried" in edge.axes[2].get_legend().get_texts()[0].get_text()
    assert edge.axes[0].get_legend().get_texts()[0].get_text() == "selected"  # K-Means' silhouette: no BIC
    only_silhouette = k_table().drop(columns=["calinski_harabasz", "bic"])
    assert len(draw_k_selection(only_silhouette, "k").axes) == 1
    # no curve at all: no figure, and no file
    empty = k_table().assign(silhouette=np.nan, calinski_harabasz=np.nan, bic=np.nan)
    assert draw_k_selection(empty, "k") is None
    assert k_selection_figure(empty, tmp_path / "k.png", "k") is None and not (tmp_path / "k.png").exists()


def test_gallery_shows_members_and_leaves_missing_cells_blank():
    rng = np.random.default_rng(2)
    labels = np.array([0] * 14 + [1] * 3 + [-1] * 2)
    cube = rng.random((len(labels), 3, 12, 12)).astype(np.float32)
    fig = draw_gallery(cube, labels, "gallery")
    assert len(fig.axes) == 3 * GALLERY_COLUMNS  # three rows: the largest cluster, the other, noise
    with_image = [ax for ax in fig.axes if ax.images]
    assert len(with_image) == GALLERY_COLUMNS + 3 + 2
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["0\nn=14", "1\nn=3", "noise\nn=2"]
    img = rendered(fig)
    for ax in fig.axes:
        cell = crop(img, ax)
        if ax.images:
            assert cell.std() > 0.1  # a noisy cutout, not a blank tile
        else:
            assert cell.min() == pytest.approx(1.0)  # a cluster with fewer members: a white cell


def test_nothing_to_draw_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "empty", create=True)
    write_table(run.catalogue, pd.DataFrame({"id": ["a"], "source": "x", "cube_index": [0]}))
    write_npy(run.cube, np.zeros((1, 1, 8, 8), np.float32))
    assert write_study_figures(run) == []
    assert not (run.path / "figures").exists() or not any((run.path / "figures").iterdir())


def test_a_large_map_draws_a_random_subset_and_says_so(monkeypatch):
    import morphospace.study.figures as figures

    monkeypatch.setattr(figures, "MAX_DRAWN", 50)
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(400, 2))
    fig = figures.draw_map(xy, [("k", rng.integers(0, 3, 400))], "t-SNE")
    assert "a random 50 of 400 galaxies drawn" in fig._suptitle.get_text()
    drawn = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert drawn == 50
    small = figures.draw_map(xy[:40], [("k", np.zeros(40))], "t-SNE")
    assert small._suptitle.get_text() == "t-SNE" and len(small.axes[0].collections[0].get_offsets()) == 40


def test_a_map_shows_the_clusterings_made_on_it_by_their_record(tmp_path, monkeypatch):
    """By the name's end, the VaDE's PCA map's kmeans3_vade_pca (and the pixels' kmeans8_pixels_pca)
    were drawn on the features' map_pca, on other points, pushing its own clusterings out."""
    import morphospace.study.figures as figures
    from morphospace.run import write_json

    run = fake_run(tmp_path / "run")
    ids = run.cube_ids()
    write_npy(run.reduction_path("vade_pca"), np.zeros((len(ids), 2), np.float32))
    for name, rep in (("kmeans3_vade_pca", "vade_pca"), ("kmeans8_pixels_pca", "pixels_pca"), ("kmeans3_pca", "pca")):
        run.write_clustering(name, ids, np.arange(len(ids)) % 3)
        write_json(run.clustering_path(name).with_suffix(".json"), {"method": "kmeans", "representation": rep})
    drawn = {}

    def record(xy, panels, path, title, palette=None):
        drawn[path.name] = [name for name, *_ in panels]
        return path

    monkeypatch.setattr(figures, "map_figure", record)
    write_study_figures(run)
    # kmeans8_pca has no record (made before records): its name still places it
    assert drawn["map_pca.png"] == ["true distribution (morph3)", "kmeans3_pca", "kmeans8_pca"]
    assert drawn["map_vade_pca.png"] == ["true distribution (morph3)", "kmeans3_vade_pca"]


def test_a_label_column_s_minus_one_is_a_class_not_noise():
    # a T-type of -1 (S0+) is a class of the truth panel, coloured and in its legend, as the report
    # shows it; a clustering's -1 is noise, grey
    xy = np.random.default_rng(2).normal(size=(90, 2))
    values = np.repeat(np.array([-5, -1, 3], dtype=object), 30)
    fig = draw_map(xy, [("T-type", values, "labels"), ("clusters", np.repeat([0, -1, 1], 30))], "map")
    truth, clusters = ([t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes)
    assert "-1" in truth and not any("noise" in t for t in truth)
    assert "-1" not in clusters and "noise" in clusters
