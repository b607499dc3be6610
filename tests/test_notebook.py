"""The notebook API: ms.ingest / ms.Run, the VaDE estimator, ms.compare, ms.plot, and the README's
Python section, run as written (on a tiny survey instead of sdss-gz1)."""

import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import morphospace as ms
from morphospace.cli import main

from fixtures import rendered

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {"train.batch_size": 12, "form.decoder_widths": [8, 16, 16, 16], "form.ssl_epochs": 2, "form.aug_views": 1,
        "form.decoder_epochs": 1}


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb") / "survey"
    assert main(["synth", "--n", "24", "--seed", "3", "--out", str(out), "--size", "64", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def run(survey, tmp_path_factory):
    return ms.ingest(survey, run=tmp_path_factory.mktemp("nb") / "run")


@pytest.fixture(scope="module")
def fitted(run):
    return ms.VaDE(n_components=3, epochs=2, pretrain_epochs=1, config=TINY, random_state=0).fit(run.cube)


def _pixels(fig) -> np.ndarray:
    return np.round(rendered(fig) * 255).astype(int)  # 8-bit values


def test_ingest_gives_a_run_with_catalogue_and_cube_in_the_same_order(run, survey):
    assert isinstance(run, ms.Run)
    cat, cube = run.catalogue, run.cube
    assert len(cat) == len(cube) == 24 and cube.ndim == 4 and isinstance(cube, np.memmap)
    assert (cat["cube_index"].to_numpy() == np.arange(24)).all()
    truth = pd.read_csv(survey / "catalogue.csv").set_index("id")
    assert (cat["morphology"].to_numpy() == truth.loc[cat["id"], "morphology"].to_numpy()).all()
    assert len(run.embeddings) == 0 and "no clustering 'x'" in str(pytest.raises(KeyError, lambda: run.clusterings["x"]).value)


def test_ingest_refuses_bad_settings_and_missing_data(tmp_path, survey):
    with pytest.raises(ValueError, match="preprocess.size"):
        ms.ingest(survey, run=tmp_path / "r", preprocess__size=-3)
    with pytest.raises(FileNotFoundError):
        ms.ingest(tmp_path / "nothing", run=tmp_path / "r2")
    # one setting given two ways: one won without a word (a 48 px cube for config's 32; data__path ignored)
    with pytest.raises(ValueError, match=r"preprocess.size is given twice, 32 in config and 48 as preprocess__size"):
        ms.ingest(survey, run=tmp_path / "r2", config={"preprocess.size": 32}, preprocess__size=48)
    with pytest.raises(ValueError, match="the survey is given twice"):
        ms.ingest(survey, run=tmp_path / "r2", data__path=str(tmp_path / "odd"))
    assert not (tmp_path / "r2").exists()
    before = sorted(p.name for p in survey.iterdir())
    with pytest.raises(ValueError, match="is the data folder"):
        ms.ingest(survey, run=survey)
    assert sorted(p.name for p in survey.iterdir()) == before
    # the command line's refusals of a run's place: "" (the notebook's folder), another run's models/
    with pytest.raises(ValueError, match="run must name a folder, got an empty path"):
        ms.ingest(survey, run="")
    for empty in ("", "  "):  # the built-in synthetic survey was ingested (rendered first if not cached)
        with pytest.raises(ValueError, match="data must name a survey .* got an empty path"):
            ms.ingest(empty, run=tmp_path / "r3")
    assert not (tmp_path / "r3").exists()
    first = ms.ingest(survey, run=tmp_path / "first")
    with pytest.raises(ValueError, match="is inside the folder models/ of the run"):
        ms.ingest(survey, run=first.path / "models" / "sub")
    assert not (first.path / "models" / "sub").exists()


def test_run_reads_what_the_cli_wrote(run, fitted):
    from morphospace.run import RunDir

    d = RunDir(run.path)
    ids = d.cube_ids()
    d.write_clustering("mine", ids[::-1], np.arange(24) % 3)  # stored in another order than the cube's
    labels = ms.Run(run.path).clusterings["mine"]
    assert list(labels.index) == list(ids) and (labels.to_numpy() == (np.arange(24) % 3)[::-1]).all()


def test_editing_what_a_run_handed_out_does_not_change_later_reads(run, tmp_path):
    """ms.Run handed out its cached objects: `xy -= 100` on a map, `labels[:] = 0` on a clustering
    or a cell set in a comparison table came back from every later read of the run (a fresh Run
    read the files). Arrays are now read-only views, tables copies."""
    import shutil

    from morphospace.run import RunDir, write_npy

    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    d, r = RunDir(copy), ms.Run(copy)
    write_npy(d.reduction_path("x_pca"), np.arange(48, dtype=np.float32).reshape(24, 2))
    d.write_clustering("mine", d.cube_ids(), np.arange(24) % 3)
    xy = r.reductions["x_pca"]
    with pytest.raises(ValueError, match="read-only"):
        xy -= 100
    with pytest.raises(ValueError):  # nor can the flag be set back (the cached array is read-only too)
        xy.flags.writeable = True
    edited = xy.copy()
    edited -= 100  # a copy is the user's to edit
    labels = r.clusterings["mine"]
    labels[:] = 0
    assert (r.clusterings["mine"].to_numpy() == np.arange(24) % 3).all()
    assert r.reductions["x_pca"].sum() == np.arange(48).sum()


def test_a_run_read_earlier_sees_what_a_stage_rewrote_or_removed_since(run, tmp_path):
    """A Run kept in a notebook while a stage runs in a terminal: a clustering, embedding or map
    rewritten since is read again, one removed is gone (before, the first read was served
    forever, removed files included)."""
    import shutil

    from morphospace.run import RunDir, write_npy

    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    d, r = RunDir(copy), ms.Run(copy)
    ids = d.cube_ids()
    d.write_clustering("mine", ids, np.arange(24) % 3)
    write_npy(d.embedding_path("mine"), np.zeros((24, 2), np.float32))
    assert (r.clusterings["mine"].to_numpy() == np.arange(24) % 3).all() and r.embeddings["mine"].sum() == 0
    d.write_clustering("mine", ids, np.arange(24) % 2)
    write_npy(d.embedding_path("mine"), np.ones((24, 2), np.float32))
    assert (r.clusterings["mine"].to_numpy() == np.arange(24) % 2).all() and r.embeddings["mine"].sum() == 48
    d.clustering_path("mine").unlink()
    assert "mine" not in r.clusterings
    with pytest.raises(KeyError, match="no clustering 'mine'"):
        r.clusterings["mine"]


def test_a_run_missing_or_damaged_gives_python_s_own_exceptions(run, tmp_path):
    """In a notebook a run's missing file is a FileNotFoundError and a damaged one a ValueError,
    with the command line's one-line message (not morphospace's own UserError)."""
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is not a run"):  # it read as a run of nothing
        ms.Run(empty)
    with pytest.raises(FileNotFoundError, match="no trained VaDE"):
        ms.load_model(empty)
    (empty / "config.toml").write_text("")  # a run begun (import-astrovader writes its settings first)
    for read in (lambda r: r.catalogue, lambda r: r.cube, lambda r: r.model):
        with pytest.raises(FileNotFoundError, match="not found|no trained VaDE"):
            read(ms.Run(empty))
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    (copy / "embeddings").mkdir(exist_ok=True)
    (copy / "embeddings" / "mine.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="mine.npy is damaged"):
        ms.Run(copy).embeddings["mine"]
    # rows of other galaxies, read as this cube's: paired with the wrong galaxies, without a word
    np.save(copy / "embeddings" / "mine.npy", np.zeros((7, 4), np.float32))
    (copy / "reductions").mkdir(exist_ok=True)
    np.save(copy / "reductions" / "mine_pca.npy", np.zeros((3, 2), np.float32))
    opened = ms.Run(copy)
    with pytest.raises(ValueError, match="'mine' .* has 7 rows but the cube 24: .* re-run `morphospace embed`"):
        opened.embeddings["mine"]
    with pytest.raises(ValueError, match="has 3 rows but the cube 24: .* re-run `morphospace reduce`"):
        opened.reductions["mine_pca"]
    (copy / "comparisons").mkdir(exist_ok=True)
    (copy / "comparisons" / "x.csv").write_bytes(b'a,b\n"1')
    with pytest.raises(ValueError, match="x.csv is damaged .*re-run `morphospace compare`"):
        opened.comparisons["x"]
    (copy / "catalogue.parquet").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="catalogue.parquet is damaged"):
        ms.Run(copy).catalogue


def test_vade_estimator_follows_scikit_learn(run, fitted):
    cube = run.cube
    assert fitted.n_features_in_ == int(np.prod(cube.shape[1:])) and fitted.n_components_ == 3
    z = fitted.transform(cube)
    assert z.shape == (24, 16) and np.isfinite(z).all()
    # the codes of the training images computed once at fit are those transform gives
    assert np.allclose(fitted.latent_, z, atol=1e-4)
    p = fitted.predict_proba(cube)
    assert p.shape == (24, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (fitted.predict(cube) == p.argmax(1)).all() and (fitted.labels_ == p.argmax(1)).all()
    assert np.isfinite(fitted.score_samples(cube)).all()
    fakes = fitted.sample(5, component=1)
    assert fakes.shape == (5,) + cube.shape[1:] and np.isfinite(fakes).all()
    assert fitted.inverse_transform(z[:2]).shape == (2,) + cube.shape[1:]
    # parameters: get/set/clone round trip; clone is unfitted
    params = fitted.get_params()
    assert params["n_components"] == 3 and params["config"] == TINY
    twin = clone(fitted)
    assert twin.get_params() == params and not hasattr(twin, "model_")
    with pytest.raises(NotFittedError):
        twin.transform(cube)
    assert twin.set_params(latent_dim=8).latent_dim == 8


def test_the_numpy_model_masks_as_the_run_did(run, fitted):
    """The trained model's numpy methods mask a float16 cube's neighbours exactly as the run's
    masked cube holds them (float16 too): `encode(run.cube)` sees what `morphospace embed` saw."""
    from morphospace.image.masking import masked_cube
    from morphospace.run import RunDir

    cube = run.cube
    assert cube.dtype == np.float16 and fitted.model_.hparams["mask_neighbours"]
    masked = np.asarray(masked_cube(RunDir(run.path)), dtype=np.float32)
    assert (masked != np.asarray(cube, dtype=np.float32)).any()  # neighbours were masked
    assert np.array_equal(fitted.model_._images(cube), masked)


def test_a_memory_mapped_cube_is_read_a_chunk_at_a_time_and_never_copied(run, fitted, tmp_path, monkeypatch):
    from morphospace.vade import fit_cube
    from morphospace.vade.fit_cube import place_cube

    whole = fitted.transform(run.cube)
    p = fitted.predict_proba(run.cube)
    monkeypatch.setattr(fitted.model_, "batch_size", 5)  # 24 rows: five batches, the last of 4
    # the same to float32's rounding of codes up to ~7 (batches of another size round otherwise: 2e-6 on an
    # AVX-512 CPU, more on an AVX2 one, where a whole suite's run failed atol=1e-5)
    np.testing.assert_allclose(fitted.transform(run.cube), whole, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fitted.predict_proba(run.cube), p, rtol=1e-5, atol=1e-5)
    # fit's temporary run links a whole memory-mapped cube (and its fresh masked cube), and copies
    # anything else in chunks
    from morphospace.image.masking import masked_cube
    from morphospace.run import RunDir, write_table

    monkeypatch.setattr(fit_cube, "CHUNK_ROWS", 5)
    built = np.asarray(masked_cube(RunDir(run.path)))
    linked = RunDir(tmp_path / "linked", create=True)
    place_cube(linked, run.cube)
    write_table(linked.catalogue, run.catalogue[["id", "cube_index"]])
    assert linked.cube.is_symlink() and (linked.path / "cube_masked.npy").is_symlink()
    assert np.array_equal(masked_cube(linked), built)  # fresh for the linked cube: not rebuilt
    assert (linked.path / "cube_masked.npy").is_symlink()
    stamp = (run.path / "cube_masked.npy").stat().st_mtime_ns
    (linked.path / "cube_masked.json").write_text("{}")  # stale: rebuilt in the linked run alone
    assert np.array_equal(masked_cube(linked), built)
    assert not (linked.path / "cube_masked.npy").is_symlink()
    assert (run.path / "cube_masked.npy").stat().st_mtime_ns == stamp
    part = RunDir(tmp_path / "part", create=True)
    place_cube(part, run.cube[3:17])
    assert not part.cube.is_symlink() and not (part.path / "cube_masked.npy").exists()
    assert np.load(part.cube).dtype == np.float16 and np.array_equal(np.load(part.cube), run.cube[3:17])
    listed = RunDir(tmp_path / "listed", create=True)
    place_cube(listed, np.asarray(run.cube[:4]).astype(np.float64))
    assert np.load(listed.cube).dtype == np.float32


def test_vade_estimator_saves_and_loads(run, fitted, tmp_path):
    path = fitted.save(tmp_path / "m.pt")
    back = ms.VaDE.load(path)
    assert back.get_params() == fitted.get_params()
    assert np.allclose(back.transform(run.cube[:6]), fitted.transform(run.cube[:6]), atol=1e-5)
    assert (back.labels_ == fitted.labels_).all()
    # a run's own model.pt has no training labels: it loads, and saves again
    from morphospace.api import save_model

    save_model(fitted.model_.vade, fitted.model_.hparams, tmp_path / "model.pt")  # as training writes it
    from_run = ms.VaDE.load(tmp_path / "model.pt")
    assert not hasattr(from_run, "labels_")
    # its parameters train the same kind of model (they were the defaults': K by BIC, ImageNet's settings)
    from morphospace.config import apply_overrides, load_config
    from morphospace.vade.hparams import resolve_hparams

    made, want = from_run._overrides(), fitted._overrides()
    assert from_run.n_components == 3 and from_run.get_params()["batch_size"] == 12
    assert all(made[k] == v for k, v in want.items() if k != "train.epochs"), (made, want)
    hp = fitted.model_.hparams
    again = resolve_hparams(apply_overrides(load_config(None), made), hp["channels"], hp["image_size"])
    differ = {k for k in hp if k != "form" and again.get(k) != hp[k]}
    differ |= {f"form.{k}" for k in hp["form"] if k != "n_components" and again["form"].get(k) != hp["form"][k]}
    assert not differ, differ  # every setting the model was trained with, but the K the BIC chose
    again = ms.VaDE.load(from_run.save(tmp_path / "again.pt"))
    assert np.allclose(again.transform(run.cube[:2]), from_run.transform(run.cube[:2]), atol=1e-5)
    # onto a run's own files: its catalogue or cube replaced by a model file, the run unusable after
    before = (run.path / "catalogue.parquet").read_bytes()
    for target in ("catalogue.parquet", "cube.npy", "models/vade/model.pt"):
        with pytest.raises(ValueError, match="is a file of the run"):
            from_run.save(run.path / target)
    assert (run.path / "catalogue.parquet").read_bytes() == before and not (run.path / "models").exists()
    with pytest.raises(FileNotFoundError):
        ms.VaDE.load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError):
        ms.load_model(tmp_path / "no-run")
    # a run, as load_model takes it: its folder or its ms.Run (they were "no saved model" and a TypeError)
    trained = tmp_path / "trained"
    shutil.copytree(run.path, trained)
    (trained / "models" / "vade").mkdir(parents=True)
    shutil.copy(tmp_path / "model.pt", trained / "models" / "vade" / "model.pt")
    for where in (trained, ms.Run(trained)):
        assert np.allclose(ms.VaDE.load(where).transform(run.cube[:2]), from_run.transform(run.cube[:2]))
    with pytest.raises(FileNotFoundError):
        ms.VaDE.load(run)  # a run without a trained model


def test_a_garbage_model_file_is_called_damaged_not_a_pickle_to_trust(tmp_path):
    """Bytes that are no model at all were described as a file holding Python objects, with the
    advice to load it trusted: wrong, and unsafe advice. Only a file naming Python objects is that."""
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a model at all\n" * 20)
    picture = tmp_path / "rec.png"  # an image given for a model: "damaged", with torch's advice cut off
    from PIL import Image

    Image.new("RGB", (8, 8)).save(picture)
    for load in (ms.load_model, ms.VaDE.load):
        for path in (garbage, picture):
            with pytest.raises(ValueError, match=rf"{path.name} is not a model file \(a model morphospace saves is a "
                                                 r"torch archive") as err:
                load(path)
            assert "trusted" not in str(err.value) and "PyTorch" not in str(err.value)
        cut = tmp_path / "cut.pt"  # a torch archive cut short is damaged
        cut.write_bytes(b"PK\x03\x04 not really a model")
        with pytest.raises(ValueError, match="cut.pt is damaged"):
            load(cut)
    torch.save({"hparams": {"n": np.zeros(2)}, "state_dict": {}}, tmp_path / "objects.pt")
    with pytest.raises(ValueError, match="holds Python objects besides weights and settings.*trusted=True"):
        ms.VaDE.load(tmp_path / "objects.pt")


def test_a_model_file_with_settings_missing_or_from_another_version_is_one_value_error(fitted, tmp_path, caplog):
    """A model.pt that unpickles but whose settings are missing or not a table is "damaged / does
    not fit" in one line (a KeyError or TypeError before), on the command line and in the API; an
    estimator setting this version lacks is left out with a warning, not a TypeError."""
    path = fitted.save(tmp_path / "m.pt")
    blob = torch.load(path, weights_only=False)
    for name, mend in (("nopreset", lambda b: b["hparams"].pop("preset")), ("nohp", lambda b: b.update(hparams=None)),
                       ("nochannels", lambda b: b["hparams"].pop("channels")), ("noextra", lambda b: b.update(extra=7))):
        bad = {**blob, "hparams": dict(blob["hparams"])}
        mend(bad)
        torch.save(bad, tmp_path / f"{name}.pt")
        for load in (ms.load_model, ms.VaDE.load):
            with pytest.raises(ValueError, match=r"is damaged|does not fit its own hyper-parameters"):
                load(tmp_path / f"{name}.pt")
    newer = {**blob, "extra": {**blob["extra"], "estimator": {**blob["extra"]["estimator"], "warp": 9}}}
    torch.save(newer, tmp_path / "newer.pt")
    with caplog.at_level("WARNING", logger="morphospace"):
        assert ms.VaDE.load(tmp_path / "newer.pt").get_params() == fitted.get_params()
    assert "left out: warp" in caplog.text
    run = tmp_path / "run"
    (run / "models" / "vade").mkdir(parents=True)
    (run / "config.toml").write_text("")
    shutil.copy(tmp_path / "nopreset.pt", run / "models" / "vade" / "model.pt")
    assert main(["generate", str(run), "--component", "0", "--n", "1", "--out", str(tmp_path / "g"), "--quiet"]) == 2


def test_every_misuse_of_a_fitted_model_is_a_value_error(run, fitted):
    """What scikit-learn users catch: a ValueError with a clear message, never a TypeError,
    IndexError or NaN answers."""
    shape = (1, *fitted.image_shape_)
    misuse = [
        (lambda: fitted.transform(run.cube[:0]), "no images"),
        (lambda: fitted.transform(np.full(shape, np.nan, np.float32)), "finite"),
        (lambda: fitted.score_samples(np.full(shape, np.inf, np.float32)), "finite"),
        (lambda: fitted.transform(run.cube[0]), r"got one image: pass it as a batch of one, X\[None\]"),
        # 0-255 levels as a list were cast to float and used (as an array they were refused)
        (lambda: fitted.transform((np.asarray(run.cube[:2]) * 255).astype(int).tolist()), "floating point"),
        (lambda: ms.VaDE().fit((np.asarray(run.cube[:4]) * 255).astype(int).tolist()), "floating point"),
        (lambda: ms.plot.reconstructions(fitted, run.cube, seed=-1), "seed must be a whole number"),  # deep in numpy
        (lambda: fitted.sample(0), "n must be in 1..100,000"),
        (lambda: fitted.sample(2.5), "n must be an integer"),
        (lambda: fitted.sample(2, component=0.5), "component must be an integer"),
        (lambda: fitted.sample(2, component=99), "component must be in"),
        (lambda: fitted.sample(2, temperature=0), "temperature must be a number in"),
        (lambda: fitted.inverse_transform(np.zeros((2, 999))), "expected latent codes"),
        # one code refused as one image is by transform (it was decoded as a batch of one)
        (lambda: fitted.inverse_transform(fitted.latent_[0]), r"got one code: pass it as a batch of one, Z\[None\]"),
        (lambda: ms.compare(np.zeros((3, 2)), [0, 1, 1]), "one value per galaxy"),
        (lambda: ms.linear_probe(np.zeros((30, 2)), ["a", "b"] * 5), "one label per row"),
        (lambda: ms.linear_probe(np.zeros((30, 2)), ["a", "b"] * 15, repeats=0), "repeats must be"),
        (lambda: ms.linear_probe(np.zeros((30, 2)), ["a", "b"] * 15, fractions=[]), "fractions must be"),
        (lambda: ms.linear_probe(np.zeros((30, 2)), ["a", "b"] * 15, max_rows=0), "max_rows must be"),
        # deep inside joblib and umap before
        (lambda: ms.linear_probe(np.zeros((30, 2)), ["a", "b"] * 15, n_jobs=0), "n_jobs must be a whole number other than 0"),
        (lambda: ms.TSNE(n_jobs=0).fit(np.random.default_rng(0).random((10, 3))), "n_jobs must be"),
        (lambda: ms.UMAP(min_dist=2).fit(np.random.default_rng(0).random((10, 3))), r"min_dist must be a number in \[0, 1\]"),
        (lambda: ms.SimilarityIndex().fit(np.random.default_rng(0).random((10, 3))).kneighbors(np.zeros((1, 3)), 0),
         "k must be a whole number of at least 1"),
        (lambda: ms.SimilarityIndex().fit(np.random.default_rng(0).random((10, 3))).kneighbors(np.zeros((1, 3)), 2.5),
         "k must be a whole number"),
        # no cell visited would find nothing
        (lambda: ms.SimilarityIndex(probe_fraction=0).fit(np.zeros((10, 3))), r"probe_fraction must be None or a number in \(0, 1\]"),
        # fitted without labels it only suggests: a ValueError (it was a UserError, which a notebook's
        # `except ValueError` does not catch)
        (lambda: ms.FewLabelClassifier().fit(np.random.default_rng(0).random((10, 3)), [None] * 10).predict(
            np.zeros((1, 3))), "fitted without labels"),
        # what fit refuses, transform and predict refuse alike (a NaN row went to cluster 0)
        (lambda: ms.ComponentMerger(n_clusters=2).fit(np.eye(4)).predict(np.full((2, 4), np.nan)), "finite and non-negative"),
        (lambda: ms.ComponentMerger(n_clusters=2).fit(np.eye(4)).transform(-np.eye(4)), "finite and non-negative"),
        (lambda: ms.ComponentMerger(n_clusters=2.5).fit(np.eye(4)), "n_clusters must be an integer"),  # a KeyError
        (lambda: ms.ComponentMerger(n_clusters="3").fit(np.eye(4)), "n_clusters must be an integer"),  # a TypeError
    ]
    # the numpy model behind it (what ms.load_model and Run.model give) checks alike
    model, x = fitted.model_, np.asarray(run.cube[:3], np.float32)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    misuse += [
        (lambda: model.encode(bad), "finite"), (lambda: model.predict(bad), "finite"),
        (lambda: model.encode(x[:0]), "no images"), (lambda: model.encode((x * 255).astype(np.uint8)), "floating point"),
        (lambda: model.encode((x * 255).astype(int).tolist()), "floating point"),
        # the shape the user passed, not one made of it
        (lambda: model.encode(x[:2, 0]), r"got shape \(2, 64, 64\)"),
        (lambda: model.decode(np.zeros((0, model.latent_dim))), "N >= 1"),
        (lambda: model.decode(np.full((2, model.latent_dim), np.nan)), "finite"),
        (lambda: model.sample(2, temperature=float("nan")), "temperature must be a number in"),
        (lambda: model.sample(2.5), "n must be an integer"), (lambda: model.sample(2, component=1.5), "component must be"),
        (lambda: model.sample(2, reject_below=2), "reject_below must be"),
        (lambda: fitted.sample(2, temperature=float("inf")), "temperature must be"),
        # a TypeError from a comparison, torch's overflow: one ValueError each, as the rest
        (lambda: model.sample(2, temperature="0.5"), "temperature must be a number"),
        (lambda: model.sample(2, reject_below="0.5"), "reject_below must be a number"),
        (lambda: model.sample(2, seed=2**70), "seed must be an integer"),
        (lambda: model.sample(2, seed=-1), "seed must be an integer"),
    ]
    for call, message in misuse:
        with pytest.raises(ValueError, match=message):
            call()
    assert fitted.sample(2, random_state=None).shape == (2, *fitted.image_shape_)  # scikit-learn's None
    one, two = (fitted.sample(2, random_state=np.random.RandomState(5)) for _ in range(2))  # as fit takes them
    np.testing.assert_array_equal(one, two)
    assert fitted.sample(2, random_state=np.random.default_rng(5)).shape == one.shape


def test_the_estimator_and_the_numpy_model_draw_with_the_same_call(fitted):
    """``sample(n, component=k)`` on both; the numpy model's earlier ``sample(component, n)``
    order now fails loudly instead of drawing n galaxies of another component."""
    model = fitted.model_
    one = fitted.sample(3, component=1, temperature=0.5, random_state=4)
    other = model.sample(3, component=1, temperature=0.5, seed=4)
    np.testing.assert_array_equal(one, other)
    assert model.sample(2).shape == fitted.sample(2).shape == (2, *fitted.image_shape_)
    for draw in (model.sample, fitted.sample):
        with pytest.raises(TypeError):
            draw(1, 3)  # component by position


def test_vade_estimator_rejects_misuse(run, fitted):
    with pytest.raises(ValueError, match="square images"):
        ms.VaDE().fit(np.zeros((4, 3, 8, 6)))
    with pytest.raises(ValueError, match="finite"):
        ms.VaDE().fit(np.full((4, 1, 8, 8), np.nan))
    levels = (np.asarray(run.cube[:8], np.float32).clip(0, 1) * 255).astype(np.uint8)
    for call in (ms.VaDE().fit, fitted.transform):  # 0-255 levels: refused alike, not trained on
        with pytest.raises(ValueError, match="floating point on the run's cube scale, got uint8"):
            call(levels)
    with pytest.raises(ValueError, match="^VaDE: preset must be one of .*; got 'fomr'"):  # its parameter's name
        ms.VaDE(preset="fomr").fit(np.zeros((4, 1, 8, 8)))
    with pytest.raises(ValueError, match="expected images"):
        fitted.transform(np.zeros((2, 3, 32, 32)))
    # a launcher that starts the program again per process would run the notebook's script twice
    with pytest.raises(ValueError, match="morphospace train"):
        ms.VaDE(config={"train.devices": 2, "train.strategy": "ddp"}).fit(run.cube)
    # a setting given as a parameter and in config: refused, where config's silently won
    for est, param in ((ms.VaDE(n_components=2, config={"model.n_components": 4}), "n_components"),
                       (ms.VaDE(random_state=1, config={"train.seed": 0}), "random_state"),
                       (ms.VaDE(batch_size=0, config={"train.batch_size": 12}), "batch_size"),
                       # nested, as a TOML table: it trained 2 epochs where get_params said 1
                       (ms.VaDE(epochs=1, config={"train": {"epochs": 2}}), "epochs"),
                       (ms.VaDE(n_components=3, config={"model": {"n_components": 9}}), "n_components")):
        with pytest.raises(ValueError, match=f"config sets .* the {param}= parameter of VaDE"):
            est.fit(run.cube)
    # advice said as the estimator's parameters, not the command line's --set, which means nothing here
    with pytest.raises(ValueError, match=r"must not exceed .* = 4 with form.core = 'linear': VaDE\(latent_dim=4\)$"):
        ms.VaDE(latent_dim=8).fit(np.zeros((5, 1, 16, 16), np.float32))
    from morphospace.api import _NAMED_SETTINGS
    from morphospace.config.set_values import as_arguments

    def said(text):
        return as_arguments(text, _NAMED_SETTINGS, "VaDE")

    assert said("x (--set form.dim=64, or --set model.preset=form; --set train.x=true)") \
        == "x (VaDE(config={'form.dim': 64}), or VaDE(preset='form'); VaDE(config={'train.x': True}))"
    assert said("give --set model.latent_dim=4.") == "give VaDE(latent_dim=4)."
    # a setting a parameter holds is named as that parameter: "config: train.seed must be ..." named a key
    # the user never wrote
    assert said("config: train.epochs (1) must exceed train.pretrain_epochs (1)") \
        == "VaDE: epochs (1) must exceed pretrain_epochs (1)"
    assert said("config: form.dim must be >= 2; train.seeds") == "config: form.dim must be >= 2; train.seeds"
    with pytest.raises(ValueError, match=r"^VaDE: random_state must be in \[0, "):
        ms.VaDE(random_state=-1).fit(np.zeros((5, 1, 16, 16), np.float32))
    for kept in ("--set cluster.kmeans_k=[3, 4]", "--set 'cluster.methods=[\"a\"]'", "--set train.x='a b'"):
        assert said(kept) == kept  # a list or quoted text: not taken apart
    # one colour image was read as 3 grey ones and refused for the latent size
    with pytest.warns(UserWarning, match=r"images of shape \(3, 32, 32\) are read as 3 grey images of 32 x 32; "
                                         r"one colour image would be X\[None\]"), pytest.raises(ValueError):
        ms.VaDE().fit(np.zeros((3, 32, 32), np.float32))
    # images on another scale (0-255 pixels) were encoded without a word, to one-hot cluster probabilities
    with pytest.warns(UserWarning, match="the images span .* far from a run's cube"):
        fitted.transform(np.asarray(run.cube[:4], np.float32) * 255)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.transform(run.cube[:4])  # a run's own cube: no word
    # settings the images cannot carry: a ValueError too, before any training
    with pytest.raises(ValueError, match=r"latent_dim \(16\) must not exceed"):
        ms.VaDE().fit(np.random.default_rng(0).random((8, 3, 16, 16)))


def test_settings_are_checked_before_the_images_are_copied(monkeypatch):
    import morphospace.api as api

    def no_copy(*_):
        raise AssertionError("the images were copied before the settings were checked")

    monkeypatch.setattr(api, "place_cube", no_copy)
    with pytest.raises(ValueError, match=r"n_components \(9\) exceeds the number of galaxies \(8\)"):
        ms.VaDE(preset="default", n_components=9).fit(np.random.default_rng(0).random((8, 3, 16, 16)))


def test_a_verbose_that_is_not_a_bool_is_refused_before_any_work(monkeypatch):
    """verbose="no" is truthy: the fit showed its progress bars."""
    import morphospace.api as api

    monkeypatch.setattr(api, "place_cube", lambda *_: pytest.fail("the images were copied"))
    with pytest.raises(ValueError, match="verbose must be True or False, got 'no'"):
        ms.VaDE(verbose="no").fit(np.random.default_rng(0).random((8, 3, 16, 16)))


def test_a_fit_shows_its_progress_by_default_as_ingest_does(run, capsys, monkeypatch):
    """`ms.VaDE().fit(...)` was silent unless verbose=True (50 s of nothing on 300 galaxies): its
    training bars show by default, each naming its epoch out of how many, on stderr."""
    import morphospace.progress as progress

    monkeypatch.setattr(progress, "_QUIET", False)  # as a notebook starts (a test before may have left it on)
    capsys.readouterr()
    ms.VaDE(n_components=3, epochs=2, pretrain_epochs=1, config=TINY, random_state=0).fit(run.cube)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert "form features" in shown.err and "Epoch 2/2" in shown.err and "Epoch 1/1" in shown.err  # SSL head, decoder
    assert "Training" not in shown.err and "0/?" not in shown.err
    assert not progress.is_quiet()  # as it was


@pytest.mark.parametrize("verbose, quiet, bars", [(True, False, True), (False, False, False), (True, True, False)])
def test_verbose_false_and_the_package_s_quiet_setting_silence_a_fit(monkeypatch, verbose, quiet, bars):
    import morphospace.vade.train as train
    from morphospace.progress import is_quiet, set_quiet

    class Seen(Exception):
        pass

    def train_run(*_):
        raise Seen(not is_quiet())

    monkeypatch.setattr(train, "train_run", train_run)  # the fit's training: what it would show
    before = is_quiet()
    set_quiet(quiet)
    try:
        with pytest.raises(Seen) as seen:
            ms.VaDE(preset="default", n_components=2, latent_dim=4, verbose=verbose).fit(
                np.random.default_rng(0).random((8, 1, 16, 16)))
        assert seen.value.args == (bars,) and is_quiet() == quiet  # the setting as it was, after the fit
    finally:
        set_quiet(before)
    assert ms.VaDE().verbose is True


def test_a_map_draws_empty_and_na_labels_as_no_label():
    """"" was a class of its own in the legend (pandas reads only None and NaN as missing)."""
    fig = ms.plot.latent_map(np.random.default_rng(0).random((5, 2)), ["a", "", "a", None, "NA"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["no label (3)", "a (2)"]


def test_wrong_types_in_a_notebook_are_one_clear_exception(run, fitted, tmp_path):
    """A config that is not a dict, a model saved onto a folder, a run that is a file, a temperature
    that is not a number, NaN features in a probe: each one exception saying what was wrong (they
    were a dict-update TypeError, IsADirectoryError on a temporary name, FileExistsError, a
    TypeError from inside the sampler, scikit-learn's two-line message)."""
    with pytest.raises(TypeError, match="config must be a dict of settings"):
        ms.VaDE(config="x").fit(run.cube)
    with pytest.raises(TypeError, match="config must be a dict of settings"):
        ms.ingest(tmp_path / "nowhere", run=tmp_path / "r", config=["a"])
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match="choose a folder for the run"):
        ms.ingest(run.path, run=tmp_path / "afile")
    with pytest.raises(IsADirectoryError, match="give the file to write"):
        fitted.save(tmp_path)
    with pytest.raises(ValueError, match="temperature must be a number"):
        fitted.sample(2, temperature="a")
    x = np.random.default_rng(0).random((40, 3))
    x[5, 1] = np.nan
    with pytest.raises(ValueError, match="1 labelled rows are not finite .* row 5"):
        ms.linear_probe(x, np.array(["a", "b"] * 20))


def test_random_state_none_or_a_generator_seeds_a_fit_as_in_scikit_learn():
    from morphospace.api import _seed

    assert _seed(7) == 7
    assert _seed(np.random.RandomState(0)) == _seed(np.random.RandomState(0))
    assert _seed(np.random.default_rng(1)) == _seed(np.random.default_rng(1))
    assert len({_seed(None) for _ in range(5)}) > 1
    assert ms.VaDE(random_state=None)._overrides()["train.seed"] >= 0


def test_compare_pairs_a_runs_clustering_with_a_catalogue_column_in_cube_order_only(run, tmp_path):
    import shutil

    from morphospace.run import RunDir

    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    d, r = RunDir(copy), ms.Run(copy)
    truth = r.catalogue["morphology"]
    codes = pd.factorize(truth)[0]
    d.write_clustering("perfect", d.cube_ids(), codes)
    labels = r.clusterings["perfect"]
    assert ms.compare(labels, truth).loc["ari"].iloc[0] == pytest.approx(1.0)  # cube order: by position
    with pytest.raises(ValueError, match="not known to be in cube order"):
        ms.compare(labels.sort_values(), truth)  # scored -0.15 against itself, paired by position
    by_id = r.catalogue.set_index("id")["morphology"]
    assert ms.compare(labels.sort_values(), by_id).loc["ari"].iloc[0] == pytest.approx(1.0)


def test_compare_is_a_table_of_agreement():
    a = [0, 0, 1, 1, 2, 2]
    t = ms.compare(a, ["x", "x", "y", "y", "z", "z"], names=("clusters", "classes"))
    assert list(t.columns) == ["clusters vs classes"]
    assert t.loc["ari"].iloc[0] == pytest.approx(1.0) and t.loc["ami"].iloc[0] == pytest.approx(1.0)
    worse = ms.compare(a, [0, 1, 0, 1, 0, 1])
    assert worse.loc["ari"].iloc[0] < 0.1
    with pytest.raises(ValueError, match="length"):
        ms.compare([0, 1], [0])
    # Series indexed by galaxy pair by their index (a run's clusterings), not by position
    ids = [f"g{i}" for i in range(6)]
    clusters = pd.Series(a, index=ids)
    classes = pd.Series(["x", "x", "y", "y", "z", "z"], index=ids).iloc[[3, 0, 5, 1, 4, 2]]
    assert ms.compare(clusters, classes).loc["ari"].iloc[0] == pytest.approx(1.0)
    # 0..N-1 against a Series indexed by galaxy in an unknown order: refused (it paired by position,
    # a sorted clustering scored the wrong galaxies)
    with pytest.raises(ValueError, match="not known to be in cube order"):
        ms.compare(clusters, classes.reset_index(drop=True))
    with pytest.raises(ValueError, match="indexed by different galaxies"):
        ms.compare(clusters, classes.rename(lambda i: i + "x"))
    plain = pd.Series(a)  # 0..N-1, and the same rows sorted otherwise: paired by index too
    assert ms.compare(plain, plain.map({0: "x", 1: "y", 2: "z"}).iloc[[3, 0, 5, 1, 4, 2]]).loc["ari"].iloc[0] == 1.0


def test_plots_are_figures_that_show_what_they_say_and_leave_the_backend(run, fitted):
    backend = matplotlib.get_backend()
    fig = ms.plot.reconstructions(fitted, run.cube, n=4)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 12  # originals, reconstructions, residuals
    px = _pixels(fig)
    assert px.std() > 10  # galaxies drawn, not a blank canvas
    gen = ms.plot.generated(fitted, n=3)
    assert len([ax for ax in gen.axes if ax.images]) == 3 * fitted.n_components_
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 0.3, (50, 2)), rng.normal(5, 0.3, (50, 2))])
    labels = np.repeat([0, 1], 50)
    m = ms.plot.latent_map(xy, labels, title="two groups")
    px = _pixels(m).reshape(-1, 3)
    colours = {tuple(c) for c in px[(px.max(1) - px.min(1)) > 60]}  # saturated pixels: the points
    blue, orange = np.array([31, 119, 180]), np.array([255, 127, 14])  # tab10's first two
    near = lambda ref: any(np.abs(np.array(c) - ref).max() < 40 for c in colours)
    assert near(blue) and near(orange)
    assert [t.get_text() for t in m.axes[0].get_legend().get_texts()] == ["0 (50)", "1 (50)"]
    one = ms.plot.latent_map(xy)
    assert one.axes[0].get_legend() is None
    # a catalogue column with missing values (TypeError: boolean value of NA is ambiguous)
    gz = pd.Series(["spiral", pd.NA, "elliptical", None] * 25, dtype="string")
    legend = [t.get_text() for t in ms.plot.latent_map(xy, gz).axes[0].get_legend().get_texts()]
    assert legend == ["no label (50)", "elliptical (25)", "spiral (25)"]
    many = np.arange(100) % 25  # more classes than tab20 has colours: none drawn alike
    drawn = [tuple(c.get_facecolor()[0]) for c in ms.plot.latent_map(xy, many).axes[0].collections]
    assert len(drawn) == 25 == len(set(drawn))
    # an id column as labels: a scatter call and a legend entry per class took minutes; now one
    # scatter, the largest classes named
    ids = np.r_[np.zeros(50, int), np.arange(1, 51)]
    axes = ms.plot.latent_map(xy, ids).axes[0]
    texts = [t.get_text() for t in axes.get_legend().get_texts()]
    assert texts[0] == "0 (50)" and len(texts) == 30 and texts[-1] == "... 22 classes more"
    assert len([c for c in axes.collections if len(c.get_offsets())]) == 1
    assert matplotlib.get_backend() == backend
    with pytest.raises(ValueError, match="N x 2"):
        ms.plot.latent_map(np.zeros((3, 3)))
    for draw in (lambda m: ms.plot.reconstructions(m, run.cube, n=2), lambda m: ms.plot.generated(m, n=1),
                 lambda m: ms.plot.component_means(m), lambda m: ms.plot.clusters(m, run.cube)):
        with pytest.raises(NotFittedError, match="not fitted"):  # as the estimator's own methods say
            draw(clone(fitted))
    from sklearn.cluster import KMeans

    with pytest.raises(TypeError, match="expected a fitted morphospace.VaDE or a loaded model, got KMeans"):
        ms.plot.component_means(KMeans(2, n_init=1).fit(np.random.default_rng(0).random((10, 2))))
    # a fitted morphospace estimator that is no model was told it was "not fitted yet"
    with pytest.raises(TypeError, match="expected a fitted morphospace.VaDE or a loaded model, got PCAReducer"):
        ms.plot.reconstructions(ms.PCA(2).fit(xy), run.cube[:2])
    column = ms.plot.latent_map(xy, labels[:, None])  # one label per point, as a column: drawn
    assert [t.get_text() for t in column.axes[0].get_legend().get_texts()] == ["0 (50)", "1 (50)"]
    with pytest.raises(ValueError, match=r"one label per point \(100\), got shape \(100, 2\)"):
        ms.plot.latent_map(xy, np.zeros((100, 2)))
    for size in (0, "4", None, True):  # a text or None failed inside numpy with its own TypeError
        with pytest.raises(ValueError, match="size is the figure's height"):
            ms.plot.latent_map(xy, size=size)


