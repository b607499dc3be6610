"""Benchmark of the CNN side of the feature study on the SDSS Galaxy Zoo 1 sample.

Three classes, as in the sdss-gz1 README: elliptical (gz1 class 0) / spiral (1 + 2) /
edge-on (3), the catalogue column ``morph3``; dont_know (4) and merger (5) have no
``morph3`` and are left out of training and scoring (they still get features).

1. ingest ``--data`` with the project's ingest (64 x 64 rgb cube, the default preset);
2. fine-tune ``--backbone`` (efficientnet-lite0) on ``morph3`` with
   :func:`morphospace.study.features.study_features_run`: validation accuracy, balanced
   accuracy, per-class precision / recall, confusion matrix, wall and CPU time;
3. the same backbone frozen (ImageNet features, no training, no labels);
4. for both feature sets: K-Means (k = 3) on the study's 2-D PCA map (the ``kmeans3_pca``
   clustering of ``morphospace study``) and on a 50-component PCA, scored against the
   three classes by adjusted mutual information (AMI) on the labelled galaxies.

Optionally (``--probe-sizes 64,112,160,224``) a sweep of the input side with frozen
features: forward time per image and a 5-fold logistic-regression probe on 1,000
labelled galaxies.

Usage::

    .venv/bin/python benchmarks/bench_study.py                   # 2 threads, 5 epochs
    .venv/bin/python benchmarks/bench_study.py --input-size 64 --epochs 3
    .venv/bin/python benchmarks/bench_study.py --probe-sizes 64,112,160,224 --skip-finetune

Timings depend on the machine and its load; the 1-minute load average is printed
beside them, and CPU seconds are given as well as wall seconds. Everything is written
under ``--out`` (default: a folder in the system temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-gz1"


def _threads(n: int) -> None:
    # BLAS / OpenMP pools sized before numpy and torch load
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def cluster_scores(features, truth, labelled, seed: int = 0) -> dict:
    """AMI of K-Means (k = 3) on the 2-D PCA map and on 50 PCA components (fewer on a small sample)."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    from morphospace.analysis.reduce import PCAReducer

    out = {}
    for name, reduced in (("pca2", PCAReducer(n_components=2, random_state=seed).fit_transform(features)),
                          ("pca50", PCA(n_components=min(50, *features.shape),
                                        random_state=seed).fit_transform(features))):
        labels = KMeans(3, n_init=10, random_state=seed).fit_predict(np.asarray(reduced, dtype=np.float64))
        out[name] = {"ami": float(adjusted_mutual_info_score(truth[labelled], labels[labelled])),
                     "ari": float(adjusted_rand_score(truth[labelled], labels[labelled]))}
    return out


