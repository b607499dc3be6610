"""Benchmark of the VaDE on real galaxies (SDSS, Galaxy Zoo 1): clusters vs morphology and vs orientation.

No label is used in training. Scored afterwards:

* AMI and ARI of the VaDE clusters against three classes, elliptical (gz1_class 0) / spiral
  (1 + 2) / edge-on (3) (``morph3``; dont_know and merger left out);
* AMI of the clusters against the position angle (4 bins from windowed second moments of the
  image), over all galaxies and over the elongated ones (axis ratio < 0.7): should be ~0;
* AMI of the clusters against the quadrant of the brightest companion (``sep``, on the raw
  cube; ``none`` when there is none): the published system's defect, should be ~0;
* the same for raw pixels + PCA + K-Means (K = 3 and K = the VaDE's K), the baseline, and for
  the published AstroVaDEr imported from ``../shared/peers/astrovader/saved_weights.h5``
  (its own preprocessing: 128 px grey min-max; its 12 clusters);
* over several seeds: mean and spread, and the ARI between the seeds' clusterings;
* training throughput (images/s), model FLOPs per training image (``FlopCounterMode``), the
  FLOP/s that a large matmul reaches in the same process, and the fraction of it the training
  reaches; wall time of the whole training.

Usage::

    .venv/bin/python benchmarks/bench_vade.py --threads 2 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_vade.py --variants plain canonical default --seeds 0   # ablation

Results go to ``--out`` (``results.json``, ``results.md``) and are printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sdss-gz1"

# named sets of config overrides: the ablation of the default design
VARIANTS = {
    # the default: the form-first VaDE (ImageNet trunk, dihedral average, SSL head, linear VaDE core on it)
    "default": [],
    # form-first with the MLP VaDE core (SGD, the default until the linear core's seed stability)
    "form_mlp_core": ["form.core=mlp"],
    # form-first with VICReg instead of NT-Xent
    "form_vicreg": ["form.loss=vicreg"],
    # form-first with the trunk at 160 px instead of 112 (tried, not adopted: README)
    "form_160": ["form.input_size=160"],
    # form-first with the images unsharp-masked before the trunk (form.sharpen; README: the probe
    # rises, K-Means(3) falls a little)
    "form_sharpen4": ["form.sharpen=4"],
    # form-first with the larger packaged ImageNet trunks (EfficientNet-Lite1 / -Lite2, at 112 px)
    "form_lite1": ["form.backbone=efficientnet-lite1"],
    "form_lite2": ["form.backbone=efficientnet-lite2"],
    # both options together: the larger trunk (K-Means(3) up) on sharpened images (the probe up)
    "form_lite2_sharpen4": ["form.backbone=efficientnet-lite2", "form.sharpen=4"],
    # form-first with three SSL heads on the same view bank, their outputs side by side (form.heads)
    "form_heads3": ["form.heads=3"],
    # form-first without the self-supervised head's nuisance views (dihedral views only)
    "form_no_aug": ["form.aug_views=0"],
    # form-first from scratch: the small CNN trained by the SSL objective on the images
    "form_scratch": ["form.backbone=small", "form.input_size=64", "form.train_trunk=true", "form.ssl_epochs=6"],
    # form-first with the ImageNet trunk adapted in-domain (the whole trunk, at 0.1 x the head's
    # rate: form.trunk_lr_scale auto) on views drawn afresh each step; 4 SSL epochs (a CPU)
    "form_adapt": ["form.train_trunk=true", "form.ssl_epochs=4"],
    # the pixel VaDE (the previous default: neighbours masked, canonical orientation,
    # flip-invariant code, radial weight)
    "pixel": ["model.preset=default"],
    # the pixel VaDE with the neighbours left in
    "no_mask": ["model.preset=default", "model.mask_neighbours=false"],
    # none of the invariance devices
    "plain": ["model.preset=default", "model.mask_neighbours=false", "model.canonicalise=false", "model.flip_invariant=false",
              "model.radial_inner=0", "train.augment=none"],
    # published-style flips augmentation only
    "flips": ["model.preset=default", "model.canonicalise=false", "model.flip_invariant=false", "model.radial_inner=0",
              "train.augment=flips"],
    # random rotations (any angle) + flips augmentation, no canonical frame
    "rotate": ["model.preset=default", "model.canonicalise=false", "model.flip_invariant=false", "model.radial_inner=0",
               "train.augment=rotate"],
    # canonical rotation only
    "canonical": ["model.preset=default", "model.flip_invariant=false", "model.radial_inner=0"],
    # canonical rotation + flip-invariant code, no radial weight
    "canonical_flipinv": ["model.preset=default", "model.radial_inner=0"],
    # default without the flip-invariant code (flips augmentation instead)
    "no_flipinv": ["model.preset=default", "model.flip_invariant=false"],
}


def build_run(workdir: Path, workers: int, data: Path = DATA, overrides: list[str] = ()):
    """Ingest ``data`` (sdss-gz1 by default; default preprocessing: 64 x 64 rgb, asinh, unless
    ``overrides`` has ``preprocess.*`` keys) once into ``workdir/run``."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.data.ingest import ingest
    from morphospace.run import RunDir

    run_path = workdir / "run"
    if (run_path / "cube.npy").is_file() and (run_path / "catalogue.parquet").is_file():
        return RunDir(run_path)
    run = RunDir(run_path, create=True)
    cfg = apply_overrides(load_config(None), [f"ingest.workers={workers}"]
                          + [o for o in overrides if o.startswith("preprocess.")])
    ingest(data, run, cfg)
    return run


