"""Agreement scores, label-column discovery and the compare stage."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.image import imread
from sklearn import metrics as skm

from morphospace.analysis.compare import (
    METRICS,
    compare_run,
    contingency_table,
    draw_heatmap,
    hungarian_accuracy,
    plot_heatmap,
    score_pair,
)
from morphospace.analysis.labels import label_columns, truth_column
from morphospace.config import Config, apply_overrides
from morphospace.errors import UserError
from morphospace.run import RunDir, write_npy, write_table

viridis = colormaps["viridis"]


def test_a_permuted_labelling_agrees_perfectly():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 200)
    perm = np.array([3, 0, 4, 1, 2])
    s = score_pair(a, perm[a])
    for m in METRICS:
        assert s[m] == pytest.approx(1.0), m
    assert s["n"] == 200


def test_hand_computed_two_by_two_case():
    a = [0, 0, 0, 1, 1, 1]
    b = ["x", "x", "y", "y", "y", "y"]
    s = score_pair(a, b)
    # contingency [[2, 1], [0, 3]]: pairs together in both 1 + 3 = 4, rows 3 + 3 = 6, columns 1 + 6 = 7
    expected = 6 * 7 / 15
    assert s["ari"] == pytest.approx((4 - expected) / ((6 + 7) / 2 - expected))
    assert s["purity"] == pytest.approx(5 / 6)
    assert s["inverse_purity"] == pytest.approx(5 / 6)
    assert s["hungarian_accuracy"] == pytest.approx(5 / 6)


def test_rectangular_tables():
    a = [0, 0, 1, 1, 2, 2]
    b = [0, 0, 1, 1, 1, 1]
    s = score_pair(a, b)
    assert s["purity"] == pytest.approx(1.0)  # every cluster is pure
    assert s["inverse_purity"] == pytest.approx(4 / 6)
    assert s["hungarian_accuracy"] == pytest.approx(4 / 6)  # one cluster matches nothing
    assert hungarian_accuracy(np.array([[5, 0, 1], [0, 4, 0]])) == pytest.approx(9 / 10)


def _cases():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, 500)
    b = np.where(rng.random(500) < 0.6, a, rng.integers(0, 4, 500))
    yield a, b
    yield rng.integers(-1, 30, 400), rng.integers(0, 3, 400)  # many small clusters and noise
    yield np.zeros(50, dtype=int), np.zeros(50, dtype=int)  # nothing split on either side
    yield np.zeros(50, dtype=int), np.arange(50) % 5  # one side unsplit
    yield np.arange(40), np.arange(40) % 4  # every row its own cluster


@pytest.mark.parametrize("case", range(5))
def test_matches_scikit_learn(case):
    """The scores are scikit-learn's, to the last bit (b taken as the classes)."""
    a, b = list(_cases())[case]
    names = np.array([f"class_{v}" for v in b])
    s = score_pair(a, names)
    assert s["ari"] == skm.adjusted_rand_score(a, b)
    assert s["ami"] == skm.adjusted_mutual_info_score(a, b)
    assert s["nmi"] == skm.normalized_mutual_info_score(a, b)
    assert s["v_measure"] == skm.v_measure_score(b, a)
    assert s["fowlkes_mallows"] == skm.fowlkes_mallows_score(a, b)
    table = contingency_table(a, names)
    assert table.to_numpy().tolist() == skm.cluster.contingency_matrix(a, b).tolist()
    assert list(table.index) == [str(v) for v in np.unique(a)]


def test_matches_the_hand_written_scores_it_replaced():
    """The closed forms the module used before scikit-learn: the same numbers (to rounding)."""
    a = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1, -1])
    b = np.array(["x", "x", "y", "y", "y", "y", "z", "z", "z", "x"])
    t = np.array([[1.0, 0, 1], [2, 1, 0], [0, 3, 0], [0, 0, 2]])  # rows -1, 0, 1, 2; columns x, y, z
    n, ra, cb = t.sum(), t.sum(1), t.sum(0)
    comb = lambda x: x * (x - 1) / 2  # noqa: E731
    expected = comb(ra).sum() * comb(cb).sum() / comb(n)
    ari = (comb(t).sum() - expected) / ((comb(ra).sum() + comb(cb).sum()) / 2 - expected)
    nz = t > 0
    mi = (t[nz] / n * np.log(n * t[nz] / np.outer(ra, cb)[nz])).sum()
    h = lambda c: -(c / n * np.log(c / n)).sum()  # noqa: E731
    tk = (t ** 2).sum() - n
    fm = np.sqrt(tk / ((ra ** 2).sum() - n)) * np.sqrt(tk / ((cb ** 2).sum() - n))
    s = score_pair(a, b)
    assert contingency_table(a, b).to_numpy().tolist() == t.astype(int).tolist()
    assert s["ari"] == pytest.approx(ari, abs=1e-14)
    assert s["nmi"] == pytest.approx(mi / ((h(ra) + h(cb)) / 2), abs=1e-14)
    hom, com = mi / h(cb), mi / h(ra)
    assert s["v_measure"] == pytest.approx(2 * hom * com / (hom + com), abs=1e-14)
    assert s["fowlkes_mallows"] == pytest.approx(fm, abs=1e-14)
    assert s["purity"] == pytest.approx(8 / 10) and s["inverse_purity"] == pytest.approx(7 / 10)


