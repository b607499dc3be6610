"""Does a network trained on galaxies give features that carry form? The published AstroVaDEr
encoder as a frozen trunk, measured on sdss-gz1 (issue 9).

The form embedding's trunk is ImageNet's EfficientNet-Lite0. The one galaxy-trained network at
hand is the published AstroVaDEr encoder (Spindler et al. 2021: trained without labels on about
160,000 SDSS galaxies, 128 px grey, per-image min-max). This script ingests sdss-gz1 by its
recipe (``preprocess.preset = "astrovader"``, with the 45% crop that reproduces the published
``reference.npz``), runs the imported encoder over the four 90-degree turns of each galaxy and
averages, and scores the activations of several depths:

* ``conv2``, ``conv4``, ``conv6``: global averages of the convolutions' maps (64, 64, 16 channels);
* ``flat_pca32``: the flattened 4,096-d bottleneck the dense heads read (turned back before the
  average, so it is the turn-averaged map), PCA to 32 after standardising;
* ``z``: the encoder's mean latent vector (20-d);
* with ``--form-embedding F`` (an ``.npy``, rows in the run's cube order, e.g. a form run's
  ``embeddings/form.npy``), also the form embedding alone and beside ``flat_pca32``
  (each standardised).

Scores as :func:`bench_form_pooling.score`: K-Means(3) AMI against elliptical / spiral / edge-on
(K-Means seeds 0-2), 10% linear probe (balanced accuracy), UMAP silhouette of the K-Means
clusters (label-free). Labels only score.

Usage::

    .venv/bin/python benchmarks/bench_form_galaxy_trunk.py --work W [--form-embedding F]

About 9 minutes of encoder passes on 2 cores for the 3,359 galaxies, 1 minute per score.
Writes only under ``--work`` (the ingested run and the cached activations).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
WEIGHTS = ROOT.parent / "shared" / "peers" / "astrovader" / "saved_weights.h5"
GZ1 = ROOT.parent / "shared" / "data" / "sdss-gz1"
TURNS = 4


def astrovader_run(work: Path):
    """sdss-gz1 ingested by the published recipe (128 px grey, min-max, 45% crop), once."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.data.ingest import ingest
    from morphospace.run import RunDir

    path = work / "gz1_astrovader"
    if not (path / "cube.npy").is_file():
        cfg = apply_overrides(load_config(None), ["preprocess.preset=astrovader", "preprocess.crop=0.45",
                                                  "ingest.workers=2"])
        ingest(GZ1, RunDir(path, create=True), cfg)
    return RunDir(path)


def activations(encoder, cube, batch: int = 64) -> dict:
    """Turn-averaged activations of every depth (see the module docstring), one row per galaxy."""
    import torch

    e = encoder
    out: dict[str, list] = {k: [] for k in ("conv2", "conv4", "conv6", "flat", "z")}
    with torch.no_grad():
        for s in range(0, len(cube), batch):
            x0 = torch.from_numpy(np.asarray(cube[s:s + batch], dtype=np.float32))
            acc: dict[str, object] = {k: 0.0 for k in out}
            for r in range(TURNS):
                h = e.act(e.conv2(e.act(e.conv1(torch.rot90(x0, r, (2, 3))))))
                c2, h = h.mean((2, 3)), e.pool(h)
                h = e.act(e.conv4(e.act(e.conv3(h))))
                c4, h = h.mean((2, 3)), e.pool(h)
                h = e.act(e.conv6(e.act(e.conv5(h))))
                c6, h = h.mean((2, 3)), e.pool(h)
                z = e.mean(h.permute(0, 2, 3, 1).reshape(len(h), -1))  # Keras's (H, W, C) flatten
                flat = torch.rot90(h, -r, (2, 3)).reshape(len(h), -1)  # the map turned back first
                for k, v in zip(out, (c2, c4, c6, flat, z)):
                    acc[k] = acc[k] + v / TURNS
            for k in out:
                out[k].append(acc[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (the run and cached activations)")
    ap.add_argument("--form-embedding", type=Path, help="a form embedding of sdss-gz1 (.npy, cube order)")
    args = ap.parse_args(argv)
    if not WEIGHTS.is_file() or not (GZ1 / "images").is_dir():
        print(f"needs {WEIGHTS} and {GZ1}")
        return 2
    import torch
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from bench_form_pooling import score
    from morphospace.progress import set_quiet
    from morphospace.vade.keras_import import build_astrovader

    set_quiet(True)
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    run = astrovader_run(args.work)
    truth = run.cube_catalogue()["morph3"].astype("string").fillna("").to_numpy()
    cache = args.work / "astrovader_activations.npz"
    if not cache.is_file():
        t0 = time.perf_counter()
        encoder = build_astrovader(WEIGHTS)[0]
        np.savez(cache, **activations(encoder, np.load(run.cube, mmap_mode="r")))
        print(f"encoder passes: {time.perf_counter() - t0:.0f} s", flush=True)
    act = dict(np.load(cache))
    std = StandardScaler().fit_transform
    sets = {"conv2": act["conv2"], "conv4": act["conv4"], "conv6": act["conv6"],
            "flat_pca32": PCA(32, random_state=0).fit_transform(std(act["flat"])), "z": act["z"]}
    if args.form_embedding:
        form = np.load(args.form_embedding)
        if len(form) != len(truth):
            print(f"{args.form_embedding}: {len(form)} rows, the run has {len(truth)}")
            return 2
        sets["form"] = form
        sets["form + flat_pca32"] = np.concatenate([std(form), std(sets["flat_pca32"])], 1)
    print("| features | dims | K-Means(3) AMI (seeds 0-2) | probe 10% | UMAP silhouette |\n|---|---|---|---|---|")
    for name, x in sets.items():
        r = score(x, truth, 3, [0, 1, 2])
        print(f"| {name} | {x.shape[1]} | {np.mean(r['ami']):.3f} | {r['probe10']:.3f} | {r['umap_silhouette']:.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
