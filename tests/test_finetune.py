"""FineTuner and the study's feature stage on tiny data.

The toy problem: 40 images of a noisy Gaussian blob, compact (sigma 2 px) or extended
(sigma 6 px), at a random small offset. Blob size survives the rotations and flips of the
augmentation, so it is learnable; a stripe orientation would not be.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from morphospace.config import Config, apply_overrides
from morphospace.errors import UserError
from morphospace.nets.backbones import efficientnet_lite0_weights_path, make_backbone
from morphospace.nets.batches import extract_features
from morphospace.progress import set_quiet
from morphospace.run import RunDir, write_npy, write_table
from morphospace.study.features import study_features_run
from morphospace.study.finetune import FineTuner, augment

FAST = dict(input_size=32, batch_size=8, lr=3e-3, patience=0, num_threads=1, verbose=False)


@pytest.fixture(autouse=True)
def quiet():
    set_quiet(True)
    yield
    set_quiet(False)


def blobs(n=40, size=32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    X = np.empty((n, 3, size, size), np.float32)
    extent = np.where(y == 0, 2.0, 6.0) * rng.uniform(0.9, 1.1, n)
    for i in range(n):
        cx, cy = rng.uniform(-3, 3, 2)
        X[i] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * extent[i] ** 2)) + rng.normal(0, 0.05, (3, size, size))
    return X, np.where(y == 0, "compact", "extended"), extent


@pytest.fixture(scope="module")
def toy():
    return blobs()


@pytest.fixture(scope="module")
def fitted(toy):
    X, y, _ = toy
    return FineTuner("small", epochs=4, random_state=0, **FAST).fit(X, y)


def test_small_cnn_learns_a_separable_toy_problem(toy, fitted):
    X, y, _ = toy
    ft = fitted
    assert ft.task_ == "classification" and list(ft.classes_) == ["compact", "extended"]
    assert len(ft.val_index_) == 8 and len(ft.train_index_) == 32
    assert set(ft.val_index_).isdisjoint(ft.train_index_)
    # stratified: 4 of each class held out
    assert (y[ft.val_index_] == "compact").sum() == 4
    assert ft.val_accuracy_ >= 0.875
    assert len(ft.history_) == 4 and {"train_loss", "val_loss", "val_accuracy"} <= set(ft.history_[0])
    assert ft.history_[-1]["train_loss"] < ft.history_[0]["train_loss"]
    assert ft.confusion_matrix_.shape == (2, 2) and ft.confusion_matrix_.sum() == 8
    assert np.trace(ft.confusion_matrix_) == round(ft.val_accuracy_ * 8)
    assert set(ft.classification_report_["compact"]) >= {"precision", "recall"}
    assert (ft.predict(X[ft.val_index_]) == y[ft.val_index_]).mean() == ft.val_accuracy_
    proba = ft.predict_proba(X[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert ft.transform(X).shape == (40, 256)


def test_same_seed_same_model_other_seed_other_model(toy, fitted):
    X, y, _ = toy
    again = FineTuner("small", epochs=4, random_state=0, **FAST).fit(X, y)
    assert np.array_equal(again.transform(X), fitted.transform(X))
    assert [h["train_loss"] for h in again.history_] == [h["train_loss"] for h in fitted.history_]
    other = FineTuner("small", epochs=1, random_state=1, **FAST).fit(X, y)
    first = FineTuner("small", epochs=1, random_state=0, **FAST).fit(X, y)
    assert not np.array_equal(other.val_index_, first.val_index_)
    assert not np.allclose(other.transform(X[:4]), first.transform(X[:4]))


def test_early_stopping_keeps_the_best_epochs_checkpoint(tmp_path, toy):
    X, y, _ = toy
    np.random.seed(123)
    before = np.random.get_state()[1].copy(), torch.are_deterministic_algorithms_enabled()
    # labels at random: the network can only memorise them, so the validation loss soon rises
    noise = np.random.default_rng(0).permutation(y)
    ft = FineTuner("small", epochs=6, random_state=0, checkpoint_dir=str(tmp_path / "ckpt"),
                   **{**FAST, "patience": 1}).fit(X, noise)
    losses = [h["val_loss"] for h in ft.history_]
    assert [h["epoch"] for h in ft.history_] == list(range(1, len(losses) + 1))
    assert len(losses) < 6, "EarlyStopping did not stop the fit"
    assert losses[-1] >= losses[-2] and ft.best_epoch_ == len(losses) - 1 == int(np.argmin(losses)) + 1
    # the weights kept are the best epoch's (with that epoch's batch-norm statistics), not the last's
    out = ft._outputs(X, ft.val_index_)
    weights = torch.from_numpy(ft.class_weights_)
    kept = torch.nn.functional.cross_entropy(out, torch.from_numpy(ft.classes_.searchsorted(noise[ft.val_index_])),
                                             weight=weights)
    assert float(kept) == pytest.approx(losses[ft.best_epoch_ - 1], rel=1e-4)
    saved = torch.load(tmp_path / "ckpt" / "best.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] + 1 == ft.best_epoch_
    assert all(torch.equal(v, saved["state_dict"][f"net.{k}"]) for k, v in ft.model_.state_dict().items())
    # global random states and torch's determinism switch are as they were
    assert np.array_equal(np.random.get_state()[1], before[0])
    assert torch.are_deterministic_algorithms_enabled() == before[1]


def test_frozen_mode_trains_nothing_and_uses_no_labels(toy):
    X, _, _ = toy
    ft = FineTuner("efficientnet-lite0", mode="frozen", input_size=32, num_threads=1).fit(X)
    assert ft.history_ == [] and ft.head_ is None
    shipped = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    state = ft.model_.trunk.net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in shipped.items() if not k.startswith("_fc."))
    feats = ft.transform(X)
    assert feats.shape == (40, 1280) and np.isfinite(feats).all()
    assert np.array_equal(feats, ft.transform(X))  # eval mode: no batch-norm updates, no drop-connect
    with pytest.raises(UserError, match="frozen backbone has no classifier"):
        ft.predict(X)
    with pytest.raises(UserError, match="frozen mode needs trained weights"):
        FineTuner("small", mode="frozen").fit(X)


def test_vote_fraction_regression_reports_rmse(toy):
    X, _, extent = toy
    p = np.clip((extent - 1.5) / 5.5, 0, 1)  # "fraction of votes for extended"
    votes = np.stack([1 - p, p], axis=1).astype(np.float32)
    ft = FineTuner("small", epochs=4, random_state=0, **FAST).fit(X, votes)
    assert ft.task_ == "regression" and ft.classes_ is None and ft.confusion_matrix_ is None
    assert "val_rmse" in ft.history_[0]
    baseline = float(np.sqrt(((votes[ft.val_index_] - votes[ft.train_index_].mean(0)) ** 2).mean()))
    assert 0 <= ft.val_rmse_ < 0.6 * baseline
    pred = ft.predict(X)
    assert pred.shape == (40, 2) and pred.min() >= 0 and pred.max() <= 1
    assert ft.score(X[ft.val_index_], votes[ft.val_index_]) == pytest.approx(-ft.val_rmse_, abs=1e-5)


def test_user_errors(toy):
    X, y, _ = toy
    with pytest.raises(UserError, match="at least 2 classes"):
        FineTuner("small", **FAST).fit(X, np.array(["a"] * 40))
    with pytest.raises(UserError, match="missing values"):
        FineTuner("small", **FAST).fit(X, np.array(["a", None] * 20, dtype=object))
    with pytest.raises(UserError, match="study.mode"):
        FineTuner("small", mode="thaw").fit(X, y)
    with pytest.raises(UserError, match="40 images but 39 labels"):
        FineTuner("small", **FAST).fit(X, y[:39])
    with pytest.raises(UserError, match="N x C x H x W"):
        FineTuner("small", **FAST).fit(X[0], y)


def test_save_and_load_give_the_same_predictions(tmp_path, toy, fitted):
    X, _, _ = toy
    fitted.save(tmp_path / "m")
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == fitted.val_accuracy_ and metrics["classes"] == ["compact", "extended"]
    back = FineTuner.load(tmp_path / "m")
    assert np.array_equal(back.predict(X), fitted.predict(X))
    assert np.allclose(back.transform(X), fitted.transform(X))


def test_augment_is_a_dihedral_transform_without_small_rotations():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = augment(x, torch.Generator().manual_seed(0), max_angle=0)
    for i in range(2):
        variants = [torch.rot90(x[i], k, dims=(1, 2)) for k in range(4)]
        variants += [v.flip(2) for v in variants]
        assert any(torch.equal(out[i], v) for v in variants)
    rotated = augment(x, torch.Generator().manual_seed(0), max_angle=15)
    assert rotated.shape == x.shape and torch.isfinite(rotated).all()


def test_extract_features_streams_a_memmap(tmp_path, toy):
    X, _, _ = toy
    np.save(tmp_path / "cube.npy", X)
    cube = np.load(tmp_path / "cube.npy", mmap_mode="r")
    torch.manual_seed(0)
    net, _, _ = make_backbone("small", input_size=32)
    streamed = extract_features(net, cube, batch_size=7)
    with torch.no_grad():
        direct = net.eval()(torch.from_numpy(X)).numpy()
    assert streamed.shape == (40, 256) and np.allclose(streamed, direct, atol=1e-5)


def _tiny_run(tmp_path, toy) -> RunDir:
    X, y, _ = toy
    run = RunDir(tmp_path / "run", create=True)
    write_npy(run.cube, X)
    labels = pd.array(list(y), dtype="string")
    labels[[3, 17]] = pd.NA  # two galaxies without a label: features, but no training
    cat = pd.DataFrame({"id": [f"g{i}" for i in range(40)], "source": "toy", "shape": labels,
                        "flag_blank": False, "cube_index": np.arange(40)})
    write_table(run.catalogue, cat)
    return run


def test_the_study_scores_against_the_classes_it_fine_tunes_on(tmp_path, toy):
    """With ``--labels shape`` and another class column that the guess would take first (here
    ``morph3``), the LDA, contingency tables and probe score against ``shape``, saved in the run's
    configuration for later stages (by ``run_study``, once every check has passed); vote fractions
    (regression) and a truth set by the user are kept."""
    from morphospace.analysis.labels import truth_column
    from morphospace.config import load_config
    from morphospace.pipeline import save_config
    from morphospace.study.features import study_truth

    run = _tiny_run(tmp_path, toy)
    cat = run.read_catalogue()
    cat["morph3"] = pd.array(["a", "b"] * 20, dtype="string")
    cat["frac"] = np.linspace(0, 1, 40)
    write_table(run.catalogue, cat)
    cfg = apply_overrides(Config(), ["study.labels=shape"])
    save_config(run, cfg)
    assert truth_column(cat, cfg) == "morph3"  # what the comparisons took before
    chosen = study_truth(run.read_catalogue(), cfg)
    assert chosen.data.truth_label == "shape" and truth_column(cat, chosen) == "shape"
    assert load_config(run.config).data.truth_label == ""  # saved by the caller, not here
    for kept in (["study.labels=frac"], ["study.labels=shape", "data.truth_label=morph3"], ["study.labels=Class*"]):
        other = apply_overrides(Config(), kept)
        assert study_truth(run.read_catalogue(), other).data.truth_label == other.data.truth_label
    # T-types read back as floats (1.0, 2.0, 3.0, blanks): classes the study fine-tunes on, so the truth too
    cat["ttype"] = np.where(np.arange(40) % 7 == 0, np.nan, np.arange(40) % 3 + 1.0)
    write_table(run.catalogue, cat)
    ttype = study_truth(run.read_catalogue(), apply_overrides(Config(), ["study.labels=ttype"]))
    assert ttype.data.truth_label == "ttype"
    # a study that fine-tunes nothing reads its labels as the truth alone: vote fractions or a pattern
    # were dropped without a word, and it scored against the guessed morph3
    for labels in ("frac", "fr*", "frac,ttype"):
        for setting in ("study.mode=frozen", "study.backbone=ssl"):
            with pytest.raises(UserError, match="reads --labels only as the one class column"):
                study_truth(run.read_catalogue(), apply_overrides(Config(), [f"study.labels={labels}", setting]))
    frozen = study_truth(run.read_catalogue(), apply_overrides(Config(), ["study.labels=shape", "study.mode=frozen"]))
    assert frozen.data.truth_label == "shape"


def test_study_features_run_writes_features_metrics_and_figures(tmp_path, toy):
    run = _tiny_run(tmp_path, toy)
    cfg = apply_overrides(Config(), ["study.backbone=small", "study.labels=shape", "study.epochs=2",
                                     "study.input_size=32", "study.batch_size=8", "train.num_threads=1"])
    metrics = study_features_run(run, cfg)
    feats = run.read_embedding("features")
    assert feats.shape == (40, 256) and np.isfinite(feats).all()
    info = json.loads(run.embedding_path("features").with_suffix(".json").read_text())
    assert info["backbone"] == "small" and info["mode"] == "finetune" and info["input_size"] == 32
    assert metrics["n_labelled"] == 38 and metrics["n_unlabelled"] == 2
    # 70% train, 10% validate (choose the epoch), 20% held out for testing (choose nothing)
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (26, 4, 8)
    split = pd.read_parquet(run.path / "models" / "small" / "split.parquet")
    assert split.set_index("id").loc[["g3", "g17"], "split"].tolist() == ["", ""]
    assert split["split"].value_counts().to_dict() == {"train": 26, "test": 8, "validation": 4, "": 2}
    assert 0 <= metrics["test_balanced_accuracy"] <= 1 and metrics["test_rmse"] is None
    saved = json.loads((run.path / "comparisons" / "finetune_metrics.json").read_text())
    assert saved["val_accuracy"] == metrics["val_accuracy"] and len(saved["history"]) == 2
    cm = pd.read_csv(run.path / "comparisons" / "confusion_matrix.csv")
    # on the test galaxies, which chose nothing
    assert list(cm.columns) == ["true", "compact", "extended"] and cm[["compact", "extended"]].to_numpy().sum() == 8
    assert np.array_equal(cm[["compact", "extended"]].to_numpy(), np.asarray(metrics["test_confusion_matrix"]))
    for fig in ("confusion_matrix", "finetune_curves"):
        assert run.figure_path(fig).stat().st_size > 1000
    assert (run.path / "models" / "small" / "model.pt").is_file()
    best = torch.load(run.path / "models" / "small" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] + 1 == metrics["best_epoch"]  # Lightning's checkpoint of the kept epoch, beside model.pt

    # A frozen re-run replaces the features and removes the fine-tune-only outputs.
    frozen = apply_overrides(cfg, ["study.backbone=efficientnet-lite0", "study.mode=frozen"])
    metrics = study_features_run(run, frozen)
    assert run.read_embedding("features").shape == (40, 1280) and metrics["mode"] == "frozen"
    assert not (run.path / "comparisons" / "confusion_matrix.csv").exists()
    assert not run.figure_path("finetune_curves").exists()


def test_features_fine_tuned_on_labels_are_probed_on_the_galaxies_they_held_out(tmp_path, toy, monkeypatch):
    """The linear probe of fine-tuned features scored mostly the galaxies whose labels trained them
    (0.61 on those against 0.41 on the held-out ones, in a 400-galaxy sdss-gz1 study); it now
    reads only the galaxies the fine-tuning held out, and its table says so. A frozen study's
    features are probed on every labelled galaxy."""
    from morphospace.analysis import probe

    run = _tiny_run(tmp_path, toy)
    cfg = apply_overrides(Config(), ["study.backbone=small", "study.labels=shape", "study.epochs=1",
                                     "study.input_size=32", "study.batch_size=8", "train.num_threads=1"])
    study_features_run(run, cfg)
    split = pd.read_parquet(run.path / "models" / "small" / "split.parquet").set_index("id")["split"]
    trained = probe.fine_tuning_rows(run, "features")
    # trained on: the training rows, and the validation rows, which chose the epoch kept
    assert trained.tolist() == [split[i] in ("train", "validation") for i in run.cube_ids()] and trained.sum() == 30
    seen = []

    def spy(x, y, **kw):
        seen.append(y)
        return pd.DataFrame({"fraction": [1.0], "balanced_accuracy": [0.5], "chance": [0.5]})

    monkeypatch.setattr(probe, "linear_probe", spy)
    table = probe.probe_run(run, "shape")
    probed = np.array([v is not None for v in seen[0]])
    assert not (probed & trained).any() and probed.sum() == 8  # the test galaxies, labelled
    assert table["rows"].tolist() == ["held out from fine-tuning"]
    # a split that does not name some galaxies: they may have trained it, so they are not probed
    path = run.path / "models" / "small" / "split.parquet"
    full = pd.read_parquet(path)
    full[full["id"] != "g0"].to_parquet(path)
    assert probe.fine_tuning_rows(run, "features")[list(run.cube_ids()).index("g0")]
    study_features_run(run, apply_overrides(cfg, ["study.backbone=efficientnet-lite0", "study.mode=frozen"]))
    assert probe.fine_tuning_rows(run, "features") is None
    assert probe.probe_run(run, "shape")["rows"].tolist() == ["all labelled"]


def _killed_at_the_third_epoch(monkeypatch):
    """Fine-tunings raise RuntimeError("killed") as their third epoch starts (two done and
    checkpointed); returns the hook as it was, to put back."""
    from morphospace.study.training import FineTuneModule

    started = FineTuneModule.on_train_epoch_start

    def killed(self):
        if self.current_epoch == 2:
            raise RuntimeError("killed")
        started(self)

    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", killed)
    return started


def test_a_study_run_interrupted_mid_fine_tuning_resumes(tmp_path, toy, monkeypatch, caplog):
    """`study --resume` after an interrupt always failed ("resume goes on from the checkpoints of a
    checkpoint_dir: give one"): the run's checkpoint folder was named after the check that needs it."""
    from morphospace.study.training import FineTuneModule

    run = _tiny_run(tmp_path, toy)
    cfg = apply_overrides(Config(), ["study.backbone=small", "study.labels=shape", "study.epochs=3",
                                     "study.input_size=32", "study.batch_size=8", "study.patience=0",
                                     "train.num_threads=1"])
    started = _killed_at_the_third_epoch(monkeypatch)
    with pytest.raises(RuntimeError, match="killed"):
        study_features_run(run, cfg)
    epochs = []
    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", lambda self: (epochs.append(self.current_epoch),
                                                                            started(self)))
    with caplog.at_level("INFO", logger="morphospace"):
        metrics = study_features_run(run, cfg, resume=True)
    assert epochs == [2] and len(metrics["history"]) == 3  # the third epoch alone, the history whole
    assert "resuming the fine-tuning from" in caplog.text and "2 of 3 epochs done" in caplog.text  # it said nothing


