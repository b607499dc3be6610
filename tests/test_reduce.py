"""Reducers (PCA, LDA, t-SNE, UMAP) and the reduce stage on a tiny fake run."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from morphospace.analysis.reduce import (
    REDUCERS,
    LDAReducer,
    PCAReducer,
    TSNEReducer,
    UMAPReducer,
    make_reducer,
    place_by_neighbours,
    reduce_run,
    representation_id,
)
from morphospace.config import Config, apply_overrides
from morphospace.errors import UserError
from morphospace.run import RunDir, write_json, write_npy, write_table


def blobs(n_per=40, k=3, d=12, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(size=(k * n_per, d)), y


def nearest_centroid_accuracy(Z, y):
    """How well classes separate in a map: accuracy of the nearest class mean."""
    means = np.stack([Z[y == c].mean(axis=0) for c in np.unique(y)])
    pred = np.argmin(((Z[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(np.unique(y)[pred] == y))


def test_pca_reducer_keeps_leading_variance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6)) * np.array([10, 5, 1, 1, 1, 1])
    pca = PCAReducer(n_components=2).fit(X)
    Z = pca.transform(X)
    assert Z.shape == (200, 2)
    assert pca.explained_variance_ratio_.sum() > 0.9
    np.testing.assert_allclose(PCAReducer(2).fit_transform(X), Z, atol=1e-8)


def test_lda_finds_the_low_variance_axis_that_pca_misses():
    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 5))
    X[:, 0] *= 30.0  # a big nuisance axis with no class information
    X[:, 1] *= 15.0
    X[:, 4] = y * 3.0 + rng.normal(scale=0.5, size=n)  # the classes live on a quiet axis
    Z_lda = LDAReducer(2).fit_transform(X, y)
    Z_pca = PCAReducer(2).fit_transform(X)
    assert Z_lda.shape == (n, 2)
    assert nearest_centroid_accuracy(Z_lda, y) > 0.95
    assert nearest_centroid_accuracy(Z_pca, y) < 0.7


def test_lda_needs_labels_and_two_classes():
    X, y = blobs()
    with pytest.raises(UserError, match="requires y"):
        LDAReducer().fit(X)
    with pytest.raises(UserError, match="at least 2"):
        LDAReducer().fit(X, np.zeros(len(X), dtype=int))
    only_one = np.array(["a"] * 5 + [None] * (len(X) - 5), dtype=object)
    with pytest.raises(UserError, match="at least 2"):
        LDAReducer().fit(X, only_one)


def test_lda_ignores_missing_labels_when_fitting_and_transforms_all_rows():
    X, y = blobs()
    labels = y.astype(object)
    labels[::4] = None
    labels[1::9] = np.nan
    labels[2::11] = ""
    known = np.array([v is not None and v == v and v != "" for v in labels])
    Z = LDAReducer(2).fit_transform(X, labels)
    assert Z.shape == (len(X), 2)
    Z_sub = LDAReducer(2).fit(X[known], y[known].astype(str)).transform(X)
    np.testing.assert_allclose(np.abs(Z), np.abs(Z_sub), atol=1e-8)


def test_lda_with_two_classes_pads_with_within_class_pca():
    X, y = blobs(k=2)
    lda = LDAReducer(2).fit(X, y)
    Z = lda.transform(X)
    assert lda.n_discriminants_ == 1
    assert Z.shape == (len(X), 2)
    assert np.std(Z[:, 1]) > 0


def test_tsne_separates_blobs_after_pca_to_fewer_dims():
    X, y = blobs(n_per=50, d=30)
    tsne = TSNEReducer(pca_dims=10, n_jobs=1, random_state=0)
    Z = tsne.fit_transform(X)
    assert Z.shape == (150, 2)
    assert tsne.pca_ is not None and tsne.pca_.n_components_ == 10
    assert nearest_centroid_accuracy(Z, y) == 1.0
    assert tsne.transform(X[:5]).shape == (5, 2)


def test_tsne_is_reproducible_with_a_seed():
    X, _ = blobs(n_per=20)
    assert TSNEReducer().n_jobs == 2  # threads, yet the same map for the same seed
    a = TSNEReducer(random_state=3).fit_transform(X)
    b = TSNEReducer(random_state=3).fit_transform(X)
    np.testing.assert_array_equal(a, b)


def test_threaded_fft_tsne_gives_the_same_map_twice():
    """From 10,000 rows openTSNE takes approximate neighbours and FFT gradients, both on
    ``n_jobs`` threads: a seed still fixes the map, bit for bit (what the default of 2 relies on)."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(10_000, 4)) + 4 * rng.integers(0, 3, (10_000, 1))).astype(np.float32)
    a, b = (TSNEReducer(n_jobs=2, n_iter=10, pca_dims=None, random_state=1).fit_transform(X) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > 0


def test_umap_separates_blobs():
    X, y = blobs(n_per=40, d=8)
    Z = UMAPReducer(n_neighbors=10, random_state=0).fit_transform(X)
    assert Z.shape == (120, 2)
    assert nearest_centroid_accuracy(Z, y) == 1.0


def test_a_small_umap_precomputes_the_distances_umap_learn_would_have_computed():
    """Below UMAP_EXACT_BELOW rows the reducer hands umap-learn the Euclidean distance matrix:
    the fuzzy neighbour graph is umap-learn's own on the same rows, and new rows are placed
    from their distances to the training rows."""
    import umap

    from morphospace.analysis.maps import UMAP_EXACT_BELOW

    X, y = blobs(n_per=40, d=8)
    reducer = UMAPReducer(n_neighbors=10, random_state=0).fit(X)
    assert len(X) < UMAP_EXACT_BELOW and reducer.umap_.metric == "precomputed"
    own = umap.UMAP(n_neighbors=10, min_dist=0.1, random_state=0, n_jobs=1).fit(X.astype(np.float32))
    np.testing.assert_allclose(reducer.umap_.graph_.toarray(), own.graph_.toarray(), atol=1e-4)
    placed = reducer.transform(X[::10] + 0.01)
    assert placed.shape == (12, 2) and nearest_centroid_accuracy(np.vstack([reducer.embedding_, placed]),
                                                                 np.concatenate([y, y[::10]])) == 1.0


def test_a_large_umap_takes_its_neighbours_from_the_approximate_index(monkeypatch):
    """From EXACT_BELOW rows up the neighbour graph comes from faiss's inverted file, handed to
    umap-learn with its search for ``transform`` (umap-learn would build pynndescent's, which
    compiles for 30-150 s); here the line is moved below a mid-sized set."""
    import pickle

    from sklearn.neighbors import NearestNeighbors

    from morphospace.analysis import maps

    monkeypatch.setattr(maps, "searches_exactly", lambda n: False)
    X, y = blobs(n_per=1400, d=8)
    reducer = UMAPReducer(n_neighbors=10, random_state=0).fit(X)
    assert reducer.neighbours_ == "approximate" and not reducer.umap_._knn_search_index.index.exact_
    edges = reducer.umap_.graph_.tocsr(copy=True)
    edges.data[:] = 1.0
    nearest = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    found = np.asarray(edges[np.repeat(np.arange(len(X)), 9), nearest.ravel()]).ravel()
    assert found.mean() > 0.95  # nearly every true neighbour is an edge (8 of 107 cells visited)
    placed = reducer.transform(X[::100] + 0.01)
    assert nearest_centroid_accuracy(np.vstack([reducer.embedding_, placed]), np.concatenate([y, y[::100]])) == 1.0
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reducer)).transform(X[::100] + 0.01), placed)
    np.testing.assert_array_equal(UMAPReducer(n_neighbors=10, random_state=0).fit(X).embedding_, reducer.embedding_)


