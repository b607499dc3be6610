"""Clusterers (K-Means selection, DBSCAN at the knee, HDBSCAN, GMM by BIC) and the cluster stage."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from morphospace.analysis.cluster import (
    DBSCANAuto,
    GMMSelect,
    HDBSCANClusterer,
    KMeansSelect,
    cluster_run,
    k_distances,
    knee_index,
    resolve_representations,
)
from morphospace.config import Config
from morphospace.errors import UserError
from morphospace.run import RunDir, write_npy, write_table


def blobs(k=4, n_per=60, d=2, spread=10.0, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, size=(k, d))
    # keep the blobs well apart so the true k is unambiguous
    while min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]) < 6 * scale:
        centres = rng.uniform(-spread, spread, size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(scale=scale, size=(k * n_per, d)), y


def test_kmeans_select_finds_the_true_k():
    X, y = blobs(k=5)
    km = KMeansSelect(k_range=range(3, 9), random_state=0).fit(X)
    assert km.best_k_ == 5
    assert list(km.scores_["k"]) == [3, 4, 5, 6, 7, 8]
    assert {"silhouette", "calinski_harabasz", "davies_bouldin", "inertia"} <= set(km.scores_.columns)
    assert km.scores_["inertia"].is_monotonic_decreasing
    assert adjusted_rand_score(y, km.labels_) == pytest.approx(1.0)
    assert set(km.labels_by_k_) == set(range(3, 9))
    assert np.array_equal(km.predict(X), km.labels_)


def test_kmeans_select_skips_impossible_k_and_rejects_k_below_2(caplog):
    X, _ = blobs(k=2, n_per=3)
    with caplog.at_level("WARNING", logger="morphospace"):
        km = KMeansSelect(k_range=[2, 3, 10]).fit(X)
    assert list(km.scores_["k"]) == [2, 3]
    assert "6 samples are too few for 10 clusters: skipped" in caplog.text  # said, not silent
    from morphospace.analysis.clusterers import _listed

    assert _listed(list(range(300, 400))) == "300-399"  # a range, not every k (KMeansSelect(range(3, 400)))
    assert _listed([6, 7, 9, 10, 11, 20]) == "6, 7, 9-11, 20"
    with pytest.raises(UserError, match=">= 2"):
        KMeansSelect(k_range=[1, 2]).fit(X)


def test_knee_of_a_flat_then_steep_curve():
    curve = np.concatenate([np.linspace(0.0, 1.0, 90), np.linspace(1.5, 20.0, 10)])
    assert knee_index(curve) == 89
    assert knee_index(np.full(10, 3.0)) == 5  # no knee: the middle


def test_k_distances_count_the_row_itself():
    X = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(k_distances(X, 2), [1.0, 1.0, 2.0])


def test_dbscan_knee_finds_blobs_and_marks_scattered_rows_as_noise():
    X, y = blobs(k=3, n_per=100, scale=0.6)
    rng = np.random.default_rng(5)
    noise = rng.uniform(X.min(0) - 4, X.max(0) + 4, size=(30, 2))
    db = DBSCANAuto().fit(np.vstack([X, noise]))
    assert db.min_samples_ == 4
    assert db.n_clusters_ == 3
    blob_labels, noise_labels = db.labels_[: len(X)], db.labels_[len(X):]
    assert np.mean(noise_labels == -1) > 0.7
    assert 0 < db.noise_fraction_ < 0.2
    kept = blob_labels >= 0
    assert kept.mean() > 0.9
    assert adjusted_rand_score(y[kept], blob_labels[kept]) == pytest.approx(1.0)
    assert db.eps_ == pytest.approx(db.k_distances_[db.knee_index_])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps,min_samples", [(0.3, 4), (0.5, 5), (0.8, 10)])
def test_chunked_dbscan_is_scikit_learns_exactly(seed, eps, min_samples):
    from sklearn.cluster import DBSCAN
    from sklearn.datasets import make_blobs

    from morphospace.analysis.density import dbscan

    X, _ = make_blobs(1500, n_features=3, centers=6, cluster_std=[0.3, 0.5, 1, 1.5, 0.2, 2.5], random_state=seed)
    X = np.vstack([X, np.random.default_rng(seed).uniform(-12, 12, (300, 3))])
    ref = DBSCAN(eps=eps, min_samples=min_samples).fit(X)
    # a budget of 2,000 neighbour pairs: many chunks, clusters joined across them
    labels, core = dbscan(X, eps, min_samples, edge_budget=2000)
    np.testing.assert_array_equal(core, ref.core_sample_indices_)
    np.testing.assert_array_equal(labels, ref.labels_)  # same numbering, same border rows
    assert len(set(labels.tolist()) - {-1}) > 1


def test_chunked_dbscan_without_core_rows_is_all_noise():
    from morphospace.analysis.density import dbscan

    labels, core = dbscan(np.arange(10.0)[:, None] * 10, eps=1.0, min_samples=3)
    assert core.size == 0 and (labels == -1).all()


def test_dbscan_warns_on_wide_input(caplog):
    X, _ = blobs(k=2, n_per=20, d=12)
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        DBSCANAuto(min_samples=5).fit(X)
    assert "12 dimensions" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        DBSCANAuto(min_samples=5).fit(X[:, :2])
    assert caplog.text == ""


def test_hdbscan_finds_blobs():
    X, y = blobs(k=3, n_per=80, scale=0.7)
    hd = HDBSCANClusterer().fit(X)
    assert hd.min_cluster_size_ == 5
    assert hd.n_clusters_ == 3
    kept = hd.labels_ >= 0
    assert adjusted_rand_score(y[kept], hd.labels_[kept]) == pytest.approx(1.0)
    assert np.all(hd.probabilities_[~kept] == 0)


def test_density_clusterings_do_not_depend_on_their_threads():
    """``n_jobs`` only spreads the exact neighbour searches over threads (the cluster stage passes
    ``cluster.n_jobs``): DBSCAN's and HDBSCAN's labels, and their extension to new rows, stay the same."""
    X, _ = blobs(k=4, n_per=400, scale=0.9, seed=3)
    new = X[::7] + 0.05
    db1, db2 = DBSCANAuto().fit(X), DBSCANAuto(n_jobs=2).fit(X)
    assert db1.eps_ == db2.eps_ and db1.n_clusters_ > 1
    np.testing.assert_array_equal(db1.labels_, db2.labels_)
    np.testing.assert_array_equal(db1.predict(new), db2.predict(new))
    hd1, hd2 = HDBSCANClusterer().fit(X), HDBSCANClusterer(n_jobs=2).fit(X)
    assert hd1.n_clusters_ > 1
    np.testing.assert_array_equal(hd1.labels_, hd2.labels_)
    np.testing.assert_array_equal(hd1.core_distances_, hd2.core_distances_)
    for a, b in zip(hd1.predict_membership(new), hd2.predict_membership(new)):
        np.testing.assert_array_equal(a, b)


def test_gmm_select_picks_k_by_bic_and_gives_probabilities():
    X, y = blobs(k=4, d=3)
    gm = GMMSelect(k_range=range(2, 8), random_state=0).fit(X)
    assert gm.best_k_ == 4
    assert gm.scores_.loc[gm.scores_["bic"].idxmin(), "k"] == 4
    P = gm.predict_proba(X)
    assert P.shape == (len(X), 4)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert adjusted_rand_score(y, gm.labels_) == pytest.approx(1.0)
    assert np.array_equal(gm.predict(X), gm.labels_)
    assert not gm.at_range_top_  # the data chose 4, inside 2..7
    assert GMMSelect(k_range=range(2, 4), random_state=0).fit(X).at_range_top_  # the BIC still falling at 3
    assert not GMMSelect(k_range=[3], random_state=0).fit(X).at_range_top_  # one k: nothing was chosen
    with pytest.raises(UserError, match="covariance"):
        GMMSelect(covariance_type="banana").fit(X)


def fake_run(tmp_path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    run = RunDir(tmp_path / "run", create=True)
    cube_index = rng.permutation(n)
    cat = pd.DataFrame({"id": [f"g{i:03d}" for i in range(n)], "source": "x",
                        "morphology": pd.Series(np.array(["a", "b", "c"])[np.arange(n) % 3], dtype="string"),
                        "cube_index": cube_index})
    write_table(run.catalogue, cat)
    X, _ = blobs(k=3, n_per=n // 3, d=2, seed=seed)
    write_npy(run.reduction_path("pca"), X.astype(np.float32))
    write_npy(run.reduction_path("tsne"), X[::-1].astype(np.float32))
    write_npy(run.embedding_path("features"), np.hstack([X, rng.normal(size=(n, 3))]).astype(np.float32))
    return run


def test_resolve_representations(tmp_path):
    run = fake_run(tmp_path)
    assert resolve_representations(run, ["all"]) == ["features", "pca", "tsne"]
    assert resolve_representations(run, ["embedding"]) == ["features"]
    assert resolve_representations(run, ["reductions", "pca"]) == ["pca", "tsne"]
    with pytest.raises(UserError, match="umap"):
        resolve_representations(run, ["umap"])


def test_cluster_run_writes_every_method(tmp_path):
    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.kmeans_k = [2, 3, 4]
    cfg.cluster.methods = ["kmeans", "dbscan", "hdbscan", "gmm"]
    names = cluster_run(run, cfg, representations=["pca", "features"])
    gmm = [n for n in names if n.startswith("gmm") and n.endswith("_pca")]
    assert gmm == ["gmm3_pca"]  # BIC picks the three blobs
    assert set(names) == {"kmeans2_pca", "kmeans3_pca", "kmeans4_pca", "dbscan_pca", "hdbscan_pca", "gmm3_pca",
                          "kmeans2_features", "kmeans3_features", "kmeans4_features", "dbscan_features",
                          "hdbscan_features"} | {n for n in names if n.startswith("gmm") and n.endswith("_features")}
    ids = run.cube_ids()
    for name in names:
        t = run.read_clustering(name)
        assert list(t["id"]) == list(ids)
    assert [c for c in run.read_clustering("gmm3_pca").columns if c.startswith("prob_")] == ["prob_0", "prob_1", "prob_2"]
    assert "membership" in run.read_clustering("hdbscan_pca").columns
    meta = json.loads(run.clustering_path("dbscan_pca").with_suffix(".json").read_text())
    assert meta["method"] == "dbscan" and meta["eps"] > 0 and meta["representation"] == "pca"
    sel = pd.read_csv(run.path / "comparisons" / "k_selection_pca.csv")
    assert set(sel["method"]) == {"kmeans", "dbscan", "hdbscan", "gmm"}
    assert sel.loc[sel["method"] == "kmeans", "k"].tolist() == [2, 3, 4]
    assert sel.loc[(sel["method"] == "kmeans") & sel["selected"], "k"].tolist() == [3]
    assert json.loads(run.clustering_path("gmm3_pca").with_suffix(".json").read_text())["bic_at_range_top"] is False
    # a second run with fewer k removes the clusterings it no longer makes
    cfg.cluster.kmeans_k = [3]
    cfg.cluster.methods = ["kmeans"]
    assert cluster_run(run, cfg, representations=["pca"]) == ["kmeans3_pca"]
    assert "kmeans2_pca" not in run.clusterings() and "kmeans2_features" in run.clusterings()
    # and those of the methods taken out of cluster.methods, of the representations it clustered only
    assert not {"dbscan_pca", "hdbscan_pca", "gmm3_pca"} & set(run.clusterings())
    assert not run.clustering_path("dbscan_pca").with_suffix(".json").exists()
    assert {"dbscan_features", "hdbscan_features"} <= set(run.clusterings())


def test_an_explicit_method_list_keeps_the_other_methods_clusterings(tmp_path, caplog):
    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.kmeans_k = [3]
    cfg.cluster.methods = ["kmeans", "dbscan"]
    assert cluster_run(run, cfg, representations=["pca"]) == ["kmeans3_pca", "dbscan_pca"]
    assert cluster_run(run, cfg, representations=["pca"], methods=["kmeans"]) == ["kmeans3_pca"]
    assert "dbscan_pca" in run.clusterings()  # asked for K-Means alone: the rest is not this call's
    cfg.cluster.density_max_dims = 1  # DBSCAN now skips the 2-D pca: its earlier clustering goes
    with caplog.at_level(logging.INFO, logger="morphospace"):
        assert cluster_run(run, cfg, representations=["pca"]) == ["kmeans3_pca"]
    assert "dbscan_pca" not in run.clusterings()
    assert "removed clustering dbscan_pca" in caplog.text


def test_cluster_run_rejects_bad_input(tmp_path):
    run = fake_run(tmp_path)
    cfg = Config()
    with pytest.raises(UserError, match="unknown clustering method"):
        cluster_run(run, cfg, methods=["spectral"])
    with pytest.raises(UserError, match="no clustering method asked for"):
        cluster_run(run, cfg, methods=[])
    with pytest.raises(UserError, match="no representation asked for"):  # not "run embed first": it has some
        cluster_run(run, cfg, representations=[])
    write_npy(run.reduction_path("umap"), np.zeros((7, 2), dtype=np.float32))
    with pytest.raises(UserError, match="7 rows"):
        cluster_run(run, cfg, representations=["umap"])


def test_density_methods_skip_wide_representations(tmp_path):
    run = fake_run(tmp_path)
    write_npy(run.embedding_path("wide"), np.random.default_rng(0).normal(size=(60, 12)).astype(np.float32))
    cfg = Config()
    cfg.cluster.kmeans_k = [3]
    names = cluster_run(run, cfg, representations=["wide", "pca"], methods=["dbscan", "hdbscan"])
    assert names == ["dbscan_pca", "hdbscan_pca"]
    cfg.cluster.density_max_dims = 0
    names = cluster_run(run, cfg, representations=["wide"], methods=["dbscan"])
    assert names == ["dbscan_wide"]


# --- fitted on a sample, extended to every row ---------------------------------------------------

def test_dbscan_predict_joins_the_nearest_core_cluster_within_eps():
    X, y = blobs(k=3, n_per=80, seed=1)
    db = DBSCANAuto().fit(X)
    core = db.core_sample_indices_
    assert np.array_equal(db.predict(X[core]), db.labels_[core])  # a core row is its own nearest core
    centre = X[y == 0].mean(axis=0)
    far = X.max(axis=0) + 50.0
    new = db.predict(np.vstack([centre, far]))
    assert new[0] == np.bincount(db.labels_[y == 0][db.labels_[y == 0] >= 0]).argmax()
    assert new[1] == -1


def test_hdbscan_predict_keeps_clustered_rows_and_rejects_far_ones():
    X, y = blobs(k=3, n_per=80, seed=2)
    hd = HDBSCANClusterer().fit(X)
    clustered = hd.labels_ >= 0
    assert np.array_equal(hd.predict(X[clustered]), hd.labels_[clustered])
    centres = np.array([X[y == c].mean(axis=0) for c in range(3)])
    labels, member = hd.predict_membership(np.vstack([centres, X.max(axis=0) + 50.0]))
    assert sorted(labels[:3]) == sorted(set(hd.labels_[clustered]))  # each centre to its own blob
    assert labels[3] == -1 and member[3] == 0
    assert np.all((member[:3] > 0) & (member[:3] <= 1))


def test_dbscan_predict_counts_a_new_row_as_one_more_fitted_row():
    """A new row was noise unless a core row lay within eps; a fitted row in its place counts towards
    its neighbours' density, and is core itself with min_samples - 1 others. Rows outside a fitting
    sample came out noise more often than rows in it (0.073 against 0.058 on two blobs)."""
    X = np.array([[0.0], [0.1], [0.2], [0.3], [0.75], [5.0], [5.4]])
    db = DBSCANAuto(min_samples=3, eps=0.5).fit(X)
    assert db.labels_.tolist() == [0, 0, 0, 0, 0, -1, -1]  # 0.75: a border row, 0.3 its only core
    # 1.2 reaches only the border row 0.75, which it makes a core row: so it joins; 5.2 reaches two
    # noise rows and would make a group of three of its own, which a prediction cannot: noise; 9: far
    assert db.predict(np.array([[1.2], [5.2], [9.0]])).tolist() == [0, -1, -1]
    Y = np.array([[0.0], [0.1], [0.2], [0.3], [0.75], [1.1]])  # 1.1: within eps of 0.75 and not of a core
    db = DBSCANAuto(min_samples=4, eps=0.5).fit(Y)
    assert db.labels_.tolist() == [0, 0, 0, 0, 0, -1]
    assert db.predict(np.array([[0.95]])).tolist() == [0]  # 0.75 and 1.1 within eps: core were it fitted

    # two blobs, fitted on half: each new row is noise where DBSCAN run with it among the fitted rows
    # calls it noise, give or take a few (before: 10 of 400 called noise that would not be)
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(0)
    Z = np.vstack([rng.normal(0, 1, (1000, 2)), rng.normal(6, 1.5, (1000, 2))])
    a, b = np.split(rng.permutation(len(Z)), 2)
    fit = DBSCANAuto().fit(Z[a])
    b = b[:400]
    inserted = np.array([DBSCAN(eps=fit.eps_, min_samples=fit.min_samples_).fit(np.vstack([Z[a], Z[j]])).labels_[-1]
                         for j in b])
    assert ((fit.predict(Z[b]) < 0) != (inserted < 0)).sum() <= 4


def test_hdbscan_counts_a_new_row_s_core_distance_as_a_fitted_row_s():
    """A fitted row's core distance counts the row itself (its min_samples-th neighbour is its
    (min_samples - 1)th other row); a new row's was its min_samples-th fitted row, one further, so
    new rows read sparser than fitted ones in the same place, and were noise more often."""
    X, _ = blobs(k=2, n_per=60, seed=3)
    hd = HDBSCANClusterer(min_samples=5).fit(X)
    new = X[:10] + 0.01
    for i, p in enumerate(new):  # the core distance it gets inserted among the fitted rows
        with_it = np.vstack([X, p])
        d = np.sort(np.linalg.norm(with_it - p, axis=1))[hd.min_samples_ - 1]
        dist = np.sort(np.linalg.norm(X - p, axis=1))[None, :hd.min_samples_]
        assert hd._new_core_distances(dist)[0] == pytest.approx(d)


def test_cluster_run_fits_on_a_reproducible_sample_above_fit_sample(tmp_path, caplog):
    run = fake_run(tmp_path, n=300)
    cfg = Config()
    cfg.cluster.kmeans_k = [3]
    cfg.cluster.gmm_k = [3]
    cfg.cluster.fit_sample = 120
    with caplog.at_level(logging.INFO, logger="morphospace"):
        names = cluster_run(run, cfg, representations=["pca"])
    assert "fitted on a sample of 120 of 300 rows" in caplog.text
    assert "K-Means k=[3] on pca (MiniBatch K-Means: 300 rows > cluster.fit_sample)" in caplog.text
    full = RunDir(tmp_path / "full", create=True)
    write_table(full.catalogue, run.read_catalogue())
    write_npy(full.reduction_path("pca"), run.read_reduction("pca"))
    cfg_all = cfg.model_copy(deep=True)
    cfg_all.cluster.fit_sample = 0
    cluster_run(full, cfg_all, representations=["pca"])
    for name in names:
        sampled, whole = run.read_clustering(name), full.read_clustering(name)
        assert len(sampled) == 300 and sampled["label"].notna().all()
        meta = json.loads(run.clustering_path(name).with_suffix(".json").read_text())
        assert meta["fit_sample"] == (None if name.startswith("kmeans") else 120)
        # three well-separated blobs: the sample finds the same partition as the whole
        keep = (sampled["label"] >= 0) & (whole["label"] >= 0)
        assert adjusted_rand_score(sampled["label"][keep], whole["label"][keep]) > 0.95, name
    assert json.loads(run.clustering_path("kmeans3_pca").with_suffix(".json").read_text())["minibatch"]
    again = RunDir(tmp_path / "again", create=True)
    write_table(again.catalogue, run.read_catalogue())
    write_npy(again.reduction_path("pca"), run.read_reduction("pca"))
    cluster_run(again, cfg, representations=["pca"])
    for name in names:  # the same seed draws the same sample: the same labels
        assert run.read_clustering(name).equals(again.read_clustering(name)), name


def test_the_fit_sample_is_not_nested_in_the_map_sample(tmp_path, monkeypatch):
    """The reduce stage draws a t-SNE/UMAP map's rows and the cluster stage its fit sample from the
    same cluster.seed; a smaller draw of the same seed lies inside a larger one, so every sampled
    clustering of a map took only rows the map optimised (denser placed rows then read as noise
    only outside the sample). The fit sample has its own stream: it overlaps the map's as chance has it."""
    import morphospace.analysis.cluster as cluster_module
    from morphospace.analysis.cluster import fit_sample_seed
    from morphospace.data.sample import sample_rows

    drawn = []

    def spy(n, size, seed):
        drawn.append(seed)
        return sample_rows(n, size, seed)

    monkeypatch.setattr(cluster_module, "sample_rows", spy)
    run = fake_run(tmp_path, n=300)
    cfg = Config()
    cfg.cluster.kmeans_k, cfg.cluster.gmm_k, cfg.cluster.fit_sample, cfg.cluster.seed = [3], [3], 120, 7
    cluster_run(run, cfg, representations=["pca"])
    assert drawn and set(drawn) == {fit_sample_seed(7)} and fit_sample_seed(7) != 7  # the stage draws from its own stream

    n, seed = 200_000, 0
    mapped = sample_rows(n, 100_000, seed)
    fitted = sample_rows(n, 50_000, fit_sample_seed(seed))
    share = np.isin(fitted, mapped).mean()
    assert 0.45 < share < 0.55  # independent: about the map's half of the rows, not all of them
    assert np.isin(sample_rows(n, 50_000, seed), mapped).all()  # what the same seed did
    assert fit_sample_seed(seed) == fit_sample_seed(seed) != fit_sample_seed(1)


