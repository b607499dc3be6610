"""Classes of a run: a labels CSV in, :class:`~.classify.FewLabelClassifier` on an embedding,
per-galaxy classes and suggestions out (``RUN/classes/``), and their columns for the export.

The labels CSVs (one or several, read as one by :mod:`~.label_files`) have an id column
(matched to the catalogue's ``id`` as text) and a label column; what in them cannot be used is
reported and left out. A single class or a class with one label is a one-line
:class:`~morphospace.errors.UserError`.

Written (atomically), for a classification named after the label column, ``<name>`` (letters,
digits and ``_`` only):

* ``classes/<name>.parquet``: one row per cube galaxy: ``id``, ``label`` (the given label, or
  empty), ``class`` (predicted), ``prob_<class>`` (calibrated), ``uncertainty`` (1 - margin);
* ``classes/<name>.json``: the original names of the column and of each class beside their
  column names, the labels file, the embedding, the counts, the cross-validated balanced
  accuracy and confusion matrix, the calibration, and every problem reported;
* ``classes/<name>_suggest.csv``: ``rank``, ``id``, ``why`` (and the uncertainty and the two most
  probable classes) of the galaxies to label next (``--suggest N``; :mod:`~.suggestions`).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata

import numpy as np
import pandas as pd

from ..errors import InvalidArgument, UserError, first_line
from ..progress import Timer
from ..run import RunDir, content_stamp, spreadsheet_safe, stamp_is_current, write_json, write_table
from ..run.writes import read_parquet
from .classify import FewLabelClassifier
from .label_files import align_labels, label_paths, read_labels
from .suggestions import (SUGGESTION_COLUMNS, _check_columns, _check_not_a_fresh_suggestions_file, _keep_filled_in,
                          _suggested_column, _suggestion_table)

__all__ = ["read_labels", "align_labels", "column_names", "classify_run", "class_columns", "FOLDER", "SUGGESTION_COLUMNS"]

log = logging.getLogger("morphospace")

FOLDER = "classes"


def column_names(names) -> list[str]:
    """Names safe in any table column: accents dropped (NFKD), anything but letters, digits and
    ``_`` replaced by ``_``, never empty, and distinct whatever their case (``_2``, ``_3``, ... on a
    clash: FITS column names ignore case)."""
    out: list[str] = []
    folded: set[str] = set()
    for name in names:
        base = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]", "_", _ascii(str(name)))).strip("_")[:60] or "x"
        out.append(_unused(base, folded, str.casefold))
    return out


def _ascii(text: str) -> str:
    """``text`` with its accents dropped (NFKD) and whatever else is not ASCII left out."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _unused(base: str, taken: set[str], key=lambda text: text) -> str:
    """``base``, else ``base_2``, ``base_3``... : the first whose ``key`` is not in ``taken`` (added to it)."""
    cand, i = base, 2
    while key(cand) in taken:
        cand, i = f"{base}_{i}", i + 1
    taken.add(key(cand))
    return cand


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
    folder = run.path / FOLDER
    alike = sorted(p.stem for p in folder.glob("*.json") if p.stem != name and p.stem.lower() == name.lower()) \
        if folder.is_dir() else []
    if alike:  # FITS column names and some file systems ignore case: one would overwrite or block the other
        raise UserError(f"--column '{column}' would be filed as '{name}', beside the classes of '{alike[0]}', a name "
                        "that differs only in case (FITS exports and some file systems ignore case): rename the "
                        "column in your labels file")
    if name in run.clusterings():  # its prob_<name>_<class> columns would be the clustering's in the export
        raise UserError(f"--column '{column}' would be filed as '{name}', the name of the run's clustering "
                        f"'{name}': rename the column in your labels file")


def _check_not_a_catalogue_column(run: RunDir, labels_path) -> None:
    """A ``--labels`` that names no file but a column of the run's catalogue (``study --labels`` takes a
    column): one line saying how to classify from it, where "labels file not found" left the user stuck."""
    missing = [p for p in label_paths(labels_path) if not p.exists()]
    if not missing:
        return
    columns = set(map(str, run.read_catalogue().columns))
    named = next((str(p) for p in missing if str(p) in columns), None)
    if named is not None:
        raise UserError(f"labels file not found: {named}; '{named}' is a column of the run's catalogue, and classify "
                        f"reads labels from a CSV: write one with `morphospace export {run.path} --out labels.csv`, "
                        f"blank any classes to hold out, then give --labels labels.csv --column {named}")