def test_a_mid_sized_umap_finds_its_neighbours_exactly_and_places_new_rows_with_them():
    """From UMAP_EXACT_BELOW rows up to EXACT_BELOW every row's neighbours are searched exactly
    and handed to umap-learn (no pynndescent index to compile); ``transform`` searches the same way."""
    import pickle

    from sklearn.neighbors import NearestNeighbors

    from morphospace.analysis.maps import UMAP_EXACT_BELOW
    from morphospace.analysis.neighbour_index import EXACT_BELOW

    X, y = blobs(n_per=1400, d=8)
    assert UMAP_EXACT_BELOW <= len(X) < EXACT_BELOW
    reducer = UMAPReducer(n_neighbors=10, random_state=0).fit(X)
    assert reducer.neighbours_ == "exact" and reducer.train_rows_ is None
    # every row's 9 nearest other rows are edges of umap-learn's neighbour graph
    edges = reducer.umap_.graph_.tocsr(copy=True)
    edges.data[:] = 1.0  # the pattern: umap-learn zeroes its weakest weights in place while it optimises
    nearest = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    assert np.asarray(edges[np.repeat(np.arange(len(X)), 9), nearest.ravel()]).ravel().min() == 1.0
    placed = reducer.transform(X[::100] + 0.01)
    assert nearest_centroid_accuracy(np.vstack([reducer.embedding_, placed]), np.concatenate([y, y[::100]])) == 1.0
    again = pickle.loads(pickle.dumps(reducer))
    np.testing.assert_array_equal(again.transform(X[::100] + 0.01), placed)


