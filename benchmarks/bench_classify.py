"""Few-label classification on sdss-gz1: balanced accuracy against the number of labels, and the
active-learning curve against random choice.

Labels: ``morph3`` of the run's catalogue (Galaxy Zoo 1's ``gz1_name`` grouped as the ingest does:
elliptical / spiral (both windings) / edge_on; merger and dont_know have none and are left out).
Embeddings:

(a) ``form``: the default run's form-first embedding (read from the run, nothing recomputed);
(b) ``imagenet``: frozen EfficientNet-Lite0 features (the packaged ImageNet weights, 112 px, as
    ``morphospace study --mode frozen`` computes them);
(c) ``finetuned``: EfficientNet-Lite0 fine-tuned on ``morph3`` as the study does, but on one
    half of the sample only (split A, stratified, seeded); its features are then scored on the
    *other* half (split B), whose labels the fine-tuning never saw. Fine-tuning on all labels
    would leak the test labels into the features.

Table 1 (full sample): (a) and (b); for n labels per class, ``--draws`` random stratified draws
of n per class; the :class:`~morphospace.analysis.classify.FewLabelClassifier` is trained on
them and scored on every other labelled galaxy (balanced accuracy, mean +- sd over the draws).
Table 2 (split B only): (a), (b) and (c) under the same protocol inside split B, so the three
are compared on the same galaxies (n is capped where a class of B has too few galaxies left).

Active learning (full sample, form embedding): a fixed 30% of the labelled galaxies is held out
for scoring; from ``--start`` labels per class, ``--rounds`` rounds each add ``--batch`` labels,
chosen by ``suggest`` (uncertainty + diversity) or at random from the pool; balanced accuracy
on the held-out galaxies per round, mean +- sd over ``--seeds`` seeds.

Features (b) and (c) are cached under ``--cache`` (default /tmp/morphospace_bench_classify),
keyed by the cube's size and modification time.

Usage::

    .venv/bin/python benchmarks/bench_classify.py /tmp/gz1time [--draws 5] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

SIZES = (10, 30, 100, 300)


def _threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def halves(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split A (fine-tuning) and split B (scoring) of the cube rows: 50/50, stratified by label
    (the unlabelled as a stratum of their own), seeded."""
    from sklearn.model_selection import train_test_split

    strata = np.array(["" if v is None else str(v) for v in y])
    a, b = train_test_split(np.arange(len(y)), test_size=0.5, stratify=strata, random_state=seed)
    return np.sort(a), np.sort(b)


def _cached(cache: Path, run, name: str, compute) -> np.ndarray:
    stat = run.cube.stat()
    path = cache / f"{name}_{stat.st_size}_{stat.st_mtime_ns}.npy"
    if path.is_file():
        return np.load(path)
    t = time.perf_counter()
    x = compute()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    print(f"[{name}: computed in {time.perf_counter() - t:.0f} s, cached in {path}]", flush=True)
    return x


def imagenet_features(run, cache: Path, threads: int) -> np.ndarray:
    """(b) frozen EfficientNet-Lite0 features of every cube row (the study's frozen mode)."""
    def compute():
        from morphospace.study.finetune import FineTuner

        ft = FineTuner("efficientnet-lite0", mode="frozen", num_threads=threads, verbose=False).fit(run.read_cube())
        return ft.transform(run.read_cube())

    return _cached(cache, run, "imagenet_112", compute)


def finetuned_features(run, cache: Path, y: np.ndarray, rows_a: np.ndarray, threads: int,
                       epochs: int) -> np.ndarray:
    """(c) EfficientNet-Lite0 fine-tuned on the labelled galaxies of split A only; features of every row."""
    def compute():
        from morphospace.nets.batches import RowView
        from morphospace.study.finetune import FineTuner

        cube = run.read_cube()
        train = rows_a[np.array([v is not None for v in y[rows_a]])]
        ft = FineTuner("efficientnet-lite0", epochs=epochs, num_threads=threads, random_state=0, verbose=True)
        ft.fit(RowView(cube, train), np.array([str(v) for v in y[train]], dtype=object))
        print(f"[fine-tuned on {len(train)} galaxies of split A: {len(ft.history_)} epochs, kept "
              f"{ft.best_epoch_}, validation balanced accuracy {ft.val_balanced_accuracy_:.3f}]", flush=True)
        return ft.transform(cube)

    return _cached(cache, run, f"finetuned_A_{epochs}ep", compute)


