"""Decoding one galaxy's file into pixels, with the failures a survey really has.

:func:`decode` returns a :class:`Frame` or raises :class:`BadImage` naming the
quality flag. An 8-bit image stays a Pillow image (the preprocessing crops and
resizes it in C before any float conversion); anything else becomes a float32
H x W x B array: 16-bit images scaled to [0, 1], FITS and float data in their own units
(:mod:`~morphospace.data.ingest.fits_frames`). JPEGs are decoded at reduced scale (the DCT
does the downscaling) when the preprocessing will downsample anyway.

Plain JPEGs (YCbCr or grey, no APP1 Exif/XMP segment that could carry an orientation) are
decoded from their bytes by libjpeg-turbo through ``simplejpeg``, at the scale Pillow's draft
mode would pick and with the same (accurate) IDCT: the same pixels, bit for bit, without
Pillow's per-file header parsing and chunked reads. Anything else, any warning from
libjpeg-turbo (truncation, corrupt data) and a machine without ``simplejpeg`` go through
Pillow, which decodes or flags the file as before.
"""

from __future__ import annotations

import math
import os
import stat

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ...errors import first_line
from .fits_frames import decode_fits
from .frames import BadImage, Frame, truncation
from .records import Record

try:  # libjpeg-turbo from a wheel; Pillow decodes every JPEG without it
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the machine
    simplejpeg = None

__all__ = ["BadImage", "Frame", "decode", "draft_scale", "draft_side", "frame_from_array", "read_hdf5_rows"]

FITS_MAGIC = b"SIMPLE  ="
MIN_SIDE = 8  # smaller frames are flagged too_small


def decode(rec: Record, min_side: int = 0, h5_cache: dict | None = None) -> Frame:
    """Decode a record.

    Parameters
    ----------
    rec : Record
        What to decode (its ``source``, ``kind`` and ``index``).
    min_side : int
        The decoded image may be reduced (JPEG draft mode) as long as its sides stay
        at least this long; 0 decodes at full size.
    h5_cache : dict, optional
        Open HDF5 files keyed by path, reused across calls in one worker.

    Returns
    -------
    Frame

    Raises
    ------
    BadImage
        Naming the flag (``empty_file``, ``not_image``, ``truncated``, ``unreadable``,
        ``too_small``) and what was wrong.
    """
    if rec.kind == "hdf5":
        return frame_from_array(read_hdf5_rows(rec.source, [rec.index], h5_cache if h5_cache is not None else {})[0])
    try:
        status = os.stat(rec.source)
    except OSError as exc:
        raise BadImage("unreadable", first_line(exc)) from None
    if not stat.S_ISREG(status.st_mode):  # a pipe: reading it waited for a writer, the ingest hung
        raise BadImage("not_image", "not a regular file (a pipe, socket or device)")
    size = status.st_size
    if size == 0:
        raise BadImage("empty_file")
    if (rec.kind == "fits" and not _has_image_magic(rec.source)) or _has_fits_magic(rec.source):
        frame = decode_fits(rec.source)
    else:
        frame = _decode_turbo(rec.source, min_side) if _jpeg_name(rec.source) else None
        if frame is None:  # not a plain JPEG, or damaged: Pillow decodes or flags it
            frame = _decode_pillow(rec.source, min_side)
            if frame is None:  # FITS under an image's name: read as any FITS file (its header's sky too)
                frame = decode_fits(rec.source)
    h, w = frame.shape
    if min(h, w) < MIN_SIDE:
        raise BadImage("too_small", f"{w}x{h} pixels")
    return frame


def _has_fits_magic(path: str) -> bool:
    """FITS files without a FITS extension are recognised by their first card."""
    if path.lower().endswith((".jpg", ".jpeg", ".png", ".tif", ".tiff")):
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(len(FITS_MAGIC)) == FITS_MAGIC
    except OSError:
        return False