def test_registry_and_factory():
    assert set(REDUCERS) == {"pca", "lda", "tsne", "umap"}
    r = make_reducer("TSNE", n_jobs=2, perplexity=12, n_neighbors=99, random_state=5)
    assert isinstance(r, TSNEReducer) and r.n_jobs == 2 and r.perplexity == 12 and r.random_state == 5
    with pytest.raises(UserError, match="unknown reduction"):
        make_reducer("isomap")


def test_representation_ids():
    assert representation_id("features", "tsne") == "tsne"
    assert representation_id("vade", "tsne") == "vade_tsne"
    assert representation_id("pixels_pca", "pca") == "pixels_pca_pca"


def fake_run(tmp_path, with_labels=True, n=45, seed=0):
    """A run directory with a catalogue (cube order shuffled), a cube and two embeddings."""
    rng = np.random.default_rng(seed)
    run = RunDir(tmp_path / "run", create=True)
    morph = np.array(["elliptical", "spiral", "edge_on"])[np.arange(n) % 3]
    cube_index = rng.permutation(n)
    cat = pd.DataFrame({"id": [f"g{i:03d}" for i in range(n)], "source": "x",
                        "flag_blank": np.zeros(n, dtype=bool), "cube_index": cube_index})
    if with_labels:
        cat["morphology"] = pd.Series(morph, dtype="string")
    # one galaxy not in the cube
    cat = pd.concat([cat, pd.DataFrame({"id": ["gone"], "source": "x", "flag_blank": [True],
                                        "cube_index": [-1]})], ignore_index=True)
    write_table(run.catalogue, cat)
    order = np.argsort(cube_index)  # catalogue row of each cube row
    centres = rng.normal(size=(3, 20)) * 6
    codes = np.arange(n)[order] % 3
    feats = centres[codes] + rng.normal(size=(n, 20))
    write_npy(run.embedding_path("features"), feats.astype(np.float32))
    write_npy(run.embedding_path("vade"), feats[:, :8].astype(np.float32))
    write_npy(run.cube, rng.random((n, 1, 8, 8), dtype=np.float32))
    return run, codes


def test_reduce_run_writes_every_map(tmp_path):
    run, codes = fake_run(tmp_path)
    cfg = Config()
    out = reduce_run(run, cfg, embedding="features")
    assert set(out) == {"pca", "tsne", "umap", "lda"}
    for rid in out:
        Z = run.read_reduction(rid)
        assert Z.shape == (45, 2) and Z.dtype == np.float32
        meta = json.loads(run.reduction_path(rid).with_suffix(".json").read_text())
        assert meta["embedding"] == "features" and meta["reduction"] == rid
    meta = json.loads(run.reduction_path("lda").with_suffix(".json").read_text())
    assert meta["labels"] == "morphology" and meta["n_discriminants"] == 2
    # LDA used the catalogue labels in cube order: classes separate on its map
    assert nearest_centroid_accuracy(run.read_reduction("lda"), codes) == 1.0


