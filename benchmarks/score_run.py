"""Scores of a finished run against a label column and a known nuisance: what a framing change moves.

For a run of ``morphospace run`` on a survey with a label column (the synthetic survey's true
``morphology``, or any catalogue column) and, optionally, a nuisance known per galaxy by
construction (``benchmarks/make_zoomed_survey.py`` writes the zoom factor of each galaxy), it
prints and writes as JSON:

* the model's own clusters (``clusterings/vade.parquet``): K, AMI against the labels, AMI
  against the nuisance's quartiles, and their AMI with every nuisance of the run's own audit
  (``comparisons/nuisance_audit.csv``: position angle, companion quadrant, and on the synthetic
  survey the true angle, winding and companions);
* K-Means with K = the number of classes on the standardised form embedding
  (``embeddings/form.npy``), 3 seeds: AMI against the labels and against the nuisance;
* the linear probe on 10% of the labels (balanced accuracy, 5 draws);
* R^2 of log(nuisance) predicted from the embedding (ridge, 5-fold): how much of it the
  representation still carries.

The labels are read only here, to score; nothing in the run saw them.

Usage::

    .venv/bin/python benchmarks/score_run.py RUN --truth morphology --nuisance-csv Z_zoom.csv [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.metrics import adjusted_mutual_info_score as ami
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler


def audit_ami(run: Path, clustering: str = "vade") -> dict:
    """The run's own nuisance audit of one clustering (``comparisons/nuisance_audit.csv``:
    its AMI with each nuisance the compare stage measured or found in the catalogue)."""
    path = run / "comparisons" / "nuisance_audit.csv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path)
    table = table.set_index(table.columns[0])
    if clustering not in table.index:
        return {}
    return {str(k): round(float(v), 4) for k, v in table.loc[clustering].items() if pd.notna(v)}


def score(run: Path, truth_col: str, nuisance_csv: Path | None, seeds=(0, 1, 2)) -> dict:
    from bench_vade import kmeans3, probe10

    cat = pd.read_parquet(run / "catalogue.parquet")
    cat = cat[cat["cube_index"] >= 0].sort_values("cube_index")
    if truth_col not in cat:
        raise SystemExit(f"no column {truth_col!r} in {run}/catalogue.parquet")
    emb = np.load(run / "embeddings" / "form.npy")[cat["cube_index"].to_numpy()]
    own = pd.read_parquet(run / "clusterings" / "vade.parquet").set_index("id").loc[cat["id"], "label"].to_numpy()
    truth = cat[truth_col].astype(str).to_numpy()
    keep = cat[truth_col].notna().to_numpy()
    k = len(np.unique(truth[keep]))
    out: dict = {"run": str(run), "n": int(len(cat)), "classes": k,
                 "own": {"K": int(len(np.unique(own))), "ami": float(ami(truth[keep], own[keep]))}}
    out["own"]["audit"] = audit_ami(run)
    x = StandardScaler().fit_transform(emb)
    km = [kmeans3(emb, s, k) for s in seeds]  # standardises as x is
    out["kmeans"] = {"ami": [float(ami(truth[keep], lab[keep])) for lab in km]}
    score = probe10(emb, truth, keep)
    out["probe10"] = None if np.isnan(score) else score  # null in the JSON: a survey too small for 10%
    if "crop" in cat:
        out["crop_median"] = float(np.nanmedian(cat["crop"]))
    if nuisance_csv is not None:
        z = pd.read_csv(nuisance_csv, dtype={0: str})
        z = z.set_index(z.columns[0])[z.columns[1]]
        z.index = z.index.astype(str)
        value = z.reindex(cat["id"].astype(str)).to_numpy(dtype=float)
        ok = np.isfinite(value)
        q = pd.qcut(value[ok], 4, labels=False)  # quartiles, as bench_vade bins a --nuisance-csv
        out["nuisance"] = {"own_ami": float(ami(q, own[ok])),
                           "kmeans_ami": [float(ami(q, lab[ok])) for lab in km],
                           "r2_log": float(np.mean(cross_val_score(RidgeCV(alphas=np.logspace(-2, 3, 12)), x[ok],
                                                                   np.log(value[ok]), cv=5, scoring="r2")))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--truth", default="morphology", help="the catalogue's label column")
    ap.add_argument("--nuisance-csv", type=Path, help="CSV: the galaxy id, then a known nuisance value")
    ap.add_argument("--json", type=Path, help="write the scores here too")
    args = ap.parse_args(argv)
    if not (args.run / "clusterings" / "vade.parquet").is_file():
        print(f"{args.run} is not a finished run (no clusterings/vade.parquet)", file=sys.stderr)
        return 2
    result = score(args.run, args.truth, args.nuisance_csv)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
