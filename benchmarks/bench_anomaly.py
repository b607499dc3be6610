"""Anomaly scores against a truth they never saw: what lands in the top 2%?

Usage::

    .venv/bin/python benchmarks/bench_anomaly.py RUN [--top 0.02]

RUN: a run of the built-in synthetic survey (``make demo`` writes ``runs/demo``; its catalogue
has the truth columns ``morphology`` and ``n_companions``), or of sdss-gz1. Per score, among
its top 2% of galaxies: the fraction of *odd* galaxies (synthetic: irregular, i.e. mergers and
clumpy galaxies; sdss-gz1: Galaxy Zoo 1's mergers), what an anomaly score should find; the
fraction of *nuisance-only* frames (a regular galaxy with a companion in the frame; sdss-gz1: a
regular galaxy whose masked neighbours cover a top-10% share of the frame), what it should not
find for that alone; among the regular galaxies of the top, the fraction with the nuisance (a
score blind to it keeps the survey's fraction); and the mean fraction of the frame that the
neighbour masking replaced. The scores: the form anomaly score (k-NN distance on the form
embedding, the default, k = 5 and 20 too, and the isolation forest with three seeds), the
VaDE's (``vade_galaxies.parquet``: its anomaly score, the negative log-likelihood under the
mixture prior, and its reconstruction error), and two pixel peers (k-NN distance on the
pixel-PCA embedding; the reconstruction error of a 32-component PCA of the cube). Last, one
round of tags: the form score's top 2% tagged by the truth (odd: interesting, else boring),
and the odd fraction of the next 2% of untagged galaxies before and after the re-ranking.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from morphospace.analysis.anomaly import FormAnomaly
from morphospace.run import RunDir


def _truth(run: RunDir, cat: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """(odd, nuisance, what): the galaxies a score should find, the frames it should not find for that alone."""
    if {"morphology", "n_companions"} <= set(cat.columns):  # the synthetic survey's truth
        odd = (cat["morphology"].astype(str) == "irregular").to_numpy()
        nuisance = (pd.to_numeric(cat["n_companions"]).fillna(0) > 0).to_numpy()
        return odd, nuisance, "odd = irregular (mergers, clumpy); nuisance = one or more companions in the frame"
    if "gz1_name" in cat.columns:  # sdss-gz1: Galaxy Zoo 1's merger class; bright neighbours from the masking
        odd = (cat["gz1_name"].astype(str) == "merger").to_numpy()
        masked = _masked_fraction(run, cat)
        nuisance = masked >= np.quantile(masked, 0.9)
        return odd, nuisance, "odd = Galaxy Zoo 1 merger; nuisance = neighbours masked over the top 10% of frame area"
    raise SystemExit(f"{run.path}: no truth to score against (a synthetic-survey or sdss-gz1 run is needed)")


def _masked_fraction(run: RunDir, cat: pd.DataFrame) -> np.ndarray:
    """Fraction of each frame's pixels replaced by the neighbour masking (NaN without ``cube_masked.parquet``)."""
    path = run.path / "cube_masked.parquet"
    if not path.exists():
        return np.full(len(cat), np.nan)
    per = pd.read_parquet(path).drop_duplicates("id").set_index("id")
    return per["masked_fraction"].reindex(cat["id"]).to_numpy(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--top", type=float, default=0.02, help="the top fraction (default 0.02)")
    args = ap.parse_args()
    run = RunDir(args.run)
    cat = run.cube_catalogue()
    odd, nuisance, what = _truth(run, cat)
    masked = _masked_fraction(run, cat)
    n = len(cat)
    top_n = max(1, int(round(args.top * n)))
    print(f"{n} galaxies; top {args.top:.0%} = {top_n} galaxies; {what}")
    print("| score | odd in top | nuisance-only in top | regular of the top with the nuisance | mean masked fraction of the top |\n|---|---|---|---|---|")

    def row(name: str, score: np.ndarray) -> np.ndarray:
        top = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")[:top_n]
        reg = top[~odd[top]]
        with_nuisance = f"{nuisance[reg].mean():.3f}" if len(reg) else "-"
        print(f"| {name} | {odd[top].mean():.3f} | {(nuisance & ~odd)[top].mean():.3f} | {with_nuisance} | "
              f"{masked[top].mean():.3f} |", flush=True)
        return top

    print(f"| *base rate (all galaxies)* | {odd.mean():.3f} | {(nuisance & ~odd).mean():.3f} | "
          f"{nuisance[~odd].mean():.3f} | {masked.mean():.3f} |")
    form = np.asarray(run.read_embedding("form"), dtype=np.float64)
    t = time.perf_counter()
    scorer = FormAnomaly().fit(form)
    seconds = time.perf_counter() - t
    top_form = row("**form: k-NN distance, k = 10 (default)**", scorer.scores_)
    for k in (5, 20):
        row(f"form: k-NN distance, k = {k}", FormAnomaly(n_neighbors=k).fit(form).scores_)
    for seed in range(3):
        row(f"form: isolation forest, seed {seed}", FormAnomaly(method="isolation_forest", random_state=seed).fit(form).scores_)
    vade = run.path / "vade_galaxies.parquet"
    if vade.exists():
        per = pd.read_parquet(vade).set_index("id").reindex(cat["id"])
        if "anomaly" in per.columns:
            row("VaDE: anomaly score (negative log-likelihood; the report's until now)", per["anomaly"].to_numpy())
        if "recon_error" in per.columns:
            row("VaDE: reconstruction error of the image decoder", per["recon_error"].to_numpy())
    if "pixels_pca" in run.embeddings():
        row("pixels: k-NN distance on the pixel-PCA embedding", FormAnomaly().fit(run.read_embedding("pixels_pca")).scores_)
    cube = np.asarray(run.read_cube(), dtype=np.float32).reshape(n, -1)
    pca = PCA(32, random_state=0).fit(cube)
    row("pixels: reconstruction error of a 32-component PCA", ((cube - pca.inverse_transform(pca.transform(cube))) ** 2).mean(1))

    # one round of tags on the form score: the top judged by the truth, then the next top of the untagged
    interesting, boring = top_form[odd[top_form]], top_form[~odd[top_form]]
    untagged = np.setdiff1d(np.arange(n), top_form)
    before = untagged[np.argsort(-scorer.ranks_[untagged], kind="stable")[:top_n]]
    new = scorer.rerank(form, interesting, boring)
    after = untagged[np.argsort(-new[untagged], kind="stable")[:top_n]]
    print(f"\ntags: the form score's top {top_n} tagged by the truth ({len(interesting)} interesting, "
          f"{len(boring)} boring); the next {top_n} untagged galaxies are odd: "
          f"{odd[before].mean():.3f} before re-ranking, {odd[after].mean():.3f} after "
          f"(nuisance-only {(nuisance & ~odd)[before].mean():.3f} -> {(nuisance & ~odd)[after].mean():.3f})")
    print(f"form score (exact k-NN over {n} x {form.shape[1]}): {seconds:.2f} s")


if __name__ == "__main__":
    from _entry import run

    run(main)
