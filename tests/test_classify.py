"""Few-label classification: the estimator, its suggestions, `morphospace classify` and the export's columns."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from sklearn.metrics import balanced_accuracy_score

from morphospace.analysis.classes import column_names, read_labels
from morphospace.analysis.calibration import _temperature, calibration_scores
from morphospace.analysis.calibration import softmax as _softmax
from morphospace.analysis.classify import FewLabelClassifier, margin_uncertainty
from morphospace.cli import main
from morphospace.errors import InvalidArgument, UserError
from morphospace.export import results_table
from morphospace.run import RunDir, write_npy, write_table

CENTRES = {"round": (0.0, 0.0), "disk": (6.0, 0.0), "edge": (0.0, 6.0)}


def _groups(n=60, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(list(CENTRES), n // 3)
    X = np.array([CENTRES[v] + (0.0, 0.0) for v in y]) + rng.normal(0, spread, (n, 4))
    return X, y


# --- the estimator ---------------------------------------------------------------------------------

def test_separable_classes_are_learnt_and_scored_high():
    X, y = _groups(45)
    clf = FewLabelClassifier(random_state=0).fit(X, y)
    assert list(clf.classes_) == sorted(CENTRES)
    assert clf.cv_balanced_accuracy_ > 0.95 and clf.cv_n_splits_ == 5
    assert clf.cv_confusion_matrix_.sum() == 45 and np.trace(clf.cv_confusion_matrix_) >= 43
    proba = clf.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1) and (clf.predict(X) == clf.classes_[proba.argmax(1)]).all()
    assert balanced_accuracy_score(y, clf.predict(X)) > 0.95
    assert {"temperature", "before", "after"} <= set(clf.calibration_)


def test_a_column_vector_of_labels_is_taken_and_said_as_scikit_learn_says_it():
    """y of shape (n, 1) was taken without a word; scikit-learn's estimators warn DataConversionWarning."""
    from sklearn.exceptions import DataConversionWarning

    X, y = _groups(45)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        column = FewLabelClassifier(random_state=0).fit(X, y[:, None])
    assert np.array_equal(column.predict(X), FewLabelClassifier(random_state=0).fit(X, y).predict(X))


def test_classes_named_by_digits_are_learnt_like_any_others():
    """Galaxy Zoo's class columns are numbers (gz1_class 0-5), read as text; scikit-learn's
    class-balanced LogisticRegressionCV refuses such labels unless they are coded first."""
    from morphospace.analysis.probe import linear_probe

    X, y = _groups(45)
    digits = np.array([{"round": "0", "disk": "3", "edge": "5"}[v] for v in y])
    clf = FewLabelClassifier(random_state=0).fit(X, digits)
    assert list(clf.classes_) == ["0", "3", "5"] and clf.cv_balanced_accuracy_ > 0.95
    assert set(clf.predict(X)) == {"0", "3", "5"}
    scores = linear_probe(X, digits, fractions=(1.0,), repeats=1)
    assert (scores["balanced_accuracy"] > 0.95).all()


def test_labels_unrelated_to_the_embedding_score_near_chance():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(60, 4)), rng.choice(["a", "b", "c"], 60)
    assert FewLabelClassifier(cv=3, random_state=0).fit(X, y).cv_balanced_accuracy_ < 0.6


def test_folds_follow_the_smallest_class_and_missing_labels_are_the_pool():
    X, y = _groups(60)
    lab = np.full(60, None, dtype=object)
    lab[[0, 1, 2, 20, 21, 40, 41]] = y[[0, 1, 2, 20, 21, 40, 41]]
    lab[5] = float("nan")
    lab[6] = " "
    clf = FewLabelClassifier().fit(X, lab)
    assert clf.cv_n_splits_ == 2 and clf.labelled_.sum() == 7
    assert clf.cv_confusion_matrix_.sum() == 7
    # scored with its own labels, the missing ones left out (scikit-learn's score failed on the mix)
    assert clf.score(X, lab) == pytest.approx(np.mean(clf.predict(X[clf.labelled_]) == lab[clf.labelled_]))
    assert clf.score(X, y) == pytest.approx(np.mean(clf.predict(X) == y))
    with pytest.raises(ValueError, match="every label is missing"):
        clf.score(X, np.full(60, None, dtype=object))
    # fitted on integers, scored on the same classes as a float column with gaps (pandas' way): 0 before
    codes = pd.factorize(y)[0]
    by_code = FewLabelClassifier().fit(X, codes)
    gappy = pd.Series(codes, dtype=float).where(np.arange(60) % 4 != 0)
    assert by_code.score(X, gappy) == pytest.approx(by_code.score(X, codes)) and by_code.score(X, codes) > 0.9
    with pytest.raises(ValueError, match="sample_weight must be"):
        by_code.score(X, codes, sample_weight=np.zeros(60))


@pytest.mark.parametrize("labels, message", [
    (["a"] * 6, "only one class"),
    (["a"] * 5 + ["b"], "1 of the 2 classes have 1: 'b'"),
    # a column of names: 12 classes of one named in one line, the first five and a count
    ([f"g{i:02d}" for i in range(12)] + ["a", "a"], "12 of the 13 classes have 1: 'g00', 'g01', 'g02', 'g03', "
                                                    "'g04' and 7 more (is the column of classes, not of names"),
])
def test_labels_that_cannot_train_are_one_line_errors(labels, message):
    X = np.random.default_rng(0).normal(size=(len(labels), 3))
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        FewLabelClassifier().fit(X, labels)


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_the_predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 3))
    true = _softmax(logits / 3.0)  # the logits are three times too confident
    codes = np.array([rng.choice(3, p=p) for p in true])
    t = _temperature(logits, codes)
    assert 2.6 < t < 3.4
    before, after = calibration_scores(_softmax(logits), codes), calibration_scores(_softmax(logits / t), codes)
    assert after["ece"] < before["ece"] / 3 and after["brier"] < before["brier"]
    assert (_softmax(logits / t).argmax(1) == logits.argmax(1)).all()


