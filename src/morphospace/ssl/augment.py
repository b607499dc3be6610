"""Augmentations that change how a galaxy is *seen* and keep what it *is*.

A self-supervised encoder learns to give two views of one galaxy the same code, so the
views must differ only in nuisances: position angle (full 0-360 degree rotation), handedness
(flips), a few pixels of centring error, 0.7-1.43x in apparent size (``form.aug_scale``: chosen by
the intervention test, :mod:`morphospace.vade.invariance`), the seeing (PSF blur), the
sky noise and the overall brightness. Nothing that alters form is drawn: no hue jitter (a
galaxy's colour is physics), no aggressive crops (a crop can cut the arms off a spiral).

Batched on tensors with ``kornia`` (one affine warp for rotation, shift and scale). The
random state comes from an explicit seed, so a training step is a pure function of
``(seed, step, rank)`` and ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

__all__ = ["NuisanceAugment"]


@dataclass(frozen=True)
class NuisanceAugment:
    """A random nuisance transform of a batch of images ``(N, C, H, W)``.

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
        Largest standard deviation of added Gaussian sky noise (in the cube's units), applied
        with probability ``p_noise``.
    brightness : tuple of float
        Range of the overall brightness factor.
    """

    rotation: float = 180.0
    shift: float = 0.05
    scale: tuple[float, float] = (0.7, 1.43)
    blur_sigma: tuple[float, float] = (0.1, 1.2)
    p_blur: float = 0.5
    noise: float = 0.03
    p_noise: float = 0.5
    brightness: tuple[float, float] = (0.8, 1.2)

    def to_dict(self) -> dict:
        """The parameters as a plain dict (``dataclasses.asdict``)."""
        return asdict(self)

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """Apply one random draw to every image; the draw depends only on ``seed``."""
        import kornia.augmentation as K

        if x.ndim != 4:
            raise ValueError(f"expected N x C x H x W images, got shape {tuple(x.shape)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            x = K.RandomHorizontalFlip(p=0.5)(x)
            x = K.RandomAffine(degrees=self.rotation, translate=(self.shift, self.shift), scale=self.scale,
                               padding_mode="zeros", p=1.0)(x)
            if self.p_blur > 0:
                x = K.RandomGaussianBlur((5, 5), self.blur_sigma, p=self.p_blur)(x)
            # drawn on the CPU, then moved: the same numbers on any device (and a CUDA batch
            # cannot be multiplied by a CPU tensor of several elements)
            n = x.shape[0]
            lo, hi = self.brightness
            x = x * (lo + (hi - lo) * torch.rand(n, 1, 1, 1, dtype=x.dtype)).to(x.device)
            if self.noise > 0 and self.p_noise > 0:
                sigma = self.noise * torch.rand(n, 1, 1, 1, dtype=x.dtype) * (torch.rand(n, 1, 1, 1) < self.p_noise)
                x = x + (sigma * torch.randn(x.shape, dtype=x.dtype)).to(x.device)
        return x
