"""The explorer's "more like this": each galaxy's nearest neighbours in the run's latent space.

The space is the run's preferred embedding (:attr:`RunContents.neighbour_embedding`: the VaDE's,
else the form embedding, pixel PCA, any), or a PCA of block-averaged pixels when the run has
no embedding yet, so the explorer always has neighbours. They are found through the same
nearest-neighbour index as ``morphospace similar``
(:class:`morphospace.analysis.neighbour_index.SimilarityIndex`): faiss's inverted file, which scales to
millions of galaxies, from :data:`~morphospace.analysis.neighbour_index.EXACT_BELOW` (100,000) points
up; an exact search below.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from ..analysis.neighbour_index import EXACT_BELOW, SimilarityIndex
from .collect import RunContents

__all__ = ["pixel_features", "latent_space", "nearest_neighbours", "neighbour_search"]


def pixel_features(cube: np.ndarray, rows: np.ndarray, side: int = 16, chunk: int = 1024) -> np.ndarray:
    """Block-averaged ``side`` x ``side`` copies of cube rows, flattened: a cheap image space.

    Parameters
    ----------
    cube : ndarray, shape (N, C, H, W)
        The (memory-mapped) cube, read front to back in chunks.
    rows : array-like of int
        The rows wanted.
    side : int
        Side of the block-averaged images.
    chunk : int
        Rows read at a time.

    Returns
    -------
    ndarray of float32, shape (len(rows), C * side * side)
        NaN pixels as 0.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n, c, h, w = cube.shape
    fy, fx = max(1, h // side), max(1, w // side)
    hh, ww = h // fy, w // fx
    out = np.empty((len(rows), c * hh * ww), dtype=np.float32)
    order = np.argsort(rows, kind="stable")  # read the memory-mapped cube front to back
    for start in range(0, len(rows), chunk):
        sel = order[start:start + chunk]
        block = np.asarray(cube[rows[sel]], dtype=np.float32)[:, :, : hh * fy, : ww * fx]
        block = block.reshape(len(sel), c, hh, fy, ww, fx).mean(axis=(3, 5))
        out[sel] = np.nan_to_num(block.reshape(len(sel), -1))
    return out


def latent_space(contents: RunContents, points: np.ndarray, seed: int = 0) -> tuple[str, np.ndarray]:
    """The space the neighbours are found in: the run's preferred embedding, else a PCA of the pixels.

    Parameters
    ----------
    contents : RunContents
    points : ndarray of int
        The cube rows on the map.
    seed : int
        The PCA's random state.

    Returns
    -------
    description : str
        The embedding's name, or ``"pixels (PCA of 16 px images)"``.
    rows : ndarray of float32
        One row per point.
    """
    name = contents.neighbour_embedding
    if name is not None:
        return name, contents.embedding(name)[points]
    feats = pixel_features(contents.cube, points)
    k = int(min(32, feats.shape[1], max(1, len(points) - 1)))
    return "pixels (PCA of 16 px images)", PCA(n_components=k, random_state=seed).fit_transform(feats).astype(np.float32)


def nearest_neighbours(X: np.ndarray, k: int = 8, random_state: int = 0, exact_below: int = EXACT_BELOW) -> np.ndarray:
    """Indices of each row's nearest other rows (Euclidean), nearest first, from a :class:`SimilarityIndex`.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    k : int
        Neighbours per row.
    random_state : int
        Seed of the index.
    exact_below : int
        Below this many rows the search is exact (see the module docstring).

    Returns
    -------
    ndarray of int32, shape (n, k)
        A row is never its own neighbour, even when exact duplicates tie with
        it. With fewer than k + 1 rows the missing neighbours are -1.
    """
    return neighbour_search(X, k, random_state, exact_below)[0]


def neighbour_search(X: np.ndarray, k: int = 8, random_state: int = 0,
                     exact_below: int = EXACT_BELOW) -> tuple[np.ndarray, SimilarityIndex | None]:
    """:func:`nearest_neighbours`, and the :class:`SimilarityIndex` that found them (its ``exact_``
    and ``recall_`` say how they were found; None with fewer than 2 rows or ``k`` < 1)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    out = np.full((n, k), -1, dtype=np.int32)
    if n < 2 or k < 1:
        return out, None
    index = SimilarityIndex(random_state=random_state, exact_below=exact_below).fit(X)
    _, idx = index.kneighbors(X, k=k + 1)
    drop = (idx == np.arange(n)[:, None]) | (idx < 0)  # itself, and the index's "none"
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # the others first, nearest first
    kept = np.take_along_axis(idx, order, axis=1)
    kept[np.take_along_axis(drop, order, axis=1)] = -1
    out[:, :kept.shape[1]] = kept
    return out, index