def test_noise_modes_differ_as_expected():
    a = [0, 0, -1, 1, 1, -1]
    b = [0, 0, 1, 1, 1, 0]
    own = score_pair(a, b, noise="own")
    excl = score_pair(a, b, noise="exclude")
    assert excl["n"] == 4 and own["n"] == 6
    assert excl["ari"] == pytest.approx(1.0)
    assert own["ari"] < 0.5
    # noise as its own cluster: -1 is one more row of the contingency table
    t = contingency_table(a, b, noise="own")
    assert list(t.index) == ["-1", "0", "1"]
    with pytest.raises(UserError, match="noise"):
        score_pair(a, b, noise="ignore")


def test_missing_labels_are_dropped():
    a = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    b = np.array(["e", "e", "s", "s", None, np.nan, "", "s"], dtype=object)
    s = score_pair(a, b)
    assert s["n"] == 5
    ref = score_pair(a[[0, 1, 2, 3, 7]], b[[0, 1, 2, 3, 7]])
    assert s == ref
    assert score_pair(a, b)["ari"] == pytest.approx(1.0)
    empty = score_pair([0, 1], [None, None])
    assert empty["n"] == 0 and np.isnan(empty["ari"])
    with pytest.raises(UserError, match="length"):
        score_pair([0, 1, 2], [0, 1])


def test_contingency_orders_clusters_numerically():
    a = list(range(12))
    t = contingency_table(a, ["x"] * 12)
    assert list(t.index) == [str(i) for i in range(12)]