def test_study_features_run_label_errors(tmp_path, toy):
    run = _tiny_run(tmp_path, toy)
    cfg = apply_overrides(Config(), ["study.backbone=small", "study.labels=colour", "study.input_size=32"])
    with pytest.raises(UserError, match="'colour' is no column.*shape") as raised:
        study_features_run(run, cfg)
    assert "not a file" not in str(raised.value)
    # classify's --labels is a CSV file: given to a study, the error says where a labels file goes
    with pytest.raises(UserError, match="'my_labels.csv' is no column in the catalogue; --labels names a column "
                                        "of the survey's catalogue, not a file: join .* at ingest .*shape"):
        study_features_run(run, apply_overrides(cfg, ["study.labels=my_labels.csv"]))
    cfg = apply_overrides(cfg, ["study.labels=Class*"])
    with pytest.raises(UserError, match="matches no catalogue column"):
        study_features_run(run, cfg)
    # a typo in a list was dropped without a word; the quality flags and the framing were learnt as labels
    cat = run.read_catalogue()
    cat["Class1.1"], cat["Class1.2"] = np.linspace(0, 1, 40), np.linspace(1, 0, 40)
    cat["crop"] = np.linspace(0.4, 0.6, 40)
    write_table(run.catalogue, cat)
    for labels, said in (("Class1.1,nosuch", "'nosuch' matches no label column"),
                         ("flag_b*", "matches no catalogue column"),
                         ("crop", "'crop' is a bookkeeping column")):
        with pytest.raises(UserError, match=said):
            study_features_run(run, apply_overrides(cfg, [f"study.labels={labels}"]))


