"""How the form trunk's feature maps are pooled, and which taps: a measured ablation (issue 9).

The form embedding pools two taps of the frozen ImageNet EfficientNet-Lite0 (last block, 320
channels, and head, 1280; both 4 x 4 at the 112 px input) by a global average, averages over the
8 dihedral views and trains a small SSL head on the view bank. This script caches the trunk's
feature maps once per survey (8 dihedral + ``--aug-views`` nuisance views, as
:func:`morphospace.ssl.bank.view_bank` draws them; float16 memmaps under ``--work``), then
for every pooling variant builds the view bank of pooled features and scores:

* **raw**: the pooled features averaged over the dihedral views, standardised;
* **head**: the SSL head trained on the variant's view bank (the default recipe: NT-Xent,
  t = 0.2, 60 epochs, 64-d, batch 256), one head per ``--head-seeds`` seed;

each by K-Means(K) AMI against the labels (K = 3 on sdss-gz1: elliptical / spiral / edge-on;
K = 6 on the synthetic survey: its true morphologies; K-Means seeds 0-2 on raw, the head's seed on
head), the 10% linear probe (:func:`morphospace.analysis.probe.linear_probe`, 5 draws, balanced
accuracy), and two label-free criteria: the silhouette of the K-Means(K) clusters in a 2-D UMAP
of the embedding (Lowe et al. 2024) and the ARI between the K-Means clusterings of the seeds.

Variants (``--variants``; the default list is all of them):

``avg``      the current default: global average of last block + head (1600);
``centre``   the average over the central 2 x 2 cells of the 4 x 4 maps only;
``gauss``    a centred Gaussian weight (sigma 0.25 of the frame);
``seg``      weighted by the fraction of each cell inside the galaxy's own segment (pixels 3 sigma
             above the border's sky in the view itself);
``light``    weighted by sqrt of the view's sky-subtracted light;
``mid112``   avg + the stride-16 block (112 channels, 7 x 7) averaged;
``mid80``    avg + the stride-16 80-channel block;
``avgmax``   average and max of both taps (3200);
``gem``      average of both taps + GeM (p = 3) of the head (2880);
``ssqrt``    signed square root of the averages (power normalisation);
``pcaw``     the averages PCA-whitened (256 components, fitted on the view bank) before the head;
``gram10``   avg + second-order pooling of the stride-16 block (112 channels, 7 x 7): the channel
             covariance over the cells, channels first projected on 24 principal axes (fitted on
             a sample of cells, no label), signed square root (300 numbers);
``gram15``   the same of the last block (320 channels, 4 x 4).

Usage::

    .venv/bin/python benchmarks/bench_form_pooling.py --surveys gz1 synth --head-seeds 0
    .venv/bin/python benchmarks/bench_form_pooling.py --variants avg seg --head-seeds 0 1 2

What was run for issue 9 (a CPU shared with other jobs, load 3-10: about 6 minutes per variant
and survey for the raw scores, 5 of them in the probe; 17 minutes to cache sdss-gz1's maps)::

    bench_form_pooling.py --work W --surveys gz1 --head-seeds 0 --variants avg
    bench_form_pooling.py --work W --surveys gz1 --no-head --variants centre mid112 gem ssqrt pcaw seg
    bench_form_pooling.py --work W --surveys synth --no-head --aug-views 0 --variants avg ssqrt mid112
    bench_form_pooling.py --work W --surveys gz1 --no-raw --head-seeds 0 --variants ssqrt
    bench_form_pooling.py --work W --surveys gz1 --head-seeds 0 --variants avg gram10 gram15   # later, idle CPU

Results accumulate in ``W/results.json``; every call prints the table of all of them.

The surveys are ingested and masked into ``--work`` the first time (the synthetic one rendered with
2,000 galaxies, seed 0). Labels only score; nothing is chosen here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GZ1 = ROOT.parent / "shared" / "data" / "sdss-gz1"
TAPS = {"b7": (7, 80, 7), "b10": (10, 112, 7), "b15": (15, 320, 4), "head": (None, 1280, 4)}  # block, channels, side
VARIANTS = ("avg", "centre", "gauss", "seg", "light", "mid112", "mid80", "avgmax", "gem", "ssqrt", "pcaw", "gram10", "gram15")
SURVEYS = {"gz1": ("morph3", 3), "synth": ("morphology", 6)}


def survey_run(work: Path, name: str):
    """The ingested run of a survey (ingested, and for ``synth`` rendered, the first time)."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.data import synth
    from morphospace.data.ingest import ingest
    from morphospace.run import RunDir

    path = work / name
    if not (path / "cube.npy").is_file():
        data = GZ1
        if name == "synth":
            data = work / "synth_survey"
            if not (data / "images").is_dir():
                synth.make_survey(data, n=2000, seed=0, workers=1, progress=False)
        ingest(data, RunDir(path, create=True), apply_overrides(load_config(None), ["ingest.workers=1"]))
    return RunDir(path)