def test_hdbscan_default_min_samples_follows_the_cluster_size_up_to_a_cap():
    from morphospace.analysis.density import MAX_DEFAULT_MIN_SAMPLES, HDBSCANClusterer

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (3000, 2)), rng.normal(8, 1, (3000, 2))]
    small = HDBSCANClusterer().fit(X[::3])  # 2,000 rows: 1% is 20, under the cap
    assert small.min_cluster_size_ == 20 and small.min_samples_ == 20
    big = HDBSCANClusterer().fit(X)  # 6,000 rows: 1% is 60, over the cap
    assert big.min_cluster_size_ == 60 and big.min_samples_ == MAX_DEFAULT_MIN_SAMPLES < 60
    assert big.n_clusters_ == 2 and (big.predict(X[:10]) == big.labels_[:10]).mean() >= 0.9
    assert HDBSCANClusterer(min_samples=80).fit(X).min_samples_ == 80


def test_internal_scores_survive_a_silhouette_sample_with_one_cluster():
    """A 3-row cluster beside 20,000 others is usually missing from a 50-row silhouette sample."""
    from morphospace.analysis.clusterers import internal_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20003, 2))
    labels = np.zeros(20003, dtype=int)
    labels[:3] = 1
    out = internal_scores(X, labels, sample_size=50, random_state=0)
    assert np.isnan(out["silhouette"]) and np.isfinite(out["calinski_harabasz"])
    labels[: 10000] = 1
    assert np.isfinite(internal_scores(X, labels, sample_size=50, random_state=0)["silhouette"])


