"""The approximate neighbour index: faiss's inverted file (today's) against pynndescent (before) and
the exact search, each in a process of its own as a run's stage would start it.

For each size, an embedding of that many rows of 64 numbers (50 Gaussian groups, as a run's form
embedding has groups) is indexed and every row's 10 nearest are searched, which is what the
explorer's rings, the anomaly score and UMAP's neighbour graph ask; recall@10 is measured on 2,000
rows against a brute-force search. pynndescent is timed as ``SimilarityIndex`` used it (graph
degree 30, one thread, ``prepare()`` then ``query``), its numba compilation included, as it is in
each process that first builds an index (loaded from numba's cache where one is warm: say which).
``--data gaussian`` draws every row from one 64-d Gaussian instead, the hardest case for an
approximate index (no groups: a row's nearest are barely nearer than the rest). The last column
says what the index chose as it was built: the cells a search visits and the recall it measured
on its own rows, or an exact search (``--probe-fraction 0.0179``: a fixed 1/56 of the cells, the
choice before the index measured itself).

Usage::

    .venv/bin/python benchmarks/bench_neighbour_index.py --sizes 20000 100000 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

METHODS = ("exact", "pynndescent", "ivf")


def embedding(n: int, seed: int = 0, groups: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, 64)) * (3 if groups else 0)
    return (centres[rng.integers(0, 50, n)] + rng.normal(size=(n, 64))).astype(np.float32)


def one(method: str, n: int, data: str, probe_fraction: float | None = None) -> dict:
    """Index ``n`` rows and search every row's 10 nearest by ``method``; in this process."""
    import morphospace  # noqa: F401 - routes numba's cache as a run does
    from morphospace.analysis.neighbour_index import SimilarityIndex

    X = embedding(n, groups=data == "groups")
    t0 = time.perf_counter()
    if method == "pynndescent":
        from pynndescent import NNDescent

        index = NNDescent(X, n_neighbors=30, random_state=0, n_jobs=1)
        index.prepare()
        built = time.perf_counter()
        idx, _ = index.query(X, k=11)
    else:
        index = SimilarityIndex(exact_below=n + 1 if method == "exact" else 0, probe_fraction=probe_fraction).fit(X)
        built = time.perf_counter()
        _, idx = index.kneighbors(X, k=11)
    done = time.perf_counter()
    chosen = ("" if method == "pynndescent" else "exact" if index.exact_ else
              f"{index.n_probes_} of {index.index_.nlist} cells, estimated {index.recall_:.3f}")
    import faiss

    queries = np.random.default_rng(1).choice(n, 2000, replace=False)
    flat = faiss.IndexFlatL2(X.shape[1])
    flat.add(X)
    _, true = flat.search(X[queries], 11)
    recall = np.mean([len(set(a) & set(b)) / 11 for a, b in zip(idx[queries], true)])
    return {"method": method, "n": n, "build_s": built - t0, "search_s": done - built,
            "total_s": done - t0, "recall@10": float(recall), "chosen": chosen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[20000, 100000, 200000])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    ap.add_argument("--data", choices=("groups", "gaussian"), default="groups")
    ap.add_argument("--probe-fraction", type=float, default=None,
                    help="the inverted file visits this fraction of its cells (default: the fewest for recall 0.95)")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.data, args.probe_fraction)))
        return
    print("| rows | method | build (s) | every row's 10 nearest (s) | total (s) | recall@10 | the index chose |\n"
          "|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for method in args.methods:
            fraction = [] if args.probe_fraction is None else ["--probe-fraction", str(args.probe_fraction)]
            out = subprocess.run([sys.executable, __file__, "--one", method, str(n), "--data", args.data, *fraction],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {n:,} | {method} | {r['build_s']:.1f} | {r['search_s']:.1f} | {r['total_s']:.1f} | "
                  f"{r['recall@10']:.3f} | {r['chosen']} |", flush=True)


if __name__ == "__main__":
    main()