def gz1_like_catalogue(n=60, seed=0):
    """A catalogue like Galaxy Zoo 1's: class numbers and names, a coarser label, nuisances, flags."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 6, n)
    names = np.array(["elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger"])[cls]
    morph3 = np.array(["elliptical", "spiral", "spiral", "edge_on", None, None], dtype=object)[cls]
    return pd.DataFrame({
        "id": [f"g{i}" for i in range(n)],
        "source": "x",
        "objid": np.arange(n) + 10**15,
        "gz1_class": pd.array(cls, dtype="Int64"),
        "gz1_name": pd.array(names, dtype="string"),
        "morph3": pd.array(morph3, dtype="string"),
        "position_angle": rng.uniform(0, 180, n),
        "n_companions": rng.integers(0, 3, n),
        "Class1.1": rng.random(n),
        "flag_blank": np.zeros(n, dtype=bool),
        "cube_index": rng.permutation(n),
    })


def test_label_columns_skip_duplicates_nuisances_and_continuous_columns():
    cat = gz1_like_catalogue()
    assert label_columns(cat) == ["morph3", "gz1_name"]
    # synthetic-survey truth columns that describe the frame, not the galaxy
    synth = cat.assign(winding=np.arange(len(cat)) % 3 - 1, n_field=np.arange(len(cat)) % 9,
                       comp0_kind=pd.array(np.where(np.arange(len(cat)) % 2, "star", None), dtype="string"),
                       psf_fwhm_px=np.linspace(2, 4, len(cat)))
    assert label_columns(synth) == ["morph3", "gz1_name"]
    cfg = Config()
    cfg.data.truth_label = "gz1_name"
    assert label_columns(cat, cfg) == ["gz1_name", "morph3"]
    assert truth_column(cat.drop(columns=["morph3"])) == "gz1_name"
    cfg.data.truth_label = "votes"
    with pytest.raises(UserError, match="votes"):
        truth_column(cat, cfg)


def test_whole_number_floats_are_classes_and_an_empty_column_is_no_truth():
    """T-types written 1.0 / -5.0 (a table with a missing cell stores them as floats) were not a label
    column; an all-empty morph3 was still announced as the truth, and named as data.truth_label it
    passed the checks to score nothing."""
    from morphospace.analysis.labels import check_label_columns, labels_in_cube_order

    cat = gz1_like_catalogue()
    n = len(cat)
    ttype = np.where(np.arange(n) % 7 == 0, np.nan, (np.arange(n) % 4) * 2.0 - 5.0)
    cat = cat.assign(ttype=ttype, crop=np.where(np.arange(n) % 2, 1.0, 2.0))
    assert label_columns(cat) == ["morph3", "gz1_name", "ttype"]  # crop is the ingest's framing, not a class
    assert "ttype" not in label_columns(cat.assign(ttype=ttype + 0.5))  # fractions stay measurements
    assert "ttype" not in label_columns(cat.assign(ttype=ttype * 1e19))  # beyond what a float holds whole
    empty = cat.assign(morph3=pd.array([None] * n, dtype="string"))
    assert truth_column(empty) == "gz1_name"
    assert "morph3" not in label_columns(empty)
    cfg = Config()
    cfg.data.truth_label = "morph3"
    with pytest.raises(UserError, match="'morph3' holds no label for any galaxy of the cube"):
        check_label_columns(empty, cfg)
    cfg.data.truth_label = "ttype"
    check_label_columns(cat, cfg)  # whole numbers are classes
    # labels only of galaxies outside the cube are no truth either; one class is nothing to score against
    outside = cat.assign(cube_index=np.where(cat["morph3"].notna(), -1, cat["cube_index"]))
    assert truth_column(outside) == "gz1_name"
    cfg.data.truth_label = "kind"
    with pytest.raises(UserError, match="'kind' holds one class \\('spiral'\\) for the galaxies of the cube"):
        check_label_columns(cat.assign(kind="spiral"), cfg)
    cfg.data.truth_label = "ttype"
    with pytest.raises(UserError, match="'ttype' holds 1 infinite value"):  # a class "inf" to compare, the LDA refused it
        check_label_columns(cat.assign(ttype=np.r_[np.inf, ttype[1:]]), cfg)
    with pytest.raises(UserError, match="'ttype' holds 60 infinite value"):  # not "one class (inf)"
        check_label_columns(cat.assign(ttype=np.full(len(cat), np.inf)), cfg)
    outside = cat["cube_index"].to_numpy() < 0
    if outside.any():  # a galaxy outside the cube is never compared: its value is not refused
        check_label_columns(cat.assign(ttype=np.where(outside, np.inf, ttype)), cfg)
    cfg.data.truth_label = "kind"
    # the refused column is not offered as one to name instead
    one_inside = cat.assign(kind=["elliptical"] * 5 + ["spiral"] * (len(cat) - 5),
                            cube_index=np.r_[[-1] * 5, cat["cube_index"].to_numpy()[5:]])
    assert "kind" in label_columns(one_inside)
    with pytest.raises(UserError, match="holds one class") as refused:
        check_label_columns(one_inside, cfg)
    assert "label columns: morph3, gz1_name, ttype)" in str(refused.value)
    shown = labels_in_cube_order(None, "ttype", catalogue=cat)  # the catalogue given, no run read
    assert {v for v in shown if v is not None} == {-5, -3, -1, 1} and all(
        isinstance(v, (int, np.integer)) for v in shown if v is not None)


def test_heatmap_stays_readable_with_many_rows(tmp_path):
    names = [f"kmeans{k}_representation{i}" for i in range(6) for k in range(3, 7)]
    rng = np.random.default_rng(0)
    m = pd.DataFrame(rng.random((24, 24)), index=names, columns=names)
    small = plot_heatmap(m.iloc[:4, :4], tmp_path / "small.png", "small")
    big = plot_heatmap(m, tmp_path / "big.png", "big", split_rows=20, split_cols=20)
    hs, ws = imread(small).shape[:2]
    hb, wb = imread(big).shape[:2]
    assert wb > 3 * ws / 2 and hb > 3 * hs / 2  # the figure grows with the matrix
    assert wb / 24 > 35  # at least ~35 px per cell


def _has_colour(img, rgb, tol=0.02, min_pixels=20):
    return int((np.abs(img[..., :3] - np.asarray(rgb)).max(axis=-1) < tol).sum()) >= min_pixels


def _rendered(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3] / 255.0


def test_heatmap_shows_each_score_in_its_colour_and_leaves_nan_blank():
    m = pd.DataFrame([[1.0, 0.25, np.nan], [0.25, 1.0, 0.6]], index=["a", "b"], columns=["a", "b", "c"])
    fig = draw_heatmap(m, "scores", vmin=0.0)
    assert len(fig.axes) == 2  # the matrix and its colour bar
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == [".25", ".25", ".60", "1.0", "1.0"]  # NaN: no number
    img = _rendered(fig)
    h = img.shape[0]
    for (i, j), v in np.ndenumerate(m.to_numpy()):
        x, y = ax.transData.transform((j - 0.3, i - 0.3))  # a corner of the cell, away from its number
        got = img[int(round(h - y)), int(round(x))]
        want = (1.0, 1.0, 1.0) if np.isnan(v) else viridis(v)[:3]
        np.testing.assert_allclose(got, want, atol=0.02, err_msg=f"cell {i}, {j}")


def test_a_tall_heatmap_keeps_readable_numbers_and_prints_chance_as_zero():
    """61 clusterings against 11 nuisances printed their numbers at 4.5 pt (about 5 px) in cells
    that hold 6.5, and a score a hair below chance as "-.00"."""
    rng = np.random.default_rng(0)
    m = pd.DataFrame(rng.uniform(0, 0.3, (61, 11)), index=[f"clustering_{i}" for i in range(61)],
                     columns=[f"nuisance_{j}" for j in range(11)])
    m.iloc[0, 0] = -0.001
    ax = draw_heatmap(m, "tall", vmin=0.0).axes[0]
    assert min(t.get_fontsize() for t in ax.texts) >= 6.5
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 7.0
    assert ax.texts[0].get_text() == ".00" and not any(t.get_text().startswith("-.") for t in ax.texts)


def fake_run(tmp_path, n=60):
    """A run of the gz1-like catalogue with three clusterings (one perfect, one noisy, one unrelated)."""
    run = RunDir(tmp_path / "run", create=True)
    cat = gz1_like_catalogue(n)
    write_table(run.catalogue, cat)
    inside = cat.sort_values("cube_index")
    ids = inside["id"].to_numpy()
    truth = inside["gz1_class"].to_numpy(dtype=int)
    run.write_clustering("kmeans6_pca", ids, truth)  # perfect on gz1 classes
    noisy = truth.copy()
    noisy[::5] = -1
    run.write_clustering("dbscan_tsne", ids, noisy)
    run.write_clustering("kmeans2_umap", ids, np.arange(n) % 2)
    return run, cat


def test_compare_run_writes_scores_matrices_contingencies_and_figures(tmp_path, caplog):
    import logging

    run, cat = fake_run(tmp_path)
    with caplog.at_level(logging.INFO, logger="morphospace"):
        out = compare_run(run, Config())
    # the guessed truth is named (the report alone said it)
    assert "score against the label column 'morph3' (set data.truth_label to choose another)" in caplog.text
    comp = run.path / "comparisons"
    items = ["dbscan_tsne", "kmeans2_umap", "kmeans6_pca", "morph3", "gz1_name"]
    for m in ("ari", "ami"):
        mat = pd.read_csv(comp / f"{m}.csv")
        assert list(mat["name"]) == items and list(mat.columns[1:]) == items
        vals = mat.drop(columns="name").to_numpy()
        np.testing.assert_allclose(vals, vals.T)
        np.testing.assert_allclose(np.diag(vals), 1.0)
        # the figure shows the matrix: the diagonal's 1.0 in viridis' yellow, on a white page
        img = imread(run.path / "figures" / f"{m}_matrix.png")[..., :3]
        assert img.std() > 0.1
        assert _has_colour(img, viridis(1.0)[:3])
    ari = pd.read_csv(comp / "ari.csv").set_index("name")
    assert ari.loc["kmeans6_pca", "gz1_name"] == pytest.approx(1.0)
    long = pd.read_csv(comp / "scores_long.csv")
    assert len(long) == 10 * 2 * len(METRICS)  # 5 items: 10 pairs, 2 noise modes
    sel = long[(long.a == "dbscan_tsne") & (long.b == "kmeans6_pca") & (long.metric == "ari")]
    by_mode = sel.set_index("noise")["value"]
    assert by_mode["exclude"] == pytest.approx(1.0) and by_mode["own"] < 1.0
    assert set(sel["n"]) == {60, 48}
    # morph3 is missing for dont_know and merger: fewer rows scored against it
    n_morph3 = int(cat["morph3"].notna().sum())
    assert set(long.loc[(long.b == "morph3") & (long.noise == "own"), "n"]) == {n_morph3}
    cont = pd.read_csv(comp / "contingency_dbscan_tsne__morph3.csv")
    assert list(cont.columns) == ["cluster", "edge_on", "elliptical", "spiral"]
    assert cont["cluster"].tolist()[0] == -1
    assert cont.drop(columns="cluster").to_numpy().sum() == n_morph3
    assert {k for k in out if k.startswith("contingency_")} == {
        "contingency_dbscan_tsne", "contingency_kmeans2_umap", "contingency_kmeans6_pca"}
    # compared again against another truth: the tables against the first one go (the report lists every table)
    compare_run(run, apply_overrides(Config(), ["data.truth_label=gz1_name"]))
    assert sorted(p.name for p in comp.glob("contingency_*.csv")) == [
        f"contingency_{c}__gz1_name.csv" for c in ("dbscan_tsne", "kmeans2_umap", "kmeans6_pca")]


def test_clusterings_of_fine_tuned_features_meet_the_labels_on_held_out_galaxies_only(tmp_path):
    """A study's fine-tuned features (and their maps) were clustered and scored against the labels
    they were trained on, over every galaxy: about 80% of each score, contingency table and truth-table
    row was a training score. Against labels they are now scored on the galaxies the fine-tuning held
    out; against other clusterings, on every galaxy."""
    from morphospace.run import write_json

    run, cat = fake_run(tmp_path)
    inside = cat.sort_values("cube_index")
    ids, truth = inside["id"].to_numpy(), inside["gz1_class"].to_numpy(dtype=int)
    held = np.arange(len(ids)) % 5 == 0  # the fine-tuning's validation galaxies
    write_table(run.path / "models" / "small" / "split.parquet",
                pd.DataFrame({"id": ids, "split": np.where(held, "val", "train")}))
    write_npy(run.embedding_path("features"), np.zeros((len(ids), 4), np.float32))
    write_json(run.embedding_path("features").with_suffix(".json"), {"mode": "finetune", "model_dir": "models/small"})
    write_npy(run.reduction_path("pca"), np.zeros((len(ids), 2), np.float32))
    write_json(run.reduction_path("pca").with_suffix(".json"), {"representation": "pca", "embedding": "features"})
    memorised = np.where(held, np.arange(len(ids)) % 3, truth)  # the training labels, nothing on the others
    for name, rep in (("kmeans6_features", "features"), ("kmeans6_pca", "pca")):
        run.write_clustering(name, ids, memorised)
        write_json(run.clustering_path(name).with_suffix(".json"), {"representation": rep})
    run.write_clustering("kmeans6_other", ids, memorised)  # the same labels, from no fine-tuned representation
    compare_run(run, apply_overrides(Config(), ["data.truth_label=gz1_name"]))
    comp = run.path / "comparisons"
    long = pd.read_csv(comp / "scores_long.csv")
    ari = long[(long.metric == "ari") & (long.noise == "own")].set_index(["a", "b"])
    assert ari.loc[("kmeans6_features", "gz1_name"), "n"] == held.sum()
    assert ari.loc[("kmeans6_features", "gz1_name"), "value"] == pytest.approx(
        skm.adjusted_rand_score(inside["gz1_name"].to_numpy()[held], memorised[held]))
    assert ari.loc[("kmeans6_pca", "gz1_name"), "n"] == held.sum()
    assert ari.loc[("kmeans6_other", "gz1_name"), "n"] == len(ids)
    assert ari.loc[("kmeans6_other", "gz1_name"), "value"] > 0.6 > ari.loc[("kmeans6_features", "gz1_name"), "value"]
    assert ari.loc[("kmeans6_features", "kmeans6_pca"), "n"] == len(ids)  # no label: every galaxy
    cont = pd.read_csv(comp / "contingency_kmeans6_features__gz1_name.csv")
    assert cont.drop(columns="cluster").to_numpy().sum() == held.sum()
    assert json.loads((comp / "held_out.json").read_text())["held_out"] == {
        "kmeans6_features": int(held.sum()), "kmeans6_pca": int(held.sum())}


def test_features_from_fine_tuned_weights_loaded_frozen_meet_the_labels_on_untrained_galaxies(tmp_path):
    """A study's fine-tuned model.pt given as study.weights to a frozen study: the same features, but
    scored on every galaxy, four fifths of which had trained them; the split beside the weights says which."""
    from morphospace.run import write_json

    run, cat = fake_run(tmp_path)
    inside = cat.sort_values("cube_index")
    ids, truth = inside["id"].to_numpy(), inside["gz1_class"].to_numpy(dtype=int)
    held = np.arange(len(ids)) % 5 == 0
    elsewhere = tmp_path / "earlier" / "models" / "efficientnet-lite0"
    write_table(elsewhere / "split.parquet", pd.DataFrame({"id": ids, "split": np.where(held, "validation", "train")}))
    (elsewhere / "model.pt").write_bytes(b"weights")
    write_npy(run.embedding_path("features"), np.zeros((len(ids), 4), np.float32))
    write_json(run.embedding_path("features").with_suffix(".json"),
               {"mode": "frozen", "model_dir": None, "weights_file": str(elsewhere / "model.pt")})
    run.write_clustering("kmeans6_features", ids, np.where(held, np.arange(len(ids)) % 3, truth))
    write_json(run.clustering_path("kmeans6_features").with_suffix(".json"), {"representation": "features"})
    compare_run(run, apply_overrides(Config(), ["data.truth_label=gz1_name"]))
    long = pd.read_csv(run.path / "comparisons" / "scores_long.csv")
    ari = long[(long.metric == "ari") & (long.noise == "own")].set_index(["a", "b"])
    assert ari.loc[("kmeans6_features", "gz1_name"), "n"] == held.sum()


def test_galaxies_of_another_survey_with_the_ids_trained_on_are_not_counted_as_trained_on(tmp_path, caplog):
    """Ids recur across surveys (synth_000000): a frozen study of another survey with a fine-tuned
    model.pt counted its galaxies of those ids as trained on, and scored only the rest, 'held out'.
    The split keeps each galaxy's file; a galaxy is the one trained on where its file is too."""
    from morphospace.analysis.probe import fine_tuning_rows
    from morphospace.run import write_json

    run, cat = fake_run(tmp_path)
    inside = run.cube_catalogue()
    ids = inside["id"].astype(str).to_numpy()
    assert "source" in inside
    held = np.arange(len(ids)) % 5 == 0
    elsewhere = tmp_path / "earlier" / "models" / "efficientnet-lite0"
    sources = inside["source"].astype(str).to_numpy().copy()
    sources[: len(ids) // 2] = "/another/survey/" + ids[: len(ids) // 2]  # half of them: other files, same ids
    write_table(elsewhere / "split.parquet", pd.DataFrame({"id": ids, "split": np.where(held, "validation", "train"),
                                                           "source": sources}))
    (elsewhere / "model.pt").write_bytes(b"weights")
    write_npy(run.embedding_path("features"), np.zeros((len(ids), 4), np.float32))
    write_json(run.embedding_path("features").with_suffix(".json"),
               {"mode": "frozen", "model_dir": None, "weights_file": str(elsewhere / "model.pt")})
    with caplog.at_level("WARNING", logger="morphospace"):
        trained = fine_tuning_rows(run, "features")
    other = np.arange(len(ids)) < len(ids) // 2
    np.testing.assert_array_equal(trained, ~held & ~other)
    assert f"{int((~held & other).sum())} galaxies have the ids of galaxies features was trained on" in caplog.text
    # every file another (the same survey moved, or another of the same ids): counted as trained on, as by
    # id alone, never scored as held out when they may have trained it
    moved = pd.DataFrame({"id": ids, "split": np.where(held, "validation", "train"),
                          "source": ["/moved/" + i for i in ids]})
    write_table(elsewhere / "split.parquet", moved)
    caplog.clear()
    with caplog.at_level("WARNING", logger="morphospace"):
        np.testing.assert_array_equal(fine_tuning_rows(run, "features"), ~held)
    assert "another survey, or the same moved: counted as trained on" in caplog.text
    # the same files through a link: matched (by the path as typed, every one read as another survey's)
    (tmp_path / "images").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "images")
    cat = run.read_catalogue()
    cat["source"] = [str(tmp_path / "images" / f"{i}.png") for i in cat["id"].astype(str)]
    write_table(run.catalogue, cat)
    half = moved.assign(source=[str(tmp_path / ("linked" if k % 2 else "other") / f"{i}.png") for k, i in enumerate(ids)])
    write_table(elsewhere / "split.parquet", half)
    np.testing.assert_array_equal(fine_tuning_rows(run, "features"), ~held & (np.arange(len(ids)) % 2 == 1))


