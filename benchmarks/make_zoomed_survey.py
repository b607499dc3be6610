"""sdss-gz1 (or the synthetic survey) as a survey cut out at a fixed angular size would show it.

sdss-gz1's cutouts are scaled to each galaxy's Petrosian R90, so every galaxy fills about the
same share of its frame. Surveys cut out at a fixed angular size are not: a distant galaxy is
a speck. This script makes such a survey from sdss-gz1: each galaxy shrunk by a factor drawn
log-uniformly in [1, ``--max-zoom``] (seeded) inside a frame of the same 423 px, the margin
filled with pixels of the frame's own border drawn at random (those within 3 sigma of its
median: the sky's levels, clipping included, without its sources), and the shrunk part given
back the noise its averaging took away, so that no seam shows. The labels are sdss-gz1's; the factor per galaxy goes to ``zoom.csv`` beside the
survey (a nuisance known by construction: no label).

``--source`` may also be a built-in synthetic survey (``morphospace synth``): its PNG frames are
shrunk the same way, its catalogue (with the true morphology) and marker copied, and the zoom
CSV keyed by its ``id``.

Usage::

    .venv/bin/python benchmarks/make_zoomed_survey.py --out /tmp/gz1zoom
    .venv/bin/python benchmarks/make_zoomed_survey.py --source mock --out /tmp/synthzoom   # synthetic
    .venv/bin/python benchmarks/make_zoomed_survey.py --min-zoom 2 --max-zoom 2 --out /tmp/gz1pad  # all at half size
    .venv/bin/python benchmarks/make_zoomed_survey.py --min-zoom 0.5 --max-zoom 0.5 --out /tmp/gz1fill  # cut tighter
    .venv/bin/python benchmarks/bench_vade.py --data /tmp/gz1zoom --nuisance-csv /tmp/gz1zoom_zoom.csv \\
        --out W --variants default --seeds 0 [--set preprocess.framing=galaxy]

Writes only under ``--out`` and the ``zoom.csv`` beside it (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from morphospace.data.synth.files import CATALOGUE_NAME as SYNTH_CATALOGUE
from morphospace.data.synth.files import MARKER_NAME as SYNTH_MARKER

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-gz1"


def zoom_out(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """The frame with its content shrunk by ``factor`` about the centre, on its own sky.

    Parameters
    ----------
    image : ndarray, shape (N, N, 3), uint8
    factor : float
        At least 1.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (N, N, 3), uint8
    """
    a = image.astype(np.float32)
    n = a.shape[0]
    bw = n // 10
    border = np.concatenate([a[:bw].reshape(-1, 3), a[-bw:].reshape(-1, 3),  # (corners twice: a
                             a[:, :bw].reshape(-1, 3), a[:, -bw:].reshape(-1, 3)])  # sky sample all the same)
    # only the sky's pixels: a neighbour in the border, drawn at random, would sprinkle the frame with dots
    grey = border.mean(axis=1)
    med = np.median(grey)
    sky = np.abs(grey - med) <= max(3 * 1.4826 * np.median(np.abs(grey - med)), 1.0)
    border = border[sky]
    m = max(8, int(round(n / factor)))
    small = np.asarray(Image.fromarray(image).resize((m, m), Image.Resampling.LANCZOS), dtype=np.float32)
    out = border[rng.integers(0, len(border), n * n)].reshape(n, n, 3)
    o = (n - m) // 2
    noise = border[rng.integers(0, len(border), m * m)].reshape(m, m, 3) - border.mean(axis=0)
    out[o:o + m, o:o + m] = small + np.sqrt(max(0.0, 1 - (m / n) ** 2)) * noise
    return out.round().clip(0, 255).astype(np.uint8)


def zoom_in(image: np.ndarray, factor: float) -> np.ndarray:
    """The frame's central ``factor`` of its side, at its own pixel scale: a survey cut out tighter
    about each galaxy, which then fills more of its frame (``factor`` < 1).

    Parameters
    ----------
    image : ndarray, shape (N, N, 3), uint8
    factor : float
        In (0, 1].

    Returns
    -------
    ndarray, shape (M, M, 3), uint8, M = round(N x factor)
    """
    n = image.shape[0]
    m = max(8, int(round(n * factor)))
    o = (n - m) // 2
    return np.ascontiguousarray(image[o:o + m, o:o + m])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the new survey's folder (sdss-gz1's layout)")
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--max-zoom", type=float, default=3.0, help="the largest shrinking factor")
    ap.add_argument("--min-zoom", type=float, default=1.0,
                    help="the smallest factor; one below 1 cuts the frame tighter instead (zoom_in)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    synthetic = (args.source / SYNTH_MARKER).is_file()
    if not (args.source / "images").is_dir():
        print(f"no survey (sdss-gz1 or synthetic) at {args.source}", file=sys.stderr)
        return 1
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    if synthetic:
        table = pd.read_csv(args.source / SYNTH_CATALOGUE, dtype={"id": str})
        files, key = [args.source / f for f in table["file"]], table["id"].tolist()
    else:
        table = pd.read_csv(args.source / "labels.csv")
        files = sorted((args.source / "images").iterdir())
        key = [f.stem for f in files]
    rng = np.random.default_rng(args.seed)
    rows = []
    for path, gid in zip(files, key):
        factor = float(np.exp(rng.uniform(np.log(args.min_zoom), np.log(args.max_zoom))))
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"))
        shrunk = Image.fromarray(zoom_out(image, factor, rng) if factor >= 1 else zoom_in(image, factor))
        shrunk.save(args.out / "images" / path.name, **({} if synthetic else {"quality": 92}))
        rows.append((gid, factor))
    # the table and (synthetic) the marker last: a survey with them is complete
    if synthetic:
        for name in (SYNTH_CATALOGUE, SYNTH_MARKER):
            (args.out / name).write_bytes((args.source / name).read_bytes())
    else:
        table.to_csv(args.out / "labels.csv", index=False)
    zoom = args.out.parent / f"{args.out.name}_zoom.csv"
    pd.DataFrame(rows, columns=["id" if synthetic else "objid", "zoom"]).to_csv(zoom, index=False)
    print(f"{len(rows)} galaxies shrunk by {args.min_zoom:g}-{args.max_zoom:g} into {args.out}; factors in {zoom}")
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
