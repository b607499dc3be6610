"""How much of the form embedding's dihedral average a subset of the 8 views keeps (label-free).

On a run whose form head trained on every galaxy (so its view bank holds all 8 dihedral views
of each one), the head's output is averaged over subsets of the views and compared with the
8-view embedding: the median, over galaxies, of the distance between the two divided by the
distance from the galaxy to its nearest other galaxy (8-view). ``form.embed_views`` = 0 takes
the 4 quarter turns above ``train.sample`` by this measure. Where the run has labels, the
AMI of K-Means(3) against them is printed beside it, for information only.

Usage::

    .venv/bin/morphospace run --data ../shared/data/sdss-gz1 --out RUN --quiet --set train.keep_view_bank=true
    .venv/bin/python benchmarks/bench_form_views.py RUN
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

SUBSETS = {"1 (identity)": [0], "2 (identity, 180 + flip)": [0, 6], "2 (identity, 90 + flip)": [0, 5],
           "4 quarter turns": [0, 1, 2, 3], "4 (identity, 180, two flips)": [0, 2, 4, 6],
           "4 (identity, 90, flip, 90 + flip)": [0, 1, 4, 5], "8 (all)": list(range(8))}


def main() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score
    from sklearn.neighbors import NearestNeighbors

    from morphospace.analysis.labels import labels_in_cube_order
    from morphospace.api import load_model
    from morphospace.run import RunDir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--labels", default="morph3", help="label column to score K-Means(3) against (if present)")
    args = ap.parse_args()
    run = RunDir(args.run)
    ssl = run.path / "models" / "vade" / "ssl"
    if not (ssl / "view_bank.npy").is_file():
        raise SystemExit("the run kept no view bank: train it with --set train.keep_view_bank=true")
    bank = np.load(ssl / "view_bank.npy", mmap_mode="r")
    if bank.shape[1] != len(run.read_cube(mmap=True)):
        raise SystemExit("the view bank covers a training sample only: train the run with train.sample=0")
    head = load_model(run).vade.embedder.head.eval()  # the trained head, as the run saved it
    with torch.no_grad():
        per_view = np.stack([head(torch.from_numpy(np.asarray(bank[v]))).numpy() for v in range(8)])
    full = per_view.mean(0)
    nearest = NearestNeighbors(n_neighbors=2).fit(full).kneighbors(full)[0][:, 1]
    try:
        y = labels_in_cube_order(run, args.labels)
        keep = np.array([v is not None for v in y])
    except Exception:  # noqa: BLE001 - a run without labels: the label-free column only
        y = None
    print("| views averaged | median distance to the 8-view embedding / nearest-galaxy distance | K-Means(3) AMI |")
    print("|---|---|---|")
    for name, views in SUBSETS.items():
        emb = per_view[views].mean(0)
        moved = float(np.median(np.linalg.norm(emb - full, axis=1) / np.maximum(nearest, 1e-12)))
        score = ""
        if y is not None and keep.any():
            score = f"{np.mean([adjusted_mutual_info_score(y[keep], KMeans(3, n_init=10, random_state=s).fit_predict(emb)[keep]) for s in range(3)]):.3f}"
        print(f"| {name} | {moved:.3f} | {score} |", flush=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