def test_a_class_of_one_galaxy_trains_and_the_others_stay_stratified():
    """One single-member class made the whole split random: a class of 8 could then have no
    validation galaxy at all."""
    from morphospace.study.targets import split_rows

    targets = np.r_[np.zeros(50, int), np.ones(8, int), np.full(30, 2), [3]]
    for seed in range(5):
        train, val, test = split_rows(targets, "classification", 0.2, seed)
        assert len(val) == 18 and 88 in train and not set(train) & set(val) and len(test) == 0
        assert np.bincount(targets[val], minlength=4).tolist() == [10, 2, 6, 0]
    plain = np.r_[np.zeros(50, int), np.ones(8, int), np.full(30, 2)]  # no single: the split as before
    from sklearn.model_selection import train_test_split

    want = train_test_split(np.arange(88), test_size=0.2, stratify=plain, random_state=3, shuffle=True)
    got = split_rows(plain, "classification", 0.2, 3)
    assert all(np.array_equal(np.sort(w), g) for w, g in zip(want, got[:2])) and len(got[2]) == 0


def test_a_test_split_is_drawn_apart_from_training_and_validation_stratified():
    """The rows held out of a fine-tuning chose its epoch too (they were its validation rows): the
    scores made there were a little optimistic. A test split takes no part at all."""
    from morphospace.study.targets import split_rows

    targets = np.r_[np.zeros(60, int), np.ones(30, int), np.full(10, 2)]
    train, val, test = split_rows(targets, "classification", 0.1, 0, test_fraction=0.2)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert np.bincount(targets[test]).tolist() == [12, 6, 2]  # stratified
    assert sorted(np.r_[train, val, test].tolist()) == list(range(100))
    with pytest.raises(UserError, match="cannot give"):  # nothing left to train on
        split_rows(targets[:5], "classification", 0.5, 0, test_fraction=0.4)


