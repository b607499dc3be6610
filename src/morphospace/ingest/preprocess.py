"""Preprocessing raw pixels into the model's input, and the pixel-level quality checks.

Two normalisations:

``asinh`` (the default)
    Per band, subtract the sky (median of the frame's border ring) and divide every
    band by one robust peak of the *central* galaxy (the 99th percentile of the
    central quarter of the crop, all bands together so colour is kept), then
    ``asinh(x / s) / asinh(1 / s)``. Scaling by the central galaxy rather than the
    brightest pixel means a bright neighbouring star does not squash the galaxy we
    care about (per-image min-max does exactly that), and the asinh stretch keeps
    faint outer structure (arms, tidal features) visible next to a bright bulge.
``minmax`` (the AstroVaDEr preset)
    Per-image ``(x - min) / (max - min)``, as published.

The ``astrovader`` preset sets: crop 0.75 (192 of 256), 128x128, grey by the ITU-R
601 luminance weights (what Pillow's ``convert("L")`` uses), min-max.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..config import PreprocessConfig
from ..errors import UserError
from .decode import BadImage

LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class PreprocessSpec:
    """The resolved, picklable preprocessing recipe."""

    crop: float
    size: int
    channels: int  # 1 (grey) or 3 (colour)
    normalise: str
    softening: float
    blank_std: float

    @classmethod
    def from_config(cls, cfg: PreprocessConfig, n_bands: int, blank_std: float) -> "PreprocessSpec":
        if cfg.preset == "astrovader":
            return cls(crop=0.75, size=128, channels=1, normalise="minmax", softening=cfg.asinh_softening,
                       blank_std=blank_std)
        if cfg.preset != "default":
            raise UserError(f"unknown preprocess preset '{cfg.preset}' (known: default, astrovader)")
        if not 0 < cfg.crop <= 1:
            raise UserError(f"preprocess.crop must be in (0, 1], got {cfg.crop}")
        if cfg.size < 8:
            raise UserError(f"preprocess.size must be at least 8, got {cfg.size}")
        if cfg.colour not in ("rgb", "grey"):
            raise UserError(f"preprocess.colour must be 'rgb' or 'grey', got '{cfg.colour}'")
        if cfg.normalise not in ("asinh", "minmax"):
            raise UserError(f"preprocess.normalise must be 'asinh' or 'minmax', got '{cfg.normalise}'")
        channels = 3 if (cfg.colour == "rgb" and n_bands >= 3) else 1
        return cls(crop=cfg.crop, size=cfg.size, channels=channels, normalise=cfg.normalise,
                   softening=cfg.asinh_softening, blank_std=blank_std)


def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """H x W x B -> H x W x channels (luminance for grey; first three bands for colour)."""
    bands = arr.shape[-1]
    if channels == 1:
        if bands == 1:
            return arr
        if bands == 3:
            return (arr @ LUMINANCE)[..., None]
        return arr.mean(axis=-1, keepdims=True)
    if bands >= 3:
        return arr[..., :3]
    return np.repeat(arr[..., :1], 3, axis=-1)


def centre_crop(arr: np.ndarray, fraction: float) -> np.ndarray:
    h, w = arr.shape[:2]
    side = max(1, int(round(min(h, w) * fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    return arr[top: top + side, left: left + side]


def resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Area-preserving resize of an H x W x C float image (Pillow's 'F' mode per band)."""
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    out = np.empty((size, size, arr.shape[2]), dtype=np.float32)
    # BOX averages when shrinking (no aliasing of noise); BICUBIC when enlarging.
    resample = Image.Resampling.BOX if arr.shape[0] >= size else Image.Resampling.BICUBIC
    for c in range(arr.shape[2]):
        out[..., c] = np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c]), mode="F").resize((size, size), resample))
    return out


def border_ring(arr: np.ndarray, width_fraction: float = 0.08) -> np.ndarray:
    """Pixels of the outer ring of the frame, N x C."""
    h, w = arr.shape[:2]
    b = max(1, int(round(min(h, w) * width_fraction)))
    mask = np.zeros((h, w), dtype=bool)
    mask[:b, :] = mask[-b:, :] = mask[:, :b] = mask[:, -b:] = True
    return arr[mask]


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


def check_content(arr: np.ndarray, blank_std: float) -> None:
    """Raise :class:`BadImage` for blank frames and frames that are not a galaxy.

    ``arr`` is the decoded frame (H x W x C). A frame is *blank* when its pixels are
    near-constant relative to their range. A frame is *not a galaxy* when it is
    mostly one exact value (a flat rendered background, as an image-service error
    page with text has) -- real sky always has noise, so even its commonest value
    covers only a small fraction of pixels -- or when its border is brighter than its
    centre by far (a white page with dark text).
    """
    grey = arr.mean(axis=-1)
    spread = float(np.nanmax(grey) - np.nanmin(grey))
    scale = max(abs(float(np.nanmax(grey))), abs(float(np.nanmin(grey))), 1e-30)
    if spread <= 1e-6 * scale or float(np.nanstd(grey)) < blank_std * scale:
        raise BadImage("blank")
    # Exact-value dominance: quantise to 8 bits of the frame's range.
    q = np.round((grey - np.nanmin(grey)) / spread * 255).astype(np.int16).ravel()
    mode_fraction = np.bincount(q[q >= 0], minlength=256).max() / q.size
    if mode_fraction > 0.6:
        raise BadImage("not_galaxy", f"{mode_fraction:.0%} of pixels share one value")
    h, w = grey.shape
    centre = grey[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    ring = border_ring(grey[..., None])[:, 0]
    if np.median(ring) - np.median(centre) > 0.5 * spread:
        raise BadImage("not_galaxy", "bright frame with a dark centre")


def normalise(arr: np.ndarray, spec: PreprocessSpec, sky: np.ndarray | None = None) -> np.ndarray:
    """Normalise a cropped, resized H x W x C image; ``sky`` is the per-band sky level."""
    if spec.normalise == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    x = arr - (sky if sky is not None else np.median(border_ring(arr), axis=0))
    h, w = x.shape[:2]
    centre = x[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    peak = float(np.percentile(centre, 99))
    if peak <= 0:
        peak = float(np.abs(x).max()) or 1.0
    s = spec.softening
    out = np.arcsinh(x / (s * peak)) / np.arcsinh(1.0 / s)
    # Sky noise far below zero carries no information; clip it so it cannot dominate a loss.
    return np.clip(out, -0.2, 1.5).astype(np.float32)


def preprocess(raw: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, set[str]]:
    """Raw H x W x B frame -> C x S x S float32 cube row, and the warning flags raised.

    Raises :class:`BadImage` when the frame cannot be used.
    """
    flags: set[str] = set()
    arr, bad_fraction = repair_nonfinite(raw)
    if bad_fraction > 0:
        flags.add("nonfinite")
        if bad_fraction > 0.5:
            raise BadImage("blank", f"{bad_fraction:.0%} non-finite pixels")
    arr = to_channels(arr, spec.channels)
    check_content(arr, spec.blank_std)
    sky = np.median(border_ring(arr), axis=0)  # from the whole frame: more sky than the crop
    arr = resize(centre_crop(arr, spec.crop), spec.size)
    arr = normalise(arr, spec, sky)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32), flags