def test_gallery_figures_prepare_only_the_rows_they_draw_once(run, fitted, monkeypatch):
    """The model's input transform (neighbours masked) runs once per image and only on the rows a
    figure draws (before: on the whole cube, then again inside predict_proba, so the gallery's
    counts were those of twice-masked images, not predict's)."""
    model = fitted.model_
    assert model.hparams.get("mask_neighbours")
    seen = []
    real = type(model)._images

    def spy(self, x):
        seen.append(len(x))
        return real(self, x)

    monkeypatch.setattr(type(model), "_images", spy)
    ms.plot.reconstructions(fitted, run.cube, n=4)
    assert seen == [4]
    seen.clear()
    fig = ms.plot.clusters(fitted, run.cube, per_row=3)
    assert sum(seen) <= len(run.cube) + 3 * fitted.n_components_  # predict's pass, and the drawn rows
    counts = np.bincount(fitted.predict(run.cube), minlength=fitted.n_components_)
    shown = [int(ax.get_ylabel().split("n=")[1]) for ax in fig.axes if "n=" in ax.get_ylabel()]
    assert shown == list(counts)
    for call in (lambda: ms.plot.reconstructions(fitted, run.cube, n=0), lambda: ms.plot.generated(fitted, n=0),
                 lambda: ms.plot.clusters(fitted, run.cube, per_row=0)):
        with pytest.raises(ValueError, match="must be a whole number in 1..100"):
            call()
    with pytest.raises(ValueError, match="seed must be a whole number in 0..9,223,372,036,854,775,807"):  # 1.5 was taken
        ms.plot.generated(fitted, n=1, seed=1.5)
    # a million panels a row built a million axes (minutes, gigabytes) before anything was said
    for call in (lambda: ms.plot.generated(fitted, n=10**6), lambda: ms.plot.clusters(fitted, run.cube, per_row=10**6),
                 lambda: ms.plot.reconstructions(fitted, run.cube, n=101)):
        with pytest.raises(ValueError, match="in 1..100"):
            call()
    # component k is drawn with seed + k: near 2**63 it overflowed torch's seed; a None temperature was a TypeError
    assert len(ms.plot.generated(fitted, n=1, seed=2**63 - 1).axes) == fitted.n_components_
    with pytest.raises(ValueError, match="temperature must be a number"):
        ms.plot.generated(fitted, n=1, temperature=None)