def test_the_lda_map_learns_from_four_fifths_of_each_class_and_keeps_which(tmp_path):
    """Fitted on every label, an LDA map's clusterings could only be scored in-sample; a fifth of each
    class is held out of its fit and its record says which rows it learnt from. Of fine-tuned features
    it learns from the fine-tuning's training split only (it had learnt the held-out galaxies' labels)."""
    from morphospace.analysis.reduce import LDA_HELD_OUT, unpack_rows

    run, codes = fake_run(tmp_path)
    reduce_run(run, Config(), reductions=["lda"])
    meta = json.loads(run.reduction_path("lda").with_suffix(".json").read_text())
    fitted = unpack_rows(meta["fitted_rows"], len(codes))
    for c in range(3):
        assert (~fitted[codes == c]).sum() == round(LDA_HELD_OUT * (codes == c).sum())  # 3 of 15
    # the held-out galaxies are placed on the map by the fitted LDA: their classes still separate
    assert nearest_centroid_accuracy(run.read_reduction("lda")[~fitted], codes[~fitted]) == 1.0
    again = unpack_rows(json.loads(run.reduction_path("lda").with_suffix(".json").read_text())["fitted_rows"], 45)
    reduce_run(run, Config(), reductions=["lda"])
    np.testing.assert_array_equal(unpack_rows(json.loads(run.reduction_path("lda").with_suffix(".json").read_text())[
        "fitted_rows"], 45), again)  # seeded
    ids = run.cube_ids()
    val = np.arange(45) % 3 == 0
    write_table(run.path / "split.parquet", pd.DataFrame({"id": ids, "split": np.where(val, "val", "train")}))
    write_json(run.embedding_path("features").with_suffix(".json"), {"mode": "finetune", "model_dir": "."})
    reduce_run(run, Config(), reductions=["lda"])
    meta = json.loads(run.reduction_path("lda").with_suffix(".json").read_text())
    np.testing.assert_array_equal(unpack_rows(meta["fitted_rows"], 45), ~val)
    # features from another survey's fine-tuned weights: none of these galaxies trained them, so the
    # LDA holds out a fifth of them as for frozen features (it was fitted on none and skipped)
    write_json(run.embedding_path("features").with_suffix(".json"), {"mode": "frozen", "weights_file":
                                                                     str(tmp_path / "other" / "model.pt")})
    write_table(tmp_path / "other" / "split.parquet", pd.DataFrame({"id": ["x1", "x2"], "split": ["train", "validation"]}))
    assert "lda" in reduce_run(run, Config(), reductions=["lda"])
    meta = json.loads(run.reduction_path("lda").with_suffix(".json").read_text())
    assert (~unpack_rows(meta["fitted_rows"], 45)).sum() == 9
    write_json(run.embedding_path("features").with_suffix(".json"), {"mode": "frozen"})
    table = pd.read_parquet(run.catalogue)
    write_table(run.catalogue, table.assign(morphology=pd.Series([None] * len(table), dtype="string")))
    assert reduce_run(run, Config(), reductions=["lda"]) == {} and "lda" not in run.reductions()  # not the earlier map


def test_reduce_run_names_other_embeddings_and_follows_config(tmp_path):
    run, _ = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.reductions = ["pca"]
    out = reduce_run(run, cfg, embedding="vade")
    assert list(out) == ["vade_pca"]
    assert run.reductions() == ["vade_pca"]


def test_reduce_run_skips_lda_without_labels(tmp_path, caplog):
    run, _ = fake_run(tmp_path, with_labels=False)
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        out = reduce_run(run, Config(), reductions=["pca", "lda"])
    assert list(out) == ["pca"]
    assert "LDA skipped" in caplog.text
    with pytest.raises(UserError, match="not in the catalogue"):
        reduce_run(run, Config(), reductions=["lda"], labels="morphology")
    with pytest.raises(UserError, match="unknown reduction"):
        reduce_run(run, Config(), reductions=["pca", "mds"])


