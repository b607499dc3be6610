"""A small but structured fake run directory for the report's tests and benchmark.

Galaxies of three forms (round "ellipticals", two-armed "spirals", thin
"edge_on" disks) at random angles, a latent space in which the forms separate,
a 2-D map, a soft clustering with probabilities, an anomaly score, comparison
matrices and a training log: everything the report reads, at any size. Row 0
carries a hostile id (``<img src=x onerror=alert(1)>``) and a hostile label
value, so every test runs against escaping mistakes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from morphospace.run import RunDir, write_json, write_npy, write_table

HOSTILE_ID = "<img src=x onerror=alert(1)>"
HOSTILE_LABEL = "<script>alert(2)</script>"
HOSTILE_FIGURE = 'odd<b onmouseover=alert(3)>"name"'
FORMS = ("elliptical", "spiral", "edge_on")


def _galaxies(forms: np.ndarray, angles: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """N x 3 x size x size float32 images in [0, 1]."""
    n = len(forms)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy = (yy - size / 2 + 0.5) / (size / 2)
    xx = (xx - size / 2 + 0.5) / (size / 2)
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    u = xx[None] * c + yy[None] * s
    v = -xx[None] * s + yy[None] * c
    axis = np.where(forms == 2, 0.18, np.where(forms == 0, 0.9, 0.7)).astype(np.float32)[:, None, None]
    scale = rng.uniform(0.22, 0.42, n).astype(np.float32)[:, None, None]
    r2 = (u ** 2 + (v / axis) ** 2) / scale ** 2
    light = np.exp(-r2)
    # two spiral arms for the spirals
    theta = np.arctan2(v, u)
    r = np.sqrt(u ** 2 + v ** 2) + 1e-6
    arms = 0.5 * (1 + np.cos(2 * theta - 9.0 * r)) * np.exp(-r / 0.55) * (r > 0.12)
    light = light + np.where(forms[:, None, None] == 1, 0.55 * arms, 0.0)
    light = light / light.max(axis=(1, 2), keepdims=True)
    tint = np.stack([np.where(forms == 0, 1.0, 0.75), np.full(n, 0.85), np.where(forms == 0, 0.6, 1.0)], 1)
    img = light[:, None] * tint[:, :, None, None].astype(np.float32)
    # sky noise like an asinh-stretched SDSS cutout (corner mean ~0.06, std ~0.15), so the
    # thumbnails compress like real ones and the benchmark's sizes mean something
    img = 0.85 * img + rng.normal(0.06, 0.15, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def make_fake_run(path: str | Path, n: int = 60, size: int = 32, seed: int = 0, n_flagged: int = 3,
                  chunk: int = 2000, everything: bool = True) -> RunDir:
    """Write a fake run of ``n`` galaxies in the cube (plus ``n_flagged`` left out) at ``path``.

    Parameters
    ----------
    path : str or Path
        The run directory (made).
    n : int
        Galaxies in the cube; row 0 has the id :data:`HOSTILE_ID`, row 1 the
        label value :data:`HOSTILE_LABEL`.
    size : int
        Side of the images (3 x size x size).
    seed : int
        Seed of everything random.
    n_flagged : int
        Galaxies flagged blank at ingest, left out of the cube.
    chunk : int
        Images drawn at a time (bounds the memory of large runs).
    everything : bool
        False: only what the ingest writes (catalogue, summary, cube). True:
        also embeddings, maps, two clusterings, anomaly scores, comparison
        tables, a training log and two foreign figures (one with the file
        name :data:`HOSTILE_FIGURE`).

    Returns
    -------
    RunDir
        The run.
    """
    rng = np.random.default_rng(seed)
    run = RunDir(path, create=True)
    forms = rng.integers(0, 3, n)
    angles = rng.uniform(0, np.pi, n).astype(np.float32)
    cube = np.lib.format.open_memmap(run.cube, mode="w+", dtype=np.float32, shape=(n, 3, size, size))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        cube[start:stop] = _galaxies(forms[start:stop], angles[start:stop], size, rng)
    cube.flush()
    del cube

    ids = [f"G{i:06d}" for i in range(n)]
    ids[0] = HOSTILE_ID
    morph = np.array(FORMS, dtype=object)[forms]
    morph[1] = HOSTILE_LABEL  # a hostile label value too
    flagged_ids = [f"BAD{i:03d}" for i in range(n_flagged)]
    cat = pd.DataFrame({
        "id": ids + flagged_ids,
        "source": [f"/data/survey/images/{i}.jpg" for i in ids + flagged_ids],
        "morphology": pd.Series(list(morph) + [None] * n_flagged, dtype="string"),
        "pa_deg": np.r_[np.degrees(angles), np.full(n_flagged, np.nan)],
        "flag_blank": np.r_[np.zeros(n, bool), np.ones(n_flagged, bool)],
        "flag_nonfinite": np.r_[np.arange(n) == 2, np.zeros(n_flagged, bool)],
        "cube_index": np.r_[np.arange(n), -np.ones(n_flagged, int)],
    })
    write_table(run.catalogue, cat)
    write_json(run.ingest_summary, {
        "layout": "synthetic", "source": "/data/survey", "n_records": n + n_flagged, "n_in_cube": n,
        "cube_shape": [n, 3, size, size], "label_columns": ["morphology"],
        "flags": {"blank": {"count": n_flagged, "meaning": "blank or near-constant image", "excluded": True,
                            "examples": flagged_ids[:5]},
                  "nonfinite": {"count": 1, "meaning": "NaN or inf pixels", "excluded": False,
                                "examples": [ids[2]]}},
    })
    if not everything:
        return run

    # a latent space where the forms separate (and angle leaks a little, like real models)
    centres = rng.normal(0, 3, (3, 16))
    z = centres[forms] + rng.normal(0, 1, (n, 16)) + 0.3 * np.c_[np.cos(2 * angles), np.sin(2 * angles), np.zeros((n, 14))]
    write_npy(run.embedding_path("vade"), z.astype(np.float32))
    write_npy(run.embedding_path("pixels_pca"), (z[:, :8] + rng.normal(0, 2, (n, 8))).astype(np.float32))
    tsne = np.array([[0, 0], [6, 1], [2, 6]], float)[forms] + rng.normal(0, 1, (n, 2))
    write_npy(run.reduction_path("vade_tsne"), tsne.astype(np.float32))
    write_npy(run.reduction_path("vade_pca"), z[:, :5].astype(np.float32))  # a 5-column PCA: columns 1-2 shown

    logits = -((z[:, None, :] - centres[None]) ** 2).sum(-1) / 8.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    run.write_clustering("vade", np.array(ids), probs.argmax(1), probs)
    km = (tsne[:, 0] > 3).astype(int) + 2 * (tsne[:, 1] > 3).astype(int)
    run.write_clustering("kmeans4_vade", np.array(ids), km)
    write_json(run.clustering_path("kmeans4_vade").with_suffix(".json"),
               {"method": "kmeans", "k": 4, "best_k": 4, "representation": "vade"})

    ll = -((z - centres[forms]) ** 2).sum(1)
    anomaly = -ll + np.where(rng.random(n) < 0.02, 40.0, 0.0)
    write_table(run.path / "vade_galaxies.parquet",
                pd.DataFrame({"id": ids, "anomaly": anomaly.astype(np.float32), "log_likelihood": ll}))

    comp = run.sub("comparisons")
    names = ["vade", "kmeans4_vade", "morphology"]
    ari = pd.DataFrame(np.array([[1, 0.5, 0.8], [0.5, 1, 0.4], [0.8, 0.4, 1.0]]), index=names, columns=names)
    write_table(comp / "ari.csv", ari.rename_axis("name").reset_index())
    write_table(comp / "ami.csv", (ari * 0.9 + 0.1 * np.eye(3)).rename_axis("name").reset_index())
    cont = pd.crosstab(probs.argmax(1), morph)
    write_table(comp / "contingency_vade__morphology.csv",
                cont.rename_axis(index="cluster", columns=None).reset_index())
    write_table(comp / "nuisance_audit.csv", pd.DataFrame({"clustering": ["vade", "kmeans4_vade"],
                                                           "pa_bin": [0.05, 0.12], "companion": [0.01, 0.02],
                                                           "flag_nonfinite": [0.0, 0.001]}))
    logs = run.model_dir("vade") / "logs" / "train" / "version_0"
    logs.mkdir(parents=True, exist_ok=True)
    epochs = np.arange(6)
    rows = []
    for e in epochs:
        rows.append({"epoch": e, "step": 10 * e + 5, "train_loss": 100 / (e + 1), "val_loss": np.nan})
        rows.append({"epoch": e, "step": 10 * e + 9, "train_loss": np.nan, "val_loss": 110 / (e + 1)})
    pd.DataFrame(rows).to_csv(logs / "metrics.csv", index=False)
    # a figure from another stage that no section places: must land in "other figures"
    from PIL import Image
    Image.new("RGB", (40, 30), (200, 80, 80)).save(run.figure_path("someone_elses_plot"))
    Image.new("RGB", (30, 30), (80, 80, 200)).save(run.sub("figures") / f"{HOSTILE_FIGURE}.png")  # a hostile file name (put there by hand: figure_path would make it safe)
    (run.path / "models" / "vade" / "meta.json").write_text(json.dumps({"latent_dim": 16}))
    return run


def add_many_comparisons(run: RunDir, extra: int = 12, seed: int = 1) -> list[str]:
    """Comparisons of a feature study's size: ``extra`` more clusterings in the ARI / AMI matrices and
    as many contingency tables (each its own counts), as when the matrices are too large to read.

    Returns
    -------
    list of str
        The matrices' row names in order (the fake run's three, then ``study_0`` ...).
    """
    rng = np.random.default_rng(seed)
    comp = run.sub("comparisons")
    names = ["vade", "kmeans4_vade", "morphology"] + [f"study_{i}" for i in range(extra)]
    a = rng.uniform(0.0, 0.9, (len(names), len(names)))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    for m, mat in (("ari", a), ("ami", np.clip(a * 0.95 + 0.02, 0, 1))):
        write_table(comp / f"{m}.csv", pd.DataFrame(mat, index=names, columns=names).rename_axis("name").reset_index())
    for i in range(extra):
        counts = pd.DataFrame(rng.integers(0, 30, (3, 3)), columns=["edge-on", "elliptical", "spiral"])
        write_table(comp / f"contingency_study_{i}__morphology.csv",
                    counts.rename_axis("cluster").reset_index())
    return names
