"""`morphospace similar --image` and sky positions at ingest: what they cost, and whether a
galaxy's own file finds it.

Usage::

    .venv/bin/python benchmarks/bench_similar_image.py [--data ../shared/data/sdss-gz1] [--n 300]
        [--queries 20] [--held-out 100] [--positions 100000] [--fits 200] [--out /tmp/bench_similar_image] [--run RUN]

1. A run on the first N galaxies of DATA (sdss-gz1 layout): ingest with the default recipe, the
   default form-first model with a shortened schedule (``form.ssl_epochs=20``,
   ``form.decoder_epochs=5``), embed. Then Q of its galaxies' own JPEGs are queried through
   ``pipeline.embed_image`` + ``analysis.similar.similar_to_image`` per embedding: the first
   query (cold: the model and index loaded) and the median of the others, in seconds; how many
   found their own galaxy first, and that distance over the 10th neighbour's (0: exact). ``--run``
   queries a run built before (its galaxies' own files, from the catalogue's ``source``).
   Then H galaxies of DATA that are not in the run (``--held-out``) are queried as new images
   through the form embedder, with the head's inputs held within the training range and without:
   how far each lands from its nearest galaxy of the run, over the run's own median distance
   between a galaxy and its nearest other.
2. ``parse_positions`` on P numeric and P sexagesimal (RA, Dec) pairs: seconds.
3. Ingest of F FITS cutouts (64 x 64) with and without a TAN WCS (one worker): the WCS's cost
   per file in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from morphospace.analysis.pixels import pixel_pca_run
from morphospace.analysis.similar import similar_to_image
from morphospace.config import apply_overrides, load_config
from morphospace.data.ingest import ingest
from morphospace.data.ingest.positions import parse_positions
from morphospace.pipeline import embed_image
from morphospace.progress import set_quiet
from morphospace.run import RunDir
from morphospace.vade.embed import embed_run
from morphospace.vade.train import train_run


def subset(data: Path, n: int, out: Path) -> Path:
    """The first ``n`` galaxies of an sdss-gz1 folder, as links."""
    labels = pd.read_csv(data / "labels.csv", dtype=str).head(n)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for objid in labels["objid"]:
        os.symlink((data / "images" / f"{objid}.jpeg").resolve(), out / "images" / f"{objid}.jpeg")
    labels.to_csv(out / "labels.csv", index=False)
    return out


def build_run(data: Path, n: int, out: Path) -> RunDir:
    """A run on the first ``n`` galaxies of ``data``: ingest, pixel PCA, a form model (short schedule), embed."""
    cfg = apply_overrides(load_config(None), ["form.ssl_epochs=20", "form.decoder_epochs=5", "ingest.workers=1"])
    run = RunDir(out / "run", create=True)
    t = time.perf_counter()
    ingest(subset(data, n, out / "data"), run, cfg)
    pixel_pca_run(run, cfg.model.pca_components)
    train_run(run, cfg)
    embed_run(run, cfg)
    print(f"run of {n} galaxies built in {time.perf_counter() - t:.0f} s\n")
    return run


def bench_image(run: RunDir, queries: int) -> None:
    cat = run.cube_catalogue()
    ids, files = cat["id"].astype(str).tolist(), cat["source"].astype(str).tolist()
    picks = np.random.default_rng(0).choice(len(ids), size=min(queries, len(ids)), replace=False)
    print(f"{len(ids)} galaxies in the run\n")
    print("| embedding | first query (s) | then, median (s) | own galaxy first | its distance / 10th neighbour's |\n"
          "|---|---|---|---|---|")
    for emb in ("form", "vade", "pixels_pca"):
        times, hits, ratios = [], 0, []
        for i in picks:
            t = time.perf_counter()
            row, vec = embed_image(run, files[i], emb)
            table, _ = similar_to_image(run, vec, row, emb, k=10, query=Path(files[i]).name)
            times.append(time.perf_counter() - t)
            hits += table["id"].iloc[1] == ids[i]
            ratios.append(table["distance"].iloc[1] / table["distance"].iloc[-1])
        print(f"| {emb} | {times[0]:.2f} | {np.median(times[1:]):.2f} | {hits}/{len(picks)} | "
              f"{np.median(ratios):.4f} (max {np.max(ratios):.4f}) |", flush=True)


def bench_held_out(run: RunDir, data: Path, held_out: int) -> None:
    """Galaxies of ``data`` that are not in the run, queried as new images through the form embedder,
    with the head's inputs held within the training range (now) and unbounded (before): how far
    each lands from its nearest galaxy of the run, over the run's own nearest-neighbour distance."""
    import torch

    from morphospace.ssl.embedder import FormHead

    cat = run.cube_catalogue()
    known = set(cat["id"].astype(str))
    labels = pd.read_csv(data / "labels.csv", dtype=str)
    new = [data / "images" / f"{o}.jpeg" for o in labels["objid"] if o not in known][:held_out]
    emb = np.asarray(run.read_embedding("form"), dtype=np.float64)
    own = np.sort(np.linalg.norm(emb[:, None] - emb[None], axis=-1), axis=1)[:, 1]
    scale = float(np.median(own))
    bounded = FormHead.forward

    def unbounded(self, f):
        return self.net((f - self.mean) / self.std)

    print(f"\n{len(new)} galaxies not in the run, as new images (form embedding; the run's median distance "
          f"to a galaxy's nearest other: {scale:.3f})\n\n| head inputs | nearest galaxy / that median: median | "
          f"90th percentile | max |\n|---|---|---|---|")
    for name, forward in (("held within the training range (now)", bounded), ("unbounded (before)", unbounded)):
        FormHead.forward = forward
        try:
            with torch.no_grad():
                ratios = [float(np.linalg.norm(emb - embed_image(run, f, "form")[1], axis=1).min()) / scale for f in new]
        finally:
            FormHead.forward = bounded
        print(f"| {name} | {np.median(ratios):.2f} | {np.percentile(ratios, 90):.2f} | {np.max(ratios):.2f} |", flush=True)