def fit_predict(x_train, y_train, x_test) -> np.ndarray:
    """Predicted classes of the test rows: the :class:`FewLabelClassifier`'s model (the probe fitted on
    the training labels). Its fit's cross-validation only scores and calibrates (temperature scaling
    keeps the argmax), so the predictions are the same without it, at a sixth of the cost."""
    from morphospace.analysis.classify import _fit

    return _fit(x_train, y_train).predict(x_test)


def draw(y: np.ndarray, rows: np.ndarray, n: int, rng) -> np.ndarray | None:
    """``n`` rows of each class among ``rows`` (labelled ones), or None if a class would keep fewer
    than 20 rows for scoring."""
    picks = []
    for c in np.unique(y[rows]):
        members = rows[y[rows] == c]
        if len(members) < n + 20:
            return None
        picks.append(rng.choice(members, n, replace=False))
    return np.concatenate(picks)


def accuracy_table(feats: dict, y: np.ndarray, rows: np.ndarray, sizes, draws: int) -> dict:
    """Balanced accuracy (mean, sd over draws) per embedding and labels per class, on the labelled
    ``rows`` left out of each draw."""
    from sklearn.metrics import balanced_accuracy_score

    rows = rows[y[rows] != None]  # noqa: E711
    out = {}
    for name, x in feats.items():
        for n in sizes:
            scores = []
            for d in range(draws):
                train = draw(y, rows, n, np.random.default_rng(1000 * n + d))
                if train is None:
                    break
                test = np.setdiff1d(rows, train)
                pred = fit_predict(x[train], y[train].astype(str), x[test])
                scores.append(balanced_accuracy_score(y[test].astype(str), pred))
            out[name, n] = (float(np.mean(scores)), float(np.std(scores)), len(scores)) if scores else None
            print(f"  [{name}, {n}/class: {'n/a' if not scores else f'{np.mean(scores):.3f}'}]", flush=True)
    return out


