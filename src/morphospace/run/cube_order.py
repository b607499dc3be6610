"""Cube order: the one alignment of a catalogue with the cube's rows, and the mark a per-galaxy
Series carries while its galaxies stay in that order (a sorted copy loses it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["in_cube_order", "mark_cube_order", "keeps_cube_order"]


def in_cube_order(catalogue: pd.DataFrame) -> pd.DataFrame:
    """The catalogue rows of the galaxies in the cube, in cube order: row ``i`` describes cube row
    ``i`` (``cube_index == i``); rows left out of the cube (``cube_index`` -1) are dropped and the
    index is reset. The one place that aligns a catalogue with the cube."""
    return catalogue[catalogue["cube_index"] >= 0].sort_values("cube_index").reset_index(drop=True)


# a Series indexed by galaxy id in cube order (a run's clustering) carries the key of that order in
# ``attrs``: pandas copies attrs through a sort, the index changes, and the two no longer match
CUBE_ORDER = "morphospace_cube_order"


def _order_key(index: pd.Index) -> str:
    """A short key of an index's values in their order."""
    import hashlib

    hashed = pd.util.hash_array(np.asarray(index, dtype=object))
    return hashlib.blake2b(hashed.tobytes(), digest_size=16).hexdigest()


def mark_cube_order(series: pd.Series) -> pd.Series:
    """Mark a Series indexed by the cube's galaxy ids, in cube order, as such (in place; returned)."""
    series.attrs[CUBE_ORDER] = _order_key(series.index)
    return series


def keeps_cube_order(series: pd.Series) -> bool:
    """Whether a Series marked by :func:`mark_cube_order` still has its galaxies in cube order."""
    key = series.attrs.get(CUBE_ORDER)
    return isinstance(key, str) and key == _order_key(series.index)