def position_angle_bins(cube: np.ndarray, n_bins: int = 4, window: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """PA bins (0..n_bins-1) and axis ratios from Gaussian-windowed second moments (window * side)."""
    n, _, h, w = cube.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    yy -= (h - 1) / 2
    xx -= (w - 1) / 2
    win = np.exp(-(xx**2 + yy**2) / (2 * (window * h) ** 2))
    pa = np.empty(n)
    q = np.empty(n)
    for s in range(0, n, 512):
        lum = np.clip(np.asarray(cube[s:s + 512]).mean(1), 0, None) * win
        f = lum.sum((1, 2)) + 1e-12
        mx = (lum * xx).sum((1, 2)) / f
        my = (lum * yy).sum((1, 2)) / f
        dx = xx - mx[:, None, None]
        dy = yy - my[:, None, None]
        qxx = (lum * dx * dx).sum((1, 2)) / f
        qyy = (lum * dy * dy).sum((1, 2)) / f
        qxy = (lum * dx * dy).sum((1, 2)) / f
        pa[s:s + 512] = 0.5 * np.arctan2(2 * qxy, qxx - qyy)
        det = np.sqrt((qxx - qyy) ** 2 + 4 * qxy**2)
        q[s:s + 512] = np.sqrt(np.clip((qxx + qyy - det) / (qxx + qyy + det), 0, None))
    bins = np.floor(((pa + np.pi / 2) % np.pi) / (np.pi / n_bins)).astype(int).clip(0, n_bins - 1)
    return bins, q


COMPANION = None  # quadrant of the brightest companion per cube row (set in main)
EXTRA_NUISANCE: dict = {}  # name -> quartile bin per cube row of a --nuisance-csv column (set in main)


def scores(labels: np.ndarray, truth: np.ndarray, keep: np.ndarray, pa_bins: np.ndarray, elongated: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_mutual_info_score as ami
    from sklearn.metrics import adjusted_rand_score as ari

    out = {
        "ami_morph3": float(ami(truth[keep], labels[keep])),
        "ari_morph3": float(ari(truth[keep], labels[keep])),
        "ami_pa": float(ami(pa_bins, labels)),
        "ami_pa_elongated": float(ami(pa_bins[elongated], labels[elongated])),
        "k": int(len(np.unique(labels))),
    }
    if COMPANION is not None:
        out["ami_companion"] = float(ami(COMPANION, labels))
    for name, bins in EXTRA_NUISANCE.items():
        out[f"ami_{name}"] = float(ami(bins, labels))
    return out


def published(out_dir: Path, base_run, workers: int, truth, keep, pa_bins, elongated,
              data: Path = DATA) -> dict | None:
    """The published AstroVaDEr (imported weights) on its own preprocessing of the same galaxies."""
    from morphospace.api import import_astrovader
    from morphospace.config import apply_overrides, load_config
    from morphospace.data.ingest import ingest
    from morphospace.run import RunDir
    from morphospace.vade.embed import encode_cube
    from morphospace.vade.io import load_vade

    weights = ROOT.parent / "shared" / "peers" / "astrovader" / "saved_weights.h5"
    if not weights.is_file():
        print(f"published weights not found at {weights}: skipped", file=sys.stderr)
        return None
    path = out_dir / "published"
    if not ((path / "cube.npy").is_file() and (path / "catalogue.parquet").is_file()):
        run = RunDir(path, create=True)
        ingest(data, run, apply_overrides(load_config(None), ["preprocess.preset=astrovader",
                                                              f"ingest.workers={workers}"]))
    run = RunDir(path)
    t0 = time.perf_counter()
    model, _, _ = load_vade(import_astrovader(run, weights))
    enc = encode_cube(model, run.read_cube())
    seconds = time.perf_counter() - t0
    labels = pd.Series(enc["proba"].argmax(1), index=run.cube_ids().astype(str))
    ids = base_run.cube_ids().astype(str)
    if len(labels) != len(ids) or not labels.index.isin(ids).all():
        raise RuntimeError("the published model's ingest holds other galaxies than the default one")
    labels = labels.loc[ids].to_numpy()
    row = {**scores(labels, truth, keep, pa_bins, elongated), "labels": labels, "encode_seconds": seconds}
    return summarise([row])


def matmul_flops() -> float:
    """FLOP/s of a large float32 matmul in this process (same threads): bench_form_throughput's peer."""
    from bench_form_throughput import matmul_flops as peer

    return peer()


def training_flops_per_image(hp: dict, batch: int = 32) -> float:
    """FLOPs of one training step (forward + backward of the joint loss) per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from morphospace.vade.networks import build_model

    x = torch.rand(batch, hp["channels"], hp["image_size"], hp["image_size"])
    if hp["preset"] == "form":
        return form_flops_per_image(hp, x)
    model = build_model(hp)
    with FlopCounterMode(display=False) as fc:
        t = model.loss_terms(x, mode="vade")
        (t.reconstruction + t.kl).mean().backward()
    return fc.get_total_flops() / batch


def form_flops_per_image(hp: dict, x) -> float:
    """FLOPs per galaxy of the form model's training: the trunk over every view of the bank,
    plus the image decoder's forward and backward in each of its epochs (the head and the core
    VaDE on 64-d vectors are negligible)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from morphospace.ssl.embedder import build_trunk
    from morphospace.vade.networks import DefaultDecoder

    f = hp["form"]
    trunk = build_trunk(f["backbone"], f["input_size"]).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        trunk(x)
    per_view = fc.get_total_flops() / len(x)
    dec = DefaultDecoder(hp["channels"], hp["image_size"], hp["latent_dim"], tuple(hp["widths"]))
    with FlopCounterMode(display=False) as fc:
        (dec(torch.randn(len(x), hp["latent_dim"])) ** 2).mean().backward()
    per_decoder = fc.get_total_flops() / len(x)
    return per_view * (8 + f["aug_views"]) + per_decoder * f["decoder_epochs"]


def encode_run(run) -> tuple[dict, dict, np.ndarray | None]:
    """Encode every cube row of a trained run: (``encode_cube``'s dict, hyper-parameters, form embedding or None)."""
    from morphospace.vade.embed import encode_cube, model_input
    from morphospace.vade.io import load_vade, model_dir

    model, hp, _ = load_vade(model_dir(run) / "model.pt")
    form = model_dir(run) / "form_embedding.npy"
    form = np.load(form) if hp["preset"] == "form" and form.is_file() else None
    # what the model was trained on (neighbours masked or not); the form embedding from training
    return encode_cube(model, model_input(run, hp), embedding=form), hp, form


def train_and_score(run_dir: Path, base_run, overrides: list[str], seed: int, truth, keep, pa_bins, elongated) -> dict:
    from morphospace.config import apply_overrides, load_config
    from morphospace.run import RunDir
    from morphospace.vade.train import train_run

    run_dir.mkdir(parents=True, exist_ok=True)
    for f in ("cube.npy", "catalogue.parquet"):
        if not (run_dir / f).exists():
            os.symlink(base_run.path.resolve() / f, run_dir / f)
    run = RunDir(run_dir)
    cfg = apply_overrides(load_config(None), overrides + [f"train.seed={seed}"])
    t0 = time.perf_counter()
    result = train_run(run, cfg)
    wall = time.perf_counter() - t0
    enc, hp, form = encode_run(run)
    # the model's own clusters: mixture components merged by entropy (as `morphospace embed` does)
    from morphospace.vade.merge import ComponentMerger

    components = enc["proba"].argmax(1)
    labels = ComponentMerger().fit_predict(enc["proba"]) if enc["proba"].shape[1] > 2 else components
    out = scores(labels, truth, keep, pa_bins, elongated)
    out["components"] = scores(components, truth, keep, pa_bins, elongated)
    out["n_components"] = int(enc["proba"].shape[1])
    # K-Means(3) and a 10% linear probe on each embedding the model gives
    for name, x in (("z", enc["z_mean"]), ("form", form)):
        if x is None:
            continue
        km = kmeans3(x, seed)
        out[f"kmeans3_{name}"] = scores(km, truth, keep, pa_bins, elongated)
        out[f"probe10_{name}"] = probe10(x, truth, keep)
    n = len(labels)
    out.update({"seed": seed, "train_seconds": result.seconds, "wall_seconds": wall,
                "images_per_second": hp["epochs"] * n / result.seconds, "sizes": np.bincount(labels).tolist(),
                "guard_events": len(result.events), "labels": labels.tolist(), "hparams": hp})
    return out


def kmeans3(x: np.ndarray, seed: int, k: int = 3) -> np.ndarray:
    """K-Means(3) (or K-Means(``k``)) on the standardised embedding."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    return KMeans(k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(x))


def probe10(x: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> float:
    """Balanced accuracy of a logistic regression on 10% of the labelled galaxies (5 draws)."""
    from morphospace.analysis.probe import linear_probe

    t = linear_probe(x[keep], truth[keep], fractions=(0.1,), repeats=5)
    # none where 10% cannot hold two galaxies of every class (a small survey): no score, not a crash
    return float(t["balanced_accuracy"].iloc[0]) if len(t) else float("nan")


def baseline(cube: np.ndarray, ks: list[int], seeds: list[int], truth, keep, pa_bins, elongated) -> dict:
    """Raw pixels (2x2 pooled) + PCA(32) + K-Means."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = np.asarray(cube, dtype=np.float32)
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5)).reshape(n, -1)
    out = {}
    for k in ks:
        rows = []
        for seed in seeds:
            p = PCA(32, random_state=seed).fit_transform(x)
            labels = KMeans(k, n_init=10, random_state=seed).fit_predict(p)
            rows.append({**scores(labels, truth, keep, pa_bins, elongated), "labels": labels})
        out[f"pixels_pca_kmeans{k}"] = summarise(rows)
    return out


