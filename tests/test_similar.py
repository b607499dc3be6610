"""Similarity search: the index, precision@k, `morphospace similar` on a run."""

import json
import os
import pickle
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from morphospace.analysis.neighbour_index import EXACT_BELOW, SimilarityIndex
from morphospace.analysis.similar import precision_at_k, similar_run, similar_to_image
from morphospace.cli import main
from morphospace.errors import UserError
from morphospace.run import RunDir, read_stamped_pickle, write_npy, write_stamped_pickle, write_table


def _groups(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["round", "disk", "edge"], n // 3)
    centres = {"round": 0.0, "disk": 8.0, "edge": 16.0}
    return np.array([[centres[v], 0, 0, 0] for v in y]) + rng.normal(0, 1, (n, 4)), y


@pytest.mark.parametrize("exact_below", [20_000, 0], ids=["exact", "approximate"])
def test_the_index_finds_true_neighbours(exact_below):
    X, _ = _groups()
    # exact below EXACT_BELOW by default, as the command line searches (a notebook's index over 600
    # galaxies took 31 s through pynndescent, the approximate index then, 1 s exactly)
    assert SimilarityIndex().exact_below == EXACT_BELOW and SimilarityIndex().fit(X).exact_
    index = SimilarityIndex(exact_below=exact_below).fit(X)
    assert index.exact_ == (exact_below > 0)
    assert type(index.index_).__name__ == ("NearestNeighbors" if exact_below else "IndexIVFFlat")
    dist, idx = index.kneighbors(X[:5], k=4)
    assert (idx[:, 0] == np.arange(5)).all() and np.allclose(dist[:, 0], 0, atol=1e-5)
    # the exact neighbours (brute force) are found
    exact = np.argsort(((X[:5, None] - X[None]) ** 2).sum(-1), axis=1)[:, :4]
    assert all(set(a) == set(b) for a, b in zip(idx, exact))
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_the_approximate_index_is_the_same_for_the_same_seed_and_survives_pickling():
    """faiss's k-means is seeded from ``random_state``: a seed gives one set of cells and one result,
    another seed other cells; nearly every true neighbour is found in grouped rows."""
    import faiss

    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 16))[rng.integers(0, 20, 6000)] * 3 + rng.normal(size=(6000, 16))
    a, b = (SimilarityIndex(exact_below=0, random_state=7).fit(X) for _ in range(2))
    c = SimilarityIndex(exact_below=0, random_state=8).fit(X)
    cells = lambda index: faiss.downcast_index(index.index_.quantizer).reconstruct_n(0, index.index_.nlist)  # noqa: E731
    assert a.index_.nlist == 153 and a.n_probes_ == 8  # 4 sqrt(N) cells, 1/56 of them (at least 8) visited
    assert a.recall_ > 0.95 and a.recall_ == b.recall_  # measured on its own rows as it was built
    assert np.array_equal(cells(a), cells(b)) and not np.array_equal(cells(a), cells(c))
    d_a, i_a = a.kneighbors(X[:300], k=10)
    np.testing.assert_array_equal(b.kneighbors(X[:300], k=10)[1], i_a)
    true = np.argsort(((X[:300, None] - X[None]) ** 2).sum(-1), axis=1)[:, :10]
    assert np.mean([len(set(u) & set(v)) / 10 for u, v in zip(i_a, true)]) > 0.95
    again = pickle.loads(pickle.dumps(a))
    d_b, i_b = again.kneighbors(X[:300], k=10)
    np.testing.assert_array_equal(i_b, i_a)
    np.testing.assert_array_equal(d_b, d_a)
    # every cell visited: the exact neighbours
    full = SimilarityIndex(exact_below=0, probe_fraction=1).fit(X)
    np.testing.assert_array_equal(full.kneighbors(X[:300], k=10)[1], true)


