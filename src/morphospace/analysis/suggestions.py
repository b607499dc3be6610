"""The suggestions file of a classification (``RUN/classes/<name>_suggest.csv``): the galaxies to
label next, with why each was chosen, written to be filled in and given back with ``--labels``; one
that someone has filled in is set aside, never written over (and the fresh one given in its place is refused)."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from .classify import FewLabelClassifier
from .label_files import check_label_and_id_columns, label_paths
from .labels import missing_mask

__all__ = ["SUGGESTION_COLUMNS"]

log = logging.getLogger("morphospace")

# a suggestions file: rank, the ids (under the labels files' id column), the label column to fill
# in, then these (the last three only where a classifier was fitted)
SUGGESTION_COLUMNS = ("rank", "uncertainty", "first", "second", "why")


def _suggested_column(path: Path) -> str | None:
    """The label column a suggestions file leaves to fill in (its third, after the rank and the
    ids), or None for a file that is not a suggestions table."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return header[2] if len(header) >= 4 and header[0] == "rank" and header[-1] == "why" else None


def _check_columns(column: str, id_column: str, n_suggest: int) -> None:
    """A label or id column that a suggestions file would hold twice: refused in one line (a label
    column called ``second`` was written pre-filled with the classifier's own second guess)."""
    check_label_and_id_columns(column, id_column)
    for option, name in (("--column", column), ("--id-column", id_column)):
        if n_suggest > 0 and name in SUGGESTION_COLUMNS:
            raise UserError(f"{option} '{name}' is a column of the suggestions file ({', '.join(SUGGESTION_COLUMNS)}): "
                            "rename it in your labels file to use --suggest")


def _check_not_a_fresh_suggestions_file(suggest_path: Path, labels_path, column: str) -> None:
    """A one-line error where a labels file given is the run's suggestions file, none of it filled in,
    and one filled in before was set aside (``_filled<k>.csv``): the command that read the filled one,
    given again, read the fresh blank one in its place and trained quietly on fewer labels."""
    if not suggest_path.is_file():
        return
    paths = [p.resolve() for p in label_paths(labels_path) if p.is_file()]
    kept = re.compile(rf"{re.escape(suggest_path.stem)}_filled(\d+)\.csv")
    filled = sorted((p for p in suggest_path.parent.iterdir() if kept.fullmatch(p.name)),
                    key=lambda p: int(kept.fullmatch(p.name).group(1)))  # _filled10 after _filled9
    if suggest_path.resolve() not in paths or not filled or any(p in paths for p in map(Path.resolve, filled)) \
            or _filled_in(suggest_path, column):
        return  # not given, nothing kept, a kept one given beside it (the next round), or filled in
    raise UserError(f"{suggest_path.name} is a fresh suggestions file, none of it filled in; the one filled in "
                    f"before is kept as {filled[-1].name}: give that with --labels (and fill this one in first, "
                    f"or leave it out)")


def _filled_in(path: Path, column: str) -> bool:
    """Whether a suggestions file holds a label (judged by its label column alone: its ids may be under
    another name, an earlier --id-column); a file unreadable as a table counts as filled in."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        labels = table[column] if column in table.columns else pd.Series(["?"])  # someone's file all the same
    except Exception:  # noqa: BLE001 - unreadable as a table: not ours to drop
        labels = pd.Series(["?"])
    return not missing_mask(labels.to_numpy(dtype=object)).all()


def _keep_filled_in(path: Path, column: str) -> Path | None:
    """Set a suggestions file aside, before it is replaced or removed, if someone has filled in a
    label: the labels are theirs (the README's workflow fills the file in place). Renamed to
    ``<name>_suggest_filled<k>.csv``, the first free k, and said; returns the new path."""
    if not path.is_file() or not _filled_in(path, column):
        return None
    k = 1
    while (kept := path.with_name(f"{path.stem}_filled{k}.csv")).exists():
        k += 1
    path.rename(kept)
    log.warning("classify: %s had labels filled in; kept as %s (give it with --labels)", path.name, kept.name)
    return kept


def _suggestion_table(clf: FewLabelClassifier, X: np.ndarray, rows: np.ndarray, ids: np.ndarray,
                      id_column: str = "id") -> pd.DataFrame:
    """Rank, id (under ``id_column``: the file goes back with the labels files), and why each was chosen."""
    table = pd.DataFrame({"rank": np.arange(1, len(rows) + 1), id_column: ids[rows]})
    if clf.model_ is None:
        table["why"] = "diverse seed (no labels yet): nearest galaxy to one of the k-means centres of the embedding"
        return table
    proba = clf.predict_proba(X[rows])
    top = np.argsort(-proba, axis=1)[:, :2]
    names = clf.classes_.astype(str)
    table["uncertainty"] = (1 - (proba[np.arange(len(rows)), top[:, 0]] - proba[np.arange(len(rows)), top[:, 1]])).round(3)
    table["first"] = names[top[:, 0]]
    table["second"] = names[top[:, 1]]
    table["why"] = [f"uncertain: {proba[i, a]:.2f} {names[a]} vs {proba[i, b]:.2f} {names[b]}; "
                    "nearest the centre of its group of uncertain galaxies" for i, (a, b) in enumerate(top)]
    return table
