"""Neighbour masking with and without a merger's partner kept: what the form embedding gains and loses.

Neighbour masking replaces every source but the central galaxy; deblending splits a merger's
partner (or a tidal tail) off the galaxy, so the rule before masked it too. The rule now
(``MaskParams.keep_companions``, 0.25: a major merger's 1:4) keeps a source that touches the
galaxy's segment and holds at least that fraction of its light. For each rule the survey's cube
is masked, the frozen Lite0 trunk's view bank built (as ``morphospace train`` builds it) and the
SSL head trained for each head seed; its embedding (8 dihedral views averaged) is scored:

- K-Means(k) AMI against the classes (sdss-gz1: elliptical / spiral / edge-on, k = 3; the
  synthetic survey: its 6 true morphologies), the 10% linear probe and the label-free UMAP
  silhouette (``bench_form_pooling.score``);
- mergers (sdss-gz1: the 67 GZ1 mergers; synthetic: the ``irregular`` class, whose clumps
  and partners the rule also concerns): the share of each one's 5 nearest galaxies that are
  mergers too, and a merger-against-rest probe (balanced accuracy, class-weighted logistic
  regression, 5-fold cross-validation);
- the neighbour nuisance: AMI of K-Means(8) on the embedding with the quadrant of the brightest
  companion (measured on the raw cube, as the nuisance audit measures it).

Labels only score; the rule's fraction was fixed beforehand (1:4, a major merger).

Usage::

    .venv/bin/python benchmarks/bench_mask_companions.py --work W --survey gz1 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_mask_companions.py --work W --survey synth --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_form_head import head_embedding  # noqa: E402 - the same head as the sweeps
from bench_form_pooling import SURVEYS, score, survey_run  # noqa: E402 - the same surveys and scores

MERGERS = {"gz1": ("gz1_name", "merger"), "synth": ("morphology", "irregular")}


def bank_for(run, work: Path, keep: float) -> np.ndarray:
    """The view bank of the run's cube masked with ``keep_companions = keep``, cached in ``work``."""
    from morphospace.image.masking import MaskParams, masked_cube
    from morphospace.ssl.augment import NuisanceAugment
    from morphospace.ssl.bank import view_bank
    from morphospace.ssl.embedder import build_trunk

    path = work / f"bank_keep{keep:g}.npy"
    if not path.is_file():
        t0 = time.perf_counter()
        cube = masked_cube(run, MaskParams(keep_companions=keep), workers=2)
        table = __import__("pandas").read_parquet(run.path / "cube_masked.parquet")
        print(f"  keep {keep:g}: sources masked in {int((table['n_masked'] > 0).sum())} of {len(table)} frames, "
              f"{100 * table['masked_fraction'].mean():.2f}% of the pixels", file=sys.stderr, flush=True)
        b = view_bank(build_trunk("efficientnet-lite0", 112, precision="auto"), cube, 4, 0, NuisanceAugment())
        np.save(path, b)
        print(f"  {path.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return np.load(path)


def merger_scores(x: np.ndarray, merger: np.ndarray, known: np.ndarray) -> dict:
    """5-NN merger share among mergers, and a merger-against-rest probe (5-fold balanced accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(x)
    _, idx = NearestNeighbors(n_neighbors=6).fit(z).kneighbors(z[merger])
    share = float(merger[idx[:, 1:]].mean())
    y = merger[known].astype(int)
    pred = cross_val_predict(LogisticRegression(class_weight="balanced", max_iter=2000), z[known], y,
                             cv=StratifiedKFold(5, shuffle=True, random_state=0))
    return {"merger_5nn_share": share, "merger_base_rate": float(y.mean()),
            "merger_probe": float(balanced_accuracy_score(y, pred))}


def companion_ami(x: np.ndarray, quadrant: np.ndarray, seed: int) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score
    from sklearn.preprocessing import StandardScaler

    labels = KMeans(8, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(x))
    return float(adjusted_mutual_info_score(quadrant, labels))


def main() -> None:
    import torch

    from morphospace.analysis.nuisance import brightest_companion
    from morphospace.progress import set_quiet

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--survey", default="gz1", choices=sorted(SURVEYS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", type=float, nargs="+", default=[0.0, 0.25], help="keep_companions values to compare")
    args = ap.parse_args()
    torch.set_num_threads(2)
    set_quiet(True)
    column, k = SURVEYS[args.survey]
    work = args.work if args.survey == "gz1" else args.work / args.survey
    work.mkdir(parents=True, exist_ok=True)
    run = survey_run(args.work, args.survey)
    cat = run.cube_catalogue()
    truth = cat[column].astype("string").fillna("").to_numpy()
    mcol, mval = MERGERS[args.survey]
    names = cat[mcol].astype("string").fillna("").to_numpy()
    merger, known = names == mval, names != ""
    quad_path = work / "companion_quadrant.npy"
    if not quad_path.is_file():
        np.save(quad_path, brightest_companion(run.read_cube())["companion_quadrant"].to_numpy(dtype=str))
    quadrant = np.load(quad_path)
    rows = []
    for keep in args.keep:
        views = bank_for(run, work, keep)
        for seed in args.seeds:
            emb = head_embedding(views, seed)
            sc = score(emb, truth, k, [seed])
            row = {"keep_companions": keep, "seed": seed, "kmeans_ami": sc["ami"][0], "probe10": sc["probe10"],
                   "umap_silhouette": sc["umap_silhouette"], **merger_scores(emb, merger, known),
                   "companion_quadrant_ami": companion_ami(emb, quadrant, seed)}
            rows.append(row)
            print(json.dumps({key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()}), flush=True)
    for keep in args.keep:
        sel = [r for r in rows if r["keep_companions"] == keep]
        means = {key: f"{np.mean([r[key] for r in sel]):.3f} ± {np.std([r[key] for r in sel]):.3f}"
                 for key in ("kmeans_ami", "probe10", "umap_silhouette", "merger_5nn_share", "merger_probe",
                             "companion_quadrant_ami")}
        print(f"{args.survey} keep_companions={keep:g} ({len(sel)} head seeds): {means}", flush=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
