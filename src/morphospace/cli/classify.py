"""``morphospace classify RUN --labels FILE.csv [--labels FILE.csv ...] --column NAME``: every galaxy classified from a few labels."""

from __future__ import annotations

from ..errors import UserError
from .options import common, printable, seed, stage

NAME = "classify"


def add_parser(sub) -> None:
    """Add the ``classify`` sub-command to ``sub``."""
    p = stage(sub, NAME, "classify every galaxy from a few labels (logistic regression on an embedding), "
                         "and suggest which galaxies to label next",
              "morphospace classify runs/gz1 --labels my_labels.csv --column morph --suggest 20")
    p.add_argument("--labels", metavar="FILE.csv", action="append", default=None,
                   help="CSV with an id column and a label column; give --labels again for more files, read as "
                        "one (e.g. your labels and a suggestions file filled in); leave out, with --suggest, to "
                        "get first galaxies to label")
    p.add_argument("--column", required=True, help="the label column of the CSV; also names the classification")
    p.add_argument("--id-column", default="id", help="the id column of the CSV, matched to the catalogue's id (default id)")
    p.add_argument("--embedding", default=None, help="which embedding (default: the run's primary one)")
    p.add_argument("--suggest", type=int, default=0, metavar="N",
                   help="also list the N unlabelled galaxies whose labels would help most (default 0)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the folds and the suggestions (default 0)")
    common(p, config=False)


def run(args, run) -> int:
    """Print the cross-validated balanced accuracy, the confusion matrix, the suggestions and the files written."""
    from ..analysis.classes import classify_run
    from ..pipeline import primary_embedding

    if args.suggest < 0:
        raise UserError(f"--suggest must be 0 or more, got {args.suggest}")
    if args.labels is None and args.suggest < 1:
        raise UserError("give --labels FILE.csv, or --suggest N for the first galaxies to label")
    embedding = args.embedding or primary_embedding(run, None)
    out = classify_run(run, args.labels, args.column, embedding, id_column=args.id_column,
                       n_suggest=args.suggest, random_state=args.seed)
    m = out["metrics"]
    if m is not None:
        cv = m["cv"]
        print(printable(out["summary"]))  # labels, classes, balanced accuracy, folds: once (the log's line too)
        names = [printable(c["name"]) for c in m["classes"]]
        width = max(len(n) for n in names + ["true \\ predicted"])
        print("confusion matrix (rows: true, columns: predicted):")
        print(" " * width + "  " + "  ".join(f"{n:>{max(len(n), 5)}}" for n in names))
        for n, row in zip(names, cv["confusion_matrix"]):
            print(f"{n:>{width}}  " + "  ".join(f"{v:>{max(len(c), 5)}d}" for v, c in zip(row, names)))
        cal = m["calibration"]
        if cal.get("after") and cal.get("temperature", 1.0) != 1.0:
            print(f"calibration (held-out folds): temperature {cal['temperature']:.2f}, Brier {cal['before']['brier']:.3f}"
                  f" -> {cal['after']['brier']:.3f}, ECE {cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}")
        elif cal.get("after"):  # tried, and not used
            print(f"calibration: none, temperature scaling did not lower the log loss of held-out folds (Brier "
                  f"{cal['before']['brier']:.3f}, ECE {cal['before']['ece']:.3f}; scaled: {cal['after']['brier']:.3f}, "
                  f"{cal['after']['ece']:.3f})")
    else:
        shown = 0 if out["suggestions"] is None else len(out["suggestions"])
        print(f"no labels yet: {shown} diverse galaxies to label first")
    if out["suggestions"] is not None:
        table = out["suggestions"].drop(columns=["why"]) if m is not None else out["suggestions"]
        print(table.to_string(index=False))
    for path in out["files"]:
        print(f"wrote {path}")
    return 0