def test_a_map_that_cannot_be_made_is_skipped_saying_so(tmp_path, caplog):
    """A 1-column embedding, identical galaxies (t-SNE gives NaN): no map and a warning, not a
    traceback or a NaN map that the clusterings choke on; an earlier map of that name goes. A
    perplexity clipped to the galaxies is recorded as used."""
    run, _ = fake_run(tmp_path)
    reduce_run(run, Config(), reductions=["tsne"])
    write_npy(run.embedding_path("features"), np.ones((45, 1), np.float32))
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        out = reduce_run(run, Config(), reductions=["pca", "tsne", "umap"])
    assert list(out) == ["pca"] and "tsne of features skipped" in caplog.text and "umap of features skipped" in caplog.text
    assert "tsne" not in run.reductions()
    write_npy(run.embedding_path("features"), np.ones((45, 4), np.float32))  # one galaxy 45 times
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        out = reduce_run(run, Config(), reductions=["tsne"])
    assert not out and "the map is not finite" in caplog.text
    write_npy(run.embedding_path("features"), np.random.default_rng(0).normal(size=(45, 4)).astype(np.float32))
    reduce_run(run, apply_overrides(Config(), ["cluster.tsne_perplexity=500"]), reductions=["tsne"])
    meta = json.loads(run.reduction_path("tsne").with_suffix(".json").read_text())
    assert meta["params"]["perplexity"] == 500 and meta["perplexity_used"] == pytest.approx(44 / 3)


def test_lda_generalises_when_features_outnumber_what_the_labels_can_pin_down():
    # 150 labelled rows in 140 dimensions: unregularised LDA fits the noise and places new
    # galaxies of the same classes anywhere (K-Means AMI ~0.08); the shrunk one keeps them apart
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 50)

    def draw():
        x = rng.normal(size=(150, 140))
        x[:, 0] += np.select([y == "a", y == "b"], [2.5, -2.5], 0.0)
        x[:, 1] += 3.0 * (y == "c")
        return x

    z = LDAReducer(n_components=2).fit(draw(), y).transform(draw())
    labels = KMeans(3, n_init=10, random_state=0).fit_predict(z)
    assert adjusted_mutual_info_score(y, labels) > 0.6


def test_place_by_neighbours_puts_a_row_among_those_it_resembles():
    X, y = blobs(n_per=30, k=2, d=6, spread=10.0)
    positions = np.where(y[:, None] == 0, [0.0, 0.0], [10.0, 10.0]) + np.random.default_rng(1).normal(0, 0.1, (60, 2))
    new, y_new = blobs(n_per=5, k=2, d=6, spread=10.0, seed=0)  # the same centres, new noise
    new = new + np.random.default_rng(2).normal(0, 0.5, new.shape)
    placed = place_by_neighbours(X, positions, new, k=5)
    target = np.where(y_new[:, None] == 0, 0.0, 10.0)
    assert placed.shape == (10, 2) and np.abs(placed - target).max() < 0.5
    # rows= and space= read a subset through a map into the fitted space
    sub = place_by_neighbours(X, positions, new * 2, k=5, rows=np.array([7, 1]), space=lambda r: r / 2)
    np.testing.assert_allclose(sub, placed[[7, 1]])


@pytest.mark.parametrize("name", ["tsne", "umap"])
def test_a_large_map_is_fitted_on_a_sample_and_the_rest_placed(tmp_path, name):
    run, codes = fake_run(tmp_path, n=150)
    cfg = Config()
    cfg.cluster.reductions = [name]
    cfg.cluster.map_sample = 60
    reduce_run(run, cfg, embedding="features")
    Z = run.read_reduction(name)
    meta = json.loads(run.reduction_path(name).with_suffix(".json").read_text())
    assert Z.shape == (150, 2) and np.isfinite(Z).all() and meta["fit_sample"] == 60
    # the placed rows land with their own kind: the classes still separate on the whole map
    assert nearest_centroid_accuracy(Z, codes) == 1.0
    cfg.cluster.map_sample = 0
    reduce_run(run, cfg, embedding="features")
    assert json.loads(run.reduction_path(name).with_suffix(".json").read_text())["fit_sample"] is None


def test_lda_with_a_class_of_one_galaxy_fits_without_a_warning():
    """A rare class with a single labelled galaxy is legitimate: scikit-learn's shrinkage warned
    "Only one sample available" for it, a line in every run log of such a sample."""
    import warnings

    X, y = blobs()
    labels = y.astype(object)
    labels[0] = "lone"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        red = LDAReducer(2).fit(X, labels)
    assert "lone" in red.classes_ and red.transform(X).shape == (len(X), 2)


