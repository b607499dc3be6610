"""Images and text as a figure shows them: the one display conversion of the figures' images,
and the user's text (labels, ids, names) made plain for matplotlib (framework-free)."""

from __future__ import annotations

import numpy as np

__all__ = ["display_image", "figure_text"]


def display_image(img: np.ndarray) -> np.ndarray:
    """An image as 8-bit pixels for a figure.

    Parameters
    ----------
    img : ndarray, shape (C, H, W)
        Values in about [0, 1] (clipped).

    Returns
    -------
    ndarray, uint8
        H x W x 3 for three channels; H x W (their mean) otherwise.
    """
    a = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    a = np.moveaxis(a, 0, -1) if a.shape[0] == 3 else a.mean(0)
    return (a * 255 + 0.5).astype(np.uint8)


def figure_text(value: object) -> str:
    """``str(value)`` shown as written in a matplotlib figure: a ``$`` escaped, so that text between
    two of them (a label ``a$^$b``, an id) is not read as mathematics, which failed the whole figure
    (``ParseSyntaxException``) or showed other text."""
    return str(value).replace("$", r"\$")