def test_clusterings_of_an_lda_map_meet_the_labels_on_the_galaxies_it_did_not_learn_from(tmp_path, caplog):
    """An LDA map is fitted on labels: its clusterings were scored against them over every galaxy,
    in-sample (K-Means(3) of it read AMI 0.90 where the features themselves give 0.13)."""
    from morphospace.analysis.reduce import pack_rows
    from morphospace.run import write_json

    run, cat = fake_run(tmp_path)
    inside = cat.sort_values("cube_index")
    ids, truth = inside["id"].to_numpy(), inside["gz1_class"].to_numpy(dtype=int)
    fitted = np.arange(len(ids)) % 5 != 0
    memorised = np.where(fitted, truth, np.arange(len(ids)) % 3)
    write_npy(run.embedding_path("features"), np.zeros((len(ids), 4), np.float32))
    for rid, rows in (("lda", pack_rows(fitted)), ("old_lda", None)):  # old_lda: written before rows were kept
        write_npy(run.reduction_path(rid), np.zeros((len(ids), 2), np.float32))
        write_json(run.reduction_path(rid).with_suffix(".json"), {"representation": rid, "embedding": "features",
                                                                  "reduction": "lda",
                                                                  **({"fitted_rows": rows} if rows else {})})
        run.write_clustering(f"kmeans6_{rid}", ids, memorised)
        write_json(run.clustering_path(f"kmeans6_{rid}").with_suffix(".json"), {"representation": rid})
    with caplog.at_level("WARNING", logger="morphospace"):
        compare_run(run, apply_overrides(Config(), ["data.truth_label=gz1_name"]))
    assert "the LDA map old_lda was fitted on every label (made by an earlier version)" in caplog.text
    long = pd.read_csv(run.path / "comparisons" / "scores_long.csv")
    ari = long[(long.metric == "ari") & (long.noise == "own")].set_index(["a", "b"])
    assert ari.loc[("kmeans6_lda", "gz1_name"), "n"] == (~fitted).sum()
    assert ari.loc[("kmeans6_lda", "gz1_name"), "value"] < 0.5
    assert ari.loc[("kmeans6_old_lda", "gz1_name"), "n"] == 0  # every label may have fitted it: none scored
    held = json.loads((run.path / "comparisons" / "held_out.json").read_text())["held_out"]
    assert held == {"kmeans6_lda": int((~fitted).sum()), "kmeans6_old_lda": 0}


