"""Decoding one record into raw pixels, with the failures a survey really has.

:func:`decode` returns a float32 H x W x C array in the file's own units (8-bit
images scaled to [0, 1]; FITS in flux units) or raises :class:`BadImage` naming
the quality flag. JPEGs are decoded at reduced scale (Pillow's draft mode) when
the preprocessing will downsample anyway.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .records import Record


class BadImage(Exception):
    """A record whose pixels cannot be used; ``flag`` names the reason."""

    def __init__(self, flag: str, detail: str = ""):
        super().__init__(detail or flag)
        self.flag = flag


def decode(rec: Record, min_side: int = 0, h5_cache: dict | None = None) -> np.ndarray:
    """Decode a record to a float32 H x W x C array.

    Parameters
    ----------
    rec : Record
    min_side : int
        The decoded image may be reduced (JPEG draft mode) as long as its sides stay
        at least this long; 0 decodes at full size.
    h5_cache : dict, optional
        Open HDF5 files keyed by path, reused across calls in one worker.
    """
    if rec.kind == "hdf5":
        return _decode_hdf5(rec, h5_cache if h5_cache is not None else {})
    try:
        size = os.path.getsize(rec.source)
    except OSError as exc:
        raise BadImage("unreadable", str(exc)) from None
    if size == 0:
        raise BadImage("empty_file")
    if rec.kind == "fits":
        return _decode_fits(rec.source)
    return _decode_pillow(rec.source, min_side)


def _decode_pillow(path: str, min_side: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and min_side > 0:
                # DCT-domain downscaling: much less work than decoding the full frame.
                img.draft("RGB", (min_side, min_side))
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F"):
                arr = np.asarray(img, dtype=np.float32)
                peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
                arr = (arr / peak)[..., None]
            else:
                if img.mode not in ("RGB", "L"):
                    img = img.convert("RGB")
                arr = np.asarray(img, dtype=np.float32) / 255.0
                if arr.ndim == 2:
                    arr = arr[..., None]
    except UnidentifiedImageError:
        raise BadImage("not_image") from None
    except OSError as exc:
        msg = str(exc).lower()
        if "truncated" in msg or "broken data stream" in msg or "premature end" in msg:
            raise BadImage("truncated", str(exc)) from None
        raise BadImage("unreadable", str(exc)) from None
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImage("unreadable", str(exc)) from None
    return arr


def _decode_fits(path: str) -> np.ndarray:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                data = next((h.data for h in hdul if getattr(h, "data", None) is not None and h.data.ndim >= 2), None)
                if data is None:
                    raise BadImage("not_image", "no image HDU")
                data = np.asarray(data, dtype=np.float32)
    except BadImage:
        raise
    except OSError as exc:
        msg = str(exc).lower()
        flag = "truncated" if "truncated" in msg or "empty or corrupt" in msg else "not_image"
        raise BadImage(flag, str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise BadImage("unreadable", str(exc)) from None
    if data.ndim == 2:
        return data[..., None]
    if data.ndim == 3:  # band cube: bands first in FITS order
        return np.moveaxis(data, 0, -1)
    raise BadImage("not_image", f"{data.ndim}-d FITS data")


def _decode_hdf5(rec: Record, cache: dict) -> np.ndarray:
    import h5py

    f = cache.get(rec.source)
    if f is None:
        try:
            f = cache[rec.source] = h5py.File(rec.source, "r")
        except OSError as exc:
            raise BadImage("unreadable", str(exc)) from None
    try:
        arr = np.asarray(f["images"][rec.index])
    except (OSError, KeyError, ValueError) as exc:
        raise BadImage("unreadable", str(exc)) from None
    arr = arr.astype(np.float32)
    if np.issubdtype(f["images"].dtype, np.integer):
        arr /= 255.0
    return arr if arr.ndim == 3 else arr[..., None]


def draft_side(crop: float, size: int) -> int:
    """The smallest frame side that still gives ``size`` pixels after a ``crop`` fraction."""
    return int(math.ceil(size / max(crop, 1e-6)))
