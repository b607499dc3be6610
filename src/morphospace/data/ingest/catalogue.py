"""What an ingest reports: the run's catalogue (one row per record, a column per flag) and its summary."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ...errors import UserError
from .fits_frames import FITS_ROWS
from .layouts import Survey
from .preprocess import PreprocessSpec
from .records import EXCLUDING, FLAG_DESCRIPTIONS

log = logging.getLogger("morphospace")

RESERVED = ("id", "source", "cube_index", "crop", "frame_px")  # our columns: a catalogue column of that name is renamed
N_EXAMPLES = 5  # example ids kept per flag in the summary


def build_catalogue(survey: Survey, cube_index: np.ndarray, crops: np.ndarray | None = None,
                    sides: np.ndarray | None = None) -> pd.DataFrame:
    """The run's catalogue: one row per record, in survey order.

    Parameters
    ----------
    survey : Survey
        The survey, its records flagged.
    cube_index : ndarray of int
        Per record its row in the cube, -1 when it is not in the cube.
    crops : ndarray of float, optional
        Per record the crop its row was cut with (a fraction of its frame's shorter side;
        NaN when it is not in the cube).
    sides : ndarray of int, optional
        Per record its frame's shorter side in pixels as the file stores it (0 when it is not in the cube).

    Returns
    -------
    pandas.DataFrame
        ``id``, ``source``, the label columns (one named like ours gets a ``catalogue_``
        prefix), one boolean ``flag_<name>`` per entry of ``FLAG_DESCRIPTIONS``, ``cube_index``
        and, given ``crops``, ``crop``: with ``framing = "galaxy"`` it measures each galaxy's
        apparent size (its R90 is ``crop / galaxy_r90s`` of the frame's shorter side);
        given ``sides``, ``frame_px`` (missing when it is not in the cube): frames of several
        sizes are resampled to one, and the nuisance audit asks whether clusters follow it.
    """
    recs = survey.records
    table = pd.DataFrame({"id": pd.array(storable_texts([r.id for r in recs]), dtype=object),
                          "source": pd.array(storable_texts([r.where for r in recs]), dtype=object)})
    labels = survey.labels.reset_index(drop=True)
    names = stored_names(labels.columns)
    for col in labels.columns:
        table[names[str(col)]] = labels[col].array
    _say_classes_alike(labels)
    renamed = [str(c) for c in labels.columns if names[str(c)] != str(c)]
    if renamed:
        log.info("catalogue column(s) %s named like the ingest's own: kept as %s", ", ".join(renamed),
                 ", ".join(names[c] for c in renamed))
    flagged = [(i, r.flags) for i, r in enumerate(recs) if r.flags]  # one pass: most records have none
    for flag in FLAG_DESCRIPTIONS:
        column = np.zeros(len(recs), dtype=bool)
        column[[i for i, flags in flagged if flag in flags]] = True
        table[f"flag_{flag}"] = column
    table["cube_index"] = cube_index
    if crops is not None:
        table["crop"] = np.asarray(crops, dtype=np.float32)
    if sides is not None:
        frame_px = pd.array(np.asarray(sides), dtype="Int32")
        frame_px[np.asarray(cube_index) < 0] = pd.NA  # not in the cube: no frame read
        table["frame_px"] = frame_px
    return table


def _say_classes_alike(labels: pd.DataFrame) -> None:
    """A warning for each text column whose classes differ only in case (Spiral, spiral): kept apart,
    as written, but the user should know that the comparisons will count them as two."""
    for col in labels.columns:
        if not (pd.api.types.is_string_dtype(labels[col]) or labels[col].dtype == object):
            continue
        values = pd.Series(labels[col].dropna().astype(str).unique())
        if len(values) > 200:  # free text, not classes
            continue
        folded = values.str.strip().str.casefold()
        alike = values[folded.duplicated(keep=False)]
        if len(alike):
            log.warning("  catalogue column %s: classes differ only in case (%s): kept apart, as written",
                        col, ", ".join(sorted(alike)[:6]))


def stored_name(column) -> str:
    """The name a catalogue's column is stored under: its own, or with a ``catalogue_`` prefix where
    it is named like one of ours (kept, renamed)."""
    name = str(column)
    return f"catalogue_{name}" if name in RESERVED or name.startswith("flag_") else name


def stored_names(columns) -> dict[str, str]:
    """Each catalogue column's stored name (:func:`stored_name`), none the same as another's: a
    renamed ``crop`` met the catalogue's own ``catalogue_crop`` (an exported results table ingested
    again), and one overwrote the other. A clash takes one more ``catalogue_`` prefix."""
    own = [str(c) for c in columns]
    taken = {c for c in own if stored_name(c) == c}  # the columns kept under their own names
    out = {}
    for name in own:
        stored = stored_name(name)
        if stored != name:
            while stored in taken:
                stored = f"catalogue_{stored}"
            taken.add(stored)
        out[name] = stored
    return out


def storable_texts(texts: list[str]) -> list[str]:
    """File names that are not valid UTF-8 (kept by Python as surrogates) made writable to Parquet
    (the bytes UTF-8 cannot read as U+FFFD); the texts themselves where all are valid."""
    try:
        "\n".join(texts).encode("utf-8")
        return texts
    except UnicodeEncodeError:
        return [t.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for t in texts]


def summarise(survey: Survey, catalogue: pd.DataFrame, spec: PreprocessSpec, details: dict,
              seconds: float, workers: int = 1, cube_dtype: str = "float32") -> dict:
    """The ingest summary (also written as ``ingest_summary.json``).

    Parameters
    ----------
    survey : Survey
        The survey ingested.
    catalogue : pandas.DataFrame
        Its catalogue (:func:`build_catalogue`).
    spec : PreprocessSpec
        The preprocessing used.
    details : dict
        flag -> {galaxy id: what was wrong}, for up to ``N_EXAMPLES`` ids per flag.
    seconds : float
        Wall time of the ingest.
    workers : int
        Worker processes used.
    cube_dtype : str
        How the cube stores its pixels.

    Returns
    -------
    dict
        Layout, counts, cube shape, label columns, galaxies with a sky position
        (``n_positions``), the preprocessing, and per raised flag
        its count, meaning, whether it excludes the galaxy, example ids and details.
    """
    flags = {}
    for flag, words in FLAG_DESCRIPTIONS.items():
        hit = catalogue.loc[catalogue[f"flag_{flag}"], "id"]
        if len(hit):
            examples = [str(x) for x in hit.head(N_EXAMPLES)]
            known = details.get(flag, {})
            flags[flag] = {"count": int(len(hit)), "meaning": words, "excluded": flag in EXCLUDING,
                           # a flag that keeps its galaxies may share them with one that does not
                           "n_in_cube": int((catalogue.loc[hit.index, "cube_index"] >= 0).sum()),
                           "examples": examples,
                           "details": {gid: known[gid] for gid in examples if known.get(gid)}}
    n_in = int((catalogue["cube_index"] >= 0).sum())
    names = stored_names(survey.labels.columns)
    return {
        "layout": survey.layout,
        "source": str(survey.root),
        "n_records": int(len(catalogue)),
        "n_in_cube": n_in,
        "n_flagged": int(catalogue[[f"flag_{f}" for f in FLAG_DESCRIPTIONS]].any(axis=1).sum()),
        "cube_shape": [n_in, spec.channels, spec.size, spec.size],
        "cube_dtype": cube_dtype,
        "label_columns": [names.get(str(c), stored_name(c)) for c in survey.label_columns],
        "n_positions": int(catalogue[["ra", "dec"]].notna().all(axis=1).sum())
        if {"ra", "dec"} <= set(catalogue) else 0,
        "preprocess": {"crop": spec.crop, "framing": spec.framing, "galaxy_r90s": spec.galaxy_r90s,
                       "size_spread": spec.size_spread,
                       "size": spec.size, "channels": spec.channels,
                       "normalise": spec.normalise, "softening": spec.softening, "resample": spec.resample,
                       "exact": spec.exact, "jpeg_draft": spec.draft, "level_top": spec.level_top,
                       # FITS frames read top row first (a cube of them before was mirrored): said only
                       # where the survey has some, so a re-ingest of the same JPEGs keeps its results
                       **({"fits_rows": FITS_ROWS} if any(r.kind == "fits" for r in survey.records) else {})},
        "flags": flags,
        "frame_sizes": _frame_sizes(catalogue),
        "workers": workers,
        "seconds": round(seconds, 3),
    }


def _frame_sizes(catalogue: pd.DataFrame) -> dict | None:
    """The native frame sizes of the cube's galaxies where they differ (min, max and how many
    distinct shorter sides), else None."""
    if "frame_px" not in catalogue:
        return None
    sides = catalogue["frame_px"].dropna().to_numpy(dtype=np.int64)
    distinct = np.unique(sides)
    if len(distinct) < 2:
        return None
    return {"min": int(distinct[0]), "max": int(distinct[-1]), "distinct": int(len(distinct))}


def log_summary(summary: dict) -> None:
    """Log the summary: one line, then one warning per raised flag.

    Parameters
    ----------
    summary : dict
        From :func:`summarise`.
    """
    log.info("ingest: %d of %d galaxies in the cube %s %s (%.1f s)%s", summary["n_in_cube"], summary["n_records"],
             "x".join(map(str, summary["cube_shape"])), summary["cube_dtype"], summary["seconds"],
             f"; {summary['n_positions']} with a sky position (ra, dec)" if summary.get("n_positions") else "")
    if sizes := summary.get("frame_sizes"):
        side = summary["cube_shape"][-1]
        log.warning("  frames of %d sizes (%d to %d px on the shorter side) resampled to %d px: a galaxy's "
                    "resolution follows its frame's size; the nuisance audit shows whether clusters follow it "
                    "(frame_px)", sizes["distinct"], sizes["min"], sizes["max"], side)
    for flag, info in summary["flags"].items():
        kept = info.get("n_in_cube", info["count"])
        fate = ("excluded" if info["excluded"] else "kept" if kept == info["count"]
                else f"{kept} kept, {info['count'] - kept} excluded by another flag")
        # a row without an id was an empty example ("e.g. "); the report finds the row by its empty id
        log.warning("  flagged %-17s %6d  (%s; %s) e.g. %s", flag, info["count"], info["meaning"], fate,
                    ", ".join(str(x) if str(x).strip() else "(a row without an id)" for x in info["examples"][:3]))


def flag_counts_line(survey: Survey) -> str:
    """The flags raised so far, as one line: count and two example ids per flag.

    Parameters
    ----------
    survey : Survey
        The survey, its records flagged.

    Returns
    -------
    str
        e.g. ``"2 blank (e.g. g1, g7); 1 not_image (e.g. notes)"``.
    """
    counts: dict[str, list[str]] = {}
    for r in survey.records:
        for f in r.flags:
            counts.setdefault(f, []).append(r.id)
    parts = []
    for flag in FLAG_DESCRIPTIONS:
        if flag in counts:
            ids = counts[flag]
            parts.append(f"{len(ids)} {flag} (e.g. {', '.join(ids[:2])})")
    return "; ".join(parts)


def raise_if_flagged(survey: Survey, where: str) -> None:
    """``--strict``: stop with the flags raised so far, if any.

    Parameters
    ----------
    survey : Survey
        The survey, its records flagged.
    where : str
        What was checked (``"catalogue"`` or ``"image"``), for the message.

    Raises
    ------
    UserError
        When any record is flagged.
    """
    n = sum(1 for r in survey.records if r.flags)
    if n:
        raise UserError(f"--strict: {n} {where} problem(s): {flag_counts_line(survey)}; "
                        "run without --strict to ingest the good galaxies and flag the rest")
