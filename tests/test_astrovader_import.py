"""The published AstroVaDEr network and the import of its Keras weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from morphospace.errors import UserError
from morphospace.vade.astrovader_net import (
    AstroVaDErDecoder,
    AstroVaDErEncoder,
    LegacyBilinearUpsample,
    legacy_bilinear_matrix,
)
from morphospace.vade.keras_import import build_astrovader, load_astrovader_h5

PEER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "astrovader"
WEIGHTS = PEER / "saved_weights.h5"
REFERENCE = PEER / "reference.npz"
TOL = 1e-4

needs_peer = pytest.mark.skipif(
    not (WEIGHTS.is_file() and REFERENCE.is_file()),
    reason=f"published AstroVaDEr weights/reference not found under {PEER}",
)


def test_legacy_bilinear_2x2_to_4x4_by_hand():
    # TF1 resize_bilinear, align_corners=False, no half-pixel centres: source = dst / 2,
    # the last row/column clamps to the edge
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    expected = torch.tensor(
        [
            [1.0, 1.5, 2.0, 2.0],
            [2.0, 2.5, 3.0, 3.0],
            [3.0, 3.5, 4.0, 4.0],
            [3.0, 3.5, 4.0, 4.0],
        ]
    )
    y = LegacyBilinearUpsample(2)(x)
    assert y.shape == (1, 1, 4, 4)
    torch.testing.assert_close(y[0, 0], expected, rtol=0, atol=1e-7)
    # and it is not torch's half-pixel convention
    torch_y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert (torch_y[0, 0] - expected).abs().max() > 0.2


def test_legacy_bilinear_matrix_non_integer_ratio():
    # 3 -> 5: sources 0, 0.6, 1.2, 1.8, 2.4 (clamped at index 2)
    a = legacy_bilinear_matrix(3, 5, dtype=torch.float64)
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [0.4, 0.6, 0.0],
            [0.0, 0.8, 0.2],
            [0.0, 0.2, 0.8],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(a, expected, rtol=0, atol=1e-12)


def test_parameter_count_is_published():
    enc, dec = AstroVaDErEncoder(), AstroVaDErDecoder()
    k, d = 12, 20
    prior = k + k * d + k * d  # weights, means, variances
    n = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in dec.parameters())
    assert n + prior == 871_381


def test_shapes_small_image():
    enc = AstroVaDErEncoder(latent_dim=5, image_size=16, channels=3)
    dec = AstroVaDErDecoder(latent_dim=5, image_size=16, channels=3)
    mean, log_var = enc(torch.rand(2, 3, 16, 16))
    assert mean.shape == log_var.shape == (2, 5)
    y = dec(mean)
    assert y.shape == (2, 3, 16, 16) and (y >= 0).all()
    with pytest.raises(ValueError):
        enc(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError):
        AstroVaDErEncoder(image_size=100)


def test_missing_or_bad_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        load_astrovader_h5(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(UserError):
        build_astrovader(bad)


@needs_peer
def test_weights_holding_nan_are_refused(tmp_path):
    """A damaged copy of the weights (a NaN bias) was imported, exit 0: every galaxy's code NaN."""
    import shutil

    import h5py

    from morphospace.vade.keras_import import ENCODER_LAYERS

    bad = tmp_path / "nan.h5"
    shutil.copy(WEIGHTS, bad)
    layer = next(iter(ENCODER_LAYERS))
    with h5py.File(bad, "r+") as f:
        group = f[layer][layer] if layer in f[layer] else f[layer]
        bias = group["bias:0"]
        values = bias[()]
        values[0] = np.nan
        bias[...] = values
    with pytest.raises(UserError, match=f"layer '{layer}' weight 'bias:0' holds 1 NaN or infinite value"):
        load_astrovader_h5(bad)
    # the same numbers stored as text (b"0.5"): numpy read them as numbers, and the file was imported
    text = tmp_path / "text.h5"
    shutil.copy(WEIGHTS, text)
    with h5py.File(text, "r+") as f:
        group = f[layer][layer] if layer in f[layer] else f[layer]
        values = group["bias:0"][()]
        del group["bias:0"]
        group["bias:0"] = np.array([str(v).encode() for v in values.ravel()]).reshape(values.shape)
    with pytest.raises(UserError, match=f"layer '{layer}' weight 'bias:0' holds .S.* values, not numbers"):
        load_astrovader_h5(text)


