"""Where the own clusters' seed-to-seed variance comes from, and what an ensemble of heads takes away.

Given one trained form run of sdss-gz1 trained with ``train.keep_view_bank = true`` (its view
bank, ``models/vade/ssl/view_bank.npy``, is otherwise removed once the model is saved), this trains ``--heads`` SSL heads on that bank from seeds of their own
(the run's own settings, :func:`morphospace.ssl.training.fit_embedder`), then fits the linear
core and merges its components (the run's defaults) on:

- ``core``: the first head's embedding, the core's EM seeded 0..H-1: the variance of the core
  and the merge alone;
- ``single``: each head's embedding, its core seeded like the head: head and core;
- ``ensemble``: every 3 of the heads side by side (``form.heads = 3``), pairs of disjoint
  triples compared: what the ensemble leaves of head and core;
- with ``--k-max``, ``core`` and ``single`` again with the mixture's K chosen by BIC up to each
  value given (``model.k_max``; the BIC takes the top of the range on sdss-gz1);
- with ``--core-fits``, ``core`` and ``single`` again with the mixture the medoid of that many EM
  fits (``form.core_fits``; every other protocol uses 1, a single fit, unless ``--fits`` says).

For each: the mean (and least) ARI between pairs, and the mean AMI against the 3 classes (read
only to score; no choice is made here). The view bank is the same throughout, so the variance of
its nuisance draws is not in these figures (compare ``bench_vade.py --seeds``, which has it).

Usage::

    .venv/bin/python benchmarks/bench_vade.py --out OUT --variants default --seeds 0 --no-peers \
        --set train.keep_view_bank=true
    .venv/bin/python benchmarks/bench_seed_variance.py OUT/default_s0 --work W --heads 6
    .venv/bin/python benchmarks/bench_seed_variance.py OUT/default_s0 --work W --heads 6 --core-fits 4 8 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def own_clusters(x: np.ndarray, hp: dict, seed: int, elbow_on: str, fits: int = 1) -> np.ndarray:
    """The run's own clusters of embedding ``x``: the linear core fitted with ``seed`` (the medoid of
    ``fits`` EM fits, ``form.core_fits``), merged."""
    import torch

    from morphospace.vade.linear_core import core_clusters, fit_linear_core
    from morphospace.vade.merge import ComponentMerger

    x = ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)
    merger = ComponentMerger(elbow_on=elbow_on)
    core, _ = fit_linear_core(x, hp["latent_dim"], hp["k_min"], hp["k_max"], seed, n_components=hp["n_components"],
                              fits=fits, merger=merger)
    return core_clusters(core, torch.from_numpy(x), merger)


def agreement(labels: dict, truth: np.ndarray, keep: np.ndarray, comparable) -> dict:
    """Mean and least ARI over the comparable pairs of ``labels``, mean AMI against ``truth``."""
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    pairs = [adjusted_rand_score(labels[a], labels[b]) for a, b in itertools.combinations(labels, 2) if comparable(a, b)]
    return {"ari": float(np.mean(pairs)), "ari_min": float(np.min(pairs)), "pairs": len(pairs),
            "ami": float(np.mean([adjusted_mutual_info_score(truth[keep], v[keep]) for v in labels.values()])),
            "clusters": [int(len(np.unique(v))) for v in labels.values()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a trained form run (bench_vade.py leaves them in OUT/<variant>_s<seed>)")
    ap.add_argument("--work", type=Path, required=True, help="where the heads are trained (the bank is linked in)")
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--k-max", type=int, nargs="*", default=[],
                    help="also the core and single protocols with the mixture's K chosen by BIC up to each of these "
                         "(the run's model.k_max otherwise)")
    ap.add_argument("--core-fits", type=int, nargs="*", default=[],
                    help="also the core and single protocols with the mixture the medoid of this many EM fits")
    ap.add_argument("--fits", type=int, default=1, help="EM fits (form.core_fits) of every other protocol")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from morphospace.config import load_config
    from morphospace.image.masking import masked_cube
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir
    from morphospace.ssl.embedder import build_trunk
    from morphospace.ssl.training import fit_embedder
    from morphospace.vade.io import load_vade, model_dir

    set_quiet(True)
    torch.set_num_threads(args.threads)
    run = RunDir(args.run)
    hp = load_vade(model_dir(run) / "model.pt")[1]
    f = hp["form"]
    if f.get("train_trunk"):
        print("the run trained its trunk: no view bank to share", file=sys.stderr)
        return 1
    cfg = load_config(run.path / "config.toml") if (run.path / "config.toml").is_file() else load_config(None)
    truth = run.cube_catalogue()["morph3"].astype("string").fillna("").to_numpy()
    keep = truth != ""
    args.work.mkdir(parents=True, exist_ok=True)
    bank = args.work / "view_bank.npy"
    if not bank.exists():
        if not (model_dir(run) / "ssl" / "view_bank.npy").is_file():
            print(f"{run.path} kept no view bank: train it with --set train.keep_view_bank=true", file=sys.stderr)
            return 2
        os.link(model_dir(run) / "ssl" / "view_bank.npy", bank)
    cube = masked_cube(run, workers=cfg.ingest.workers)
    t0 = time.perf_counter()
    trunk = build_trunk(f["backbone"], f["input_size"], precision=f["precision"], weights=f.get("weights"),
                        sharpen=f.get("sharpen", 0.0))
    _, emb, _ = fit_embedder(trunk, cube, args.work, dim=f["dim"], aug_views=f["aug_views"], epochs=f["ssl_epochs"],
                             loss=f["loss"], temperature=f["temperature"], seed=hp["seed"], resume=True,
                             views=f["embed_views"], heads=args.heads)
    print(f"{args.heads} heads trained on the run's view bank in {time.perf_counter() - t0:.0f} s")
    heads = np.split(emb, args.heads, axis=1)
    core_hp = {**hp, "n_components": 0}
    elbow_on = cfg.model.merge_elbow_on
    results = {}
    settings = [(hp["k_max"], args.fits, "")] + [(k, args.fits, f" k_max={k}") for k in args.k_max] \
        + [(hp["k_max"], r, f" fits={r}") for r in args.core_fits]
    for k_max, fits, tag in settings:
        k_hp = {**core_hp, "k_max": k_max}
        results["core" + tag] = agreement({s: own_clusters(heads[0], k_hp, s, elbow_on, fits)
                                           for s in range(args.heads)}, truth, keep, lambda a, b: True)
        results["single" + tag] = agreement({s: own_clusters(h, k_hp, s, elbow_on, fits) for s, h in enumerate(heads)},
                                            truth, keep, lambda a, b: True)
    triples = {t: own_clusters(np.concatenate([heads[i] for i in t], 1), core_hp, t[0], elbow_on, args.fits)
               for t in itertools.combinations(range(args.heads), 3)}
    results["ensemble"] = agreement(triples, truth, keep, lambda a, b: not set(a) & set(b))
    for name, r in results.items():
        print(f"{name:16s} ARI between seeds {r['ari']:.3f} (least {r['ari_min']:.3f}, {r['pairs']} pairs), "
              f"AMI {r['ami']:.3f}, clusters {r['clusters']}")
    (args.work / "seed_variance.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
