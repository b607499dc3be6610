"""How a galaxy is seen, measured on its image: the position angle of the central galaxy and its
brightest companion, for the nuisance audit (:mod:`.nuisance`).

- its **position angle** from the second moments of the central galaxy's light
  (:func:`position_angle`), binned into 0-45, 45-90, 90-135 and 135-180 degrees,
  or ``round`` when the moment ellipticity ``1 - b/a`` is below 0.1 (the angle
  of a near-round galaxy is noise, so it gets its own category);
- its **brightest companion** (:func:`brightest_companion`): whether a source
  other than the central galaxy is detected (``sep``) and in which quadrant of
  the stamp (TL, TR, BL, BR as displayed, row 0 at the top; ``none``).

Angle convention: degrees in [0, 180), counter-clockwise from the +x axis
(image columns, to the right) with y pointing *up* the displayed image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..image.pool import map_chunks
from ..image.sources import central_index as _central_index
from ..image.sources import detect as _detect
from ..progress import progress
from ..run.pages import PageReleaser

__all__ = ["PA_BINS", "QUADRANTS", "ROUND", "NO_COMPANION", "to_grey", "position_angle", "pa_bin", "brightest_companion",
           "measure_nuisance"]

PA_BINS = ("0-45", "45-90", "90-135", "135-180")
ROUND = "round"
QUADRANTS = ("TL", "TR", "BL", "BR")
NO_COMPANION = "none"


def to_grey(images: Any) -> np.ndarray:
    """N x H x W grey images from N x C x H x W (channel mean), N x H x W or one H x W image."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = arr.mean(axis=1)
    elif arr.ndim != 3:
        raise UserError(f"expected images N x C x H x W or N x H x W, got shape {arr.shape}")
    return arr