def cache_maps(cube, out: Path, aug_views: int, seed: int = 0, batch: int = 64) -> dict:
    """Feature maps of every tap and the luminance of every view, as float16 memmaps in ``out``."""
    import torch

    from morphospace.image.geometry import dihedral
    from morphospace.ssl.augment import NuisanceAugment
    from morphospace.ssl.embedder import build_trunk
    from morphospace.ssl.bank import N_DIHEDRAL, view_seed as _seed

    n, v_total = len(cube), N_DIHEDRAL + aug_views
    side = cube.shape[-1]
    shapes = {t: (v_total, n, c, s, s) for t, (_, c, s) in TAPS.items()} | {"lum": (v_total, n, side, side)}
    if (out / "done").is_file():
        return {k: np.load(out / f"{k}.npy", mmap_mode="r") for k in shapes}
    out.mkdir(parents=True, exist_ok=True)
    mm = {k: np.lib.format.open_memmap(out / f"{k}.npy", mode="w+", dtype=np.float16, shape=s) for k, s in shapes.items()}
    trunk = build_trunk("efficientnet-lite0", 112, precision="auto").eval()
    fnet, eff = trunk.net, trunk.net.trunk.net
    augment, got = NuisanceAugment(), {}
    for t, (b, _, _) in TAPS.items():
        if b is not None:
            eff._blocks[b].register_forward_hook(lambda m, i, o, t=t: got.__setitem__(t, o))
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=trunk.precision == "bf16"):
        for s in range(0, n, batch):
            x = torch.from_numpy(np.array(cube[s:s + batch], dtype=np.float32))
            for v in range(v_total):
                xv = dihedral(x, v) if v < N_DIHEDRAL else augment(x, seed=_seed(seed, v, s))
                got["head"] = eff.extract_features(fnet.prepare(xv).contiguous(memory_format=torch.channels_last))
                for t in TAPS:
                    mm[t][v, s:s + len(x)] = got[t].float().numpy()
                mm["lum"][v, s:s + len(x)] = xv.mean(1).numpy()
            print(f"  maps {s + len(x)}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    for a in mm.values():
        a.flush()
    (out / "done").write_text("ok")
    return {k: np.load(out / f"{k}.npy", mmap_mode="r") for k in shapes}


def cell_weights(lum: np.ndarray, side: int, kind: str) -> np.ndarray:
    """Spatial weights (..., side, side), summing to 1, from view luminances (..., S, S)."""
    import torch
    import torch.nn.functional as F

    lead, s = lum.shape[:-2], lum.shape[-1]
    if kind in ("centre", "gauss"):
        c = (np.arange(side) + 0.5) / side - 0.5
        if kind == "centre":
            w1 = (np.abs(c) < 0.26).astype(np.float64)
        else:
            w1 = np.exp(-c**2 / (2 * 0.25**2))
        w = np.outer(w1, w1)
        return np.broadcast_to(w / w.sum(), lead + (side, side))
    x = lum.reshape(-1, s, s).astype(np.float32)
    border = np.concatenate([x[:, :4].reshape(len(x), -1), x[:, -4:].reshape(len(x), -1),
                             x[:, 4:-4, :4].reshape(len(x), -1), x[:, 4:-4, -4:].reshape(len(x), -1)], 1)
    sky = np.median(border, 1)[:, None, None]
    sig = 1.4826 * np.median(np.abs(border - sky[:, :, 0]), 1)[:, None, None] + 1e-6
    if kind == "seg":
        m = (x > sky + 3 * sig).astype(np.float32)
    else:  # light
        m = np.sqrt(np.clip(x - sky, 0, None))
    w = F.adaptive_avg_pool2d(torch.from_numpy(m)[:, None], side)[:, 0].numpy().astype(np.float64) + 1e-3
    w /= w.sum((1, 2), keepdims=True)
    return w.reshape(lead + (side, side))


def pool_chunk(maps: dict, rows: slice, variant: str) -> np.ndarray:
    """Pooled features (V, n, F) of the rows ``rows`` of every view."""
    def m(t):
        return np.asarray(maps[t][:, rows], dtype=np.float32)

    def wavg(t, kind):
        a = m(t)
        w = cell_weights(np.asarray(maps["lum"][:, rows]), a.shape[-1], kind)
        return np.einsum("vnchw,vnhw->vnc", a, w.astype(np.float32), optimize=True)

    if variant in ("centre", "gauss", "seg", "light"):
        return np.concatenate([wavg("b15", variant), wavg("head", variant)], -1)
    avg = [m("b15").mean((-2, -1)), m("head").mean((-2, -1))]
    if variant in ("avg", "pcaw"):
        return np.concatenate(avg, -1)
    if variant == "mid112":
        return np.concatenate(avg + [m("b10").mean((-2, -1))], -1)
    if variant == "mid80":
        return np.concatenate(avg + [m("b7").mean((-2, -1))], -1)
    if variant == "avgmax":
        return np.concatenate(avg + [m("b15").max((-2, -1)), m("head").max((-2, -1))], -1)
    if variant == "gem":
        return np.concatenate(avg + [np.cbrt((np.clip(m("head"), 1e-6, None) ** 3).mean((-2, -1)))], -1)
    if variant in ("gram10", "gram15"):
        return np.concatenate(avg + [gram(m("b10" if variant == "gram10" else "b15"), maps, variant)], -1)
    if variant == "ssqrt":
        a = np.concatenate(avg, -1)
        return np.sign(a) * np.sqrt(np.abs(a))
    raise ValueError(f"unknown variant {variant!r}")


_GRAM_BASIS: dict = {}


def gram(a: np.ndarray, maps: dict, variant: str, rank: int = 24) -> np.ndarray:
    """Second-order (bilinear) pooling: the channel covariance of a tap's map over its cells, the channels
    first projected on the top ``rank`` principal axes of the tap's cell vectors (fitted once, on a
    sample of every view's cells: no label), signed square root; the upper triangle (V, n, r(r+1)/2)."""
    v, n, c, h, w = a.shape
    if variant not in _GRAM_BASIS:
        tap = maps["b10" if variant == "gram10" else "b15"]
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(tap.shape[1], min(400, tap.shape[1]), replace=False))
        cells = np.asarray(tap[:, rows], dtype=np.float32).transpose(0, 1, 3, 4, 2).reshape(-1, c)
        mu = cells.mean(0)
        _, _, vt = np.linalg.svd(cells - mu, full_matrices=False)
        _GRAM_BASIS[variant] = (mu, vt[:rank].T.astype(np.float32))
    mu, basis = _GRAM_BASIS[variant]
    x = (a.transpose(0, 1, 3, 4, 2).reshape(v, n, h * w, c) - mu) @ basis  # (V, n, cells, r)
    x = x - x.mean(2, keepdims=True)
    cov = np.einsum("vnpi,vnpj->vnij", x, x, optimize=True) / (h * w)
    iu = np.triu_indices(basis.shape[1])
    g = cov[..., iu[0], iu[1]]
    return np.sign(g) * np.sqrt(np.abs(g))