def test_a_truth_of_one_class_skips_the_probe_and_finishes_the_stage(tmp_path, caplog):
    """A survey whose labels hold one usable class (all ellipticals, or one and a single spiral):
    the linear probe cannot be fitted; it is skipped with a warning, not a traceback ending `run`."""
    run, cat = fake_run(tmp_path)
    write_npy(run.embedding_path("pixels_pca"), np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32))
    compare_run(run, Config())
    assert (run.path / "comparisons" / "linear_probe.csv").is_file()
    one = cat.assign(morph3="elliptical", gz1_name="elliptical")
    one.loc[one.index[0], "gz1_name"] = "spiral_cw"  # a class of one galaxy is left out too
    write_table(run.catalogue, one)
    with caplog.at_level("WARNING", logger="morphospace"):
        compare_run(run, apply_overrides(Config(), ["data.truth_label=gz1_name"]))
    assert "linear probe skipped" in caplog.text
    assert not (run.path / "comparisons" / "linear_probe.csv").exists()  # not the previous labels' table


def test_a_label_class_of_minus_one_is_a_class_not_noise(tmp_path):
    """A catalogue's -1 (an S0's T-type) is a class: scored in both noise modes; only a clustering's
    -1 is noise."""
    run, cat = fake_run(tmp_path)
    write_table(run.catalogue, cat.assign(ttype=pd.array(np.arange(len(cat)) % 3 - 1, dtype="Int64")))
    compare_run(run, apply_overrides(Config(), ["data.truth_label=ttype"]))
    long = pd.read_csv(run.path / "comparisons" / "scores_long.csv")
    sel = long[(long.a == "kmeans6_pca") & (long.b == "ttype") & (long.metric == "ari")]
    assert set(sel["n"]) == {len(cat)}  # no galaxy of class -1 dropped under noise = exclude
    noisy = long[(long.a == "dbscan_tsne") & (long.b == "ttype") & (long.noise == "exclude")]
    assert set(noisy["n"]) == {48}  # the clustering's noise still is


