"""Catalogues beside the images: reading them, typing their columns, joining rows with files.

A catalogue is read as strings and each label column typed afterwards (integers, floats or
strings), so an 18-digit id stays exact and an empty cell is missing rather than ``nan``.
"""

from __future__ import annotations

import functools
import logging
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DataConfig
from ...errors import UserError, first_line
from ...run import MISSING_MARKERS
from ...run.writes import read_parquet
from .files import file_kind, in_dir
from .records import Record

log = logging.getLogger("morphospace")


def find_catalogue(path: Path, cfg: DataConfig) -> Path | None:
    """The catalogue of a survey folder: ``cfg.catalogue``, else its one CSV file, else None.

    Parameters
    ----------
    path : Path
        The survey folder.
    cfg : DataConfig
        ``catalogue`` names the file when set.

    Returns
    -------
    Path or None

    Raises
    ------
    UserError
        When the named catalogue is missing, or the folder holds several CSV files.
    """
    if cfg.catalogue:
        cat = Path(cfg.catalogue)
        if not cat.is_file():
            raise UserError(f"catalogue not found: {cat}")
        return cat
    csvs = sorted(p for p in path.glob("*.csv"))
    if len(csvs) > 1:
        raise UserError(f"{path} has several CSV files ({', '.join(p.name for p in csvs)}): "
                        "name the catalogue with --catalogue")
    return csvs[0] if csvs else None