def test_a_row_whose_cells_hold_too_few_rows_is_searched_in_every_cell():
    """faiss marks the neighbours a search of a few cells did not find with -1: those rows are
    searched again in every cell rather than returned with holes."""
    from morphospace.analysis import neighbour_index

    rng = np.random.default_rng(2)
    X = np.r_[rng.normal(size=(400, 6)), rng.normal(size=(3, 6)) + 40]  # 3 rows far from the rest
    index = SimilarityIndex(exact_below=0).fit(X)
    assert index.n_probes_ == 8 < index.index_.nlist
    import faiss

    far = np.ascontiguousarray(X[-3:], dtype=np.float32)
    assert (index.index_.search(far, 5, params=faiss.SearchParametersIVF(nprobe=1))[1] < 0).any()  # faiss's holes
    dist, idx = neighbour_index._search(index.index_, X[-3:], 5, probes=1)
    true = np.argsort(((X[-3:, None] - X[None]) ** 2).sum(-1), axis=1)[:, :5]
    np.testing.assert_array_equal(idx, true)
    np.testing.assert_allclose(dist, np.sqrt(np.sort(((X[-3:, None] - X[None]) ** 2).sum(-1), axis=1)[:, :5]),
                               rtol=1e-5, atol=1e-5)


def _recall(index, X, rows=1000, k=10):
    from sklearn.neighbors import NearestNeighbors

    true = NearestNeighbors().fit(X).kneighbors(X[:rows], k + 1)[1][:, 1:]
    got = index.kneighbors(X[:rows], k + 1)[1][:, 1:]
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(got, true)])


def test_the_index_measures_its_recall_and_visits_the_fewest_cells_that_meet_the_target():
    """Rows in no groups need more cells visited than grouped rows: the index finds how many on
    its own rows as it is built (no label), and its estimate matches the recall on other rows."""
    X = np.random.default_rng(3).normal(size=(6000, 12))  # one 12-d Gaussian: the hard case
    fixed = SimilarityIndex(exact_below=0, probe_fraction=1 / 56).fit(X)  # a fraction as it is: 8 of 153 cells
    assert fixed.n_probes_ == 8 and fixed.recall_ < 0.85
    assert abs(fixed.recall_ - _recall(fixed, X)) < 0.04  # an honest estimate
    index = SimilarityIndex(exact_below=0).fit(X)
    assert not index.exact_ and 16 <= index.n_probes_ <= 32 and index.recall_ >= 0.95
    assert _recall(index, X) > 0.93
    again = SimilarityIndex(exact_below=0).fit(X)  # the same rows measured, the same choice
    assert again.n_probes_ == index.n_probes_ and again.recall_ == index.recall_
    grouped, _ = _groups(3000)
    assert SimilarityIndex(exact_below=0).fit(grouped).n_probes_ == 8  # groups: the fewest cells are enough


def test_where_the_inverted_file_would_gain_nothing_the_index_searches_exactly():
    """In 32 dimensions with no groups the target needs more than a quarter of the cells: the index
    is faiss's flat one, exact, and survives pickling."""
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(4).normal(size=(6000, 32))
    index = SimilarityIndex(exact_below=0).fit(X)
    assert index.exact_ and index.recall_ == 1.0 and not hasattr(index, "n_probes_")
    dist, idx = index.kneighbors(X[:200], k=5)
    d_true, i_true = NearestNeighbors().fit(X).kneighbors(X[:200], 5)
    np.testing.assert_array_equal(idx, i_true)
    np.testing.assert_allclose(dist, d_true, rtol=1e-4, atol=1e-5)
    again = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(again.kneighbors(X[:200], k=5)[1], idx)
    with pytest.raises(UserError, match=r"target_recall must be a number in \[0, 1\]"):
        SimilarityIndex(target_recall=1.5).fit(X)