def pooled_bank(maps: dict, variant: str, chunk: int = 256) -> np.ndarray:
    """The view bank (V, N, F) float32 of a variant."""
    n = maps["head"].shape[1]
    bank = np.concatenate([pool_chunk(maps, slice(s, s + chunk), variant) for s in range(0, n, chunk)], 1)
    if variant == "pcaw":
        from sklearn.decomposition import PCA

        v, n, f = bank.shape
        flat = bank.reshape(-1, f)
        pca = PCA(256, whiten=True, random_state=0).fit(flat[np.random.default_rng(0).choice(len(flat), 20000, replace=False)])
        bank = pca.transform(flat).astype(np.float32).reshape(v, n, -1)
    return bank


def fit_head(bank: np.ndarray, seed: int, epochs: int = 60, dim: int = 64, hidden: int = 512,
             temperature: float = 0.2):
    """The SSL head trained on the bank as ``fit_embedder`` does (frozen trunk), in eval mode."""
    import lightning.pytorch as pl

    from morphospace.progress import quiet_lightning
    from morphospace.ssl.embedder import FormHead
    from morphospace.ssl.training import SSLModule, ViewBankDataModule

    pl.seed_everything(seed, workers=True, verbose=False)
    head = FormHead(bank.shape[-1], dim=dim, hidden=hidden)
    head.set_scaling(bank)
    module = SSLModule(head, None, temperature=temperature, epochs=epochs)
    with quiet_lightning():
        pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False,
                   deterministic=True, accelerator="cpu", devices=1).fit(
            module, datamodule=ViewBankDataModule(bank, 256, seed))
    return head.eval()