def read_table(path: Path) -> pd.DataFrame:
    """A catalogue as strings (CSV) or as stored, then as strings (Parquet).

    Parameters
    ----------
    path : Path
        A ``.csv`` or ``.parquet`` file.

    Returns
    -------
    pandas.DataFrame
        Every cell a string; missing cells are ``""``.

    Raises
    ------
    UserError
        When the file cannot be read or parsed (one line).
    """
    try:
        if path.suffix.lower() == ".parquet":
            table = read_parquet(path)
            for col in table.columns:  # an integer column with a missing value is stored as floats: 1.0, 2.0
                values = table[col]
                if values.dtype.kind == "f" and values.notna().any() and bool((values.dropna() % 1 == 0).all()) \
                        and bool((values.dropna().abs() < 2**53).all()):
                    table[col] = values.astype("Int64")  # as text "1", the name of 1.png, not "1.0"
            return table.astype(str).where(table.notna(), "")
        # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first column name
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
        # pandas renames a header named twice (ra, ra.1: a join of two tables repeats such columns): the
        # first of each name is kept, under its name, and the others left out, said (they were kept as ra.1)
        if len(table.columns) > 1:
            header = pd.read_csv(path, dtype=str, header=None, nrows=1, keep_default_na=False, skipinitialspace=True,
                                 encoding="utf-8-sig").iloc[0].str.strip()
            again = (header != "") & header.duplicated()
            if again.any() and len(header) == len(table.columns):
                log.warning("catalogue %s names a column twice (%s): the first of each kept, the others left out",
                            path, ", ".join(dict.fromkeys(header[again])))
                table = table.drop(columns=table.columns[np.flatnonzero(again.to_numpy())])
        if len(table.columns) == 1 and (sep := next((s for s in ";\t|" if s in str(table.columns[0])), None)):
            # read as one column, whose name then held every column's: "has no id column (columns: id;morph)"
            raise UserError(f"catalogue {path} is not comma-separated (its header reads {str(table.columns[0])[:60]!r}, "
                            f"separated by {'a tab' if sep == chr(9) else repr(sep)}): save it as a CSV with commas")
        # a header ending in a comma (spreadsheets write one) gives an empty column named "Unnamed: N"
        blank = [c for c in table.columns if str(c).startswith("Unnamed: ") and not table[c].str.strip().any()]
        return table.drop(columns=blank)
    except UserError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise UserError(f"cannot read catalogue {path}: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types
        raise UserError(f"cannot read catalogue {path}: {type(exc).__name__}") from None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def typed(series: pd.Series) -> pd.Series:
    """A string column as integers, floats or strings; empty cells and text that means "no value"
    ("nan", "NA", "null", "N/A", ...: :data:`~morphospace.run.MISSING_MARKERS`) become missing.

    Parameters
    ----------
    series : pandas.Series
        Strings (as :func:`read_table` gives them).

    Returns
    -------
    pandas.Series
        ``Int64`` when every present cell is an integer that int64 holds (SDSS's 19-digit ids
        included), ``float64`` when every one is a number, else ``string``: ``string`` too when
        a whole number is written with leading zeros (``001``: a tile, field or plate code keeps
        its zeros), or has more than 15 digits and does not fit int64 or sits among fractions
        (a float would change it).
    """
    s = series.astype(str).str.strip()
    present = ~s.str.lower().isin(MISSING_MARKERS)
    if not present.any():
        return pd.Series(pd.NA, index=s.index, dtype="string")
    values = s[present]
    codes = values.str.fullmatch(r"[+-]?0\d+").any()  # written with leading zeros: tile 001, plate 0266
    whole = values.str.fullmatch(r"[+-]?\d+")
    digits = values.str.lstrip("+-").str.len()
    long = whole & (digits > 15)  # more digits than a float holds exactly: kept exactly, or as text
    huge = whole & (digits > 18)  # 19 digits and more: int64 may not hold them, pandas parses them as floats
    if not codes and whole.all():
        if all(INT64_MIN <= int(v) <= INT64_MAX for v in values[huge]):  # int64 exactly (19-digit SDSS ids too)
            out = pd.Series(pd.NA, index=s.index, dtype="Int64")
            out[present] = [int(v) for v in values] if huge.any() else values.astype(np.int64)
            return out
    numbers = pd.to_numeric(values, errors="coerce")
    if not codes and not long.any() and numbers.notna().all():
        out = pd.Series(np.nan, index=s.index, dtype="float64")
        out[present] = numbers.astype(float)
        return out
    out = s.astype("string")
    out[~present] = pd.NA
    return out


def pick_column(columns: list[str], wanted: str, guesses: tuple[str, ...], what: str, path: Path) -> str | None:
    """The column named ``wanted``, else the first of ``guesses`` present (case-insensitive).

    Parameters
    ----------
    columns : list of str
        The catalogue's columns.
    wanted : str
        The column the user named; ``""`` to guess.
    guesses : tuple of str
        Lower-case names to try, in order.
    what : str
        What the column is (``"id"``, ``"file"``), for the message.
    path : Path
        The catalogue, for the message.

    Returns
    -------
    str or None
        None when nothing was named and no guess matches.

    Raises
    ------
    UserError
        When the named column is not in the catalogue.
    """
    if wanted:
        if wanted not in columns:
            raise UserError(f"catalogue {path.name} has no {what} column '{wanted}' (columns: {', '.join(columns)})")
        return wanted
    lower = {c.lower(): c for c in columns}
    for g in guesses:
        if g in lower:
            return lower[g]
    return None


def _nothing_matches(image_dir: Path, ids: list[str], files_col: list[str] | None, files: list) -> str:
    """Why no catalogue row found its image: what the first row names beside what the folder holds
    (it quoted a file of the folder as the row's), and names that differ only in case."""
    named = Path(files_col[0]).name if files_col is not None else ids[0]
    row = f"id '{ids[0]}'" + (f", file '{files_col[0]}'" if files_col is not None else "")
    by_case = {name.lower(): name for _, name in files} if files_col is not None else \
        {stem.lower(): stem for stem, _ in files}
    if named not in by_case.values() and named.lower() in by_case:
        return (f"none of the {len(ids)} catalogue rows matches an image in {image_dir}: the names differ in "
                f"upper and lower case only (the catalogue's '{named}', the folder's '{by_case[named.lower()]}'); "
                "correct one or the other")
    return (f"none of the {len(ids)} catalogue rows matches an image in {image_dir} (its first row: {row}; the "
            f"folder's first image: '{files[0][1]}'): name the id or file column with --id-column or --file-column")


def join_files(image_dir: Path, root: Path, ids: list[str], files_col: list[str] | None,
               files: list[tuple[str, str]], table: pd.DataFrame) -> tuple[list[Record], pd.DataFrame]:
    """Join catalogue rows with files on disk.

    Parameters
    ----------
    image_dir : Path
        The image folder.
    root : Path
        The survey folder (a file column may be relative to it or to ``image_dir``).
    ids : list of str
        The catalogue's ids, in order.
    files_col : list of str or None
        The catalogue's file column; None to match files to ids by name stem.
    files : list of (str, str)
        (stem, name) of the folder's files (:func:`~morphospace.data.ingest.files.list_files`).
    table : pandas.DataFrame
        The label columns, one row per id.

    Returns
    -------
    records : list of Record
        One per catalogue row (flagged ``missing_image`` when its file is absent), then one
        per image no row names (flagged ``no_catalogue_row``).
    labels : pandas.DataFrame
        The label table aligned with ``records`` (empty rows for the unnamed images).
    """
    first_by_stem: dict[str, str] = {}
    for file_stem, name in files:
        first_by_stem.setdefault(file_stem, name)
        # a file name in decomposed Unicode (NFD, as macOS disks write them) is the id a catalogue
        # writes composed (NFC): 'galáxia' matched no row, and the image and the row were two galaxies
        first_by_stem.setdefault(unicodedata.normalize("NFC", file_stem), name)
    listed = {name for _, name in files}
    records: list[Record] = []
    used: set[str] = set()
    path_of = in_dir(image_dir)
    real_dir = os.path.realpath(image_dir)
    real = functools.lru_cache(maxsize=1024)(os.path.realpath)  # the few folders a file column names

    def in_image_dir(c: Path) -> bool:  # also by an absolute path, a "../" or a linked folder
        return c.parent == image_dir or real(str(c.parent)) == real_dir
    for i, gid in enumerate(ids):
        name = (first_by_stem.get(gid) or first_by_stem.get(unicodedata.normalize("NFC", gid))) \
            if files_col is None else files_col[i]
        if not name:
            records.append(Record(id=gid, source="", flags=frozenset({"missing_image"})))
            continue
        if files_col is None:  # a file of the folder, matched by stem: plain string work (pathlib costs more)
            used.add(name)
            records.append(Record(id=gid, source=path_of(name), kind=file_kind(name)))
            continue
        p = Path(name)
        candidates = [p] if p.is_absolute() else [root / p, image_dir / p]
        full = next((c for c in candidates if c.name in listed and in_image_dir(c)), None)
        if full is None:
            full = next((c for c in candidates if os.path.lexists(c)), None)
        if full is None:
            records.append(Record(id=gid, source=str(candidates[0]), kind=file_kind(name),
                                  flags=frozenset({"missing_image"})))
            continue
        if full.name in listed and in_image_dir(full):
            used.add(full.name)
        records.append(Record(id=gid, source=str(full), kind=file_kind(full.name)))
    if ids and files and not any(r.source and "missing_image" not in r.flags for r in records):
        raise UserError(_nothing_matches(image_dir, ids, files_col, files))
    rows = list(range(len(ids)))
    for file_stem, name in files:
        if name not in used:
            records.append(Record(id=file_stem, source=path_of(name), kind=file_kind(name),
                                  flags=frozenset({"no_catalogue_row"})))
            rows.append(-1)
    labels = table.reindex(rows).reset_index(drop=True) if len(table.columns) else pd.DataFrame(index=range(len(rows)))
    return records, labels
