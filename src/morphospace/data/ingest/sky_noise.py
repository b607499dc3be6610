"""The sky of a cube row as its light shows it: level, noise, the noise's grain, its clip floor, and new
noise like it.

Two places change a galaxy's image the way a survey would show it otherwise, and both need the
sky's noise to stay what the row's own sky shows: the SSL head's nuisance views
(:mod:`morphospace.ssl.augment`: beyond a shrunk or turned frame is sky, and the noise that
resampling smooths away is given back) and the intervention test of a run's clusters
(:mod:`morphospace.vade.invariance`). Both measure the sky's level and noise with :func:`sky_level_noise`
(the framing's :func:`~morphospace.data.ingest.framing.border_sky`, with a floor where the
border's MAD is 0). Resampled, compressed cutouts have correlated noise (about 0.7
between neighbouring pixels on sdss-gz1): white noise added to them would read as a new texture.
An 8-bit sky near black is clipped there (:func:`sky_floor`: on sdss-gz1 nearly every row, in some band):
noise added about the sky's level would go below that floor, which the survey would clip again: the
intervention test clips its changes there (the views do not: docs/measurements/invariance.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .framing import border_pixels, border_sky
from .normalise import STRETCH_LOW, normalise
from .spec import PreprocessSpec

__all__ = ["RowSky", "row_sky", "unstretch", "restretch", "sky_level_noise", "sky_floor", "sky_grain", "grained_noise",
           "grey_rows", "grey_as_one", "FLOOR_SHARE"]

# A band's lowest light is a clip floor when at least this share of its border ring sits at it. An
# unclipped sky's lowest pixels are its noise's far tail: an 8-bit level one sigma wide at -3 sigma holds
# 0.6% of a Gaussian sky, the levels below fewer. A clipped sky piles its whole tail below the clip on
# one value: 1% or more wherever the clip is within 2.3 sigma of the level, where noise added or given
# back would cross it most (on sdss-gz1's cube the floors hold 1-20% of their ring).
FLOOR_SHARE = 0.01
# ... and lies below the sky's level by at most this many of its sigmas: a floor holding 1% of a
# Gaussian sky is 2.3 of them below, the rest is margin for the noise of a sky of few levels; a patch
# of the ring far below the sky (a dark defect, a filled mask) is no clip of the sky's noise
FLOOR_SIGMAS = 4.0
# the pixels at a floor hold one stored value; float16 keeps 11 significant bits (a neighbouring value
# is 2^-10 of it away) and undoing the stretch at most 1.12 times a relative change (at -0.2, the
# stretch's clip), so light within 2^-9 of the floor, relative, is on it: well below the next 8-bit
# level up (on sdss-gz1 a third of the floor's light in the median, 1% at the least)
FLOAT16_STEP = 2.0**-9


def unstretch(rows: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Cube rows (..., C, S, S) with the ingest's stretch undone: light in units of each row's peak
    (``asinh``; a ``minmax`` row is its own light). float64."""
    y = np.asarray(rows, dtype=np.float64)
    if spec.normalise != "asinh":
        return y
    s = spec.softening
    return s * np.sinh(y * np.arcsinh(1.0 / s))


