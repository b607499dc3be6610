"""The cube an estimator fit trains on: the images a notebook passes, checked a chunk of rows at a
time, and placed in the fit's temporary run without a copy where they map a whole ``.npy``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument
from ..run import RunDir
from ..run.pages import PageReleaser

__all__ = ["check_images", "place_cube", "warn_scale", "CHUNK_ROWS"]

CHUNK_ROWS = 1024  # rows checked or copied at a time (50 MB of 3 x 64 x 64 float32): memory flat in N


def float_images(X) -> np.ndarray:
    """``X`` as a float array, an ndarray (a memory-mapped cube) not copied; integer levels (0-255)
    or booleans, in an array or a list, are not a cube's scale: a ``ValueError``, wherever the images
    enter (fit, transform, predict), never trained on or encoded."""
    x = X if isinstance(X, np.ndarray) else np.asarray(X)
    if x.dtype.kind != "f":
        raise InvalidArgument(f"images must be floating point on the run's cube scale, got {x.dtype}")
    return x if isinstance(X, np.ndarray) else x.astype(np.float32, copy=False)


def check_images(X) -> np.ndarray:
    """``X`` as N x C x H x W float rows (a stack of H x W images gets one channel), checked
    ``CHUNK_ROWS`` at a time and not copied: a memory-mapped cube stays on disk."""
    x = float_images(X)
    if x.ndim == 3 and x.shape[0] in (3, 4) and x.shape[0] < x.shape[1] == x.shape[2]:
        # one colour image (C x H x W) read as C grey ones was refused for the latent size, in other words
        warnings.warn(f"images of shape {x.shape} are read as {x.shape[0]} grey images of {x.shape[1]} x "
                      f"{x.shape[2]}; one colour image would be X[None] (a VaDE trains on many)", UserWarning,
                      stacklevel=3)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[2] != x.shape[3] or len(x) < 2:
        raise ValueError(f"expected at least 2 square images, N x C x H x W (or N x H x W), got shape {x.shape}")
    x = _finite(x)
    warn_scale(x)
    return x


def warn_scale(x: np.ndarray) -> None:
    """A warning where images are far from a run's cube's scale (about -0.2 to 1.5: sky at 0, the
    galaxy's core near 1): pixels of 0-255, or shifted, trained and encoded without a word, to codes
    of +-16 and one-hot cluster probabilities. Read from the first rows only; rows that are not
    finite are the model's to refuse, in its words."""
    rows = np.asarray(x[:CHUNK_ROWS])
    if not np.isfinite(rows).all():
        return
    lo, hi = float(rows.min()), float(rows.max())
    if hi > 20 or lo < -2:
        warnings.warn(f"the images span {lo:.3g} to {hi:.3g}, far from a run's cube (about -0.2 to 1.5: sky at 0, "
                      f"the galaxy's core near 1): preprocess them as `ms.ingest` does (or divide 0-255 pixels by "
                      f"255); the model will read them as they are", UserWarning, stacklevel=4)


def _finite(x: np.ndarray) -> np.ndarray:
    """``x``, checked finite ``CHUNK_ROWS`` at a time (a NaN image would give NaN codes, silently)."""
    pages = PageReleaser(x)  # read once: a memory-mapped cube's pages need not stay resident
    for s in range(0, len(x), CHUNK_ROWS):
        rows = x[s:s + CHUNK_ROWS]
        if not np.isfinite(rows).all():
            raise ValueError("images must be finite (no NaN or inf)")
        pages.read(rows.nbytes)
    return x


def _whole_npy(x) -> Path | None:
    """The ``.npy`` file ``x`` maps whole (e.g. a run's ``cube``), or None."""
    source = getattr(x, "filename", None)
    if not (isinstance(x, np.memmap) and source and x.flags.c_contiguous):
        return None
    try:
        whole = np.load(source, mmap_mode="r")
    except (OSError, ValueError):
        return None
    same = (whole.shape, whole.dtype, whole.offset) == (x.shape, x.dtype, x.offset)
    return Path(source).resolve() if same else None


def place_cube(run: RunDir, x: np.ndarray) -> None:
    """The training cube of the estimator's temporary ``run``: a link to ``x``'s file when ``x``
    maps a whole ``.npy`` (a run's ``cube``: no copy), with the neighbour-masked cube beside it
    (used if fresh for that cube, else rebuilt in ``run``, the source untouched); else ``x``
    written a chunk of rows at a time (float16 kept, other types as float32)."""
    import os
    import shutil

    from ..image.masking import MASKED_CUBE, MASKED_META, MASKED_TABLE
    from ..run import atomic_path, new_npy_map

    source = _whole_npy(x)
    if source is not None:
        os.symlink(source, run.cube)
        if all((source.parent / name).is_file() for name in (MASKED_CUBE, MASKED_META, MASKED_TABLE)):
            for name in (MASKED_CUBE, MASKED_TABLE):
                os.symlink(source.parent / name, run.path / name)  # a rebuild renames over the link
            shutil.copyfile(source.parent / MASKED_META, run.path / MASKED_META)
        return
    dtype = x.dtype if x.dtype in (np.float16, np.float32) else np.float32
    with atomic_path(run.cube) as tmp:
        out = new_npy_map(tmp, dtype, x.shape)
        for s in range(0, len(x), CHUNK_ROWS):
            out[s:s + CHUNK_ROWS] = x[s:s + CHUNK_ROWS]
        out.flush()
        del out
