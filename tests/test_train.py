"""VaDE training with Lightning: phases, guards, determinism, resume, DDP, outputs, API."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from morphospace.config import apply_overrides, load_config
from morphospace.errors import UserError
from morphospace.run import RunDir, write_npy, write_table

from fixtures import sigint_state

N_GAL = 48
SIDE = 16

TINY = ["model.preset=default", "model.widths=[4, 8]", "model.latent_dim=3", "model.n_components=2", "train.epochs=3",
        "train.pretrain_epochs=1", "train.batch_size=16", "train.num_threads=1", "train.lr=0.003"]


def make_run(path: Path, n: int = N_GAL, side: int = SIDE, channels: int = 2, seed: int = 0) -> RunDir:
    """A run with a tiny cube: round blobs and elongated bars at random angles, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    cube = np.empty((n, channels, side, side), np.float32)
    kinds = np.arange(n) % 2
    for i in range(n):
        a = rng.uniform(0, np.pi)
        u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
        q = 1.0 if kinds[i] == 0 else 0.3
        r2 = u**2 + (v / q) ** 2
        img = np.exp(-r2 / (2 * (side / 8) ** 2))
        cube[i] = img[None] * rng.uniform(0.7, 1.0, (channels, 1, 1)) + rng.normal(0, 0.03, (channels, side, side))
    run = RunDir(path, create=True)
    cat = pd.DataFrame({"id": [f"g{i:03d}" for i in range(n)], "source": "test",
                        "shape": np.where(kinds == 0, "round", "bar"), "cube_index": np.arange(n)})
    write_table(run.catalogue, cat)
    write_npy(run.cube, cube)
    return run


def test_a_finished_training_resumed_does_nothing_unless_given_more_epochs(trained, tmp_path, caplog):
    """A requeued `train --resume` of a finished training says so and leaves its model; with more
    epochs it goes on from the checkpoint (test_form: the form model, a copy, another model)."""
    import logging
    import shutil

    from morphospace.vade.train import train_run

    run, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy, copy_function=shutil.copy)
    model = copy / "models/vade/model.pt"
    before = model.read_bytes()
    with caplog.at_level(logging.INFO, logger="morphospace"):
        again = train_run(RunDir(copy), cfg_for(), resume=True)
    done = json.loads((copy / "models/vade/hparams.json").read_text())["epochs"]
    assert f"the training is complete ({done} of {done} epochs done" in caplog.text
    assert "give more epochs (train.epochs) to go on" in caplog.text
    assert model.read_bytes() == before and again.seconds == 0.0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="morphospace"):
        more = train_run(RunDir(copy), cfg_for(f"train.epochs={done + 2}"), resume=True)
    assert "the training is complete" not in caplog.text and more.epochs == done + 2
    assert torch.load(copy / "models/vade/last.ckpt", weights_only=False)["epoch"] + 1 == done + 2
    assert model.read_bytes() != before


@pytest.mark.parametrize("hook", ["setup", "on_train_epoch_start"])
def test_ctrl_c_in_a_fit_raises_keyboard_interrupt_and_leaves_ctrl_c_working(tmp_path, hook):
    """Lightning turns Ctrl-C in a fit into sys.exit(1): a notebook's `VaDE.fit` showed `SystemExit: 1`
    and a script ended with status 1 without a word. It also ignores Ctrl-C from then on and, where it
    stopped before its own handlers were installed (while it set up the data, restored a checkpoint),
    nothing put the handler back: the next Ctrl-C in the notebook was lost."""
    import lightning.pytorch as pl

    from morphospace.vade.train import train_run

    seen: list[str] = []  # what the hook found, for a failure to say (in one whole suite of session 56
    # the Ctrl-C was lost here, DID NOT RAISE, in both cases; never alone or since; cause not found)

    def ctrl_c(self, *args, **kwargs):
        seen.append(sigint_state())
        signal.raise_signal(signal.SIGINT)

    class CtrlC(pl.Callback):
        pass

    setattr(CtrlC, hook, ctrl_c)
    run = make_run(tmp_path / "run")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has it
    start = sigint_state()
    try:
        with pytest.raises(KeyboardInterrupt):  # the control: Ctrl-C acts in this process at all
            signal.raise_signal(signal.SIGINT)
        try:
            train_run(run, cfg_for(), callbacks=[CtrlC()])
        except KeyboardInterrupt:
            pass
        else:
            pytest.fail(f"DID NOT RAISE KeyboardInterrupt; at the start: {start}; the hook ran {len(seen)} "
                        f"time(s): {seen}")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def cfg_for(*extra: str):
    return apply_overrides(load_config(None), TINY + list(extra))


def final_state(run: RunDir) -> dict:
    return torch.load(run.path / "models/vade/model.pt", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from morphospace.vade.train import train_run

    run = make_run(tmp_path_factory.mktemp("trained"))
    result = train_run(run, cfg_for())
    return run, result


# --- framework-free pieces ----------------------------------------------------------------------

def test_bic_picks_the_number_of_separated_groups():
    from morphospace.vade.mixture import fit_mixture, select_k

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0]])
    z = np.concatenate([c + rng.normal(0, 0.5, (100, 3)) for c in centres])
    k, bic = select_k(z, 1, 6, seed=0)
    assert k == 3 and set(bic) == set(range(1, 7))
    fit = fit_mixture(z, 3, seed=0)
    assert np.allclose(np.sort(fit["weights"]), 1 / 3, atol=0.01)
    assert np.allclose(np.sort(fit["means"][:, 0]), [0, 0, 6], atol=0.2)


def test_astrovader_settings_given_are_kept_even_at_default_values(tmp_path, caplog):
    """Under model.preset = astrovader a setting equal to its default was taken for one not given:
    `--set train.epochs=16` trained 350 epochs, `model.latent_dim=16` gave 20, and config.toml said
    16 beside a model of 20. Now the preset fills only what is not set, config.toml says what
    trains, and a run ingested with the defaults takes the preset given at `train`."""
    import logging
    import tomllib

    from morphospace.api import VaDE
    from morphospace.config import dumps_config, overrides_on_saved
    from morphospace.vade.hparams import resolve_hparams

    given = ["model.preset=astrovader", "train.epochs=16", "model.latent_dim=16", "train.pretrain_epochs=1"]
    cfg = apply_overrides(load_config(None), given)
    hp = resolve_hparams(cfg, 1, 128)
    assert (hp["epochs"], hp["latent_dim"], hp["n_components"], hp["batch_size"], hp["lr"]) == (16, 16, 12, 190, 3e-4)
    saved = tomllib.loads(dumps_config(cfg))
    assert (saved["train"]["epochs"], saved["model"]["latent_dim"], saved["model"]["n_components"]) == (16, 16, 12)
    assert saved["model"]["mask_neighbours"] is False and saved["train"]["weight_decay"] == 0.02
    # the preset's values are not the user's: another preset given later does not inherit them
    other = apply_overrides(cfg, ["model.preset=default"])
    assert (other.model.n_components, other.train.batch_size, other.train.epochs) == (0, 128, 16)
    # a run's config.toml names every key: `train RUN --set model.preset=astrovader` on a run ingested
    # with the defaults still gets the published values, and what is given now stays
    on_saved = overrides_on_saved(load_config(None), ["model.preset=astrovader", "train.epochs=16",
                                                      "train.pretrain_epochs=1"])
    assert (on_saved.model.latent_dim, on_saved.model.n_components, on_saved.train.epochs) == (20, 12, 16)
    assert overrides_on_saved(cfg, ["train.epochs=20"]).model.latent_dim == 16  # the same preset: as saved
    # the published network, loss and schedule whatever is set, said in the log
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        hp = resolve_hparams(apply_overrides(cfg, ["train.augment=rotate"]), 1, 128)
    assert hp["augment"] == "flips"
    assert "train.augment = 'rotate' not used (trained with train.augment = 'flips')" in caplog.text
    assert "published network read 128 x 128 grey" not in caplog.text
    # a cube that is not the published input (a default ingest's 64 px colour) trained it without a word
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        resolve_hparams(cfg, 3, 64)
    assert ("the published network read 128 x 128 grey images, and this cube holds 64 x 64 images of 3 band(s) "
            "(`morphospace ingest DATA --out RUN --preset astrovader`") in caplog.text
    # the notebook estimator leaves its parameters at their defaults to the preset
    tree = apply_overrides(load_config(None), VaDE(preset="astrovader", epochs=3, pretrain_epochs=1)._overrides())
    assert (tree.model.latent_dim, tree.model.n_components, tree.train.epochs) == (20, 12, 3)
    tree = apply_overrides(load_config(None), VaDE(preset="astrovader", latent_dim=8, epochs=3, pretrain_epochs=1)._overrides())
    assert tree.model.latent_dim == 8


