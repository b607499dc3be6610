"""Framing each galaxy by its own size: the crop that makes every galaxy fill the same share of its row.

Cutouts made at a fixed angular size show a nearby galaxy filling the frame and a distant one
as a speck; a fixed centre crop passes that on, and apparent size (mostly distance, a
nuisance) becomes the first thing a model sees. With ``preprocess.framing = "galaxy"`` each
frame is cropped to a centred square of side ``preprocess.galaxy_r90s`` x the central galaxy's
R90, so that every galaxy fills the same share of its cube row whatever its distance.

R90 here is the radius, from the frame's centre, that holds 90% of the light above the sky of
the central galaxy's connected pixels brighter than 3 sigma of the sky (sky and sigma: the
median and 1.4826 x MAD of the frame's border, a tenth of its side wide), measured on the
point-symmetric part of the grey sample that the quality checks take anyway (about 100 px a
side): the pixel-wise minimum of the frame and the frame turned by 180 degrees, in which a
neighbour, having no twin across the centre, does not join the galaxy. On sdss-gz1 shrunk by a
known factor of 1-3 (``benchmarks/make_zoomed_survey.py``) it recovers the factor to a median
2% (scatter 4%, the MAD of the log ratio; off by more than 35% for 2% of the galaxies). The
default of 4.3 R90 gives sdss-gz1's median galaxy the fixed 0.5 crop (its cutouts are already
scaled to each galaxy's Petrosian R90). Framework-free: numpy and scipy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["galaxy_r90", "galaxy_crop", "size_spread", "framing_for", "survey_crop", "MIN_CROP", "DECODE_CROP",
           "SIGMA", "AUTO_SAMPLE", "AUTO_SPREAD", "CROP_ANCHOR", "CROP_STEP"]

SIGMA = 3.0  # detection threshold above the sky, in units of its robust sigma
MIN_CROP = 0.05  # the smallest crop, as a fraction of the frame (a galaxy of a few pixels)
DECODE_CROP = 0.25  # JPEGs are decoded at the scale that keeps `size` pixels across a crop this small
MIN_LEVEL = 1.5  # threshold floor, in the sample's units (8-bit levels: JPEG noise of a flat sky)
AUTO_SAMPLE = 200  # frames whose sizes decide ``framing = "auto"``
# ``framing = "auto"`` frames by the galaxy when the 10-90% range of apparent sizes (R90 over the
# frame side) spans at least this factor: halfway, in log, between what cutouts scaled to each
# galaxy's size show from measurement scatter and profile differences alone (sdss-gz1 1.85, 1.73-1.99
# over samples of 200; the synthetic survey 1.54) and what the mildest fixed-angle survey we made
# shows (sdss-gz1 shrunk by 1-3: 2.67-3.03 over five samples of 200).
AUTO_SPREAD = 2.2
# ``crop = "auto"`` snaps the sample's median crop to the ladder CROP_ANCHOR x CROP_STEP**k, which holds
# 0.25, 0.5 and 1 exactly: sdss-gz1's medians over samples of 200 (0.50-0.52) and the synthetic
# survey's (0.52-0.53) both give 0.5, the crop these were measured with, and a survey that differs
# from another by a few galaxies gets the same crop, not one moved by the sample's scatter.
CROP_ANCHOR = 0.5
CROP_STEP = 2 ** (1 / 3)


def border_pixels(grey: np.ndarray) -> np.ndarray:
    """The pixels of a frame's border, a tenth of its side wide, that :func:`border_sky` measures.

    Parameters
    ----------
    grey : ndarray, shape (..., H, W)
        A frame, or frames in the leading axes.

    Returns
    -------
    ndarray, shape (..., n)
    """
    h, w = grey.shape[-2:]
    bw = max(2, min(h, w) // 10)
    lead = grey.shape[:-2]
    return np.concatenate([grey[..., :bw, :].reshape(*lead, -1), grey[..., -bw:, :].reshape(*lead, -1),
                           grey[..., bw:-bw, :bw].reshape(*lead, -1), grey[..., bw:-bw, -bw:].reshape(*lead, -1)],
                          axis=-1)


def border_sky(grey: np.ndarray):
    """The sky of a frame and its noise: the median and the robust sigma (1.4826 x MAD) of its
    border, a tenth of its side wide (where a galaxy that fills most of the frame still leaves sky).

    Parameters
    ----------
    grey : ndarray, shape (..., H, W)
        A frame, or frames in the leading axes (e.g. a row's bands, or rows x bands).

    Returns
    -------
    (float, float), or two arrays of the leading shape
    """
    border = border_pixels(grey)
    sky = np.median(border, axis=-1)
    sigma = 1.4826 * np.median(np.abs(border - sky[..., None]), axis=-1)
    if not grey.shape[:-2]:
        return float(sky), float(sigma)
    return sky, sigma


def galaxy_r90(grey: np.ndarray, unit: float = 1.0) -> float | None:
    """R90 of the central galaxy of a grey frame, in its pixels (see the module docstring).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The frame, or a regular sample of it, in any units.
    unit : float
        One 8-bit level in the frame's units (1 for 0-255 levels, 1/255 for 0-1 display
        values, 0 for flux data): the threshold is at least ``MIN_LEVEL`` of them, so the
        JPEG noise of a flat sky is not taken for the galaxy.

    Returns
    -------
    float or None
        None when no source covers the frame's central pixels, or the frame is flat.
    """
    from scipy import ndimage

    g = np.asarray(grey, dtype=np.float32)
    h, w = g.shape
    # The point-symmetric part of the light about the frame's centre: a galaxy is nearly symmetric,
    # a neighbour has no twin across the centre and drops out (as neighbour masking assumes).
    g = np.minimum(g, g[::-1, ::-1])
    sky, sigma = border_sky(g)
    above = g - sky
    # at least 1e-3 of the peak: a noiseless (simulated) frame has sigma = 0
    threshold = max(SIGMA * sigma, MIN_LEVEL * unit, 1e-3 * float(above.max()))
    if not threshold > 0:  # a flat frame
        return None
    labels, _ = ndimage.label(above > threshold)
    cy, cx = h // 2, w // 2
    centre = labels[max(0, cy - 1):cy + 2, max(0, cx - 1):cx + 2]
    ids = centre[centre > 0]
    if ids.size == 0:
        return None
    yy, xx = np.nonzero(labels == np.bincount(ids).argmax())
    light = above[yy, xx]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(light[order], dtype=np.float64)
    return float(r[order][min(len(r) - 1, int(np.searchsorted(cum, 0.9 * cum[-1])))])


def galaxy_crop(grey: np.ndarray, r90s: float, unit: float = 1.0) -> float | None:
    """The crop, as a fraction of the frame's shorter side, that frames the central galaxy.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The frame or a regular sample of it (the fraction is the same).
    r90s : float
        The crop's side in units of the galaxy's R90.
    unit : float
        As for :func:`galaxy_r90`.

    Returns
    -------
    float or None
        In [``MIN_CROP``, 1]; None when no central galaxy is found (the caller keeps its
        fixed crop and flags the frame ``unframed``).
    """
    r90 = galaxy_r90(grey, unit)
    if r90 is None:
        return None
    side = max(r90, 0.5) * r90s
    return float(np.clip(side / min(grey.shape), MIN_CROP, 1.0))


def _measured(crops) -> np.ndarray | None:
    """The sizes measured among ``crops`` (None: no galaxy found), or None where fewer than 20 were:
    too few for a survey's spread or median."""
    sizes = np.array([c for c in crops if c is not None], dtype=np.float64)
    return sizes if len(sizes) >= 20 else None