def test_few_labels_do_not_make_overconfident_probabilities():
    """Four labels a class: each fold's model chose a penalty 30-300x stronger than the final model's,
    a temperature of 0.05 was fitted to those small logits and applied to the final model's large
    ones: 0.95 confidence for 60% accuracy, most galaxies above 0.99 (sdss-gz1: 96%, right for 72%).
    Scored on the galaxies whose labels it never saw, over six draws of the labels."""
    gaps, sure = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 3, 600)
        X = (rng.normal(0, 1.0, (3, 32)) * 0.35)[y] + rng.normal(0, 1, (600, 32))
        chosen = np.concatenate([rng.choice(np.flatnonzero(y == c), 4, replace=False) for c in range(3)])
        labels = np.full(600, None, dtype=object)
        labels[chosen] = np.array(["a", "b", "c"])[y[chosen]]
        clf = FewLabelClassifier(random_state=0).fit(X, labels)
        rest = np.setdiff1d(np.arange(600), chosen)
        proba = clf.predict_proba(X[rest])
        gaps.append(abs(proba.max(1).mean() - (proba.argmax(1) == y[rest]).mean()))
        sure.append((proba.max(1) > 0.99).mean())
        # what it reports of itself is of held-out folds, and says when it left the probabilities as they were
        cal = clf.calibration_
        assert {"before", "after", "method"} <= set(cal)
        assert (clf.temperature_ == 1.0) == cal["method"].startswith("none"), cal
    assert np.mean(gaps) < 0.15 and np.mean(sure) < 0.05, (gaps, sure)


def test_labels_that_are_no_labels_are_said_so():
    """fit(X, None) said "X has 40 rows but y has 1 labels"; an infinite label was a class named "inf"."""
    X, y = _groups(30)
    with pytest.raises(InvalidArgument, match="y must hold one label per row .*got None"):
        FewLabelClassifier().fit(X, None)
    bad = y.astype(object)
    bad[4] = float("inf")
    with pytest.raises(InvalidArgument, match="y holds 1 infinite label"):
        FewLabelClassifier().fit(X, bad)
    nan = y.astype(object)
    nan[4] = float("nan")  # NaN is no label, as always
    assert FewLabelClassifier().fit(X, nan).labelled_.sum() == 29
    # a class named "none" (bar: none / weak / strong) went into the unlabelled pool without a word, as
    # the command line's labels file no longer lets it
    named = np.array(["none"] * 10 + ["weak"] * 10 + [" None "] + [None] * 9, dtype=object)
    with pytest.raises(InvalidArgument, match=r"y holds \[' None ', 'none'\] \(11 labels\): read as no label"):
        FewLabelClassifier().fit(X, named)
    with pytest.raises(InvalidArgument, match=r"X holds values up to [0-9.]+e\+300, too large"):  # was "X contains NaN"
        FewLabelClassifier().fit(X * 1e300, y)


def test_margin_uncertainty_and_calibration_scores_by_hand():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.6, 0.3, 0.1]])
    assert np.allclose(margin_uncertainty(p), [0.0, 1.0, 0.7])
    s = calibration_scores(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    assert s["brier"] == pytest.approx(1.0) and s["ece"] == pytest.approx(0.5)


# --- suggestions ------------------------------------------------------------------------------------

def test_suggestions_are_uncertain_diverse_and_never_labelled():
    rng = np.random.default_rng(1)
    # two classes split by x = 0; a clump of 30 near-copies of one galaxy right on the boundary
    X = np.column_stack([rng.uniform(-4, 4, 200), rng.uniform(-4, 4, 200)])
    clump = np.array([0.0, 3.0]) + rng.normal(0, 1e-3, (30, 2))
    X = np.vstack([X, clump])
    y = np.where(X[:, 0] > 0, "right", "left").astype(object)
    lab = np.full(len(X), None, dtype=object)
    known = rng.choice(200, 20, replace=False)
    lab[known] = y[known]
    clf = FewLabelClassifier(cv=2, random_state=0).fit(X, lab)
    picks = clf.suggest(8)
    assert len(picks) == 8 == len(set(picks.tolist()))
    assert not clf.labelled_[picks].any()
    u = clf.uncertainty()
    assert u[picks].min() > np.median(u[~clf.labelled_])  # uncertain
    assert (np.abs(X[picks, 0]) < 2).all()  # near the boundary
    assert np.isin(picks, np.arange(200, 230)).sum() <= 2  # not eight copies of the clump
    top8 = np.argsort(-np.where(clf.labelled_, -1, u))[:8]
    spread = lambda rows: np.ptp(X[rows, 1])  # noqa: E731
    assert spread(picks) > 2 * spread(top8) or np.isin(top8, np.arange(200, 230)).sum() < 4
    assert len(clf.suggest(10_000)) == (~clf.labelled_).sum()  # capped by the pool


def test_without_labels_the_seeds_cover_every_group():
    X, y = _groups(60)
    clf = FewLabelClassifier(random_state=0).fit(X, [None] * 60)
    seeds = clf.suggest(3)
    assert sorted(y[seeds]) == sorted(CENTRES)
    with pytest.raises(UserError, match="without labels"):
        clf.predict(X)


def _al_curve(X, y, choose, seed, start=2, batch=5, rounds=4):
    rng = np.random.default_rng(seed)
    lab = np.full(len(y), None, dtype=object)
    for c in np.unique(y):
        idx = rng.choice(np.flatnonzero(y == c), start, replace=False)
        lab[idx] = y[idx]
    scores = []
    for r in range(rounds + 1):
        clf = FewLabelClassifier(random_state=seed).fit(X, lab)
        scores.append(balanced_accuracy_score(y, clf.predict(X)))
        if r < rounds:
            pick = clf.suggest(batch) if choose == "suggest" else rng.choice(np.flatnonzero(lab == None), batch,  # noqa: E711
                                                                                  replace=False)
            assert (lab[pick] == None).all()  # noqa: E711 (never a labelled galaxy)
            lab[pick] = y[pick]
    return np.array(scores)


@pytest.mark.slow
def test_active_learning_beats_random_choice_on_a_toy_problem():
    gains = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        y = rng.choice(np.array(["a", "b", "c"]), 600, p=[0.9, 0.08, 0.02])  # rare classes
        X = np.array([{"a": (0, 0), "b": (3.5, 0), "c": (0, 3.5)}[v] for v in y]) + rng.normal(0, 1, (600, 2))
        X = np.hstack([X, rng.normal(0, 1, (600, 6))])
        al, rand = _al_curve(X, y, "suggest", seed), _al_curve(X, y, "random", seed)
        gains.append(al[1:].mean() - rand[1:].mean())
    # measured: mean gain 0.10 in balanced accuracy over rounds 1-4, 4 seeds of 5 ahead
    assert np.mean(gains) > 0.03 and sum(g > 0 for g in gains) >= 3


# --- the run: `morphospace classify` and the export -------------------------------------------------

HOSTILE = {"round": 'round "E0"', "disk": "disk/spiral arms", "edge": "édge on"}
HOSTILE_BY_SAFE = {"round_E0": 'round "E0"', "disk_spiral_arms": "disk/spiral arms", "edge_on": "édge on"}


@pytest.fixture
def tiny_run(tmp_path):
    X, y = _groups(60)
    run = RunDir(tmp_path / "run", create=True)
    ids = [f"g{i:02d}" for i in range(60)][::-1]  # not in cube order
    cat = pd.DataFrame({"id": ids + ["flagged"], "morph": list(y[::-1]) + ["round"],
                        "cube_index": list(range(60))[::-1] + [-1]})
    write_table(run.catalogue, cat)
    write_npy(run.cube, np.random.default_rng(0).random((60, 3, 8, 8)).astype(np.float32))
    write_npy(run.embedding_path("form"), X.astype(np.float32))
    return run, X, y


def _csv(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def _labels(run, y, rows):
    ids = run.cube_ids()
    return "\n".join(["id,kind"] + [f'{ids[r]},"{HOSTILE[y[r]].replace(chr(34), chr(34) * 2)}"' for r in rows]) + "\n"


def test_the_suggestions_file_runs_no_formula_in_a_spreadsheet(tiny_run, tmp_path, capsys):
    """The suggestions file is opened in a spreadsheet to fill in: classes named '=1+1' or '+cmd' were
    written as they were, and ran there as formulas. Now as text; the ids as they are."""
    run, X, y = tiny_run
    ids = run.cube_ids()
    names = {"round": "=1+1", "disk": "+cmd", "edge": "edge"}
    rows = [0, 1, 2, 3, 20, 21, 22, 23, 40, 41, 42, 43]
    path = _csv(tmp_path / "labels.csv", "id,kind\n" + "".join(f"{ids[r]},{names[y[r]]}\n" for r in rows))
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "kind", "--suggest", "6",
                 "--quiet"]) == 0
    sugg = pd.read_csv(run.path / "classes" / "kind_suggest.csv", dtype=str, keep_default_na=False)
    shown = set(sugg["first"]) | set(sugg["second"])
    assert shown and shown <= {"'=1+1", "'+cmd", "edge"} and set(sugg["id"]) <= set(ids)
    meta = json.loads((run.path / "classes" / "kind.json").read_text())
    assert {c["name"] for c in meta["classes"]} == set(names.values())  # the classes themselves as named


