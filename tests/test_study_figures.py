"""The feature study's static figures: a map per reduction, k-selection curves, galleries."""

from __future__ import annotations

import numpy as np
import pandas as pd

from morphospace.run import RunDir, write_npy, write_table
from morphospace.study.figures import write_study_figures


def fake_run(path, n=60):
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
    k = pd.DataFrame({"method": ["kmeans"] * 3 + ["gmm"] * 3, "k": [3, 4, 5] * 2,
                      "selected": [True, False, False, False, True, False],
                      "silhouette": [0.5, 0.4, 0.3, np.nan, np.nan, np.nan],
                      "calinski_harabasz": [30.0, 20.0, 10.0, np.nan, np.nan, np.nan],
                      "bic": [np.nan] * 3 + [100.0, 90.0, 95.0]})
    write_table(run.sub("comparisons") / "k_selection_pca.csv", k)
    return run


def test_maps_k_selection_and_galleries_are_written(tmp_path):
    run = fake_run(tmp_path / "run")
    written = {p.name for p in write_study_figures(run)}
    assert written == {"map_pca.png", "map_tsne.png", "map_lda.png", "k_selection_pca.png",
                       "gallery_kmeans8_pca.png", "gallery_dbscan_tsne.png", "gallery_kmeans8_lda.png"}
    for name in written:
        assert (run.path / "figures" / name).stat().st_size > 5000, name
    # a clustering that is not the seed study's gets no gallery
    assert not (run.path / "figures" / "gallery_kmeans3_pca.png").exists()


def test_nothing_to_draw_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "empty", create=True)
    write_table(run.catalogue, pd.DataFrame({"id": ["a"], "source": "x", "cube_index": [0]}))
    write_npy(run.cube, np.zeros((1, 1, 8, 8), np.float32))
    assert write_study_figures(run) == []