def test_faiss_leaves_scikit_learns_threads_alone():
    """faiss's OpenBLAS is the OpenMP build: once scikit-learn limited BLAS to one thread around its
    exact search, OpenMP ran on one thread too, in a process that had used faiss first. In a fresh
    process: an index built, then scikit-learn's limit keeps OpenMP's thread count."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from morphospace.analysis.neighbour_index import SimilarityIndex\n"
            "SimilarityIndex(exact_below=0).fit(np.random.default_rng(0).normal(size=(2000, 8)))\n"
            "from sklearn.utils._openmp_helpers import _openmp_effective_n_threads as n\n"
            "from sklearn.utils.parallel import _get_threadpool_controller as c\n"
            "outside = n()\n"
            "with c().limit(limits=1, user_api='blas'):\n"
            "    print(outside, n())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"}).stdout.split()
    assert out == ["2", "2"]


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
    assert (tiny_run.path / "similar" / "g29__form.parquet").is_file()
    stamp = tiny_run.path / "models" / "similar" / "form.pkl"
    built = stamp.stat().st_mtime_ns
    with open(stamp, "rb") as fh:  # a small run's index is exact, a large one's faiss's inverted file
        assert pickle.load(fh).exact_ is True and 30 < EXACT_BELOW
    similar_run(tiny_run, "g28", "form", k=3)
    assert stamp.stat().st_mtime_ns == built  # the index is built once
    assert main(["similar", str(tiny_run.path), "--id", "g29", "--k", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "g29" in out and "gallery:" in out


def test_an_approximate_search_says_its_recall_each_time(tiny_run, monkeypatch, caplog):
    from morphospace.analysis import similar

    monkeypatch.setattr(similar, "EXACT_BELOW", 0)  # the inverted file from 0 rows up
    for _ in range(2):  # built, then loaded: said both times
        caplog.clear()
        with caplog.at_level("INFO", logger="morphospace"):
            similar_run(tiny_run, "g29", "form", k=3)
        assert any("approximate search, about 100% of the true nearest found" in r.getMessage() for r in caplog.records)


def test_the_table_keeps_the_catalogue_s_column_types(tiny_run):
    """A whole-number column with a gap (Int64) came out as floats: 2.0, 0.0, NaN."""
    cat = tiny_run.read_catalogue()
    cat["n_arms"] = pd.array([2, None] + [0] * 28, dtype="Int64")
    write_table(tiny_run.catalogue, cat)
    table, _ = similar_run(tiny_run, "g29", "form", k=29)
    assert table["n_arms"].dtype == "Int64" and table["n_arms"].isna().sum() == 1
    assert set(table["n_arms"].dropna()) == {0, 2}


def test_the_galaxy_comes_first_before_its_twins(tmp_path):
    """Galaxies at distance 0 of the query (a copy of its image: the same embedding) came in the
    search's order, so a twin could take rank 0, "the galaxy itself", and the galaxy fall among its
    neighbours."""
    X, y = _groups(30)
    X[1:6] = X[0]  # five twins of row 0, before and after it in every order
    X[29] = X[0]
    run = RunDir(tmp_path / "run", create=True)
    ids = [f"g{i:02d}" for i in range(30)]
    write_table(run.catalogue, pd.DataFrame({"id": ids, "morph": y, "cube_index": np.arange(30)}))
    write_npy(run.cube, np.zeros((30, 1, 8, 8), np.float32))
    write_npy(run.embedding_path("form"), X.astype(np.float32))
    for query in ("g00", "g03", "g29"):
        table, _ = similar_run(run, query, "form", k=4)
        assert table["id"].iloc[0] == query and query not in set(table["id"].iloc[1:]), table
        assert list(table["rank"]) == list(range(5)) and (table["distance"] == 0).all()
        assert set(table["id"].iloc[1:]) <= {"g00", "g01", "g02", "g03", "g04", "g05", "g29"}


def test_a_cached_index_that_no_longer_unpickles_is_rebuilt(tiny_run):
    """A pickle naming a class an older version had (or a damaged one) is fitted again; the index
    cache raised ModuleNotFoundError out of `similar` (only the anomaly scorer's caught it)."""
    similar_run(tiny_run, "g29", "form", k=3)
    path = tiny_run.path / "models" / "similar" / "form.pkl"
    foreign = pickle.dumps(SimpleNamespace(), protocol=0).replace(b"types", b"gone_module_xyz")
    for payload in (foreign, b"not a pickle", pickle.dumps({"a": "dict"})):
        path.write_bytes(payload)
        table, _ = similar_run(tiny_run, "g29", "form", k=3)
        assert table["id"].iloc[0] == "g29"
        with open(path, "rb") as fh:
            assert isinstance(pickle.load(fh), SimilarityIndex)


class _Touches:
    """Unpickled, it creates ``marker``: the code a pickle in a received run folder could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_cached_pickle_from_another_machine_is_never_unpickled(tiny_run, tmp_path):
    """A run folder someone shares carries its caches: `similar` unpickled a
    `models/similar/*.pkl` whose note matched the embedding's stamp (size and mtime, which a
    copy by `cp -a` or `rsync -a` keeps), running whatever the pickle held. A cache is now read only if it is the very
    file this machine wrote; the received one is fitted again."""
    similar_run(tiny_run, "g29", "form", k=3)
    folder = tiny_run.path / "models" / "similar"
    marker = tmp_path / "ran"
    (folder / "form.pkl").write_bytes(pickle.dumps(_Touches(marker)))
    note = folder / "form.json"
    sent = json.loads(note.read_text())
    if "pickle" in sent:  # the sender vouches for their own file as best they can
        st = (folder / "form.pkl").stat()
        sent["pickle"] = {"ino": st.st_ino, "uid": st.st_uid, "ctime_ns": st.st_ctime_ns, "size": st.st_size}
    note.write_text(json.dumps(sent))
    shutil.copytree(tiny_run.path, tmp_path / "received")  # as `cp -a` or `rsync -a`: times kept to the ns
    received = RunDir(tmp_path / "received")
    table, _ = similar_run(received, "g29", "form", k=3)
    assert not marker.exists() and table["id"].iloc[0] == "g29"
    with open(received.path / "models" / "similar" / "form.pkl", "rb") as fh:
        assert isinstance(pickle.load(fh), SimilarityIndex)  # fitted again and cached anew
    similar_run(tiny_run, "g29", "form", k=3)  # the sender's own folder, whose note vouches for its file
    assert marker.exists()


def test_stamped_pickles_are_read_only_under_their_stamp(tmp_path):
    path, note = tmp_path / "m.pkl", tmp_path / "m.json"
    assert read_stamped_pickle(path, note, {"a": 1}) is None  # nothing written
    write_stamped_pickle(path, note, {"a": 1}, [1, 2])
    assert read_stamped_pickle(path, note, {"a": 1}) == [1, 2]
    assert read_stamped_pickle(path, note, {"a": 2}) is None
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in (path, note):
        shutil.copy2(f, copy / f.name)  # a copy keeps the times, not the file's identity
    assert read_stamped_pickle(copy / path.name, copy / note.name, {"a": 1}) is None
    if hasattr(os, "geteuid"):  # another user's folder, read in place, is not trusted either
        from unittest import mock
        with mock.patch("os.geteuid", return_value=os.geteuid() + 1):
            assert read_stamped_pickle(path, note, {"a": 1}) is None
        assert read_stamped_pickle(path, note, {"a": 1}) == [1, 2]
    note.write_text("{broken")
    assert read_stamped_pickle(path, note, {"a": 1}) is None


def test_similar_refuses_an_unknown_id_in_one_line(tiny_run, capsys):
    with pytest.raises(UserError, match="no galaxy with id 'nope'"):
        similar_run(tiny_run, "nope", "form")
    assert main(["similar", str(tiny_run.path), "--id", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err
    # a galaxy flagged at ingest is in the catalogue, not the cube: said so, with its flags, as classify says
    cat = tiny_run.read_catalogue()
    extra = pd.DataFrame({"id": ["blank1"], "morph": ["disk"], "cube_index": [-1], "flag_blank": [True]})
    write_table(tiny_run.catalogue, pd.concat([cat.assign(flag_blank=False), extra], ignore_index=True))
    with pytest.raises(UserError, match=r"'blank1' was flagged at ingest \(blank\): not in the cube of"):
        similar_run(tiny_run, "blank1", "form")
    assert main(["similar", str(tiny_run.path), "--id", "g01", "--embedding", "nothing", "--quiet"]) == 2


def test_an_embedding_of_an_earlier_cube_is_refused_in_one_line(tiny_run, capsys):
    """A re-ingest keeps the embeddings until `embed` runs: another galaxy's neighbours, or an IndexError."""
    write_npy(tiny_run.embedding_path("form"), np.zeros((12, 4), np.float32))
    for call in (lambda: similar_run(tiny_run, "g29", "form"),
                 lambda: similar_to_image(tiny_run, np.zeros(4), np.zeros((3, 16, 16)), "form")):
        with pytest.raises(UserError, match=r"embedding 'form' has 12 rows but the cube 30: re-run `morphospace embed`"):
            call()


