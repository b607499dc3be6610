"""What decoding gives: a :class:`Frame` of pixels, or a :class:`BadImage` naming the flag
that says why a record has none."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


class BadImage(Exception):
    """A record whose pixels cannot be used; ``flag`` names the reason, ``detail`` says more.

    ``also`` names further flags that hold (e.g. ``nonfinite`` beside ``blank`` for a
    frame that is mostly NaN).
    """

    def __init__(self, flag: str, detail: str = "", also: tuple[str, ...] = ()):
        super().__init__(detail or flag)
        self.flag = flag
        self.detail = detail
        self.also = tuple(also)

    @property
    def flags(self) -> tuple[str, ...]:
        """Every flag that holds: ``flag``, then ``also``."""
        return (self.flag, *self.also)


@dataclass
class Frame:
    """Decoded pixels.

    Attributes
    ----------
    pixels : PIL.Image.Image or numpy.ndarray
        An 8-bit Pillow image (mode ``RGB`` or ``L``), or a float32 H x W x B array.
    display : bool
        The values are display levels on a known scale (8/16-bit rendered images:
        0 is black, 1 is white), so absolute thresholds such as "a white page" mean
        something. False for FITS and float data (flux units).
    sky : tuple of float, str or None
        FITS only: (RA, Dec) in degrees (ICRS) of the frame's centre by its WCS, or what is
        wrong with the WCS; None without a celestial WCS
        (:func:`~morphospace.data.ingest.positions.wcs_centre`).
    flags : tuple of str
        Warning flags the decoding raised (``depth_reduced``); the frame is usable.
    native : tuple of int, optional
        (height, width) as stored in the file, where the decoding reduced it (a JPEG's draft
        scale); None: the pixels are the file's own.
    """

    pixels: "Image.Image | np.ndarray"
    display: bool
    sky: "tuple[float, float] | str | None" = None
    flags: tuple = ()
    native: "tuple[int, int] | None" = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        if isinstance(self.pixels, Image.Image):
            return self.pixels.size[1], self.pixels.size[0]
        return self.pixels.shape[0], self.pixels.shape[1]

    @property
    def native_side(self) -> int:
        """The shorter side in pixels as stored in the file (before any draft reduction)."""
        return min(self.native or self.shape)


def truncation(msg: str) -> bool:
    """Whether a decoder's message says the file ends early."""
    msg = msg.lower()
    return any(s in msg for s in ("truncated", "broken data stream", "premature end", "unexpected end",
                                  "buffer is not large enough", "not enough data"))
