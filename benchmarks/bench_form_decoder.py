"""The form preset's image decoder: training time against held-out reconstruction error.

The image decoder (``morphospace.vade.form_decoder``) redraws a galaxy from its code in the
VaDE's latent space; it is what makes reconstructions and synthetic galaxies, and on a CPU
it was 40% of a run's training (179 of 455 s on sdss-gz1). This takes a trained run's codes
(``RUN/models/vade``: its core applied to ``form_input.npy``) and neighbour-masked cube, holds
out a random tenth of the galaxies, fits a decoder for each ``WIDTHS:EPOCHS`` given on the
remaining nine tenths, and prints its training time and its error on the held-out galaxies
(the loss it trains on: radially weighted squared error to the canonical-frame image, the
smallest over the four flips, per pixel). The mean canonical image is printed as a floor
for comparison. No label is read: this is how ``form.decoder_widths`` was chosen, and how
bfloat16 training was judged (a third field, ``WIDTHS:EPOCHS:PRECISION``, passes a Lightning
precision such as ``bf16-mixed`` to the decoder's trainer). ``--floors`` fits each configuration
once per least pixel weight (``form.decoder_weight_floor``), and prints beside the error the decoder
trains on its held-out error over the whole frame (every pixel weighted alike) and in the corners
(beyond the circle through the middles of the edges), and how far the corners' colour departs from
grey (the mean absolute difference of each band from the bands' mean, the target's beside it): how
the floor was chosen. ``--upsample`` does the same for how the decoder's stages double the map
(``form.decoder_upsample``: ``transposed``, ``nearest``), and ``--lrs`` / ``--batch-sizes`` for Adam's
learning rate and the galaxies a step (``form.decoder_lr``, ``form.decoder_batch_size``). Each fit also
prints the colour error where the galaxy is (each band less the bands' mean, against the target's, over
the pixels above a quarter of its peak) and how far apart the bands' light centroids lie there: a
decoder short of steps drew the bands shifted against each other (coloured rims on edge-on disks).

Usage::

    .venv/bin/python benchmarks/bench_form_decoder.py RUN 32,64,128,256:8 16,32,64,128:8 16,32,64,128:16
    .venv/bin/python benchmarks/bench_form_decoder.py RUN 16,32,64,128:8:32-true 16,32,64,128:8:bf16-mixed
    .venv/bin/python benchmarks/bench_form_decoder.py RUN 16,32,64,128:8 --floors 0 0.2 0.5 1 --seed 1
    .venv/bin/python benchmarks/bench_form_decoder.py RUN 16,32,64,128:8 12,24,48,96:8 --floors 0.5 --upsample transposed nearest
    .venv/bin/python benchmarks/bench_form_decoder.py RUN 12,24,48,96:8 --lrs 1e-3 2e-3 --batch-sizes 128 32 --seed 1
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time

import numpy as np
import torch


def _config(text: str) -> tuple[tuple[int, ...], int, list[str]]:
    """WIDTHS:EPOCHS[:PRECISION] read, or argparse's one-line error."""
    widths, _, rest = text.partition(":")
    epochs, _, precision = rest.partition(":")
    try:
        parsed = tuple(int(w) for w in widths.split(",")), int(epochs), [precision] if precision else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHS:EPOCHS[:PRECISION], e.g. 16,32,64,128:8") from None
    if min(parsed[0]) < 1 or parsed[1] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: widths of at least 1, and at least 1 epoch")
    return parsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run trained with model.preset = form")
    ap.add_argument("configs", nargs="+", type=_config,
                    help="WIDTHS:EPOCHS[:PRECISION], e.g. 16,32,64,128:8:bf16-mixed")
    ap.add_argument("--floors", type=float, nargs="+", default=None,
                    help="least pixel weights to fit each configuration with (default: the run's setting)")
    ap.add_argument("--upsample", nargs="+", choices=["transposed", "nearest"], default=None,
                    help="how the decoder's stages double the map, each tried (default: the run's setting)")
    ap.add_argument("--lrs", type=float, nargs="+", default=None,
                    help="Adam's learning rates to fit each configuration with (default: the run's setting)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                    help="galaxies a step to fit each configuration with (default: the run's setting)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:  # as the command line does: freed activations reused, not mapped afresh (README)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)
        libc.mallopt(-1, 1 << 30)
    except (OSError, AttributeError):
        pass
    torch.set_num_threads(args.threads)
    from morphospace.config import load_config
    from morphospace.image.geometry import best_flip, canonical_frame, flip_errors, radial_weight
    from morphospace.progress import set_quiet
    from morphospace.vade.form_decoder import fit_image_decoder
    from morphospace.vade.form_model import flip_min_sq_error
    from morphospace.vade.io import load_vade

    set_quiet(True)
    model, _, _ = load_vade(f"{args.run}/models/vade/model.pt")
    m = load_config(f"{args.run}/config.toml").model  # the decoder's radial weight, as the run trained it
    with torch.no_grad():
        mu, log_var = (a.numpy() for a in model.core.encode(torch.from_numpy(np.load(f"{args.run}/models/vade/form_input.npy"))))
    cube = np.load(f"{args.run}/cube_masked.npy", mmap_mode="r")
    perm = np.random.default_rng(args.seed).permutation(len(cube))
    test, train = np.sort(perm[: len(cube) // 10]), np.sort(perm[len(cube) // 10:])
    target = canonical_frame(torch.from_numpy(np.asarray(cube[test], dtype=np.float32)))
    side = cube.shape[2]
    weight = radial_weight(side, m.radial_inner, m.radial_width)
    c = (side - 1) / 2.0
    yy, xx = np.mgrid[:side, :side]
    corners = torch.from_numpy(np.hypot(yy - c, xx - c) / (side / 2.0) > 1.0)
    form = load_config(f"{args.run}/config.toml").form
    floors = args.floors if args.floors is not None else [form.decoder_weight_floor]
    upsamplings = args.upsample or [form.decoder_upsample]
    lrs, batch_sizes = args.lrs or [form.decoder_lr], args.batch_sizes or [form.decoder_batch_size]

    def held_out_error(images: torch.Tensor, w: torch.Tensor = weight) -> float:
        """Per pixel and band; a mask ``w``: over its pixels only."""
        per = float(w.sum()) * target.shape[1] if w.dtype == torch.bool else target[0].numel()
        return float((flip_min_sq_error(target, images, w.float()) / per).mean())

    def colour(images: torch.Tensor) -> float:
        """How far the corners' bands depart from their mean: coloured noise where the decoder learned nothing."""
        px = images[:, :, corners]
        return float((px - px.mean(1, keepdim=True)).abs().mean())

    def aligned(images: torch.Tensor) -> torch.Tensor:
        """Each held-out target in the flip its reconstruction matches best (as the loss compares them)."""
        return best_flip(target, flip_errors(target, images, lambda t, xh: (weight * (t - xh) ** 2).sum((1, 2, 3))))

    def galaxy_colour(images: torch.Tensor, t: torch.Tensor) -> float:
        """The colour error where the galaxy is: each band less the bands' mean, reconstruction against its
        target ``t`` (:func:`aligned`), mean absolute difference over the pixels above a quarter of the galaxy's peak."""
        bright = t.mean(1) > 0.25 * t.mean(1).amax((1, 2), keepdim=True)
        dev = lambda a: a - a.mean(1, keepdim=True)  # noqa: E731
        return float((dev(images) - dev(t)).abs().mean(1)[bright].mean())

    def band_offset(images: torch.Tensor, t: torch.Tensor) -> float:
        """How far apart the bands' light centroids lie (pixels, rms over galaxies and bands) within the galaxy
        (above a quarter of its peak in the target ``t``): a decoder that draws one band shifted against another
        paints coloured rims; the targets' own figure is printed beside it."""
        bright = (t.mean(1) > 0.25 * t.mean(1).amax((1, 2), keepdim=True))[:, None]
        ys, xs = (torch.from_numpy(a).float() for a in (yy, xx))
        w = images.clamp(min=0) * bright
        tot = w.sum((2, 3)).clamp(min=1e-6)
        cy, cx = (w * ys).sum((2, 3)) / tot, (w * xs).sum((2, 3)) / tot
        return float(((cy - cy.mean(1, keepdim=True)) ** 2 + (cx - cx.mean(1, keepdim=True)) ** 2).mean().sqrt())

    with torch.no_grad():
        mean = canonical_frame(torch.from_numpy(np.asarray(cube[train], dtype=np.float32))).mean(0, keepdim=True)
    print(json.dumps({"decoder": "the mean canonical image", "held_out_error": held_out_error(mean.expand_as(target))}))
    train_cube = np.asarray(cube[train])
    for (widths, epochs, precision), floor, upsample, lr, batch in (
            (config, floor, up, lr, batch) for config in args.configs for floor in floors for up in upsamplings
            for lr in lrs for batch in batch_sizes):
        t0 = time.perf_counter()
        decoder = fit_image_decoder(mu[train], log_var[train], train_cube, widths=widths, epochs=epochs,
                                    seed=args.seed, radial_inner=m.radial_inner, radial_width=m.radial_width,
                                    weight_floor=floor, upsample=upsample, lr=lr, batch_size=batch, trainer_kwargs={"precision": precision[0]} if precision else None)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            images = decoder(torch.from_numpy(mu[test]))
        matched = aligned(images)
        print(json.dumps({"widths": list(widths), "epochs": int(epochs),
                          "precision": precision[0] if precision else "32-true", "weight_floor": floor,
                          "upsample": upsample, "lr": lr, "batch_size": batch,
                          "train_seconds": round(seconds, 1), "held_out_error": held_out_error(images),
                          "whole_frame": held_out_error(images, torch.ones(side, side)),
                          "corners": held_out_error(images, corners), "corner_colour": colour(images),
                          "target_corner_colour": colour(target), "galaxy_colour": galaxy_colour(images, matched),
                          "band_offset_px": band_offset(images, matched),
                          "target_band_offset_px": band_offset(target, target)}), flush=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