def _readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has a Python section"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_python_section_runs(survey, tmp_path, monkeypatch):
    code = _readme_python()
    # the same code on the tiny survey, with a short schedule: only these two substitutions
    gz1 = '"../shared/data/sdss-gz1"'
    assert gz1 in code and "ms.VaDE(random_state=0)" in code
    code = code.replace(gz1, repr(str(survey))).replace(
        "ms.VaDE(random_state=0)", f"ms.VaDE(random_state=0, n_components=3, epochs=2, pretrain_epochs=1, config={TINY!r})")
    code = code.replace('run.catalogue["morph3"]', 'run.catalogue["morphology"]')
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert (tmp_path / "reconstructions.png").is_file()
    assert isinstance(scope["km"].labels_, np.ndarray) and len(scope["km"].labels_) == 24


@pytest.mark.slow
def test_the_example_tour_runs(survey, tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("tour", README.parent / "examples" / "tour.py")
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    out = tmp_path / "tour"
    result = tour.main([str(survey), "--out", str(out), "--labels", "morphology", "--quick"])
    assert result["n_galaxies"] == 24 and result["vade_components"] == 3
    assert -1 <= result["ami_vade"] <= 1 and -1 <= result["ami_kmeans"] <= 1
    # 24 galaxies: 10% cannot hold every class, so only the cross-validated probe on all of them
    assert list(result["probe"]) == ["1"] and 0 <= result["probe"]["1"] <= 1
    assert json.loads((out / "tour.json").read_text()) == result
    for name in ("tour_reconstructions.png", "tour_generated.png", "tour_map.png", "tour_vade.pt"):
        assert (out / name).stat().st_size > 0, name
    assert ms.VaDE.load(out / "tour_vade.pt").n_components_ == 3


def test_the_pixel_vade_fits_through_the_same_estimator(run):
    model = ms.VaDE(preset="default", n_components=2, latent_dim=4, epochs=2, pretrain_epochs=1,
                    config={"train.batch_size": 12, "model.widths": [8, 16, 16, 16]}, random_state=1).fit(run.cube)
    assert model.model_.hparams["preset"] == "default" and model.n_components_ == 2
    z = model.transform(run.cube)
    assert z.shape == (24, 4) and np.allclose(model.latent_, z, atol=1e-4)
    again = clone(model).fit(run.cube)  # the same seed: the same model
    assert np.allclose(again.latent_, model.latent_, atol=1e-5) and (again.labels_ == model.labels_).all()


@pytest.mark.slow
def test_the_estimator_starts_several_devices_from_its_own_process(run):
    """`VaDE.fit(devices=2)` spawns its processes (Lightning's default `ddp` would start the whole
    program again, which then trained a second model in a temporary run of its own and crashed)."""
    model = ms.VaDE(preset="default", n_components=2, latent_dim=4, epochs=2, pretrain_epochs=1,
                    config={"train.batch_size": 6, "model.widths": [8, 16, 16, 16], "train.devices": 2},
                    random_state=1).fit(run.cube)
    assert model.n_components_ == 2 and model.latent_.shape == (24, 4) and model.labels_.shape == (24,)
    assert np.allclose(model.transform(run.cube), model.latent_, atol=1e-4)


class _Payload:
    """An object whose unpickling touches a file: what a hostile model file could run instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_model_file_is_read_without_running_code_it_carries(run, fitted, tmp_path):
    """VaDE.load read files with torch.load(weights_only=False): an object in a shared .pt file ran
    code as it loaded (then the load failed). Files are now read weights-only; the estimator saves
    tensors and plain values (a Generator's random_state as the seed it gave), and its fit_transform
    hands out a copy, not latent_ itself."""
    import torch

    from morphospace.vade.io import save_model

    marker = tmp_path / "ran"
    save_model(fitted.model_.vade, fitted.model_.hparams, tmp_path / "hostile.pt",
               extra={"estimator": {"preset": _Payload(marker)}})
    with pytest.raises(ValueError, match="trusted=True"):
        ms.VaDE.load(tmp_path / "hostile.pt")
    assert not marker.exists()
    est = clone(fitted).set_params(random_state=np.random.default_rng(3))
    est.model_, est.labels_, est.latent_ = fitted.model_, fitted.labels_, fitted.latent_
    path = est.save(tmp_path / "gen.pt")
    torch.load(path, weights_only=True)  # nothing but tensors and plain values
    back = ms.VaDE.load(path)
    assert back.get_params()["random_state"] == fitted.model_.hparams["seed"]
    assert (back.labels_ == fitted.labels_).all() and np.allclose(back.latent_, fitted.latent_)
    again = clone(fitted)
    z = again.fit_transform(run.cube)
    z[:] = 0
    assert not (again.latent_ == 0).all()


def test_an_astrovader_estimator_saved_by_an_earlier_version_refits_what_it_trained(tmp_path):
    """Earlier, VaDE's latent_dim = 16 and n_components = 0 (its defaults) meant "the preset's" under
    the astrovader preset and were saved so; now a value given is kept, and such a file refitted
    (clone(VaDE.load(path)).fit) trained 16 dimensions and K by BIC beside a model of 20 and 12."""
    from morphospace.config import Config, apply_overrides
    from morphospace.vade.hparams import resolve_hparams
    from morphospace.vade.io import save_model
    from morphospace.vade.networks import build_model

    hp = resolve_hparams(apply_overrides(Config(), ["model.preset=astrovader"]), 1, 128)
    earlier = {**ms.VaDE(preset="astrovader").get_params(), "latent_dim": 16, "n_components": 0}
    save_model(build_model(hp), hp, tmp_path / "earlier.pt", extra={"estimator": earlier})
    params = ms.VaDE.load(tmp_path / "earlier.pt").get_params()
    assert (params["latent_dim"], params["n_components"]) == (None, None)
    tree = apply_overrides(Config(), ms.VaDE(**params)._overrides())
    assert (tree.model.latent_dim, tree.model.n_components) == (20, 12)
    # one given now that matches its model is kept
    hp16 = resolve_hparams(apply_overrides(Config(), ["model.preset=astrovader", "model.latent_dim=16"]), 1, 128)
    chosen = {**earlier, "latent_dim": 16, "n_components": None}
    save_model(build_model(hp16), hp16, tmp_path / "chosen.pt", extra={"estimator": chosen})
    assert ms.VaDE.load(tmp_path / "chosen.pt").get_params()["latent_dim"] == 16


def test_generate_names_its_own_options_in_its_errors(fitted, tmp_path, capsys):
    """The command line said 'n must be ...', 'reject_below must be ...': the notebook's parameter
    names, not the options the user typed."""
    from morphospace.cli import main

    run = tmp_path / "run"
    (run / "models" / "vade").mkdir(parents=True)
    (run / "config.toml").write_text("")
    fitted.save(run / "models" / "vade" / "model.pt")
    for option, value, said in (("--n", "0", "--n must be in 1.."), ("--reject-below", "1.1", "--reject-below must be"),
                                ("--component", "99", "--component must be in 0..")):
        which = [] if option == "--component" else ["--component", "0"]  # an option given twice is refused
        argv = ["generate", str(run), *which, "--out", str(tmp_path / "g"), "--quiet", option, value]
        assert main(argv) == 2
        assert said in capsys.readouterr().err, option


def test_misread_arguments_are_named_plainly(tmp_path):
    """Each of these was a message about something else: `names=None` a TypeError about len(), a
    labelling of None "shapes () and (60,)", two label columns "y has 120 labels", a query of None
    "array=nan", and a file given as a run "run directory not found"."""
    X = np.random.default_rng(0).normal(size=(60, 5))
    labels = np.arange(60) % 3
    assert ms.compare(labels, labels, names=None).columns.tolist() == ["a vs b"]
    with pytest.raises(ValueError, match="got None for b"):
        ms.compare(labels, None)
    with pytest.raises(ValueError, match=r"one label per row \(1-D\), got shape \(60, 2\)"):
        ms.FewLabelClassifier().fit(X, np.stack([labels, labels], axis=1))
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning):  # a column: taken, said as scikit-learn says it
        assert ms.FewLabelClassifier().fit(X, labels.reshape(-1, 1)).classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="X must be the rows to search for"):
        ms.SimilarityIndex().fit(X).kneighbors(None)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a run directory"):
        ms.Run(tmp_path / "a_file")
