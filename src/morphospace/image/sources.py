"""Source detection in one cutout (``sep``): the central galaxy and everything else.

Shared by the nuisance audit (where is the brightest companion?) and by neighbour masking
(hide the companions from the VaDE). Framework-free: numpy and sep only.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("morphospace")

__all__ = ["background", "detect", "central_index"]


def background(img: np.ndarray) -> tuple[float, float]:
    """Sky level and noise (robust sigma) from the stamp's border (the galaxy is in the middle)."""
    h, w = img.shape
    bw = max(2, min(h, w) // 10)
    border = np.concatenate([img[:bw].ravel(), img[-bw:].ravel(), img[:, :bw].ravel(), img[:, -bw:].ravel()])
    level = float(np.median(border))
    sigma = 1.4826 * float(np.median(np.abs(border - level)))
    # noiseless (synthetic or clipped) stamps: a floor relative to the peak keeps sep working
    floor = max(1e-3 * float(img.max() - level), 1e-6)
    return level, max(sigma, floor)


def detect(img: np.ndarray, thresh: float, minarea: int, deblend_cont: float):
    """``(data, objects, segmentation)`` of one grey stamp; ``data`` is background-subtracted.

    ``thresh`` is in units of the border noise. On a stamp sep cannot handle (it raises plain
    exceptions on pathological inputs) there are no objects and an empty segmentation map.
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
    """The object covering the stamp's centre, else the nearest one within 10% of the side."""
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
