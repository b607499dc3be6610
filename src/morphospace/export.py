"""The results catalogue: one row per input galaxy, for the user's own tools.

Columns (a stable contract): ``id``, the input label columns, the boolean
``flag_<reason>`` quality columns, ``crop`` (the fraction of its frame each galaxy's cube row
shows: with the galaxy framing, its apparent size), then for every clustering ``cluster_<name>``
(missing for galaxies not in the cube, -1 for noise) and ``prob_<name>_<k>`` where the
clustering is soft, then per-galaxy scores (e.g. ``vade_anomaly``) where a model wrote them.
Written as CSV, Parquet or FITS (an :class:`astropy.table.Table`) by the output file's
extension, always atomically (a temporary name beside the target, then a rename).

Examples
--------
>>> from morphospace.run import RunDir
>>> table = results_table(RunDir("runs/gz1"))  # doctest: +SKIP
>>> export(RunDir("runs/gz1"), "results.fits")  # doctest: +SKIP
PosixPath('results.fits')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .config import load_config
from .errors import UserError
from .run import RunDir, atomic_path, spreadsheet_safe
from .run.places import run_owning
from .run.writes import to_parquet

log = logging.getLogger("morphospace")

FITS_NAME_MAX = 68  # a TTYPEn card's longest string value

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["FORMATS", "results_table", "export", "fits_table"]

FORMATS = (".csv", ".parquet", ".fits")


def results_table(run: RunDir, ascii_text: bool = False) -> pd.DataFrame:
    """Build the results catalogue of ``run``: one row per input galaxy.

    Parameters
    ----------
    run : RunDir
        A run with a catalogue and a cube; every clustering of the run must
        cover exactly the cube's galaxies.
    ascii_text : bool
        For FITS, whose text is ASCII: classes named otherwise are given by their column-safe
        names (:func:`~morphospace.analysis.classes.class_columns`).

    Returns
    -------
    DataFrame
        ``id``, the label columns and ``flag_<reason>`` columns of the
        catalogue, ``cluster_<name>`` (nullable Int64: missing for galaxies
        outside the cube, -1 for noise), ``prob_<name>_<k>`` (float32) for soft
        clusterings and ``vade_<score>`` (float32) where the VaDE wrote
        per-galaxy scores. Per classification of ``morphospace classify``
        (``RUN/classes/``): ``class_<name>`` (text: the predicted class as the labels
        named it, missing outside the cube) and ``prob_<name>_<class>`` (float32,
        calibrated), the column names sanitised to letters, digits and ``_`` (the
        originals are in ``RUN/classes/<name>.json``). Where the run has a form anomaly score
        (``RUN/anomaly.parquet``): ``form_anomaly`` (raw), ``form_anomaly_rank``
        ([0, 1]), ``form_anomaly_score`` (re-ranked by the user's tags) and ``anomaly_tag``.

    Raises
    ------
    UserError
        When a clustering, a classification or the anomaly score does not match the run's cube.
    """
    cat = run.read_catalogue()
    keep = [c for c in cat.columns if c not in ("source", "cube_index")]
    table = cat[keep].copy()
    results: dict[str, Any] = {}  # every column the run adds, by what adds it (its name for an error)
    owner: dict[str, str] = {}

    def put(name: str, values: Any, what: str) -> None:
        if name in results:
            raise UserError(f"export: {what} and {owner[name]} both write the column '{name}': remove the "
                            f"classification's files from {run.path / 'classes'} and run `morphospace classify` again "
                            "with its labels column renamed")
        results[name], owner[name] = values, what
    in_cube = cat["cube_index"].to_numpy()
    ids_in_cube = run.cube_ids()
    from .analysis.cluster import clustering_interrupted
    from .analysis.labels import clustering_of_cube
    from .run.provenance import stale_results
    from .vade.io import embeddings_outdated

    if clustering_interrupted(run):  # as compare and the report say it
        log.warning("export: the last `morphospace cluster` did not finish: some of the exported clusterings are its "
                    "and the others the run's before (run `morphospace cluster %s` again for one set)", run.path)
    if (why := embeddings_outdated(run)) is not None:  # as the report says it
        log.warning("export: the model's own clusters and scores (vade, vade_*, and the form anomaly score made from "
                    "its form embedding) are not those of the run's model: %s (run `morphospace embed %s` to make "
                    "them again)", why, run.path)
    stale = {k.partition("/")[2]: why for k, why in stale_results(run).items() if k.startswith("clusterings/")}
    if stale:  # left out, as compare and the report leave them out: they describe another version of the galaxies
        shown = "; ".join(f"{k} ({v})" for k, v in list(stale.items())[:3]) + ("; ..." if len(stale) > 3 else "")
        log.warning("export: %d clustering(s) left out, made from an earlier embedding or map: %s (run `morphospace "
                    "reduce` and `morphospace cluster` again to export them)", len(stale), shown)
    for name in [n for n in run.clusterings() if n not in stale]:
        clus = clustering_of_cube(run, name, ids_in_cube)
        # Join by cube position, not id: ids may repeat among flagged rows.
        labels = pd.array(np.full(len(cat), pd.NA), dtype="Int64")
        labels[in_cube >= 0] = clus["label"].to_numpy()[in_cube[in_cube >= 0]]
        put(f"cluster_{name}", labels, f"the clustering '{name}'")
        for col in [c for c in clus.columns if c.startswith("prob_")]:
            probs = np.full(len(cat), np.nan, dtype=np.float32)
            probs[in_cube >= 0] = clus[col].to_numpy()[in_cube[in_cube >= 0]]
            put(f"prob_{name}_{col[5:]}", probs, f"the clustering '{name}'")
    scores = run.path / "vade_galaxies.parquet"
    if scores.exists():
        per = run.read_table(scores, "embed")
        if len(per) != len(ids_in_cube) or ("id" in per.columns and not np.array_equal(
                per["id"].astype(str).to_numpy(), ids_in_cube.astype(str))):
            raise UserError("vade_galaxies.parquet does not match the run's cube (re-run `morphospace embed`)")
        for col in ("anomaly", "log_likelihood", "recon_error", "label_prob"):
            if col in per.columns:
                values = np.full(len(cat), np.nan, dtype=np.float32)
                values[in_cube >= 0] = per[col].to_numpy()[in_cube[in_cube >= 0]]
                put(f"vade_{col}", values, "the VaDE's scores")
    # --- few-label classes (`morphospace classify`, RUN/classes/): class_<name>, prob_<name>_<class> ---
    from .analysis.classes import class_columns

    for col, (kind, values) in class_columns(run, ascii_text).items():
        if kind == "class":
            column = pd.array(np.full(len(cat), None, dtype=object), dtype="string")
        else:
            column = np.full(len(cat), np.nan, dtype=np.float32)
        column[in_cube >= 0] = values[in_cube[in_cube >= 0]]
        put(col, column, f"the classification '{col.split('_', 1)[1]}'" if kind == "class" else "a classification")
    # --- end of the classes block ---
    # --- form anomaly (`analysis/anomaly.py`, RUN/anomaly.parquet): raw, rank, current (tag re-ranked) score, tag ---
    from .analysis.anomaly import read_anomaly, tags_current

    found = read_anomaly(run)
    if found is not None:
        per, meta = found
        if "tags_stamp" in meta and not tags_current(run, meta["tags_stamp"]):  # said, as the report says it
            log.warning("anomaly_tags.csv changed since `morphospace anomalies` scored: the exported anomaly_tag and "
                        "form_anomaly_score are those of that scoring (run `morphospace anomalies %s` first)", run.path)
        if len(per) != len(ids_in_cube) or not np.array_equal(per["id"].astype(str).to_numpy(), ids_in_cube.astype(str)):
            raise UserError("anomaly.parquet does not match the run's cube (re-run `morphospace anomalies RUN`)")
        for col, name in (("form_anomaly", "form_anomaly"), ("form_anomaly_rank", "form_anomaly_rank"),
                          ("score", "form_anomaly_score")):
            values = np.full(len(cat), np.nan, dtype=np.float32)
            values[in_cube >= 0] = per[col].to_numpy()[in_cube[in_cube >= 0]]
            put(name, values, "the anomaly score")
        if "tag" in per.columns:
            tags = pd.array(np.full(len(cat), None, dtype=object), dtype="string")
            tags[in_cube >= 0] = per["tag"].astype(str).to_numpy()[in_cube[in_cube >= 0]]
            put("anomaly_tag", tags, "the anomaly tags")
    # --- end of the form anomaly block ---
    for name in [n for n in results if n in table.columns]:  # the user's own column of that name stays, renamed
        kept, i = f"{name}_input", 1
        while kept in table.columns or kept in results:
            kept, i = f"{name}_input{i}", i + 1
        log.warning("the catalogue's own column '%s' is exported as '%s': the run's results take its name", name, kept)
        table = table.rename(columns={name: kept})
    return pd.concat([table, pd.DataFrame(results, index=table.index)], axis=1)


def _check_not_the_survey_s(run: RunDir, out: Path) -> None:
    """A one-line :class:`UserError` where ``out`` is a file of the survey the run read (its catalogue,
    an image, its HDF5 file): replaced by the results, the survey could not be ingested again."""
    from .run.provenance import survey_read

    if not out.is_file():
        return
    target, survey = out.resolve(), survey_read(run)
    root = Path(survey).resolve() if survey else None
    if root is not None and (target == root or (root.is_dir() and target.is_relative_to(root))) \
            and not _an_export(target):
        raise UserError(f"--out {out} is a file of the survey the run read ({survey}): write the results catalogue "
                        "under a new name")
    try:  # a catalogue given apart from the survey's folder (`ingest --catalogue`)
        catalogue = load_config(run.config).data.catalogue if run.config.is_file() else ""
    except UserError:
        catalogue = ""
    if catalogue and Path(catalogue).resolve() == target:
        raise UserError(f"--out {out} is the catalogue the run's survey was read with: write the results catalogue "
                        "under a new name")


def _an_export(path: Path) -> bool:
    """Whether ``path`` holds a results catalogue an export wrote (its ``flag_<reason>`` columns, which
    no survey's catalogue has): writing it again is fine."""
    try:
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8", errors="replace") as fh:
                names = fh.readline().split(",")
        elif path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        else:
            from astropy.io import fits

            with fits.open(path) as hdul:
                names = list(getattr(hdul[1], "columns", None).names) if len(hdul) > 1 else []
    except Exception:  # noqa: BLE001 - unreadable as a table: not an export of ours
        return False
    return any(str(n).strip().lower().startswith("flag_") for n in names)


def export(run: RunDir, out: str | Path) -> Path:
    """Write the results catalogue of ``run`` to a file, atomically.

    Parameters
    ----------
    run : RunDir
        A run with at least a catalogue and a cube (``morphospace ingest``).
    out : str or Path
        The file to write; its extension picks the format: ``.csv``,
        ``.parquet`` or ``.fits`` (a FITS binary table written by
        :meth:`astropy.table.Table.write`). It must lie outside the run's own
        files. The table is written to a temporary name beside ``out`` and
        renamed onto it, so an interrupted export never leaves a half-written
        file (an existing ``out`` is untouched until the new one is complete).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    UserError
        When ``out`` is empty, a folder, one of the run's own files, has an
        unknown extension, or a clustering does not match the cube.

    Examples
    --------
    >>> export(RunDir("runs/gz1"), "results.fits")  # doctest: +SKIP
    PosixPath('results.fits')
    """
    if not str(out).strip():
        raise UserError("--out must name a file, got an empty path")
    folder_meant = str(out).endswith(("/", "\\"))  # Path("new.csv/") forgets the slash: a file named so
    out = Path(out)
    owner = run_owning(out, also=run.path)  # this run even without its config.toml
    if owner is not None:  # this run's files, or another run's (its catalogue replaced, the run unusable)
        whose = "the run's own files" if owner == run.path.resolve() else f"the files of the run {owner}"
        raise UserError(f"--out {out} would overwrite {whose}: write the results catalogue outside it, or beside "
                        "its files under a new name")
    if out.is_dir() or folder_meant:
        raise UserError(f"--out {out} is a folder: name a file (.csv, .parquet or .fits)")
    _check_not_the_survey_s(run, out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"cannot export to '{out.name}': use one of {', '.join(FORMATS)}")
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:  # said "cannot use lab.csv: File exists"
        raise UserError(f"--out {out}: {blocked} is a file, not a folder")
    table = results_table(run, ascii_text=suffix == ".fits")
    fits = fits_table(table) if suffix == ".fits" else None  # refused before any folder or file is made
    try:
        with atomic_path(out) as tmp:
            if suffix == ".csv":  # opened in spreadsheets: no text of the catalogue's runs as a formula there
                spreadsheet_safe(table).to_csv(tmp, index=False)
            elif suffix == ".parquet":
                to_parquet(table, tmp)
            else:
                fits.write(tmp, format="fits", overwrite=True)
    except OSError as exc:  # said of the temporary file beside it: of the user's path instead
        name = Path(str(exc.filename or "")).name
        if exc.errno is None or exc.filename2 is not None or not (name.startswith(f".{out.name}.")
                                                                  and name.endswith(".partial")):
            raise
        raise type(exc)(exc.errno, exc.strerror, str(out)) from None
    return out


def fits_table(table: pd.DataFrame) -> "Table":
    """The results catalogue as an :class:`astropy.table.Table` ready for FITS.

    Parameters
    ----------
    table : DataFrame
        The results catalogue (:func:`results_table`).

    Returns
    -------
    astropy.table.Table
        The same columns, through :meth:`Table.from_pandas
        <astropy.table.Table.from_pandas>`: booleans as FITS logicals (``L``),
        integers as 64-bit (``K``, missing values masked, ``TNULL``), every
        float as 64-bit (``D``, missing as NaN; ``ra`` and ``dec`` with unit ``deg``) and
        anything else as text (``A``, missing masked).
    """
    from astropy.table import Table

    ready = {}
    folded: dict[str, str] = {}
    for col in table.columns:
        s = table[col]
        name = str(col)
        twin = folded.setdefault(name.upper(), name)
        if twin != name:  # FITS names compare without case: a reader would find either under both
            raise UserError(f"cannot write the columns '{twin}' and '{name}' to FITS: FITS column names ignore case; "
                            "rename one in the catalogue (or the labels), or export to .csv or .parquet instead")
        if not (name.isascii() and name.isprintable()) or len(name) > FITS_NAME_MAX:
            # a FITS column name is a header card's value: printable ASCII, at most 68 characters
            raise UserError(f"cannot write the column {ascii(name)[:80]} to FITS: its name must be printable ASCII "
                            f"of at most {FITS_NAME_MAX} characters; rename it in the catalogue, or export to "
                            ".csv or .parquet instead")
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
            ready[col] = s
        elif pd.api.types.is_float_dtype(s):
            ready[col] = s.astype(np.float64)
        else:  # text: str values and NaN, which from_pandas turns into a masked string column
            values = [np.nan if _missing(v) else str(v) for v in s.to_numpy(dtype=object)]
            odd = next((v for v in values if isinstance(v, str) and not v.isascii()), None)
            if odd is not None:  # FITS text is ASCII: astropy would fail in the middle of the write
                raise UserError(f"cannot write column '{col}' to FITS: its text is ASCII only, and "
                                f"{ascii(odd)[:60]} is not; export to .csv or .parquet instead")
            ready[col] = pd.Series(values, index=s.index, dtype=object)
    out = Table.from_pandas(pd.DataFrame(ready, index=table.index))
    for col in out.colnames:  # astropy's null marker is 999999, a value a column may hold: one it does not
        column = out[col]
        if getattr(column, "mask", None) is not None and column.dtype.kind in "iu" and column.mask.any():
            present = set(np.asarray(column.data[~column.mask]).tolist())
            info = np.iinfo(column.dtype)
            top = min(int(info.max), 2**63 - 1)  # a FITS K column is signed: astropy refuses a uint64 above
            column.fill_value = next(v for v in (int(info.min), top, *range(top - 1, top - 2 - len(present), -1))
                                     if v not in present)
    for col in ("ra", "dec"):  # the sky positions of the ingest (data.ingest.positions)
        if col in out.colnames:
            out[col].unit = "deg"
    return out


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