def test_placing_rows_in_a_tsne_map_leaves_the_map_as_fitted():
    """openTSNE's transform moved the fitted map it places rows in (by up to 0.45 on a map 16 wide),
    and fit_transform returned that map itself: a map already plotted or clustered moved under the
    user, and the same rows placed twice landed in different places."""
    from morphospace.analysis.maps import TSNEReducer

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (60, 5)), rng.normal(5, 1, (60, 5))]
    tsne = TSNEReducer(random_state=0)
    xy = tsne.fit_transform(X)
    saved, fitted = xy.copy(), np.array(tsne.embedding_)
    new = rng.normal(0, 1, (7, 5))
    first, second = tsne.transform(new), tsne.transform(new)
    np.testing.assert_array_equal(xy, saved)
    np.testing.assert_array_equal(np.asarray(tsne.embedding_), fitted)
    np.testing.assert_allclose(first, second, atol=1e-9)
    assert not np.shares_memory(xy, np.asarray(tsne.embedding_))


def test_tsne_of_identical_rows_is_a_value_error_not_a_map_of_nan():
    """ms.TSNE().fit_transform of identical rows returned a map of NaN (numpy's warnings only); the
    next estimator met the NaN. The command line's reduce stage skipped it, as it still does."""
    import warnings

    from morphospace.analysis.maps import TSNEReducer

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning of numpy on the way either
        with pytest.raises(ValueError, match="t-SNE: 20 rows of the map are not finite"):
            TSNEReducer(random_state=0).fit_transform(np.ones((20, 4)))


def test_rows_placed_in_a_tsne_map_land_where_the_map_put_them():
    """openTSNE's transform centres the map's bounding box before it places rows; with the fitted
    map put back, the rows were returned in the centred frame: off their own map points by the
    centre's offset (3.5 on a map whose far cluster sits to one side)."""
    from morphospace.analysis.maps import TSNEReducer

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (150, 5)), rng.normal(6, 1, (150, 5)), rng.normal(30, 1, (50, 5))]
    tsne = TSNEReducer(random_state=0)
    xy = tsne.fit_transform(X)
    centre = (xy.max(axis=0) + xy.min(axis=0)) / 2
    assert np.abs(centre).max() > 1  # a map whose box is off the origin: openTSNE moves it
    placed = tsne.transform(X[:40])
    width = np.ptp(xy, axis=0).max()
    assert np.median(np.linalg.norm(placed - xy[:40], axis=1)) < 0.02 * width


def test_a_tsne_map_does_not_depend_on_how_the_rows_lie_in_memory():
    """openTSNE's map of the same rows differed when they came column-major (a DataFrame's values),
    by 8 on a map 21 wide."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (60, 5)), rng.normal(6, 1, (60, 5))])
    a = TSNEReducer(n_iter=50, n_jobs=1, random_state=0).fit_transform(X)
    for same in (np.asfortranarray(X), pd.DataFrame(X)):
        np.testing.assert_array_equal(TSNEReducer(n_iter=50, n_jobs=1, random_state=0).fit_transform(same), a)


def test_a_deep_copy_of_a_fitted_tsne_places_new_rows_as_the_original():
    """openTSNE keeps what its transform needs through pickling alone: a deep copy raised AttributeError."""
    import copy

    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 5))
    tsne = TSNEReducer(n_iter=50, n_jobs=1, random_state=0).fit(X)
    np.testing.assert_allclose(copy.deepcopy(tsne).transform(X[:3]), tsne.transform(X[:3]))


def test_lda_reads_labels_as_the_classifier_does():
    """LDA took the class "none" for no label (a class dropped unsaid), infinity for a class "inf",
    and 1 and 1.0 for two classes; the few-label classifier refuses the first two and merges the last."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    with pytest.raises(ValueError, match="read as no label, it would drop a class of that name"):
        LDAReducer(2).fit(X, ["none"] * 20 + ["weak"] * 20 + ["strong"] * 20)
    with pytest.raises(ValueError, match="infinite label"):
        LDAReducer(2).fit(X, [1.0] * 20 + [np.inf] * 20 + [2.0] * 20)
    y = np.array([1] * 10 + [1.0] * 10 + [2] * 20 + [3] * 20, dtype=object)
    assert list(LDAReducer(2).fit(X, y).classes_) == ["1", "2", "3"]
    assert list(LDAReducer(2).fit(X, ["a"] * 20 + [None] * 20 + ["b"] * 20).classes_) == ["a", "b"]
