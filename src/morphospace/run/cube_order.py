"""Cube order: the one alignment of a catalogue with the cube's rows, and the mark a per-galaxy
Series carries while its galaxies stay in that order (a sorted copy loses it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["in_cube_order", "mark_cube_order", "keeps_cube_order", "not_in_cube"]


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


def not_in_cube(catalogue: pd.DataFrame, ids, where: str) -> str:
    """The one line for ids the cube does not hold: those of the catalogue were flagged at ingest
    (named with their flags, as ``classify`` says), the rest are no galaxy of the run.

    Parameters
    ----------
    catalogue : DataFrame
        The run's whole catalogue (``id``, ``cube_index``, ``flag_*``).
    ids : sequence of str
        Ids not in the cube.
    where : str
        The run, as the message names it.
    """
    ids = [str(i) for i in ids]
    known = catalogue.assign(id=catalogue["id"].astype(str)).drop_duplicates("id").set_index("id")
    flags = [c for c in known.columns if str(c).startswith("flag_")]
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    if not any(i in known.index for i in ids):
        return f"no galaxy with id {', '.join(repr(i) for i in ids[:3])}{more} in the cube of {where}"
    parts = []
    for i in ids[:3]:
        if i in known.index:
            raised = [c[5:] for c in flags if bool(pd.notna(known.at[i, c]) and known.at[i, c])]
            parts.append(f"'{i}' was flagged at ingest ({', '.join(raised) or 'left out'})")
        else:
            parts.append(f"no galaxy has id '{i}'")
    return f"{'; '.join(parts)}{more}: not in the cube of {where}"