def test_validation_scores_of_a_class_without_validation_galaxies_warn_nothing():
    import warnings

    from morphospace.study.targets import validation_scores

    out = np.eye(3)[[0, 1, 2, 0]] * 5  # class 2 predicted, but no validation galaxy of it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = validation_scores(out, np.array([0, 1, 1, 0]), "classification", np.array(["a", "b", "c"]))
    assert scores["val_accuracy"] == 0.75 and scores["val_balanced_accuracy"] == 0.75


def test_a_fine_tuning_killed_after_an_epoch_resumes_where_it_stopped(tmp_path, toy, monkeypatch):
    """A study killed mid fine-tuning started over (no --resume); resumed from last.ckpt it now goes
    on with the next epoch and ends as the uninterrupted one (weights, history, best epoch)."""
    from morphospace.study.training import FineTuneModule

    X, y, _ = toy
    whole = FineTuner("small", epochs=3, random_state=0, checkpoint_dir=str(tmp_path / "whole"), **FAST).fit(X, y)
    started = _killed_at_the_third_epoch(monkeypatch)
    with pytest.raises(RuntimeError, match="killed"):
        FineTuner("small", epochs=3, random_state=0, checkpoint_dir=str(tmp_path / "cut"), **FAST).fit(X, y)
    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", started)
    assert torch.load(tmp_path / "cut" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1
    epochs = []
    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", lambda self: (epochs.append(self.current_epoch),
                                                                            started(self)))
    resumed = FineTuner("small", epochs=3, random_state=0, checkpoint_dir=str(tmp_path / "cut"), resume=True,
                        **FAST).fit(X, y)
    assert epochs == [2]  # the third epoch alone
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3] and resumed.best_epoch_ == whole.best_epoch_
    for a, b in zip(whole.history_, resumed.history_):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    np.testing.assert_array_equal(resumed.transform(X), whole.transform(X))  # on the CPU, to the last digit
    with pytest.raises(UserError, match="nothing to resume"):
        FineTuner("small", epochs=3, random_state=0, checkpoint_dir=str(tmp_path / "none"), resume=True,
                  **FAST).fit(X, y)
    with pytest.raises(UserError, match="give one"):
        FineTuner("small", epochs=3, random_state=0, resume=True, **FAST).fit(X, y)
    # another schedule, other labels: refused (the schedule's length and the labels came back from the
    # checkpoint: a model no run asked for); the same settings again: nothing more to train
    for other, why in ((dict(epochs=4), "epochs"), (dict(random_state=1), "seed"), (dict(lr=1e-3), "lr")):
        with pytest.raises(UserError, match=f"other .*{why}"):
            FineTuner("small", checkpoint_dir=str(tmp_path / "cut"), resume=True,
                      **{**FAST, "epochs": 3, "random_state": 0, **other}).fit(X, y)
    with pytest.raises(UserError, match="other labels"):
        FineTuner("small", epochs=3, random_state=0, checkpoint_dir=str(tmp_path / "cut"), resume=True,
                  **FAST).fit(X, y[::-1])


