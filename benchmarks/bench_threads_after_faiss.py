"""scikit-learn's exact neighbour search in a process that has built a faiss index first.

faiss's OpenBLAS is the OpenMP build: limiting BLAS to one thread there (as scikit-learn does
around its exact search) also sets OpenMP's thread count, which scikit-learn's own loop reads.
``analysis/neighbour_index.py`` imports faiss only after scikit-learn has listed the libraries
it limits. This builds an approximate index (as a large run's reduce stage does), then times
the 10 nearest of N rows of 64 numbers through scikit-learn. To compare with older code, run it
with ``PYTHONPATH=OLD/src``, alternating.

Usage::

    .venv/bin/python benchmarks/bench_threads_after_faiss.py --n 50000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    args = ap.parse_args()
    X = np.random.default_rng(0).normal(size=(args.n, 64)).astype(np.float32)
    from morphospace.analysis.neighbour_index import SimilarityIndex

    SimilarityIndex(exact_below=0).fit(X[:20000])  # the inverted file first
    from sklearn.neighbors import NearestNeighbors

    t = time.perf_counter()
    NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X)
    print(f"{args.n:,} rows' 10 nearest through scikit-learn after a faiss index: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
