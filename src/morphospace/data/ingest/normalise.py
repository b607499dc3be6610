"""The normalisations of a cube row: ``asinh`` (the default) and ``minmax`` (AstroVaDEr).

``asinh`` (the default)
    Per band, subtract the sky (median of the frame's border ring) and divide every
    band by one robust peak of the *central* galaxy (the 99th percentile of the
    central quarter of the crop, all bands together so colour is kept), then
    ``asinh(x / (s * peak)) / asinh(1 / s)`` with ``s = asinh_softening``, clipped to
    [-0.2, 1.5] (the peak maps to 1). Scaling by the central galaxy rather than the
    brightest pixel means a bright star in the frame does not squash the galaxy we
    care about (per-image min-max does exactly that), and the asinh stretch keeps
    faint outer structure (arms, tidal features) visible next to a bright bulge.
``minmax`` (the AstroVaDEr preset)
    Per-image ``(x - min) / (max - min)``: exactly [0, 1], as published.

8-bit rows are normalised by lookup: the stretch is evaluated on the 256 levels of each band
and the pixels looked up (:func:`level_luts`), with the same float32 values as the float path.

Libraries: ``minmax`` is astropy's :class:`~astropy.visualization.ManualInterval` (the same
float32 operations as ours, so the same bytes). The asinh stretch stays ours: astropy's
:class:`~astropy.visualization.AsinhStretch` is the same curve but divides in another order
and moves 17 % of the pixels by one float32 ulp, so every cube would change its bytes. The
sky stays the median of the border ring: ``sigma_clipped_stats`` gives other numbers, and
the median is already robust to the few stars in the ring.
"""

from __future__ import annotations

import numpy as np

from .pixels import border_ring
from .spec import PreprocessSpec

# the asinh stretch's range: sky noise far below zero carries no information, nor a saturated core
# far above the peak
STRETCH_LOW, STRETCH_HIGH = -0.2, 1.5