def summarise(rows: list[dict]) -> dict:
    from sklearn.metrics import adjusted_rand_score as ari

    extra = [f"ami_{name}" for name in EXTRA_NUISANCE]
    keys = [k for k in ("ami_morph3", "ari_morph3", "ami_pa", "ami_pa_elongated", "ami_companion", *extra, "k")
            if k in rows[0]]
    s = {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows])),
             "values": [r[k] for r in rows]} for k in keys}
    labs = [np.asarray(r["labels"]) for r in rows]
    pairs = [ari(labs[i], labs[j]) for i in range(len(labs)) for j in range(i + 1, len(labs))]
    s["ari_between_seeds"] = {"mean": float(np.mean(pairs)) if pairs else None, "values": pairs}
    if "components" in rows[0]:
        s["components"] = {k: {"mean": float(np.mean([r["components"][k] for r in rows])),
                               "std": float(np.std([r["components"][k] for r in rows]))}
                           for k in ("ami_morph3", "ami_pa_elongated", "ami_companion", *extra, "k")
                           if k in rows[0]["components"]}
    for emb in ("z", "form"):
        if f"kmeans3_{emb}" in rows[0]:
            km = [r[f"kmeans3_{emb}"] for r in rows]
            s[f"kmeans3_{emb}"] = {k: {"mean": float(np.mean([m[k] for m in km])), "std": float(np.std([m[k] for m in km]))}
                                   for k in ("ami_morph3", "ami_pa_elongated", "ami_companion", *extra) if k in km[0]}
            pr = [r[f"probe10_{emb}"] for r in rows]
            s[f"probe10_{emb}"] = {"mean": float(np.mean(pr)), "std": float(np.std(pr))}
    for extra in ("train_seconds", "images_per_second"):
        if extra in rows[0]:
            s[extra] = {"mean": float(np.mean([r[extra] for r in rows])), "values": [r[extra] for r in rows]}
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/morphospace-bench/vade", help="work and results folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="extra config override (preprocess.* keys also reach the ingest)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="ingest workers")
    ap.add_argument("--data", type=Path, default=DATA, help="the survey: sdss-gz1 or a copy of it in its layout")
    ap.add_argument("--nuisance-csv", type=Path, help="a known nuisance per galaxy (CSV: the id, then one value "
                    "column, e.g. the shrinking factor of a survey made by zooming sdss-gz1 out): the AMI of every "
                    "clustering against its quartiles is reported beside the others")
    ap.add_argument("--no-peers", action="store_true",
                    help="leave out the pixel baseline and the published AstroVaDEr (the variants alone)")
    args = ap.parse_args(argv)

    import torch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from morphospace.progress import set_quiet

    set_quiet(True)
    if not args.data.is_dir():
        print(f"sdss-gz1 not found at {args.data}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = build_run(out, args.workers, args.data, args.overrides)
    cube = base.read_cube()
    cat = base.cube_catalogue()
    truth = cat["morph3"].astype("string").fillna("").to_numpy()
    keep = truth != ""
    pa_bins, q = position_angle_bins(cube)
    elongated = q < 0.7
    from morphospace.analysis.nuisance import measure_nuisance

    global COMPANION
    COMPANION = measure_nuisance(cube, desc="companions")["companion_quadrant"].astype(str).to_numpy()
    if args.nuisance_csv is not None:
        known = pd.read_csv(args.nuisance_csv, dtype=str)
        name = known.columns[1]
        values = known.set_index(known.columns[0])[name].astype(float).reindex(cat["id"].astype(str)).to_numpy()
        EXTRA_NUISANCE[name] = pd.qcut(values, 4, labels=False, duplicates="drop")
    print(f"{len(cube)} galaxies, {keep.sum()} with a 3-class label "
          f"({pd.Series(truth[keep]).value_counts().to_dict()}), {elongated.sum()} elongated (q < 0.7)")

    results: dict = {"n_galaxies": int(len(cube)), "threads": args.threads, "variants": {}}
    results["matmul_flops_per_s"] = matmul_flops()
    for variant in args.variants:
        overrides = VARIANTS[variant] + [f"train.num_threads={args.threads}"] + args.overrides
        rows = []
        for seed in args.seeds:
            r = train_and_score(out / f"{variant}_s{seed}", base, overrides, seed, truth, keep, pa_bins, elongated)
            print(json.dumps({k: v for k, v in r.items() if k not in ("labels", "hparams")}))
            rows.append(r)
        summary = summarise(rows)
        hp = rows[0]["hparams"]
        flops = training_flops_per_image(hp)
        summary["train_flops_per_image"] = flops
        if hp["preset"] == "form":  # throughput per galaxy of the whole training, not per epoch
            summary["images_per_second"]["mean"] = float(np.mean([len(cube) / r["train_seconds"] for r in rows]))
        summary["fraction_of_matmul"] = flops * summary["images_per_second"]["mean"] / results["matmul_flops_per_s"]
        summary["overrides"] = overrides
        summary["epochs"] = hp["epochs"]
        results["variants"][variant] = summary
        (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    ks = sorted({3} | {int(round(s["k"]["mean"])) for s in results["variants"].values()})
    if not args.no_peers:
        results["baseline"] = baseline(cube, ks, args.seeds, truth, keep, pa_bins, elongated)
        pub = published(out, base, args.workers, truth, keep, pa_bins, elongated, args.data)
        if pub is not None:
            results["baseline"]["published_astrovader"] = pub
    results["matmul_flops_per_s_end"] = matmul_flops()
    # the machine's matmul rate is the higher of the two (a figure taken while another job ran is low)
    peak = max(results["matmul_flops_per_s"], results["matmul_flops_per_s_end"])
    for s in results["variants"].values():
        s["fraction_of_matmul"] = s["train_flops_per_image"] * s["images_per_second"]["mean"] / peak
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    md = to_markdown(results)
    (out / "results.md").write_text(md)
    print(md)
    return 0


def to_markdown(results: dict) -> str:
    def fmt(s):
        return f"{s['mean']:.3f} ± {s['std']:.3f}"

    lines = ["| representation (own clusters: merged components) | K | AMI morph3 | ARI morph3 | AMI PA (all) | AMI PA (q<0.7) | AMI companion | "
             "ARI between seeds |", "|---|---|---|---|---|---|---|---|"]
    for name, s in list(results["variants"].items()) + list(results.get("baseline", {}).items()):
        seeds_ari = s["ari_between_seeds"]["mean"]
        lines.append(f"| {name} | {fmt(s['k'])} | {fmt(s['ami_morph3'])} | {fmt(s['ari_morph3'])} | "
                     f"{fmt(s['ami_pa'])} | {fmt(s['ami_pa_elongated'])} | "
                     f"{fmt(s['ami_companion']) if 'ami_companion' in s else '-'} | "
                     f"{'-' if seeds_ari is None else f'{seeds_ari:.3f}'} |")
    lines.append("")
    lines.append(f"matmul: {results['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s at the start, "
                 f"{results.get('matmul_flops_per_s_end', float('nan')) / 1e9:.1f} at the end ({results['threads']} threads)")
    lines.append("")
    lines.append("| variant | components K | components AMI morph3 | K-Means(3) on z: AMI morph3 | on form embedding "
                 "| 10% probe on z | on form |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, s in results["variants"].items():
        if "kmeans3_z" in s:
            comp = s.get("components", {})
            lines.append(f"| {name} | {fmt(comp['k']) if comp else '-'} | {fmt(comp['ami_morph3']) if comp else '-'} | "
                         f"{fmt(s['kmeans3_z']['ami_morph3'])} | "
                         f"{fmt(s['kmeans3_form']['ami_morph3']) if 'kmeans3_form' in s else '-'} | "
                         f"{fmt(s['probe10_z'])} | {fmt(s['probe10_form']) if 'probe10_form' in s else '-'} |")
    lines.append("")
    for name, s in results["variants"].items():
        lines.append(f"{name}: {s['epochs']} epochs, {s['train_seconds']['mean']:.0f} s per training, "
                     f"{s['images_per_second']['mean']:.0f} images/s, "
                     f"{s['train_flops_per_image'] / 1e6:.0f} MFLOP per training image, "
                     f"{100 * s['fraction_of_matmul']:.1f}% of the higher matmul FLOP/s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from _entry import run

    run(main)