def _check_export_columns(run: RunDir, name: str, column: str, classes, cols: list[str]) -> None:
    """A class whose export column ``prob_<name>_<class>`` another result of the run writes too (the
    clustering ``gmm3_form_pca``'s ``prob_gmm3_form_pca_0`` is classification ``gmm3``'s class
    ``form_pca_0``): refused in one line before anything is written (export refused it later)."""
    import pyarrow.parquet as pq

    ours = {f"prob_{name}_{col}": str(c) for c, col in zip(classes, cols)}
    for meta_path in sorted((run.path / FOLDER).glob("*.json")):  # another classification's (a's b_c, a_b's c)
        try:
            meta = json.loads(meta_path.read_text())
            theirs = [f"prob_{meta_path.stem}_{c['column']}" for c in meta.get("classes", [])]
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            continue  # unreadable: the export says so
        taken = next((col for col in theirs if col in ours), None)
        if meta_path.stem != name and taken is not None:
            raise UserError(f"--column '{column}': its class '{ours[taken]}' would be exported as '{taken}', the "
                            f"column of the run's classification '{meta.get('column', meta_path.stem)}': rename "
                            "the class or the column in your labels file")
    for other in run.clusterings():
        try:
            names = pq.read_schema(run.clustering_path(other)).names
        except (OSError, ValueError):
            continue  # unreadable: the export says so
        for col in (c for c in names if c.startswith("prob_") and f"prob_{other}_{c[5:]}" in ours):
            taken = f"prob_{other}_{col[5:]}"
            raise UserError(f"--column '{column}': its class '{ours[taken]}' would be exported as '{taken}', the "
                            f"column of the run's clustering '{other}': rename the class or the column in your "
                            "labels file")


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
        ``name``, ``metrics`` (the json written, or None without labels), ``summary`` (one line:
        labels, classes, cross-validated balanced accuracy, folds), ``suggestions`` (DataFrame or
        None) and ``files`` (paths written).

    Raises
    ------
    UserError
        An unusable labels file, no usable label (and nothing to suggest), a single class, a
        class with one label, or an embedding that does not match the cube.
    """
    _check_columns(column, id_column, n_suggest)
    name = column_names([column])[0]
    _check_not_another_columns(run, name, column)
    X = run.embedding_of_cube(embedding)
    cube_ids = run.cube_ids().astype(str)
    notes: list[str] = []
    y = np.full(len(cube_ids), None, dtype=object)
    if labels_path is not None:
        _check_not_a_catalogue_column(run, labels_path)
        _check_not_a_fresh_suggestions_file(run.path / FOLDER / f"{name}_suggest.csv", labels_path, column)
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
    if clf.model_ is not None:  # refused before any file of the user's is touched
        cols = column_names(clf.classes_)
        _check_export_columns(run, name, column, clf.classes_, cols)
    folder = run.sub(FOLDER)
    suggest_path = folder / f"{name}_suggest.csv"
    kept = _keep_filled_in(suggest_path, column)  # the file is replaced or removed below, either way
    given = label_paths(labels_path)
    labels_files = [str((kept if kept is not None and p.resolve() == suggest_path.resolve() else p).resolve())
                    for p in given]  # where each file is now
    files, metrics = [], None
    if clf.model_ is not None:
        proba = clf.predict_proba(X)
        table = pd.DataFrame({"id": cube_ids, "label": pd.array(y, dtype="string"),
                              "class": clf.classes_[proba.argmax(axis=1)].astype(str)})
        for c, col in enumerate(cols):
            table[f"prob_{col}"] = proba[:, c].astype(np.float32)
        table["uncertainty"] = clf.uncertainty(X).astype(np.float32)
        counts = pd.Series(y[y != None]).value_counts()  # noqa: E711
        metrics = {
            "name": name, "column": column, "id_column": id_column, "embedding": embedding,
            "embedding_stamp": content_stamp(run.embedding_path(embedding)),
            "labels_file": labels_files[0], "labels_files": labels_files,
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
        suggestions = _suggestion_table(clf, X, rows, cube_ids, id_column)
        suggestions.insert(2, column, "")  # left blank to fill in: the file goes back as --labels
        # filled in in a spreadsheet: no class name runs as a formula there (the ids stay as they are)
        write_table(suggest_path, spreadsheet_safe(suggestions, keep=(id_column,)))
        files.append(suggest_path)
    else:  # an earlier model's suggestions (galaxies labelled since, perhaps) would read as this one's
        suggest_path.unlink(missing_ok=True)
    if len(rows) < n_suggest:
        log.warning("classify: only %d unlabelled galaxies left to suggest (asked for %d)", len(rows), n_suggest)
    summary = f"classify '{column}' on '{embedding}': " + (
        f"{n_labelled} labelled galaxies" if metrics is None else
        f"{n_labelled} labels, {len(metrics['classes'])} classes, cross-validated balanced accuracy "
        f"{metrics['cv']['balanced_accuracy']:.3f} ({metrics['cv']['n_splits']}-fold)")
    # the run's log.txt only (a banner): the command prints this line itself, where its results go
    log.info("%s", summary, extra={"banner": True})
    return {"name": name, "metrics": metrics, "summary": summary, "suggestions": suggestions, "files": files,
            "classes": None if clf.model_ is None else [str(c) for c in clf.classes_],
            "confusion_matrix": None if clf.model_ is None else clf.cv_confusion_matrix_}


def _ascii_classes(name: str, classes: pd.Series, names: list[str]) -> pd.Series:
    """``classes`` with each class that is not printable ASCII written as its nearest ASCII text
    (accents dropped; ``_2``... where that is another class's name), the others as they are; every
    change said in the log (FITS text is ASCII)."""
    taken = set(names)
    renamed: dict[str, str] = {}
    for original in names:
        if original.isascii() and original.isprintable():
            continue
        base = "".join(ch if ch.isprintable() else "_" for ch in _ascii(original)) or "x"
        renamed[original] = _unused(base, taken)
    if renamed:
        log.info("classification '%s': %d class(es) not in ASCII written for FITS as %s", name, len(renamed),
                 ", ".join(f"{k!r} -> {v!r}" for k, v in renamed.items()))
    return classes.map(lambda c: renamed.get(c, c))


def class_columns(run: RunDir, ascii_text: bool = False) -> dict[str, tuple[str, np.ndarray]]:
    """The export's class columns, in cube order: ``class_<name>`` and ``prob_<name>_<class>``.

    Parameters
    ----------
    run : RunDir
    ascii_text : bool
        For a format whose text is ASCII (FITS): the classes that are not printable ASCII are
        given as their nearest ASCII text (said in the log), the others as they are.

    Returns
    -------
    dict
        Column name -> (kind, values), kind ``"class"`` (text, one per cube row: the class as the
        labels named it) or ``"prob"`` (float32), for every classification in ``RUN/classes/``;
        the ``<class>`` of ``prob_<name>_<class>`` is the class's column-safe name
        (``RUN/classes/<name>.json`` maps them to the originals).

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
        for path in (meta_path, table_path):  # the file at fault named, not its partner
            try:
                if path == meta_path:
                    meta = json.loads(meta_path.read_text())
                    if not isinstance(meta, dict):
                        raise ValueError("not a table of settings")
                else:
                    table = read_parquet(table_path)
            except (OSError, ValueError) as exc:
                raise UserError(f"{path} is damaged ({first_line(exc)}): re-run `morphospace classify`") from None
        name = meta.get("name", table_path.stem)
        if len(table) != len(ids) or not np.array_equal(table["id"].astype(str).to_numpy(), ids):
            raise UserError(f"classification '{name}' does not match the run's cube (re-run `morphospace classify`)")
        wanted = {"class"} | {f"prob_{c['column']}" for c in meta.get("classes", [])}
        if not meta.get("classes") or not wanted <= set(table.columns):
            raise UserError(f"{table_path} and {meta_path.name} do not belong together (an interrupted "
                            "`morphospace classify`?): re-run it")
        embedding = run.embedding_path(meta["embedding"]) if meta.get("embedding") else None
        if "embedding_stamp" in meta and embedding is not None and embedding.is_file() \
                and not stamp_is_current(meta["embedding_stamp"], embedding):
            log.warning("classification '%s' was made on the '%s' embedding before it was written again (a new "
                        "training?): its classes are the earlier embedding's; run `morphospace classify` again to "
                        "refresh them", name, meta["embedding"])
        classes = table["class"].astype(str)
        if ascii_text:
            classes = _ascii_classes(name, classes, [c["name"] for c in meta.get("classes", [])])
        out[f"class_{name}"] = ("class", classes.to_numpy(dtype=object))
        for c in meta.get("classes", []):
            col = f"prob_{name}_{c['column']}"
            if col in out:  # a classification made before classify refused it: one would replace the other
                raise UserError(f"two classifications would both be exported as '{col}' (one of them is '{name}'): "
                                "delete one of them from RUN/classes/, rename its column and classify again")
            out[col] = ("prob", table[f"prob_{c['column']}"].to_numpy(dtype=np.float32))
    return out