def test_a_fine_tuning_that_stopped_early_is_not_trained_further_when_resumed(tmp_path, toy, monkeypatch):
    """Lightning keeps no "stop now" in its checkpoint: resumed, a fit that had stopped early trained on."""
    from morphospace.study.training import FineTuneModule

    X, y, _ = toy
    noise = np.random.default_rng(0).permutation(y)  # the validation loss soon rises
    settings = dict(epochs=6, random_state=0, checkpoint_dir=str(tmp_path / "ckpt"), **{**FAST, "patience": 1})
    stopped = FineTuner("small", **settings).fit(X, noise)
    assert len(stopped.history_) < 6
    started = FineTuneModule.on_train_epoch_start
    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", lambda self: pytest.fail("trained again"))
    again = FineTuner("small", resume=True, **settings).fit(X, noise)
    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", started)
    assert again.history_ == stopped.history_ and again.best_epoch_ == stopped.best_epoch_
    np.testing.assert_array_equal(again.transform(X), stopped.transform(X))


def test_resuming_a_study_of_the_built_in_survey_is_not_refused():
    """A study of the built-in synthetic survey (no --data) read it from the cache; the resume check
    compared that path with the empty data.path given again and refused every --resume of it."""
    from morphospace.pipeline.study import _what_made_the_features_changed

    earlier = Config()
    assert _what_made_the_features_changed(earlier, Config(), "/cache/synth-v1.2-n2000-seed0") == []
    given = apply_overrides(Config(), ["data.path=/data/survey"])
    assert _what_made_the_features_changed(given, Config(), "/data/survey") == ["data.path: '/data/survey' -> ''"]
    assert _what_made_the_features_changed(earlier, given, "/cache/synth") == ["data.path: '' -> '/data/survey'"]