def percentile_rows(v: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(row, q)`` (linear interpolation) of each row of ``v``, by one partition.

    Less overhead than ``np.percentile`` on small arrays.

    Parameters
    ----------
    v : ndarray, shape (k, n)
        The rows; partitioned in place.
    q : float
        Percentile, 0-100.

    Returns
    -------
    ndarray, shape (k,)
    """
    k = (v.shape[1] - 1) * q / 100.0
    i = int(k)
    v.partition(i, axis=1)  # one kth: numpy's fast (SIMD) selection; the next value is the least above
    lo = v[:, i]
    hi = v[:, i + 1:].min(axis=1) if i + 1 < v.shape[1] else lo
    return lo + (hi - lo) * (k - i)


def _percentile(v: np.ndarray, q: float) -> float:
    """``np.percentile(v, q)`` (linear interpolation), see :func:`percentile_rows`."""
    return float(percentile_rows(np.array(v).reshape(1, -1), q)[0])


def _asinh_scale(spec: PreprocessSpec, centre_minus_sky: np.ndarray, x_for_fallback) -> float:
    """The divisor of the asinh stretch: softening x the 99th percentile of the central galaxy."""
    peak = _percentile(centre_minus_sky, 99.0)
    if not peak > 0:  # no galaxy light in the centre: fall back on the brightest pixel
        peak = float(np.abs(x_for_fallback()).max()) or 1.0
    return spec.softening * peak


def normalise(arr: np.ndarray, spec: PreprocessSpec, sky: np.ndarray | None = None) -> np.ndarray:
    """Normalise a cropped, resized image (see the module docstring for the two normalisations).

    Parameters
    ----------
    arr : ndarray, shape (S, S, C), float
        The image.
    spec : PreprocessSpec
        ``normalise`` and ``softening``.
    sky : ndarray, shape (C,), optional
        The per-channel sky level; by default the median of the image's border ring.

    Returns
    -------
    ndarray, shape (S, S, C), float32
    """
    if spec.normalise == "minmax":
        from astropy.visualization import ManualInterval  # here: it imports matplotlib (~1 s)

        lo, hi = float(arr.min()), float(arr.max())
        if not hi > lo:
            return np.zeros(arr.shape, dtype=np.float32)
        return ManualInterval(lo, hi)(arr, clip=True).astype(np.float32, copy=False)
    sky = np.median(border_ring(arr), axis=0) if sky is None else np.asarray(sky)
    x = (arr - sky.astype(np.float32)).astype(np.float32)
    h, w = x.shape[:2]
    scale = _asinh_scale(spec, x[h // 4: 3 * h // 4, w // 4: 3 * w // 4], lambda: x)
    x *= np.float32(1.0 / scale)
    out = np.arcsinh(x, out=x)
    out *= np.float32(1.0 / np.arcsinh(1.0 / spec.softening))
    # Sky noise far below zero carries no information; clip it so it cannot dominate a loss.
    return np.clip(out, STRETCH_LOW, STRETCH_HIGH, out=out)


_LEVELS = np.arange(256, dtype=np.float32) * np.float32(1 / 255)


def level_luts(levels: np.ndarray, skies: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The normalisation of a batch of 8-bit rows as lookup tables over their 256 levels.

    Band ``b`` of row ``i`` normalised is ``luts[i, b][levels[i, ..., b]]``: the values of
    converting to float and calling :func:`normalise` (to float32 rounding). The robust
    peaks of the whole batch are found by one partition.

    Parameters
    ----------
    levels : ndarray, shape (n, S, S, B), uint8
        The rows, cropped and resized.
    skies : ndarray, shape (n, B)
        Per row, the per-band sky (0-1).
    spec : PreprocessSpec
        ``normalise`` and ``softening``.

    Returns
    -------
    ndarray, shape (n, B, 256), float32
    """
    n, s, _, bands = levels.shape
    skies = np.asarray(skies, dtype=np.float32).reshape(n, bands)
    if spec.normalise == "minmax":
        from astropy.visualization import ManualInterval

        flat = levels.reshape(n, -1)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        luts = np.zeros((n, bands, 256), dtype=np.float32)
        for i in np.flatnonzero(hi > lo):
            luts[i] = ManualInterval(_LEVELS[lo[i]], _LEVELS[hi[i]])(_LEVELS, clip=True)
        return luts
    q = s // 4
    # level * float32(1/255): the values of _LEVELS, without a gather
    centre = np.multiply(levels[:, q: 3 * q, q: 3 * q], np.float32(1 / 255), dtype=np.float32)
    centre -= skies[:, None, None, :]
    peaks = percentile_rows(centre.reshape(n, -1), 99.0).astype(np.float64)  # as _asinh_scale
    for r in np.flatnonzero(~(peaks > 0)):  # no galaxy light in the centre: the brightest pixel
        peaks[r] = float(np.abs(_LEVELS[levels[r]] - skies[r]).max()) or 1.0
    inv = (1.0 / (spec.softening * peaks)).astype(np.float32)
    luts = _LEVELS[None, None, :] - skies[:, :, None]
    luts *= inv[:, None, None]
    np.arcsinh(luts, out=luts)
    luts *= np.float32(1.0 / np.arcsinh(1.0 / spec.softening))
    return np.clip(luts, STRETCH_LOW, STRETCH_HIGH, out=luts)


def normalise_levels(a: np.ndarray, spec: PreprocessSpec, sky: np.ndarray, channels: int) -> np.ndarray:
    """:func:`normalise` of an 8-bit S x S x B image, as a lookup table over its 256 levels per band.

    Same values as converting to float and calling :func:`normalise` (to float32
    rounding), at about half the cost: the stretch is evaluated on 256 levels per band
    and the pixels are looked up.

    Parameters
    ----------
    a : ndarray, shape (S, S, B), uint8
        The row's levels, cropped and resized.
    spec : PreprocessSpec
        ``normalise`` and ``softening``.
    sky : ndarray, shape (B,)
        The per-band sky (0-1).
    channels : int
        Output channels (3 from one band repeats it).

    Returns
    -------
    ndarray, shape (channels, S, S), float32
    """
    bands = a.shape[2]
    lut = level_luts(a[None], np.asarray(sky, dtype=np.float32)[:bands][None], spec)[0]
    out = np.empty((channels, a.shape[0], a.shape[1]), dtype=np.float32)
    for c in range(channels):
        b = min(c, bands - 1)
        np.take(lut[b], a[..., b], out=out[c])
    return out
