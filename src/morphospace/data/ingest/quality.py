"""The pixel-level quality checks: is this frame a galaxy at all?

Quality checks (on the whole frame, before cropping), each a flag:

``blank``
    Near-constant frame: for rendered (8/16-bit) images, the 0.5-99.5 percentile
    range of the grey levels is below ``blank_contrast`` of full scale and nothing in the
    central third stands out above the frame's 99.5th percentile by that much
    (:attr:`FrameStats.centre_hi`): a galaxy a tenth of the frame's side covers 1 % of it,
    too little to move the frame's percentile, and such frames of a fixed-angle survey
    were flagged blank. A frame whose centre stands :data:`SIGNAL_SIGMAS` of its sky's noise above
    the sky is a detection and never blank: linear 16-bit data hold faint galaxies in a few
    hundredths of the scale that the survey's bright ones fill, and an 8-bit galaxy 15 levels
    above a sky of a level's noise is 15 sigma (the noise of 8-bit frames is read from the
    border's histogram, at least a level). For flux data
    (FITS, float), the standard deviation is below ``blank_std`` of the largest
    absolute value. More than half the pixels NaN/inf is blank too.
``not_galaxy``
    A rendered page rather than the sky (e.g. an image service's "image not
    available" frame): real sky always has noise, so its commonest exact value
    covers a small part of the frame, and a real frame has few sharp steps. Flagged:
    a frame whose commonest exact value covers at least ``flat_fraction`` of it at a
    level that is not near black (for flux data: at any level); a frame with at
    least 30 % of one exact value and sharp-edged strokes (text, graphics: >= 1.5 %
    of neighbouring pixel pairs jump by half the range); a frame whose border is much
    brighter than its centre (a white page with dark text). Margins on the 3,359
    real frames of sdss-gz1: the commonest value covers at most 48 % (at a
    near-black level; at most 6 % when the level is not near black), sharp pairs are
    at most 0.5 % (a star field crossed by a satellite trail), the border is never
    brighter than the centre; rendered pages give 80-93 % and 4 %.

8-bit frames (the common case) are judged in batches from Pillow histograms of a sample of
their pixels (:mod:`~morphospace.data.ingest.histograms`), which clear the plain galaxies
without the per-frame statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import BadImage
from .pixels import ring_mask, to_channels
from .spec import PreprocessSpec

DARK_LEVEL = 0.1  # a flat rendered background above this (of full scale) is a page, not sky
FLAT_WITH_EDGES = 0.3  # exact-value fraction from which sharp strokes mark a rendered page
EDGE_FRACTION = 0.015  # fraction of neighbouring pairs with a jump of half the range
EDGE_JUMP = 0.5
# a centre this many of the sky's robust sigmas above the sky holds a source (noise alone reaches
# ~4-5 sigmas over a 100 px square)
SIGNAL_SIGMAS = 10.0


@dataclass
class FrameStats:
    """Grey-level statistics of a whole frame, on the scale of the data (display: 0-1).

    The fraction of sharp steps (:meth:`edge_fraction`) is computed only when asked: only
    frames with a flat background need it.

    Attributes
    ----------
    lo, hi : float
        0.5th and 99.5th percentiles.
    vmin, vmax : float
        Extremes.
    std : float
        Standard deviation (NaN for 8-bit frames, which are judged on their range).
    mode_fraction, mode_level : float
        Fraction of the finite pixels sharing the commonest exact value, and that value.
    ring_median, centre_median : float
        Medians of the border ring and of the central third.
    grey : ndarray or PIL.Image.Image
        H x W grey levels (NaN where not finite), for the edge test.
    unit : float
        ``grey * unit`` is on the scale of the other statistics.
    centre_hi : float
        A high level of the central third: the 99.5th percentile of a float frame, the
        second-brightest pixel of an 8-bit frame's sample (whose regular sample keeps only a
        few pixels of a galaxy a twentieth of the frame's side).
    signal_sigmas : float
        How far ``centre_hi`` stands above the ring's sky, in the sky's robust sigmas
        (:func:`_sky_and_noise`). NaN where nothing in the ring varies (no measure of the noise)
        and for 8-bit frames: those are judged on their levels alone.
    """

    lo: float  # 0.5th percentile
    hi: float  # 99.5th percentile
    vmin: float
    vmax: float
    std: float
    mode_fraction: float  # fraction of the (finite) pixels sharing the commonest exact value
    mode_level: float  # that value
    ring_median: float
    centre_median: float
    centre_hi: float  # a high level of the central third
    grey: "np.ndarray | Image.Image"  # H x W grey (NaN where not finite), for the edge test
    unit: float = 1.0  # grey * unit is on the scale of the other statistics
    signal_sigmas: float = float("nan")  # (centre_hi - the ring's sky) / its noise (float frames)

    def edge_fraction(self) -> float:
        """Fraction of neighbouring pixel pairs whose levels jump by half the range or more.

        Returns
        -------
        float
        """
        g = np.asarray(self.grey, dtype=np.float32)
        jump = EDGE_JUMP * (self.vmax - self.vmin) / self.unit
        if jump <= 0:
            return 0.0
        with np.errstate(invalid="ignore"):
            n = int((np.abs(np.diff(g, axis=1)) >= jump).sum() + (np.abs(np.diff(g, axis=0)) >= jump).sum())
        pairs = g.shape[0] * (g.shape[1] - 1) + (g.shape[0] - 1) * g.shape[1]
        return n / max(pairs, 1)


def centre_box(h: int, w: int) -> tuple[int, int, int, int]:
    """The central third of a frame, where the galaxy is.

    Parameters
    ----------
    h, w : int
        Frame height and width.

    Returns
    -------
    tuple of int
        (left, top, right, bottom).
    """
    return w // 3, h // 3, max(w // 3 + 1, 2 * w // 3), max(h // 3 + 1, 2 * h // 3)


def stats_float(arr: np.ndarray) -> FrameStats:
    """Frame statistics of a float frame (NaN/inf ignored).

    Parameters
    ----------
    arr : ndarray, shape (H, W, B)
        The frame, in its own units.

    Returns
    -------
    FrameStats
    """
    usable = np.isfinite(arr).any(axis=(0, 1))
    if 0 < usable.sum() < arr.shape[-1]:  # a band without one finite pixel: judged on the others
        arr = arr[..., usable]
    grey = to_channels(arr, 1)[..., 0] if arr.shape[-1] in (1, 3) else arr.mean(axis=-1)
    finite = np.isfinite(grey)
    values = grey[finite]
    h, w = grey.shape
    ring = grey[ring_mask(h, w) & finite]
    l, t, r, b = centre_box(h, w)
    centre = grey[t:b, l:r][finite[t:b, l:r]]
    uniq, counts = np.unique(values, return_counts=True)
    k = int(counts.argmax())
    lo, hi = np.percentile(values, [0.5, 99.5])
    centre_hi = float(np.percentile(centre, 99.5)) if centre.size else float(hi)
    sky = float(np.median(ring)) if ring.size else float(np.median(values))
    sky_level, noise = _sky_and_noise(ring, sky)
    excess = centre_hi - sky_level
    return FrameStats(
        # in float64: flux in small units (1e-25, an f_nu image in cgs) has a variance float32 cannot hold
        lo=float(lo), hi=float(hi), vmin=float(values.min()), vmax=float(values.max()),
        std=float(values.astype(np.float64).std()),
        mode_fraction=float(counts[k] / values.size), mode_level=float(uniq[k]),
        ring_median=sky,
        centre_median=float(np.median(centre)) if centre.size else float(np.median(values)),
        grey=np.where(finite, grey, np.nan),
        centre_hi=centre_hi,
        signal_sigmas=excess / noise if noise > 0 else float("nan"),  # no noise to measure: judged on levels
    )


def _sky_and_noise(ring: np.ndarray, median: float) -> tuple[float, float]:
    """The ring's ``median`` and 1.4826 x its MAD; where half of it holds one value (a sky clipped at
    zero, a zero-filled edge of the footprint), those of the other pixels; a noise of 0 where
    nothing else varies."""
    if not ring.size:
        return 0.0, 0.0
    sky = median
    mad = float(np.median(np.abs(ring - sky)))
    if mad == 0:
        uniq, counts = np.unique(ring, return_counts=True)
        rest = ring[ring != uniq[counts.argmax()]]
        if rest.size < 16:
            return sky, 0.0
        sky = float(np.median(rest))
        mad = float(np.median(np.abs(rest - sky)))
    return sky, 1.4826 * mad


def judge(stats: FrameStats, display: bool, spec: PreprocessSpec) -> None:
    """Raise :class:`BadImage` (``blank`` or ``not_galaxy``) for a frame that is no galaxy.

    Order: a constant frame is blank; then a flat page with marks is not a galaxy
    (even when its marks cover too little of it to give it contrast); then a frame
    without contrast is blank; last, a bright border round a dark centre.

    Parameters
    ----------
    stats : FrameStats
        The frame's statistics.
    display : bool
        Display levels on a known scale (8/16-bit rendered images) rather than flux.
    spec : PreprocessSpec
        The thresholds.

    Raises
    ------
    BadImage
        Naming the flag and what was seen.
    """
    rng = stats.vmax - stats.vmin
    detected = stats.signal_sigmas >= SIGNAL_SIGMAS  # False where no noise could be measured (NaN)
    if display:
        if rng < spec.blank_contrast and not detected:
            raise BadImage("blank", f"constant frame (levels span {rng:.3f} of full scale)")
    else:
        scale = max(abs(stats.vmax), abs(stats.vmin))  # no floor: a survey's units may be 1e-30
        if rng <= 1e-6 * scale or stats.std < spec.blank_std * scale:
            raise BadImage("blank", f"standard deviation {stats.std:.3g} is below {spec.blank_std} "
                                    f"of the peak {scale:.3g}")
    flat = stats.mode_fraction
    if flat >= spec.flat_fraction and (not display or stats.mode_level >= DARK_LEVEL):
        raise BadImage("not_galaxy", f"{flat:.0%} of the frame is one flat level ({stats.mode_level:.3g})")
    if flat >= FLAT_WITH_EDGES:
        edges = stats.edge_fraction()
        if edges >= EDGE_FRACTION:
            raise BadImage("not_galaxy", f"flat background ({flat:.0%}) with sharp strokes "
                                         f"({edges:.1%} of pixel pairs): text or graphics")
    # a small central galaxy stands out above the frame's own high level by the contrast itself; noise
    # alone does not (the centre's high level is the frame's, give or take a fraction of sigma)
    stands_out = stats.centre_hi - stats.hi >= spec.blank_contrast
    if display and stats.hi - stats.lo < spec.blank_contrast and not stands_out and not detected:
        raise BadImage("blank", f"grey levels span {stats.hi - stats.lo:.3f} of full scale (0.5-99.5 percentile; "
                                f"blank below {spec.blank_contrast}) and nothing stands out in the centre")
    if stats.ring_median - stats.centre_median > 0.5 * rng:
        raise BadImage("not_galaxy", "bright frame with a dark centre")
