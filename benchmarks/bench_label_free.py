"""Label-free criteria for choosing between trained form runs (a setting, a trunk) without labels.

For each group of runs given (``--runs NAME RUN RUN ...``, e.g. one setting's seeds from
``bench_vade.py``), prints the two criteria the README uses to choose a default:

- the **stability** of the own clusters: the mean (and least) ARI between the runs' merged
  clusters (each run's linear core refitted from its saved form embedding with the run's own
  settings, ``form.core_fits`` included: the clusters ``morphospace embed`` would give);
- the **silhouette in a 2-D UMAP** of the standardised form embedding (30 neighbours,
  ``min_dist`` 0, seed 0) of K-Means(``--k``) and of the own clusters (Lowe et al. 2024,
  arXiv 2406.02465: it tracks AMI across representations);

and, only to score afterwards, the AMI of both clusterings against ``--label`` (default
``morph3``, sdss-gz1's elliptical / spiral / edge-on) where the catalogue has it.

Usage::

    .venv/bin/python benchmarks/bench_vade.py --out OUT --variants default form_lite2 --seeds 0 1 2 --no-peers
    .venv/bin/python benchmarks/bench_label_free.py --runs lite0 OUT/default_s0 OUT/default_s1 OUT/default_s2 \\
        --runs lite2 OUT/form_lite2_s0 OUT/form_lite2_s1 OUT/form_lite2_s2
    .venv/bin/python benchmarks/bench_label_free.py --runs one-fit OUT/default_s0 ... --core-fits 1
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np


def run_scores(path: Path, k: int, label: str, core_fits: int = 0) -> dict:
    """Own clusters, K-Means(k), their UMAP silhouettes and (scores only) AMIs of one run."""
    import umap
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, silhouette_score
    from sklearn.preprocessing import StandardScaler

    from bench_seed_variance import own_clusters
    from morphospace.config import load_config
    from morphospace.run import RunDir
    from morphospace.vade.io import load_vade, model_dir

    run = RunDir(path)
    hp = load_vade(model_dir(run) / "model.pt")[1]
    cfg = load_config(run.path / "config.toml") if (run.path / "config.toml").is_file() else load_config(None)
    x = np.load(model_dir(run) / "form_embedding.npy")
    own = own_clusters(x, {**hp, "n_components": 0}, hp["seed"], cfg.model.merge_elbow_on,
                       core_fits or hp["form"].get("core_fits", 1))
    z = StandardScaler().fit_transform(x)
    km = KMeans(k, n_init=10, random_state=0).fit_predict(z)
    u = umap.UMAP(n_components=2, n_neighbors=30, min_dist=0.0, random_state=0).fit_transform(z)
    out = {"own": own, "silhouette_kmeans": float(silhouette_score(u, km)),
           "silhouette_own": float(silhouette_score(u, own)), "clusters": int(len(np.unique(own)))}
    cat = run.cube_catalogue()
    if label in cat:
        truth = cat[label].astype("string").fillna("").to_numpy()
        keep = truth != ""
        out["ami_kmeans"] = float(adjusted_mutual_info_score(truth[keep], km[keep]))
        out["ami_own"] = float(adjusted_mutual_info_score(truth[keep], own[keep]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                    help="a name, then the trained runs of that setting (repeat for each setting)")
    ap.add_argument("--k", type=int, default=3, help="K-Means clusters")
    ap.add_argument("--label", default="morph3", help="catalogue column to score against (never to choose)")
    ap.add_argument("--core-fits", type=int, default=0,
                    help="refit every run's core with this many EM fits (form.core_fits; 0: the run's own)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from sklearn.metrics import adjusted_rand_score

    from morphospace.progress import set_quiet

    set_quiet(True)
    torch.set_num_threads(args.threads)
    print("| setting | runs | own clusters: ARI between runs (least) | UMAP silhouette: K-Means | own clusters "
          "| clusters | scores only: AMI K-Means | AMI own |")
    print("|---|---|---|---|---|---|---|---|")
    for name, *paths in args.runs:
        if not paths:
            print(f"--runs {name}: no run given", file=sys.stderr)
            return 2
        scores = [run_scores(Path(p), args.k, args.label, args.core_fits) for p in paths]
        pairs = [adjusted_rand_score(a["own"], b["own"]) for a, b in itertools.combinations(scores, 2)]
        stab = f"{np.mean(pairs):.3f} ({np.min(pairs):.3f})" if pairs else "-"

        def mean(key: str) -> str:
            vals = [s[key] for s in scores if key in s]
            return f"{np.mean(vals):.3f}" if vals else "-"

        print(f"| {name} | {len(scores)} | {stab} | {mean('silhouette_kmeans')} | {mean('silhouette_own')} "
              f"| {[s['clusters'] for s in scores]} | {mean('ami_kmeans')} | {mean('ami_own')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _entry import run

    run(main)
