"""Labels files a person wrote: one or several CSVs of ids and labels read as one table, and
placed in the cube's order.

Whatever in them cannot be used is reported (a line per kind of problem, with a count and
examples) and left out, never dropped silently: rows without an id or a label, ids labelled
twice (the same label: kept once; different labels: left out), ids not in the run or not in its
cube. What makes a file unusable (not found, not UTF-8, not a CSV, a column missing) is a
one-line :class:`~morphospace.errors.UserError`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError, first_line
from ..run import RunDir, spreadsheet_guard_removed
from .labels import missing_mask, named_none

__all__ = ["read_labels", "align_labels", "check_label_and_id_columns", "label_paths"]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _example(values) -> str:
    values = [str(v) for v in values]
    return ", ".join(repr(v) for v in values[:3]) + (", ..." if len(values) > 3 else "")


def label_paths(paths) -> list[Path]:
    """One labels file or several (a path, or a sequence of them) as a list of paths; None: none."""
    if paths is None:
        return []
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if any(not str(p).strip() for p in paths):  # Path("") is ".", the current folder
        raise UserError("a labels file must be named, got an empty path")
    return [Path(p) for p in paths]


def check_label_and_id_columns(column: str, id_column: str) -> None:
    """One column named for both the labels and the ids: each id would be its own class (refused
    in one line, not one naming every id)."""
    if column == id_column:
        raise UserError(f"the label column and the id column are both '{column}': name the column that holds "
                        "the classes with --column (and the ids' with --id-column)")


def read_labels(paths, column: str, id_column: str = "id") -> tuple[pd.DataFrame, list[str]]:
    """The ``(id, label)`` pairs of one or several labels CSVs, as text, and the problems found.

    Parameters
    ----------
    paths : str, Path or sequence of them
        UTF-8 CSVs (a byte-order mark is fine) with a header row, e.g. your labels file and the
        suggestions file you filled in since; their rows are read as one table.
    column, id_column : str
        The label and id columns of every file.

    Returns
    -------
    labels : DataFrame
        ``id`` and ``label`` (str, stripped), one row per id; rows without an id or a label and
        ids labelled twice with different labels (in one file or in two) are left out.
    notes : list of str
        One line per kind of row left out or merged, with a count and examples.

    Raises
    ------
    UserError
        A file is missing, not UTF-8, not a CSV, or lacks either column; a label is "none" (a
        class of that name would be dropped as no label: a blank cell is the way to say none).
    """
    check_label_and_id_columns(column, id_column)
    paths = label_paths(paths)
    if not paths:
        raise UserError("no labels file given")
    tables = [_label_columns(Path(p), column, id_column) for p in paths]
    ids = pd.concat([t[0] for t in tables], ignore_index=True)
    labels = pd.concat([t[1] for t in tables], ignore_index=True)
    where = "" if len(paths) == 1 else f" of {len(paths)} files"
    notes = []
    no_id = (ids == "").to_numpy()
    if no_id.any():
        notes.append(f"{_count(int(no_id.sum()), 'row', 'rows')}{where} without an id: ignored")
    no_label = missing_mask(labels.to_numpy(dtype=object)) & ~no_id
    # "none" is a word a class may be named by (bar: none / weak / strong), and it was read as no label:
    # the class vanished with only a count said. The machine markers (NA, NaN, N/A: R's write.csv, a
    # spreadsheet's "can't tell") stay no label, as in a catalogue
    named = no_label & named_none(labels.to_numpy(dtype=object))
    if named.any():
        raise UserError(f"'{column}' holds {_example(sorted(set(labels[named])))} ({_count(int(named.sum()), 'row', 'rows')})"
                        f": read as no label, it would drop a class of that name; leave a cell blank for no label, "
                        f"or name such a class otherwise (e.g. 'no_{column}')")
    if no_label.any():
        notes.append(f"{_count(int(no_label.sum()), 'row', 'rows')}{where} without a label in '{column}': ignored "
                     f"(ids {_example(ids[no_label])})")
    pairs = pd.DataFrame({"id": ids, "label": _whole_numbers_as_integers(labels)})[~no_id & ~no_label]
    n_rows = len(pairs)
    pairs = pairs.drop_duplicates()
    if n_rows > len(pairs):
        notes.append(f"{_count(n_rows - len(pairs), 'repeated row', 'repeated rows')} (same id, same label): counted once")
    repeated = pairs["id"].duplicated(keep=False).to_numpy()
    if repeated.any():
        bad = pairs["id"][repeated].unique()
        notes.append(f"{_count(len(bad), 'id', 'ids')} labelled twice with different labels: ignored (ids {_example(bad)})")
        pairs = pairs[~repeated]
    return pairs.reset_index(drop=True), notes


def _whole_numbers_as_integers(labels: pd.Series) -> pd.Series:
    """Numeric classes written 1.0 as 1, where every label given is a number: a T-type column saved
    by a spreadsheet or pandas (1.0, -5.0) beside one typed by hand (1, -5) named one class twice,
    and a catalogue column of them reads as whole numbers. Codes with leading zeros stay as written."""
    present = labels[~missing_mask(labels.to_numpy(dtype=object))]
    if present.empty or not present.str.fullmatch(r"[+-]?\d+(\.\d*)?").all():
        return labels
    whole = labels.str.fullmatch(r"[+-]?\d+\.0*")
    return labels.where(~whole, labels.str.replace(r"\.0*$", "", regex=True))


def _label_columns(path: Path, column: str, id_column: str) -> tuple[pd.Series, pd.Series]:
    """The id and label columns of one labels CSV, as stripped text, every row."""
    if path.is_dir():
        raise UserError(f"labels file {path} is a folder: give the CSV file of labels")
    if not path.is_file():
        raise UserError(f"labels file {path} is not a regular file (a pipe or a device): save the labels to a CSV "
                        "file and give its path" if path.exists() else f"labels file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"labels file {path} is not UTF-8 text (byte {exc.start}): save it as a UTF-8 CSV") from None
    if "\x00" in text:
        raise UserError(f"labels file {path} is not a text CSV (it holds NUL bytes)")
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except csv.Error as exc:
        raise UserError(f"labels file {path} is not a readable CSV: {first_line(exc)}") from None
    if not rows:
        raise UserError(f"labels file {path} is empty: it needs a header row with '{id_column}' and '{column}'")
    header = [c.strip() for c in rows[0]]
    long = [i for i, r in enumerate(rows[1:], start=2) if len(r) > len(header)]
    if long:
        raise UserError(f"labels file {path} is not a readable CSV: record {long[0]} has more fields than the "
                        f"header's {len(header)}")
    table = pd.DataFrame([r + [""] * (len(header) - len(r)) for r in rows[1:]], columns=header, dtype=str)
    if table.columns.duplicated().any():
        raise UserError(f"labels file {path} names a column twice: {_example(table.columns[table.columns.duplicated()])}")
    # the explorer's download guards a colouring's name as it does its classes ('=x for =x): read as named
    header_read = spreadsheet_guard_removed(pd.Series(table.columns, dtype="string")).tolist()
    if column not in table.columns and header_read.count(column) == 1:
        table = table.rename(columns={table.columns[header_read.index(column)]: column})
    for want, option in ((id_column, "--id-column"), (column, "--column")):
        if want not in table.columns:
            raise UserError(f"labels file {path} has no column '{want}' ({option}); its columns: "
                            f"{', '.join(map(str, table.columns)) or 'none'}")
    # a class the explorer's download or a suggestions file guarded against running as a formula ('=E):
    # read as its name (=E), as the classes named elsewhere (the explorer, a catalogue) are
    return table[id_column].str.strip(), spreadsheet_guard_removed(table[column].str.strip()).str.strip()


def align_labels(run: RunDir, pairs: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Labels in cube order (None: unlabelled) and the ids that could not be placed.

    Parameters
    ----------
    run : RunDir
    pairs : DataFrame
        ``id`` and ``label`` (:func:`read_labels`).

    Returns
    -------
    y : ndarray of object (N_cube,)
    notes : list of str
        Ids not in the run, and ids in its catalogue but not in its cube (flagged at ingest).
    """
    cat = run.read_catalogue()
    all_ids = set(cat["id"].astype(str))
    cube_ids = run.cube_catalogue()["id"].astype(str).to_numpy()
    row = pd.Series(np.arange(len(cube_ids)), index=cube_ids)
    row = row[~row.index.duplicated()]
    where = row.reindex(pairs["id"].to_numpy())
    unknown = where.isna().to_numpy()
    notes = []
    outside_run = unknown & ~pairs["id"].isin(all_ids).to_numpy()
    if outside_run.any():
        missing = pairs["id"][outside_run]
        # a spreadsheet turns long numeric ids (SDSS objids) into 5.87742E+17 or 587742013302112000.0
        as_numbers = missing.str.fullmatch(r"[+-]?\d+\.0+|[+-]?\d(\.\d+)?[eE]\+?\d+")
        hint = (": they look like numbers a spreadsheet rewrote (keep the id column as text)"
                if as_numbers.mean() > 0.5 else "")
        notes.append(f"{_count(int(outside_run.sum()), 'id', 'ids')} not in the run: ignored (ids {_example(missing)})"
                     + hint)
    outside_cube = unknown & ~outside_run
    if outside_cube.any():
        notes.append(f"{_count(int(outside_cube.sum()), 'id', 'ids')} in the catalogue but not in the cube (flagged at ingest): "
                     f"ignored (ids {_example(pairs['id'][outside_cube])})")
    y = np.full(len(cube_ids), None, dtype=object)
    y[where[~unknown].to_numpy(dtype=int)] = pairs["label"].to_numpy(dtype=object)[~unknown]
    return y, notes