def probe_sizes(run, sizes: list[int], backbone: str, n: int, seed: int) -> list[dict]:
    """Frozen features at several input sides: forward time and a linear-probe accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from morphospace.nets.backbones import make_backbone
    from morphospace.nets.batches import extract_features

    cube = run.read_cube()
    cat = run.cube_catalogue()
    ok = np.flatnonzero(~cat["morph3"].isna().to_numpy())
    rows = np.sort(np.random.default_rng(seed).choice(ok, min(n, len(ok)), replace=False))
    X = np.asarray(cube[rows])
    y = cat["morph3"].to_numpy(dtype=object)[rows].astype(str)
    results = []
    for size in sizes:
        net, _, _ = make_backbone(backbone, input_size=size)
        t, c = time.perf_counter(), time.process_time()
        feats = extract_features(net, X, batch_size=64)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000, class_weight="balanced"))
        cv = cross_validate(clf, feats, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                            scoring=("accuracy", "balanced_accuracy"))
        r = {"size": size, "ms_per_image_wall": 1000 * wall / len(X), "ms_per_image_cpu": 1000 * cpu / len(X),
             "probe_accuracy": float(cv["test_accuracy"].mean()),
             "probe_balanced_accuracy": float(cv["test_balanced_accuracy"].mean())}
        results.append(r)
        print(f"  input {size:3d} px: forward {r['ms_per_image_wall']:.1f} ms/img wall, "
              f"{r['ms_per_image_cpu']:.1f} ms/img CPU ({_load()}); linear probe accuracy "
              f"{r['probe_accuracy']:.3f}, balanced {r['probe_balanced_accuracy']:.3f}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "morphospace_bench_study")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--input-size", type=int, default=0, help="0: the backbone's default")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-frozen", action="store_true")
    ap.add_argument("--probe-sizes", default="", help="comma-separated input sides for the frozen sweep")
    ap.add_argument("--probe-n", type=int, default=1000)
    args = ap.parse_args(argv)
    if not (args.data / "labels.csv").is_file():  # a status of 0 read as a measurement made
        raise FileNotFoundError(f"{args.data}/labels.csv not found (the sdss-gz1 sample: give --data)")
    _threads(args.threads)

    import numpy as np
    import torch

    from morphospace.config import Config, apply_overrides
    from morphospace.data.ingest import ingest
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir
    from morphospace.study.features import study_features_run

    torch.set_num_threads(args.threads)
    set_quiet(True)
    summary: dict = {"threads": args.threads, "backbone": args.backbone, "epochs": args.epochs,
                     "torch": torch.__version__}

    run = RunDir(args.out / "finetune", create=True)
    cfg = apply_overrides(Config(), [f"ingest.workers={args.threads}", f"train.seed={args.seed}",
                                     f"train.num_threads={args.threads}", f"study.backbone={args.backbone}",
                                     "study.labels=morph3", f"study.epochs={args.epochs}",
                                     f"study.input_size={args.input_size}"])
    t = time.perf_counter()
    info = ingest(args.data, run, cfg)
    summary["ingest_seconds"] = time.perf_counter() - t
    print(f"ingest: {info['n_in_cube']} galaxies -> {run.cube} in {summary['ingest_seconds']:.1f} s ({_load()})")
    cat = run.cube_catalogue()
    truth = cat["morph3"].to_numpy(dtype=object)
    labelled = ~cat["morph3"].isna().to_numpy()
    truth = np.where(labelled, truth, "").astype(str)
    counts = {str(k): int(v) for k, v in zip(*np.unique(truth[labelled], return_counts=True))}
    print(f"classes (morph3): {counts}; {int((~labelled).sum())} without (dont_know, merger)")

    if args.probe_sizes:
        print(f"input-size sweep, frozen {args.backbone}, {args.probe_n} labelled galaxies, {args.threads} threads:")
        summary["probe"] = probe_sizes(run, [int(s) for s in args.probe_sizes.split(",")], args.backbone,
                                       args.probe_n, args.seed)

    if not args.skip_finetune:
        t, c = time.perf_counter(), time.process_time()
        m = study_features_run(run, cfg)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        feats = run.read_embedding("features")
        # the held-out test rows' scores where the fine-tuning kept some (they chose nothing), else the
        # validation rows' (which chose the epoch kept)
        split = "test" if m.get("n_test") else "validation"
        rep = m["test_classification_report"] if split == "test" else m["classification_report"]
        summary["finetune"] = {
            "input_size": m["input_size"], "wall_seconds": wall, "cpu_seconds": cpu,
            "fit_seconds": m["fit_seconds"], "extract_seconds": m["extract_seconds"],
            "epochs_run": len(m["history"]), "best_epoch": m["best_epoch"],
            "val_accuracy": m["val_accuracy"], "val_balanced_accuracy": m["val_balanced_accuracy"],
            "test_accuracy": m.get("test_accuracy"), "test_balanced_accuracy": m.get("test_balanced_accuracy"),
            "scored_on": split, "n_scored": m["n_test"] if split == "test" else m["n_val"],
            "per_class": {c: {"precision": rep[c]["precision"], "recall": rep[c]["recall"], "n": rep[c]["support"]}
                          for c in m["classes"]},
            "classes": m["classes"],
            "confusion_matrix": np.asarray(m["test_confusion_matrix" if split == "test" else "confusion_matrix"]).tolist(),
            "history": m["history"], "clustering": cluster_scores(feats, truth, labelled, args.seed),
        }
        f = summary["finetune"]
        print(f"fine-tuned {args.backbone} at {f['input_size']} px, {f['epochs_run']} epochs (kept {f['best_epoch']}): "
              f"{wall:.0f} s wall, {cpu:.0f} s CPU ({_load()}); fit {f['fit_seconds']:.0f} s, "
              f"features {f['extract_seconds']:.0f} s")
        print(f"  validation accuracy {f['val_accuracy']:.3f}, balanced {f['val_balanced_accuracy']:.3f} "
              f"on {m['n_val']} galaxies (they chose the epoch kept)")
        if split == "test":
            print(f"  held-out test accuracy {f['test_accuracy']:.3f}, balanced {f['test_balanced_accuracy']:.3f} "
                  f"on {m['n_test']} galaxies; per class and confusion matrix below on those")
        for c, r in f["per_class"].items():
            print(f"  {c:11s} precision {r['precision']:.3f} recall {r['recall']:.3f} (n = {r['n']})")
        print(f"  confusion matrix (rows true, columns predicted, order {f['classes']}): {f['confusion_matrix']}")
        for h in m["history"]:
            print(f"  epoch {h['epoch']}: train loss {h['train_loss']:.3f}, val loss {h['val_loss']:.3f}, "
                  f"val accuracy {h['val_accuracy']:.3f}, {h['seconds']:.0f} s")
        for k, s in f["clustering"].items():
            print(f"  fine-tuned features + {k.upper()} + KMeans(3): AMI {s['ami']:.3f}, ARI {s['ari']:.3f}")

    if not args.skip_frozen:
        frozen_run = RunDir(args.out / "frozen", create=True)
        for name in ("cube.npy", "catalogue.parquet"):
            link = frozen_run.path / name
            link.unlink(missing_ok=True)
            link.symlink_to(run.path / name)
        fcfg = apply_overrides(cfg, ["study.mode=frozen"])
        t, c = time.perf_counter(), time.process_time()
        m = study_features_run(frozen_run, fcfg)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        feats = frozen_run.read_embedding("features")
        summary["frozen"] = {"input_size": m["input_size"], "wall_seconds": wall, "cpu_seconds": cpu,
                             "clustering": cluster_scores(feats, truth, labelled, args.seed)}
        print(f"frozen {args.backbone} at {m['input_size']} px: features in {wall:.0f} s wall, {cpu:.0f} s CPU "
              f"({_load()})")
        for k, s in summary["frozen"]["clustering"].items():
            print(f"  frozen ImageNet features + {k.upper()} + KMeans(3): AMI {s['ami']:.3f}, ARI {s['ari']:.3f}")

    (args.out / "bench_study.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"summary: {args.out / 'bench_study.json'}")
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