def test_a_refused_resume_leaves_the_study_resumable(tmp_path, monkeypatch, capsys):
    """`study --resume` with another cube size (or other galaxies) re-ingested first, set the model
    folder aside with the rest of the run, then found "nothing to resume", and the right command
    afterwards too; now it refuses at once, naming what differs, and the run is as it was."""
    from morphospace.cli import main
    from morphospace.study.training import FineTuneModule

    survey, run = tmp_path / "survey", tmp_path / "run"
    assert main(["synth", "--n", "24", "--seed", "3", "--out", str(survey), "--size", "48", "--quiet"]) == 0
    monkeypatch.chdir(tmp_path)  # the survey given relative to here, as typed: config.toml keeps it so
    settings = ["--labels", "morphology", "--backbone", "small", "--epochs", "3", "--quiet",
                "--set", "preprocess.size=32", "--set", "study.input_size=32", "--set", "study.batch_size=8",
                "--set", "study.patience=0", "--set", "cluster.kmeans_k=[3]", "--set", "cluster.reductions=['pca']"]
    command = ["study", "--data", "survey", "--out", "run", *settings]
    started = _killed_at_the_third_epoch(monkeypatch)
    with pytest.raises(RuntimeError, match="killed"):
        main(command)
    last = run / "models" / "small" / "last.ckpt"
    kept = {p: p.read_bytes() for p in (last, run / "config.toml", run / "cube.npy")}
    capsys.readouterr()
    assert main([*command, "--resume", "--set", "preprocess.size=48"]) == 2
    line = capsys.readouterr().err.strip()
    assert "preprocess.size: 32 -> 48" in line and "\n" not in line, line
    assert all(p.read_bytes() == data for p, data in kept.items()) and not (run / "superseded").exists()
    # another seed (the fine-tuning's split): refused by the checkpoint only after it was saved as the run's
    assert main([*command, "--resume", "--set", "train.seed=3"]) == 2
    assert "train.seed: 0 -> 3" in capsys.readouterr().err
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert main([*command, "--resume", "--set", "train.precision=bf16-mixed"]) == 2  # taken without a word
    assert "train.precision: '32-true' -> 'bf16-mixed'" in capsys.readouterr().err
    assert all(p.read_bytes() == data for p, data in kept.items())
    epochs = []
    monkeypatch.setattr(FineTuneModule, "on_train_epoch_start", lambda self: (epochs.append(self.current_epoch),
                                                                            started(self)))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the same survey and run, from another folder
    assert main(["study", "--data", "../survey", "--out", "../run", *settings, "--resume"]) == 0
    assert epochs == [2]


