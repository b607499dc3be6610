"""The form embedding with the trunk at other input sides: K-Means AMI, 10% probe, UMAP silhouette.

For each survey (sdss-gz1: 3 classes, K = 3; the built-in synthetic survey: its 6 true
morphologies, K = 6), each trunk side and each seed, the form embedder is trained as
``morphospace train`` trains it (frozen ImageNet EfficientNet-Lite0, 8 dihedral + 4 nuisance
views, 60 SSL epochs, NT-Xent) on the neighbour-masked cube, and its embedding is scored: AMI of
K-Means(K) (K-Means seeds 0-2) against the labels, balanced accuracy of the linear probe on
10% of them, and the label-free silhouette of the K-Means clusters in a 2-D UMAP. Only the
embedding: the whole model over seeds is ``bench_vade.py --variants form_160``.

Usage::

    .venv/bin/python benchmarks/bench_form_input_size.py --work W --surveys gz1 synth --sizes 112 160 --seeds 0

Writes under ``--work`` (ingested runs, view banks, embeddings: reused by a second call).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_form_pooling import SURVEYS, score, survey_run  # noqa: E402 - the same surveys and scores


def embedding(run, size: int, seed: int, out: Path) -> tuple[np.ndarray, float]:
    """The form embedding of ``run`` with the trunk at ``size`` px (cached in ``out``), and its seconds."""
    from morphospace.image.masking import masked_cube
    from morphospace.ssl.embedder import build_trunk
    from morphospace.ssl.training import fit_embedder

    if (out / "emb.npy").is_file():
        return np.load(out / "emb.npy"), float("nan")
    cube = masked_cube(run, workers=2)
    t0 = time.perf_counter()
    _, emb, _ = fit_embedder(build_trunk("efficientnet-lite0", size, precision="auto"), cube, out, dim=64,
                             aug_views=4, epochs=60, seed=seed,
                             trainer_kwargs=dict(accelerator="cpu", devices=1, enable_progress_bar=False))
    seconds = time.perf_counter() - t0
    np.save(out / "emb.npy", emb)
    return emb, seconds


def main() -> None:
    import torch

    from morphospace.analysis.labels import labels_in_cube_order

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--surveys", nargs="+", default=["gz1", "synth"], choices=sorted(SURVEYS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 160])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    print("| survey | trunk side | seed | K-Means AMI | 10% probe | UMAP silhouette | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.surveys:
        run = survey_run(args.work, name)
        col, k = SURVEYS[name]
        if col == "morph3":
            truth = np.array(["" if v is None else str(v) for v in labels_in_cube_order(run, col)])
        else:
            truth = run.cube_catalogue()[col].astype("string").fillna("").to_numpy()
        for size in args.sizes:
            for seed in args.seeds:
                emb, seconds = embedding(run, size, seed, args.work / f"form_{name}_{size}_{seed}")
                r = score(emb, truth, k, [0, 1, 2], standardise=False)
                print(f"| {name} | {size} | {seed} | {np.mean(r['ami']):.3f} ± {np.std(r['ami']):.3f} "
                      f"| {r['probe10']:.3f} | {r['umap_silhouette']:.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
