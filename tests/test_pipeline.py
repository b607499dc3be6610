"""`morphospace run` end to end on a tiny synthetic survey, then re-running single stages."""

import json

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


@pytest.mark.slow
def test_run_with_vade_model(tmp_path):
    survey = tmp_path / "survey"
    assert main(["synth", "--n", "24", "--seed", "2", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    run = tmp_path / "run"
    code = main(["run", "--out", str(run), "--data", str(survey), "--quiet",
                 "--set", "train.epochs=2", "--set", "train.pretrain_epochs=1", "--set", "train.batch_size=12",
                 "--set", "model.widths=[8, 16, 16, 16]", "--set", "model.n_components=3",
                 "--set", "cluster.reductions=['pca']", "--set", "cluster.kmeans_k=[3]"])
    assert code == 0
    clus = pd.read_parquet(run / "clusterings" / "vade.parquet")
    assert len(clus) == 24 and {"prob_0", "prob_1", "prob_2"} <= set(clus.columns)
    assert (run / "vade_galaxies.parquet").exists()
    gen = tmp_path / "gen"
    assert main(["generate", str(run), "--component", "1", "--n", "3", "--out", str(gen), "--quiet"]) == 0
    assert len(list(gen.glob("*.png"))) == 3 and len(list(gen.glob("*.fits"))) == 3
    assert main(["generate", str(run), "--component", "7", "--n", "3", "--out", str(gen), "--quiet"]) == 2