def restretch(light: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Rows' light (n, C, S, S) normalised again as the ingest normalises (:func:`normalise`: the
    asinh stretch with each row's peak found anew); a ``minmax`` row keeps its own scale, clipped to
    [0, 1] (the new noise's extremes would lift its sky). float32."""
    out = np.empty(np.shape(light), dtype=np.float32)
    for i, row in enumerate(light):
        if spec.normalise == "asinh":
            out[i] = normalise(np.asarray(row, dtype=np.float32).transpose(1, 2, 0), spec,
                               sky=np.zeros(len(row), dtype=np.float32)).transpose(2, 0, 1)
        else:
            # clipped, not min-max scaled again: the new noise's lowest pixel would become the row's 0
            # and lift its sky (by 3-4 of its sigmas with the noise doubled, on a test galaxy), where
            # clipping keeps the sky's median and cuts only the tail past 0 (3% of such a row's pixels)
            out[i] = np.clip(row, 0.0, 1.0)
    return out


def sky_level_noise(light: np.ndarray):
    """The sky's level and noise of each frame: the median and robust sigma of its border
    (:func:`~morphospace.data.ingest.framing.border_sky`), where that sigma is 0 the spread
    about that level of the border's pixels near it instead (see the comment in the code).

    A sky of few levels (a faint 8-bit sky) can hold one level in most of its border: its MAD is 0,
    and a noise of 0 would give back no noise where resampling smooths it away or a frame uncovers sky.

    Parameters
    ----------
    light : ndarray, shape (..., H, W)
        A frame, or frames in the leading axes (a row's bands, or rows x bands).

    Returns
    -------
    (float, float), or two arrays of the leading shape
    """
    level, sigma = border_sky(light)
    if np.any(np.asarray(sigma) <= 0):
        # the spread about the sky's level of the ring's pixels near it: within 4 of the larger of its
        # levels' step (a faint 8-bit sky: most pixels on one level, a few a step away) and the spread
        # of its middle 90% (a frame half of zeros beside a sky of smooth noise); a neighbour's pixels
        # in the ring, far above, would make the plain spread tens of times the sky's noise
        ring = border_pixels(np.asarray(light, dtype=np.float64))
        off = np.abs(ring - np.median(ring, axis=-1, keepdims=True))
        step = np.min(np.where(off > 0, off, np.inf), axis=-1, keepdims=True)
        low, high = np.percentile(ring, [5.0, 95.0], axis=-1, keepdims=True)
        middle = np.nanstd(np.where((ring >= low) & (ring <= high), ring, np.nan), axis=-1, keepdims=True)
        near = off <= 4.0 * np.maximum(np.where(np.isfinite(step), step, 0.0), middle)
        spread = np.sqrt((np.where(near, off, 0.0) ** 2).sum(-1) / np.maximum(near.sum(-1), 1))
        sigma = np.where(np.asarray(sigma) > 0, sigma, spread.astype(np.asarray(sigma).dtype))  # the light's precision
        sigma = float(sigma) if np.ndim(light) == 2 else sigma
    return level, sigma


def sky_floor(light: np.ndarray, level, sigma, clip: float = -np.inf):
    """The floor at which each frame's sky is clipped (an 8-bit sky near black), or -inf.

    The floor is the lowest light of the frame's border ring (the pixels :func:`sky_level_noise`
    measures) where at least :data:`FLOOR_SHARE` of the ring sits at it, to float16 precision of the
    cube, and it lies below the sky's level by at most ``FLOOR_SIGMAS`` of its noise and above
    ``clip``: the sky's own noise clipped, not a neighbour (above the sky), a dark patch far below
    it, or the ingest's own clip of the stretch (:data:`~.normalise.STRETCH_LOW`, which normalising
    again makes anew). Pixels inside the frame below it (a neighbour's mask filled with unclipped
    sky, odd pixels) do not hide it; the changes clip them with the new noise. Not found (limits): a
    sky whose level is its lowest value (half its ring or more at black: no side below the level tells
    it from a sky of few levels); and the lowest level of an unclipped 8-bit sky whose noise is under
    about a level, where no resampling smoothed it, is taken for one.

    Parameters
    ----------
    light : ndarray, shape (..., H, W)
        A frame, or frames in the leading axes (a row's bands, or rows x bands).
    level, sigma : float or ndarray of the leading shape
        The sky's level and noise (:func:`sky_level_noise`).
    clip : float
        The light at which the ingest clips the stretch (``-inf``: none).

    Returns
    -------
    float, or ndarray of the leading shape
        The floor, in the light's units; -inf where the frame has none.
    """
    light = np.asarray(light)
    ring = border_pixels(light)
    low = ring.min(axis=-1)
    # the ring's lowest light holding the share is a pile: the sky's tail clipped (an unclipped tail's
    # lowest pixels are few and apart); the frame's pixels below it (a neighbour's mask filled with
    # unclipped sky) are clipped with the new noise
    on = (ring <= (low + FLOAT16_STEP * np.abs(low))[..., None]).mean(axis=-1)
    low = np.where(on >= FLOOR_SHARE, low, np.nan)
    level, sigma = np.asarray(level), np.asarray(sigma)
    with np.errstate(invalid="ignore"):
        good = (low < level) & (level - low <= FLOOR_SIGMAS * sigma)
    if np.isfinite(clip):  # black at or below the stretch's clip: normalising again clips there anew
        good &= low > clip + FLOAT16_STEP * abs(clip)
    floor = np.where(good, low, -np.inf).astype(light.dtype)
    return float(floor) if light.ndim == 2 else floor


def sky_grain(light: np.ndarray):
    """The width (sigma, pixels) of the Gaussian that gives white noise the correlation between
    neighbouring sky pixels that the row's border shows; 0 for white noise.

    Parameters
    ----------
    light : ndarray, shape (C, S, S) or (n, C, S, S)
        One row's light (:func:`unstretch`), or rows.

    Returns
    -------
    float, or ndarray (n,)
    """
    light = np.asarray(light)
    rows = light if light.ndim == 4 else light[None]
    w = max(2, rows.shape[-1] // 10)
    strips = np.concatenate([rows[..., :w, :], rows[..., -w:, :]], axis=-2)  # (n, C, 2w, S): rows of sky
    med = np.median(strips, axis=(-2, -1), keepdims=True)
    sigma = 1.4826 * np.median(np.abs(strips - med), axis=(-2, -1), keepdims=True)
    if np.any(sigma <= 0):  # a sky of few levels: its floor (else every pixel off its level reads as a source)
        sigma = np.where(sigma > 0, sigma, sky_level_noise(rows)[1][..., None, None].astype(sigma.dtype))
    strips = strips - med
    # a neighbour in the strips is no part of the sky's grain (one star made it 2 px): its pixels and
    # theirs beside them are left out of the pairs
    source = ndimage.binary_dilation(np.abs(strips) > 3.0 * np.maximum(sigma, 1e-12), structure=np.ones((1, 1, 3, 3)))
    keep = ~(source[..., :-1] | source[..., 1:])
    a, b = strips[..., :-1] * keep, strips[..., 1:] * keep
    axes = (1, 2, 3)
    aa, bb = (a * a).sum(axes), (b * b).sum(axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where((aa > 0) & (bb > 0), (a * b).sum(axes) / np.sqrt(aa * bb), 0.0)
        # neighbours' correlation exp(-1 / 4 s^2)
        grain = np.where(rho > 0.05, np.sqrt(-1.0 / (4.0 * np.log(np.minimum(rho, 0.95)))), 0.0)
    return grain if light.ndim == 4 else float(grain[0])


def grained_noise(shape: tuple, grain, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Gaussian noise of unit variance in each image, of the given grain (see :func:`sky_grain`).

    Parameters
    ----------
    shape : tuple
        ``(..., S, S)``: images in the last two axes.
    grain : float or array
        The Gaussian's width (pixels); an array over the leading axes (e.g. one per row) broadcasts.
    rng : numpy.random.Generator
    dtype : numpy float type
        Of the draw and the result (float32: half the time and memory of a batch).

    Returns
    -------
    ndarray of ``shape`` and ``dtype``
        The white noise smoothed by that Gaussian, wrapping at the edges (by FFT: a whole batch at
        once), rescaled to unit standard deviation; white where the grain is 0.
    """
    field = rng.standard_normal(shape, dtype=dtype)
    g = np.asarray(grain, dtype=np.float64)
    g = g.reshape(g.shape + (1,) * (len(shape) - g.ndim))
    if not np.any(g > 0):
        return field
    fy, fx = np.fft.fftfreq(shape[-2])[:, None], np.fft.rfftfreq(shape[-1])[None, :]
    transfer = np.exp(-2.0 * np.pi**2 * g**2 * (fy**2 + fx**2)).astype(dtype)
    smooth = np.fft.irfft2(np.fft.rfft2(field) * transfer, s=shape[-2:])
    return np.where(g > 0, smooth / smooth.std(axis=(-2, -1), keepdims=True), field)


def grey_rows(rows: np.ndarray) -> np.ndarray:
    """Which rows are grey: every band the same, pixel for pixel (the ingest repeats a grey frame's
    one band in a colour cube, and a colour frame with equal bands gives equal bands too).

    Parameters
    ----------
    rows : ndarray, shape (..., C, S, S)
        Cube rows or their light (:func:`unstretch` keeps equal bands equal).

    Returns
    -------
    ndarray of bool, the leading shape
    """
    rows = np.asarray(rows)
    return np.all(rows == rows[..., :1, :, :], axis=(-3, -2, -1))


def grey_as_one(noise: np.ndarray, grey) -> np.ndarray:
    """``noise`` (..., C, S, S) with each grey row's first band repeated in every band, so that new noise
    leaves a grey row grey; the other rows as they are (the draw itself unchanged)."""
    grey = np.asarray(grey)
    return np.where(grey.reshape(grey.shape + (1, 1, 1)), noise[..., :1, :, :], noise)


class RowSky(NamedTuple):
    """What changing a row as a survey would show it otherwise starts from (:func:`row_sky`): per band
    the sky's ``level`` and noise ``sigma`` (..., C), per row the noise's ``grain`` and whether it is
    ``grey`` (...), per band the ``floor`` its sky is clipped at (..., C; -inf where none)."""

    level: np.ndarray
    sigma: np.ndarray
    grain: np.ndarray
    grey: np.ndarray
    floor: np.ndarray


def row_sky(light: np.ndarray, spec: PreprocessSpec | None = None) -> RowSky:
    """The sky of rows' light (n, C, S, S), or of one row (C, S, S): :func:`sky_level_noise`,
    :func:`sky_grain`, :func:`grey_rows` and :func:`sky_floor`, measured once for every view or change
    of the rows. ``spec``: the cube's normalisation, whose own clip is no floor (a ``minmax`` row has
    none: :func:`restretch` clips it at 0, its lowest); None: no clip known."""
    level, sigma = sky_level_noise(light)
    if spec is not None and spec.normalise != "asinh":
        floor = np.full(np.shape(level), -np.inf, dtype=np.asarray(light).dtype)
    else:
        clip = -np.inf if spec is None else float(unstretch(np.float64(STRETCH_LOW), spec))
        floor = sky_floor(light, level, sigma, clip)
    return RowSky(level, sigma, sky_grain(light), grey_rows(light), floor)

