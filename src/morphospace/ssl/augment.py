"""Augmentations that change how a galaxy is *seen* and keep what it *is*.

A self-supervised encoder learns to give two views of one galaxy the same code, so the
views must differ only in nuisances: position angle (full 0-360 degree rotation), handedness
(flips), a few pixels of centring error, 0.7-1.43x in apparent size (``form.aug_scale``: chosen by
the intervention test, :mod:`morphospace.vade.invariance`), the seeing (PSF blur) and the
sky noise. Nothing that alters form is drawn: no hue jitter (a
galaxy's colour is physics), no aggressive crops (a crop can cut the arms off a spiral).

By default in a run (``light``, ``form.aug_light``) a view is made as a survey would show the galaxy
otherwise, the way the intervention test changes it: on the row's light (the ingest's stretch
undone), with sky beyond the frame where a turn or a shrink uncovers it, the sky's noise that
resampling and blurring smooth away given back with the grain the row's own sky shows, added
noise in units of that sky's noise (up to ``sky_noise`` = sqrt 3 of it: the signal-to-noise
halved), and the row normalised again as the ingest normalises it (its peak found anew, so the
overall brightness needs no draw of its own); a grey row (a grey frame in a colour cube) gets the same
noise in every band, so its views stay grey. Before (``light = False``, a model saved before the
setting): on the stretched pixels, zeros beyond the frame, noise of at most ``noise`` in the
cube's units (a tenth to a third of sdss-gz1's sky noise), a brightness factor.

Batched on tensors with ``kornia`` (one affine warp for rotation, shift and scale). The
random state comes from an explicit seed, so a training step is a pure function of
``(seed, step, rank)`` and ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from ..data.ingest.sky_noise import grained_noise, grey_as_one, restretch, row_sky, unstretch
from ..data.ingest.spec import PreprocessSpec

__all__ = ["NuisanceAugment"]


class _RowsLight(NamedTuple):
    """Rows' light (N, C, H, W), sky level and noise (N, C, 1, 1), the sky's grain and which rows are
    grey (N,): what every light view of the rows starts from."""

    light: np.ndarray
    level: np.ndarray
    sigma: np.ndarray
    grains: np.ndarray
    grey: np.ndarray


@dataclass(frozen=True)
class NuisanceAugment:
    """A random nuisance transform of a batch of cube rows ``(N, C, H, W)``.

    Parameters
    ----------
    rotation : float
        Largest rotation in degrees either way (180: any angle).
    shift : float
        Largest centring error as a fraction of the side (0.05 of 64 px: 3 px).
    scale : tuple of float
        Range of the apparent-size factor.
    blur_sigma : tuple of float
        Range of the extra PSF blur (Gaussian sigma, pixels), applied with probability ``p_blur``.
    noise : float
        Without ``light``: largest standard deviation of added Gaussian noise in the cube's units,
        applied with probability ``p_noise``.
    brightness : tuple of float
        Without ``light``: range of the overall brightness factor.
    light : bool
        Make each view on the row's light (see the module docstring; ``morphospace train`` sets it
        from ``form.aug_light`` with the cube's own ``normalise`` and ``softening``). Off by
        default here: it needs the stretch the cube was made with.
    normalise, softening : str, float
        With ``light``: how the cube's rows were normalised (``PreprocessSpec``'s fields).
    sky_noise : float
        With ``light``: largest standard deviation of added noise, in units of the row's sky noise
        (drawn uniformly below it, with probability ``p_noise``; sqrt 3 halves the signal-to-noise).
    """

    rotation: float = 180.0
    shift: float = 0.05
    scale: tuple[float, float] = (0.7, 1.43)
    blur_sigma: tuple[float, float] = (0.1, 1.2)
    p_blur: float = 0.5
    noise: float = 0.03
    p_noise: float = 0.5
    brightness: tuple[float, float] = (0.8, 1.2)
    light: bool = False
    normalise: str = "asinh"
    softening: float = 0.1
    sky_noise: float = float(np.sqrt(3.0))

    def to_dict(self) -> dict:
        """The parameters as a plain dict (``dataclasses.asdict``)."""
        return asdict(self)

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """Apply one random draw to every image; the draw depends only on ``seed``."""
        return next(self.views(x, [seed]))

    def views(self, x: torch.Tensor, seeds) -> Iterator[torch.Tensor]:
        """One view of every image per seed in ``seeds``, each as ``self(x, seed)`` gives it, in turn.

        With ``light``, what the views share (the rows' light, sky and its grain: about a third of
        a view's time) is measured once.
        """
        if x.ndim != 4:
            raise ValueError(f"expected N x C x H x W images, got shape {tuple(x.shape)}")
        rows = self._rows_light(x) if self.light else None
        for seed in seeds:
            yield self._view(x, int(seed), rows)

    def _view(self, x: torch.Tensor, seed: int, rows: _RowsLight | None) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if rows is not None:
                return self._on_light(x, rows, np.random.default_rng(seed))
            x = self._seen_otherwise(x)
            # drawn on the CPU, then moved: the same numbers on any device (and a CUDA batch
            # cannot be multiplied by a CPU tensor of several elements)
            n = x.shape[0]
            lo, hi = self.brightness
            x = x * (lo + (hi - lo) * torch.rand(n, 1, 1, 1, dtype=x.dtype)).to(x.device)
            if self.noise > 0 and self.p_noise > 0:
                sigma = self.noise * torch.rand(n, 1, 1, 1, dtype=x.dtype) * (torch.rand(n, 1, 1, 1) < self.p_noise)
                x = x + (sigma * torch.randn(x.shape, dtype=x.dtype)).to(x.device)
        return x

    def _seen_otherwise(self, x: torch.Tensor) -> torch.Tensor:
        """The geometry and the seeing: a flip, a turn, shift and change of size, a blur (zeros
        beyond the frame)."""
        import kornia.augmentation as K

        x = K.RandomHorizontalFlip(p=0.5)(x)
        x = K.RandomAffine(degrees=self.rotation, translate=(self.shift, self.shift), scale=self.scale,
                           padding_mode="zeros", p=1.0)(x)
        if self.p_blur > 0:
            x = K.RandomGaussianBlur((5, 5), self.blur_sigma, p=self.p_blur)(x)
        return x

    def _spec(self) -> PreprocessSpec:
        return PreprocessSpec(normalise=self.normalise, softening=self.softening)

    def _rows_light(self, x: torch.Tensor) -> _RowsLight:
        """What every light view of the rows ``x`` starts from."""
        light = unstretch(x.detach().float().cpu().numpy(), self._spec()).astype(np.float32)
        sky = row_sky(light)  # as the intervention test measures it (its floor unused here: below)
        return _RowsLight(light, sky.level[..., None, None], sky.sigma[..., None, None], sky.grain, sky.grey)

    def _on_light(self, x: torch.Tensor, rows: _RowsLight, rng: np.random.Generator) -> torch.Tensor:
        """The views made on the rows' light (see the module docstring); on the CPU, then moved."""
        light, level, sigma, grains, grey = rows
        n, c, h, w = light.shape
        # the galaxy above its sky, a unit noise of the row's grain that goes through the same warp
        # and blur (what is left of it says how much noise to give back) and the frame (1 inside)
        probe = grained_noise((n, 1, h, w), grains, rng, dtype=np.float32)
        stack = torch.from_numpy(np.concatenate([light - level, probe, np.ones((n, 1, h, w), np.float32)], axis=1))
        stack = self._seen_otherwise(stack).numpy()
        seen, probe, inside = stack[:, :c], stack[:, c:c + 1], np.clip(stack[:, c + 1:], 0.0, 1.0)
        full = inside > 0.999
        left2 = (probe**2 * full).sum((2, 3), keepdims=True) / np.maximum(full.sum((2, 3), keepdims=True), 1)
        added = self.sky_noise * rng.random((n, 1, 1, 1)) * (rng.random((n, 1, 1, 1)) < self.p_noise)
        # one draw of new noise in units of the sky's, so that every pixel's sky noise is the row's
        # own: what the warp and blur left of it is inside^2 left2 (inside the frame, at its edge a
        # part), the rest new; and the added noise on top (independent: the variances add)
        weight = np.sqrt(np.clip(1.0 - inside**2 * left2, 0.0, 1.0) + added**2)
        # a grey row (a grey frame in a colour cube) gets one noise in every band: its view stays grey
        noise = grey_as_one(grained_noise((n, c, h, w), grains, rng, dtype=np.float32), grey)
        out = level + seen + sigma * weight * noise
        # a sky clipped at black is not clipped again here, as the intervention test clips it: measured
        # on sdss-gz1 (3 seeds each), the clusters moved as often under the test and two trainings agreed
        # less (ARI 0.68 against 0.76; docs/measurements/invariance.md)
        return torch.from_numpy(restretch(out, self._spec())).to(device=x.device, dtype=x.dtype)
