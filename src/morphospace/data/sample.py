"""Reproducible samples of a survey's rows.

A model (or a clusterer) that cannot afford every galaxy of a large survey learns from a sample
and is then applied to all of them; :func:`sample_rows` draws the sample, the same rows for the
same ``(n, size, seed)`` (:class:`morphospace.nets.batches.RowView` shows them of a cube).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_rows"]


def sample_rows(n: int, size: int, seed: int) -> np.ndarray | None:
    """Sorted indices of ``size`` of ``n`` rows drawn without replacement, or None when ``size``
    is 0 or at least ``n`` (use every row).

    Parameters
    ----------
    n : int
        Rows there are.
    size : int
        Rows wanted; 0: all.
    seed : int
        Seed of the draw: the same ``(n, size, seed)`` give the same rows.

    Returns
    -------
    ndarray of int64 or None
    """
    if not size or n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=int(size), replace=False)).astype(np.int64)