def print_table(title: str, table: dict, names, sizes) -> None:
    print(f"\n{title}\n")
    print("| embedding | " + " | ".join(f"{n} / class" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in names:
        cells = [("n/a (too few left)" if table.get((name, n)) is None
                  else f"{table[name, n][0]:.3f} ± {table[name, n][1]:.3f}") for n in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")


def active_learning(x: np.ndarray, y: np.ndarray, seeds: int, start: int, batch: int, rounds: int) -> dict:
    """Balanced accuracy per round on a fixed held-out 30%, labels chosen by ``suggest`` or at random."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split

    from morphospace.analysis.classify import FewLabelClassifier

    rows = np.flatnonzero(y != None)  # noqa: E711
    ys = y.astype(str)
    curves = {"suggest": [], "random": []}
    for seed in range(seeds):
        pool, test = train_test_split(rows, test_size=0.3, stratify=ys[rows], random_state=seed)
        rng = np.random.default_rng(seed)
        first = np.concatenate([rng.choice(pool[ys[pool] == c], start, replace=False) for c in np.unique(ys[pool])])
        for how in curves:
            rng = np.random.default_rng(seed + 1)
            known = set(first.tolist())
            curve = []
            for r in range(rounds + 1):
                train = np.array(sorted(known))
                if how == "suggest":
                    lab = np.full(len(pool), None, dtype=object)
                    index = {g: i for i, g in enumerate(pool)}
                    lab[[index[g] for g in train]] = ys[train]
                    clf = FewLabelClassifier(cv=2, random_state=seed).fit(x[pool], lab)
                    pred = clf.predict(x[test])
                    new = pool[clf.suggest(batch)] if r < rounds else []
                else:
                    pred = fit_predict(x[train], ys[train], x[test])
                    left = np.setdiff1d(pool, train)
                    new = rng.choice(left, batch, replace=False) if r < rounds else []
                curve.append(balanced_accuracy_score(ys[test], pred))
                assert not known & set(np.asarray(new).tolist())
                known |= set(np.asarray(new).tolist())
            curves[how].append(curve)
        print(f"  [seed {seed}: suggest {np.round(curves['suggest'][-1], 3).tolist()}, "
              f"random {np.round(curves['random'][-1], 3).tolist()}]", flush=True)
    return {k: np.array(v) for k, v in curves.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--labels", default="morph3")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/morphospace_bench_classify"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs of (c)")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--start", type=int, default=2, help="active learning: labels per class to start from")
    ap.add_argument("--batch", type=int, default=10, help="active learning: labels added per round")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--features-only", action="store_true", help="compute and cache (b) and (c), then stop")
    ap.add_argument("--skip-tables", action="store_true", help="only the active-learning curve")
    args = ap.parse_args()
    _threads(args.threads)

    from morphospace.analysis.labels import labels_in_cube_order
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir

    set_quiet(True)
    run = RunDir(args.run)
    y = labels_in_cube_order(run, args.labels)
    rows_a, rows_b = halves(y)
    feats = {"form": np.asarray(run.read_embedding("form"), dtype=np.float64)}
    feats["imagenet"] = imagenet_features(run, args.cache, args.threads)
    feats["finetuned"] = finetuned_features(run, args.cache, y, rows_a, args.threads, args.epochs)
    if args.features_only:
        return
    labelled = np.flatnonzero(y != None)  # noqa: E711
    counts = {str(k): int(v) for k, v in zip(*np.unique(y[labelled].astype(str), return_counts=True))}
    print(f"sdss-gz1 run {args.run}: {len(y)} galaxies, {len(labelled)} with {args.labels} {counts}; "
          f"split A {len(rows_a)} / split B {len(rows_b)}", flush=True)
    t = time.perf_counter()
    full, half = {}, {}
    if not args.skip_tables:
        full = accuracy_table({k: feats[k] for k in ("form", "imagenet")}, y, np.arange(len(y)), SIZES, args.draws)
        half = accuracy_table(feats, y, rows_b, SIZES, args.draws)
        print_table(f"Balanced accuracy, all galaxies (train n per class, score on every other labelled galaxy; "
                    f"{args.draws} draws, mean ± sd)", full, ("form", "imagenet"), SIZES)
        print_table(f"Balanced accuracy inside split B (fine-tuning of 'finetuned' saw split A's labels only; "
                    f"{args.draws} draws)", half, ("form", "imagenet", "finetuned"), SIZES)
        print(f"[{time.perf_counter() - t:.0f} s]", flush=True)
    t = time.perf_counter()
    curves = active_learning(feats["form"], y, args.seeds, args.start, args.batch, args.rounds)
    print(f"\nActive learning on 'form' (start {args.start} per class, +{args.batch} per round, held-out 30%; "
          f"{args.seeds} seeds, mean ± sd)\n")
    print("| labels | suggest | random |\n|---|---|---|")
    k0 = args.start * len(counts)
    for r in range(args.rounds + 1):
        s_, r_ = curves["suggest"][:, r], curves["random"][:, r]
        print(f"| {k0 + r * args.batch} | {s_.mean():.3f} ± {s_.std():.3f} | {r_.mean():.3f} ± {r_.std():.3f} |")
    print(f"[{time.perf_counter() - t:.0f} s]", flush=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / ("active.json" if args.skip_tables else "results.json")).write_text(json.dumps({
        "full": {f"{k[0]}/{k[1]}": v for k, v in full.items()}, "half": {f"{k[0]}/{k[1]}": v for k, v in half.items()},
        "active": {k: v.tolist() for k, v in curves.items()}}, indent=1))


if __name__ == "__main__":
    from _entry import run

    run(main)
