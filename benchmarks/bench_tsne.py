"""openTSNE (the reduce stage's t-SNE) against scikit-learn's TSNE on the same rows, in the same run.

The rows: N points (``--n``, default 100,000) of a 64-d embedding with a few clusters (like
the form embedding), reduced by PCA to 50 dimensions as the reduce stage does. openTSNE runs
as :class:`morphospace.analysis.reducers.TSNEReducer` does (FFT-accelerated gradients,
approximate neighbours, 250 early-exaggeration + 500 iterations); scikit-learn's TSNE runs
Barnes-Hut with exact neighbours for the same 750 iterations. Both use ``--threads``
threads. Printed: the wall time of each, their ratio, and for both maps the fraction of each
point's 10 nearest neighbours in the input that stay among its 10 nearest on the map (on a
sample of 2,000 points), so that the faster one is not faster by being worse.

Usage::

    .venv/bin/python benchmarks/bench_tsne.py                 # N = 100,000
    .venv/bin/python benchmarks/bench_tsne.py --n 10000       # a quick check

Say what else ran on the machine when you quote its times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from morphospace.analysis.reducers import TSNEReducer  # noqa: E402


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (6, 64))
    x = centres[rng.integers(0, 6, n)] + rng.normal(0, 1, (n, 64))
    return x.astype(np.float32)


def knn_kept(x: np.ndarray, y: np.ndarray, k: int = 10, sample: int = 2000, seed: int = 0) -> float:
    """Mean fraction of a point's k input neighbours that are among its k map neighbours."""
    rows = np.random.default_rng(seed).choice(len(x), min(sample, len(x)), replace=False)
    a = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x[rows], return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(y).kneighbors(y[rows], return_distance=False)[:, 1:]
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(a, b)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    x = PCA(50, random_state=0).fit_transform(data(args.n))
    print(f"N = {args.n:,} x 50 (PCA of 64-d); {args.threads} threads", flush=True)
    t = time.perf_counter()
    ours = TSNEReducer(pca_dims=None, n_jobs=args.threads, random_state=0).fit_transform(x)
    t_ours = time.perf_counter() - t
    print(f"  openTSNE (TSNEReducer, FFT, approximate neighbours): {t_ours:8.1f} s", flush=True)
    t = time.perf_counter()
    theirs = TSNE(perplexity=30.0, max_iter=750, init="pca", method="barnes_hut", n_jobs=args.threads,
                  random_state=0).fit_transform(x)
    t_theirs = time.perf_counter() - t
    print(f"  scikit-learn TSNE (Barnes-Hut, exact neighbours):     {t_theirs:8.1f} s", flush=True)
    print(f"  ratio scikit-learn / openTSNE: {t_theirs / t_ours:.2f}")
    print(f"  10-NN kept: openTSNE {knn_kept(x, ours):.3f}, scikit-learn {knn_kept(x, theirs):.3f}")


if __name__ == "__main__":
    from _entry import run

    run(main)