def test_compare_run_needs_clusterings(tmp_path):
    run = RunDir(tmp_path / "empty", create=True)
    with pytest.raises(UserError, match="morphospace cluster"):
        compare_run(run, Config())


@pytest.mark.parametrize("case", ["random", "one_cluster_each", "one_side_single", "all_singletons", "identical",
                                  "two_rows", "many_small"])
def test_scores_from_one_table_equal_scikit_learn(case):
    """The five sklearn scores, computed once from the contingency table, are sklearn's own."""
    from morphospace.analysis.agreement import score_pair

    rng = np.random.default_rng(7)
    a, b = {
        "random": (rng.integers(0, 5, 300), rng.integers(0, 3, 300)),
        "one_cluster_each": (np.zeros(20, int), np.zeros(20, int)),
        "one_side_single": (np.zeros(20, int), np.arange(20) % 3),
        "all_singletons": (np.arange(15), np.arange(15) % 4),
        "identical": (np.arange(40) % 6, np.arange(40) % 6),
        "two_rows": (np.array([0, 1]), np.array([1, 1])),
        "many_small": (rng.integers(0, 60, 200), rng.integers(0, 50, 200)),
    }[case]
    got = score_pair(a, b)
    want = {"ari": skm.adjusted_rand_score(a, b), "ami": skm.adjusted_mutual_info_score(a, b),
            "nmi": skm.normalized_mutual_info_score(a, b), "v_measure": skm.v_measure_score(b, a),
            "fowlkes_mallows": skm.fowlkes_mallows_score(a, b)}
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k


