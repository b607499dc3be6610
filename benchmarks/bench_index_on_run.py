"""The approximate index on a run's own embeddings: the cells it chooses, its recall estimate, the truth.

Each embedding of RUN (``RUN/embeddings/*.npy``) is indexed with faiss's inverted file whatever
its size (``exact_below=0``), once with the fewest cells (a tiny ``probe_fraction``: 8) and once
as a run builds it (the fewest cells for recall 0.95), and every row's 10 nearest are checked
against scikit-learn's exact search. Usage::

    .venv/bin/python benchmarks/bench_index_on_run.py RUN
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from morphospace.analysis.neighbour_index import SimilarityIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    print("| embedding | rows x numbers | index | cells visited | estimated recall | measured recall |")
    print("|---|---|---|---|---|---|")
    for path in sorted((args.run / "embeddings").glob("*.npy")):
        X = np.load(path).astype(np.float32)
        true = NearestNeighbors().fit(X).kneighbors(X, 11)[1][:, 1:]
        for name, kw in (("fewest cells", {"probe_fraction": 1e-9}), ("as a run builds it", {})):
            index = SimilarityIndex(exact_below=0, **kw).fit(X)
            found = index.kneighbors(X, 11)[1][:, 1:]
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, true)])
            cells = "all (exact)" if index.exact_ else f"{index.n_probes_} of {index.index_.nlist}"
            print(f"| {path.stem} | {X.shape[0]:,} x {X.shape[1]} | {name} | {cells} | {index.recall_:.3f} | {recall:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
