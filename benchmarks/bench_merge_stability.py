"""How stable the merged clusters are across seeds, at the entropy elbow and at a fixed number.

The model's own clusters are its mixture components merged by entropy down to the elbow of the
entropy path (``morphospace.vade.merge``), taken against the cumulated number of galaxies
merged (the default, ``elbow on observations``) or against the number of clusters (``elbow on
clusters``, the rule before it); both are printed. Given the model folders of several seeds trained on
the same cube (``bench_vade.py --seeds 0 1 2`` leaves them in ``OUT/default_s<seed>``, or whole
runs), this re-encodes each seed's galaxies, merges its components at the elbow and at each of
``--k`` clusters, and prints the ARI between every pair of seeds. No label is read: it says
whether the stopping rule or the partition is what varies between seeds.

Usage::

    .venv/bin/python benchmarks/bench_merge_stability.py OUT/default_s0 OUT/default_s1 OUT/default_s2 --k 3 4 5 6 8
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score


def component_probabilities(run_path: Path) -> np.ndarray:
    """q(component | galaxy) of the model in ``run_path``, for every cube row."""
    from bench_vade import encode_run

    from morphospace.run import RunDir

    return encode_run(RunDir(run_path))[0]["proba"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="model folders of one cube, one per seed")
    ap.add_argument("--k", type=int, nargs="*", default=[3, 4, 5, 6, 8], help="fixed numbers of clusters to try")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        print("give at least two seeds' folders", file=sys.stderr)
        return 2
    from morphospace.progress import set_quiet
    from morphospace.vade.merge import ComponentMerger

    set_quiet(True)
    probas = [component_probabilities(r) for r in args.runs]
    if len({len(p) for p in probas}) != 1:
        print("the folders hold different cubes", file=sys.stderr)
        return 2
    print("components per seed:", [p.shape[1] for p in probas])
    fewest = min(p.shape[1] for p in probas)
    if skipped := [k for k in args.k if k > fewest]:  # a merge cannot make more clusters than components
        print(f"K = {', '.join(map(str, skipped))} skipped: a seed has {fewest} components")
    rules = [("elbow on observations", {}), ("elbow on clusters", {"elbow_on": "clusters"}),
             *((f"K = {k}", {"n_clusters": k}) for k in args.k if k <= fewest)]
    for name, kwargs in rules:
        labels = [ComponentMerger(**kwargs).fit_predict(p) for p in probas]
        aris = [adjusted_rand_score(a, b) for a, b in itertools.combinations(labels, 2)]
        print(f"{name:>21}: clusters {[len(np.unique(x)) for x in labels]}, "
              f"seed ARI {', '.join(f'{a:.2f}' for a in aris)} (mean {np.mean(aris):.2f})")
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
