"""Image geometry on tensors: radial weights, the dihedral transforms, canonical orientation.

Pixel-level operations on batches of images ``(N, C, H, W)`` (torch), shared by the models:
the VaDE's radial weight, flip invariance and canonical frame (:mod:`morphospace.vade.model`),
the form encoder's dihedral views (:mod:`morphospace.ssl`) and the training augmentations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["radial_weight", "dihedral", "FLIP_GROUP", "flip_errors", "best_flip", "canonical_angle",
           "canonical_frame", "rotate"]


def radial_weight(size: int, inner: float, width: float, floor: float = 0.0) -> torch.Tensor:
    """A (size, size) pixel weight: 1 inside radius ``inner``, Gaussian fall-off outside, at least ``floor``.

    Radii are in units of the half-side of the frame (1 = the middle of an edge). The
    weight multiplies the per-pixel reconstruction error, i.e. it inflates the noise assumed
    in the outskirts, so that neighbours near the edge of the frame cost the latent code
    little. ``inner <= 0`` or ``width <= 0`` gives uniform weights. Without a floor the corners
    weigh about 1e-3 (``inner`` 0.5, ``width`` 0.25): a decoder learns nothing there.
    """
    if inner <= 0 or width <= 0:
        return torch.ones(size, size)
    c = (size - 1) / 2.0
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    r = torch.sqrt((xx - c) ** 2 + (yy - c) ** 2) / (size / 2.0)
    w = torch.exp(-0.5 * (torch.clamp(r - inner, min=0.0) / width) ** 2)
    return torch.clamp(w, min=float(floor)).to(torch.float32)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 dihedral transforms of images ``x`` (..., H, W); k = 0 is the identity.

    k in 0..3 rotates by k * 90 degrees; k in 4..7 does the same after a left-right flip.
    The subgroup {0, 2, 4, 6} = {identity, 180 degrees, left-right flip, up-down flip} is
    what is left of orientation once the major axis has been made horizontal.
    """
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


FLIP_GROUP = (0, 2, 4, 6)  # identity, 180 degrees, left-right, up-down (the group D2)


def flip_errors(target: torch.Tensor, x_hat: torch.Tensor, error) -> torch.Tensor:
    """``error(flip_k(target), x_hat)`` for each flip k of :data:`FLIP_GROUP`: (N, 4) per-image errors."""
    return torch.stack([error(dihedral(target, k), x_hat) for k in FLIP_GROUP], 1)


def best_flip(target: torch.Tensor, errors: torch.Tensor) -> torch.Tensor:
    """Each image of ``target`` under the flip with the smallest of its ``errors`` (N, 4)."""
    cands = torch.stack([dihedral(target, k) for k in FLIP_GROUP], 1)
    return cands[torch.arange(len(target)), errors.argmin(1)]


def canonical_angle(x: torch.Tensor, window: float = 0.35) -> torch.Tensor:
    """Position angle (radians) of the major axis of each image, from windowed second moments.

    The flux (channel mean, negatives clipped) is weighted by a central Gaussian window of
    ``window`` times the frame side so that neighbours near the edge hardly move it.
    Returns (N,) angles of the major axis measured from the x axis.
    """
    n, _, h, w = x.shape
    lum = x.float().mean(1).clamp(min=0.0)
    yy = torch.arange(h, dtype=torch.float32, device=x.device) - (h - 1) / 2
    xx = torch.arange(w, dtype=torch.float32, device=x.device) - (w - 1) / 2
    yy, xx = torch.meshgrid(yy, xx, indexing="ij")
    s = window * max(h, w)
    lum = lum * torch.exp(-(xx**2 + yy**2) / (2 * s * s))
    f = lum.sum((1, 2)).clamp(min=1e-8)
    mx = (lum * xx).sum((1, 2)) / f
    my = (lum * yy).sum((1, 2)) / f
    dx = xx - mx[:, None, None]
    dy = yy - my[:, None, None]
    qxx = (lum * dx * dx).sum((1, 2)) / f
    qyy = (lum * dy * dy).sum((1, 2)) / f
    qxy = (lum * dx * dy).sum((1, 2)) / f
    return 0.5 * torch.atan2(2 * qxy, qxx - qyy)


def canonical_frame(x: torch.Tensor) -> torch.Tensor:
    """Images turned so that the major axis of each is horizontal."""
    return rotate(x, -canonical_angle(x))


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate images ``x`` (N, C, H, W) by ``angle`` (N,) radians about the centre (bilinear, zero fill).

    Angles are measured like :func:`canonical_angle` (from the x axis towards the y axis, in
    array coordinates): an object at angle ``a`` is at ``a + angle`` afterwards, so
    ``canonical_angle(rotate(x, -canonical_angle(x)))`` is ~0.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates to input coordinates: the inverse rotation
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = sin
    theta[:, 1, 0] = -sin
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
