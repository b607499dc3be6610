"""The user's tags of a run's anomalies: ``RUN/anomaly_tags.csv`` (``id``, ``tag``), merged call after call.

A tag says a galaxy is *interesting* or *boring*; :mod:`morphospace.analysis.anomaly` re-ranks
the form anomaly score from them. A new tag of a galaxy replaces its old one; every write is
atomic; an id outside the run's cube is a one-line error, never a silent no-op.
"""

from __future__ import annotations

import pandas as pd

from ..errors import UserError
from ..run import RunDir, write_table

__all__ = ["TAGS", "TAGS_FILE", "read_tags", "update_tags"]

TAGS = ("interesting", "boring")
TAGS_FILE = "anomaly_tags.csv"


def read_tags(run: RunDir) -> pd.DataFrame:
    """The user's tags of a run (``RUN/anomaly_tags.csv``): columns ``id`` and ``tag``, empty when none.

    Raises
    ------
    UserError
        The file is damaged (no id and tag columns, or a tag other than interesting / boring).
    """
    path = run.path / TAGS_FILE
    if not path.exists():
        return pd.DataFrame({"id": pd.Series([], dtype=str), "tag": pd.Series([], dtype=str)})
    try:
        tags = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise run.damaged(path, "anomalies", exc) from None
    if list(tags.columns) != ["id", "tag"] or not tags["tag"].isin(TAGS).all():
        raise run.damaged(path, "anomalies", "expected the columns id,tag with tags interesting or boring")
    return tags


def update_tags(run: RunDir, interesting=(), boring=(), untag=()) -> pd.DataFrame:
    """Merge new tags into ``RUN/anomaly_tags.csv`` (a new tag of a galaxy replaces its old one), atomically.

    Parameters
    ----------
    run : RunDir
    interesting, boring, untag : sequence of str
        Galaxy ids to tag interesting, boring, or to untag.

    Returns
    -------
    DataFrame
        The tags now in force (``id``, ``tag``).

    Raises
    ------
    UserError
        An id not in the run's cube, or one id given two different instructions.
    """
    wanted = {"interesting": [str(i) for i in interesting], "boring": [str(i) for i in boring],
              "untag": [str(i) for i in untag]}
    known = set(run.cube_ids().astype(str))
    unknown = [i for ids in wanted.values() for i in ids if i not in known]
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise UserError(f"no galaxy with id {', '.join(repr(i) for i in unknown[:3])}{more} in the cube of {run.path}")
    seen: dict[str, str] = {}
    for what, ids in wanted.items():
        for i in ids:
            if seen.setdefault(i, what) != what:
                raise UserError(f"galaxy {i!r} is both {seen[i]} and {what} in one call: give it one")
    tags = read_tags(run)
    current = dict(zip(tags["id"], tags["tag"]))
    for i, what in seen.items():
        if what == "untag":
            current.pop(i, None)
        else:
            current[i] = what
    out = pd.DataFrame({"id": list(current), "tag": list(current.values())}, dtype=str)
    if seen:
        write_table(run.path / TAGS_FILE, out)
    return out