def test_a_class_named_like_no_label_is_refused_not_dropped(tmp_path):
    """bar: none / weak / strong: 'none' was read as no label, and its galaxies left out of training with
    only a count said (no galaxy could ever be classed 'none'). Blank cells are still no label."""
    from morphospace.analysis.label_files import read_labels

    path = _csv(tmp_path / "bar.csv", "id,bar\na,none\nb,weak\nc,strong\nd,\ne,None\n")
    with pytest.raises(UserError, match=r"'bar' holds 'None', 'none' \(2 rows\): read as no label, it would drop a "
                                        r"class of that name; leave a cell blank for no label, or name such a class "
                                        r"otherwise \(e.g. 'no_bar'\)"):
        read_labels(path, "bar")
    # blank cells and the machine markers (R's write.csv writes NA) stay no label, said with a count
    pairs, notes = read_labels(_csv(tmp_path / "ok.csv", "id,bar\na,no_bar\nb,weak\nd,\ne,NA\nf,N/A\n"), "bar")
    assert pairs["label"].tolist() == ["no_bar", "weak"] and "3 rows without a label in 'bar'" in notes[0]


def test_a_class_guarded_against_spreadsheet_formulas_is_read_as_its_name(tmp_path):
    """The explorer's "Download labels CSV" and the suggestions file write a class a spreadsheet would
    run as a formula with a leading apostrophe ('=E for =E); read back, the apostrophe was kept and
    the class renamed without a word ('=E in the classes and the export, prob_..._E beside it)."""
    from morphospace.analysis.label_files import read_labels
    from morphospace.run import spreadsheet_guard_removed, spreadsheet_safe

    path = _csv(tmp_path / "expl.csv", "id,'=flag\na,'=E\nb,S\nc,'-x\nd,'5\ne,'@home\nf,'it\n")
    pairs, _ = read_labels(path, "=flag")  # the colouring's name is guarded in the header too
    assert pairs["label"].tolist() == ["=E", "S", "-x", "'5", "@home", "'it"]  # '5, 'it: no guard wrote those
    other = _csv(tmp_path / "ids.csv", "'-id,'=flag\na,'=E\n")  # only the column asked for is read unguarded
    assert read_labels(other, "=flag", id_column="'-id")[0]["id"].tolist() == ["a"]
    names = pd.DataFrame({"id": ["=1", "-2"], "kind": ["=E", "-3"], "more": ["+x", "\tt"]})
    safe = spreadsheet_safe(names, keep=("id",))
    assert safe["kind"].tolist() == ["'=E", "-3"]  # a plain number is no formula
    assert all(spreadsheet_guard_removed(safe[c].astype("string")).tolist() == names[c].tolist()
               for c in ("kind", "more"))


