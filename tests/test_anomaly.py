"""Anomalies on the form embedding: the score, tags re-ranking it, the run's files, the CLI, export and report."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import check_estimator

from morphospace.analysis.anomaly import FormAnomaly, anomaly_run, rank_normalise, read_anomaly
from morphospace.analysis.anomaly_tags import read_tags
from morphospace.cli import main
from morphospace.config import Config
from morphospace.errors import InvalidArgument
from morphospace.export import results_table
from morphospace.pipeline import stage_anomaly
from morphospace.report import build_report
from morphospace.run import RunDir, write_npy, write_table

from report_fakerun import make_fake_run


def _blobs(n=90, seed=0):
    """Three tight groups of 30 in 6-d, and the indices of 3 planted outliers far from all of them."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * 6, [10.0] + [0.0] * 5, [0.0, 10.0] + [0.0] * 4])
    X = centres[np.repeat(np.arange(3), n // 3)] + rng.normal(0, 1, (n, 6))
    out = np.array([5, n // 3 + 10, n - 13])
    X[out] = rng.normal(0, 1, (3, 6)) + np.array([[30.0, 30, 0, 0, 0, 0], [-25, 5, 20, 0, 0, 0], [5, -30, -20, 0, 0, 0]])
    return X, out


@pytest.mark.parametrize("method", ["knn", "isolation_forest"])
def test_outliers_rank_top(method):
    X, out = _blobs()
    m = FormAnomaly(method=method, random_state=0).fit(X)
    assert set(np.argsort(-m.scores_)[:3]) == set(out)
    assert m.ranks_.min() == 0.0 and m.ranks_.max() == 1.0 and (m.ranks_[out] > 0.97).all()
    # a new row far from everything scores above every row of the fit; one inside a group, low
    far, typical = np.full((1, 6), 60.0), X[10:11] + 0.01
    assert m.rank(far)[0] == 1.0 and m.rank(typical)[0] < 0.7
    assert m.anomaly_score(far)[0] > m.scores_.max()


def test_knn_score_is_the_mean_distance_to_the_k_nearest_others():
    X, _ = _blobs(30)
    m = FormAnomaly(n_neighbors=4).fit(X)
    d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(m.scores_, np.sort(d, 1)[:, :4].mean(1), rtol=1e-6)
    np.testing.assert_allclose(rank_normalise([3.0, 1.0, 2.0, 2.0]), [1.0, 0.0, 0.5, 0.5])



def test_a_small_sample_averages_over_every_other_row_whatever_the_algorithm():
    """Over 8 rows k = 10 is each row's 7 others, with the approximate index as with the exact
    search (pynndescent's graph of 8 rows held 7 columns, the row itself among them, and the score
    averaged 6)."""
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(0).normal(size=(8, 3))
    approx = FormAnomaly(n_neighbors=10, algorithm="approximate").fit(X)
    assert not approx.neighbours_.exact_
    dist, _ = NearestNeighbors(n_neighbors=8).fit(X).kneighbors(X)
    assert approx.k_ == 7
    np.testing.assert_allclose(approx.scores_, dist[:, 1:].mean(1), rtol=1e-5)
    np.testing.assert_allclose(FormAnomaly(n_neighbors=10, algorithm="exact").fit(X).scores_, approx.scores_, rtol=1e-5)

def test_bad_parameters_are_one_line_value_errors():
    X, _ = _blobs(30)
    for bad in ({"method": "lof"}, {"n_neighbors": 0}, {"algorithm": "faiss"}, {"n_neighbors": True}):
        with pytest.raises(InvalidArgument):
            FormAnomaly(**bad).fit(X)
    with pytest.raises(ValueError):
        FormAnomaly().fit(np.full((5, 2), np.nan))
    with pytest.raises(InvalidArgument):
        FormAnomaly().fit(X).relevance(X[:10], [0])
    with pytest.raises(InvalidArgument, match="rows of the fit, in its order"):  # tags looked up among other rows
        FormAnomaly().fit(X).relevance(X[::-1], [1])
    with pytest.raises(InvalidArgument, match="rows of the fit, in its order"):  # not numpy's broadcasting error
        FormAnomaly().fit(X).relevance(np.c_[X, X[:, :1]], [1])
    with pytest.raises(InvalidArgument, match="interesting rows must be a whole number"):
        FormAnomaly().fit(X).relevance(X, [0.7])  # was quietly row 0


def test_the_other_estimators_refuse_what_they_cannot_use_as_value_errors():
    """A string k or exact_below raised TypeError; pool_factor 0 or -1 was taken."""
    from morphospace.analysis.classify import FewLabelClassifier
    from morphospace.analysis.neighbour_index import SimilarityIndex

    X, _ = _blobs(30)
    with pytest.raises(InvalidArgument, match="k must be a whole number"):
        SimilarityIndex().fit(X).kneighbors(X[:1], k="3")
    assert SimilarityIndex().fit(X).kneighbors(X[:1], k=3.0)[1].shape == (1, 3)  # a whole number, as a float
    with pytest.raises(InvalidArgument, match="exact_below must be a whole number"):
        SimilarityIndex(exact_below="x").fit(X)
    for bad in (0, -1, 2.5):
        with pytest.raises(InvalidArgument, match="pool_factor must be a whole number"):
            FewLabelClassifier(pool_factor=bad).fit(X, ["a", "b"] * 15)


def test_scikit_learn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        failed = [r["check_name"] for r in check_estimator(FormAnomaly(), on_fail=None) if r["status"] == "failed"]
    assert failed == []


def test_the_approximate_index_gives_the_exact_scores_on_small_data():  # no longer slow: no numba to compile
    X, _ = _blobs()
    exact = FormAnomaly(algorithm="exact").fit(X)
    approx = FormAnomaly(algorithm="nndescent").fit(X)  # the former name of "approximate"
    assert not approx.neighbours_.exact_
    np.testing.assert_allclose(approx.scores_, exact.scores_, rtol=1e-4)
    np.testing.assert_allclose(approx.anomaly_score(X[:5] + 0.1), exact.anomaly_score(X[:5] + 0.1), rtol=1e-4)


def test_tags_move_their_neighbours_and_leave_the_far_alone():
    X, _ = _blobs()
    m = FormAnomaly().fit(X)
    interesting, boring = 12, 45  # in group 0 and in group 1
    new = m.rerank(X, [interesting], [boring])
    np.testing.assert_allclose(m.rerank(X), m.ranks_)  # no tags: the rank itself
    near_int = np.argsort(((X - X[interesting]) ** 2).sum(1))[1:4]
    near_bor = np.argsort(((X - X[boring]) ** 2).sum(1))[1:4]
    assert (new[near_int] > m.ranks_[near_int]).all()  # galaxies like the interesting one rise
    assert (new[near_bor] < np.maximum(m.ranks_[near_bor], 1e-9)).all()  # galaxies like the boring one fall (from 0: stay)
    far = np.arange(60, 90)  # group 2: no tag near
    np.testing.assert_allclose(new[far], m.ranks_[far], atol=1e-3)
    assert new[interesting] == 2 * m.ranks_[interesting] and new[boring] == 0
    # in the order of the untagged: a neighbour of the interesting galaxy overtakes galaxies that outranked it
    order_before = np.argsort(-m.ranks_)
    order_after = np.argsort(-new)
    j = near_int[0]
    assert np.where(order_after == j)[0][0] < np.where(order_before == j)[0][0]
    # a row tagged twice is one tag: it weighed twice and moved its neighbours further
    np.testing.assert_array_equal(m.rerank(X, [interesting, interesting], [boring, boring]), new)


def test_a_tag_on_an_anomaly_reaches_its_neighbours_not_the_whole_survey():
    """An anomaly's neighbours are far, and a kernel as wide as its neighbour distance reached the
    whole survey: tagging one galaxy at the edge of a cloud moved 95% of the relevances by over
    0.05. A tag reaches its galaxy's TAG_REACH x k nearest, weighted by rank, and no further."""
    from morphospace.analysis.anomaly import TAG_REACH

    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (600, 8))
    X[0] = rng.normal(0, 0.3, 8) + np.r_[4.5, np.zeros(7)]  # at the cloud's edge
    m = FormAnomaly().fit(X)
    relevance = m.relevance(X, [0])
    order = np.argsort(((X - X[0]) ** 2).sum(1))[1:]
    reach = TAG_REACH * m.k_
    assert np.all(relevance[order[reach:]] == 0.5)  # beyond its reach: untouched
    assert np.all(relevance[order[:10]] > 0.7) and np.all(np.diff(relevance[order[:reach]]) <= 1e-12)  # by rank
    boring = m.relevance(X, [], [0])
    np.testing.assert_allclose(boring[order[:reach]], 1 - relevance[order[:reach]])  # the mirror image
    np.testing.assert_array_equal(m.relevance(X, 0), relevance)  # one row number (a TypeError from len)
    np.testing.assert_array_equal(m.relevance(X, boring=np.int64(0)), boring)


# the run ---------------------------------------------------------------------------------------
@pytest.fixture
def form_run(tmp_path):
    """A run whose form embedding has three groups and three planted outliers; ids not in cube order."""
    X, out = _blobs()
    n = len(X)
    run = RunDir(tmp_path / "run", create=True)
    ids = np.array([f"g{i:02d}" for i in range(n)])
    order = np.arange(n)[::-1]
    write_table(run.catalogue, pd.DataFrame({"id": ids[order], "morph": np.repeat(["a", "b", "c"], n // 3)[order],
                                             "cube_index": order}))
    write_npy(run.cube, np.random.default_rng(0).random((n, 3, 16, 16)).astype(np.float32))
    write_npy(run.embedding_path("form"), X.astype(np.float32))
    return run, ids, out


def test_the_run_gets_the_score_and_tags_persist_across_calls(form_run, capsys):
    run, ids, out = form_run
    stage_anomaly(run, Config())
    table, meta = read_anomaly(run)
    assert list(table["id"]) == list(run.cube_ids()) and set(table.nlargest(3, "score")["id"]) == set(ids[out])
    assert "form embedding" in meta["description"] and meta["what"] == "form anomaly" and (table["tag"] == "").all()
    assert main(["anomalies", str(run.path), "--top", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert all(i in printed for i in ids[out])
    assert main(["anomalies", str(run.path), "--interesting", "g12", "--quiet"]) == 0
    assert "tagged interesting: g12" in capsys.readouterr().out
    assert main(["anomalies", str(run.path), "--boring", "g45", "g46", "--quiet"]) == 0
    assert dict(zip(*read_tags(run).values.T)) == {"g12": "interesting", "g45": "boring", "g46": "boring"}
    table = read_anomaly(run)[0].set_index("id")
    assert table.loc["g12", "tag"] == "interesting" and table.loc["g45", "score"] == 0
    assert table.loc["g13", "relevance"] > 0.5 > table.loc["g47", "relevance"]
    # a re-tag replaces, an untag removes; the pipeline's next score keeps the tags
    assert main(["anomalies", str(run.path), "--interesting", "g45", "--untag", "g46", "--quiet"]) == 0
    assert dict(zip(*read_tags(run).values.T)) == {"g12": "interesting", "g45": "interesting"}
    stage_anomaly(run, Config())
    assert set(read_anomaly(run)[0].query("tag == 'interesting'")["id"]) == {"g12", "g45"}
    capsys.readouterr()
    assert main(["anomalies", str(run.path), "--untag", "g46", "--quiet"]) == 0
    assert "not tagged, so nothing to untag: g46" in capsys.readouterr().out
    # a tag of a galaxy not in the cube (re-ingested without it) is kept, not used, and can be untagged:
    # "no galaxy with id 'ghost' in the cube" left editing the file by hand the only way out
    (run.path / "anomaly_tags.csv").write_text((run.path / "anomaly_tags.csv").read_text() + "ghost,boring\n")
    assert main(["anomalies", str(run.path), "--untag", "ghost", "--quiet"]) == 0
    assert "ghost" not in set(read_tags(run)["id"]) and "untagged: ghost" in capsys.readouterr().out
    assert main(["anomalies", str(run.path), "--untag", "ghost2", "--quiet"]) == 2  # never tagged, not in the cube
    assert "no galaxy with id 'ghost2' in the cube" in capsys.readouterr().err
    # every galaxy tagged: one line, not a pandas dump of an empty table
    assert main(["anomalies", str(run.path), "--boring", *[i for i in ids if i not in ("g12", "g45")], "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no untagged galaxy left to rank" in printed and "Empty DataFrame" not in printed


def test_a_reader_that_goes_away_ends_the_command_quietly(form_run):
    """`morphospace anomalies RUN --top 80 | head -1`: the command ended with "error: cannot use:
    Broken pipe" and exit 2 (or Python's own message at exit); now 141, as a shell reports a tool
    SIGPIPE ended, and nothing on stderr."""
    import os
    import subprocess
    import sys

    run, ids, out = form_run
    stage_anomaly(run, Config())
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line: every write fails, whatever the timing
    try:
        proc = subprocess.run([sys.executable, "-m", "morphospace", "anomalies", str(run.path), "--top", "80",
                               "--quiet"], stdout=write, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)
    err = proc.stderr.decode()
    assert proc.returncode == 141 and "rror" not in err, err
    # the run's log says why it stopped (it ended without a word); and where stderr's reader is gone too
    # (a `2>&1 | tee` a scheduler killed), an error still reaches the log, with its status
    assert run.log.read_text().rstrip().endswith("stopped: the reader of its output went away (a closed pipe)")
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "morphospace", "anomalies", str(run.path), "--untag", "ghost9",
                               "--quiet"], stdout=write, stderr=write, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 2
    assert "error: no galaxy with id 'ghost9'" in run.log.read_text().splitlines()[-1]


def test_export_has_the_form_anomaly_columns(form_run):
    run, ids, out = form_run
    assert "form_anomaly" not in results_table(run).columns
    anomaly_run(run)
    table = results_table(run).set_index("id")
    for col in ("form_anomaly", "form_anomaly_rank", "form_anomaly_score", "anomaly_tag"):
        assert col in table.columns
    assert table.loc[ids[out], "form_anomaly_rank"].min() > 0.97
    assert table["form_anomaly_rank"].between(0, 1).all()


def test_export_says_when_the_tags_changed_after_the_scores(form_run, caplog):
    """A tags file edited by hand (as the README invites) after `anomalies` scored: export wrote the
    earlier scoring's tags and scores without a word (the report says it)."""
    run, ids, _ = form_run
    anomaly_run(run)
    with caplog.at_level("WARNING", logger="morphospace"):
        results_table(run)
    assert "anomaly_tags.csv changed" not in caplog.text
    (run.path / "anomaly_tags.csv").write_text(f"id,tag\n{ids[3]},boring\n")
    with caplog.at_level("WARNING", logger="morphospace"):
        table = results_table(run).set_index("id")
    assert "anomaly_tags.csv changed since `morphospace anomalies` scored" in caplog.text
    assert table["anomaly_tag"].isna().all() or (table["anomaly_tag"] != "boring").all()  # the scoring's tags


@pytest.mark.parametrize("argv, message", [
    (["--interesting", "nope"], "no galaxy with id 'nope'"),
    (["--boring", "g01\n\x1b[31mred"], "no galaxy with id"),
    (["--interesting", "g01", "--boring", "g01"], "both interesting and boring"),
    (["--top", "0"], "--top must be at least 1"),
    (["--top", "many"], "invalid int value"),
    (["--interesting"], "expected at least one argument"),
])
def test_hostile_cli_input_is_one_line_and_exit_2(form_run, capsys, argv, message):
    run, _, _ = form_run
    scores = run.path / "anomaly.parquet"
    stamp = scores.stat().st_mtime_ns if scores.exists() else None
    assert_one_line_error(capsys, ["anomalies", str(run.path), *argv], message)
    assert not (run.path / "anomaly_tags.csv").exists()  # nothing half-done
    assert (scores.stat().st_mtime_ns if scores.exists() else None) == stamp  # nor the scores rewritten


def assert_one_line_error(capsys, argv, message):
    """``argv`` exits with status 2 (from the command or from argparse) and one escaped line naming ``message``."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert "\x1b" not in err  # control characters are printed escaped
    return err


def test_without_a_form_embedding_the_cli_says_so_and_the_stage_drops_a_stale_score(form_run, capsys):
    run, _, _ = form_run
    anomaly_run(run)
    run.embedding_path("form").unlink()
    stage_anomaly(run, Config())
    assert not (run.path / "anomaly.parquet").exists()
    assert_one_line_error(capsys, ["anomalies", str(run.path)], "no form embedding")
    assert_one_line_error(capsys, ["anomalies", str(run.path / "missing")], "run directory not found")


def test_a_damaged_tags_file_is_one_line(form_run, capsys):
    """The tags file is the user's: a tag it cannot hold is one line naming the galaxy and the way
    out (mend or delete it; re-running `anomalies` would find the same file); a hand edit in
    another case or with spaces is read as meant."""
    from morphospace.analysis.anomaly_tags import read_tags

    run, _, _ = form_run
    path = run.path / "anomaly_tags.csv"
    path.write_text("id,tag\ng01,fascinating\n")
    line = assert_one_line_error(capsys, ["anomalies", str(run.path)], "galaxy 'g01' is tagged 'fascinating'")
    assert "mend it" in line and "delete it" in line and "re-run" not in line
    path.write_text("ID, Tag\ng01, Interesting\ng02,BORING\ng01,interesting\n")  # a row twice: one tag
    assert read_tags(run).to_dict("list") == {"id": ["g02", "g01"], "tag": ["boring", "interesting"]}
    path.write_text("id,tag\ng01,interesting\ng02,boring\ng01,boring\n")  # which one? (it was counted both ways)
    assert_one_line_error(capsys, ["anomalies", str(run.path)], "galaxy 'g01' is tagged both interesting and boring")
    path.write_text("id,tag\ng01,boring,x\n")  # every row a field too long named 'boring' the galaxy, 'x' its tag
    line = assert_one_line_error(capsys, ["anomalies", str(run.path)], "Expected 2 fields in line 2, saw 3")
    assert "mend it" in line
    path.write_text("id,tag\n")
    assert read_tags(run).empty
    path.unlink()


def test_a_damaged_score_table_is_rewritten_by_the_command_that_its_error_names(form_run, capsys):
    """export says "re-run `morphospace anomalies` to rewrite it" of a damaged anomaly.parquet: that
    command must then rewrite it (it read the table first, for its seed, and stopped on it)."""
    run, ids, out = form_run
    stage_anomaly(run, Config())
    capsys.readouterr()  # whatever the stage printed: the error below is the only line
    path = run.path / "anomaly.parquet"
    path.write_bytes(path.read_bytes()[:100])
    line = assert_one_line_error(capsys, ["export", str(run.path), "--out", str(run.path.parent / "r.csv")],
                                 "anomaly.parquet is damaged")
    assert "morphospace anomalies" in line
    assert main(["anomalies", str(run.path), "--top", "3", "--quiet"]) == 0
    assert set(read_anomaly(run)[0].nlargest(3, "score")["id"]) == set(ids[out])


# the report ------------------------------------------------------------------------------------
def _strangest(html: str) -> str:
    return html[html.index('<section id="strangest"'):].split("</section>")[0]


def _explorer_colourings(html: str) -> list[str]:
    import json

    data = json.loads(re.search(r'<script type="application/json" id="morphospace-data">(.*?)</script>', html, re.S)[1])
    return [c["name"] for c in data["explorer"]["colourings"]]


def test_the_report_shows_the_form_score_when_present(tmp_path, caplog):
    run = make_fake_run(tmp_path / "run", n=60, size=16)
    vade = build_report(run, Config()).read_text(encoding="utf-8")
    assert "the VaDE finds least likely" in _strangest(vade) and "anomaly score" in _explorer_colourings(vade)
    z = run.read_embedding("vade").copy()
    z[7] += 40.0  # one galaxy of a form no other has
    write_npy(run.embedding_path("form"), z)
    stage_anomaly(run, Config())
    html = build_report(run, Config()).read_text(encoding="utf-8")
    strange = _strangest(html)
    assert "form anomaly score" in strange and "the VaDE finds least likely" not in strange
    assert "form anomaly" in _explorer_colourings(html) and "the mean distance to the 10 nearest" in strange
    first = re.search(r'title="([^"]+)"', strange)[1]
    assert first == run.cube_ids()[7]  # the strangest by form leads the gallery
    # tags re-rank it: the report says how many and the boring galaxy leaves the gallery
    assert main(["anomalies", str(run.path), "--boring", str(run.cube_ids()[7]), "--quiet"]) == 0
    html = build_report(run, Config()).read_text(encoding="utf-8")
    strange = _strangest(html)
    assert "0 interesting, 1 boring" in strange and "form anomaly (re-ranked by tags)" in _explorer_colourings(html)
    assert "the rank of the mean distance to the 10 nearest galaxies in the form embedding, x 2" in strange
    assert re.search(r'title="([^"]+)"', strange)[1] != run.cube_ids()[7]
    # a tags file edited by hand after the scores: the report says that it shows the last call's
    import os
    import time

    tags = run.path / "anomaly_tags.csv"
    tags.write_text(f"id,tag\n{run.cube_ids()[3]},interesting\n")
    later = time.time() + 5
    os.utime(tags, (later, later))
    caplog.clear()
    with caplog.at_level("WARNING", logger="morphospace"):  # a warning of the report's own (it read the
        html = build_report(run, Config()).read_text(encoding="utf-8")  # console an earlier main() left on)
    assert "anomaly_tags.csv changed after the scores in anomaly.parquet" in caplog.text
    assert "anomaly_tags.csv, changed after these scores" in _strangest(html)  # on the page too, not the log alone


def test_anomalies_say_when_the_form_embedding_is_not_the_run_s_model_s(form_run, capsys):
    """Trained again and not embedded: `anomalies` ranked the previous model's form embedding without
    a word (export said only that the vade columns were out of date)."""
    import json

    run = form_run[0]
    note = run.embedding_path("vade").with_suffix(".json")
    note.write_text(json.dumps({"name": "vade", "model_fingerprint": "of a model since replaced"}))
    assert main(["anomalies", str(run.path), "--top", "3"]) == 0
    assert "the form embedding scored is not that of the run's model: the model they came from is no longer " \
           "in the run" in capsys.readouterr().err


def test_a_run_whose_model_is_of_another_preset_is_refused_though_an_earlier_form_embedding_stays(form_run, capsys):
    """Trained again with the astrovader (or default) preset and not yet embedded, the run still holds
    the earlier form model's embedding: `anomalies` listed its scores as the run's, with a warning."""
    import json

    run = form_run[0]
    folder = run.path / "models" / "vade"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"a model")
    (folder / "hparams.json").write_text(json.dumps({"preset": "astrovader"}))
    assert main(["anomalies", str(run.path), "--top", "3"]) == 2
    assert "the run's model is of the astrovader preset, which has no form embedding" in capsys.readouterr().err
    (folder / "hparams.json").write_text(json.dumps({"preset": "form"}))
    assert main(["anomalies", str(run.path), "--top", "3", "--quiet"]) == 0
    (folder / "hparams.json").write_text("{damaged")  # read by no one else here: not a traceback
    assert main(["anomalies", str(run.path), "--top", "3", "--quiet"]) == 0
