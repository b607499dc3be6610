"""FITS cutouts decoded: the first HDU with an image (2-D, or a band cube), in flux units, and the
frame centre's sky position by the header's WCS.

A FITS file stores its first row at the bottom (pixel y = 1, where ds9 shows it) and a survey's
band cube its bands bluest first (g, r, z); the cube holds a frame's top row first and its colour
channels as red, green, blue, as a JPEG of the same galaxy does: the rows are turned over and the
first three bands shown with the third as red. Every FITS file is read so, an RGB picture saved into
one as an array too (save pictures as PNG)."""

from __future__ import annotations

import warnings

import numpy as np

from ...errors import first_line
from .frames import BadImage, Frame, truncation


# how the cube holds a FITS frame (the ingest summary says so where a survey has FITS files)
FITS_ROWS = "top row first, as a viewer shows it; of a band cube the first three bands, the third as red"
MAX_BANDS_LAST = 16  # a last axis of at most this many, beside two longer ones, holds bands (ugrizy: 6)


def band_order(n: int) -> list[int]:
    """The order that turns a survey's ``n`` bands (bluest first: g, r, z) into the cube's channels, red
    first (the third band shown red, the first blue), and back: its own inverse. Fewer than three keep
    theirs."""
    return [2, 1, 0, *range(3, n)] if n >= 3 else list(range(n))


def bands_last(shape) -> bool:
    """Whether a 3-D FITS array (numpy order) holds its bands last: (H, W, 3), as an RGB array saved
    as it is, rather than the standard (bands, H, W). A few bands on the last axis (up to
    :data:`MAX_BANDS_LAST`: a grizy cube's 5 were 64 bands of 5 x 64 pixels) and more pixels than
    that on the others: read bands first, (64, 64, 3) was 64 bands of 3 x 64 pixels."""
    return len(shape) == 3 and shape[-1] <= MAX_BANDS_LAST < min(shape[0], shape[1])


def decode_fits(path: str) -> Frame:
    """The frame of a FITS file, or the :class:`BadImage` that says why there is none."""
    from astropy.io import fits

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # recorded, not shown: a short file is said by a warning
            with fits.open(path, memmap=False) as hdul:
                data, header = None, None
                for hdu in hdul:
                    d = getattr(hdu, "data", None)
                    if d is not None and np.ndim(d) >= 2:
                        data, header = np.asarray(d, dtype=np.float32), hdu.header
                        break
    except PermissionError as exc:  # an OSError too: it was said "not an image file", as a text file is
        raise BadImage("unreadable", first_line(exc)) from None
    except OSError as exc:
        msg = str(exc).lower()
        flag = "truncated" if truncation(msg) or "empty or corrupt" in msg or _said_truncated(caught) else "not_image"
        raise BadImage(flag, first_line(exc)) from None
    except MemoryError:
        raise BadImage("unreadable", "too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for damaged files
        # a file shorter than its header says: astropy warns so, then fails to shape the data
        flag = "truncated" if truncation(str(exc)) or _said_truncated(caught) else "unreadable"
        raise BadImage(flag, f"{type(exc).__name__}: {first_line(exc)}") from None
    if data is None:
        raise BadImage("not_image", "FITS file without an image HDU")
    while data.ndim > 3 and data.shape[0] == 1:  # (1, 1, H, W) and the like
        data = data[0]
    # FITS stores its first row at the bottom (pixel y = 1, as ds9 and every viewer show it); the cube,
    # like a JPEG, holds its top row first: read as stored, a FITS galaxy was mirrored (its spiral's
    # winding reversed) against the JPEG of it and in every figure
    if data.ndim == 2:
        return Frame(np.ascontiguousarray(data[::-1, :, None]), display=False, sky=_sky(header, data.shape))
    if data.ndim == 3:
        # a band cube, its bands (first in numpy order, or last) as surveys write them: bluest first
        bands = (data if bands_last(data.shape) else np.moveaxis(data, 0, -1))[::-1]
        bands = bands[..., band_order(bands.shape[-1])]
        return Frame(np.ascontiguousarray(bands), display=False, sky=_sky(header, bands.shape[:2]))
    raise BadImage("not_image", f"{data.ndim}-d FITS data")


def _said_truncated(caught: list) -> bool:
    return any("truncated" in str(w.message).lower() for w in caught or ())


def _sky(header, shape: tuple) -> "tuple[float, float] | str | None":
    """The frame centre's (RA, Dec) by the header's WCS; what is wrong with it; or None."""
    from .positions import wcs_centre

    try:
        return wcs_centre(header, shape[-2], shape[-1])
    except ValueError as exc:
        return str(exc)