def test_classify_end_to_end_writes_classes_suggestions_and_export_columns(tiny_run, tmp_path, capsys):
    run, X, y = tiny_run
    rows = [0, 1, 2, 3, 20, 21, 22, 23, 40, 41, 42, 43]
    text = _labels(run, y, rows) + "nope,disk\n,disk\ng99x,\nflagged,round\n"
    text += f'{run.cube_ids()[0]},"{HOSTILE[y[0]].replace(chr(34), chr(34) * 2)}"\n'  # the same row twice
    path = _csv(tmp_path / "labels.csv", text)
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "kind", "--suggest", "5",
                 "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "cross-validated balanced accuracy" in out and "confusion matrix" in out
    assert json.loads((run.path / "classes" / "kind.json").read_text())["cv"]["balanced_accuracy"] > 0.85
    for line in ("1 id not in the run: ignored (ids 'nope')", "1 row without an id", "1 row without a label",
                 "1 id in the catalogue but not in the cube", "1 repeated row"):
        assert line in err and line in run.log.read_text()
    meta = json.loads((run.path / "classes" / "kind.json").read_text())
    assert {c["name"] for c in meta["classes"]} == set(HOSTILE.values())
    assert {c["column"] for c in meta["classes"]} == {"round_E0", "disk_spiral_arms", "edge_on"}
    assert meta["n_labelled"] == 12 and len(meta["notes"]) == 5
    table = pd.read_parquet(run.path / "classes" / "kind.parquet")
    assert (table["class"].to_numpy() == np.array([HOSTILE[v] for v in y])).mean() > 0.95
    sugg = pd.read_csv(run.path / "classes" / "kind_suggest.csv")
    labelled = set(run.cube_ids()[rows])
    assert len(sugg) == 5 and sugg["id"].is_unique and not set(sugg["id"]) & labelled
    assert sugg["why"].str.startswith("uncertain").all()

    res = results_table(run)
    assert {"class_kind", "prob_kind_round_E0", "prob_kind_disk_spiral_arms", "prob_kind_edge_on"} <= set(res.columns)
    inside = res[res["id"] != "flagged"].set_index("id")
    safe = {"round": "round_E0", "disk": "disk_spiral_arms", "edge": "edge_on"}  # as in the prob_ columns
    expected = pd.Series([safe[v] for v in y], index=run.cube_ids())
    # the classes as the labels named them (they were the column-safe names: 'a b' and 'a_b' alike)
    assert (inside["class_kind"] == table.set_index("id")["class"].reindex(inside.index)).all()
    assert (inside["class_kind"] == expected.map(HOSTILE_BY_SAFE).reindex(inside.index)).mean() > 0.95
    assert pd.isna(res.loc[res["id"] == "flagged", "class_kind"]).all()
    probs = inside[[c for c in res.columns if c.startswith("prob_kind_")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    for ext in ("fits", "csv"):
        assert main(["export", str(run.path), "--out", str(tmp_path / f"r.{ext}"), "--quiet"]) == 0
    # FITS text is ASCII: there, and there only, the classes go by their column-safe names
    # (a non-ASCII class by its nearest ASCII text, the ASCII ones as they are: one renamed all of them)
    assert set(Table.read(tmp_path / "r.fits")["class_kind"].filled("")) - {""} == {'round "E0"', "disk/spiral arms",
                                                                                   "edge on"}
    assert set(pd.read_csv(tmp_path / "r.csv")["class_kind"].dropna()) <= set(HOSTILE.values())
    assert "1 class(es) not in ASCII written for FITS as 'édge on' -> 'edge on'" in run.log.read_text()
    meta["classes"][0]["column"] = "other"  # a json that is not the table's (an interrupted classify)
    (run.path / "classes" / "kind.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="do not belong together"):
        results_table(run)


def test_classify_without_labels_suggests_diverse_seeds(tiny_run, capsys):
    run, X, y = tiny_run
    assert main(["classify", str(run.path), "--column", "kind", "--suggest", "3", "--quiet"]) == 0
    sugg = pd.read_csv(run.path / "classes" / "kind_suggest.csv")
    rows = [list(run.cube_ids()).index(i) for i in sugg["id"]]
    assert sorted(y[rows]) == sorted(CENTRES) and sugg["why"].str.contains("seed").all()
    assert not (run.path / "classes" / "kind.parquet").exists()
    assert "no labels yet" in capsys.readouterr().out


def test_every_galaxy_labelled_leaves_nothing_to_suggest_and_no_stale_suggestions(tiny_run, tmp_path, capsys):
    """Labels for every galaxy with --suggest: the classes are written and the log says nothing is
    left to suggest (it stopped on scikit-learn's "0 samples" after writing the classes); an
    earlier classification's suggestions are removed, not left beside the new classes; the
    seeds' heading counts the seeds there are."""
    run, X, y = tiny_run
    few = _csv(tmp_path / "few.csv", _labels(run, y, [0, 1, 20, 21, 40, 41]))
    assert main(["classify", str(run.path), "--labels", str(few), "--column", "kind", "--suggest", "3", "--quiet"]) == 0
    assert (run.path / "classes" / "kind_suggest.csv").is_file()
    every = _csv(tmp_path / "all.csv", _labels(run, y, range(60)))
    capsys.readouterr()
    assert main(["classify", str(run.path), "--labels", str(every), "--column", "kind", "--suggest", "3"]) == 0
    out, err = capsys.readouterr()
    assert "only 0 unlabelled galaxies left to suggest" in err and "cross-validated balanced accuracy" in out
    # the summary once, saying it all (it came twice, in the log's words on stderr and the command's on stdout)
    said = [line for line in (out + err).splitlines() if "balanced accuracy" in line]
    assert len(said) == 1 and re.fullmatch(r"classify 'kind' on '[^']+': 60 labels, 3 classes, cross-validated "
                                           r"balanced accuracy \d\.\d{3} \(\d-fold\)", said[0]), said
    assert said[0] in run.log.read_text()  # and in the run's log
    assert json.loads((run.path / "classes" / "kind.json").read_text())["n_labelled"] == 60
    assert not (run.path / "classes" / "kind_suggest.csv").exists()
    assert main(["classify", str(run.path), "--labels", str(few), "--column", "kind", "--quiet"]) == 0
    assert not (run.path / "classes" / "kind_suggest.csv").exists()  # none asked for: none from before
    assert main(["classify", str(run.path), "--column", "seeds", "--suggest", "70", "--quiet"]) == 0
    assert "no labels yet: 60 diverse galaxies" in capsys.readouterr().out


def test_a_column_filed_as_a_clustering_is_refused_before_any_work(tiny_run, capsys):
    """Its prob_<name>_<class> columns were the clustering's in the export, which then refused the run."""
    run, X, y = tiny_run
    run.write_clustering("vade", run.cube_ids(), np.arange(len(run.cube_ids())) % 2)
    try:
        code = main(["classify", str(run.path), "--column", "vade", "--suggest", "3", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "would be filed as 'vade', the name of the run's clustering 'vade'" in err
        assert not (run.path / "classes" / "vade_suggest.csv").exists()
    finally:
        run.clustering_path("vade").unlink()


def test_a_class_exported_as_a_clustering_s_column_is_refused_before_it_is_written(tiny_run, tmp_path, capsys):
    """Classification 'gmm3' with a class 'form_pca_0' is exported as prob_gmm3_form_pca_0, the soft
    clustering gmm3_form_pca's column too: classify took it, and every export then refused the run."""
    run, X, y = tiny_run
    ids = run.cube_ids()
    run.write_clustering("gmm3_form_pca", ids, np.arange(len(ids)) % 3, np.full((len(ids), 3), 1 / 3))
    names = {"round": "form_pca_0", "disk": "form_pca_1", "edge": "edge"}
    rows = [0, 1, 2, 20, 21, 22, 40, 41, 42]
    labels = _csv(tmp_path / "g.csv", "id,gmm3\n" + "".join(f"{ids[r]},{names[y[r]]}\n" for r in rows))
    try:
        code = main(["classify", str(run.path), "--labels", str(labels), "--column", "gmm3", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "its class 'form_pca_0' would be exported as 'prob_gmm3_form_pca_0', the column of " \
            "the run's clustering 'gmm3_form_pca'" in err and len(err.strip().splitlines()) == 1
        assert not (run.path / "classes" / "gmm3.parquet").exists()
        assert main(["export", str(run.path), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    finally:
        run.clustering_path("gmm3_form_pca").unlink()


def test_classifications_whose_export_columns_meet_or_differ_in_case_only_are_refused(tiny_run, tmp_path, capsys):
    """Classification 'a' with class 'b_c' and classification 'a_b' with class 'c' were both exported
    as prob_a_b_c, the second's silently replacing the first's; 'label' and 'Label' were both taken
    and then blocked every FITS export. Refused at classify, in one line, nothing written."""
    run, X, y = tiny_run
    ids = run.cube_ids()
    rows = [0, 1, 2, 20, 21, 22, 40, 41, 42]
    first = _csv(tmp_path / "a.csv", "id,a\n" + "".join(f"{ids[r]},{dict(round='b_c', disk='d', edge='e')[y[r]]}\n" for r in rows))
    second = _csv(tmp_path / "ab.csv", "id,a_b\n" + "".join(f"{ids[r]},{dict(round='c', disk='f', edge='g')[y[r]]}\n" for r in rows))
    assert main(["classify", str(run.path), "--labels", str(first), "--column", "a", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["classify", str(run.path), "--labels", str(second), "--column", "a_b", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its class 'c' would be exported as 'prob_a_b_c', the column of the " \
        "run's classification 'a'" in err
    assert not (run.path / "classes" / "a_b.json").exists()
    upper = _csv(tmp_path / "A.csv", "id,A\n" + "".join(f"{ids[r]},{dict(round='x', disk='y', edge='z')[y[r]]}\n" for r in rows))
    assert main(["classify", str(run.path), "--labels", str(upper), "--column", "A", "--quiet"]) == 2
    assert "beside the classes of 'a', a name that differs only in case" in capsys.readouterr().err
    assert sorted(p.name for p in (run.path / "classes").iterdir()) == ["a.json", "a.parquet"]
    assert main(["export", str(run.path), "--out", str(tmp_path / "r.fits"), "--quiet"]) == 0


def test_a_refused_classify_leaves_the_filled_in_suggestions_where_they_were(tiny_run, capsys):
    """A classify refused (a class exported as a clustering's column) had already renamed the user's
    filled-in suggestions file to _filled1; the same command again said the file was not found."""
    run, X, y = tiny_run
    ids = run.cube_ids()
    run.write_clustering("gmm3_form_pca", ids, np.arange(len(ids)) % 3, np.full((len(ids), 3), 1 / 3))
    try:
        assert main(["classify", str(run.path), "--column", "gmm3", "--suggest", "6", "--quiet"]) == 0
        path = run.path / "classes" / "gmm3_suggest.csv"
        seeds = pd.read_csv(path, keep_default_na=False)
        seeds["gmm3"] = ["form_pca_0", "edge"] * 3
        seeds.to_csv(path, index=False)
        filled = path.read_bytes()
        for _ in range(2):
            code = main(["classify", str(run.path), "--labels", str(path), "--column", "gmm3", "--suggest", "3",
                         "--quiet"])
            assert code == 2 and "would be exported as 'prob_gmm3_form_pca_0'" in capsys.readouterr().err
            assert path.read_bytes() == filled and not (run.path / "classes" / "gmm3_suggest_filled1.csv").exists()
    finally:
        run.clustering_path("gmm3_form_pca").unlink()


def test_a_damaged_classification_record_is_named_itself(tiny_run, tmp_path, capsys):
    """A damaged classes/<name>.json was reported as its .parquet being damaged, and a JSON list as the
    record ended the export with a traceback (AttributeError)."""
    run, X, y = tiny_run
    few = _csv(tmp_path / "few.csv", _labels(run, y, [0, 1, 20, 21, 40, 41]))
    assert main(["classify", str(run.path), "--labels", str(few), "--column", "kind", "--quiet"]) == 0
    record = run.path / "classes" / "kind.json"
    for text in ("{", "[]"):
        record.write_text(text)
        capsys.readouterr()
        assert main(["export", str(run.path), "--out", str(tmp_path / f"r{len(text)}.csv"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "classes/kind.json is damaged" in err and len(err.strip().splitlines()) == 1, err


def test_classes_made_before_the_embedding_was_written_again_are_said_stale(tiny_run, tmp_path, capsys):
    """After a new training the export carried the earlier embedding's classes without a word."""
    import os

    run, X, y = tiny_run
    text = _labels(run, y, [0, 1, 2, 3, 20, 21, 22, 23, 40, 41, 42, 43]).replace("id,kind", "id,stale", 1)
    path = _csv(tmp_path / "labels.csv", text)
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "stale", "--quiet"]) == 0
    meta = json.loads((run.path / "classes" / "stale.json").read_text())
    try:
        assert main(["export", str(run.path), "--out", str(tmp_path / "a.csv")]) == 0
        assert "classification 'stale'" not in capsys.readouterr().err
        embedding = run.embedding_path(meta["embedding"])
        original = embedding.read_bytes()
        later = (run.path / "classes" / "stale.parquet").stat().st_mtime + 5
        os.utime(embedding, (later, later))  # touched, or the run copied: the same embedding
        assert main(["export", str(run.path), "--out", str(tmp_path / "b.csv")]) == 0
        assert "classification 'stale'" not in capsys.readouterr().err
        write_npy(embedding, np.load(embedding) * 1.5)  # written again after the classification
        assert main(["export", str(run.path), "--out", str(tmp_path / "c.csv")]) == 0
        err = capsys.readouterr().err
        assert f"classification 'stale' was made on the '{meta['embedding']}' embedding before it was written again" in err
    finally:  # the run is the module's: the other tests do not see this classification
        embedding.write_bytes(original)
        for suffix in (".json", ".parquet", "_suggest.csv"):
            (run.path / "classes" / f"stale{suffix}").unlink(missing_ok=True)


def test_ids_a_spreadsheet_turned_into_numbers_are_named_as_such(tiny_run, tmp_path):
    """SDSS objids saved by a spreadsheet (5.87742E+17, 587742013302112000.0) only read "not in the run"."""
    from morphospace.analysis.classes import align_labels

    run, X, y = tiny_run
    pairs = pd.DataFrame({"id": ["5.87742013302112E+17", "587742013302112000.0", "nope"], "label": ["E", "S", "E"]})
    _, notes = align_labels(run, pairs)
    assert notes == ["3 ids not in the run: ignored (ids '5.87742013302112E+17', '587742013302112000.0', 'nope'): "
                     "they look like numbers a spreadsheet rewrote (keep the id column as text)"]
    _, notes = align_labels(run, pairs.iloc[2:])
    assert notes == ["1 id not in the run: ignored (ids 'nope')"]


def test_the_id_column_as_the_label_column_is_one_short_line(tiny_run, tmp_path, capsys):
    """Each id its own class: the error named every id as a class of one label."""
    run, X, y = tiny_run
    labels = tmp_path / "labels.csv"
    labels.write_text("id,morph\n" + "".join(f"{i},E\n" for i in run.cube_ids()[:30]))
    code = main(["classify", str(run.path), "--labels", str(labels), "--column", "id", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and len(err) < 200
    assert "the label column and the id column are both 'id'" in err


def test_a_catalogue_column_given_as_labels_says_how_to_classify_from_it(tiny_run, tmp_path, capsys, monkeypatch):
    """`study --labels morph` takes a catalogue column; `classify --labels morph` said only "labels file not
    found: morph". It now says how, and the way it says works: export, blank the classes to predict, classify."""
    run, X, y = tiny_run
    monkeypatch.chdir(tmp_path)
    code = main(["classify", str(run.path), "--labels", "morph", "--column", "morph", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'morph' is a column of the run's catalogue" in err and "morphospace export" in err
    assert main(["classify", str(run.path), "--labels", "nothing", "--column", "morph", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "morphospace: error: labels file not found: nothing"  # no such column
    assert main(["export", str(run.path), "--out", "labels.csv", "--quiet"]) == 0
    table = pd.read_csv("labels.csv", dtype=str, keep_default_na=False)
    table.loc[table.index % 4 != 0, "morph"] = ""  # a quarter kept: the rest to predict
    table.to_csv("labels.csv", index=False)
    capsys.readouterr()
    assert main(["classify", str(run.path), "--labels", "labels.csv", "--column", "morph", "--quiet"]) == 0
    meta = json.loads((run.path / "classes" / "morph.json").read_text())
    kept = set(table.loc[table["morph"] != "", "id"]) & set(run.cube_ids())
    assert meta["n_labelled"] == len(kept) >= 12 and {c["name"] for c in meta["classes"]} == set(CENTRES)
    assert meta["cv"]["balanced_accuracy"] > 0.8


def test_the_suggestions_go_back_as_labels_and_name_their_column(tiny_run, capsys):
    """The suggestions file holds the label column, blank, to fill in: filled, it is the next
    --labels file as it is. Suggestions alone name their column too: another column filed alike
    ("my class", "my_class") is refused, not written over them."""
    run, X, y = tiny_run
    assert main(["classify", str(run.path), "--column", "my class", "--suggest", "6", "--quiet"]) == 0
    path = run.path / "classes" / "my_class_suggest.csv"
    seeds = pd.read_csv(path, keep_default_na=False)
    assert list(seeds.columns[:3]) == ["rank", "id", "my class"] and (seeds["my class"] == "").all()
    line_code = main(["classify", str(run.path), "--column", "my_class", "--suggest", "3", "--quiet"])
    err = capsys.readouterr().err
    assert line_code == 2 and "would be filed as 'my_class'" in err and "'my class'" in err
    ids = list(run.cube_ids())
    seeds["my class"] = [str(y[ids.index(i)]) for i in seeds["id"]]  # the astronomer's labels
    seeds.to_csv(path, index=False)
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "my class", "--quiet"]) == 0
    assert json.loads((run.path / "classes" / "my_class.json").read_text())["n_labelled"] == 6


def test_the_suggestions_go_back_beside_a_labels_file_with_its_own_id_column(tiny_run, tmp_path, capsys):
    """With --id-column objid (sdss-gz1's labels) the suggestions file wrote its ids under `id`, and
    given back with the labels file it was refused for lacking 'objid'; a label column called like
    one of the suggestions' own (`second`) was written pre-filled with the classifier's own guesses,
    which the next call then trained on."""
    run, X, y = tiny_run
    ids = list(run.cube_ids())
    labels = tmp_path / "labels.csv"
    labelled = [i for k in np.unique(y) for i in [j for j in ids if y[ids.index(j)] == k][:3]]
    labels.write_text("objid,morph\n" + "".join(f"{i},{y[ids.index(i)]}\n" for i in labelled))
    args = ["classify", str(run.path), "--labels", str(labels), "--id-column", "objid", "--column", "morph"]
    path = run.path / "classes" / "morph_suggest.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("rank,id,morph,why\n1,g01,,diverse seed\n")  # blank, its ids under `id` (the earlier layout)
    assert main([*args, "--suggest", "4", "--quiet"]) == 0
    assert not list(path.parent.glob("*_filled*"))  # nothing filled in: replaced, not set aside
    seeds = pd.read_csv(path, keep_default_na=False, dtype=str)
    assert list(seeds.columns[:3]) == ["rank", "objid", "morph"] and (seeds["morph"] == "").all()
    seeds["morph"] = [str(y[ids.index(i)]) for i in seeds["objid"]]
    seeds.to_csv(path, index=False)
    assert main([*args, "--labels", str(path), "--quiet"]) == 0
    assert json.loads((run.path / "classes" / "morph.json").read_text())["n_labelled"] == 13
    assert "kept as morph_suggest_filled1.csv" in capsys.readouterr().err
    for option, name in (("--column", "second"), ("--id-column", "rank")):
        named = dict(zip(("--column", "--id-column"), ("morph", "objid"))) | {option: name}
        code = main(["classify", str(run.path), "--labels", str(labels), *[x for kv in named.items() for x in kv],
                     "--suggest", "3", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1 and f"{option} '{name}' is a column of the suggestions" in err
    code = main(["classify", str(run.path), "--column", "id", "--suggest", "3", "--quiet"])
    assert code == 2 and "are both 'id'" in capsys.readouterr().err


def test_several_labels_files_are_read_as_one(tiny_run, tmp_path, capsys):
    """Your labels file and the suggestions filled in since go in together (--labels A B, or
    --labels A --labels B): the classifier trains on both; an id the two label differently is
    left out and said, in the notes and on the console."""
    run, X, y = tiny_run
    ids = list(run.cube_ids())
    mine = _csv(tmp_path / "mine.csv", "id,kind\n" + "".join(f"{ids[r]},{y[r]}\n" for r in (0, 1, 20, 21, 40, 41)))
    assert main(["classify", str(run.path), "--labels", str(mine), "--column", "kind", "--suggest", "4", "--quiet"]) == 0
    path = run.path / "classes" / "kind_suggest.csv"
    filled = pd.read_csv(path, keep_default_na=False)
    filled["kind"] = [str(y[ids.index(i)]) for i in filled["id"]]
    filled.loc[len(filled)] = filled.iloc[0]  # the same row twice: counted once
    filled.to_csv(path, index=False)
    conflict = _csv(tmp_path / "other.csv", f"id,kind\n{ids[0]},{'round' if y[0] != 'round' else 'disk'}\n")
    capsys.readouterr()
    assert main(["classify", "--labels", str(mine), str(run.path), "--labels", str(path), "--column", "kind",
                 "--quiet"]) == 0
    meta = json.loads((run.path / "classes" / "kind.json").read_text())
    kept = run.path / "classes" / "kind_suggest_filled1.csv"  # filled in: set aside, not removed as stale
    assert meta["n_labelled"] == 10 and meta["labels_files"] == [str(mine.resolve()), str(kept.resolve())]
    assert not path.exists() and pd.read_csv(kept, keep_default_na=False).equals(filled)
    path = kept
    assert main(["classify", str(run.path), "--labels", str(mine), "--labels", str(path), "--labels", str(conflict),
                 "--column", "kind"]) == 0
    meta = json.loads((run.path / "classes" / "kind.json").read_text())
    assert meta["n_labelled"] == 9
    assert any("1 id labelled twice with different labels" in n and ids[0] in n for n in meta["notes"])
    assert "labelled twice with different labels" in capsys.readouterr().err
    pairs, notes = read_labels([mine, path], "kind")
    assert len(pairs) == 10 and any("1 repeated row" in n for n in notes)


def test_suggestions_filled_in_are_never_written_over(tiny_run, capsys):
    """New suggestions (or none) replace the file of the last ones; where labels were filled in,
    that file is kept under a new name first, and said."""
    run, X, y = tiny_run
    assert main(["classify", str(run.path), "--column", "kind", "--suggest", "6", "--quiet"]) == 0
    path = run.path / "classes" / "kind_suggest.csv"
    blank = pd.read_csv(path, keep_default_na=False)
    assert main(["classify", str(run.path), "--column", "kind", "--suggest", "5", "--quiet"]) == 0
    assert not (run.path / "classes" / "kind_suggest_filled1.csv").exists()  # nothing filled: replaced
    filled = pd.read_csv(path, keep_default_na=False)
    ids = list(run.cube_ids())
    filled.loc[:2, "kind"] = [str(y[ids.index(i)]) for i in filled["id"][:3]]
    filled.to_csv(path, index=False)
    capsys.readouterr()
    assert main(["classify", str(run.path), "--column", "kind", "--suggest", "4"]) == 0
    assert "kind_suggest.csv had labels filled in; kept as kind_suggest_filled1.csv" in capsys.readouterr().err
    assert pd.read_csv(run.path / "classes" / "kind_suggest_filled1.csv", keep_default_na=False).equals(filled)
    assert len(pd.read_csv(path)) == 4 and len(blank) == 6
    # the command that read the filled file, given again: it read the fresh blank one in its place and
    # trained quietly on fewer labels, over the classes the filled one made
    mine = run.path.parent / "mine.csv"
    mine.write_text("id,kind\n" + "".join(f"{ids[r]},{y[r]}\n" for r in (0, 1, 20, 21, 40, 41)))
    command = ["classify", str(run.path), "--labels", str(mine), "--labels", str(path), "--column", "kind", "--suggest", "4"]
    path.write_bytes((run.path / "classes" / "kind_suggest_filled1.csv").read_bytes())
    assert main(command) == 0
    made = (run.path / "classes" / "kind.parquet").read_bytes()
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "kind_suggest.csv is a fresh suggestions file, none of it filled in; the one filled in before is kept as " \
           "kind_suggest_filled2.csv: give that with --labels" in err
    assert (run.path / "classes" / "kind.parquet").read_bytes() == made
    # the next round, as the README gives it: the kept file beside the fresh one (not yet filled in)
    kept2 = run.path / "classes" / "kind_suggest_filled2.csv"
    assert main([*command[:4], "--labels", str(kept2), *command[4:]]) == 0
    # the kept file named is the last: _filled10 after _filled9
    from morphospace.analysis.classes import _check_not_a_fresh_suggestions_file

    for k in (9, 10):
        (run.path / "classes" / f"kind_suggest_filled{k}.csv").write_bytes(kept2.read_bytes())
    path.write_text("rank,id,kind\n1,g00,\n")
    with pytest.raises(UserError, match="kept as kind_suggest_filled10.csv"):
        _check_not_a_fresh_suggestions_file(path, [mine, path], "kind")


@pytest.mark.parametrize("content, args, message", [
    ("id,other\ng00,disk\n", [], "has no column 'kind' (--column)"),
    ("objid,kind\ng00,disk\n", [], "has no column 'id' (--id-column)"),
    (b"id,kind\ng00,\xff\xfedisk\n", [], "is not UTF-8"),
    ('id,kind\ng00,disk\ng01,"disk,edge,\n', [], "not a readable CSV"),
    ("id,kind\ng00,disk,x,y\ng01,disk\n", [], "not a readable CSV"),
    ("", [], "is empty"),
    ("id,kind\ng00,disk\ng01,disk\ng02,disk\n", [], "only one class"),
    ("id,kind\ng00,disk\ng01,disk\ng02,edge\n", [], "1 of the 2 classes have 1: 'edge'"),
    ("id,kind\nzz1,disk\nzz2,edge\n", [], "no usable label"),
    ("id,kind\ng00,\ng01,\n", [], "no usable label"),
    ("id,kind\ng00,disk\n", ["--suggest", "-1"], "--suggest must be 0 or more"),
    ("id,kind\ng00,disk\n", ["--embedding", "nothing"], "no embedding 'nothing'"),
    ("id,kind\ng00,disk\n", ["--labels", ""], "a labels file must be named, got an empty path"),  # "'.' is a folder"
])
def test_hostile_labels_exit_2_with_one_line(tiny_run, tmp_path, capsys, content, args, message):
    run, _, _ = tiny_run
    path = _csv(tmp_path / "labels.csv", content)
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "kind", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (run.path / "classes" / "kind.parquet").exists()


def test_two_columns_filed_alike_do_not_overwrite_each_other(tiny_run, tmp_path, capsys):
    run, X, y = tiny_run
    ids = run.cube_ids()
    rows = [0, 1, 2, 20, 21, 22, 40, 41, 42]
    text = "id,my class,my_class\n" + "".join(f"{ids[r]},{y[r]},{y[r]}\n" for r in rows)
    path = _csv(tmp_path / "labels.csv", text)
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "my_class", "--quiet"]) == 0
    before = (run.path / "classes" / "my_class.parquet").read_bytes()
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "my class", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "where the classes of the column 'my_class' are" in err
    assert (run.path / "classes" / "my_class.parquet").read_bytes() == before
    assert main(["classify", str(run.path), "--labels", str(path), "--column", "my_class", "--quiet"]) == 0  # again: fine


def test_a_missing_labels_file_is_one_line(tiny_run, tmp_path, capsys):
    run, _, _ = tiny_run
    assert main(["classify", str(run.path), "--labels", str(tmp_path / "none.csv"), "--column", "kind", "--quiet"]) == 2
    assert "labels file not found" in capsys.readouterr().err
    assert main(["classify", str(run.path), "--column", "kind", "--quiet"]) == 2
    assert main(["classify", str(run.path), "--labels", str(tmp_path), "--column", "kind", "--quiet"]) == 2
    assert "is a folder: give the CSV file of labels" in capsys.readouterr().err  # it said "not found"


def test_conflicting_duplicates_are_left_out_and_reported(tmp_path):
    path = _csv(tmp_path / "l.csv", "id,kind\na,x\na,y\nb,x\nb,x\nc, y \n")
    pairs, notes = read_labels(path, "kind")
    assert pairs.to_dict("list") == {"id": ["b", "c"], "label": ["x", "y"]}
    assert any("1 id labelled twice with different labels" in n for n in notes)
    assert any("1 repeated row" in n for n in notes)


def test_numeric_classes_written_as_floats_are_one_class_with_their_integers(tmp_path):
    """T-types typed 1 by hand and saved 1.0 by a spreadsheet were the classes 1 and 1.0, and a
    galaxy labelled 1 and 1.0 was labelled twice with different labels; codes with leading zeros
    and text vocabularies stay as written."""
    path = _csv(tmp_path / "t.csv", "id,ttype\na,1\nb,1.0\nc,-5.00\nd,-5\ne,1\ne,1.0\nf,01\n")
    pairs, notes = read_labels(path, "ttype")
    assert pairs.to_dict("list") == {"id": ["a", "b", "c", "d", "e", "f"], "label": ["1", "1", "-5", "-5", "1", "01"]}
    assert not any("different labels" in n for n in notes)
    text = _csv(tmp_path / "k.csv", "id,kind\na,1.0\nb,spiral\n")
    assert read_labels(text, "kind")[0]["label"].tolist() == ["1.0", "spiral"]
    # the estimator alike: T-types as floats beside the same as text are two classes, not four
    X = np.random.default_rng(0).normal(size=(40, 3))
    X[::2] += 3
    mixed = np.array([1.0, -5.0, "1", "-5"] * 10, dtype=object)
    assert FewLabelClassifier().fit(X, mixed).classes_.tolist() == ["-5", "1"]


def test_fits_classes_rename_only_those_not_in_ascii_and_never_onto_another():
    from morphospace.analysis.classes import _ascii_classes

    names = ["a_b", "á_b", "spiral", "Spiral", "elíptica"]
    out = _ascii_classes("m", pd.Series(names + ["a_b"]), names)
    assert out.tolist() == ["a_b", "a_b_2", "spiral", "Spiral", "eliptica", "a_b"]


def test_column_names_are_safe_and_distinct():
    names = column_names(["a b", "a/b", "élan", 'say "hi"', "", "../x", "a_b", "Elan", "ELAN"])
    assert names == ["a_b", "a_b_2", "elan", "say_hi", "x", "x_2", "a_b_3", "Elan_2", "ELAN_3"]
    assert all(n.replace("_", "").isalnum() for n in names)