def test_astrovader_preset_on_a_runs_saved_config_toml(tmp_path, caplog):
    """config.toml names every key, so it cannot say which a preset filled. A run saved under the
    astrovader preset and trained again with another kept its 20 / 12 / 350 epochs / recon_sigma
    0.707; a run saved before the preset was resolved on load (every key at its default) trained
    16 / 0 / 128 and its resume was refused; `--set train.epochs=16` alone was refused (the preset
    pretrains 100); a preset assigned in code was not resolved; VaDE(latent_dim=16) gave 20."""
    import logging
    import tomllib

    import tomli_w

    from morphospace.api import VaDE
    from morphospace.config import Config, dump_config, dumps_config, overrides_on_saved, to_dict
    from morphospace.config.learning import MODEL_PRESETS
    from morphospace.vade.hparams import check_against_cube, resolve_hparams

    def saved(cfg, name):  # what a run's config.toml gives back
        return load_config(dump_config(cfg, tmp_path / f"{name}.toml"))

    plain = Config()
    published = MODEL_PRESETS["astrovader"]
    # a run ingested with the defaults, trained with the preset: the published values, a shorter run pretrains its share
    on_plain = overrides_on_saved(saved(plain, "plain"), ["model.preset=astrovader", "train.epochs=16"])
    assert (on_plain.model.latent_dim, on_plain.model.n_components, on_plain.train.batch_size) == (20, 12, 190)
    assert (on_plain.train.epochs, on_plain.train.pretrain_epochs) == (16, 5)  # 100 of 350
    assert apply_overrides(plain, ["model.preset=astrovader", "train.epochs=1"]).train.pretrain_epochs == 0
    assert apply_overrides(plain, ["model.preset=astrovader", "train.epochs=700"]).train.pretrain_epochs == 100
    # a run saved under the preset: --epochs alone on it, and another preset given later inherits nothing
    astro = saved(apply_overrides(plain, ["model.preset=astrovader"]), "astro")
    assert (astro.model.latent_dim, astro.train.epochs, astro.model.recon_sigma) == (20, 350, published["model"]["recon_sigma"])
    shorter = overrides_on_saved(astro, ["train.epochs=16"])
    assert (shorter.train.epochs, shorter.train.pretrain_epochs, shorter.model.latent_dim) == (16, 5, 20)
    for other in ("form", "default"):
        away = overrides_on_saved(astro, [f"model.preset={other}"])
        assert to_dict(away.model) == to_dict(apply_overrides(plain, [f"model.preset={other}"]).model), other
        assert to_dict(away.train) == to_dict(plain.train), other
    chosen = saved(apply_overrides(plain, ["model.preset=astrovader", "model.latent_dim=8", "train.lr=1e-3"]), "chosen")
    away = overrides_on_saved(chosen, ["model.preset=default"])
    assert (away.model.latent_dim, away.train.lr, away.model.n_components) == (8, 1e-3, 0)  # chosen: kept
    # values given equal to the preset's stay what they were; a run saved with --epochs 16 shortened again
    both = saved(apply_overrides(plain, ["model.preset=astrovader", "train.epochs=150", "train.pretrain_epochs=100"]), "both")
    assert (overrides_on_saved(both, []).train.epochs, overrides_on_saved(both, []).train.pretrain_epochs) == (150, 100)
    sixteen = saved(on_plain, "sixteen")
    for epochs, pre in ((4, 1), (32, 5), (16, 5)):  # the saved pretraining stays while it fits (a --resume)
        again = overrides_on_saved(sixteen, [f"train.epochs={epochs}"])
        assert (again.train.epochs, again.train.pretrain_epochs, again.model.latent_dim) == (epochs, pre, 20), epochs
    longer = overrides_on_saved(saved(apply_overrides(plain, ["model.preset=astrovader", "train.epochs=200"]), "200"),
                                ["train.epochs=350"])
    assert (longer.train.epochs, longer.train.pretrain_epochs) == (350, 57)  # --resume --epochs 350 of a 200 / 57 run
    assert overrides_on_saved(sixteen, ["model.preset=default"]).train.pretrain_epochs == plain.train.pretrain_epochs
    as_table = overrides_on_saved(saved(plain, "plain2"), {"model": {"preset": "astrovader"}})
    assert (as_table.train.epochs, as_table.train.pretrain_epochs, as_table.model.latent_dim) == (350, 100, 20)
    # a config.toml of a run trained before: every key written at its default, the preset's network among them
    for given, want in (({"model": {"latent_dim": 8}}, (8, 12, 350, 100)), ({"train": {"epochs": 200}}, (20, 12, 200, 100)),
                        ({"train": {"augment": "rotate"}}, (20, 12, 350, 100))):
        table = to_dict(plain)
        table["model"]["preset"] = "astrovader"
        for section, values in given.items():
            table[section].update(values)
        (tmp_path / "old.toml").write_text(tomli_w.dumps(table))
        old = load_config(tmp_path / "old.toml")
        assert (old.model.latent_dim, old.model.n_components, old.train.epochs, old.train.pretrain_epochs) == want
        settings = ["model.preset=astrovader"] + [f"{s}.{k}={v!r}" for s, values in given.items() for k, v in values.items()]
        assert resolve_hparams(old, 1, 128) == resolve_hparams(
            apply_overrides(plain, settings + ["train.pretrain_epochs=100"]), 1, 128)
        assert resolve_hparams(overrides_on_saved(old, []), 1, 128) == resolve_hparams(old, 1, 128)  # its --resume
    assert "train.augment = 'rotate' not used" in caplog.text  # the old file's own choice, said
    caplog.clear()
    table = to_dict(plain)  # an old file that never trained a VaDE (50 epochs: under the published 100 pretraining)
    table["model"]["preset"], table["train"]["epochs"] = "astrovader", 50
    (tmp_path / "old.toml").write_text(tomli_w.dumps(table))
    assert load_config(tmp_path / "old.toml").train.pretrain_epochs == 14
    # another run's config.toml given with --config, the preset given now: filled as on a run's own
    from types import SimpleNamespace

    from morphospace.cli import _config_for

    args = SimpleNamespace(config=str(tmp_path / "plain.toml"), overrides=["model.preset=astrovader", "train.epochs=16",
                                                                           "train.lr=1e-3", "model.latent_dim=16"])
    given_now = _config_for(args, None)
    assert (given_now.model.latent_dim, given_now.model.n_components, given_now.train.epochs, given_now.train.lr) == (16, 12, 16, 1e-3)
    # a preset assigned in code, to astrovader and away from it, trains and is saved as one given in a file
    assigned = Config()
    assigned.model.preset = "astrovader"
    assert resolve_hparams(assigned, 1, 128)["latent_dim"] == 20
    assert tomllib.loads(dumps_config(assigned))["model"]["n_components"] == 12
    back = Config(model={"preset": "astrovader"})
    back.model.preset = "default"
    assert resolve_hparams(back, 1, 128)["latent_dim"] == tomllib.loads(dumps_config(back))["model"]["latent_dim"] == 16
    edited = apply_overrides(plain, ["model.preset=default"])  # a list changed in place is kept, for every preset
    edited.model.widths.append(512)
    edited.cluster.kmeans_k.append(9)
    assert resolve_hparams(edited, 1, 32)["widths"] == [32, 64, 128, 256, 512]
    assert tomllib.loads(dumps_config(edited))["cluster"]["kmeans_k"][-1] == 9
    # the notebook estimator: None leaves a setting to the preset, a value given is kept
    for params, want in (({}, (20, 12)), ({"latent_dim": 16, "n_components": 0}, (16, 0))):
        tree = apply_overrides(plain, VaDE(preset="astrovader", epochs=3, pretrain_epochs=1, **params)._overrides())
        assert (tree.model.latent_dim, tree.model.n_components) == want, params
    # a setting the published recipe overrides is named once, by the training, not by the checks before it
    odd = apply_overrides(plain, ["model.preset=astrovader", "train.final_lr_fraction=0.5", "model.widths=[8, 16]"])
    cube = np.zeros((16, 1, 128, 128), np.float32)
    assert not caplog.text  # a saved config.toml names every key, at its default too: nothing to say
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        check_against_cube(odd, cube, announce=False)
        assert not caplog.text
        hp = check_against_cube(odd, cube)
    assert hp["final_lr"] == 1e-6 and hp["widths"] == []
    assert caplog.text.count("not used") == 1 and "final_lr_fraction = 0.5" in caplog.text and "model.widths" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        resolve_hparams(apply_overrides(plain, ["model.preset=astrovader", "model.recon_sigma=0.2"]), 1, 128)
    assert "model.recon_sigma = 0.2 not used (trained with model.recon_sigma = 0.7071" in caplog.text


