"""The user's tags of a run's anomalies: ``RUN/anomaly_tags.csv`` (``id``, ``tag``), merged call after call.

A tag says a galaxy is *interesting* or *boring*; :mod:`morphospace.analysis.anomaly` re-ranks
the form anomaly score from them. A new tag of a galaxy replaces its old one; every write is
atomic; an id outside the run's cube is a one-line error, never a silent no-op.
"""

from __future__ import annotations

import pandas as pd

from ..errors import UserError, first_line
from ..run import RunDir, write_table
from ..run.rundir import TAGS_FILE
from ..run.cube_order import not_in_cube

__all__ = ["TAGS", "TAGS_FILE", "read_tags", "update_tags"]

TAGS = ("interesting", "boring")


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
    # the user's own file (edited by hand, perhaps): read leniently, and where it cannot be read, the
    # way out is to mend or delete it (no stage rewrites it from anything else)
    fix = "mend it (columns id,tag; tags interesting or boring) or delete it to drop the tags"
    try:
        # the header read as a row: a row longer than it is an error (with the header as the header,
        # rows all one field longer made their first field an index, and the tag the next field)
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, header=None)
    except Exception as exc:  # noqa: BLE001 - pandas raises several types for a damaged CSV
        raise UserError(f"cannot read {path} ({first_line(exc)[:120]}): {fix}") from None
    if not len(table):
        raise UserError(f"{path} has the columns none: {fix}")
    tags = table.iloc[1:].reset_index(drop=True)
    tags.columns = [str(c).strip().lower() for c in table.iloc[0]]
    if list(tags.columns) != ["id", "tag"]:
        raise UserError(f"{path} has the columns {', '.join(tags.columns) or 'none'}: {fix}")
    tags = tags.assign(id=tags["id"].str.strip(), tag=tags["tag"].str.strip().str.lower())
    bad = tags.loc[~tags["tag"].isin(TAGS)]
    if len(bad):
        raise UserError(f"{path}: galaxy '{bad['id'].iloc[0]}' is tagged '{bad['tag'].iloc[0]}' "
                        f"({len(bad)} row(s) so): {fix}")
    both = tags.groupby("id")["tag"].nunique()
    if (both > 1).any():  # which one was meant? the re-ranking would count it both ways
        raise UserError(f"{path}: galaxy '{both.index[both > 1][0]}' is tagged both interesting and boring "
                        f"({int((both > 1).sum())} galaxy(ies) so): {fix}")
    return tags.drop_duplicates("id", keep="last").reset_index(drop=True)


def checked_request(run: RunDir, interesting=(), boring=(), untag=()) -> dict[str, str]:
    """What a call asks of each galaxy (``"interesting"``, ``"boring"`` or ``"untag"``), checked
    before anything is read or written.

    Raises
    ------
    UserError
        An id not in the run's cube (but for an untag of a tag the file holds), or one id given two
        different instructions.
    """
    wanted = {"interesting": [str(i) for i in interesting], "boring": [str(i) for i in boring],
              "untag": [str(i) for i in untag]}
    known = set(run.cube_ids().astype(str))
    # a tag of a galaxy no longer in the cube (re-ingested without it) is kept and not used: it can be untagged
    tagged = set(read_tags(run)["id"]) if wanted["untag"] and any(i not in known for i in wanted["untag"]) else set()
    unknown = [i for what, ids in wanted.items() for i in ids if i not in known and not (what == "untag" and i in tagged)]
    if unknown:
        raise UserError(not_in_cube(run.read_catalogue(), unknown, str(run.path)))
    seen: dict[str, str] = {}
    for what, ids in wanted.items():
        for i in ids:
            if seen.setdefault(i, what) != what:
                raise UserError(f"galaxy {i!r} is both {seen[i]} and {what} in one call: give it one")
    return seen


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
    seen = checked_request(run, interesting, boring, untag)
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