def train_head(bank: np.ndarray, seed: int, epochs: int = 60, dim: int = 64) -> np.ndarray:
    """The SSL head trained on the bank (:func:`fit_head`); its dihedral-mean output."""
    import torch

    from morphospace.ssl.training import N_DIHEDRAL

    head = fit_head(bank, seed, epochs, dim)
    with torch.no_grad():
        return torch.stack([head(torch.from_numpy(bank[v])) for v in range(N_DIHEDRAL)]).mean(0).numpy()


def score(x: np.ndarray, truth: np.ndarray, k: int, seeds: list[int], standardise: bool = True) -> dict:
    """K-Means(k) AMI per seed, seed-to-seed ARI, 10% probe, UMAP silhouette (label-free).

    K-Means and UMAP read ``x`` standardised per column unless ``standardise`` is False (as
    the run's own clusterings read an embedding); the probe reads ``x`` as it is.
    """
    import umap
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score as ami
    from sklearn.metrics import adjusted_rand_score as ari
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    from morphospace.analysis.probe import linear_probe

    t0 = time.perf_counter()
    z = StandardScaler().fit_transform(x) if standardise else x
    keep = truth != ""
    labs = [KMeans(k, n_init=10, random_state=s).fit_predict(z) for s in seeds]
    t1 = time.perf_counter()
    u = umap.UMAP(n_components=2, n_neighbors=30, min_dist=0.0, random_state=0).fit_transform(z)
    t2 = time.perf_counter()
    probe = linear_probe(x[keep], truth[keep], fractions=(0.1,), repeats=5)
    print(f"  k-means {t1 - t0:.0f} s, umap {t2 - t1:.0f} s, probe {time.perf_counter() - t2:.0f} s", file=sys.stderr, flush=True)
    return {"ami": [float(ami(truth[keep], lab[keep])) for lab in labs],
            "ari_seeds": float(np.mean([ari(labs[i], labs[j]) for i in range(len(labs)) for j in range(i)])) if len(labs) > 1 else None,
            "probe10": float(probe["balanced_accuracy"].iloc[0]),
            "umap_silhouette": float(silhouette_score(u, labs[0])), "labels": labs[0].tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/morphospace-bench/form_pooling")
    ap.add_argument("--surveys", nargs="+", default=["gz1", "synth"], choices=sorted(SURVEYS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--head-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--aug-views", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--no-raw", action="store_true", help="score only the SSL head's embedding")
    ap.add_argument("--no-head", action="store_true", help="score only the raw pooled features (no SSL head)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import logging

    import torch

    from morphospace.image.masking import masked_cube
    from morphospace.progress import set_quiet

    set_quiet(True)
    logging.getLogger("morphospace").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.surveys:
        col, k = SURVEYS[name]
        run = survey_run(work, name)
        truth = run.cube_catalogue()[col].astype("string").fillna("").to_numpy()
        # the default 4 nuisance views in "<survey>_maps"; another count in its own folder
        folder = f"{name}_maps" if args.aug_views == 4 else f"{name}_maps_aug{args.aug_views}"
        maps = cache_maps(masked_cube(run, workers=1), work / folder, args.aug_views)
        for variant in args.variants:
            t0 = time.perf_counter()
            bank = pooled_bank(maps, variant)
            print(f"  {name} {variant}: pooled in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            row = results.setdefault(name, {}).setdefault(variant, {"dim": int(bank.shape[-1])})
            if not args.no_raw:
                row["raw"] = score(bank[:8].mean(0), truth, k, [0, 1, 2])
            heads = {} if args.no_head else {s: score(train_head(bank, s, args.epochs), truth, k, [s]) for s in args.head_seeds}
            row["head"] = {str(s): h for s, h in heads.items()} | {
                kk: v for kk, v in row.get("head", {}).items() if kk not in {str(s) for s in heads}}
            brief = {kk: {s: {m: v for m, v in h.items() if m != "labels"} for s, h in v.items()} if kk == "head"
                     else ({m: x for m, x in v.items() if m != "labels"} if isinstance(v, dict) else v)
                     for kk, v in row.items()}
            print(json.dumps({"survey": name, "variant": variant, "seconds": round(time.perf_counter() - t0), **brief}), flush=True)
            work.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1))
    print(to_markdown(results))
    return 0


def to_markdown(results: dict) -> str:
    """One table: per survey and variant, raw and head scores (means over seeds)."""
    lines = ["| survey | variant | dim | raw: K-Means AMI | raw: probe 10% | raw: UMAP silhouette | raw: ARI seeds "
             "| head: K-Means AMI | head: probe 10% | head: UMAP silhouette | head: ARI seeds | head seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, variants in results.items():
        for variant, row in variants.items():
            r = row.get("raw")
            raw = (f"{np.mean(r['ami']):.3f} ± {np.std(r['ami']):.3f} | {r['probe10']:.3f} | {r['umap_silhouette']:.3f} | "
                   f"{r['ari_seeds']:.2f}") if r else "- | - | - | -"
            hs = list(row.get("head", {}).values())
            if hs:
                from sklearn.metrics import adjusted_rand_score as ari

                a = [h["ami"][0] for h in hs]
                pairs = [ari(hs[i]["labels"], hs[j]["labels"]) for i in range(len(hs)) for j in range(i)]
                labs_ari = f"{np.mean(pairs):.2f}" if pairs else "-"
                head = (f"{np.mean(a):.3f} ± {np.std(a):.3f} | {np.mean([h['probe10'] for h in hs]):.3f} | "
                        f"{np.mean([h['umap_silhouette'] for h in hs]):.3f} | {labs_ari} | {len(hs)}")
            else:
                head = "- | - | - | - | 0"
            lines.append(f"| {name} | {variant} | {row['dim']} | {raw} | {head} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from _entry import run

    run(main)