def bench_positions(p: int) -> None:
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, p), rng.uniform(-90, 90, p)
    t = time.perf_counter()
    parse_positions(pd.Series(ra), pd.Series(dec))
    numeric = time.perf_counter() - t
    h, m, s = (ra / 15).astype(int), ((ra / 15 % 1) * 60).astype(int), np.floor(ra / 15 * 360000 % 6000) / 100
    ra_s = [f"{a:02d}:{b:02d}:{c:05.2f}" for a, b, c in zip(h, m, s)]
    dd, dm = np.abs(dec).astype(int), np.floor(np.abs(dec) % 1 * 6000) / 100
    dec_s = [f"{'-' if d < 0 else '+'}{a:02d}:{b:05.2f}" for d, a, b in zip(dec, dd, dm)]
    t = time.perf_counter()
    _, _, problems = parse_positions(pd.Series(ra_s, dtype="string"), pd.Series(dec_s, dtype="string"))
    sexa = time.perf_counter() - t
    print(f"\n| {p} positions | seconds |\n|---|---|\n| numeric | {numeric:.3f} |\n| sexagesimal | {sexa:.3f} |"
          f"  ({len(problems)} flagged)")


def bench_wcs(f: int, out: Path) -> None:
    from astropy.io import fits

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64] - 31.5
    seconds = {}
    for with_wcs in (False, True):
        root = out / f"fits_{int(with_wcs)}"
        root.mkdir(parents=True)
        for i in range(f):
            img = 1000 * np.exp(-(xx**2 + yy**2) / 50) + 100 + rng.normal(0, 5, (64, 64))
            hdu = fits.PrimaryHDU(img.astype(np.float32))
            if with_wcs:
                hdu.header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 32.5, "CRPIX2": 32.5,
                                   "CRVAL1": 150 + i / 1000, "CRVAL2": 2.0, "CDELT1": -1e-4, "CDELT2": 1e-4})
            hdu.writeto(root / f"f{i:05d}.fits")
        cfg = apply_overrides(load_config(None), ["ingest.workers=1"])
        best = []
        for rep in range(3):
            t = time.perf_counter()
            ingest(root, RunDir(out / f"run_{int(with_wcs)}_{rep}", create=True), cfg)
            best.append(time.perf_counter() - t)
        seconds[with_wcs] = min(best)
    print(f"\n| {f} FITS cutouts | ingest (s, best of 3) |\n|---|---|\n| no WCS | {seconds[False]:.2f} |\n"
          f"| TAN WCS | {seconds[True]:.2f} |  (WCS: {1000 * (seconds[True] - seconds[False]) / f:.2f} ms per file)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/sdss-gz1"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--positions", type=int, default=100000)
    ap.add_argument("--fits", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--run", type=Path, default=None, help="query this run (built by an earlier call) instead")
    ap.add_argument("--held-out", type=int, default=100, help="galaxies of DATA not in the run, queried as new images")
    args = ap.parse_args()
    set_quiet(True)
    out = Path(tempfile.mkdtemp(prefix="bench_similar_image_")) if args.out is None else args.out
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    run = RunDir(args.run) if args.run is not None else build_run(args.data, args.n, out) if args.n > 0 else None
    if run is not None:
        bench_image(run, args.queries)
        if args.held_out > 0:
            bench_held_out(run, args.data, args.held_out)
    bench_positions(args.positions)
    bench_wcs(args.fits, out)


if __name__ == "__main__":
    from _entry import run

    run(main)
