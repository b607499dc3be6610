"""Classes of a run: a labels CSV in, :class:`~.classify.FewLabelClassifier` on an embedding,
per-galaxy classes and suggestions out (``RUN/classes/``), and their columns for the export.

The labels CSV has an id column (matched to the catalogue's ``id`` as text) and a label column.
Whatever in it cannot be used is reported (a log line, which the command line prints) and left
out, never dropped silently: rows without an id or a label, ids not in the run or not in its cube,
ids labelled twice (the same label: kept once; different labels: left out). What makes the file
unusable (not found, not UTF-8, not a CSV, a column missing, a single class, a class with one
label) is a one-line :class:`~morphospace.errors.UserError`.

Written (atomically), for a classification named after the label column, ``<name>`` (letters,
digits and ``_`` only):

* ``classes/<name>.parquet``: one row per cube galaxy: ``id``, ``label`` (the given label, or
  empty), ``class`` (predicted), ``prob_<class>`` (calibrated), ``uncertainty`` (1 - margin);
* ``classes/<name>.json``: the original names of the column and of each class beside their
  column names, the labels file, the embedding, the counts, the cross-validated balanced
  accuracy and confusion matrix, the calibration, and every problem reported;
* ``classes/<name>_suggest.csv``: ``rank``, ``id``, ``why`` (and the uncertainty and the two most
  probable classes) of the galaxies to label next (``--suggest N``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidArgument, UserError, first_line
from ..progress import Timer
from ..run import RunDir, file_stamp, write_json, write_table
from .classify import FewLabelClassifier
from .labels import missing_mask

__all__ = ["read_labels", "align_labels", "column_names", "classify_run", "class_columns", "FOLDER"]

log = logging.getLogger("morphospace")

FOLDER = "classes"


def column_names(names) -> list[str]:
    """Names safe in any table column: accents dropped (NFKD), anything but letters, digits and
    ``_`` replaced by ``_``, never empty, and distinct (``_2``, ``_3``, ... on a clash)."""
    out: list[str] = []
    for name in names:
        ascii_ = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
        base = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]", "_", ascii_)).strip("_")[:60] or "x"
        cand, i = base, 2
        while cand in out:
            cand, i = f"{base}_{i}", i + 1
        out.append(cand)
    return out


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _example(values) -> str:
    values = [str(v) for v in values]
    return ", ".join(repr(v) for v in values[:3]) + (", ..." if len(values) > 3 else "")


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
        A file is missing, not UTF-8, not a CSV, or lacks either column.
    """
    if column == id_column:  # each id its own class: one line saying so, not one naming every id
        raise UserError(f"the label column and the id column are both '{column}': name the column that holds "
                        "the classes with --column (and the ids' with --id-column)")
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
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
    if no_label.any():
        notes.append(f"{_count(int(no_label.sum()), 'row', 'rows')}{where} without a label in '{column}': ignored "
                     f"(ids {_example(ids[no_label])})")
    pairs = pd.DataFrame({"id": ids, "label": labels})[~no_id & ~no_label]
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


def _label_columns(path: Path, column: str, id_column: str) -> tuple[pd.Series, pd.Series]:
    """The id and label columns of one labels CSV, as stripped text, every row."""
    if not path.is_file():
        raise UserError(f"labels file not found: {path}")
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
    for want, option in ((id_column, "--id-column"), (column, "--column")):
        if want not in table.columns:
            raise UserError(f"labels file {path} has no column '{want}' ({option}); its columns: "
                            f"{', '.join(map(str, table.columns)) or 'none'}")
    return table[id_column].str.strip(), table[column].str.strip()


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


def _check_not_another_columns(run: RunDir, name: str, column: str) -> None:
    """Two label columns whose names are filed alike ("my class", "my_class") would overwrite
    each other's classes: refused in one line, before any work."""
    path = run.path / FOLDER / f"{name}.json"
    try:
        other = json.loads(path.read_text()).get("column") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return  # unreadable: this classification rewrites it
    if other is None:  # suggestions alone (no labels yet): their column to fill in names it
        other = _suggested_column(run.path / FOLDER / f"{name}_suggest.csv")
    if other is not None and other != column:
        raise UserError(f"--column '{column}' would be filed as '{name}', where the classes of the column '{other}' "
                        "are: rename one of the two columns in your labels file")
    if name in run.clusterings():  # its prob_<name>_<class> columns would be the clustering's in the export
        raise UserError(f"--column '{column}' would be filed as '{name}', the name of the run's clustering "
                        f"'{name}': rename the column in your labels file")


SUGGESTION_COLUMNS = ("rank", "id", "uncertainty", "first", "second", "why")