def test_a_gallery_of_many_neighbours_is_a_grid_of_the_first_hundred(tmp_path):
    """`similar --k 1000` drew one row of 1,001 cutouts, 130,000 px wide."""
    from PIL import Image

    from morphospace.analysis.similar import GALLERY_MAX, _gallery

    rng = np.random.default_rng(0)
    images = [rng.random((3, 8, 8)).astype(np.float32) for _ in range(301)]
    table = pd.DataFrame({"rank": np.arange(301), "id": [f"g{i}" for i in range(301)], "distance": np.arange(301.0)})
    _gallery(images, table, tmp_path / "many.png")
    _gallery(images[:5], table[:5], tmp_path / "few.png")
    w, h = Image.open(tmp_path / "many.png").size
    few_w, few_h = Image.open(tmp_path / "few.png").size
    assert w < 1500 and h > 8 * few_h  # 11 rows of 10 (the query and the first 100), not one row of 301
    assert few_w < w and GALLERY_MAX == 100


# --- a new image: `morphospace similar RUN --image FILE` ------------------------------------------

@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A real run: 18 rendered galaxies (PNG and JPEG) ingested at 32 px, the pixel PCA, and a
    tiny form-first VaDE (its form embedding and z_mean)."""
    from fixtures import ingest_to, tiny_folder_survey
    from test_form import FORM_TINY

    from morphospace.analysis.pixels import pixel_pca_run
    from morphospace.config import apply_overrides, load_config
    from morphospace.vade.embed import embed_run
    from morphospace.vade.train import train_run

    root = tmp_path_factory.mktemp("image_query")
    data = tiny_folder_survey(root / "data", n=18, formats=("png", "jpg"), size=64)
    _, _, _, run = ingest_to(data, root / "run", preprocess__size=32)
    pixel_pca_run(run, 8, fit_sample=12, seed=3)  # fitted on a sample: a query must refit on the same rows
    cfg = apply_overrides(load_config(None), FORM_TINY)
    train_run(run, cfg)
    embed_run(run, cfg)
    return run, data


def test_the_pixel_pca_fitted_on_a_sample_projects_every_galaxy(image_run):
    import json

    from morphospace.analysis.pixels import PixelPCA, pixel_pca_fit_rows

    run, _ = image_run
    meta = json.loads(run.embedding_path("pixels_pca").with_suffix(".json").read_text())
    cube = run.read_cube()
    rows = pixel_pca_fit_rows(len(cube), meta)
    assert meta["fit_sample"] == 12 and len(rows) == 12 and len(run.read_embedding("pixels_pca")) == 18
    on_all = PixelPCA(n_components=8).fit(cube).transform(cube)
    assert not np.allclose(np.abs(on_all), np.abs(run.read_embedding("pixels_pca")), atol=1e-3)  # a different fit


@pytest.mark.parametrize("embedding", ["form", "vade", "pixels_pca"])
def test_a_galaxys_own_file_finds_that_galaxy_first(image_run, embedding):
    from morphospace.pipeline import embed_image

    run, data = image_run
    X = run.read_embedding(embedding)
    ids = list(run.cube_ids())
    scale = float(np.median(np.linalg.norm(X - X.mean(0), axis=1)))
    for name in ("g3.jpg", "g8.png"):  # JPEG (decoded in draft mode at ingest) and PNG
        row, vector = embed_image(run, data / name, embedding)
        # the ingest's row, and the embedding the run computed for it
        np.testing.assert_allclose(row, run.read_cube()[ids.index(name[:2])], atol=1e-6)
        assert np.linalg.norm(vector - X[ids.index(name[:2])]) < 1e-3 * scale
        table, gallery = similar_to_image(run, vector, row, embedding, k=4, query=name)
        assert list(table["rank"]) == [0, 1, 2, 3, 4] and table["id"].iloc[0] == name
        assert table["id"].iloc[1] == name[:2] and table["distance"].iloc[1] < 1e-3 * scale
        assert (table["distance"].iloc[2:] > table["distance"].iloc[1]).all()
        assert gallery.is_file() and gallery.name.startswith("query_") and gallery.name.endswith(f"_{embedding}.png")


def test_similar_image_on_the_command_line(image_run, capsys, tmp_path):
    import shutil

    run, data = image_run
    copy = shutil.copy(data / "g4.png", tmp_path / "mine.png")  # another name, the same pixels
    assert main(["similar", str(run.path), "--image", str(copy), "--k", "3", "--embedding", "form", "--quiet"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "mine.png" in lines[1] and lines[2].split()[:2] == ["1", "g4"] and "gallery:" in lines[-1]
    assert list((run.path / "similar").glob("query_mine.png-*__form.parquet"))
    # the default embedding is the run's primary one (form, here)
    assert main(["similar", str(run.path), "--image", str(copy), "--k", "2", "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[2].split()[:2] == ["1", "g4"]
    # a file name that is not UTF-8 (Latin-1): a traceback from the results' file name before
    latin = shutil.copy(data / "g4.png", tmp_path / os.fsdecode(b"m\xe9ine.png"))
    assert main(["similar", str(run.path), "--image", str(latin), "--k", "2", "--embedding", "form", "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[2].split()[:2] == ["1", "g4"]


def test_a_grey_image_in_a_colour_run_is_embedded_and_said(image_run, tmp_path, caplog):
    """A grey query in a colour run is kept (as the ingest keeps a grey frame in a colour cube),
    with its band repeated, and the log says that its neighbours may follow the colour it lacks."""
    from PIL import Image

    from morphospace.pipeline import embed_image

    run, data = image_run
    grey = tmp_path / "grey.png"
    Image.open(data / "g4.png").convert("L").save(grey)
    with caplog.at_level("WARNING", logger="morphospace"):
        row, _ = embed_image(run, grey, "form")
    assert row.shape[0] == 3 and np.array_equal(row[0], row[1]) and np.array_equal(row[1], row[2])
    assert "grey.png has fewer bands than the run's colour cube" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="morphospace"):
        embed_image(run, data / "g4.png", "form")
    assert "fewer bands" not in caplog.text


def test_two_images_called_alike_keep_their_own_results(image_run, capsys, tmp_path):
    """Two folders' ``galaxy.png`` (and ids that differ only in characters a file name cannot
    hold) are written to files of their own, not one over the other."""
    import shutil

    from morphospace.analysis.similar import _output_name

    run, data = image_run
    for folder, source in (("a", "g4.png"), ("b", "g6.png")):
        (tmp_path / folder).mkdir()
        shutil.copy(data / source, tmp_path / folder / "galaxy.png")
        assert main(["similar", str(run.path), "--image", str(tmp_path / folder / "galaxy.png"), "--k", "2",
                     "--embedding", "form", "--quiet"]) == 0
    capsys.readouterr()
    tables = sorted((run.path / "similar").glob("query_galaxy.png-*__form.parquet"))
    assert len(tables) == 2 and len(list((run.path / "similar").glob("query_galaxy.png-*__form.png"))) == 2
    firsts = {pd.read_parquet(t)["id"].iloc[1] for t in tables}
    assert firsts == {"g4", "g6"}  # each file its own query's neighbours
    assert _output_name("a b", "form") != _output_name("a_b", "form") and _output_name("a_b", "form") == "a_b__form"


def test_a_damaged_pixel_pca_record_is_one_line(image_run, capsys, tmp_path):
    import shutil

    run, data = image_run
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    shutil.rmtree(copy / "models" / "similar", ignore_errors=True)  # no cached refit: the record is read
    (copy / "embeddings" / "pixels_pca.json").write_text("garbage")
    code = main(["similar", str(copy), "--image", str(data / "g4.png"), "--embedding", "pixels_pca", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pixels_pca.json is damaged" in err


def _hostile(folder):
    """Files a user might hand to --image by mistake, and the words the error must contain."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all\n")
    good = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(good).save(folder / "whole.png")
    (folder / "cut.png").write_bytes((folder / "whole.png").read_bytes()[:300])
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(folder / "flat.png")
    Image.fromarray(good[:4, :4]).save(folder / "tiny.png")
    return {"empty.png": "zero-byte", "notes.png": "not an image", "cut.png": "truncated", "flat.png": "blank",
            "tiny.png": "smaller than 8", "missing.jpg": "no such file", ".": "folder"}