@pytest.mark.parametrize("n", [3, 6])
def test_a_run_with_fewer_galaxies_than_clusters_still_clusters(tmp_path, caplog, n):
    """3 galaxies: K-Means and the GMM (k = 3..8) have nothing to fit, DBSCAN and HDBSCAN still run
    (the stage stopped on "3 samples are too few for 3 clusters"); 6: the k that fit run, and what
    is left out is said once a method for the stage, naming it (it was said once per fit, 12
    times, naming neither)."""
    run = fake_run(tmp_path, n=n)
    with caplog.at_level("WARNING", logger="morphospace"):
        names = cluster_run(run, Config(), methods=["kmeans", "gmm", "dbscan", "hdbscan"])
    said = [r.getMessage() for r in caplog.records if "too few" in r.getMessage()]
    ks = ", ".join(str(k) for k in range(n, 9))
    assert said == [f"{n} galaxies are too few for {ks} clusters: {what} leaves them out, on every representation"
                    for what in ("K-Means", "the GMM")]
    kmeans = sorted(x for x in names if x.startswith("kmeans"))
    assert kmeans == sorted(f"kmeans{k}_{rep}" for k in range(3, n) for rep in ("features", "pca", "tsne"))
    assert any(x.startswith(("dbscan", "hdbscan")) for x in names)