def _suggested_column(path: Path) -> str | None:
    """The label column a suggestions file leaves to fill in (its header's one column that is not
    the suggestions' own), or None."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    extra = [h for h in header if h not in SUGGESTION_COLUMNS]
    return extra[0] if len(extra) == 1 else None


def _keep_filled_in(path: Path, column: str) -> Path | None:
    """Set a suggestions file aside, before it is replaced or removed, if someone has filled in a
    label: the labels are theirs (the README's workflow fills the file in place). Renamed to
    ``<name>_suggest_filled<k>.csv``, the first free k, and said; returns the new path."""
    if not path.is_file():
        return None
    try:
        _, labels = _label_columns(path, column, "id")
    except UserError:  # not a suggestions table any more: someone's file all the same
        labels = pd.Series(["?"])
    if missing_mask(labels.to_numpy(dtype=object)).all():
        return None
    k = 1
    while (kept := path.with_name(f"{path.stem}_filled{k}.csv")).exists():
        k += 1
    path.rename(kept)
    log.warning("classify: %s had labels filled in; kept as %s (give it with --labels)", path.name, kept.name)
    return kept


def classify_run(run: RunDir, labels_path, column: str, embedding: str, id_column: str = "id",
                 n_suggest: int = 0, random_state: int = 0) -> dict:
    """Classify every galaxy of a run from a labels CSV; write ``RUN/classes/<name>.*``.

    Parameters
    ----------
    run : RunDir
    labels_path : str, Path, sequence of them, or None
        The labels CSV or CSVs, read as one table (:func:`read_labels`); None: no labels yet
        (only ``n_suggest`` seeds).
    column, id_column : str
        The CSV's label and id columns; ``column`` names the classification.
    embedding : str
        The run's embedding to classify on.
    n_suggest : int
        How many galaxies to suggest for labelling next (0: none).
    random_state : int

    Returns
    -------
    dict
        ``name``, ``metrics`` (the json written, or None without labels), ``suggestions``
        (DataFrame or None) and ``files`` (paths written).

    Raises
    ------
    UserError
        An unusable labels file, no usable label (and nothing to suggest), a single class, a
        class with one label, or an embedding that does not match the cube.
    """
    name = column_names([column])[0]
    _check_not_another_columns(run, name, column)
    X = run.read_embedding(embedding)
    cube_ids = run.cube_ids().astype(str)
    if len(X) != len(cube_ids):
        raise UserError(f"embedding '{embedding}' has {len(X)} rows but the cube {len(cube_ids)}: "
                        "re-run `morphospace embed`")
    notes: list[str] = []
    y = np.full(len(cube_ids), None, dtype=object)
    if labels_path is not None:
        pairs, notes = read_labels(labels_path, column, id_column)
        y, more = align_labels(run, pairs)
        notes += more
    why = f" ({'; '.join(notes)})" if notes else ""  # an error says what was left out, on its one line
    n_labelled = int((y != None).sum())  # noqa: E711 (element-wise)
    if n_labelled == 0 and n_suggest < 1:
        raise UserError(f"no usable label in '{column}' for a galaxy of the cube: nothing to train "
                        f"(add --suggest N to get galaxies to label first){why}")
    try:
        with Timer(f"classifier on '{embedding}' ({n_labelled} labels, cross-validated and calibrated)"):
            clf = FewLabelClassifier(random_state=random_state).fit(X, y)
    except InvalidArgument as exc:
        raise UserError(f"{first_line(exc)}{why}") from None
    for note in notes:
        log.warning("classify: %s", note)
    folder = run.sub(FOLDER)
    files, metrics = [], None
    if clf.model_ is not None:
        cols = column_names(clf.classes_)
        proba = clf.predict_proba(X)
        table = pd.DataFrame({"id": cube_ids, "label": pd.array(y, dtype="string"),
                              "class": clf.classes_[proba.argmax(axis=1)].astype(str)})
        for c, col in enumerate(cols):
            table[f"prob_{col}"] = proba[:, c].astype(np.float32)
        table["uncertainty"] = clf.uncertainty(X).astype(np.float32)
        counts = pd.Series(y[y != None]).value_counts()  # noqa: E711
        metrics = {
            "name": name, "column": column, "id_column": id_column, "embedding": embedding,
            "embedding_stamp": file_stamp(run.embedding_path(embedding)),
            "labels_files": [str(Path(p).resolve()) for p in
                             ([labels_path] if isinstance(labels_path, (str, Path)) else labels_path)],
            "n_galaxies": len(cube_ids), "n_labelled": n_labelled,
            "classes": [{"name": str(c), "column": col, "n_labels": int(counts[c])} for c, col in zip(clf.classes_, cols)],
            "cv": {"balanced_accuracy": clf.cv_balanced_accuracy_, "n_splits": clf.cv_n_splits_,
                   "confusion_matrix": clf.cv_confusion_matrix_.tolist(),
                   "confusion_matrix_axes": "rows: true class, columns: predicted, in the order of 'classes'"},
            "calibration": clf.calibration_, "probabilities": "calibrated for equal class priors",
            "notes": notes,
        }
        write_table(folder / f"{name}.parquet", table)
        write_json(folder / f"{name}.json", metrics)
        files += [folder / f"{name}.parquet", folder / f"{name}.json"]
    suggestions = None
    rows = clf.suggest(n_suggest) if n_suggest > 0 else []
    if len(rows):
        suggestions = _suggestion_table(clf, X, rows, cube_ids)
        if column not in suggestions.columns:  # left blank to fill in: the file goes back as --labels
            suggestions.insert(2, column, "")
        _keep_filled_in(folder / f"{name}_suggest.csv", column)
        write_table(folder / f"{name}_suggest.csv", suggestions)
        files.append(folder / f"{name}_suggest.csv")
    else:  # an earlier model's suggestions (galaxies labelled since, perhaps) would read as this one's
        _keep_filled_in(folder / f"{name}_suggest.csv", column)
        (folder / f"{name}_suggest.csv").unlink(missing_ok=True)
    if len(rows) < n_suggest:
        log.warning("classify: only %d unlabelled galaxies left to suggest (asked for %d)", len(rows), n_suggest)
    log.info("classify '%s' on '%s': %d labelled galaxies%s", column, embedding, n_labelled,
             "" if metrics is None else f", cross-validated balanced accuracy {clf.cv_balanced_accuracy_:.3f}")
    return {"name": name, "metrics": metrics, "suggestions": suggestions, "files": files,
            "classes": None if clf.model_ is None else [str(c) for c in clf.classes_],
            "confusion_matrix": None if clf.model_ is None else clf.cv_confusion_matrix_}


def _suggestion_table(clf: FewLabelClassifier, X: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "id": ids[rows]})
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


def class_columns(run: RunDir) -> dict[str, tuple[str, np.ndarray]]:
    """The export's class columns, in cube order: ``class_<name>`` and ``prob_<name>_<class>``.

    Parameters
    ----------
    run : RunDir

    Returns
    -------
    dict
        Column name -> (kind, values), kind ``"class"`` (text, one per cube row) or ``"prob"``
        (float32), for every classification in ``RUN/classes/``. The classes are given by
        their column-safe names, the ``<class>`` of ``prob_<name>_<class>`` (ASCII, so that
        every export format holds them); ``RUN/classes/<name>.json`` maps them to the originals.

    Raises
    ------
    UserError
        A classification whose galaxies are not the run's cube (re-run ``morphospace classify``).
    """
    folder = run.path / FOLDER
    out: dict[str, tuple[str, np.ndarray]] = {}
    if not folder.is_dir():
        return out
    ids = run.cube_ids().astype(str)
    for meta_path in sorted(folder.glob("*.json")):
        table_path = meta_path.with_suffix(".parquet")
        if not table_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            table = pd.read_parquet(table_path)
        except (OSError, ValueError) as exc:
            raise UserError(f"{table_path} is damaged ({first_line(exc)}): re-run `morphospace classify`") from None
        name = meta.get("name", table_path.stem)
        if len(table) != len(ids) or not np.array_equal(table["id"].astype(str).to_numpy(), ids):
            raise UserError(f"classification '{name}' does not match the run's cube (re-run `morphospace classify`)")
        wanted = {"class"} | {f"prob_{c['column']}" for c in meta.get("classes", [])}
        if not meta.get("classes") or not wanted <= set(table.columns):
            raise UserError(f"{table_path} and {meta_path.name} do not belong together (an interrupted "
                            "`morphospace classify`?): re-run it")
        embedding = run.embedding_path(meta["embedding"]) if meta.get("embedding") else None
        if "embedding_stamp" in meta and embedding is not None and embedding.is_file() \
                and file_stamp(embedding) != meta["embedding_stamp"]:
            log.warning("classification '%s' was made on the '%s' embedding before it was written again (a new "
                        "training?): its classes are the earlier embedding's; run `morphospace classify` again to "
                        "refresh them", name, meta["embedding"])
        safe = {c["name"]: c["column"] for c in meta.get("classes", [])}
        out[f"class_{name}"] = ("class", table["class"].astype(str).map(safe).to_numpy(dtype=object))
        for c in meta.get("classes", []):
            out[f"prob_{name}_{c['column']}"] = ("prob", table[f"prob_{c['column']}"].to_numpy(dtype=np.float32))
    return out
