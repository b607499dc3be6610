"""The baseline representation: principal components of the pixels.

Every run computes it, cheaply, so that any learned representation is always shown
beside "raw pixels + PCA" (the floor a morphology model has to beat).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.decomposition import IncrementalPCA

from ..data.sample import sample_rows
from ..errors import UserError
from ..progress import Timer, progress
from ..run import RunDir, write_json, write_npy
from ..run.pages import PageReleaser

log = logging.getLogger("morphospace")


def _pool(batch: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool N x C x H x W by ``factor`` and flatten to N x D."""
    n, c, h, w = batch.shape
    if factor > 1:
        batch = batch[:, :, : h - h % factor, : w - w % factor]
        batch = batch.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    return batch.reshape(n, -1)


class PixelPCA:
    """Incremental PCA of (average-pooled) pixels, streamed over a memory-mapped cube.

    Parameters
    ----------
    n_components : int
        Number of principal components kept.
    pool : int
        Average-pooling factor applied first (2: 64x64 -> 32x32), which removes pixel
        noise and keeps the fit cheap.
    batch_size : int
        Images per incremental step; memory is bounded by it, not by N.

    Attributes
    ----------
    pca_ : sklearn.decomposition.IncrementalPCA
    explained_variance_ratio_ : ndarray
    """

    def __init__(self, n_components: int = 32, pool: int = 2, batch_size: int = 1024):
        self.n_components = n_components
        self.pool = pool
        self.batch_size = batch_size

    def fit(self, cube: np.ndarray, rows: np.ndarray | None = None) -> "PixelPCA":
        """Fit the incremental PCA batch by batch, pooling each batch first.

        At most ``n_components`` components are kept (fewer when there are fewer images or
        pooled pixels). A last batch too small for the PCA is folded into the one before.

        Parameters
        ----------
        cube : ndarray of shape (N, C, H, W)
            The images; may be memory-mapped (one batch is read at a time).
        rows : array of int, optional
            Fit on these rows of ``cube`` only (ascending: a sample of a large cube).

        Returns
        -------
        self
        """
        n = len(cube) if rows is None else len(rows)
        k = min(self.n_components, n, int(np.prod(cube.shape[1:])) // (self.pool ** 2))
        # IncrementalPCA needs every batch to hold at least n_components rows.
        bs = max(self.batch_size, k)
        self.pca_ = IncrementalPCA(n_components=k)
        starts = list(range(0, n, bs))
        if len(starts) > 1 and n - starts[-1] < k:
            starts.pop()  # fold a too-small tail into the previous batch
        # read once: a memory-mapped cube's pages need not stay resident (a sample's rows are
        # scattered: at 200,000 galaxies 1.1 GB was resident between releases of 256 MB read)
        pages = PageReleaser(cube) if rows is None else PageReleaser.scattered(cube)
        for i, s in enumerate(progress(starts, desc="pixel PCA", unit="batch")):
            e = starts[i + 1] if i + 1 < len(starts) else n
            batch = np.asarray(cube[s:e] if rows is None else cube[rows[s:e]], dtype=np.float32)
            pages.read(batch.nbytes)
            self.pca_.partial_fit(_pool(batch, self.pool))
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    def transform(self, cube: np.ndarray) -> np.ndarray:
        """Project pooled images on the principal components, batch by batch.

        Parameters
        ----------
        cube : ndarray of shape (N, C, H, W)

        Returns
        -------
        ndarray of shape (N, k), float32
            k the number of components fitted.
        """
        pages, out = PageReleaser(cube), []
        for s in range(0, len(cube), self.batch_size):
            batch = np.asarray(cube[s: s + self.batch_size], dtype=np.float32)
            pages.read(batch.nbytes)
            out.append(self.pca_.transform(_pool(batch, self.pool)))
        return np.concatenate(out).astype(np.float32)

    def fit_transform(self, cube: np.ndarray) -> np.ndarray:
        """:meth:`fit` on ``cube``, then :meth:`transform` of it.

        Parameters
        ----------
        cube : ndarray of shape (N, C, H, W)

        Returns
        -------
        ndarray of shape (N, k), float32
        """
        return self.fit(cube).transform(cube)


def pixel_pca_fit_rows(n: int, meta: dict) -> np.ndarray | None:
    """The rows a run's pixel PCA was fitted on, from its ``pixels_pca.json`` (None: all ``n``)."""
    return sample_rows(n, int(meta.get("fit_sample") or 0), int(meta.get("seed", 0)))


def pixel_pca_run(run: RunDir, n_components: int = 32, fit_sample: int = 0, seed: int = 0) -> np.ndarray:
    """Write the ``pixels_pca`` embedding of the run's cube.

    Parameters
    ----------
    run : RunDir
    n_components : int
    fit_sample : int
        Above this many images the PCA is fitted on a reproducible sample of that many (drawn
        with ``seed``) and every image projected; 0 fits on all. Principal axes need far fewer
        rows than a survey has: at 200,000 galaxies the full fit took 245 s of the embed stage.
    seed : int
    """
    cube = run.read_cube()
    rows = sample_rows(len(cube), fit_sample, seed)
    if rows is not None and len(rows) < 2:  # one image has no axes: NaN explained variance, warnings
        raise UserError(f"train.sample = {fit_sample} image is too few to fit the pixel PCA on (at least 2; "
                        "0 fits on every image)")
    with Timer(f"pixel PCA ({len(cube)} images, {n_components} components)"):
        model = PixelPCA(n_components=n_components)
        if rows is None:
            z = model.fit_transform(cube)
        else:
            log.info("pixel PCA fitted on a sample of %d of %d images (train.sample), applied to all", len(rows),
                     len(cube))
            z = model.fit(cube, rows=rows).transform(cube)
    write_npy(run.embedding_path("pixels_pca"), z)
    write_json(run.embedding_path("pixels_pca").with_suffix(".json"), {
        "name": "pixels_pca", "method": "IncrementalPCA of 2x average-pooled pixels",
        "n_components": int(z.shape[1]),
        "explained_variance": float(np.sum(model.explained_variance_ratio_)),
        "fit_sample": None if rows is None else int(len(rows)), "seed": int(seed),
    })
    return z
