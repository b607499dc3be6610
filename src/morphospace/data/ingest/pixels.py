"""Pixel operations of the preprocessing: colour to grey, centre crop, resize, border ring, NaN repair.

Resizing is Pillow's (in C, per band in its float ``F`` mode): BOX averages when shrinking,
so the noise does not alias; BICUBIC enlarges; BILINEAR is the published AstroVaDEr recipe.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .spec import PreprocessSpec

# Rec. 709 weights (scikit-image's ``rgb2gray``): those of AstroVaDEr's published preprocessing.
LUMINANCE = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
RING_WIDTH = 0.08  # border ring used for the sky, as a fraction of the shorter side


def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """An H x W x B image with ``channels`` channels.

    Parameters
    ----------
    arr : ndarray, shape (H, W, B)
        The image.
    channels : int
        1: the luminance of RGB (the mean of other band counts); 3: the first three bands
        (one band repeated).

    Returns
    -------
    ndarray, shape (H, W, channels)
    """
    bands = arr.shape[-1]
    if channels == 1:
        if bands == 1:
            return arr
        if bands == 3:
            return (arr @ LUMINANCE)[..., None].astype(np.float32, copy=False)
        return arr.mean(axis=-1, keepdims=True)
    if bands >= 3:
        return arr[..., :3]
    return np.repeat(arr[..., :1], 3, axis=-1)


def crop_box(h: int, w: int, fraction: float) -> tuple[int, int, int, int]:
    """The centred square of side ``fraction`` of the shorter side.

    Parameters
    ----------
    h, w : int
        Frame height and width.
    fraction : float
        Side of the square, as a fraction of ``min(h, w)``.

    Returns
    -------
    tuple of int
        (left, top, right, bottom), as Pillow's ``box``.
    """
    side = max(1, int(round(min(h, w) * fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    return left, top, left + side, top + side


def centre_crop(arr: np.ndarray, fraction: float) -> np.ndarray:
    """The :func:`crop_box` of an H x W (x C) array (a view).

    Parameters
    ----------
    arr : ndarray
        The frame.
    fraction : float
        Side of the square, as a fraction of the shorter side.

    Returns
    -------
    ndarray
    """
    left, top, right, bottom = crop_box(arr.shape[0], arr.shape[1], fraction)
    return arr[top:bottom, left:right]


def resample_filter(spec: PreprocessSpec, side: int) -> Image.Resampling:
    """The Pillow filter that takes a crop of ``side`` pixels to ``spec.size``.

    Parameters
    ----------
    spec : PreprocessSpec
        Its ``resample`` (``"box"`` or ``"bilinear"``) and ``size``.
    side : int
        Side of the crop.

    Returns
    -------
    PIL.Image.Resampling
    """
    if spec.resample == "bilinear":
        return Image.Resampling.BILINEAR
    # BOX averages when shrinking (no aliasing of noise); BICUBIC when enlarging.
    return Image.Resampling.BOX if side >= spec.size else Image.Resampling.BICUBIC


def resize(arr: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    """Resize an H x W x C float image to ``size`` x ``size`` (Pillow's 'F' mode per band).

    Parameters
    ----------
    arr : ndarray, shape (H, W, C)
        The image.
    size : int
        Output side.
    resample : PIL.Image.Resampling
        The filter (:func:`resample_filter`).

    Returns
    -------
    ndarray, shape (size, size, C), float32
    """
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr.astype(np.float32, copy=False)
    out = np.empty((size, size, arr.shape[2]), dtype=np.float32)
    for c in range(arr.shape[2]):
        band = Image.fromarray(np.ascontiguousarray(arr[..., c], dtype=np.float32), mode="F")
        out[..., c] = np.asarray(band.resize((size, size), resample))
    return out


def ring_mask(h: int, w: int, width_fraction: float = RING_WIDTH) -> np.ndarray:
    """The frame's outer ring, where the sky is measured.

    Parameters
    ----------
    h, w : int
        Frame height and width.
    width_fraction : float
        Ring width, as a fraction of the shorter side (at least one pixel).

    Returns
    -------
    ndarray, shape (h, w), bool
    """
    b = max(1, int(round(min(h, w) * width_fraction)))
    mask = np.zeros((h, w), dtype=bool)
    mask[:b, :] = mask[-b:, :] = mask[:, :b] = mask[:, -b:] = True
    return mask


def border_ring(arr: np.ndarray, width_fraction: float = RING_WIDTH) -> np.ndarray:
    """Pixels of the outer ring of the frame (:func:`ring_mask`).

    Parameters
    ----------
    arr : ndarray, shape (H, W, C)
        The frame.
    width_fraction : float
        Ring width, as a fraction of the shorter side.

    Returns
    -------
    ndarray, shape (N, C)
    """
    return arr[ring_mask(arr.shape[0], arr.shape[1], width_fraction)]


_RING_IMAGES: dict = {}


def ring_image(w: int, h: int) -> Image.Image:
    """The ring mask as a Pillow 'L' image (a histogram mask), cached per frame size.

    Parameters
    ----------
    w, h : int
        Frame width and height (Pillow's order).

    Returns
    -------
    PIL.Image.Image
    """
    img = _RING_IMAGES.get((w, h))
    if img is None:
        if len(_RING_IMAGES) > 64:
            _RING_IMAGES.clear()
        img = _RING_IMAGES[(w, h)] = Image.fromarray(ring_mask(h, w).astype(np.uint8) * 255)
    return img


def repair_nonfinite(arr: np.ndarray) -> np.ndarray:
    """Replace NaN/inf by the per-band median of the finite pixels (0 for a band without any).

    Parameters
    ----------
    arr : ndarray, shape (H, W, B)
        The frame.

    Returns
    -------
    ndarray
        ``arr`` itself when all is finite, else a repaired copy.
    """
    if np.isfinite(arr).all():
        return arr
    arr = arr.copy()
    for c in range(arr.shape[-1]):
        band = arr[..., c]
        good = band[np.isfinite(band)]
        band[~np.isfinite(band)] = np.median(good) if good.size else 0.0
    return arr
