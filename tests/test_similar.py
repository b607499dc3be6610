"""Similarity search: the index, precision@k, `morphospace similar` on a run."""

import numpy as np
import pandas as pd
import pytest

from morphospace.analysis.similar import SimilarityIndex, precision_at_k, similar_run
from morphospace.cli import main
from morphospace.errors import UserError
from morphospace.run import RunDir, write_npy, write_table


def _groups(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["round", "disk", "edge"], n // 3)
    centres = {"round": 0.0, "disk": 8.0, "edge": 16.0}
    return np.array([[centres[v], 0, 0, 0] for v in y]) + rng.normal(0, 1, (n, 4)), y


def test_the_index_finds_true_neighbours():
    X, _ = _groups()
    dist, idx = SimilarityIndex().fit(X).kneighbors(X[:5], k=4)
    assert (idx[:, 0] == np.arange(5)).all() and np.allclose(dist[:, 0], 0, atol=1e-5)
    # the exact neighbours (brute force) are found
    exact = np.argsort(((X[:5, None] - X[None]) ** 2).sum(-1), axis=1)[:, :4]
    assert all(set(a) == set(b) for a, b in zip(idx, exact))
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_precision_at_k_tracks_the_labels():
    X, y = _groups()
    assert precision_at_k(X, y, k=5) > 0.95
    rng = np.random.default_rng(1)
    assert precision_at_k(rng.normal(size=X.shape), y, k=5) < 0.6
    y_missing = y.astype(object)
    y_missing[:20:2] = None  # half the round galaxies unlabelled: not scored, and a miss as neighbours
    assert precision_at_k(X, y_missing, k=5) < 0.9 < precision_at_k(X, y, k=5)


@pytest.fixture
def tiny_run(tmp_path):
    X, y = _groups(30)
    run = RunDir(tmp_path / "run", create=True)
    ids = [f"g{i:02d}" for i in range(30)][::-1]  # ids not in cube order
    write_table(run.catalogue, pd.DataFrame({"id": ids, "morph": y[::-1], "cube_index": np.arange(30)[::-1]}))
    write_npy(run.cube, np.random.default_rng(0).random((30, 3, 16, 16)).astype(np.float32))
    write_npy(run.embedding_path("form"), X.astype(np.float32))
    return run


def test_similar_run_gives_the_galaxy_then_its_group(tiny_run, capsys):
    table, gallery = similar_run(tiny_run, "g29", "form", k=5)  # cube row 29: an "edge" galaxy
    assert list(table["rank"]) == list(range(6)) and table["id"].iloc[0] == "g29"
    assert (table["morph"] == "edge").all() and gallery.is_file()
    assert (tiny_run.path / "similar" / "g29_form.parquet").is_file()
    stamp = tiny_run.path / "models" / "similar" / "form.pkl"
    built = stamp.stat().st_mtime_ns
    similar_run(tiny_run, "g28", "form", k=3)
    assert stamp.stat().st_mtime_ns == built  # the index is built once
    assert main(["similar", str(tiny_run.path), "--id", "g29", "--k", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "g29" in out and "gallery:" in out


def test_similar_refuses_an_unknown_id_in_one_line(tiny_run, capsys):
    with pytest.raises(UserError, match="no galaxy with id 'nope'"):
        similar_run(tiny_run, "nope", "form")
    assert main(["similar", str(tiny_run.path), "--id", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err
    assert main(["similar", str(tiny_run.path), "--id", "g01", "--embedding", "nothing", "--quiet"]) == 2
