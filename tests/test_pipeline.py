"""`morphospace run` end to end on a tiny synthetic survey, then re-running single stages."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphospace.cli import main


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    run = base / "run"
    code = main(["run", "--out", str(run), "--model", "pca", "--quiet",
                 "--set", "data.synth_n=36", "--set", f"data.path={base / 'survey'}",
                 "--set", "cluster.reductions=['pca', 'lda']", "--set", "cluster.kmeans_k=[3, 4]"])
    assert code == 2  # data.path points at nothing yet: a one-line error, not a traceback
    assert main(["synth", "--n", "36", "--seed", "1", "--out", str(base / "survey"), "--size", "64", "--quiet"]) == 0
    code = main(["run", "--out", str(run), "--model", "pca", "--quiet",
                 "--set", f"data.path={base / 'survey'}",
                 "--set", "cluster.reductions=['pca', 'lda']", "--set", "cluster.kmeans_k=[3, 4]"])
    assert code == 0
    return run


def test_run_writes_every_stage(pca_run):
    for rel in ["config.toml", "catalogue.parquet", "cube.npy", "ingest_summary.json", "embeddings/pixels_pca.npy",
                "reductions/pixels_pca_pca.npy", "comparisons/ami.csv", "comparisons/nuisance_audit.csv",
                "report.html", "log.txt"]:
        assert (pca_run / rel).exists(), rel
    summary = json.loads((pca_run / "ingest_summary.json").read_text())
    assert summary["n_in_cube"] == 36
    ami = pd.read_csv(pca_run / "comparisons" / "ami.csv")
    assert "kmeans3_pixels_pca" in set(ami["name"]) and "morphology" in set(ami["name"])


def test_export_after_run(pca_run, tmp_path):
    out = tmp_path / "results.parquet"
    assert main(["export", str(pca_run), "--out", str(out), "--quiet"]) == 0
    t = pd.read_parquet(out)
    assert len(t) == 36
    assert {"id", "morphology", "cluster_kmeans3_pixels_pca", "cluster_kmeans4_pixels_pca_pca"} <= set(t.columns)
    assert any(c.startswith("flag_") for c in t.columns)


def test_single_stage_reruns_from_saved_config(pca_run):
    (pca_run / "report.html").unlink()
    assert main(["cluster", str(pca_run), "--quiet"]) == 0
    assert main(["report", str(pca_run), "--quiet"]) == 0
    assert (pca_run / "report.html").exists()


TINY_VADE = ["--set", "train.epochs=2", "--set", "train.pretrain_epochs=1", "--set", "train.batch_size=12",
             "--set", "model.widths=[8, 16, 16, 16]", "--set", "form.decoder_widths=[8, 16, 16, 16]",
             "--set", "form.ssl_epochs=2", "--set", "form.aug_views=1",
             "--set", "form.decoder_epochs=1"]


@pytest.mark.slow
def test_run_with_the_form_vade_then_a_study_of_its_ssl_encoder(tmp_path, monkeypatch, capsys):
    """`morphospace run` with the default (form-first) VaDE on tiny data, then `study --backbone ssl`
    on the same run: it re-uses the trained form model instead of training a second one."""
    survey = tmp_path / "survey"
    assert main(["synth", "--n", "24", "--seed", "2", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    run = tmp_path / "run"
    code = main(["run", "--out", str(run), "--data", str(survey), "--quiet", *TINY_VADE,
                 "--set", "model.n_components=4", "--set", "cluster.reductions=['pca']", "--set", "cluster.kmeans_k=[3]",
                 "--set", "cluster.invariance_sample=4"])  # the intervention test, on 4 galaxies: its cost is the trunk's
    assert code == 0
    assert (pd.read_csv(run / "comparisons" / "invariance.csv")["n"] == 4).all()
    # the default model is the form-first VaDE: its 4 components, merged into the run's clusters
    comps = pd.read_parquet(run / "clusterings" / "vade_components.parquet")
    assert len(comps) == 24 and {"prob_0", "prob_1", "prob_2", "prob_3"} <= set(comps.columns)
    merged = json.loads((run / "models" / "vade" / "clusters.json").read_text())
    assert sorted(sum(merged["groups"], [])) == [0, 1, 2, 3] and 2 <= merged["n_clusters"] <= 4
    # the elbow was taken on the rescaled plot: galaxies merged so far, 0 before any merge
    assert merged["elbow_on"] == "observations" and merged["merged_path"]["4"] == 0
    assert merged["merged_path"]["1"] >= merged["merged_path"]["2"] >= merged["merged_path"]["3"] > 0
    clus = pd.read_parquet(run / "clusterings" / "vade.parquet")
    k = merged["n_clusters"]
    assert {f"prob_{i}" for i in range(k)} <= set(clus.columns) and f"prob_{k}" not in clus.columns
    table = pd.read_parquet(run / "vade_galaxies.parquet")
    assert (table["cluster"].to_numpy() == clus["label"].to_numpy()).all()
    assert sorted(p.name for p in (run / "figures").glob("vade_generated_*.png")) == [
        f"vade_generated_{i}.png" for i in range(k)]
    assert np.load(run / "embeddings" / "form.npy").shape == (24, 64)
    probe = pd.read_csv(run / "comparisons" / "linear_probe.csv")
    assert {"form", "vade", "pixels_pca"} <= set(probe["embedding"])
    assert probe["balanced_accuracy"].between(0, 1).all()
    assert "generated by the model for this cluster" in (run / "report.html").read_text()
    gen = tmp_path / "gen"
    assert main(["generate", str(run), "--component", "1", "--n", "3", "--out", str(gen), "--quiet"]) == 0
    assert len(list(gen.glob("*.png"))) == 3 and len(list(gen.glob("*.fits"))) == 3
    assert main(["generate", str(run), "--component", "7", "--n", "3", "--out", str(gen), "--quiet"]) == 2
    # a cluster as the report numbers it: its merged components, named in each FITS header
    from astropy.io import fits

    big = max(range(k), key=lambda g: len(merged["groups"][g]))
    assert main(["generate", str(run), "--cluster", str(big), "--n", "4", "--out", str(gen), "--quiet"]) == 0
    made = sorted(gen.glob(f"cluster{big}_*.fits"))
    assert len(made) == 4 and len(list(gen.glob(f"cluster{big}_*.png"))) == 4
    assert fits.getheader(made[0])["MS_COMPS"] == ",".join(map(str, merged["groups"][big]))
    assert main(["generate", str(run), "--cluster", str(k), "--n", "3", "--out", str(gen), "--quiet"]) == 2
    record = json.loads((run / "models" / "vade" / "clusters.json").read_text())
    (run / "models" / "vade" / "clusters.json").write_text(json.dumps({**record, "model_fingerprint": "another"}))
    assert main(["generate", str(run), "--cluster", "0", "--n", "3", "--out", str(gen), "--quiet"]) == 2  # not its merge
    # the merge's record gone: cluster g is not component g (before, drawn from component g, and a
    # cluster the run does not have was drawn from a component)
    (run / "models" / "vade" / "clusters.json").unlink()
    assert main(["generate", str(run), "--cluster", str(k), "--n", "3", "--out", str(gen)]) == 2
    assert "clusters.json is missing" in capsys.readouterr().err
    (run / "models" / "vade" / "clusters.json").write_text(json.dumps(record))
    # embedded again without the merge: its clusters are the components, not the earlier merge's groups
    assert main(["embed", str(run), "--set", "model.merge_components=false", "--quiet"]) == 0
    assert not (run / "models" / "vade" / "clusters.json").exists()
    n_comp = json.loads((run / "embeddings" / "vade.json").read_text())["n_components"]
    assert main(["generate", str(run), "--cluster", str(n_comp - 1), "--n", "2", "--out", str(gen), "--quiet"]) == 0
    assert fits.getheader(sorted(gen.glob(f"cluster{n_comp - 1}_*.fits"))[0])["MS_COMPS"] == str(n_comp - 1)
    # trained again, not embedded yet: its clusters are not known (cluster g was component g, which the
    # merge at `embed` then put elsewhere); its components are
    note = run / "embeddings" / "vade.json"
    embedded = note.read_text()
    note.write_text(json.dumps({**json.loads(embedded), "model_fingerprint": "of the model before"}))
    assert main(["generate", str(run), "--cluster", "0", "--n", "2", "--out", str(gen), "--quiet"]) == 2
    assert main(["generate", str(run), "--component", "0", "--n", "2", "--out", str(gen), "--quiet"]) == 0
    note.write_text(embedded)
    # a run it cannot write to (an archive, a read-only copy) while another process holds its lock:
    # generate and export only read it, so they serve, and leave it as it was
    import fcntl
    import logging

    before, log = sorted(run.rglob("*")), (run / "log.txt").read_text()
    class ReadOnly(logging.FileHandler):
        def __init__(self, path, *args, **kwargs):
            if Path(path).parent == run:
                raise PermissionError(30, "Read-only file system", str(path))
            super().__init__(path, *args, **kwargs)

    with open(run / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        monkeypatch.setattr(logging, "FileHandler", ReadOnly)
        assert main(["generate", str(run), "--component", "0", "--n", "2", "--out", str(tmp_path / "g2"), "--quiet"]) == 0
        assert main(["export", str(run), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
        monkeypatch.undo()
    assert sorted(run.rglob("*")) == before and (run / "log.txt").read_text() == log
    assert len(list((tmp_path / "g2").glob("*.png"))) == 2 and (tmp_path / "r.csv").is_file()
    # the VaDE saw the cube with neighbours masked, and says how much it masked
    masked = pd.read_parquet(run / "cube_masked.parquet")
    assert len(masked) == 24 and {"n_masked", "masked_fraction"} <= set(masked.columns)

    # the study of the self-supervised encoder: --backbone ssl means the form-first model whatever
    # model.preset says, and the run's trained one is used as it is
    model = run / "models" / "vade" / "model.pt"
    trained = model.read_bytes()
    (run / "report.html").unlink()
    code = main(["study", "--data", str(survey), "--backbone", "ssl", "--out", str(run), "--quiet", *TINY_VADE,
                 "--set", "model.preset=default", "--set", "model.n_components=3",
                 "--set", "cluster.reductions=['pca', 'lda']", "--set", "cluster.kmeans_k=[3]"])
    assert code == 0
    assert model.read_bytes() == trained  # not trained again
    # the settings given that the model was not trained with are said (they were used without a word)
    said = (run / "log.txt").read_text()
    assert "the study uses the run's trained model, trained otherwise than these settings say" in said
    assert "n_components 4 -> 3" in said
    assert 'n_components = 4' in (run / "config.toml").read_text()  # the model's, not the 3 given
    ami = pd.read_csv(run / "comparisons" / "ami.csv")
    assert {"vade", "kmeans3_form", "kmeans3_form_pca", "kmeans3_form_lda"} <= set(ami["name"])
    hp = json.loads((run / "models" / "vade" / "hparams.json").read_text())
    assert hp["preset"] == "form"
    assert not (run / "embeddings" / "features.npy").exists()
    assert (run / "report.html").exists()


@pytest.mark.slow
def test_study_of_the_pixel_vade_encoder(tmp_path):
    """`study --backbone vade` on a fresh run trains the pixel VaDE (model.preset = default) and studies z_mean."""
    survey = tmp_path / "survey"
    assert main(["synth", "--n", "24", "--seed", "3", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    run = tmp_path / "study"
    code = main(["study", "--data", str(survey), "--backbone", "vade", "--out", str(run), "--quiet", *TINY_VADE,
                 "--set", "model.preset=default", "--set", "model.n_components=3", "--mode", "frozen",
                 "--set", "cluster.reductions=['pca', 'lda']", "--set", "cluster.kmeans_k=[3]"])
    assert code == 0
    # --mode (and --epochs) do not apply to the model's encoder: said, they were dropped without a word
    assert "study.mode = 'frozen': not used by the vade backbone" in (run / "log.txt").read_text()
    ami = pd.read_csv(run / "comparisons" / "ami.csv")
    assert {"vade", "kmeans3_vade", "kmeans3_vade_pca", "kmeans3_vade_lda"} <= set(ami["name"])
    hp = json.loads((run / "models" / "vade" / "hparams.json").read_text())
    assert hp["preset"] == "default"
    assert not (run / "embeddings" / "features.npy").exists()
    assert (run / "report.html").exists()


def test_run_starts_several_devices_from_its_own_process(monkeypatch):
    """`morphospace run` is every stage in one process: several devices are spawned from it, and a
    launcher that starts the whole command again in each process (ddp), or several nodes, is refused."""
    from morphospace.config import Config, apply_overrides
    from morphospace.errors import UserError
    from morphospace.vade.fitting import one_process_devices

    one = Config()
    assert one_process_devices(one, "run") is one
    two = apply_overrides(one, {"train.devices": 2})
    assert one_process_devices(two, "run").train.strategy == "ddp_spawn"
    forked = apply_overrides(two, {"train.strategy": "ddp_fork"})
    assert one_process_devices(forked, "run") is forked
    for bad in ({"train.strategy": "ddp"}, {"train.num_nodes": 2, "train.strategy": "ddp_spawn"}):
        with pytest.raises(UserError, match="morphospace train"):
            one_process_devices(apply_overrides(two, bad), "run")
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)  # a notebook or a prompt: Lightning forks only
    assert one_process_devices(two, "run").train.strategy == "ddp_notebook"


def test_run_refuses_a_launcher_that_restarts_it_in_one_line(tmp_path, capsys):
    code = main(["run", "--out", str(tmp_path / "run"), "--quiet", "--set", "train.devices=2",
                 "--set", "train.strategy=ddp"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "morphospace train" in err
    assert not (tmp_path / "run" / "cube.npy").exists()  # refused before the ingest


@pytest.mark.slow
def test_a_spawned_training_writes_nothing_outside_its_run(tmp_path, monkeypatch):
    """Lightning's spawning strategies hand the trained weights back through a checkpoint in a new
    folder of the system's temporary folder, and leave the folder: one per fit (three for the form
    model). They go through the run now, and nothing of them stays. One spawned process passes the
    weights the same way, and has no peer whose exit could abort it (see the README's known issue)."""
    import tempfile

    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    survey, run = tmp_path / "survey", tmp_path / "run"
    assert main(["synth", "--n", "16", "--seed", "4", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    assert main(["ingest", str(survey), "--out", str(run), "--quiet"]) == 0
    assert main(["train", str(run), "--devices", "1", "--strategy", "ddp_spawn", "--accelerator", "cpu",
                 *TINY_VADE, "--set", "model.n_components=2", "--set", "model.latent_dim=4", "--quiet"]) == 0
    assert (run / "models" / "vade" / "model.pt").is_file()
    # left: Python's multiprocessing folder (removed at exit) and torch's compile cache folder
    assert [p.name for p in system_tmp.iterdir() if not p.name.startswith(("pymp-", "torchinductor_"))] == []
    assert not [p for p in run.rglob("spawn")]


@pytest.mark.slow
def test_train_and_embed_on_two_processes_from_the_command_line(tmp_path):
    """`morphospace train RUN --devices 2` and `embed` as a user types them: Lightning starts the
    command again as rank 1, which must share rank 0's run lock, leave rank 0's files alone (the
    view bank being written) and keep out of the run's log; the embedding is one process's."""
    import os
    import shutil
    import subprocess
    import sys

    survey, run = tmp_path / "survey", tmp_path / "run"
    assert main(["synth", "--n", "24", "--seed", "3", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    # the recipe: the neighbours masked on the ingest's cores, not by every task of the training
    assert main(["ingest", str(survey), "--out", str(run), "--mask-neighbours", "--quiet"]) == 0
    masked = (run / "cube_masked.npy").stat().st_mtime_ns
    cli = [sys.executable, "-m", "morphospace"]
    two = ["--devices", "2", "--accelerator", "cpu"]
    # as from a shell: no launcher's variables left over from a distributed test in this process
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID")}
    done = subprocess.run([*cli, "train", str(run), *two, *TINY_VADE, "--set", "model.n_components=2"],
                          capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sync_dist" not in done.stderr  # the epoch's losses are the mean over the processes
    form = json.loads((run / "models" / "vade" / "training.json").read_text())["form"]
    assert np.isfinite(form["final_loss"])  # the SSL head trained
    assert (run / "cube_masked.npy").stat().st_mtime_ns == masked  # not built again
    # without training's own form embedding, each embed puts the cube through the trunk: in two
    # processes of one thread each, and in one of two threads (a bfloat16 trunk on a CPU that has
    # it: 5e-3 apart while the resize before the trunk rounded by the thread count)
    (run / "models" / "vade" / "form_embedding.npy").unlink()
    shutil.copytree(run, tmp_path / "one")
    done = subprocess.run([*cli, "embed", str(run), *two], capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["embed", str(tmp_path / "one"), "--devices", "1", "--quiet"]) == 0  # train saved devices = 2
    for name in ("form", "vade"):  # float32 sums split by the thread count: 7.4e-6 apart on an AVX2 CPU
        np.testing.assert_allclose(np.load(run / "embeddings" / f"{name}.npy"),
                                   np.load(tmp_path / "one" / "embeddings" / f"{name}.npy"), rtol=1e-4, atol=2e-5)
    log = (run / "log.txt").read_text()
    assert log.count("form embedding:") == 1 and log.count("===> VaDE embedding") == 1
    assert log.count("neighbours masked in") == 1  # by the ingest


@pytest.mark.parametrize("over", [
    {},
    {"model.preset": "default", "model.latent_dim": 8, "train.lr": 3e-3, "train.final_lr_fraction": 0.05,
     "model.widths": [8, 16], "model.flip_invariant": False},
    {"model.preset": "form", "form.dim": 32, "form.recon_sigma": 0.3, "model.recon_sigma": 0.2,
     "form.decoder_widths": [8, 16], "form.core": "mlp", "train.epochs": 30},
    {"model.preset": "form", "form.core": "linear", "model.merge_components": False},
    {"model.preset": "form", "form.core": "linear", "model.merge_elbow_on": "clusters"},
    {"model.preset": "astrovader", "model.latent_dim": 12, "train.epochs": 7},
])
def test_the_settings_of_a_models_hyper_parameters_train_that_model(over):
    """settings_of inverts resolve_hparams: the settings it gives resolve to the same model."""
    from morphospace.config import Config, apply_overrides
    from morphospace.vade.hparams import resolve_hparams, settings_of

    hp = resolve_hparams(apply_overrides(Config(), over), 3, 64, announce=False)
    assert resolve_hparams(apply_overrides(Config(), settings_of(hp)), 3, 64, announce=False) == hp
    # a model saved by an earlier version lacks keys: those are left out, not a KeyError
    assert settings_of({"preset": hp["preset"], "lr": 1e-3, "latent_dim": 8})["train.lr"] == 1e-3


def test_a_study_using_the_trained_model_saves_the_models_settings_not_those_given(tmp_path, caplog):
    """`study --backbone vade --set model.latent_dim=8` on a run with a 16-d model used the model, said
    so, but saved latent_dim = 8 in config.toml, which then described another model."""
    import logging

    from morphospace.config import Config, apply_overrides
    from morphospace.pipeline.study import _model_settings
    from morphospace.run import RunDir, write_json, write_npy
    from morphospace.vade.hparams import resolve_hparams
    from morphospace.vade.io import model_dir

    (tmp_path / "run").mkdir()
    run = RunDir(tmp_path / "run")
    write_npy(run.cube, np.zeros((4, 3, 32, 32), np.float32))
    trained = apply_overrides(Config(), {"model.preset": "default", "model.latent_dim": 16, "model.n_components": 4})
    write_json(model_dir(run) / "hparams.json", resolve_hparams(trained, 3, 32, announce=False))
    given = apply_overrides(Config(), {"model.preset": "default", "model.latent_dim": 8, "model.n_components": 4,
                                       "cluster.kmeans_k": [3]})
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        used = _model_settings(run, given)
    assert used.model.latent_dim == 16 and used.cluster.kmeans_k == [3]  # the study's own settings stay
    assert "latent_dim 16 -> 8" in caplog.text and "the run's config.toml says the model's" in caplog.text
    # nothing given otherwise: nothing said, the settings as given
    caplog.clear()
    same = apply_overrides(Config(), {"model.preset": "default", "model.latent_dim": 16, "model.n_components": 4})
    assert _model_settings(run, same) is same and "trained otherwise" not in caplog.text
    # the model's settings not given again (a study starts from the defaults): its own, unsaid
    assert _model_settings(run, Config()).model.n_components == 4 and "trained otherwise" not in caplog.text
    # another preset given: said, and the model's saved
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        other = _model_settings(run, apply_overrides(Config(), {"model.preset": "astrovader"}))
    assert other.model.preset == "default" and "preset 'default' -> 'astrovader'" in caplog.text
