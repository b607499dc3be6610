"""Make ``docs/synth_vs_sdss.png``: 8 random real SDSS cutouts beside 8 synthetic galaxies.

The real images come from ``../shared/data/sdss-gz1`` (not copied into the repository; only
this small derived figure is). They are shown as the ingest sees them: the 423 px JPEG
resized to the synthetic frame side (128 px), so apparent size, noise and colour compare
pixel for pixel. The synthetic ones are the first galaxies of a survey with the given seed
(the balanced draw gives mixed morphologies), rendered exactly as ``make_survey`` writes them.

Usage::

    python benchmarks/make_synth_comparison.py [--seed 0] [--out docs/synth_vs_sdss.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from morphospace.data import synth

ROOT = Path(__file__).resolve().parents[1]
SDSS = ROOT.parent / "shared" / "data" / "sdss-gz1"
SIZE = 128


def main() -> None:
    """Draw the figure (real sdss-gz1 cutouts beside synthetic ones) the command line asks for."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="picks the real images and the synthetic survey")
    ap.add_argument("--out", default=str(ROOT / "docs" / "synth_vs_sdss.png"))
    ap.add_argument("--n", type=int, default=8, help="images per row group")
    args = ap.parse_args()
    if not (SDSS / "labels.csv").is_file():
        raise SystemExit(f"sdss-gz1 not found at {SDSS}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = pd.read_csv(SDSS / "labels.csv")
    pick = labels.sample(args.n, random_state=args.seed)
    real = []
    for objid, name in zip(pick["objid"], pick["gz1_name"]):
        with Image.open(SDSS / "images" / f"{objid}.jpeg") as im:
            real.append((np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS)), f"SDSS: {name}"))
    fake = []
    for i in range(args.n):
        rgb, row = synth.render_galaxy(args.seed, i, SIZE)
        kind = row["morphology"] + (f" ({row['irregular_kind']})" if row["irregular_kind"] else "")
        extra = f", w={row['winding']:+d}" if row["winding"] else ""
        fake.append((rgb, f"synth: {kind}{extra}"))

    cols = 4
    rows = 2 * ((args.n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.25 * rows), dpi=80)
    for ax, (img, title) in zip(axes.ravel(), real + fake):
        ax.imshow(img, interpolation="nearest")
        # a dashed square: the central half that the default preprocessing keeps
        q = SIZE / 4 - 0.5
        ax.plot([q, q + SIZE / 2, q + SIZE / 2, q, q], [q, q, q + SIZE / 2, q + SIZE / 2, q],
                ls=":", lw=0.6, color="0.6")
        ax.set_title(title, fontsize=7.5, color="darkred" if title.startswith("SDSS") else "navy")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"top: {args.n} random SDSS gri cutouts (sdss-gz1, 423 px resized to {SIZE}); "
                 f"bottom: morphospace synth, seed {args.seed}, {SIZE} px", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    from _entry import run

    run(main)