def test_importing_into_a_run_with_a_trained_model_is_refused(tmp_path, capsys):
    """A trained model and all that was derived from it are not replaced unasked (the import
    overwrote model.pt and left the old model's files beside it)."""
    from morphospace.cli import main

    weights = tmp_path / "w.h5"
    weights.write_text("any file: the run is checked first")
    model = tmp_path / "run" / "models" / "vade" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"trained")
    (tmp_path / "run" / "config.toml").write_text("")  # a run's (a folder of models/ alone is no run: refused so)
    assert main(["import-astrovader", str(weights), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "already holds a trained model" in err
    assert model.read_bytes() == b"trained"
    # a training stopped half way (its checkpoint and settings, no model.pt): the import went in, and a
    # `train --resume` then overwrote it, the run still marked "imported" (kept by an ingest of others)
    stopped = tmp_path / "stopped"
    (stopped / "models" / "vade").mkdir(parents=True)
    (stopped / "models" / "vade" / "last.ckpt").write_bytes(b"ckpt")
    (stopped / "config.toml").write_text("")
    assert main(["import-astrovader", str(weights), "--out", str(stopped)]) == 2
    assert "holds a training stopped before it finished" in capsys.readouterr().err
    assert not (stopped / "models" / "vade" / "model.pt").exists()
    # the notebook's import_astrovader (morphospace.api) overwrote it, and took no folder or ms.Run
    from morphospace.api import import_astrovader
    from morphospace.run import RunDir

    import morphospace as ms

    assert ms.import_astrovader is import_astrovader  # in the notebook's namespace, with ms.load_model
    for run in (RunDir(tmp_path / "run"), str(tmp_path / "run"), tmp_path / "run"):
        # a ValueError, as the notebook API's other refusals (a UserError is no standard exception)
        with pytest.raises(ValueError, match="already holds a trained model"):
            import_astrovader(run, weights)
    assert model.read_bytes() == b"trained"
    with pytest.raises(ValueError):  # bad weights into a new folder: refused before the folder is made
        import_astrovader(tmp_path / "new", weights)
    with pytest.raises(FileNotFoundError):
        import_astrovader(tmp_path / "new", tmp_path / "none.h5")
    assert not (tmp_path / "new").exists()


@needs_peer
def test_mixture_parameters_imported():
    ref = np.load(REFERENCE)
    w = load_astrovader_h5(WEIGHTS)
    theta = ref["gmm_theta"]
    np.testing.assert_array_equal(w["theta_raw"].numpy(), theta)
    logits = w["prior"]["logits"].double()
    np.testing.assert_allclose(logits.exp().sum().item(), 1.0, atol=1e-6)
    np.testing.assert_allclose(logits.exp().numpy(), theta / theta.sum(), rtol=1e-5)
    np.testing.assert_array_equal(w["prior"]["means"].numpy(), ref["gmm_mu"].T)
    np.testing.assert_allclose(w["prior"]["log_vars"].exp().numpy(), ref["gmm_lambda"].T, rtol=1e-5)
    assert (w["n_components"], w["latent_dim"], w["image_size"], w["channels"]) == (12, 20, 128, 1)


@needs_peer
def test_reproduces_published_keras_outputs():
    torch.set_num_threads(1)
    ref = np.load(REFERENCE)
    enc, dec, prior = build_astrovader(WEIGHTS)
    assert prior["means"].shape == prior["log_vars"].shape == (12, 20)
    x = torch.from_numpy(ref["x"])[:, None]
    with torch.no_grad():
        mean, log_var = enc(x)
        decoded = dec(torch.from_numpy(ref["z_mean"]))[:, 0]
    errors = {
        "z_mean": np.abs(mean.numpy() - ref["z_mean"]).max(),
        "z_log_var": np.abs(log_var.numpy() - ref["z_log_var"]).max(),
        "decoded_from_mean": np.abs(decoded.numpy() - ref["decoded_from_mean"]).max(),
    }
    print("max abs error vs Keras:", {k: f"{v:.2e}" for k, v in errors.items()})
    for name, err in errors.items():
        assert err < TOL, f"{name}: max abs error {err:.3g} >= {TOL}"


@needs_peer
def test_the_run_s_configuration_says_what_the_imported_model_is(tmp_path, capsys):
    """The run's config.toml names the imported network's latent size and components, whatever the
    settings said (it saved a latent_dim of 32 beside a model of 20); a setting they contradict is said."""
    import tomllib

    from morphospace.cli import main

    for given in ([], ["--set", "model.latent_dim=32"], ["--set", "model.latent_dim=16"]):
        run = tmp_path / f"run{len(given)}{given[-1][-2:] if given else ''}"
        assert main(["import-astrovader", str(WEIGHTS), "--out", str(run), *given]) == 0
        model = tomllib.loads((run / "config.toml").read_text())["model"]
        assert (model["preset"], model["latent_dim"], model["n_components"]) == ("astrovader", 20, 12)
        err = capsys.readouterr().err
        assert ("model.latent_dim = 32 in the settings, but the imported model has 20" in err) == ("model.latent_dim=32" in given)


@needs_peer
def test_the_notebook_s_import_writes_the_run_s_log_as_the_command_line_does(tmp_path, capsys):
    """ms.import_astrovader wrote no log.txt in the run it made (ms.ingest and the command line write
    one); the line is the command line's, and nothing stays attached to the logger afterwards."""
    import logging

    import morphospace as ms
    from morphospace.cli import main

    logger = logging.getLogger("morphospace")
    before = (logger.handlers[:], logger.level, logger.propagate)
    path = ms.import_astrovader(tmp_path / "nb", WEIGHTS)
    assert path.is_file() and (logger.handlers, logger.level, logger.propagate) == before
    lines = (tmp_path / "nb" / "log.txt").read_text().splitlines()
    said = f"INFO import-astrovader: the published AstroVaDEr from {WEIGHTS} (latent 20, 12 components) as the run's model"
    assert len(lines) == 1 and said in lines[0]
    shown = said.removeprefix("INFO ")
    assert capsys.readouterr().err.count(shown) <= 1  # the notebook's console: once at most, where it shows INFO
    assert main(["import-astrovader", str(WEIGHTS), "--out", str(tmp_path / "cli")]) == 0
    assert sum(said in line for line in (tmp_path / "cli" / "log.txt").read_text().splitlines()) == 1
    assert capsys.readouterr().err.count(shown) == 1  # the command's console: said by the import, not again


@needs_peer
def test_an_import_into_a_run_of_galaxies_keeps_its_settings_and_a_survey_folder_is_refused(tmp_path, capsys):
    """Imported into a run that held galaxies, the run's saved survey and preprocessing were reset to
    the defaults and the astrovader preset's (128 px grey) beside its 3 x 32 x 32 cube, without a word;
    imported into a survey's own folder, the data folder became a run."""
    import tomllib

    from fixtures import galaxy_rgb, save_image
    from morphospace.cli import main

    data = tmp_path / "data"
    for i in range(4):
        save_image(data / f"g{i}.png", galaxy_rgb(48, seed=i))
    run = tmp_path / "run"
    assert main(["ingest", str(data), "--out", str(run), "--size", "32", "--quiet"]) == 0
    before = tomllib.loads((run / "config.toml").read_text())
    assert main(["import-astrovader", str(WEIGHTS), "--out", str(run)]) == 0
    after = tomllib.loads((run / "config.toml").read_text())
    assert after["data"] == before["data"] and after["preprocess"] == before["preprocess"]
    assert after["model"]["preset"] == "astrovader" and after["model"]["latent_dim"] == 20
    assert "the run's cube holds 3 x 32 x 32 images and the imported model takes 1 x 128 x 128" in capsys.readouterr().err
    listed = sorted(p.name for p in data.iterdir())
    code = main(["import-astrovader", str(WEIGHTS), "--out", str(data), "--quiet"])
    line = capsys.readouterr().err.strip()
    assert code == 2 and "holds a survey (folder layout)" in line and "\n" not in line
    assert sorted(p.name for p in data.iterdir()) == listed


@needs_peer
def test_the_documented_order_import_then_ingest_keeps_the_imported_model(tmp_path, capsys):
    """README: import into a new run, then ingest the galaxies into it. The ingest took the imported
    model for a result of an earlier ingest (there was none), moved it to superseded/, and embed
    then said "no trained VaDE"."""
    from PIL import Image

    from morphospace.cli import main

    rng = np.random.default_rng(0)
    folder = tmp_path / "galaxies"
    folder.mkdir()
    yy, xx = np.mgrid[:256, :256]
    for i in range(6):
        blob = 200 * np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2 / (1 + i)) / 800) + rng.normal(20, 3, (256, 256))
        Image.fromarray(np.clip(blob, 0, 255).astype(np.uint8)).save(folder / f"g{i}.png")
    run = tmp_path / "run"
    assert main(["import-astrovader", str(WEIGHTS), "--out", str(run), "--quiet"]) == 0
    model = run / "models" / "vade" / "model.pt"
    made = model.read_bytes()
    assert main(["ingest", str(folder), "--out", str(run), "--preset", "astrovader", "--quiet"]) == 0
    assert model.read_bytes() == made and not (run / "superseded").exists()
    assert main(["embed", str(run), "--quiet"]) == 0
    assert (run / "embeddings" / "vade.npy").is_file() and "import-astrovader: the published AstroVaDEr" in (run / "log.txt").read_text()
    # an imported model has no training of its own to draw: no warning asking whether it was trained here
    assert "was the model trained here" not in (run / "log.txt").read_text()
    assert not (run / "figures" / "vade_training_curves.png").exists()
    assert main(["ingest", str(folder), "--out", str(run), "--preset", "astrovader", "--quiet"]) == 0  # the same galaxies
    assert model.read_bytes() == made and not (run / "superseded").exists()
    # the [model] settings that describe the imported model are kept: not said to be replaced
    assert "it replaced" not in (run / "log.txt").read_text() and "it replaced" not in capsys.readouterr().err


