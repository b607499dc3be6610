"""Source detection in one cutout (``sep``): the central galaxy and everything else.

Shared by the nuisance audit (where is the brightest companion?) and by neighbour masking
(hide the companions from the VaDE). Framework-free: numpy and sep only.

The sky level and noise are the median and MAD of the stamp's border, our own two lines:
``sep.Background`` fits one mesh over a 64 px stamp, galaxy included, and
``astropy.stats.sigma_clipped_stats`` clips to a smaller sigma; on 200 sdss-gz1 stamps
they changed the number of sources found in 46 % and 43 % of them (14 % fewer, 14 % more
sources), which would move the masks the defaults were measured with.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("morphospace")

__all__ = ["border_pixels", "border_stats", "sky_pixels", "background", "detect", "central_index"]


def border_pixels(img: np.ndarray) -> np.ndarray:
    """The pixels of a stamp's border, a tenth of its side wide (corners twice), flat."""
    h, w = img.shape
    bw = max(2, min(h, w) // 10)
    return np.concatenate([img[:bw].ravel(), img[-bw:].ravel(), img[:, :bw].ravel(), img[:, -bw:].ravel()])


def border_stats(img: np.ndarray) -> tuple[float, float]:
    """Median and robust sigma (1.4826 x MAD) of a stamp's border, a tenth of its side wide.

    Parameters
    ----------
    img : ndarray, shape (H, W)
        One channel of a stamp (the galaxy in the middle).

    Returns
    -------
    level : float
        The median of the border pixels.
    sigma : float
        Their robust standard deviation (0 for a flat border).
    """
    return _level_and_sigma(border_pixels(img))


def sky_pixels(img: np.ndarray) -> np.ndarray:
    """The border's pixels within 3 robust sigma of its median (its one value where the border is
    flat): the sky's own values, without a neighbour that reaches the border."""
    border = border_pixels(img)
    level, sigma = _level_and_sigma(border)
    return border[np.abs(border - level) <= 3 * sigma]


def _level_and_sigma(border: np.ndarray) -> tuple[float, float]:
    level = float(np.median(border))
    sigma = 1.4826 * float(np.median(np.abs(border - level)))
    if np.mean(border == level) > 0.2:
        # a sky clipped at zero, or 8-bit counts below one level of noise: half the border at one value
        # made the MAD collapse (to 0.015 of the noise), and noise was detected and masked as companions;
        # the pixels above that value are the noise's upper half, whose median deviation gives it back
        above = border[border > level] - level
        if len(above) >= 10:
            sigma = max(sigma, 1.4826 * float(np.median(above)))
    return level, sigma


def background(img: np.ndarray) -> tuple[float, float]:
    """Sky level and noise of a stamp, from its border (:func:`border_stats`).

    Parameters
    ----------
    img : ndarray, shape (H, W)
        A grey stamp.

    Returns
    -------
    level : float
        The sky level.
    sigma : float
        The sky noise, at least 1e-3 of the peak above the sky (so sep works on noiseless stamps).
    """
    level, sigma = border_stats(img)
    # noiseless (synthetic or clipped) stamps: a floor relative to the peak keeps sep working
    floor = max(1e-3 * float(img.max() - level), 1e-6)
    return level, max(sigma, floor)


def detect(img: np.ndarray, thresh: float, minarea: int, deblend_cont: float):
    """Detect the sources of one grey stamp with ``sep.extract``.

    On a stamp sep cannot handle (it raises plain exceptions on pathological inputs) there
    are no objects and an empty segmentation map.

    Parameters
    ----------
    img : ndarray, shape (H, W)
        A grey stamp.
    thresh : float
        Detection threshold in units of the border noise (:func:`background`).
    minarea : int
        Pixels a source needs.
    deblend_cont : float
        sep's deblending contrast.

    Returns
    -------
    data : ndarray, shape (H, W), float32
        The stamp, background-subtracted.
    objects : numpy structured array
        sep's catalogue (``x``, ``y``, ``a``, ``b``, ``theta``, ``flux``, ...), one row per source.
    segmentation : ndarray, shape (H, W), int32
        0 for sky, ``k + 1`` for the pixels of source ``k``.
    """
    import sep

    level, sigma = background(img)
    data = np.ascontiguousarray(img - level, dtype=np.float32)
    try:
        objects, seg = sep.extract(data, thresh, err=sigma, minarea=minarea,
                                   deblend_cont=deblend_cont, segmentation_map=True)
    except Exception as exc:
        log.debug("sep failed on a stamp: %s", exc)
        return data, np.zeros(0), np.zeros(data.shape, dtype=np.int32)
    return data, objects, seg


def central_index(objects, seg: np.ndarray) -> int | None:
    """The central galaxy: the object covering the stamp's centre, else the nearest one within 10% of the side.

    Parameters
    ----------
    objects : numpy structured array
        sep's catalogue (:func:`detect`).
    seg : ndarray, shape (H, W)
        The segmentation map.

    Returns
    -------
    int or None
        Its row in ``objects``; None when no object is near the centre.
    """
    if len(objects) == 0:
        return None
    h, w = seg.shape
    label = int(seg[h // 2, w // 2])
    if label > 0:
        return label - 1
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    d = np.hypot(objects["x"] - cx, objects["y"] - cy)
    i = int(np.argmin(d))
    return i if d[i] <= 0.1 * max(h, w) else None