def test_a_hostile_image_is_one_line_and_exit_2(image_run, capsys, tmp_path):
    run, _ = image_run
    for name, words in _hostile(tmp_path / "bad").items():
        assert main(["similar", str(run.path), "--image", str(tmp_path / "bad" / name), "--quiet"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, (name, err)
    with pytest.raises(SystemExit) as refused:  # a usage error: the parser's one line
        main(["similar", str(run.path), "--image", "", "--quiet"])
    assert refused.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    for argv in (["--id", "g1", "--image", "x.png"], []):  # one of the two, not both, not neither
        with pytest.raises(SystemExit) as exc:
            main(["similar", str(run.path), *argv, "--quiet"])
        assert exc.value.code == 2


def test_an_embedding_that_cannot_embed_a_new_image_names_those_that_can(image_run, tiny_run, capsys, tmp_path):
    run, data = image_run
    write_npy(run.embedding_path("features"), np.zeros((len(run.cube_ids()), 4), np.float32))
    try:
        assert main(["similar", str(run.path), "--image", str(data / "g1.jpg"), "--embedding", "features",
                     "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "'features'" in err and "form, vade, pixels_pca" in err
    finally:
        run.embedding_path("features").unlink()
    # a run with a form embedding but no trained model to embed a new image with
    assert main(["similar", str(tiny_run.path), "--image", str(data / "g1.jpg"), "--embedding", "form",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    # a run without the embedding asked for: said so, as --id says it (not that it "cannot embed")
    assert main(["similar", str(tiny_run.path), "--image", str(data / "g1.jpg"), "--embedding", "vade",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no embedding 'vade' in" in err and "morphospace embed" in err


def test_similar_to_image_refuses_a_vector_that_does_not_fit(tiny_run):
    image = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(UserError, match="4"):
        similar_to_image(tiny_run, np.zeros(3), image, "form")
    with pytest.raises(UserError, match="not finite"):
        similar_to_image(tiny_run, np.array([0.0, np.nan, 0.0, 0.0]), image, "form")
    table, gallery = similar_to_image(tiny_run, tiny_run.read_embedding("form")[0], image, "form", k=2, query="q")
    assert list(table["id"][:2]) == ["q", "g00"] and len(table) == 3 and gallery.is_file()


def test_a_k_beyond_the_cube_is_said_not_capped_in_silence(tiny_run, caplog):
    n = len(tiny_run.cube_ids())
    with caplog.at_level("WARNING", logger="morphospace"):
        table, _ = similar_run(tiny_run, "g29", "form", k=n + 50)
    assert len(table) == n and f"k = {n + 50}, but the cube holds {n - 1} other galaxies" in caplog.text


def test_a_new_image_is_not_searched_among_an_earlier_model_s_codes(image_run, tmp_path, capsys):
    """After `train` and before `embed`, the query went through the new model and was searched among
    the embeddings of the one before: a galaxy's own file found another galaxy first, at exit 0."""
    import json
    import shutil

    from morphospace.pipeline import embed_image

    run, data = image_run
    copy = RunDir(shutil.copytree(run.path, tmp_path / "run"))
    note = copy.embedding_path("vade").with_suffix(".json")
    meta = json.loads(note.read_text())
    note.write_text(json.dumps({**meta, "model_fingerprint": "0" * 64}))  # as if trained again since
    for embedding in ("form", "vade"):
        with pytest.raises(UserError, match=r"not its model's \(the model was trained again after `morphospace "
                                            r"embed` made them\).*run `morphospace embed"):
            embed_image(copy, data / "g4.png", embedding)
    assert main(["similar", str(copy.path), "--image", str(data / "g4.png"), "--quiet"]) == 2
    assert "run `morphospace embed" in capsys.readouterr().err
    embed_image(copy, data / "g4.png", "pixels_pca")  # no model involved: searched as before
    note.write_text(json.dumps(meta))
    assert embed_image(copy, data / "g4.png", "form")[1].shape == (copy.read_embedding("form").shape[1],)


def test_the_neighbours_of_an_earlier_model_are_said_so_and_another_preset_s_run_skips_its_form_embedding(
        tiny_run, capsys):
    """After `train` and before `embed`, `similar --id` gave the model before's neighbours as the run's
    without a word; on a run now of the astrovader or default preset it searched the earlier form
    model's embedding, the only one it found."""
    import json

    note = tiny_run.embedding_path("vade").with_suffix(".json")
    note.write_text(json.dumps({"name": "vade", "model_fingerprint": "of a model since replaced"}))
    assert main(["similar", str(tiny_run.path), "--id", "g29", "--k", "3"]) == 0
    assert "the 'form' embedding searched is not that of the run's model" in capsys.readouterr().err
    folder = tiny_run.path / "models" / "vade"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"a model")
    (folder / "hparams.json").write_text(json.dumps({"preset": "default"}))
    assert main(["similar", str(tiny_run.path), "--id", "g29", "--k", "3"]) == 2
    err = capsys.readouterr().err  # not the earlier form model's: embed first
    assert "is an earlier model's (the run's model is of the default preset): run `morphospace embed`" in err
    assert main(["similar", str(tiny_run.path), "--id", "g29", "--k", "3", "--embedding", "form", "--quiet"]) == 0