@needs_peer
def test_an_imported_model_stays_when_other_galaxies_are_ingested(tmp_path, capsys):
    """Imported into a run that already held galaxies, then other galaxies ingested: the ingest took
    the imported model for one trained on the earlier galaxies and moved it to superseded/ (embed
    then found no model). It stays; what was derived from the earlier galaxies is set aside."""
    from PIL import Image

    from morphospace.cli import main

    rng = np.random.default_rng(1)
    folders = [tmp_path / "first", tmp_path / "second"]
    yy, xx = np.mgrid[:256, :256]
    for f, folder in enumerate(folders):
        folder.mkdir()
        for i in range(5):
            blob = 200 * np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2 / (1 + i + 5 * f)) / 800) + rng.normal(20, 3, (256, 256))
            Image.fromarray(np.clip(blob, 0, 255).astype(np.uint8)).save(folder / f"{'ab'[f]}{i}.png")
    run = tmp_path / "run"
    assert main(["ingest", str(folders[0]), "--out", str(run), "--preset", "astrovader", "--quiet"]) == 0
    assert main(["import-astrovader", str(WEIGHTS), "--out", str(run), "--quiet"]) == 0
    model = run / "models" / "vade" / "model.pt"
    made = model.read_bytes()
    assert main(["embed", str(run), "--quiet"]) == 0
    assert main(["ingest", str(folders[1]), "--out", str(run), "--preset", "astrovader", "--quiet"]) == 0
    assert model.read_bytes() == made
    aside = list((run / "superseded").iterdir())
    assert len(aside) == 1 and (aside[0] / "embeddings" / "vade.npy").is_file()
    assert not (aside[0] / "models" / "vade" / "model.pt").exists()
    assert main(["embed", str(run), "--quiet"]) == 0
    assert len(np.load(run / "embeddings" / "vade.npy")) == 5
    # the run's settings still describe the imported model (the ingest wrote the defaults' form preset)
    from morphospace.config import load_config

    cfg = load_config(run / "config.toml")
    assert (cfg.model.preset, cfg.model.latent_dim, cfg.model.n_components) == ("astrovader", 20, 12)
    assert main(["ingest", str(folders[0]), "--out", str(run), "--set", "model.preset=form", "--quiet"]) == 0
    assert load_config(run / "config.toml").model.preset == "form"  # one given with the ingest is kept
    # a cube the imported model cannot take (the default 64 px colour): embed advised retraining it
    capsys.readouterr()
    assert main(["embed", str(run), "--quiet"]) == 2
    assert "imported VaDE expects 1 x 128 x 128 images" in capsys.readouterr().err
    # imported into a run whose cube it cannot take: said at the import, not first at embed
    other = tmp_path / "other"
    assert main(["ingest", str(folders[0]), "--out", str(other), "--quiet"]) == 0
    assert main(["import-astrovader", str(WEIGHTS), "--out", str(other), "--quiet"]) == 0
    assert "the run's cube holds 1 x 64 x 64 images and the imported model takes 1 x 128 x 128" in (
        other / "log.txt").read_text()
