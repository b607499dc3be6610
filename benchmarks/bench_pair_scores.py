"""Cost of scoring one pair of labellings: scikit-learn's five scores (each building and checking its
own contingency table) against :func:`morphospace.analysis.agreement.score_pair` (all eight scores
from one table made by ``np.bincount``), at 3,359 and 1,000,000 galaxies, in the same process.

Usage::

    .venv/bin/python benchmarks/bench_pair_scores.py [--sizes 3359 1000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn import metrics as skm

from morphospace.analysis.agreement import score_pair
from morphospace.analysis.labels import encode


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3_359, 1_000_000], help="galaxies a labelling")
    args = ap.parse_args(argv)
    if min(args.sizes) < 1:
        ap.error("--sizes must be at least 1")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        a, b = rng.integers(0, 6, n), rng.integers(0, 8, n)
        reps = 50 if n < 100_000 else 3
        t = time.perf_counter()
        for _ in range(reps):
            [skm.adjusted_rand_score(a, b), skm.adjusted_mutual_info_score(a, b),
             skm.normalized_mutual_info_score(a, b), skm.v_measure_score(b, a), skm.fowlkes_mallows_score(a, b),
             skm.cluster.contingency_matrix(a, b)]
        old = (time.perf_counter() - t) / reps
        t = time.perf_counter()
        for _ in range(reps):
            score_pair(a, b)
        new = (time.perf_counter() - t) / reps
        ea, eb = encode(a), encode(b)  # as the compare stage does: each labelling encoded once
        t = time.perf_counter()
        for _ in range(reps):
            score_pair(ea, eb)
        pre = (time.perf_counter() - t) / reps
        print(f"n={n:>9,}: scikit-learn {old * 1e3:7.1f} ms; score_pair {new * 1e3:7.1f} ms "
              f"({old / new:.1f}x); pre-encoded {pre * 1e3:7.1f} ms ({old / pre:.1f}x)")


if __name__ == "__main__":
    from _entry import run

    run(main)