def test_schedules():
    from morphospace.vade.hparams import latent_weight, lr_factor, resolve_hparams

    cfg = apply_overrides(load_config(None), ["model.preset=astrovader"])
    hp = resolve_hparams(cfg, 1, 128)
    assert (hp["epochs"], hp["pretrain_epochs"], hp["latent_dim"], hp["n_components"], hp["batch_size"]) == \
        (350, 100, 20, 12, 190)
    assert latent_weight(hp, 0) == pytest.approx(0.3)
    assert latent_weight(hp, 12.5) == pytest.approx(0.3 * (0.5**3 + 1))
    assert latent_weight(hp, 30) == pytest.approx(0.6)
    assert latent_weight(hp, 50) == pytest.approx(0.3)   # next cycle
    assert lr_factor(hp, 0) == 1.0 and hp["lr"] * lr_factor(hp, 350) == pytest.approx(1e-6)
    # user-set fields win over the published ones
    hp2 = resolve_hparams(apply_overrides(cfg, ["train.epochs=2", "train.pretrain_epochs=1"]), 1, 128)
    assert (hp2["epochs"], hp2["pretrain_epochs"]) == (2, 1)
    hpd = resolve_hparams(load_config(None), 3, 64)
    assert latent_weight(hpd, 3) == 1.0
    assert hpd["lr"] * lr_factor(hpd, hpd["epochs"]) == pytest.approx(hpd["final_lr"])


def test_bad_configuration_is_a_user_error(tmp_path):
    from morphospace.vade.train import train_run

    run = make_run(tmp_path)
    with pytest.raises(UserError, match="must exceed"):
        train_run(run, cfg_for("train.epochs=1", "train.pretrain_epochs=1"))
    with pytest.raises(UserError, match="augment"):
        train_run(run, cfg_for("train.augment=spin"))
    with pytest.raises(UserError, match="nothing to resume"):
        train_run(run, cfg_for(), resume=True)


def test_a_new_training_leaves_nothing_of_the_previous_model(tmp_path):
    """Without --resume the model folder starts empty: a new training killed before its model is
    written must not leave the previous model's embedding or merged clusters beside its settings."""
    from morphospace.vade.fitting import prepare_model_dir
    from morphospace.vade.hparams import resolve_hparams

    run = make_run(tmp_path)
    mdir = run.path / "models/vade"
    for name in ("model.pt", "last.ckpt", "form_embedding.npy", "form_input.npy", "clusters.json",
                 "ssl/last.ckpt", "predict_shares/rank1.npz", "logs/csv/v0/metrics.csv"):
        (mdir / name).parent.mkdir(parents=True, exist_ok=True)
        (mdir / name).write_text("the previous model's")
    cfg = cfg_for()
    prepare_model_dir(run, cfg, resolve_hparams(cfg, 2, SIDE), resume=False)
    assert sorted(p.name for p in mdir.iterdir()) == ["hparams.json", "training_began.json"]


# --- training ----------------------------------------------------------------------------------

def test_training_writes_checkpoint_logs_and_model(trained):
    run, result = trained
    mdir = run.path / "models/vade"
    assert (mdir / "last.ckpt").is_file() and (mdir / "model.pt").is_file()
    assert result.n_components == 2 and result.global_rank == 0
    metrics = pd.read_csv(next((mdir / "logs/csv").glob("v*/metrics.csv")))
    per_epoch = metrics.groupby("epoch").last()
    assert list(per_epoch.index) == [0, 1, 2]
    for col in ("loss", "reconstruction", "kl", "expected_log_pz_c", "expected_log_pc", "entropy_c",
                "neg_entropy_z", "lr"):
        assert col in metrics, col
    assert per_epoch["phase"].tolist() == [0.0, 1.0, 1.0]
    assert np.isfinite(per_epoch["loss"]).all()
    assert list((mdir / "logs/tensorboard").glob("v*/events.out.tfevents*"))
    info = json.loads((mdir / "training.json").read_text())
    assert info["init"]["k"] == 2 and info["init"]["epoch"] == 1