def _has_image_magic(path: str) -> bool:
    """An image format Pillow reads, by its first bytes: a PNG or JPEG under a FITS name is read as
    what it is (as a FITS file under an image's name is)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8).startswith(IMAGE_MAGICS)
    except OSError:
        return False


EXIF_ORIENTATION = 0x0112
JPEG_NAMES = (".jpg", ".jpeg", ".jpe", ".jfif")
JPEG_MAGIC = b"\xff\xd8\xff"
IMAGE_MAGICS = (b"\x89PNG\r\n\x1a\n", JPEG_MAGIC, b"II*\x00", b"MM\x00*", b"GIF8", b"BM")  # what Pillow reads
# header colour -> (decoded as, image mode, raw mode). Colour is decoded as packed RGB: libjpeg-turbo
# then writes 3 bytes a pixel, not 4, and Pillow's spreading of them into its RGBX layout costs less
# than the byte saved (benchmarks/bench_ingest.py --decoders)
TURBO_COLOURS = {"YCbCr": ("RGB", "RGB", "RGB"), "Gray": ("GRAY", "L", "L")}


def _jpeg_name(path: str) -> bool:
    return path.lower().endswith(JPEG_NAMES)


def draft_scale(w: int, h: int, min_side: int) -> int:
    """The reduction Pillow's JPEG draft mode picks: 8, 4, 2 or 1, the sides staying >= ``min_side``.

    Parameters
    ----------
    w, h : int
        Frame width and height.
    min_side : int
        The shortest side the preprocessing needs; 0 for no reduction.

    Returns
    -------
    int
        The frame is decoded at ``ceil(w / s) x ceil(h / s)``.
    """
    if min_side <= 0:
        return 1
    fits = min(w // min_side, h // min_side)
    return next((s for s in (8, 4, 2) if fits >= s), 1)


def _has_app1(data: bytes) -> bool | None:
    """Whether the JPEG's header (up to the first scan) holds an APP1 segment (Exif or XMP: an
    orientation may be there); None when the markers cannot be walked (Pillow then decides)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xE1:
            return True
        elif marker == 0xDA:
            return False
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _decode_turbo(path: str, min_side: int) -> "Frame | None":
    """A plain JPEG decoded by libjpeg-turbo (simplejpeg), as Pillow's draft mode would;
    None when Pillow must decode it (see the module docstring)."""
    if simplejpeg is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if not data.startswith(JPEG_MAGIC) or _has_app1(data) is not False:
        return None
    try:
        h, w, colour, _ = simplejpeg.decode_jpeg_header(data)
        if colour not in TURBO_COLOURS or w * h > (Image.MAX_IMAGE_PIXELS or float("inf")):
            return None  # CMYK/YCCK/RGB-coded, or a decompression bomb: Pillow's handling
        s = draft_scale(w, h, min_side)
        as_, mode, raw = TURBO_COLOURS[colour]
        arr = simplejpeg.decode_jpeg(data, as_, False, False, -(-h // s), -(-w // s), strict=True)
    except Exception as exc:  # noqa: BLE001 - a warning or an error: Pillow decodes it and names the flag
        _raise_if_corrupt(str(exc))  # except garbled data, which Pillow decodes without a word
        return None
    if arr.shape[:2] != (-(-h // s), -(-w // s)):
        return None
    return Frame(Image.frombytes(mode, (arr.shape[1], arr.shape[0]), arr, "raw", raw), display=True, native=(h, w))


def _raise_if_corrupt(message: str) -> None:
    """A :class:`BadImage` (``unreadable``) when libjpeg-turbo's ``message`` says the compressed data
    is corrupt (bit rot, a bad copy): Pillow decodes such a file without a word, into garbled
    pixels that would enter the cube as a galaxy."""
    # "N extraneous bytes before marker": padding some encoders write between segments or before the
    # end, decoded to the same pixels (corruption inside the scan says more than that)
    if message.startswith("Corrupt JPEG data") and "extraneous bytes before marker" not in message:
        raise BadImage("unreadable", f"corrupt JPEG data (libjpeg-turbo: {message})")


def _check_jpeg_data(path: str) -> None:
    """:func:`_raise_if_corrupt` for a JPEG that Pillow decodes (an Exif one, CMYK, under another
    name): libjpeg-turbo decodes it once more at an eighth of its side, only to hear its warnings."""
    if simplejpeg is None:
        return
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        simplejpeg.decode_jpeg(data, "RGB", True, True, 1, 1, strict=True)
    except BadImage:
        raise
    except Exception as exc:  # noqa: BLE001 - only its corrupt-data warnings matter here
        _raise_if_corrupt(str(exc))


def _decode_pillow(path: str, min_side: int) -> "Frame | None":
    """The frame Pillow decodes (or the BadImage it raises); None for a FITS file, which
    :func:`decode_fits` reads (its bands, units and header's sky, which Pillow does not keep)."""
    try:
        with Image.open(path) as img:
            if img.format == "FITS":
                return None
            stored = (img.size[1], img.size[0])  # before the draft: the frame's size as the file holds it
            if img.format == "JPEG" and min_side > 0:
                # DCT-domain downscaling: far less work than decoding the full frame.
                img.draft("RGB" if img.mode != "L" else "L", (min_side, min_side))
            warn = ("depth_reduced",) if _sixteen_bit_colour(img) else ()
            img.load()
            if img.format == "JPEG":
                _check_jpeg_data(path)
            if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                # a camera-style orientation tag: show the image the way its writer meant it
                img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                return Frame(arr[..., None], display=True, native=stored)
            if img.mode in ("I", "F"):
                arr = np.asarray(img, dtype=np.float32)
                return Frame(arr[..., None], display=False, native=stored)
            if img.mode in ("LA", "La", "1"):
                # grey with alpha, or 1-bit: one band (alpha dropped), so that a colour survey flags
                # it fewer_bands as it flags a plain grey frame
                img = img.convert("L")
            elif img.mode not in ("RGB", "L"):
                # Palette, alpha, CMYK...: shown as RGB (alpha dropped).
                img = img.convert("RGB")
            return Frame(img, display=True, flags=warn, native=stored)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not_image", "not a format Pillow reads") from None
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        # Pillow reports damaged files with all of these, depending on the format.
        flag = "truncated" if isinstance(exc, EOFError) or truncation(str(exc)) else "unreadable"
        raise BadImage(flag, first_line(exc)) from None
    except Image.DecompressionBombError as exc:
        raise BadImage("unreadable", first_line(exc)) from None
    except MemoryError:
        raise BadImage("unreadable", "too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - a hostile file must not stop a survey
        raise BadImage("unreadable", f"{type(exc).__name__}: {first_line(exc)}") from None


def _sixteen_bit_colour(img: Image.Image) -> bool:
    """Whether Pillow will read this image's 16-bit bands as 8-bit ones: it has no 16-bit colour
    mode, so a 16-bit RGB(A) or grey-with-alpha PNG or TIFF keeps each band's high byte (its raw
    mode says so before the pixels are read). 16-bit grey has a mode (``I;16``) and is read whole."""
    for tile in img.tile:
        raw = tile.args[0] if isinstance(tile.args, tuple) and tile.args else tile.args
        if isinstance(raw, str) and ";16" in raw and not raw.startswith("I;16"):
            return True
    return False


def frame_from_array(arr: np.ndarray) -> Frame:
    """A Frame from an array as stored in an HDF5 set.

    Parameters
    ----------
    arr : ndarray, shape (H, W, B) or (H, W)
        uint8 with 1 or 3 bands stays an 8-bit image; other integers are scaled to [0, 1];
        floats are flux data.

    Returns
    -------
    Frame
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype == np.uint8 and arr.shape[-1] in (1, 3):
        return Frame(Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else np.ascontiguousarray(arr)), display=True)
    if np.issubdtype(arr.dtype, np.integer):
        full = float(np.iinfo(arr.dtype).max)
        return Frame(arr.astype(np.float32) / full, display=True)
    return Frame(arr.astype(np.float32), display=False)


def read_hdf5_rows(path: str, indices: list[int], cache: dict) -> list[np.ndarray]:
    """Rows ``indices`` of the ``images`` dataset of ``path``, read as one slice.

    Galaxy10 files are chunked and compressed: one slice read decompresses each
    chunk once, where row-by-row reads would decompress it once per row.

    Parameters
    ----------
    path : str
        The HDF5 file.
    indices : list of int
        Rows to read.
    cache : dict
        Open files keyed by path (the file is opened once and kept).

    Returns
    -------
    list of ndarray
        One array per index, in the order given.

    Raises
    ------
    BadImage
        ``unreadable`` when the file or the slice cannot be read.
    """
    import h5py

    f = cache.get(path)
    if f is None:
        try:
            f = cache[path] = h5py.File(path, "r")
        except Exception as exc:  # noqa: BLE001
            raise BadImage("unreadable", first_line(exc)) from None
    try:
        ds = f["images"]
        lo, hi = min(indices), max(indices) + 1
        block = ds[lo:hi]
        return [np.asarray(block[i - lo]) for i in indices]
    except Exception as exc:  # noqa: BLE001 - a damaged chunk flags its rows, not the run
        raise BadImage("unreadable", first_line(exc)) from None


def draft_side(crop: float, size: int) -> int:
    """The smallest frame side that still gives ``size`` pixels after a ``crop`` fraction.

    Parameters
    ----------
    crop : float
        Centre-crop fraction of the shorter side.
    size : int
        Output side.

    Returns
    -------
    int
    """
    return int(math.ceil(size / max(crop, 1e-6)))
