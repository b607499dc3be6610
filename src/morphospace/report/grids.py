"""Image grids of the report (Pillow): a mosaic of galaxies and one gallery row per cluster.

Galaxies are tiled at the cube's own resolution (or an exact integer upscale)
rather than drawn through matplotlib, which would resample them. Every function
returns a :class:`PIL.Image.Image`; :func:`save_image` writes one as the
report's PNG, atomically.

Examples
--------
>>> import numpy as np
>>> tiles = np.zeros((5, 8, 8, 3), np.uint8)
>>> image_grid(tiles, cols=3).size  # 3 x 2 tiles of 8 px with 2 px between them
(28, 18)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..run import atomic_path
from .style import INK, short

__all__ = ["image_grid", "mosaic_image", "gallery_image", "save_image"]

GALLERY_BAND = 150  # pixels at the left of a gallery for the cluster's colour and name


def image_grid(images: np.ndarray, cols: int, gap: int = 2, background: int = 255,
               scale: int = 1) -> Image.Image:
    """Tile images in a grid, row by row.

    Parameters
    ----------
    images : ndarray, shape (n, H, W, C), uint8
        The images; C is 1 (grey) or 3 (RGB).
    cols : int
        Images per row (at most ``n``).
    gap : int
        Pixels between images.
    background : int
        Grey level of the gaps and of the empty cells of the last row.
    scale : int
        Integer upscaling of the whole grid (nearest neighbour: no resampling).

    Returns
    -------
    PIL.Image.Image
        ``L`` (grey) or ``RGB``.
    """
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), background, dtype=np.uint8)
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        grid[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = img
    pil = Image.fromarray(grid[..., 0] if c == 1 else grid, "L" if c == 1 else "RGB")
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    return pil


def mosaic_image(images: np.ndarray, cols: int = 12) -> Image.Image:
    """A mosaic of galaxies, upscaled x2 when they are smaller than 64 px.

    Parameters
    ----------
    images : ndarray, shape (n, H, W, C), uint8
        The galaxies (:func:`morphospace.report.sprites.to_uint8`).
    cols : int
        Galaxies per row.

    Returns
    -------
    PIL.Image.Image
        The :func:`image_grid` of the galaxies, 2 px white gaps.
    """
    scale = 2 if images.shape[1] < 64 else 1
    return image_grid(images, cols, gap=2, scale=scale)


def gallery_image(rows: list[tuple[str, str, np.ndarray]], per_row: int) -> Image.Image:
    """One row of images per cluster, its name beside a band of its colour at the left.

    Parameters
    ----------
    rows : list of (str, str, ndarray)
        ``(title, hex colour, K x H x W x C uint8 images)``, one per cluster;
        every cluster's images have the same size.
    per_row : int
        At most this many images per row; a cluster with fewer leaves the
        rest of its row white.

    Returns
    -------
    PIL.Image.Image
        RGB, :data:`GALLERY_BAND` pixels of band and name then the images,
        2 px apart.
    """
    h, w, c = rows[0][2].shape[1:]
    gap = 2
    width = GALLERY_BAND + per_row * (w + gap)
    height = len(rows) * (h + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (title, hexcol, imgs) in enumerate(rows):
        y = i * (h + gap)
        draw.rectangle([0, y, 6, y + h - 1], fill=hexcol)
        draw.text((12, y + h // 2 - 6), short(title, 22), fill=INK)
        for k, img in enumerate(imgs[:per_row]):
            tile = Image.fromarray(img[..., 0] if c == 1 else img, "L" if c == 1 else "RGB").convert("RGB")
            canvas.paste(tile, (GALLERY_BAND + k * (w + gap), y))
    return canvas


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Save an image as a PNG, atomically (a temporary name, then a rename).

    Parameters
    ----------
    image : PIL.Image.Image
        A grid of this module.
    path : str or Path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, "PNG")
    return path