def test_ari_does_not_overflow_at_a_million_rows():
    from morphospace.analysis.agreement import score_pair

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 1_000_000)
    b = np.where(rng.random(1_000_000) < 0.7, a, rng.integers(0, 4, 1_000_000))
    assert score_pair(a, b)["ari"] == pytest.approx(skm.adjusted_rand_score(a, b), abs=1e-12)


def test_ami_above_the_exact_emi_size_matches_scikit_learn():
    from sklearn.metrics import adjusted_mutual_info_score

    from morphospace.analysis.agreement import EXACT_EMI_BELOW, score_pair

    rng = np.random.default_rng(0)
    n = EXACT_EMI_BELOW + 1
    b = rng.choice(12, n, p=np.r_[np.full(11, 0.01), 0.89])  # a few small clusters too
    a = rng.integers(0, 5, n)
    a[: n // 50] = b[: n // 50] % 5  # a weak dependence: AMI near 0, where the EMI matters most
    ours = score_pair(a, b)["ami"]
    assert abs(ours - adjusted_mutual_info_score(b, a)) < 1e-6 and ours != 0.0


def test_linear_probe_leaves_out_a_class_of_one_galaxy_even_when_sampling(caplog):
    import logging

    from morphospace.analysis.probe import linear_probe

    rng = np.random.default_rng(0)
    y = np.r_[np.repeat(["a", "b"], [300, 100]), ["<odd label>"]]
    x = np.r_[(y[:400] == "a")[:, None] * 3.0 + rng.normal(size=(400, 2)), [[0.0, 0.0]]]
    with caplog.at_level(logging.INFO, logger="morphospace"):
        t = linear_probe(x, y, fractions=(0.1, 1.0), repeats=2, max_rows=200)
    assert "classes of one galaxy left out" in caplog.text and "sample of 200 of the 400" in caplog.text
    assert list(t["fraction"]) == [0.1, 1.0] and (t["balanced_accuracy"] > 0.9).all()
    assert (t["chance"] == 0.5).all()


def test_linear_probe_draws_two_of_every_class_at_1_percent_of_imbalanced_labels(monkeypatch):
    """A proportional split gave the 5% class one galaxy in a 1% draw of 2,000, and the whole 1%
    fraction was skipped as "too few to train on two of each", with room for 20 galaxies."""
    from morphospace.analysis import probe

    rng = np.random.default_rng(0)
    y = rng.choice(np.array(["E", "S", "M"], dtype=object), 2000, p=[0.7, 0.25, 0.05])
    x = rng.normal(size=(2000, 4)) + (y == "S")[:, None] * 2.0
    fits = []
    real = probe._fit_score
    monkeypatch.setattr(probe, "_fit_score", lambda xt, yt, xs, ys: fits.append((yt, ys, xt)) or real(xt, yt, xs, ys))
    t = probe.linear_probe(x, y, fractions=(0.01, 0.1), repeats=3, n_jobs=1)
    assert list(t["fraction"]) == [0.01, 0.1] and t["n_train"].tolist() == [20, 200]
    for y_train, y_test, _ in fits:  # two of every class to train on, every class left to score
        assert len(set(y_test)) == 3 and min(np.unique(y_train, return_counts=True)[1]) >= 2
    assert len(fits) == 6 and not np.array_equal(fits[0][2], fits[1][2])  # each repeat its own draw


def test_linear_probe_counts_classes_as_compare_does_and_keeps_its_columns():
    """Labels were made text: 1 and 1.0 were two classes, 1 and "1" one; and with every fraction
    skipped the table had no columns at all."""
    import morphospace as ms
    from morphospace.analysis.probe import linear_probe

    x = np.random.default_rng(0).normal(size=(40, 4))
    mixed = np.array([1] * 20 + [1.0] * 10 + [2] * 10, dtype=object)
    assert linear_probe(x, mixed, fractions=(1.0,))["chance"].item() == 0.5
    assert ms.compare(mixed, np.r_[np.zeros(30), np.ones(10)]).loc["ami"].iloc[0] == pytest.approx(1.0)
    text_and_number = np.array([1] * 20 + ["1"] * 20, dtype=object)
    assert linear_probe(x, text_and_number, fractions=(1.0,))["chance"].item() == 0.5
    skipped = linear_probe(x, np.repeat(list("abcd"), 10), fractions=(0.05,))
    assert skipped.empty and list(skipped.columns) == ["fraction", "n_train", "balanced_accuracy", "std",
                                                       "repeats", "chance", "labelled", "labelled_of"]


def test_linear_probe_fits_without_a_library_warning():
    """The probe runs once per embedding and fraction: a library's deprecation notice per fit
    (scikit-learn 1.9's about LogisticRegressionCV) would bury a run's own messages."""
    import warnings

    from morphospace.analysis.probe import linear_probe

    rng = np.random.default_rng(1)
    y = np.repeat(["a", "b", "c"], 40)
    x = rng.normal(size=(120, 3)) + (y == "a")[:, None] * 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = linear_probe(x, y, fractions=(0.5,), repeats=1)
    assert t["balanced_accuracy"].iloc[0] > 0.4


def test_contingency_tables_keep_the_names_as_spelled(tmp_path):
    """A truth column with spaces ("GZ1 class") is filed under a safe name, but the report titles
    its tables with the column's own name, the primary clustering's first."""
    from types import SimpleNamespace

    from morphospace.report.sections.comparisons import _contingencies

    run, cat = fake_run(tmp_path)
    write_table(run.catalogue, cat.rename(columns={"gz1_name": "GZ1 class"}))
    compare_run(run, apply_overrides(Config(), ["data.truth_label=GZ1 class"]))
    comp = run.path / "comparisons"
    names = ("dbscan_tsne", "kmeans2_umap", "kmeans6_pca")
    index = json.loads((comp / "contingency.json").read_text())
    assert sorted((e["clustering"], e["truth"]) for e in index) == [(c, "GZ1 class") for c in names]
    assert sorted(p.name for p in comp.glob("contingency_*.csv")) == [f"contingency_{c}__GZ1_class.csv" for c in names]
    ctx = SimpleNamespace(contents=SimpleNamespace(path=run.path, primary=SimpleNamespace(name="kmeans6_pca")))
    titles = [title for title, _ in _contingencies(ctx)]
    assert titles == [f"{c} \u00d7 GZ1 class" for c in ("kmeans6_pca", "dbscan_tsne", "kmeans2_umap")]
    (comp / "contingency.json").write_text("damaged")  # a run compared before the index: the file names
    assert [title for title, _ in _contingencies(ctx)][0] == "kmeans6_pca \u00d7 GZ1_class"


def test_a_probe_skip_is_said_once_not_once_per_embedding(tmp_path, caplog):
    """"linear probe: 1% of 60 labelled galaxies is too few ...; skipped" came once per embedding."""
    from morphospace.analysis.probe import probe_run

    run = fake_run(tmp_path)[0]
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_npy(run.embedding_path(name), rng.normal(size=(60, 4)).astype(np.float32))
    with caplog.at_level("INFO", logger="morphospace"):
        table = probe_run(run, "gz1_class", repeats=2)
    assert set(table["embedding"]) >= {"a", "b", "c"}
    skipped = [r.getMessage() for r in caplog.records if "too few" in r.getMessage()]
    assert skipped and len(skipped) == len(set(skipped)), skipped  # each fraction's, once


def test_a_clustering_that_does_not_cover_the_cube_is_refused_not_scored_on_fewer_galaxies(tmp_path):
    """A clustering cut short, or one whose ids were changed, was aligned by id: the galaxies it
    missed dropped out of its scores without a word (export refused the same file)."""
    run, cat = fake_run(tmp_path)
    table = run.read_clustering("kmeans2_umap")
    write_table(run.path / "clusterings" / "kmeans2_umap.parquet", table.iloc[:50])
    with pytest.raises(UserError, match="clustering 'kmeans2_umap' does not match the run's cube"):
        compare_run(run, Config())
    table.loc[0, "id"] = "NOPE"
    write_table(run.path / "clusterings" / "kmeans2_umap.parquet", table)
    with pytest.raises(UserError, match="clustering 'kmeans2_umap' does not match the run's cube"):
        compare_run(run, Config())


def test_a_notebook_reading_comparisons_made_before_the_clusterings_changed_is_warned(tmp_path):
    """`ms.Run(...).comparisons` served tables of clusterings a later `cluster` had replaced, with no
    word, where the report said to compare again."""
    import warnings

    import morphospace as ms

    run, cat = fake_run(tmp_path)
    compare_run(run, Config())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # current: read without a warning
        assert "kmeans6_pca" in set(ms.Run(run.path).comparisons["ami"]["name"])
    ids = run.read_clustering("kmeans2_umap")["id"].to_numpy()
    run.write_clustering("kmeans2_umap", ids, np.arange(len(ids)) % 3)  # clustered again since
    with pytest.warns(UserWarning, match=r"comparison 'ami' is out of date: clusterings changed since \(kmeans2_umap\)"):
        ms.Run(run.path).comparisons["ami"]


def test_only_the_test_rows_of_a_fine_tuning_count_as_held_out_where_it_kept_some(caplog):
    """The validation rows chose the epoch kept: scores made there are a little optimistic. Where a
    split has test rows only they are held out; an earlier split's validation rows still are, said."""
    import logging

    from morphospace.analysis.probe import _chose_the_model

    now = pd.Series(["train", "validation", "test", "", "train", "test"])
    assert _chose_the_model(now, "compare", "features").tolist() == [True, True, False, False, True, False]
    earlier = pd.Series(["train", "validation", "", "train"])
    with caplog.at_level(logging.INFO, logger="morphospace"):
        assert _chose_the_model(earlier, "compare", "features").tolist() == [True, False, False, True]
    assert "kept no test rows: scored on its validation rows, which chose the epoch kept" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="morphospace"):  # nothing held out of an unlabelled sample: unsaid
        assert _chose_the_model(pd.Series(["train", ""]), "compare", "features").tolist() == [True, False]
    assert "kept no test rows" not in caplog.text
