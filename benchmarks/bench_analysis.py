"""Benchmark of the analysis layer (reduce -> cluster -> compare).

(a) openTSNE against scikit-learn's t-SNE on the same 10,000 x 50 Gaussian-mixture
    input, in the same process, with the same perplexity, iterations and threads.
(b) The analysis stages of the CNN feature study on 20,000 x 1,280 synthetic
    "features" (a Gaussian mixture in 20-d pushed through a random ReLU layer, like
    pooled CNN activations): PCA, t-SNE, UMAP and LDA maps; K-Means (k = 3..8),
    DBSCAN, HDBSCAN and GMM on every map, plus K-Means and GMM on the features
    themselves; then every clustering against every other and the labels.

Usage::

    .venv/bin/python benchmarks/bench_analysis.py              # both parts, n_jobs = 2
    .venv/bin/python benchmarks/bench_analysis.py --quick      # tiny sizes, a smoke test
    .venv/bin/python benchmarks/bench_analysis.py --part a --n-jobs 4

Timings depend on the machine and its load; the script prints them and the
settings, and writes nothing outside a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _threads(n: int) -> None:
    # BLAS / OpenMP pools sized before numpy loads, so every stage uses the same budget
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def mixture(n: int, d: int, k: int = 6, latent: int = 20, seed: int = 0, relu: bool = False):
    """n rows of a k-component Gaussian mixture, embedded in d dimensions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, latent))
    y = rng.integers(0, k, n)
    z = centres[y] + rng.normal(size=(n, latent)) * rng.uniform(0.6, 1.4, size=(k, 1))[y]
    W = rng.normal(size=(latent, d)) / np.sqrt(latent)
    X = z @ W + 0.3 * rng.normal(size=(n, d))
    if relu:
        X = np.maximum(X, 0.0)
    return X.astype(np.float32), y


def part_a(n: int, d: int, n_jobs: int, n_iter: int, early: int) -> None:
    import numpy as np
    import openTSNE
    from sklearn.manifold import TSNE

    X, _ = mixture(n, d, seed=1)
    print(f"\n(a) t-SNE of {n} x {d} (6-component mixture): perplexity 30, {early} early-exaggeration "
          f"+ {n_iter} iterations, PCA init, {n_jobs} threads")
    t0 = time.perf_counter()
    Z1 = openTSNE.TSNE(perplexity=30, n_iter=n_iter, early_exaggeration_iter=early, n_jobs=n_jobs,
                       random_state=0, verbose=False).fit(X)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    Z2 = TSNE(perplexity=30, max_iter=early + n_iter, init="pca", learning_rate="auto", n_jobs=n_jobs,
              random_state=0).fit_transform(X)
    t_sk = time.perf_counter() - t0
    print(f"    openTSNE {openTSNE.__version__:>8}: {t_open:8.1f} s   map {np.asarray(Z1).shape}")
    import sklearn

    print(f"    sklearn  {sklearn.__version__:>8}: {t_sk:8.1f} s   map {Z2.shape}")
    print(f"    sklearn / openTSNE = {t_sk / t_open:.2f}x")


def part_b(n: int, d: int, n_jobs: int) -> None:
    import numpy as np
    import pandas as pd

    from morphospace.analysis.cluster import cluster_run
    from morphospace.analysis.compare import compare_run
    from morphospace.analysis.reduce import reduce_run
    from morphospace.config import Config
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir, write_npy, write_table

    set_quiet(True)
    X, y = mixture(n, d, seed=2, relu=True)
    names = np.array(["elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "irregular"])
    labels = names[y].astype(object)
    labels[np.random.default_rng(3).random(n) < 0.1] = None  # 10% unlabelled, as in real catalogues
    print(f"\n(b) analysis of {n} x {d} features (6-component mixture through a ReLU layer), n_jobs {n_jobs}")
    cfg = Config()
    cfg.cluster.n_jobs = n_jobs
    cfg.cluster.methods = ["kmeans", "dbscan", "hdbscan", "gmm"]
    times: list[tuple[str, float]] = []

    def timed(label, fn, *args, **kw):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        times.append((label, time.perf_counter() - t0))
        print(f"    {label:<46} {times[-1][1]:8.1f} s", flush=True)
        return out

    with tempfile.TemporaryDirectory(prefix="bench_analysis_") as tmp:
        run = RunDir(Path(tmp) / "run", create=True)
        cat = pd.DataFrame({"id": [f"g{i:06d}" for i in range(n)], "source": "bench",
                            "morphology": pd.array(labels, dtype="string"), "cube_index": np.arange(n)})
        write_table(run.catalogue, cat)
        write_npy(run.embedding_path("features"), X)
        for red in ("pca", "tsne", "umap", "lda"):
            timed(f"reduce: {red}", reduce_run, run, cfg, embedding="features", reductions=[red])
        for rep in ("pca", "tsne", "umap", "lda"):
            for method in ("kmeans", "dbscan", "hdbscan", "gmm"):
                what = "K-Means k=3..8" if method == "kmeans" else ("GMM k=3..8 (BIC)" if method == "gmm" else method)
                timed(f"cluster {rep}: {what}", cluster_run, run, cfg, representations=[rep], methods=[method])
        timed(f"cluster features ({d}-d): K-Means k=3..8", cluster_run, run, cfg, representations=["features"],
              methods=["kmeans"])
        timed(f"cluster features ({d}-d): GMM diag k=3..8", cluster_run, run, cfg, representations=["features"],
              methods=["gmm"])
        n_clusterings = len(run.clusterings())
        timed(f"compare: {n_clusterings} clusterings + labels", compare_run, run, cfg)
        ari = pd.read_csv(run.path / "comparisons" / "ari.csv").set_index("name")
        print("    ARI with the truth (morphology):")
        for name in ari.index:
            if name != "morphology":
                print(f"      {name:<22} {ari.loc[name, 'morphology']:6.3f}")
    stage = {"reduce": 0.0, "cluster": 0.0, "compare": 0.0}
    for label, t in times:
        stage[label.split(":")[0].split(" ")[0]] += t
    print("    totals: " + ", ".join(f"{k} {v:.1f} s" for k, v in stage.items()) + f", all {sum(stage.values()):.1f} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["a", "b", "all"], default="all")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = p.parse_args(argv)
    _threads(args.n_jobs)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs visible, n_jobs {args.n_jobs}")
    if args.part in ("a", "all"):
        if args.quick:
            part_a(1000, 50, args.n_jobs, n_iter=200, early=50)
        else:
            part_a(10_000, 50, args.n_jobs, n_iter=500, early=250)
    if args.part in ("b", "all"):
        part_b(*((1500, 64) if args.quick else (20_000, 1280)), args.n_jobs)


if __name__ == "__main__":
    from _entry import run

    run(main)
