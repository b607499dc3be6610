"""Similarity search: precision@10 of each embedding of a run against a label column, and
query time of the nearest-neighbour index at 20,000 and 200,000 galaxies.

Usage::

    .venv/bin/python benchmarks/bench_similar.py RUN --labels morph3 [--sizes 20000 200000]

precision@10: for each labelled galaxy, the fraction of its 10 nearest others (approximate
index, Euclidean) that carry the same label; query time: one galaxy at a time, median of 200
queries, on a random 64-d embedding of each size (build time given too).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from morphospace.analysis.labels import labels_in_cube_order
from morphospace.analysis.similar import SimilarityIndex, precision_at_k
from morphospace.run import RunDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--labels", default="morph3")
    ap.add_argument("--sizes", type=int, nargs="*", default=[20000, 200000])
    args = ap.parse_args()
    run = RunDir(args.run)
    y = labels_in_cube_order(run, args.labels)
    print("| embedding | dims | precision@10 |\n|---|---|---|")
    for name in run.embeddings():
        x = np.asarray(run.read_embedding(name), dtype=np.float64)
        print(f"| {name} | {x.shape[1]} | {precision_at_k(x, y, k=10):.3f} |", flush=True)
    rng = np.random.default_rng(0)
    print("\n| galaxies | build (s) | query, one galaxy (ms, median of 200) |\n|---|---|---|")
    for n in args.sizes:
        x = rng.normal(size=(n, 64)).astype(np.float32)
        t = time.perf_counter()
        index = SimilarityIndex(exact_below=0).fit(x)  # the approximate index at every size
        build = time.perf_counter() - t
        times = []
        for i in rng.integers(0, n, 200):
            t = time.perf_counter()
            index.kneighbors(x[i:i + 1], k=11)
            times.append(time.perf_counter() - t)
        print(f"| {n} | {build:.1f} | {1000 * np.median(times):.2f} |", flush=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
