"""How well `classify`'s probabilities are calibrated with few labels: measured on the galaxies
whose labels the classifier never saw.

For n labels per class (``--sizes``) and ``--draws`` random stratified draws, a
:class:`~morphospace.analysis.classify.FewLabelClassifier` is fitted on the run's embedding with
those labels only, and every other labelled galaxy scores its probabilities: accuracy (balanced),
mean confidence (the top probability), the share above 0.99, the Brier score, the expected
calibration error (ECE, 10 bins) and the log loss; mean over the draws. Beside the calibrated
classifier, the same without calibration (``calibrate=False``), and the calibration the
classifier reports of itself (``calibration_``: its temperature, and its Brier / ECE on its own
labels' folds). A calibrated classifier's mean confidence is near its accuracy.

Labels: ``--label`` of the run's catalogue (default ``morph3``: sdss-gz1's elliptical / spiral /
edge_on).

Usage::

    .venv/bin/python benchmarks/bench_classify_calibration.py RUN [--embedding form] [--sizes 4 10 30 100] [--draws 5]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def held_out_scores(proba: np.ndarray, codes: np.ndarray) -> dict:
    """Balanced accuracy, confidence, Brier, ECE and log loss of ``proba`` for true ``codes``."""
    from sklearn.metrics import balanced_accuracy_score

    from morphospace.analysis.calibration import calibration_scores

    top = proba.max(axis=1)
    return {"bacc": balanced_accuracy_score(codes, proba.argmax(1)), "acc": float((proba.argmax(1) == codes).mean()),
            "conf": float(top.mean()), "over99": float((top > 0.99).mean()),
            **calibration_scores(proba, codes),
            "nll": float(-np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-12, None)).mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--embedding", default="form")
    ap.add_argument("--label", default="morph3")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 10, 30, 100])
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    from morphospace.analysis.classify import FewLabelClassifier
    from morphospace.run import RunDir

    from morphospace.errors import UserError

    run = RunDir(args.run)
    X = np.asarray(run.read_embedding(args.embedding), dtype=np.float64)
    catalogue = run.cube_catalogue()
    if args.label not in catalogue.columns:
        raise UserError(f"--label {args.label!r} is not a column of {args.run}'s catalogue")
    truth = catalogue[args.label].astype("string").fillna("").to_numpy()
    known = np.flatnonzero(truth != "")
    classes = np.unique(truth[known])
    if len(classes) < 2:
        raise UserError(f"--label {args.label!r} holds {len(classes)} class(es): two at least")
    smallest = min(int((truth[known] == c).sum()) for c in classes)
    if max(args.sizes) >= smallest:  # n drawn from a class of fewer: numpy's error, a traceback
        raise UserError(f"--sizes must stay below the smallest class's {smallest} labelled galaxies (the rest are "
                        "scored)")
    print(f"{args.run}: {args.embedding} {X.shape}, {len(known)} labelled ({', '.join(classes)})")
    print("| labels a class | classifier | temperature | balanced acc. | accuracy | mean confidence | share > 0.99 "
          "| Brier | ECE | log loss | its own report: Brier, ECE before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        rows = {"calibrated": [], "uncalibrated": []}
        temps, own = [], []
        for draw in range(args.draws):
            rng = np.random.default_rng(1000 * n + draw)
            chosen = np.concatenate([rng.choice(known[truth[known] == c], n, replace=False) for c in classes])
            y = np.full(len(X), None, dtype=object)
            y[chosen] = truth[chosen]
            rest = np.setdiff1d(known, chosen)
            codes = np.searchsorted(classes, truth[rest])
            for name, calibrate in (("calibrated", True), ("uncalibrated", False)):
                clf = FewLabelClassifier(calibrate=calibrate, random_state=draw).fit(X, y)
                rows[name].append(held_out_scores(clf.predict_proba(X[rest]), codes))
                if calibrate:
                    temps.append(clf.temperature_)
                    cal = clf.calibration_
                    own.append([cal["before"]["brier"], cal["before"]["ece"], cal["after"]["brier"], cal["after"]["ece"]])
        o = np.mean(own, axis=0)
        for name, got in rows.items():
            m = {k: np.mean([g[k] for g in got]) for k in got[0]}
            t = f"{np.mean(temps):.2f} ({min(temps):.2f}-{max(temps):.2f})" if name == "calibrated" else "1"
            mine = f"{o[0]:.3f}, {o[1]:.3f} -> {o[2]:.3f}, {o[3]:.3f}" if name == "calibrated" else ""
            print(f"| {n} | {name} | {t} | {m['bacc']:.3f} | {m['acc']:.3f} | {m['conf']:.3f} | {m['over99']:.2f} "
                  f"| {m['brier']:.3f} | {m['ece']:.3f} | {m['nll']:.3f} | {mine} |", flush=True)
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
