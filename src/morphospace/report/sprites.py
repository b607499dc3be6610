"""Thumbnails of the cube packed into a few sprite sheets.

The explorer and the galleries of the report show thousands of small images. One
file (or one data URI) per galaxy would make 20,000 requests or a page that
parses 20,000 URIs, so the thumbnails are tiled into grids ("sprite sheets") and
each thumbnail is a window into a sheet (CSS ``background-position``).

:func:`to_uint8` turns cube rows (float, roughly in [0, 1]) into 8-bit images,
:func:`thumbnails` resizes them, and :class:`SpriteSheets` tiles them into
WebP (or JPEG) sheets. Tile sides that are multiples of 16 keep the codecs'
blocks inside one tile, so a thumbnail never bleeds into its neighbour.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..progress import progress
from ..run import atomic_path
from ..run.pages import release_pages

FORMATS = {"webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg")}


def to_uint8(images: np.ndarray) -> np.ndarray:
    """8-bit images from cube rows.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W) or (N, H, W)
        Floats in ~[0, 1]. Values outside [0, 1] are clipped and NaN becomes
        0: the cube is already stretched for display (asinh or min-max), so no
        further scaling is applied.

    Returns
    -------
    ndarray of uint8, shape (N, H, W, C)
        C = 3 for three bands, else 1 (the mean of the bands).
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:  # N x H x W
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"expected N x C x H x W images, got shape {arr.shape}")
    if arr.shape[1] not in (1, 3):
        # more or fewer bands than a display has: show their mean as grey
        arr = arr.mean(axis=1, keepdims=True)
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    out = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Weights averaging the input pixels each output pixel covers.

    Resizing an image ``A @ img @ A.T`` with these weights is an exact area
    average (a box filter) for any ratio, with no ringing around bright cores,
    and a whole batch of images resizes in two matrix products.

    Parameters
    ----------
    n_in, n_out : int
        Pixels along one side, before and after.

    Returns
    -------
    ndarray of float32, shape (n_out, n_in)
        Each row sums to 1.
    """
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def thumbnails(cube: np.ndarray, rows: Sequence[int], size: int, chunk: int = 1024,
               desc: str = "thumbnails") -> np.ndarray:
    """Thumbnails of cube rows.

    Reads the (memory-mapped) cube in sorted chunks, so a random subset costs
    one pass over the file, and resizes by area averaging (:func:`area_matrix`).

    Parameters
    ----------
    cube : ndarray, shape (N, C, H, W)
    rows : sequence of int
        The rows wanted, in the order wanted.
    size : int
        Side of a thumbnail.
    chunk : int
        Rows read at a time.
    desc : str
        Label of the progress bar (shown beyond one chunk).

    Returns
    -------
    ndarray of uint8, shape (len(rows), size, size, C)
        C = 3 for a three-band cube, else 1.
    """
    rows = np.asarray(rows, dtype=np.int64)
    _, c, h, w = cube.shape
    channels = 3 if c == 3 else 1
    ay, ax = area_matrix(h, size), area_matrix(w, size)
    out = np.empty((len(rows), size, size, channels), dtype=np.uint8)
    order = np.argsort(rows, kind="stable")
    starts = range(0, len(rows), chunk)
    if len(rows) > chunk:  # no bar for a gallery's dozen images
        starts = progress(starts, total=len(starts), desc=desc, unit="chunk")
    for start in starts:
        sel = order[start:start + chunk]
        block = np.asarray(cube[rows[sel]], dtype=np.float32)
        # clip first: a thumbnail averages what the eye sees, not values beyond the display range
        block = np.clip(np.nan_to_num(block, nan=0.0), 0.0, 1.0)
        if channels == 1 and c != 1:
            block = block.mean(axis=1, keepdims=True)
        n, cc = block.shape[:2]
        # two large matrix products: along the rows of pixels, then along the columns
        x = (block.reshape(-1, w) @ ax.T).reshape(n, cc, h, size)
        x = (np.swapaxes(x, 2, 3).reshape(-1, h) @ ay.T).reshape(n, cc, size, size)
        out[sel] = to_uint8(np.swapaxes(x, 2, 3))
        release_pages(cube)  # the chunk's pages of a memory-mapped cube: read once, not kept resident
    return out


@dataclass
class Sheet:
    """One encoded sprite sheet."""

    data: bytes
    mime: str
    extension: str
    cols: int
    rows: int

    def data_uri(self) -> str:
        """The sheet as a ``data:`` URI.

        Returns
        -------
        str
        """
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class SpriteSheets:
    """Thumbnails tiled into grids of ``cols`` x ``rows_per_sheet`` tiles.

    Parameters
    ----------
    tile : int
        Side of one thumbnail in pixels.
    cols, rows_per_sheet : int
        Grid of one sheet (64 x 64 tiles of 48 px is a 3072 px square, within
        every browser's and WebP's 16383 px limit).
    fmt : {"webp", "jpeg"}
    quality : int
        Encoder quality (0-100).

    Attributes
    ----------
    sheets_ : list of Sheet
        The encoded sheets; thumbnail ``i`` is in sheet ``i // per_sheet`` at
        tile ``i % per_sheet`` (row-major).
    n_ : int
        Number of thumbnails.
    """

    tile: int = 48
    cols: int = 64
    rows_per_sheet: int = 64
    fmt: str = "webp"
    quality: int = 80
    sheets_: list[Sheet] = field(default_factory=list, init=False)
    n_: int = field(default=0, init=False)

    @property
    def per_sheet(self) -> int:
        """Thumbnails per sheet."""
        return self.cols * self.rows_per_sheet

    def fit(self, thumbs: np.ndarray) -> "SpriteSheets":
        """Tile and encode thumbnails.

        Parameters
        ----------
        thumbs : ndarray of uint8, shape (N, tile, tile, C)

        Returns
        -------
        SpriteSheets
            ``self``, with :attr:`sheets_` and :attr:`n_` set.
        """
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown sprite format {self.fmt!r} (known: {', '.join(FORMATS)})")
        thumbs = np.asarray(thumbs)
        if thumbs.ndim != 4 or thumbs.shape[1] != self.tile or thumbs.shape[2] != self.tile:
            raise ValueError(f"expected N x {self.tile} x {self.tile} x C thumbnails, got {thumbs.shape}")
        codec, mime = FORMATS[self.fmt]
        channels = thumbs.shape[3]
        self.sheets_ = []
        self.n_ = len(thumbs)
        for start in range(0, len(thumbs), self.per_sheet):
            block = thumbs[start:start + self.per_sheet]
            cols = min(self.cols, len(block))
            rows = (len(block) + cols - 1) // cols
            t = self.tile
            full = np.zeros((rows * cols, t, t, channels), dtype=np.uint8)
            full[:len(block)] = block
            # tile k at row k // cols, column k % cols: one reshape, not a loop over thumbnails
            grid = full.reshape(rows, cols, t, t, channels).transpose(0, 2, 1, 3, 4).reshape(rows * t, cols * t, channels)
            pil = Image.fromarray(grid[..., 0] if channels == 1 else grid, "L" if channels == 1 else "RGB")
            buf = io.BytesIO()
            kwargs = {"quality": self.quality}
            if self.fmt == "webp":
                kwargs["method"] = 4
            else:
                kwargs["optimize"] = True
            pil.save(buf, codec, **kwargs)
            self.sheets_.append(Sheet(buf.getvalue(), mime, self.fmt, cols, rows))
        return self

    @property
    def nbytes(self) -> int:
        """Bytes of every encoded sheet."""
        return sum(len(s.data) for s in self.sheets_)

    def write(self, folder: Path, stem: str = "thumbs") -> list[Path]:
        """Write each sheet as ``folder/<stem>_<k>.<ext>``, atomically.

        Parameters
        ----------
        folder : Path
            Made if needed.
        stem : str

        Returns
        -------
        list of Path
        """
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, sheet in enumerate(self.sheets_):
            path = folder / f"{stem}_{k}.{sheet.extension}"
            with atomic_path(path) as tmp:
                tmp.write_bytes(sheet.data)
            paths.append(path)
        return paths

    def describe(self, urls: list[str]) -> dict:
        """The JSON description the page's scripts read.

        Parameters
        ----------
        urls : list of str
            One URL per sheet (a ``data:`` URI, or a file beside the page).

        Returns
        -------
        dict
            ``tile``, ``perSheet``, ``n`` and ``sheets`` (``url``, ``cols``,
            ``rows`` each).
        """
        return {
            "tile": self.tile,
            "perSheet": self.per_sheet,
            "n": self.n_,
            "sheets": [{"url": url, "cols": s.cols, "rows": s.rows} for url, s in zip(urls, self.sheets_)],
        }



def write_sheets(cube: np.ndarray, rows: np.ndarray, folder: Path, tile: int, fmt: str = "webp",
                 quality: int = 80, stem: str = "map") -> dict:
    """Thumbnails of many cube rows as sprite sheets in ``folder``, made and written one sheet at a time.

    Memory stays that of one sheet (4,096 thumbnails), whatever the number of rows.

    Parameters
    ----------
    cube : ndarray, shape (N, C, H, W)
    rows : ndarray of int
        The rows, in sprite order (thumbnail ``i`` is row ``rows[i]``).
    folder : Path
        Made if needed; sheets are ``<stem>_<k>.<ext>``, written atomically.
    tile : int
        Side of a thumbnail.
    fmt : {"webp", "jpeg"}
    quality : int

    Returns
    -------
    dict
        :meth:`SpriteSheets.describe` of every sheet (``url``: the file name),
        plus ``bytes``: their total size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.asarray(rows, dtype=np.int64)
    maker = SpriteSheets(tile=tile, fmt=fmt, quality=quality)
    per = maker.per_sheet
    sheets, total = [], 0
    starts = range(0, len(rows), per)
    for k, start in enumerate(progress(starts, total=len(starts), desc="map thumbnails", unit="sheet")):
        block = rows[start:start + per]
        # 1,024 cube rows read at a time (no inner progress bar), one sheet encoded
        maker.fit(np.concatenate([thumbnails(cube, block[j:j + 1024], tile) for j in range(0, len(block), 1024)]))
        sheet = maker.sheets_[0]
        path = folder / f"{stem}_{k}.{sheet.extension}"
        with atomic_path(path) as tmp:
            tmp.write_bytes(sheet.data)
        sheets.append({"url": path.name, "cols": sheet.cols, "rows": sheet.rows})
        total += len(sheet.data)  # thumbnails() released the cube's pages: memory stays one sheet's
    return {"tile": tile, "perSheet": per, "n": len(rows), "sheets": sheets, "bytes": total}


def image_file_thumbnail(path: str | Path, size: int = 96) -> bytes | None:
    """A small JPEG of an image file.

    Used for galaxies that never reached the cube (flagged at ingest): showing
    what the file holds (an error page, a blank frame) explains the flag.

    Parameters
    ----------
    path : str or Path
    size : int
        The longer side, at most.

    Returns
    -------
    bytes or None
        The JPEG, or None when the file cannot be read as an image.
    """
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size * 2, size * 2))  # decode at reduced scale: much faster
            im = im.convert("RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            return buf.getvalue()
    except Exception:  # any unreadable file: the flag itself is the explanation
        return None