def test_mixture_initialisation_is_applied(tmp_path):
    """At the first joint step the prior holds K-Means -> diagonal GMM fitted on z_mean."""
    import lightning.pytorch as pl

    from morphospace.vade.mixture import fit_mixture
    from morphospace.vade.train import train_run

    captured = {}

    class Capture(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 0:
                prior = module.model.prior
                captured["z"], captured["z_var"] = module.encode_dataset()
                captured["means"] = prior.means[: prior.n_components].detach().clone().numpy()
                captured["weights"] = prior.log_weights[: prior.n_components].exp().detach().numpy()
                captured["variances"] = prior.log_vars[: prior.n_components].exp().detach().numpy()

    run = make_run(tmp_path)
    train_run(run, cfg_for("train.epochs=2", "model.align_latent=false"), callbacks=[Capture()])
    fit = fit_mixture(captured["z"], 2, seed=0, posterior_var=captured["z_var"])
    np.testing.assert_allclose(captured["means"], fit["means"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(captured["variances"], fit["variances"], rtol=1e-4)
    np.testing.assert_allclose(captured["weights"], fit["weights"], rtol=1e-4, atol=1e-6)


def test_pixel_vade_trains_on_a_sample_and_embeds_every_galaxy(tmp_path):
    """train.sample: the model sees only the sample (the mixture is initialised on it), every galaxy is embedded."""
    import json

    import lightning.pytorch as pl

    from morphospace.data.sample import sample_rows
    from morphospace.vade.embed import embed_run
    from morphospace.vade.train import train_run

    seen = {}

    class Count(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen["rows"] = len(trainer.datamodule.dataset)
            seen["init_rows"] = len(module.encode_dataset()[0])

    run = make_run(tmp_path, n=48)
    cfg = cfg_for("train.sample=20", "train.epochs=2")
    train_run(run, cfg, callbacks=[Count()])
    assert seen == {"rows": 20, "init_rows": 20}
    summary = json.loads((run.path / "models/vade/training.json").read_text())
    assert summary["train_sample"] == 20 and summary["n_images"] == 20
    table = embed_run(run, cfg)
    assert len(table) == 48 and table["label"].notna().all()
    assert sample_rows(48, 20, 0).tolist() == sample_rows(48, 20, 0).tolist()
    assert sample_rows(48, 0, 0) is None and sample_rows(48, 48, 0) is None


def test_latent_axes_are_aligned_before_the_mixture_is_fitted(tmp_path):
    import lightning.pytorch as pl

    from morphospace.vade.train import train_run

    captured = {}

    class Capture(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            captured.setdefault(trainer.current_epoch, module.encode_dataset()[0])

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 0:
                captured["after"] = module.encode_dataset()[0]

    run = make_run(tmp_path)
    train_run(run, cfg_for("train.epochs=2"), callbacks=[Capture()])
    before, after = captured[1], captured["after"]   # same weights, before and after the init
    cov = np.cov(after.T)
    off = np.abs(cov - np.diag(np.diag(cov))).max()
    assert off < 1e-3 * np.diag(cov).max()                     # decorrelated
    assert np.all(np.diff(np.diag(cov)) <= 1e-9)              # largest variance first
    assert abs(np.cov(before.T) - np.diag(np.diag(np.cov(before.T)))).max() > 10 * off
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), np.linalg.norm(before, axis=1), rtol=1e-4)


def test_bic_chooses_k_when_n_components_is_zero(tmp_path, caplog):
    from morphospace.vade.train import train_run

    run = make_run(tmp_path)
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        result = train_run(run, cfg_for("model.n_components=0", "model.k_min=1", "model.k_max=3", "train.epochs=2"))
    info = json.loads((run.path / "models/vade/training.json").read_text())
    assert set(info["init"]["bic"]) == {"1", "2", "3"}
    best = min(info["init"]["bic"], key=info["init"]["bic"].get)
    assert result.n_components == int(best) == info["init"]["k"]
    # a K at the top of the searched range is said to be the cap's choice, not the data's
    capped = any("largest tried" in r.getMessage() for r in caplog.records)
    assert capped == (int(best) == 3)


def test_guard_reseeds_a_starved_component(tmp_path, caplog):
    import lightning.pytorch as pl

    from morphospace.vade.train import train_run

    class Starve(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 2:   # the mixture exists from epoch 1
                with torch.no_grad():
                    module.model.prior.logits[1] = -30.0

    run = make_run(tmp_path)
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        result = train_run(run, cfg_for("train.epochs=4", "model.n_components=3"), callbacks=[Starve()])
    events = [e for e in result.events if e["event"] == "reinitialised" and e["epoch"] == 2]
    assert any(e["component"] == 1 for e in events)
    assert any("re-seeded" in r.message for r in caplog.records)
    weights = torch.softmax(final_state(run)["prior.logits"][:3], 0)
    assert weights[1] > 0.01


def test_same_seed_same_labels_and_resume_equals_uninterrupted(tmp_path, trained, capsys):
    import lightning.pytorch as pl

    from morphospace.vade.embed import encode_cube
    from morphospace.vade.io import load_vade
    from morphospace.vade.train import train_run

    run_a, _ = trained
    run_b = make_run(tmp_path / "b")
    train_run(run_b, cfg_for())
    sa, sb = final_state(run_a), final_state(run_b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "same seed, different weights"

    def labels(run):
        model = load_vade(run.path / "models/vade/model.pt")[0]
        return encode_cube(model, run.read_cube())["proba"].argmax(1)

    assert np.array_equal(labels(run_a), labels(run_b))
    # another seed gives another model
    run_c = make_run(tmp_path / "c")
    train_run(run_c, cfg_for("train.seed=1"))
    assert not torch.equal(final_state(run_c)["prior.means"], sa["prior.means"])

    class Kill(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 2:
                raise KeyboardInterrupt("simulated kill")

    run_d = make_run(tmp_path / "d")
    with pytest.raises(BaseException):
        train_run(run_d, cfg_for(), callbacks=[Kill()])
    assert not (run_d.path / "models/vade/model.pt").exists()
    ckpt = torch.load(run_d.path / "models/vade/last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1 and "rng" in ckpt["morphospace"] and ckpt["state_dict"]["mixture_ready"] == 1
    with pytest.raises(UserError, match="settings changed since the training began"):
        train_run(run_d, cfg_for("model.latent_dim=4"), resume=True)
    # from the command line the refused value does not reach the run's configuration either
    from morphospace.cli import main
    from morphospace.pipeline import save_config

    save_config(run_d, cfg_for())
    saved = run_d.config.read_text()
    assert main(["train", str(run_d.path), "--resume", "--set", "model.latent_dim=4", "--quiet"]) == 2
    err = capsys.readouterr().err  # each setting named with its values, and what to do (it said "(latent_dim)")
    assert re.search(r"cannot resume: settings changed since the training began \(latent_dim \d+ -> 4\): set them "
                     r"back to resume, or train again without --resume", err), err
    assert run_d.config.read_text() == saved
    train_run(run_d, cfg_for(), resume=True)
    sd = final_state(run_d)
    assert all(torch.equal(sa[k], sd[k]) for k in sa), "resumed run differs from the uninterrupted one"
    # fewer epochs than the finished training has done: Lightning's traceback, after the settings were saved
    done = json.loads((run_d.path / "models/vade/hparams.json").read_text())["epochs"]
    assert main(["train", str(run_d.path), "--resume", "--epochs", str(done - 1), "--quiet"]) == 2
    assert f"the training has done {done} epochs, more than the {done - 1} asked for" in capsys.readouterr().err
    assert run_d.config.read_text() == saved
    assert np.array_equal(labels(run_a), labels(run_d))


@pytest.mark.slow
# a float32 cube's rows went to torch as the memory map's own read-only rows (torch warned of it)
@pytest.mark.filterwarnings("error:The given NumPy array is not writable")
def test_astrovader_preset_runs_one_tiny_epoch(tmp_path):
    pytest.importorskip("morphospace.vade.astrovader_net")
    from morphospace.api import load_model
    from morphospace.vade.train import train_run

    run = make_run(tmp_path, n=6, side=128, channels=1)
    cfg = apply_overrides(load_config(None), ["model.preset=astrovader", "train.epochs=1", "train.pretrain_epochs=0",
                                              "train.batch_size=4", "train.num_threads=2", "model.n_components=2"])
    result = train_run(run, cfg)
    hp = json.loads((run.path / "models/vade/hparams.json").read_text())
    assert hp["schedule"] == "astrovader" and hp["latent_dim"] == 20 and hp["weight_decay"] == 0.02
    model = load_model(run)
    assert type(model.vade.encoder).__name__ == "AstroVaDErEncoder"
    assert result.n_components == 2
    p = model.predict_proba(run.read_cube()[:3])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """strategy=ddp, accelerator=cpu, devices=2 (gloo): a tiny run completes and writes its model."""
    run = make_run(tmp_path / "run")
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        from morphospace.config import apply_overrides, load_config
        from morphospace.run import RunDir
        from morphospace.vade.train import train_run
        cfg = apply_overrides(load_config(None), {TINY!r} + ["train.strategy=ddp", "train.devices=2",
                                                             "train.epochs=2"])
        r = train_run(RunDir({str(run.path)!r}), cfg)
        # One file per rank: the two processes' stdout interleaves with the progress bars.
        open({str(tmp_path)!r} + f"/rank{{r.global_rank}}.txt", "w").write(f"K {{r.n_components}}")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["K 2", "K 2"]
    assert (run.path / "models/vade/model.pt").is_file()
    metrics = pd.read_csv(next((run.path / "models/vade/logs/csv").glob("v*/metrics.csv")))
    assert metrics["epoch"].max() == 1


# --- outputs and the Python API -------------------------------------------------------------------

def test_embed_refuses_a_cube_of_another_size_before_masking_it(trained, tmp_path):
    """A refused `embed` (a model trained on 16 px, a cube of 24 px) had already rewritten the run's
    neighbour-masked cube for the model it then refused."""
    import shutil

    from morphospace.vade.embed import embed_run

    run = RunDir(shutil.copytree(trained[0].path, tmp_path / "run"))
    write_npy(run.cube, np.zeros((N_GAL, 2, 24, 24), np.float32))
    masked = run.path / "cube_masked.npy"
    before = masked.read_bytes() if masked.exists() else None
    with pytest.raises(UserError, match="expects 2 x 16 x 16 images"):
        embed_run(run, cfg_for())
    assert (masked.read_bytes() if masked.exists() else None) == before


def test_embed_run_writes_table_embedding_clustering_figures(trained, caplog):
    import shutil

    from morphospace.vade.embed import TABLE_NAME, embed_run

    run, result = trained
    from morphospace.run import write_npy

    stale = run.embedding_path("form")  # left by a form model this pixel VaDE replaced
    write_npy(stale, np.ones((N_GAL, 4), np.float32))
    # with a map of it, a clustering of that map and its k-selection table: clustered, compared, reported and
    # exported again as the run's before
    from morphospace.run import write_json

    write_npy(run.reduction_path("form_pca"), np.ones((N_GAL, 2), np.float32))
    write_json(run.reduction_path("form_pca").with_suffix(".json"), {"embedding": "form", "reduction": "pca"})
    run.write_clustering("kmeans3_form_pca", run.cube_ids(), np.arange(N_GAL) % 3)
    write_json(run.clustering_path("kmeans3_form_pca").with_suffix(".json"), {"representation": "form_pca"})
    (run.sub("comparisons") / "k_selection_form_pca.csv").write_text("method,k\n")
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        table = embed_run(run, cfg_for())
    assert not stale.exists()  # the run's primary embedding is then the model's own, not the old one
    assert "form_pca" not in run.reductions() and "kmeans3_form_pca" not in run.clusterings()
    assert not (run.path / "comparisons" / "k_selection_form_pca.csv").exists()
    # set aside, as reduce sets aside what was made from an embedding gone, not deleted
    aside = list((run.path / "superseded").glob("*/embeddings/form.npy"))
    assert len(aside) == 1 and (aside[0].parents[1] / "clusterings" / "kmeans3_form_pca.parquet").is_file()
    assert "the form embedding of a model no longer the run's and what was made from it moved to superseded/" \
        in caplog.text
    shutil.rmtree(aside[0].parents[1])  # the shared run as the other tests know it
    if not any((run.path / "superseded").iterdir()):
        (run.path / "superseded").rmdir()
    saved = pd.read_parquet(run.path / TABLE_NAME)
    assert list(saved["id"]) == list(run.cube_ids())
    for col in ["z_mean_0", "z_mean_2", "z_log_var_2", "prob_0", "prob_1", "label", "label_prob", "recon_error",
                "log_likelihood", "anomaly"]:
        assert col in saved, col
    probs = saved[["prob_0", "prob_1"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    assert np.array_equal(saved["label"], probs.argmax(1))
    assert np.allclose(saved["anomaly"], -saved["log_likelihood"])
    assert (saved["recon_error"] > 0).all()
    z = run.read_embedding("vade")
    assert z.shape == (N_GAL, 3) and np.allclose(z, saved[["z_mean_0", "z_mean_1", "z_mean_2"]].to_numpy())
    from morphospace.vade.io import model_file, model_fingerprint

    note = json.loads(run.embedding_path("vade").with_suffix(".json").read_text())
    assert note["model_fingerprint"] == model_fingerprint(model_file(run))  # what the report checks the model against
    from morphospace.report.collect import RunContents
    from morphospace.vade.train import train_run

    model = (run.path / "models/vade/model.pt").read_bytes()
    train_run(run, cfg_for(), resume=True)  # nothing left to train (a requeued job): the model left as it is
    assert RunContents(run).stale_model is None and (run.path / "models/vade/model.pt").read_bytes() == model
    clus = run.read_clustering("vade")
    assert np.array_equal(clus["label"], saved["label"])
    for name in ["vade_reconstructions", "vade_clusters", "vade_component_means", "vade_generated",
                 "vade_interpolation", "vade_training_curves"]:
        assert run.figure_path(name).stat().st_size > 1000, name
    assert len(table) == N_GAL


def test_api_numpy_in_numpy_out(trained):
    from morphospace.api import load_model

    run, _ = trained
    model = load_model(run)
    x = np.asarray(run.read_cube()[:5])
    mu, lv = model.encode(x)
    assert mu.shape == (5, 3) and lv.shape == (5, 3) and isinstance(mu, np.ndarray)
    imgs = model.decode(mu)
    assert imgs.shape == (5, 2, SIDE, SIDE)
    p = model.predict_proba(x)
    assert p.shape == (5, 2)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    assert np.array_equal(model.predict(x), p.argmax(1))
    # one galaxy at a time gives the same probabilities (no batch dependence)
    np.testing.assert_allclose(model.predict_proba(x[2:3])[0], p[2], rtol=1e-5)
    s = model.sample(4, component=1, temperature=0.5)
    assert s.shape == (4, 2, SIDE, SIDE)
    # the same call as ms.VaDE.sample: random_state (it was seed=, and random_state= a TypeError)
    assert np.array_equal(model.sample(2, component=1, random_state=3), model.sample(2, component=1, seed=3))
    assert not np.array_equal(model.sample(2, component=1, random_state=3), model.sample(2, component=1))
    # what VaDE.sample's random_state takes: None (a fresh draw), a Generator; not both names at once
    assert model.sample(2, component=1, random_state=None).shape == (2, 2, SIDE, SIDE)
    assert np.array_equal(model.sample(2, component=1, random_state=np.random.default_rng(5)),
                          model.sample(2, component=1, random_state=np.random.default_rng(5)))
    with pytest.raises(ValueError, match="not both"):
        model.sample(2, component=1, random_state=3, seed=3)
    with pytest.raises(UserError):
        model.encode(np.zeros((2, 3, SIDE, SIDE)))
    with pytest.raises(UserError):
        model.sample(2, component=5)


def test_generate_with_rejection_and_write(trained, tmp_path):
    from astropy.io import fits
    from PIL import Image

    from morphospace.api import load_model
    from morphospace.vade.embed import generate, write_generated

    run, _ = trained
    model = load_model(run)
    # plain draws: decode(N(mu_k, t var_k)) from the seeded generator
    z_draws = model.vade.prior.sample(0, 16, 0.5, torch.Generator().manual_seed(3))
    assert np.array_equal(generate(run, 0, 16, seed=3), model.decode(z_draws.detach().numpy()))
    vade = model.vade
    with torch.no_grad():   # two components on top of each other: p(k|z) = 1/2 everywhere
        vade.prior.means[1] = vade.prior.means[0]
        vade.prior.raw_log_vars[1] = vade.prior.raw_log_vars[0]
        vade.prior.logits[1] = vade.prior.logits[0]
    assert np.array_equal(generate(vade, 0, 16, reject_below=0.4, seed=3), generate(vade, 0, 16, seed=3))
    with pytest.raises(UserError, match="p\\(k\\|z\\)"):
        generate(vade, 0, 4, reject_below=0.6, max_tries=3)
    with torch.no_grad():   # far apart: the rejection keeps what it should and still returns n
        vade.prior.means[1] = vade.prior.means[0] + 1.0
        vade.prior.raw_log_vars[:2] = 0.0
    # a cluster of components 0 and 1 (merged): a draw of 0 near 1 is a member, not a reject (it was,
    # tested on p(0|z) alone); with the weights, each component gives its share
    with torch.no_grad():
        vade.prior.logits[:2] = 0.0
    pair = vade.generate_cluster([0, 1], 40, temperature=1.0, reject_below=0.9, seed=2)
    assert pair.shape == (40, 2, SIDE, SIDE) and np.isfinite(pair).all()
    np.testing.assert_array_equal(pair, vade.generate_cluster([0, 1], 40, temperature=1.0, reject_below=0.9, seed=2))
    z = vade.prior.sample(0, 64, 1.0, torch.Generator().manual_seed(4))
    both = vade.prior.posterior(z)[:, :2].sum(1)
    assert (vade.prior.posterior(z)[:, 0] < 0.9).any() and (both >= 0.9).all()  # what single-component rejection lost
    with pytest.raises(ValueError, match="distinct components"):
        vade.generate_cluster([0, 0], 4)
    imgs = generate(vade, 0, 6, temperature=1.0, reject_below=0.6, seed=1)
    assert imgs.shape == (6, 2, SIDE, SIDE)
    g = torch.Generator().manual_seed(1)
    z = vade.prior.sample(0, 16, 1.0, g)
    post = vade.prior.posterior(z)[:, 0]
    assert 0 < int((post < 0.6).sum()) < 16    # some draws really are rejected
    expected = vade.decode(z[post >= 0.6][:6]).detach().numpy()
    np.testing.assert_array_equal(imgs, expected)
    with pytest.raises(UserError):
        generate(run, 7, 4)
    # a huge --n allocated every draw at once (a torch traceback); --temperature 1e300 gave NaN images
    from morphospace.vade.generate import DECODE_BATCH, MAX_GENERATED
    for bad in (dict(n=MAX_GENERATED + 1), dict(n=4, temperature=1e300)):
        with pytest.raises(ValueError, match="must be"):
            generate(vade, 0, **bad)
    many = generate(vade, 0, DECODE_BATCH + 3, seed=5)  # decoded a batch at a time
    assert many.shape == (DECODE_BATCH + 3, 2, SIDE, SIDE) and np.isfinite(many).all()
    np.testing.assert_array_equal(many, generate(vade, 0, DECODE_BATCH + 3, seed=5))
    paths = write_generated(imgs, tmp_path / "gen")
    assert len(paths) == 12
    with fits.open(tmp_path / "gen" / "generated_0000.fits") as hdul:  # bottom row first, as FITS stores it
        np.testing.assert_allclose(hdul[0].data, imgs[0][:, ::-1], rtol=1e-6)
    from morphospace.data.ingest.fits_frames import decode_fits  # read back the right way up, as the PNG shows it

    back = decode_fits(str(tmp_path / "gen" / "generated_0000.fits")).pixels
    np.testing.assert_allclose(np.moveaxis(back, -1, 0), imgs[0], rtol=1e-6)
    colour = np.random.default_rng(1).random((1, 3, SIDE, SIDE)).astype(np.float32)  # a colour cube's galaxy:
    write_generated(colour, tmp_path / "colour")  # its red read back as red (it came back blue)
    back = decode_fits(str(tmp_path / "colour" / "generated_0000.fits")).pixels
    np.testing.assert_allclose(np.moveaxis(back, -1, 0), colour[0], rtol=1e-6)
    assert Image.open(tmp_path / "gen" / "generated_0005.png").size == (SIDE, SIDE)
    # a second, smaller draw into the same folder: no file of the first is left beside it, and the
    # header says how each was drawn
    write_generated(imgs[:2], tmp_path / "gen", draw={"comp": 1, "temp": 0.5, "seed": 9, "rej": None})
    assert sorted(p.name for p in (tmp_path / "gen").iterdir() if not p.name.startswith(".")) == [
        "generated_0000.fits", "generated_0000.png", "generated_0001.fits", "generated_0001.png"]
    with fits.open(tmp_path / "gen" / "generated_0001.fits") as hdul:
        h = hdul[0].header
        assert (h["MS_COMP"], h["MS_TEMP"], h["MS_SEED"], h["MS_REJ"]) == (1, 0.5, 9, "none")
    # a draw interrupted (Ctrl-C) half way: it left half its files beside the earlier draw's, in one
    # folder with nothing to tell them apart; now the earlier draw stays whole and nothing else is left
    import morphospace.vade.embed as embed_module

    calls = {"n": 0}
    real = embed_module.display_image

    def interrupted(img):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(img)

    before = {p.name: p.read_bytes() for p in (tmp_path / "gen").iterdir()}
    embed_module.display_image = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            write_generated(imgs, tmp_path / "gen", draw={"comp": 2, "temp": 0.5, "seed": 3, "rej": None})
    finally:
        embed_module.display_image = real
    assert {p.name: p.read_bytes() for p in (tmp_path / "gen").iterdir()} == before


def test_drawing_from_a_cluster_that_holds_no_galaxy_is_said(trained, tmp_path, capsys):
    """An imported AstroVaDEr's merged clusters may hold none of a survey's galaxies ("sizes [25, 11, 143,
    29, 34, 0, 23, 35]"): `generate --cluster 5` drew from it and exited 0 without a word. The draw is
    made (the model's prior holds it), and a line on the console and in the run's log says so."""
    import shutil

    from morphospace.cli import main
    from morphospace.pipeline import save_config
    from morphospace.vade.embed import embed_run

    run, _ = trained
    copy = RunDir(shutil.copytree(run.path, tmp_path / "run"))
    save_config(copy, cfg_for())
    embed_run(copy, cfg_for())
    clus = copy.read_clustering("vade")
    clus["label"] = 0  # every galaxy most likely in cluster 0: cluster (and component) 1 holds none
    clus.to_parquet(copy.clustering_path("vade"))
    gen = tmp_path / "gen"
    capsys.readouterr()
    assert main(["generate", str(copy.path), "--cluster", "1", "--n", "2", "--out", str(gen)]) == 0
    err = capsys.readouterr().err
    line = f"cluster 1 holds none of the run's {N_GAL} galaxies (none is most likely in it): the 2 drawn show what"
    assert line in err and line in (copy.path / "log.txt").read_text()
    assert len(list(gen.glob("cluster1_*.fits"))) == 2
    assert main(["generate", str(copy.path), "--component", "1", "--n", "2", "--out", str(gen)]) == 0
    assert "component 1 holds none of the run's" in capsys.readouterr().err
    assert main(["generate", str(copy.path), "--cluster", "0", "--n", "2", "--out", str(gen)]) == 0
    assert "holds none" not in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_a_real_sigkill_equals_uninterrupted(tmp_path, trained):
    """The process is killed with SIGKILL at the start of epoch 2 (after epoch 1's checkpoint)."""
    import signal

    from morphospace.vade.train import train_run

    run_a, _ = trained
    run_k = make_run(tmp_path / "k")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import lightning.pytorch as pl
        from morphospace.progress import set_quiet
        from morphospace.run import RunDir
        from morphospace.vade.train import train_run
        from test_train import cfg_for

        class Stall(pl.Callback):  # holds the run still so the test can kill it there
            def on_train_epoch_start(self, trainer, module):
                if trainer.current_epoch == 2:
                    print("READY", flush=True)
                    time.sleep(120)

        set_quiet(True)
        train_run(RunDir({str(run_k.path)!r}), cfg_for(), callbacks=[Stall()])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert "READY" in line, f"the training process ended before epoch 2 (rc {proc.poll()})"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run_k.path / "models/vade/model.pt").exists()  # nothing that looks finished
    train_run(run_k, cfg_for(), resume=True)
    sa, sk = final_state(run_a), final_state(run_k)
    assert all(torch.equal(sa[k], sk[k]) for k in sa), "resumed run differs from the uninterrupted one"


@pytest.mark.slow
def test_embedding_on_two_cpu_processes_equals_one(trained, tmp_path):
    """``embed`` with --devices 2 (two processes over gloo, Lightning predict): the same table, in cube order."""
    import shutil

    from morphospace.vade.embed import embed_run

    run, _ = trained
    tables = []
    for name, extra in [("one", []), ("two", ["train.devices=2", "train.strategy=ddp_spawn"])]:
        shutil.copytree(run.path, tmp_path / name)
        tables.append(embed_run(RunDir(tmp_path / name), cfg_for(*extra)))
    one, two = tables
    assert list(one["id"]) == list(two["id"]) == list(run.cube_ids())
    pd.testing.assert_frame_equal(one, two, check_exact=False, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "two" / "models" / "vade" / "predict_shares").exists()


@pytest.mark.slow
def test_two_process_training_says_nothing_of_sync_dist(tmp_path, capfd):
    """The VaDE sums its epoch terms over the processes itself and logs them from rank 0: Lightning's
    advice to log them with sync_dist (printed by each spawned worker, ten lines an epoch) is
    not a user's business and is not shown; the losses written are the global ones."""
    from morphospace.vade.train import train_run

    run = make_run(tmp_path / "run")
    train_run(run, cfg_for("train.devices=2", "train.strategy=ddp_spawn"))
    err = capfd.readouterr().err
    assert (run.path / "models/vade/model.pt").is_file()
    assert "sync_dist" not in err, err[-2000:]


def test_a_resume_on_another_number_of_processes_is_said(trained, caplog):
    """A requeued job on other devices may continue (Lightning does), but its steps are no longer
    the uninterrupted run's: said once, by the training's own check."""
    import json

    from morphospace.vade.fitting import check_resumable

    run, _ = trained
    hp = json.loads((run.path / "models/vade/hparams.json").read_text())
    assert hp["processes"] == 1
    with caplog.at_level("WARNING", logger="morphospace"):
        check_resumable(run, {**hp, "processes": 2}, say=False)
        assert "resuming on" not in caplog.text
        check_resumable(run, {**hp, "processes": 2})
        check_resumable(run, hp)
    assert caplog.text.count("resuming on 2 processes a training begun on 1") == 1


def test_float16_asked_on_a_cpu_is_said_even_under_quiet(caplog, monkeypatch):
    """Lightning trains `--precision 16-mixed` on a CPU in bf16-mixed, saying so in a library
    warning, which --quiet keeps off the console: morphospace says it once, in its own log."""
    import logging

    from morphospace.config import Config, apply_overrides
    from morphospace.vade import fitting

    monkeypatch.setattr(fitting, "_SAID_PRECISION", set())
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        for precision in ("16-mixed", "16-mixed", "bf16-mixed", "32-true"):
            cfg = apply_overrides(Config(), {"train.precision": precision, "train.accelerator": "cpu"})
            assert fitting.device_kwargs(cfg)["precision"] == precision
    said = [r.getMessage() for r in caplog.records if "train.precision" in r.getMessage()]
    assert len(said) == 1 and "16-mixed" in said[0] and "uses bf16-mixed instead" in said[0]


def test_two_draws_into_one_folder_take_turns(tmp_path, monkeypatch):
    """Two `generate` into one folder at once: each removed the other's staging folder as a stale
    one, one failed half way and the folder ended empty while the other reported success. They
    now take turns: the folder holds one whole draw, the one written last."""
    import threading

    import morphospace.vade.embed as embed_module

    real, started = embed_module.display_image, threading.Event()

    def slow(img):  # the first draw is still writing when the second starts
        started.set()
        threading.Event().wait(0.002)
        return real(img)

    monkeypatch.setattr(embed_module, "display_image", slow)
    big, small = np.random.default_rng(0).random((150, 1, 8, 8)), np.random.default_rng(1).random((3, 1, 8, 8))
    errors = []

    def draw(images):
        try:
            embed_module.write_generated(images, tmp_path / "gen", prefix="component0")
        except Exception as exc:  # noqa: BLE001 - what a draw raised, to assert there was none
            errors.append(exc)

    first = threading.Thread(target=draw, args=(big,))
    first.start()
    started.wait(5)
    draw(small)
    first.join()
    assert errors == []
    names = sorted(p.name for p in (tmp_path / "gen").iterdir() if p.name != ".morphospace.lock")
    assert names in ([f"component0_{i:04d}.{e}" for i in range(150) for e in ("fits", "png")],
                     [f"component0_{i:04d}.{e}" for i in range(3) for e in ("fits", "png")])


def test_checkpoints_are_written_beside_themselves_not_in_the_system_temp_folder(tmp_path, monkeypatch):
    """Lightning saved checkpoints through fsspec, staged in $TMPDIR: a run wrote outside its folder,
    a kill mid-save left the file there, and across file systems the move became a copy over the
    previous checkpoint, which a kill or a full disk left truncated (nothing to resume)."""
    import tempfile

    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from morphospace.nets.checkpoints import with_atomic_checkpoints

    class Toy(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def training_step(self, batch, i):
            return self.w(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    staged = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        staged.append(kwargs.get("dir") or (args[2] if len(args) > 2 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    ckpt = tmp_path / "ckpt"
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=4)
    pl.Trainer(**with_atomic_checkpoints(dict(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=str(ckpt), save_last=True)]))).fit(Toy(), data)
    assert (ckpt / "last.ckpt").is_file() and torch.load(ckpt / "last.ckpt", weights_only=True)["epoch"] == 1
    assert staged and all(d is not None and Path(d) == ckpt for d in staged), staged


def test_a_new_training_stopped_half_way_leaves_the_previous_model_at_hand(tmp_path, trained, monkeypatch):
    """A training without --resume deleted the run's model before it began: stopped half way
    (Ctrl-C), it left neither the earlier model nor anything to resume. The earlier model is now set
    aside in superseded/ while the new one trains."""
    import shutil

    import lightning.pytorch as pl

    from morphospace.vade.train import train_run

    run = RunDir(shutil.copytree(trained[0].path, tmp_path / "run"))
    before = (run.path / "models" / "vade" / "model.pt").read_bytes()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.Trainer, "fit", stopped)
    with pytest.raises(KeyboardInterrupt):
        train_run(run, cfg_for())
    assert not (run.path / "models" / "vade" / "model.pt").exists()  # never served for the new settings
    aside = list((run.path / "superseded").glob("*/models/vade/model.pt"))
    assert len(aside) == 1 and aside[0].read_bytes() == before
    assert (aside[0].parent / "hparams.json").is_file()
    # and the next stage that needs a model says where it is (it said "run `morphospace train`" alone)
    from morphospace.errors import MissingFile
    from morphospace.vade.io import load_vade, model_file

    with pytest.raises(MissingFile, match=f"or put back the model set aside when a training started, "
                                          f"{re.escape(str(aside[0].parent))}"):
        load_vade(model_file(run))
    # not for another cube: a model an ingest of other galaxies set aside, or one trained before it
    os.utime(run.cube, ns=(0, 0))
    with pytest.raises(MissingFile) as missing:
        load_vade(model_file(run))
    assert "put back" not in str(missing.value)


def test_a_checkpoint_left_without_its_last_link_is_resumed_from(tmp_path):
    """Lightning removes last.ckpt (a link) and the previous epoch's file before it links the new one:
    killed in between, a whole epochNNN.ckpt was left and `--resume` said "nothing to resume"."""
    from morphospace.vade.fitting import relink_last

    mdir = tmp_path / "vade"
    mdir.mkdir()
    for epoch in (2, 10):
        (mdir / f"epoch{epoch:03d}.ckpt").write_bytes(b"checkpoint %d" % epoch)
    (mdir / "last.ckpt").symlink_to("epoch001.ckpt")  # removed already
    relink_last(mdir)
    assert (mdir / "last.ckpt").read_bytes() == b"checkpoint 10"
    (mdir / "last.ckpt").unlink()
    relink_last(mdir)
    assert (mdir / "last.ckpt").read_bytes() == b"checkpoint 10"
    empty = tmp_path / "none"
    empty.mkdir()
    relink_last(empty)
    assert not (empty / "last.ckpt").exists()


def test_a_run_without_its_model_says_how_to_finish_a_stopped_training(tmp_path):
    """After a training stopped half way, `embed` said "run `morphospace train` first", and a plain
    train deletes the checkpoints that `--resume` would have finished from."""
    from morphospace.errors import MissingFile
    from morphospace.vade.io import load_vade

    mdir = tmp_path / "run" / "models" / "vade"
    (mdir / "ssl").mkdir(parents=True)
    with pytest.raises(MissingFile, match="run `morphospace train` first"):
        load_vade(mdir / "model.pt")
    (mdir / "ssl" / "last.ckpt").write_bytes(b"ckpt")
    with pytest.raises(MissingFile, match=f"a training stopped before it finished: `morphospace train "
                                          f"{re.escape(str(tmp_path / 'run'))} --resume` finishes it"):
        load_vade(mdir / "model.pt")


def test_an_embed_stopped_half_way_reads_as_not_current(trained, tmp_path, monkeypatch):
    """The model's fingerprint was written before its clusters, form embedding and figures: an embed
    killed in between left the earlier model's clusters beside this one's table, both read (and
    exported) as this model's."""
    import shutil

    from morphospace.vade.embed import embed_run
    from morphospace.vade.io import embeddings_outdated

    run = RunDir(shutil.copytree(trained[0].path, tmp_path / "run"))
    embed_run(run, cfg_for())
    assert embeddings_outdated(run) is None
    real = RunDir.write_clustering

    def killed(self, name, *args, **kwargs):
        if name == "vade":
            raise KeyboardInterrupt
        return real(self, name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(RunDir, "write_clustering", killed)
        with pytest.raises(KeyboardInterrupt):
            embed_run(run, cfg_for())
    assert embeddings_outdated(run) == "the last `morphospace embed` did not finish"
    embed_run(run, cfg_for())
    assert embeddings_outdated(run) is None


def test_a_model_put_back_by_hand_beside_a_stopped_training_is_told_apart(trained, tmp_path):
    """A model moved back from superseded/ (as the missing-model message says) beside a stopped
    training's checkpoints: `--resume` then compared with the model's settings, refusing the stopped
    training's own and accepting the model's (going on from the other training's checkpoint), and
    overwrote the model put back when it ended."""
    import json
    import shutil

    from morphospace.vade.fitting import TRAINING_BEGAN, check_resumable, prepare_model_dir

    run = RunDir(shutil.copytree(trained[0].path, tmp_path / "run"))
    mdir = run.path / "models" / "vade"
    model = json.loads((mdir / "hparams.json").read_text())  # the model put back: seed 0
    stopped = {**model, "seed": model["seed"] + 1}  # the training it stopped beside
    (mdir / TRAINING_BEGAN).write_text(json.dumps(stopped))
    check_resumable(run, stopped)  # the stopped training's own settings: accepted
    with pytest.raises(UserError, match=f"seed {model['seed'] + 1} -> {model['seed']}"):
        check_resumable(run, model)
    made = (mdir / "model.pt").read_bytes()
    prepare_model_dir(run, cfg_for(), stopped, resume=True)
    aside = list((run.path / "superseded").glob("*/models/vade/model.pt"))
    assert len(aside) == 1 and aside[0].read_bytes() == made and not (mdir / "model.pt").exists()
    assert json.loads((mdir / "hparams.json").read_text())["seed"] == stopped["seed"]


def test_generated_galaxies_go_to_a_folder_named_with_a_tilde_as_named(tmp_path, monkeypatch):
    """`generate --out "~/gg"` (quoted: no shell expands it) staged the PNGs in ./~/gg while astropy
    wrote the FITS under the home folder: "No such file or directory", an empty ./~/gg left."""
    from morphospace.vade.embed import write_generated

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    paths = write_generated(np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32), "~/gg")
    assert sorted(p.name for p in (tmp_path / "~" / "gg").iterdir() if not p.name.startswith(".")) == [
        "generated_0000.fits", "generated_0000.png", "generated_0001.fits", "generated_0001.png"]
    assert all(p.is_file() for p in paths) and not (tmp_path / "home").exists()
