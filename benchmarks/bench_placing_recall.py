"""How much of a map's placing error comes from the approximate search: t-SNE of a large run.

Above ``cluster.map_sample`` galaxies t-SNE and UMAP are fitted on a sample and every other
galaxy is placed at the median map position of its 10 nearest sampled rows
(``analysis/reduce.py``), found through the inverted file. This script takes a run whose
``form_tsne`` was fitted on a sample (``bench_million.py --keep`` leaves one), rebuilds the
sample and the map's PCA, and for each number of cells a search visits reports

- recall: of 20,000 placed rows' true 10 nearest sampled rows, the share found;
- displacement: how far each placed row moves from where exact neighbours would put it;
- the placing's own error: sampled rows placed from their other neighbours, against where
  t-SNE put them (with exact neighbours this is the rule's error, not the search's);

distances in units of the map's local scale (the median distance from a sampled row to its
10th nearest in the map). Usage::

    .venv/bin/python benchmarks/bench_placing_recall.py /tmp/m1m/run1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from morphospace.analysis.neighbour_index import _inverted_file, _search
from morphospace.data.sample import sample_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--sample", type=int, default=100_000, help="cluster.map_sample of the run")
    ap.add_argument("--seed", type=int, default=0, help="cluster.seed of the run")
    ap.add_argument("--probes", type=int, nargs="*", default=[8, 12, 23, 48, 96, 192])
    args = ap.parse_args()
    X = np.load(f"{args.run}/embeddings/form.npy", mmap_mode="r")
    Z = np.load(f"{args.run}/reductions/form_tsne.npy")
    rows = sample_rows(len(X), args.sample, args.seed)
    pca = PCA(50, random_state=0).fit(X[rows])  # the map's own PCA (pca_dims 50)
    fitted = pca.transform(X[rows]).astype(np.float32)
    placed = np.setdiff1d(np.arange(len(X)), rows)
    placed = placed[np.linspace(0, len(placed) - 1, 20000).astype(int)]
    queries = pca.transform(X[placed]).astype(np.float32)
    P = Z[rows]
    scale = np.median(NearestNeighbors(n_neighbors=11).fit(P).kneighbors(P[::50])[0][:, 10])
    index = _inverted_file(fitted, check_random_state(0))
    _, true = _search(index, queries, 10, index.nlist)
    exact_place = np.median(P[true], axis=1)
    own = np.arange(0, len(rows), 5)
    print(f"{index.nlist} cells; local map scale {scale:.3f}")
    print("| cells visited | recall@10 | displacement, median / p95 | own error, median / p95 | 20,000 rows searched (s) |")
    print("|---|---|---|---|---|")
    for p in [*args.probes, index.nlist]:
        t = time.perf_counter()
        _, idx = _search(index, queries, 10, p)
        seconds = time.perf_counter() - t
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, true)])
        moved = np.linalg.norm(np.median(P[idx], axis=1) - exact_place, axis=1) / scale
        _, mine = _search(index, fitted[own], 11, p)
        err = np.linalg.norm(np.median(P[mine[:, 1:]], axis=1) - P[own], axis=1) / scale
        print(f"| {p} | {recall:.3f} | {np.median(moved):.1f} / {np.percentile(moved, 95):.1f} | "
              f"{np.median(err):.1f} / {np.percentile(err, 95):.1f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