def test_a_k_no_method_can_fit_is_refused_before_the_clusterings_change(tmp_path):
    """K-Means alone at K = 100 on 40 galaxies: the stage removed every earlier clustering as "no
    longer made", wrote none and exited 0; the next compare found nothing to compare."""
    from morphospace.config import apply_overrides

    run = fake_run(tmp_path, n=12)
    before = cluster_run(run, Config(), methods=["kmeans"])
    cfg = apply_overrides(Config(), ["cluster.kmeans_k=[100]", "cluster.methods=['kmeans']"])
    with pytest.raises(UserError, match=r"12 galaxies are too few for every K asked \(cluster.kmeans_k \[100\]\)"):
        cluster_run(run, cfg)
    assert sorted(run.clusterings()) == sorted(before)  # left as they were
    assert cluster_run(run, apply_overrides(cfg, ["cluster.methods=['kmeans', 'dbscan']"]))  # DBSCAN still can


def test_identical_galaxies_are_said_to_be_so(tmp_path, caplog):
    """Ten copies of one image embed to rows 1e-8 apart: K-Means splits them with a 'perfect'
    silhouette; the stage says that the split is of rounding noise."""
    run = fake_run(tmp_path, n=12)
    X = np.ones((12, 4), np.float32) + np.random.default_rng(0).normal(0, 1e-8, (12, 4)).astype(np.float32)
    write_npy(run.embedding_path("features"), X)
    with caplog.at_level("WARNING", logger="morphospace"):
        cluster_run(run, Config(), representations=["features", "pca"], methods=["kmeans"])
    said = [r.getMessage() for r in caplog.records if "identical" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("the galaxies are identical in features")
    # a collapsed VaDE: every galaxy within 6e-4 of one point (the astrovader preset on 150 galaxies)
    caplog.clear()
    rng = np.random.default_rng(1)
    write_npy(run.embedding_path("features"), (rng.normal(0, 1, (1, 4)) + rng.normal(0, 2e-4, (12, 4))).astype(np.float32))
    with caplog.at_level("WARNING", logger="morphospace"):
        cluster_run(run, Config(), representations=["features"], methods=["kmeans"])
    said = [r.getMessage() for r in caplog.records if "barely differ" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("the galaxies barely differ in features")
    caplog.clear()
    write_npy(run.embedding_path("features"), rng.normal(0, 1e-5, (12, 4)).astype(np.float32))  # small units, not collapsed
    with caplog.at_level("WARNING", logger="morphospace"):
        cluster_run(run, Config(), representations=["features"], methods=["kmeans"])
    assert not [r for r in caplog.records if "differ" in r.getMessage() or "identical" in r.getMessage()]


def test_a_cluster_stage_that_did_not_finish_is_said_until_one_does(tmp_path, monkeypatch):
    """Killed (or stopped) on the way, the stage left some clusterings new and the rest the earlier
    run's, which compare and the report showed as one set without a word."""
    from morphospace.analysis import cluster as cluster_module
    from morphospace.analysis.cluster import clustering_interrupted
    from morphospace.config import apply_overrides
    from morphospace.report import build_report

    run = fake_run(tmp_path)
    cfg = apply_overrides(Config(), ["cluster.kmeans_k=[3]", "cluster.methods=['kmeans']"])
    cluster_run(run, cfg, representations=["pca", "tsne"])
    assert not clustering_interrupted(run)
    fit = cluster_module.KMeansSelect.fit
    calls = []

    def dies_on_the_second(self, X, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill would leave it
        return fit(self, X, *args, **kwargs)

    monkeypatch.setattr(cluster_module.KMeansSelect, "fit", dies_on_the_second)
    calls.append(1)  # dies on its first fit, before it changed anything: the clusterings are all one stage's
    with pytest.raises(KeyboardInterrupt):
        cluster_run(run, apply_overrides(cfg, ["cluster.seed=5"]), representations=["pca", "tsne"])
    assert not clustering_interrupted(run)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        cluster_run(run, apply_overrides(cfg, ["cluster.seed=5"]), representations=["pca", "tsne"])
    assert clustering_interrupted(run)
    monkeypatch.setattr(cluster_module.KMeansSelect, "fit", fit)
    cluster_run(run, cfg, representations=["pca", "tsne"])
    assert not clustering_interrupted(run)
    # the report of such a run says so at its top
    from report_fakerun import make_fake_run

    shown = make_fake_run(tmp_path / "shown", n=30, size=16, everything=False)
    shown.sub("clusterings")  # made where missing
    (shown.path / "clusterings" / cluster_module.UNDERWAY).write_text("{}")
    html = build_report(shown, cfg).read_text()
    assert "The last `morphospace cluster` did not finish" in html
    assert "clustering file is missing" not in html and shown.missing_clusterings() == []  # the mark is no clustering
    (shown.path / "clusterings" / cluster_module.UNDERWAY).unlink()
    assert "did not finish" not in build_report(shown, cfg).read_text()


def test_a_bic_falling_to_the_last_k_is_said_once(tmp_path, caplog):
    """Six blobs searched with k of 2-3: the BIC falls to 3 on both representations. The range chose k,
    not the data: one warning names both, and each clustering's record says so."""
    run = fake_run(tmp_path)
    X, _ = blobs(k=6, n_per=10, d=2, seed=1)
    write_npy(run.reduction_path("pca"), X.astype(np.float32))
    write_npy(run.reduction_path("tsne"), (X * 2).astype(np.float32))
    cfg = Config()
    cfg.cluster.methods = ["gmm"]
    cfg.cluster.gmm_k = [2, 3]
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        assert cluster_run(run, cfg, representations=["pca", "tsne"]) == ["gmm3_pca", "gmm3_tsne"]
    said = [r.getMessage() for r in caplog.records if "BIC" in r.getMessage()]
    assert said == ["GMM: the BIC chose the largest k tried (3) on pca, tsne: the range chose k there, not the data; "
                    "widen cluster.gmm_k to search further"]
    for name in ("gmm3_pca", "gmm3_tsne"):
        assert json.loads(run.clustering_path(name).with_suffix(".json").read_text())["bic_at_range_top"] is True


def test_dbscan_is_skipped_where_its_min_samples_exceed_the_rows(tmp_path, caplog):
    """cluster.dbscan_min_samples above the galaxies made every row a core row: one cluster of all."""
    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.methods = ["kmeans", "dbscan"]
    cfg.cluster.kmeans_k = [3]
    cfg.cluster.dbscan_min_samples = 500
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        assert cluster_run(run, cfg, representations=["pca"]) == ["kmeans3_pca"]
    assert "DBSCAN on pca skipped: cluster.dbscan_min_samples (500) exceeds its 60 rows" in caplog.text


def test_maps_and_clusterings_of_an_earlier_embedding_are_left_out(tmp_path, caplog):
    """`train` + `embed` rewrote the embedding (or `reduce` remade a map), and the clusterings and maps
    made from the earlier one were compared and reported beside the new ones, without a word. Each
    now records what it was made from; compare and the report leave out what the run no longer holds."""
    from morphospace.analysis.compare import compare_run
    from morphospace.analysis.reduce import reduce_run
    from morphospace.report import build_report
    from morphospace.run.provenance import stale_results

    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.methods = ["kmeans"]
    cfg.cluster.kmeans_k = [3]
    reduce_run(run, cfg, embedding="features", reductions=["pca"])
    cluster_run(run, cfg, representations=["features", "pca", "tsne"])  # the features' PCA is named "pca"
    assert stale_results(run) == {}
    features = run.read_embedding("features")
    write_npy(run.embedding_path("features"), (features[::-1] * 2).astype(np.float32))  # embedded again
    assert stale_results(run) == {
        "reductions/pca": "made from an earlier features embedding",
        "clusterings/kmeans3_features": "made from an earlier features",
        "clusterings/kmeans3_pca": "made from the map pca of an earlier features embedding"}
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        compare_run(run, cfg)
    assert "clustering kmeans3_features left out of the comparisons: made from an earlier features" in caplog.text
    assert pd.read_csv(run.path / "comparisons" / "ami.csv", index_col=0).index.tolist() == ["kmeans3_tsne", "morphology"]
    write_npy(run.cube, np.random.default_rng(0).random((60, 3, 8, 8)).astype(np.float32))  # for the report
    html = build_report(run, cfg).read_text()
    assert "Made from an earlier embedding or map, and so left out of this page (3)" in html
    assert payload_maps(html) == ["tsne"]  # the features' PCA map of the earlier embedding is not offered
    # and the exported catalogue, which carried them beside the current ones without a word
    from morphospace.export import results_table

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        columns = set(results_table(run).columns)
    assert "cluster_kmeans3_tsne" in columns and not {"cluster_kmeans3_features", "cluster_kmeans3_pca"} & columns
    assert "export: 2 clustering(s) left out, made from an earlier embedding or map" in caplog.text
    # made again: current, and back
    reduce_run(run, cfg, embedding="features", reductions=["pca"])
    cluster_run(run, cfg, representations=["features", "pca"])
    assert stale_results(run) == {}


def payload_maps(html: str) -> list[str]:
    """The names of the maps the report's explorer offers."""
    import json
    import re

    data = json.loads(re.search(r'<script type="application/json" id="morphospace-data">(.*?)</script>', html, re.S).group(1))
    return [m["name"] for m in data["explorer"]["maps"]]


def test_the_maps_of_an_embedding_other_than_the_primary_are_said_to_need_their_own_reduce(tmp_path, caplog):
    """`morphospace reduce RUN` maps the run's primary embedding alone: the advice it gave for the stale
    maps of another one (vade_pca after the model changed) made nothing again, call after call."""
    from morphospace.analysis.reduce import reduce_run

    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.methods = ["kmeans"]
    cfg.cluster.kmeans_k = [3]
    write_npy(run.embedding_path("vade"), np.random.default_rng(2).normal(size=(60, 4)).astype(np.float32))
    reduce_run(run, cfg, embedding="vade", reductions=["pca"])
    write_npy(run.embedding_path("vade"), np.random.default_rng(3).normal(size=(60, 4)).astype(np.float32))
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        cluster_run(run, cfg)
    assert "not clustered: vade_pca (" in caplog.text
    assert "`morphospace reduce RUN --embedding vade` makes them again" in caplog.text


def test_what_was_made_from_an_embedding_the_run_no_longer_holds_is_left_out_and_not_clustered(tmp_path, caplog):
    """A form run made a pixel-VaDE run: embed removed the form embedding, but its maps stayed, were
    clustered again, compared, reported and exported as the run's (a missing source read as current)."""
    from morphospace.analysis.reduce import reduce_run
    from morphospace.run.provenance import made_from, stale_results

    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.methods = ["kmeans"]
    cfg.cluster.kmeans_k = [3]
    reduce_run(run, cfg, embedding="features", reductions=["pca"])
    cluster_run(run, cfg, representations=["features", "pca"])
    made = sorted(str(p.relative_to(run.path)) for p in made_from(run, ["features"]))
    assert made == ["clusterings/kmeans3_features.json", "clusterings/kmeans3_features.parquet",
                    "clusterings/kmeans3_pca.json", "clusterings/kmeans3_pca.parquet",
                    "comparisons/k_selection_features.csv", "comparisons/k_selection_pca.csv",
                    "reductions/pca.json", "reductions/pca.npy"]
    for suffix in (".npy", ".json"):
        run.embedding_path("features").with_suffix(suffix).unlink(missing_ok=True)
    assert stale_results(run)["reductions/pca"] == "made from the features embedding, which the run no longer holds"
    assert stale_results(run)["clusterings/kmeans3_pca"] == "made from the map pca of an earlier features embedding"
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        written = cluster_run(run, cfg)
    assert not any("_pca" in name for name in written)
    assert "not clustered: pca (made from the features embedding, which the run no longer holds); `morphospace reduce RUN`" in caplog.text
    # the next reduce (of any embedding) sets them aside (no reduce would make them again), not deletes them:
    # an embedding deleted by mistake took its results with it
    write_npy(run.embedding_path("other"), np.random.default_rng(1).normal(size=(60, 4)).astype(np.float32))
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        reduce_run(run, cfg, embedding="other", reductions=["pca"])
    assert "pca" not in run.reductions() and "kmeans3_pca" not in run.clusterings() and "other_pca" in run.reductions()
    assert not (run.path / "comparisons" / "k_selection_pca.csv").exists()
    aside = list((run.path / "superseded").glob("*/clusterings/kmeans3_pca.parquet"))
    assert len(aside) == 1 and (aside[0].parents[1] / "reductions" / "pca.npy").is_file()
    assert "what was made from the embeddings the run no longer holds (features) moved to superseded/" in caplog.text


def test_hdbscan_is_skipped_where_its_cluster_size_exceeds_the_rows(tmp_path, caplog):
    """Clipped to the rows, a minimum cluster size above them made every galaxy noise, unsaid."""
    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.methods = ["kmeans", "hdbscan"]
    cfg.cluster.kmeans_k = [3]
    cfg.cluster.hdbscan_min_cluster_size = 500
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        assert cluster_run(run, cfg, representations=["pca"]) == ["kmeans3_pca"]
    assert "HDBSCAN on pca skipped: cluster.hdbscan_min_cluster_size (500) exceeds its 60 rows" in caplog.text


@pytest.mark.parametrize("setting", ["min_cluster_size", "min_samples"])
def test_hdbscan_refuses_a_size_above_its_rows(setting):
    X, _ = blobs(k=2, n_per=30)
    with pytest.raises(ValueError, match=f"{setting} \\(1000\\) exceeds the 60 rows"):
        HDBSCANClusterer(**{setting: 1000}).fit(X)
    assert HDBSCANClusterer(**{setting: 60}).fit(X).labels_.shape == (60,)


@pytest.mark.parametrize("estimator", [DBSCANAuto, HDBSCANClusterer])
def test_density_clusterers_refuse_zero_threads_in_one_line(estimator):
    """n_jobs = 0 failed inside joblib ("n_jobs == 0 in Parallel has no meaning")."""
    with pytest.raises(ValueError, match="n_jobs must be a whole number other than 0"):
        estimator(n_jobs=0).fit(blobs(k=2, n_per=30)[0])


@pytest.mark.parametrize("estimator,setting,value", [
    (KMeansSelect, "n_init", 0), (KMeansSelect, "minibatch_above", "x"), (GMMSelect, "n_init", 0),
    (GMMSelect, "max_iter", 0), (GMMSelect, "reg_covar", -1.0), (GMMSelect, "reg_covar", float("nan"))])
def test_the_selecting_clusterers_name_their_own_bad_settings(estimator, setting, value):
    """scikit-learn's refusal named KMeans or GaussianMixture, text failed comparing (a TypeError),
    and max_iter = 0 gave a mixture that never ran an EM step, unsaid."""
    with pytest.raises(ValueError, match=f"^{setting} must be"):
        estimator(k_range=[2, 3], **{setting: value}).fit(blobs(k=2, n_per=30)[0])


def test_the_cluster_stage_says_when_the_model_s_embeddings_are_an_earlier_model_s(tmp_path, caplog):
    """Trained again and not embedded: the earlier model's vade embedding was clustered (and compared)
    as the run's without a word, where export and the report said it was out of date."""
    import json

    from morphospace.pipeline.stages import stage_cluster

    run = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.methods = ["kmeans"]
    cfg.cluster.kmeans_k = [3]
    cfg.cluster.representations = ["vade"]
    write_npy(run.embedding_path("vade"), np.random.default_rng(2).normal(size=(60, 4)).astype(np.float32))
    run.embedding_path("vade").with_suffix(".json").write_text(json.dumps({"model_fingerprint": "an earlier model"}))
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        stage_cluster(run, cfg)
    assert "the model's embeddings clustered here (vade, form, and their maps) are not those of the run's model: " \
           "the model they came from is no longer in the run" in caplog.text