def test_study_settings_a_study_does_not_use_are_said(caplog):
    """A frozen study's study.lr, .patience and .epochs, and a vade or ssl study's study.weights,
    .input_size and .lr, were dropped without a word (only vade's mode and epochs were said)."""
    import logging

    from morphospace.pipeline.study import _say_study_settings_unused

    cases = {("study.mode=frozen", "study.lr=0.5", "study.patience=7", "study.input_size=64"):
             "study.lr = 0.5, study.patience = 7: not used by a frozen backbone",
             ("study.backbone=vade", "study.weights=/x.pt", "study.input_size=64"):
             "study.weights = '/x.pt', study.input_size = 64: not used by the vade backbone",
             ("study.lr=0.5", "study.patience=7"): None}
    for settings, said in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="morphospace"):
            _say_study_settings_unused(apply_overrides(Config(), list(settings)))
        assert (said in caplog.text) if said else caplog.text == "", settings


def test_resuming_a_fine_tuning_begun_before_test_splits_says_why_it_cannot(tmp_path):
    """Its split (train / validation) never matches a split with test rows: the resume was refused as
    "of a fine-tuning with other split, ... than this one's", which blamed settings the user never changed."""
    from types import SimpleNamespace

    from morphospace.study.training import _resumable

    before = {"backbone": "small", "split": "aa", "seed": 0}
    torch.save({"morphospace": {"signature": before}}, tmp_path / "last.ckpt")
    now = SimpleNamespace(signature={**before, "split": "bb", "val_fraction": 0.1, "test_fraction": 0.2})
    with pytest.raises(UserError, match="begun before fine-tunings held out a test split"):
        _resumable(tmp_path / "last.ckpt", now)
    torch.save({"morphospace": {"signature": now.signature}}, tmp_path / "last.ckpt")
    assert _resumable(tmp_path / "last.ckpt", now) is None  # the same fine-tuning: goes on


def test_a_small_studys_validation_split_holds_every_class_it_can():
    """10% of 40 galaxies of 6 classes is 4: fewer than the classes, so the split was drawn at random
    and the classes it missed chose no epoch. One of each now, up to twice the share asked."""
    from morphospace.study.targets import split_rows

    targets = np.repeat(np.arange(6), [12, 10, 8, 5, 3, 2])
    for seed in range(10):
        train, val, test = split_rows(targets, "classification", 0.1, seed, test_fraction=0.2)
        assert len(set(train) | set(val) | set(test)) == 40 == len(train) + len(val) + len(test)
        left = np.bincount(targets[np.r_[train, val]], minlength=6)  # what the test split left to split
        assert set(targets[val]) == set(np.flatnonzero(left >= 2)) and len(val) <= 8
