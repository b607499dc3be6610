"""Preprocessing decoded frames into cube rows, and the pixel-level quality checks.

Recipe, per galaxy: quality checks on the whole frame; the sky level per band
from the frame's outer ring; a centre crop (``crop`` of the shorter side); a
resize to ``size`` x ``size``; grey or 3-band colour; a normalisation.

Two normalisations:

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

Grey is the luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (Rec. 709, scikit-image's
``rgb2gray``): the weights of AstroVaDEr's published preprocessing. Frames with
other band counts (FITS cubes) are averaged.

The ``astrovader`` preset reproduces the published recipe: the central 192 of 256
pixels (crop 0.75), grey, 128 x 128 by bilinear interpolation, per-image min-max,
decoded at full resolution and resampled in float32. The default path resamples
8-bit images in 8 bits (Pillow, in C) before converting to float: several times
faster, and the rounding (at most half a grey level) is below the JPEG noise.

Quality checks (on the whole frame, before cropping), each a flag:

``blank``
    Near-constant frame: for rendered (8/16-bit) images, the 0.5-99.5 percentile
    range of the grey levels is below ``blank_contrast`` of full scale; for flux data
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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...config import IngestConfig, PreprocessConfig
from ...errors import UserError
from .decode import BadImage, Frame

LUMINANCE = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
RING_WIDTH = 0.08  # border ring used for the sky, as a fraction of the shorter side
DARK_LEVEL = 0.1  # a flat rendered background above this (of full scale) is a page, not sky
FLAT_WITH_EDGES = 0.3  # exact-value fraction from which sharp strokes mark a rendered page
EDGE_FRACTION = 0.015  # fraction of neighbouring pairs with a jump of half the range
EDGE_JUMP = 0.5
STATS_SIDE = 100  # 8-bit frames are sampled down to about this side for the statistics

PRESETS = {
    # The published AstroVaDEr recipe (Spindler et al. 2021, section 2.1).
    "astrovader": {"crop": 0.75, "size": 128, "colour": "grey", "normalise": "minmax"},
}
_PRESET_SPEC = {"astrovader": {"resample": "bilinear", "exact": True, "draft": False}}


@dataclass(frozen=True)
class PreprocessSpec:
    """The resolved, picklable preprocessing recipe (see the module docstring).

    Parameters
    ----------
    crop : float
        Centre-crop fraction of the frame's shorter side, in (0, 1].
    size : int
        Output side in pixels.
    channels : int
        1 (grey) or 3 (colour).
    normalise : str
        ``"asinh"`` or ``"minmax"``.
    softening : float
        asinh softening, in units of the galaxy's robust peak.
    resample : str
        ``"box"`` (area average when shrinking, bicubic when enlarging) or ``"bilinear"``.
    exact : bool
        Resample 8-bit images in float32 (bit-faithful) rather than in 8 bits (fast).
    draft : bool
        Decode JPEGs at reduced scale when the output allows it.
    blank_std, blank_contrast, flat_fraction : float
        Quality-check thresholds (``ingest`` section of the configuration).
    """

    crop: float = 0.5
    size: int = 64
    channels: int = 3
    normalise: str = "asinh"
    softening: float = 0.1
    resample: str = "box"
    exact: bool = False
    draft: bool = True
    blank_std: float = 1e-3
    blank_contrast: float = 0.05
    flat_fraction: float = 0.5

    @classmethod
    def from_config(cls, cfg: PreprocessConfig, n_bands: int = 3,
                    quality: IngestConfig | float | None = None) -> "PreprocessSpec":
        """Resolve a ``[preprocess]`` section (and the ``[ingest]`` quality thresholds).

        A preset replaces the *default* values of ``crop``, ``size``, ``colour`` and
        ``normalise``; a key set to another value is kept (e.g. the astrovader
        recipe with the crop suited to another survey's framing).
        """
        values = dict(cfg)
        extra: dict = {}
        if cfg.preset != "default":
            if cfg.preset not in PRESETS:
                raise UserError(f"unknown preprocess preset '{cfg.preset}' (known: default, {', '.join(PRESETS)})")
            defaults = PreprocessConfig()
            for key, value in PRESETS[cfg.preset].items():
                if values[key] == getattr(defaults, key):
                    values[key] = value
            extra = _PRESET_SPEC[cfg.preset]
        crop, size, colour, norm = values["crop"], values["size"], values["colour"], values["normalise"]
        if not 0 < crop <= 1:
            raise UserError(f"preprocess.crop must be in (0, 1], got {crop}")
        if size < 8:
            raise UserError(f"preprocess.size must be at least 8, got {size}")
        if colour not in ("rgb", "grey"):
            raise UserError(f"preprocess.colour must be 'rgb' or 'grey', got '{colour}'")
        if norm not in ("asinh", "minmax"):
            raise UserError(f"preprocess.normalise must be 'asinh' or 'minmax', got '{norm}'")
        if not cfg.asinh_softening > 0:
            raise UserError(f"preprocess.asinh_softening must be positive, got {cfg.asinh_softening}")
        if isinstance(quality, IngestConfig):
            q = {"blank_std": quality.blank_std, "blank_contrast": quality.blank_contrast,
                 "flat_fraction": quality.flat_fraction}
        elif quality is not None:  # the blank_std of earlier versions
            q = {"blank_std": float(quality)}
        else:
            q = {}
        channels = 3 if (colour == "rgb" and n_bands >= 3) else 1
        return cls(crop=float(crop), size=int(size), channels=channels, normalise=norm,
                   softening=float(cfg.asinh_softening), **extra, **q)

    def min_side(self) -> int:
        """The smallest decoded side that still gives ``size`` pixels after the crop (JPEG draft)."""
        from .decode import draft_side

        return draft_side(self.crop, self.size) if self.draft else 0


# --- small helpers -------------------------------------------------------------------------

def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """H x W x B -> H x W x channels (luminance for grey from RGB; first three bands for colour)."""
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
    """(left, top, right, bottom) of the centred square of side ``fraction`` of the shorter side."""
    side = max(1, int(round(min(h, w) * fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    return left, top, left + side, top + side


def centre_crop(arr: np.ndarray, fraction: float) -> np.ndarray:
    left, top, right, bottom = crop_box(arr.shape[0], arr.shape[1], fraction)
    return arr[top:bottom, left:right]


def _resample(spec: PreprocessSpec, side: int) -> Image.Resampling:
    if spec.resample == "bilinear":
        return Image.Resampling.BILINEAR
    # BOX averages when shrinking (no aliasing of noise); BICUBIC when enlarging.
    return Image.Resampling.BOX if side >= spec.size else Image.Resampling.BICUBIC


def resize(arr: np.ndarray, size: int, resample: Image.Resampling | None = None) -> np.ndarray:
    """Resize an H x W x C float image (Pillow's 'F' mode per band)."""
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr.astype(np.float32, copy=False)
    if resample is None:
        resample = Image.Resampling.BOX if arr.shape[0] >= size else Image.Resampling.BICUBIC
    out = np.empty((size, size, arr.shape[2]), dtype=np.float32)
    for c in range(arr.shape[2]):
        band = Image.fromarray(np.ascontiguousarray(arr[..., c], dtype=np.float32), mode="F")
        out[..., c] = np.asarray(band.resize((size, size), resample))
    return out


def ring_mask(h: int, w: int, width_fraction: float = RING_WIDTH) -> np.ndarray:
    """Boolean H x W mask of the frame's outer ring."""
    b = max(1, int(round(min(h, w) * width_fraction)))
    mask = np.zeros((h, w), dtype=bool)
    mask[:b, :] = mask[-b:, :] = mask[:, :b] = mask[:, -b:] = True
    return mask


def border_ring(arr: np.ndarray, width_fraction: float = RING_WIDTH) -> np.ndarray:
    """Pixels of the outer ring of the frame, N x C."""
    return arr[ring_mask(arr.shape[0], arr.shape[1], width_fraction)]


_RING_IMAGES: dict = {}


def _ring_image(w: int, h: int) -> Image.Image:
    """The ring mask as a Pillow 'L' image (histogram masks), cached per frame size."""
    img = _RING_IMAGES.get((w, h))
    if img is None:
        if len(_RING_IMAGES) > 64:
            _RING_IMAGES.clear()
        img = _RING_IMAGES[(w, h)] = Image.fromarray(ring_mask(h, w).astype(np.uint8) * 255)
    return img


def repair_nonfinite(arr: np.ndarray) -> tuple[np.ndarray, float]:
    """Replace NaN/inf by the per-band median of the finite pixels; return the bad fraction."""
    bad = ~np.isfinite(arr)
    frac = float(bad.mean())
    if frac == 0.0:
        return arr, 0.0
    arr = arr.copy()
    for c in range(arr.shape[-1]):
        band = arr[..., c]
        good = band[np.isfinite(band)]
        band[~np.isfinite(band)] = np.median(good) if good.size else 0.0
    return arr, frac


# --- quality checks ------------------------------------------------------------------------

@dataclass
class FrameStats:
    """Grey-level statistics of a whole frame, on the scale of the data (display: 0-1).

    ``edges`` is computed lazily (it is needed only for frames with a flat background).
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
    grey: "np.ndarray | Image.Image"  # H x W grey (NaN where not finite), for the edge test
    unit: float = 1.0  # grey * unit is on the scale of the other statistics

    def edge_fraction(self) -> float:
        """Fraction of neighbouring pixel pairs whose levels jump by half the range or more."""
        g = np.asarray(self.grey, dtype=np.float32)
        jump = EDGE_JUMP * (self.vmax - self.vmin) / self.unit
        if jump <= 0:
            return 0.0
        with np.errstate(invalid="ignore"):
            n = int((np.abs(np.diff(g, axis=1)) >= jump).sum() + (np.abs(np.diff(g, axis=0)) >= jump).sum())
        pairs = g.shape[0] * (g.shape[1] - 1) + (g.shape[0] - 1) * g.shape[1]
        return n / max(pairs, 1)


def _centre(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central third of a frame."""
    return w // 3, h // 3, max(w // 3 + 1, 2 * w // 3), max(h // 3 + 1, 2 * h // 3)


def sample_8bit(img: Image.Image, target: int = STATS_SIDE) -> Image.Image:
    """Every k-th pixel of a large frame, k = shorter side // ``target`` (exact values, no averaging).

    The quality statistics and the sky need the distribution of pixel values, not
    every pixel: a regular sample keeps exact levels (flat backgrounds stay flat,
    noise stays noise) at a fraction of the cost.
    """
    w, h = img.size
    step = max(1, min(w, h) // target)
    if step == 1:
        return img
    return img.resize((w // step, h // step), Image.Resampling.NEAREST)


def _first_at_least(cum: np.ndarray, fraction: float) -> np.ndarray:
    """Per row of cumulative histograms (k x 256), the first level holding ``fraction`` of the pixels."""
    return (cum < fraction * cum[:, -1:]).sum(axis=1)


@dataclass
class Stats8:
    """Statistics of a batch of 8-bit frames, as arrays (levels 0-255), and the per-band sky (0-1).

    Everything :func:`judge` needs, except that the ring and centre medians of the grey
    levels are first known only as bounds (``ring_max`` >= the ring median, ``centre_min``
    <= the centre median), from the histograms every frame needs anyway: enough to clear
    a real galaxy (sky ring, bright centre). :meth:`frame_stats` computes them exactly for
    the few frames :meth:`suspects` names.
    """

    lo: np.ndarray
    hi: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    mode: np.ndarray
    mode_fraction: np.ndarray
    ring_max: np.ndarray
    centre_min: np.ndarray
    greys: list
    skies: list

    def frame_stats(self, i: int) -> FrameStats:
        """The exact :class:`FrameStats` of frame ``i``."""
        g = self.greys[i]
        w, h = g.size
        medians = _first_at_least(np.cumsum(np.array(
            [g.histogram(_ring_image(w, h)), g.crop(_centre(h, w)).histogram()], dtype=np.int64), axis=1), 0.5)
        return FrameStats(lo=self.lo[i] / 255, hi=self.hi[i] / 255, vmin=self.vmin[i] / 255,
                          vmax=self.vmax[i] / 255, std=float("nan"),
                          mode_fraction=float(self.mode_fraction[i]), mode_level=self.mode[i] / 255,
                          ring_median=medians[0] / 255, centre_median=medians[1] / 255,
                          grey=g, unit=1 / 255)

    def suspects(self, spec: PreprocessSpec) -> np.ndarray:
        """Frames that :func:`judge` might flag (a superset, with a margin): the others pass it.

        Lets a batch skip the per-frame :class:`FrameStats` and :func:`judge` calls (and
        the ring and centre histograms of the grey levels) for the frames that are plainly
        galaxies.
        """
        eps = 1e-9
        rng = (self.vmax - self.vmin) / 255
        return ((rng < spec.blank_contrast + eps)
                | (self.mode_fraction >= min(spec.flat_fraction, FLAT_WITH_EDGES) - eps)
                | ((self.hi - self.lo) / 255 < spec.blank_contrast + eps)
                | ((self.ring_max - self.centre_min) / 255 > 0.5 * rng - eps))


def histograms_8bit(sample: Image.Image) -> tuple[Image.Image, list, list]:
    """The C histograms every 8-bit frame needs, of its sample (:func:`sample_8bit`).

    Returns the grey image, its histogram (256 counts) and the per-band histogram of
    the ring (256 x bands counts, bands concatenated).
    """
    grey = sample if sample.mode == "L" else sample.convert("L")
    return grey, grey.histogram(), sample.histogram(_ring_image(*sample.size))


def _ring_medians(sky_hists: list) -> tuple[list, np.ndarray]:
    """Per image, the per-band medians (0-1, float32) of its ring histogram (256 x bands counts),
    and a bound (level) on the median of the ring's grey levels: no grey level exceeds
    its pixel's brightest band (Pillow's grey weights sum to one), so at most
    sum_b #(band b > t) grey levels exceed t."""
    skies: list = [None] * len(sky_hists)
    ring_max = np.zeros(len(sky_hists), dtype=np.int64)
    by_bands: dict[int, list[int]] = {}
    for i, h in enumerate(sky_hists):
        by_bands.setdefault(len(h) // 256, []).append(i)
    for bands, idx in by_bands.items():  # batched by band count
        cum = np.cumsum(np.array([sky_hists[i] for i in idx], dtype=np.int64).reshape(len(idx), bands, 256), axis=2)
        med = _first_at_least(cum.reshape(len(idx) * bands, 256), 0.5)
        sky = (med / 255).astype(np.float32).reshape(len(idx), bands)
        for j, i in enumerate(idx):
            skies[i] = sky[j]
        n = cum[:, 0, -1:]
        at_most = cum.sum(axis=1) - (bands - 1) * n  # <= #(grey <= t) in the ring
        ring_max[idx] = (at_most < 0.5 * n).sum(axis=1)
    return skies, ring_max


def _stats8(greys: list, hists: list, sky_hists: list) -> Stats8:
    """:class:`Stats8` from the outputs of :func:`histograms_8bit`, batched."""
    hist = np.array(hists, dtype=np.int64).reshape(len(greys), 256)
    full = np.cumsum(hist, axis=1)
    skies, ring_max = _ring_medians(sky_hists)
    centre_pixels = np.array([(r - l) * (b - t) for l, t, r, b in (_centre(g.size[1], g.size[0]) for g in greys)])
    return Stats8(lo=_first_at_least(full, 0.005), hi=_first_at_least(full, 0.995),
                  vmin=(full == 0).sum(axis=1), vmax=255 - (np.cumsum(hist[:, ::-1], axis=1) == 0).sum(axis=1),
                  mode=hist.argmax(axis=1), mode_fraction=hist.max(axis=1) / full[:, -1],
                  ring_max=ring_max,
                  # the centre is part of the frame: its median is at least the level below which
                  # the whole frame has fewer than half the centre's pixel count
                  centre_min=(full < 0.5 * centre_pixels[:, None]).sum(axis=1),
                  greys=greys, skies=skies)


def stats_8bit_arrays(samples: list[Image.Image]) -> Stats8:
    """Frame statistics and the per-band sky of 8-bit Pillow images (see :func:`stats_8bit_many`)."""
    greys, hists, sky_hists = [], [], []
    for sample in samples:
        grey, h, sky = histograms_8bit(sample)
        greys.append(grey)
        hists.append(h)
        sky_hists.append(sky)
    return _stats8(greys, hists, sky_hists)


def stats_8bit_many(samples: list[Image.Image]) -> tuple[list[FrameStats], list[np.ndarray]]:
    """Frame statistics and the per-band sky (0-1) of 8-bit Pillow images.

    Pillow computes the histograms in C; numpy then works on k x 256 arrays, once for
    the whole batch (per-image numpy calls on 256-bin arrays cost more than the maths).
    """
    st = stats_8bit_arrays(samples)
    return [st.frame_stats(i) for i in range(len(samples))], st.skies


def stats_8bit(img: Image.Image) -> FrameStats:
    """Frame statistics of one 8-bit Pillow image (see :func:`stats_8bit_many`)."""
    return stats_8bit_many([img])[0][0]


def stats_float(arr: np.ndarray) -> FrameStats:
    """Frame statistics of a float H x W x B array (NaN/inf ignored)."""
    grey = to_channels(arr, 1)[..., 0] if arr.shape[-1] in (1, 3) else arr.mean(axis=-1)
    finite = np.isfinite(grey)
    values = grey[finite]
    h, w = grey.shape
    ring = grey[ring_mask(h, w) & finite]
    l, t, r, b = _centre(h, w)
    centre = grey[t:b, l:r][finite[t:b, l:r]]
    uniq, counts = np.unique(values, return_counts=True)
    k = int(counts.argmax())
    lo, hi = np.percentile(values, [0.5, 99.5])
    return FrameStats(
        lo=float(lo), hi=float(hi), vmin=float(values.min()), vmax=float(values.max()), std=float(values.std()),
        mode_fraction=float(counts[k] / values.size), mode_level=float(uniq[k]),
        ring_median=float(np.median(ring)) if ring.size else float(np.median(values)),
        centre_median=float(np.median(centre)) if centre.size else float(np.median(values)),
        grey=np.where(finite, grey, np.nan),
    )


def judge(stats: FrameStats, display: bool, spec: PreprocessSpec) -> None:
    """Raise :class:`BadImage` (``blank`` or ``not_galaxy``) for a frame that is no galaxy.

    Order: a constant frame is blank; then a flat page with marks is not a galaxy
    (even when its marks cover too little of it to give it contrast); then a frame
    without contrast is blank; last, a bright border round a dark centre.
    """
    rng = stats.vmax - stats.vmin
    if display:
        if rng < spec.blank_contrast:
            raise BadImage("blank", f"constant frame (levels span {rng:.3f} of full scale)")
    else:
        scale = max(abs(stats.vmax), abs(stats.vmin), 1e-30)
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
    if display and stats.hi - stats.lo < spec.blank_contrast:
        raise BadImage("blank", f"grey levels span {stats.hi - stats.lo:.3f} of full scale "
                                f"(0.5-99.5 percentile; blank below {spec.blank_contrast})")
    if stats.ring_median - stats.centre_median > 0.5 * rng:
        raise BadImage("not_galaxy", "bright frame with a dark centre")


# --- normalisation -------------------------------------------------------------------------

def _percentile_rows(v: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(row, q)`` (linear interpolation) of each row of ``v`` (k x n), by one
    partition: less overhead on small arrays. Partitions ``v`` in place."""
    k = (v.shape[1] - 1) * q / 100.0
    i = int(k)
    v.partition(i, axis=1)  # one kth: numpy's fast (SIMD) selection; the next value is the least above
    lo = v[:, i]
    hi = v[:, i + 1:].min(axis=1) if i + 1 < v.shape[1] else lo
    return lo + (hi - lo) * (k - i)


def _percentile(v: np.ndarray, q: float) -> float:
    """``np.percentile(v, q)`` (linear interpolation), see :func:`_percentile_rows`."""
    return float(_percentile_rows(np.array(v).reshape(1, -1), q)[0])


def _asinh_scale(spec: PreprocessSpec, centre_minus_sky: np.ndarray, x_for_fallback) -> float:
    """The divisor of the asinh stretch: softening x the 99th percentile of the central galaxy."""
    peak = _percentile(centre_minus_sky, 99.0)
    if not peak > 0:  # no galaxy light in the centre: fall back on the brightest pixel
        peak = float(np.abs(x_for_fallback()).max()) or 1.0
    return spec.softening * peak


def normalise(arr: np.ndarray, spec: PreprocessSpec, sky: np.ndarray | None = None) -> np.ndarray:
    """Normalise a cropped, resized S x S x C float image; ``sky`` is the per-channel sky level.

    Returns S x S x C float32 (see the module docstring for the two normalisations).
    """
    if spec.normalise == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
        if not hi > lo:
            return np.zeros(arr.shape, dtype=np.float32)
        return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    sky = np.median(border_ring(arr), axis=0) if sky is None else np.asarray(sky)
    x = (arr - sky.astype(np.float32)).astype(np.float32)
    h, w = x.shape[:2]
    scale = _asinh_scale(spec, x[h // 4: 3 * h // 4, w // 4: 3 * w // 4], lambda: x)
    x *= np.float32(1.0 / scale)
    out = np.arcsinh(x, out=x)
    out *= np.float32(1.0 / np.arcsinh(1.0 / spec.softening))
    # Sky noise far below zero carries no information; clip it so it cannot dominate a loss.
    return np.clip(out, -0.2, 1.5, out=out)


_LEVELS = np.arange(256, dtype=np.float32) * np.float32(1 / 255)


def level_luts(levels: np.ndarray, skies: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The normalisation of a batch of 8-bit rows as lookup tables over their 256 levels.

    ``levels`` is n x S x S x B uint8 (cropped and resized), ``skies`` n x B (0-1).
    Returns n x B x 256 float32: band ``b`` of row ``i`` normalised is
    ``luts[i, b][levels[i, ..., b]]``, the values of converting to float and calling
    :func:`normalise` (to float32 rounding). The robust peaks of the whole batch are
    found by one partition.
    """
    n, s, _, bands = levels.shape
    skies = np.asarray(skies, dtype=np.float32).reshape(n, bands)
    if spec.normalise == "minmax":
        flat = levels.reshape(n, -1)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        luts = np.zeros((n, bands, 256), dtype=np.float32)
        for i in np.flatnonzero(hi > lo):
            luts[i] = np.clip((_LEVELS - _LEVELS[lo[i]]) / (_LEVELS[hi[i]] - _LEVELS[lo[i]]), 0.0, 1.0)
        return luts
    q = s // 4
    # level * float32(1/255): the values of _LEVELS, without a gather
    centre = np.multiply(levels[:, q: 3 * q, q: 3 * q], np.float32(1 / 255), dtype=np.float32)
    centre -= skies[:, None, None, :]
    peaks = _percentile_rows(centre.reshape(n, -1), 99.0).astype(np.float64)  # as _asinh_scale
    for r in np.flatnonzero(~(peaks > 0)):  # no galaxy light in the centre: the brightest pixel
        peaks[r] = float(np.abs(_LEVELS[levels[r]] - skies[r]).max()) or 1.0
    inv = (1.0 / (spec.softening * peaks)).astype(np.float32)
    luts = _LEVELS[None, None, :] - skies[:, :, None]
    luts *= inv[:, None, None]
    np.arcsinh(luts, out=luts)
    luts *= np.float32(1.0 / np.arcsinh(1.0 / spec.softening))
    return np.clip(luts, -0.2, 1.5, out=luts)


def normalise_levels(a: np.ndarray, spec: PreprocessSpec, sky: np.ndarray, channels: int) -> np.ndarray:
    """:func:`normalise` of an 8-bit S x S x B image, as a lookup table over its 256 levels per band.

    Same values as converting to float and calling :func:`normalise` (to float32
    rounding), at about half the cost: the stretch is evaluated on 256 levels per band
    and the pixels are looked up. Returns channels x S x S float32 (``channels`` 3 from
    one band repeats it).
    """
    bands = a.shape[2]
    lut = level_luts(a[None], np.asarray(sky, dtype=np.float32)[:bands][None], spec)[0]
    out = np.empty((channels, a.shape[0], a.shape[1]), dtype=np.float32)
    for c in range(channels):
        b = min(c, bands - 1)
        np.take(lut[b], a[..., b], out=out[c])
    return out


# --- rows in transit -----------------------------------------------------------------------

@dataclass
class RowBlock:
    """The good rows of a batch, in input order, in the compact form a worker sends back.

    Rows of 8-bit frames (the common case) travel as their resized 8-bit levels and
    one normalisation lookup table per channel: 12 KB + 3 KB for a 64 x 64 colour row
    instead of 48 KB of float32, so less to copy between processes. The float32 row is
    ``luts[i, c][levels[i, ..., c]]``, evaluated by :meth:`to_array` where the cube is
    written. Rows of other frames travel as float32.

    Attributes
    ----------
    shape : tuple
        (C, S, S) of a row.
    lookup : numpy.ndarray
        bool per row: True for a row held as levels + tables, False for a float32 row.
    levels : numpy.ndarray
        n_lookup x S x S x C uint8.
    luts : numpy.ndarray
        n_lookup x C x 256 float32.
    floats : numpy.ndarray
        n_float x C x S x S float32.
    """

    shape: tuple
    lookup: np.ndarray
    levels: np.ndarray
    luts: np.ndarray
    floats: np.ndarray

    @classmethod
    def empty(cls, shape: tuple) -> "RowBlock":
        c, s = shape[0], shape[1]
        return cls(tuple(shape), np.zeros(0, dtype=bool), np.empty((0, s, s, c), dtype=np.uint8),
                   np.empty((0, c, 256), dtype=np.float32), np.empty((0, *shape), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.lookup)

    def to_array(self, out: np.ndarray | None = None) -> np.ndarray:
        """The rows as n x C x S x S float32 (into ``out``, of at least n rows, when given)."""
        n, channels = len(self), self.shape[0]
        out = np.empty((n, *self.shape), dtype=np.float32) if out is None else out[:n]
        li = fi = 0
        levels, luts = self.levels, self.luts
        for r in range(n):
            if self.lookup[r]:
                for c in range(channels):  # the method: no Python wrapper per call
                    luts[li, c].take(levels[li, ..., c], out=out[r, c])
                li += 1
            else:
                out[r] = self.floats[fi]
                fi += 1
        return out

    @classmethod
    def concat(cls, blocks: list["RowBlock"], shape: tuple) -> "RowBlock":
        if not blocks:
            return cls.empty(shape)
        if len(blocks) == 1:
            return blocks[0]
        return cls(tuple(shape), *(np.concatenate([getattr(b, f) for b in blocks])
                                   for f in ("lookup", "levels", "luts", "floats")))


# --- the recipe ----------------------------------------------------------------------------

def preprocess(frame: Frame | np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, set[str]]:
    """A decoded frame -> C x S x S float32 cube row, and the warning flags raised.

    ``frame`` may also be a bare float H x W x B array (treated as flux data).
    Raises :class:`BadImage` when the frame cannot be used.
    """
    result = preprocess_many([frame], spec)[0]
    if isinstance(result, BadImage):
        raise result
    return result


def preprocess_many(frames: list, spec: PreprocessSpec) -> list:
    """Preprocess a batch of frames: per frame ``(row, flags)`` or the :class:`BadImage` raised."""
    block, results = preprocess_block(frames, spec)
    rows = block.to_array()
    out, r = [], 0
    for res in results:
        if isinstance(res, BadImage):
            out.append(res)
        else:
            out.append((rows[r], res))
            r += 1
    return out


def preprocess_block(frames, spec: PreprocessSpec) -> tuple[RowBlock, list]:
    """Preprocess a batch of frames: the good rows as a :class:`RowBlock`, and per frame
    its warning flags (a set; the frame has a row) or the :class:`BadImage` raised.

    ``frames`` may be any iterable (a generator that decodes on demand): each frame is
    reduced to what the rest needs as soon as it comes and then let go, so a batch
    never holds more than one decoded frame (less memory, and the next frame is decoded
    into memory that is already mapped and in cache). 8-bit frames take the fast path:
    sampled C histograms, crop and resize in 8 bits by Pillow; then, for the whole batch
    at once, the statistics, the quality checks and the normalisation as lookup tables.
    """
    shape = (spec.channels, spec.size, spec.size)
    results: list = []
    eight: list[int] = []  # indices of the 8-bit frames, and per 8-bit frame:
    greys, hists, sky_hists = [], [], []  # its grey sample, histograms and ring histogram per band
    fast: dict[int, bytes] = {}  # its resized 8-bit levels (fast path), or
    floats: dict[int, np.ndarray] = {}  # its float32 row (other paths, and frames that are not 8-bit)
    for i, f in enumerate(frames):
        if isinstance(f, np.ndarray):
            f = Frame(f.astype(np.float32, copy=False), display=False)
        results.append(set())
        if isinstance(f.pixels, Image.Image):
            img = f.pixels
            grey, h, sky_h = histograms_8bit(sample_8bit(img))
            eight.append(i)
            greys.append(grey)
            hists.append(h)
            sky_hists.append(sky_h)
            if _by_lookup(spec, len(img.getbands())):
                fast[i] = _resized_8bit(img, spec).tobytes()
            else:
                floats[i] = _row_8bit(img, _ring_medians([sky_h])[0][0], spec)
        else:
            try:
                floats[i], results[i] = _row_float(f.pixels, f.display, spec)
            except BadImage as exc:
                results[i] = exc
        f = img = None  # let the decoded frame go before the next one is decoded
    rows: list = []  # (resized levels, sky) of the good fast-path rows
    if eight:
        st = _stats8(greys, hists, sky_hists)
        suspect = st.suspects(spec)
        for k, i in enumerate(eight):
            if suspect[k]:  # the others pass every check (see Stats8.suspects)
                try:
                    judge(st.frame_stats(k), True, spec)
                except BadImage as exc:
                    results[i] = exc
                    fast.pop(i, None)
                    floats.pop(i, None)
                    continue
            if i in fast:
                rows.append((fast[i], st.skies[k]))
    lookup = [i in fast for i, res in enumerate(results) if not isinstance(res, BadImage)]
    levels, luts = _level_rows(rows, spec)
    block = RowBlock(shape, np.array(lookup, dtype=bool), levels, luts,
                     np.stack(list(floats.values())) if floats  # in frame order: filled in that order
                     else np.empty((0, *shape), dtype=np.float32))
    return block, results


def _level_rows(rows: list, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """(n x S x S x C uint8 levels, n x C x 256 float32 tables) of the fast-path rows
    ``(resized levels as bytes, sky)``."""
    s, channels, n = spec.size, spec.channels, len(rows)
    groups: dict[int, list[int]] = {}
    for m, (_, sky) in enumerate(rows):
        groups.setdefault(len(sky), []).append(m)
    levels = np.empty((n, s, s, channels), dtype=np.uint8)
    luts = np.empty((n, channels, 256), dtype=np.float32)
    for bands, sel in groups.items():
        lv = np.frombuffer(b"".join(rows[m][0] for m in sel), dtype=np.uint8).reshape(len(sel), s, s, bands)
        lt = level_luts(lv, np.stack([rows[m][1] for m in sel]), spec)
        if len(sel) == n and bands == channels:
            return lv, lt  # the usual case: no copy
        levels[sel] = lv  # a grey frame in a colour cube: its one band in every channel
        luts[sel] = lt
    return levels, luts


def _by_lookup(spec: PreprocessSpec, bands: int) -> bool:
    """Whether the row of an 8-bit frame with ``bands`` bands is its resized levels looked up
    in per-band tables (else float32 arithmetic: the exact recipe, or colour to grey)."""
    return not spec.exact and (spec.channels == 3 or bands == 1)


def _resized_8bit(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Crop + resize in C on 8 bits: the rounding is below the JPEG's own."""
    w, h = img.size
    box = crop_box(h, w, spec.crop)
    return img.resize((spec.size, spec.size), _resample(spec, box[2] - box[0]), box=box)


def _row_8bit(img: Image.Image, sky: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Crop, resize and normalise an 8-bit image into a C x S x S row."""
    bands = len(img.getbands())
    if spec.exact:  # float32 all the way (the published recipe, bit for bit)
        w, h = img.size
        box = crop_box(h, w, spec.crop)
        side = box[2] - box[0]
        arr = np.asarray(img, dtype=np.float32)[box[1]:box[3], box[0]:box[2]].reshape(side, side, bands)
        arr = resize(to_channels(arr * np.float32(1 / 255), spec.channels), spec.size, _resample(spec, side))
    else:
        a = np.frombuffer(_resized_8bit(img, spec).tobytes(), dtype=np.uint8).reshape(spec.size, spec.size, bands)
        if _by_lookup(spec, bands):
            return normalise_levels(a, spec, sky, spec.channels)
        arr = to_channels(a.astype(np.float32) * np.float32(1 / 255), spec.channels)
    sky = to_channels(sky[None, None, :], spec.channels)[0, 0]
    return np.ascontiguousarray(normalise(arr, spec, sky).transpose(2, 0, 1))


def _row_float(arr: np.ndarray, display: bool, spec: PreprocessSpec) -> tuple[np.ndarray, set[str]]:
    """Checks, NaN repair, sky, crop, resize and normalisation of a float frame."""
    flags: set[str] = set()
    bad = ~np.isfinite(arr)
    if bad.any():
        flags.add("nonfinite")
        fraction = float(bad.any(axis=-1).mean())
        if fraction > 0.5:
            raise BadImage("blank", f"{fraction:.0%} of the pixels are NaN or inf", also=("nonfinite",))
    try:
        judge(stats_float(arr), display, spec)
    except BadImage as exc:
        exc.also = tuple(flags)
        raise
    arr, _ = repair_nonfinite(arr)
    sky = np.median(border_ring(arr), axis=0).astype(np.float32)  # whole frame: more sky than the crop
    arr = to_channels(arr, spec.channels)
    sky = to_channels(sky[None, None, :], spec.channels)[0, 0]
    crop = centre_crop(arr, spec.crop)
    arr = resize(crop, spec.size, _resample(spec, crop.shape[0]))
    return np.ascontiguousarray(normalise(arr, spec, sky).transpose(2, 0, 1)), flags