def _moments(data: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Position angle (degrees) and ellipticity 1 - b/a of the light inside ``mask``."""
    w = np.where(mask, np.clip(data, 0.0, None), 0.0).astype(np.float64)
    total = w.sum()
    if total <= 0:
        return float("nan"), float("nan")
    rows, cols = np.indices(data.shape, dtype=np.float64)
    x = cols
    y = -rows  # y up the displayed image
    mx, my = (w * x).sum() / total, (w * y).sum() / total
    dx, dy = x - mx, y - my
    ixx = (w * dx * dx).sum() / total
    iyy = (w * dy * dy).sum() / total
    ixy = (w * dx * dy).sum() / total
    pa = np.degrees(0.5 * np.arctan2(2.0 * ixy, ixx - iyy)) % 180.0
    half_trace = 0.5 * (ixx + iyy)
    root = np.sqrt(max(0.25 * (ixx - iyy) ** 2 + ixy**2, 0.0))
    lam1, lam2 = half_trace + root, max(half_trace - root, 0.0)
    ellipticity = 1.0 - np.sqrt(lam2 / lam1) if lam1 > 0 else float("nan")
    return float(pa), float(ellipticity)


def pa_bin(pa: float, ellipticity: float, round_threshold: float) -> str | None:
    """The position-angle bin of a galaxy (``ROUND`` below ``round_threshold`` of ellipticity; None unmeasured)."""
    if not np.isfinite(pa) or not np.isfinite(ellipticity):
        return None
    if ellipticity < round_threshold:
        return ROUND
    return PA_BINS[min(int(pa // 45.0), 3)]


def _quadrant(x: float, y: float, shape: tuple[int, int]) -> str:
    h, w = shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    return ("T" if y < cy else "B") + ("L" if x < cx else "R")


def _measure_one(img: np.ndarray, round_threshold: float, thresh: float, minarea: int,
                 deblend_cont: float, min_flux_ratio: float) -> dict[str, Any]:
    data, objects, seg = _detect(img, thresh, minarea, deblend_cont)
    central = _central_index(objects, seg)
    row: dict[str, Any] = {"pa_deg": float("nan"), "ellipticity": float("nan"), "pa_bin": None,
                           "companion": False, "companion_quadrant": NO_COMPANION,
                           "companion_x": float("nan"), "companion_y": float("nan"),
                           "companion_flux_ratio": float("nan"), "n_sources": int(len(objects))}
    if central is not None:
        pa, e = _moments(data, seg == central + 1)
        row.update(pa_deg=pa, ellipticity=e, pa_bin=pa_bin(pa, e, round_threshold))
    cflux = float(objects["flux"][central]) if central is not None else float("nan")
    others = [i for i in range(len(objects)) if i != central]
    if central is not None and cflux > 0:
        # faint specks (noise peaks, stamp-edge fragments) cannot shape a clustering
        others = [i for i in others if float(objects["flux"][i]) >= min_flux_ratio * cflux]
    if others:
        best = max(others, key=lambda i: float(objects["flux"][i]))
        x, y = float(objects["x"][best]), float(objects["y"][best])
        row.update(companion=True, companion_quadrant=_quadrant(x, y, img.shape), companion_x=x,
                   companion_y=y, companion_flux_ratio=float(objects["flux"][best]) / cflux
                   if central is not None and cflux > 0 else float("nan"))
    return row


def _measure_chunk(start: int, stop: int, cube_path: str, settings: tuple) -> list[dict[str, Any]]:
    """:func:`_measure_one` over rows ``[start, stop)`` of the cube at ``cube_path``."""
    return [_measure_one(img, *settings) for img in to_grey(np.load(cube_path, mmap_mode="r")[start:stop])]


def measure_nuisance(images: Any, ids: Any = None, round_threshold: float = 0.1, thresh: float = 3.0,
                     minarea: int = 5, deblend_cont: float = 0.005, min_flux_ratio: float = 0.01,
                     desc: str = "nuisance", workers: int = 1) -> pd.DataFrame:
    """Position angle and brightest companion of every image, detecting sources once per image.

    Parameters
    ----------
    images : array-like
        N x C x H x W, N x H x W or H x W (a memory-mapped cube is read row by row).
    ids : array-like or None
        Galaxy ids for the ``id`` column (default 0..N-1).
    round_threshold : float
        Ellipticity ``1 - b/a`` below which the position angle is ``round``.
    thresh, minarea, deblend_cont : float, int, float
        sep detection threshold (in noise sigmas, noise from the stamp border),
        minimum pixels per source and deblending contrast.
    min_flux_ratio : float
        Sources fainter than this fraction of the central galaxy's flux are not
        companions (on SDSS stamps they are mostly noise peaks and fragments cut
        by the stamp edge).
    desc : str
        Progress-bar label.
    workers : int
        Processes sharing the images, when ``images`` is a whole ``.npy`` file opened with
        ``np.load(..., mmap_mode="r")`` (each process maps the file itself); otherwise one.

    Returns
    -------
    DataFrame
        id, pa_deg, pa_bin (None where no central galaxy was found), ellipticity,
        companion, companion_quadrant, companion_x, companion_y,
        companion_flux_ratio, n_sources.
    """
    arr = images if hasattr(images, "shape") else np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    n = arr.shape[0]
    settings = (round_threshold, thresh, minarea, deblend_cont, min_flux_ratio)
    source = _whole_file(arr)
    if workers > 1 and source is not None:
        rows = [r for part in map_chunks(_measure_chunk, n, source, settings, chunk=512, workers=workers, desc=desc)
                for r in part]
    else:
        pages, rows = PageReleaser(arr), []  # read once: a memory map's pages need not stay resident
        row_bytes = arr[:1].nbytes  # a slice of a memmap: no read
        for i in progress(range(n), total=n, desc=desc, unit="img"):
            pages.read(row_bytes)
            rows.append(_measure_one(to_grey(arr[i : i + 1])[0], *settings))
    table = pd.DataFrame(rows)
    table.insert(0, "id", np.arange(n) if ids is None else np.asarray(ids))
    cols = ["id", "pa_deg", "pa_bin", "ellipticity", "companion", "companion_quadrant",
            "companion_x", "companion_y", "companion_flux_ratio", "n_sources"]
    return table[cols] if n else pd.DataFrame(columns=cols)


def _whole_file(arr: Any) -> str | None:
    """The path of the ``.npy`` that ``arr`` maps in full, or None (an array in memory, a slice)."""
    name = getattr(arr, "filename", None)
    if not isinstance(arr, np.memmap) or not name:
        return None
    try:
        whole = np.load(name, mmap_mode="r")
    except (OSError, ValueError):
        return None
    same = whole.shape == arr.shape and whole.dtype == arr.dtype and whole.offset == arr.offset
    return str(name) if same else None


def position_angle(images: Any, round_threshold: float = 0.1, **kw: Any) -> pd.DataFrame:
    """Position angle of the central galaxy of each image, from its light's second moments.

    The central galaxy is the ``sep`` source covering the stamp centre; its
    isophotal pixels (background-subtracted, negatives clipped) weight the
    moments. Returns a DataFrame with ``pa_deg`` (0-180, counter-clockwise from
    +x, y up), ``ellipticity`` (1 - b/a) and ``pa_bin`` (one of :data:`PA_BINS`,
    ``round`` below ``round_threshold``, None when nothing is detected).
    """
    t = measure_nuisance(images, round_threshold=round_threshold, **kw)
    return t[["pa_deg", "ellipticity", "pa_bin"]]


def brightest_companion(images: Any, **kw: Any) -> pd.DataFrame:
    """The brightest ``sep`` source other than the central galaxy, per image.

    Returns a DataFrame with ``companion`` (bool), ``companion_quadrant``
    (TL/TR/BL/BR of the displayed stamp, row 0 on top, or ``none``), its pixel
    position and flux ratio to the central galaxy.
    """
    t = measure_nuisance(images, **kw)
    return t[["companion", "companion_quadrant", "companion_x", "companion_y", "companion_flux_ratio"]]


# --- the audit ------------------------------------------------------------------------