def size_spread(crops) -> float | None:
    """How widely a survey's apparent sizes spread: the ratio of the 90th to the 10th percentile.

    Parameters
    ----------
    crops : sequence of float or None
        Per sampled frame, :func:`galaxy_crop` (any measure proportional to R90 over the
        frame side); None where no galaxy was found.

    Returns
    -------
    float or None
        None when fewer than 20 frames had a galaxy.
    """
    sizes = _measured(crops)
    if sizes is None:
        return None
    lo, hi = np.percentile(np.log(sizes), [10, 90])
    return float(np.exp(hi - lo))


def framing_for(spread: float | None) -> str:
    """The framing ``framing = "auto"`` picks for a survey whose sizes spread by ``spread``.

    Parameters
    ----------
    spread : float or None
        From :func:`size_spread`.

    Returns
    -------
    str
        ``"galaxy"`` at or above :data:`AUTO_SPREAD` (cutouts at a fixed angular size),
        else ``"fixed"`` (cutouts already scaled to each galaxy, or too few galaxies to tell).
    """
    return "galaxy" if spread is not None and spread >= AUTO_SPREAD else "fixed"


def survey_crop(crops) -> float | None:
    """The fixed crop of ``crop = "auto"``: the one that frames a survey's median galaxy.

    The median of the sampled frames' :func:`galaxy_crop` snapped, in log, to the nearest step
    of the ladder ``CROP_ANCHOR x CROP_STEP**k`` (..., 0.315, 0.397, 0.5, 0.63, 0.794, 1), within
    [``MIN_CROP``, 1]. A survey cut out tighter about its galaxies (a galaxy filling its frame)
    gets a wider crop, one cut out wider a tighter crop, so that the galaxies fill the same
    share of their cube rows as sdss-gz1's do at its 0.5.

    Parameters
    ----------
    crops : sequence of float or None
        As for :func:`size_spread`: the sample that chose the framing chooses the crop too.

    Returns
    -------
    float or None
        A step of the ladder; None where :func:`size_spread` is (too few galaxies found).
    """
    sizes = _measured(crops)
    if sizes is None:
        return None
    steps = round(float(np.log(np.median(sizes) / CROP_ANCHOR) / np.log(CROP_STEP)))
    return float(np.clip(round(CROP_ANCHOR * CROP_STEP ** steps, 3), MIN_CROP, 1.0))
