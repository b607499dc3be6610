"""Labels: how a labelling is encoded, which catalogue columns are labels, and their cube order.

A *labelling* is anything that assigns a value to each galaxy: a clustering (noise = -1) or a
catalogue column. :func:`encode` turns one into integer codes once (missing values: None,
NaN, pandas NA and text such as "", "NaN", "N/A"; see :data:`MISSING_MARKERS`), so that it can be
scored against many others (:mod:`morphospace.analysis.compare`). :func:`label_columns` decides
which catalogue columns are categorical labels, :func:`truth_column` which one is the truth,
:func:`is_nuisance_column` which describe viewing conditions instead (audited by
:mod:`morphospace.analysis.nuisance`). :func:`labels_in_cube_order` and
:func:`clustering_in_cube_order` align labels with the rows of the cube.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgument, UserError
from ..run import MISSING_MARKERS, RunDir, in_cube_order

__all__ = [
    "Encoded",
    "encode",
    "missing_mask",
    "MISSING_MARKERS",
    "contingency_counts",
    "is_nuisance_column",
    "is_label_column",
    "label_columns",
    "truth_column",
    "check_label_columns",
    "check_label_settings",
    "labels_in_cube_order",
    "clustering_in_cube_order",
    "clustering_of_cube",
]

# catalogue columns that describe how a galaxy is seen, not what it is: audited by
# morphospace.analysis.nuisance, never treated as a label (matched on the lower-cased name's start)
NUISANCE_PREFIXES = ("position_angle", "pa_", "winding", "handed", "chirality", "n_compan", "companion",
                     "n_field", "psf", "seeing", "size", "r_half", "half_light", "hlr", "sky", "noise", "snr",
                     "frame_px")
# per-companion truth of the synthetic survey (comp0_x, comp1_kind, ...): nuisance detail, not labels
_COMPANION_DETAIL = re.compile(r"comp\d+_")
# catalogue columns that are bookkeeping, never labels
RESERVED = {"id", "source", "cube_index", "crop", "frame_px", "file", "path", "filename", "objid",
            # a survey's own bookkeeping (SDSS's imaging run, camera column and field, its spectra's
            # plate, night and fibre; the Legacy Surveys' brick and release): no morphology in them
            "run", "rerun", "camcol", "field", "specobjid", "dr7objid", "dr8objid", "thing_id", "plate", "mjd",
            "fiberid", "brickid", "brickname", "release", "objid_dr7"}
MAX_LABEL_CLASSES = 50
# what the ingest itself writes beside a catalogue's columns: never a truth
INGEST_COLUMNS = ("id", "source", "cube_index", "crop", "frame_px")


class Encoded(NamedTuple):
    """A labelling as integer codes, encoded once and scored against many others.

    ``codes`` index ``uniques`` (-1 where missing); ``missing`` marks None, NaN,
    pandas NA and blank strings; ``noise`` marks the numeric label -1.
    """

    codes: np.ndarray
    missing: np.ndarray
    noise: np.ndarray
    uniques: np.ndarray


def encode(values: Any, noise: bool = True) -> Encoded:
    """Encode a labelling (ints, floats with NaN, strings with None/"", ...) for scoring; with
    ``noise`` (a clustering's labels) the value -1 is noise, without (a catalogue's classes, where
    -1 may be a class, e.g. a de Vaucouleurs T-type) it is a class like any other."""
    if isinstance(values, Encoded):
        return values
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy(dtype=object)
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.ravel()
    if arr.dtype.kind not in "biuf":
        arr = arr.astype(object)
    try:
        codes, uniques = pd.factorize(arr, sort=True)  # None / NaN / NA -> code -1
    except TypeError:  # mixed types cannot be sorted
        codes, uniques = pd.factorize(arr, sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    uniques = np.asarray(uniques, dtype=object)
    # per distinct value, not per row: blank strings are missing, numeric -1 is noise
    blank = np.array([_is_missing(u) for u in uniques], dtype=bool)
    is_noise = np.array([noise and _is_noise(u) for u in uniques], dtype=bool)
    has = codes >= 0
    safe = np.where(has, codes, 0)
    missing = ~has | (blank[safe] if uniques.size else True)
    noise = has & (is_noise[safe] if uniques.size else False)
    return Encoded(np.where(missing, -1, codes), np.asarray(missing, dtype=bool), np.asarray(noise, dtype=bool),
                   uniques)


def missing_mask(values: Any) -> np.ndarray:
    """True where a label is missing: None, NaN, pandas NA, or text such as "", "NaN", "null",
    "None", "N/A" (:data:`MISSING_MARKERS`)."""
    return encode(values).missing


def named_none(values: Any) -> np.ndarray:
    """True where a label is the text "none" (any case): a word a class may be named by (bar: none /
    weak / strong), which :func:`missing_mask` reads as no label; where labels are given to learn
    from, it is refused rather than its class dropped."""
    text = np.array([isinstance(v, str) and v.strip().lower() == "none" for v in np.asarray(values, dtype=object).ravel()])
    return text.reshape(np.shape(values)) if text.size else np.zeros(np.shape(values), bool)


def labels_to_learn(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels given to learn from (a classifier's, an LDA's; 1-D), read one way: which rows hold one,
    and those labels as a plain array (numbers, or text where kinds mix; a whole-number float as its
    integer, so 1, 1.0 and '1' are one class, as the command line reads them).

    Raises
    ------
    InvalidArgument
        For an infinite label (taken for a class "inf") and for the text "none" (read as no label,
        it would drop a class of that name without a word).
    """
    y = np.asarray(y, dtype=object)
    infinite = [v for v in y if isinstance(v, (float, np.floating)) and np.isinf(v)]
    if infinite:
        raise InvalidArgument(f"y holds {len(infinite)} infinite label(s): a label is a class (text or a whole "
                              "number), None or NaN where a row has none")
    if (named := named_none(y)).any():
        raise InvalidArgument(f"y holds {sorted(set(y[named]))!r} ({int(named.sum())} labels): read as no label, "
                              "it would drop a class of that name; give None or NaN for no label, or name such a "
                              "class otherwise (e.g. 'no_bar')")
    known = ~missing_mask(y)
    return known, known_labels(y[known])


def known_labels(values: np.ndarray) -> np.ndarray:
    """Labels without missing ones as a plain array (ints, floats or text); mixed types as text, a
    whole-number float as its integer (1.0 and '1' are one class, as the command line reads them)."""
    items = list(values)
    if len({isinstance(v, str) for v in items}) < 2:  # one kind: numbers, or text
        out = np.array(items)
        if out.dtype != object:
            return out
    return np.array([str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)
                     for v in items])


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip().lower() in MISSING_MARKERS
    try:
        return bool(v != v)  # NaN, NaT
    except TypeError:  # pd.NA refuses to be a bool
        return True


def _is_noise(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and v == -1


def contingency_counts(ca: np.ndarray, cb: np.ndarray, ka: int | None = None, kb: int | None = None) -> np.ndarray:
    """Counts of the code pairs ``(ca[i], cb[i])`` as a ``ka x kb`` table (codes are 0-based ints)."""
    ka = (int(ca.max()) + 1 if ca.size else 0) if ka is None else ka
    kb = (int(cb.max()) + 1 if cb.size else 0) if kb is None else kb
    return np.bincount(ca * kb + cb, minlength=ka * kb).reshape(ka, kb)


def is_nuisance_column(name: str) -> bool:
    """Whether a catalogue column describes viewing conditions (audited, not compared); one the ingest
    renamed ``catalogue_<name>`` (an earlier export read back as the catalogue) as its name says."""
    low = name.lower().removeprefix("catalogue_")
    return low in ("pa", "pa_deg") or low.startswith(NUISANCE_PREFIXES) or bool(_COMPANION_DETAIL.match(low))


def is_label_column(catalogue: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` holds categorical labels (see :func:`label_columns`)."""
    low = col.lower().removeprefix("catalogue_")  # an earlier export's crop, frame_px... read back, renamed
    if low in RESERVED or low.startswith("flag_") or is_nuisance_column(col):
        return False
    s = catalogue[col]
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_float_dtype(s) and not _whole_numbers(s):
        return False
    enc = encode(s)
    known = enc.codes[~enc.missing]
    n_unique = int(np.unique(known).size)
    # a class column: 2..50 classes, on average at least two galaxies per class (free text,
    # names and comments are one value per galaxy)
    return 2 <= n_unique <= MAX_LABEL_CLASSES and n_unique <= len(known) / 2


def _whole_numbers(s: pd.Series) -> bool:
    """Whether a float column holds only whole numbers (T-types written 1.0, -5.0 by a table
    with a missing cell): classes stored as floats, not a measurement."""
    present = s.dropna().to_numpy(dtype=float)
    return (bool(present.size) and bool(np.isfinite(present).all()) and bool((present == np.round(present)).all())
            and bool((np.abs(present) < 2**53).all()))  # beyond, not whole numbers a float holds exactly


def _holds_labels(s: pd.Series) -> bool:
    """Whether a column holds a label for any galaxy at all."""
    return bool((~missing_mask(s)).any())


def label_columns(catalogue: pd.DataFrame, cfg: Any = None) -> list[str]:
    """Categorical label columns of a catalogue, the truth label first.

    A label column is any column but bookkeeping (id, source, cube_index, ...),
    ``flag_*`` and nuisance columns, that is not floating point (vote fractions
    and measurements are continuous) unless it holds whole numbers only (T-types written
    1.0, -5.0), holding 2 to 50 distinct values with on average
    at least two galaxies each (free text is one value per galaxy). Columns
    that split the galaxies exactly like an earlier one (``gz1_class`` and
    ``gz1_name``) are kept once, the text one preferred.
    """
    cands = [col for col in catalogue.columns if is_label_column(catalogue, col)]
    # text columns before their integer twins, then drop duplicated partitions
    cands.sort(key=lambda c: 1 if pd.api.types.is_numeric_dtype(catalogue[c]) else 0)
    kept: list[str] = []
    for col in cands:
        if not any(_same_partition(catalogue[col], catalogue[k]) for k in kept):
            kept.append(col)
    truth = truth_column(catalogue, cfg, candidates=kept)
    if truth is not None:
        kept = [truth] + [c for c in kept if c != truth]
    return kept


def _other_label_columns(catalogue: pd.DataFrame, refused: str) -> str:
    """The label columns to name in place of a refused truth label (not the refused one itself)."""
    return ", ".join(c for c in label_columns(catalogue) if c != refused) or "none"


def _same_partition(a: pd.Series, b: pd.Series) -> bool:
    ea, eb = encode(a), encode(b)
    if not np.array_equal(ea.missing, eb.missing):
        return False
    keep = ~ea.missing
    table = contingency_counts(ea.codes[keep], eb.codes[keep])
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    return bool(((table > 0).sum(axis=0) == 1).all() and ((table > 0).sum(axis=1) == 1).all())


def truth_column(catalogue: pd.DataFrame, cfg: Any = None, candidates: Sequence[str] | None = None) -> str | None:
    """The label column treated as the truth: ``data.truth_label``, else morph3, morphology
    (where they label a galaxy of the cube: an empty column is no truth), else the first categorical
    label column, else None."""
    wanted = cfg.data.truth_label if cfg is not None else ""
    if wanted:
        if wanted not in catalogue.columns:
            raise UserError(f"data.truth_label '{wanted}' is not a catalogue column "
                            f"(columns: {', '.join(map(str, catalogue.columns))})")
        return wanted
    inside = catalogue[catalogue["cube_index"] >= 0] if "cube_index" in catalogue else catalogue
    for name in ("morph3", "morphology"):
        if name in catalogue.columns and _holds_labels(inside[name]):
            return name
    if candidates is None:
        candidates = label_columns(catalogue, None)
    return candidates[0] if candidates else None


def labels_in_cube_order(run: RunDir, column: str, catalogue: pd.DataFrame | None = None) -> np.ndarray:
    """A catalogue column for the galaxies of the cube, in cube order (missing -> None)."""
    inside = run.cube_catalogue() if catalogue is None else in_cube_order(catalogue)
    if column not in inside.columns:
        raise UserError(f"label column '{column}' is not in the catalogue")
    column_values = inside[column]
    if pd.api.types.is_float_dtype(column_values) and _whole_numbers(column_values):
        column_values = column_values.astype("Int64")  # T-type classes shown as 1, not 1.0
    values = np.array(column_values.to_numpy(dtype=object), dtype=object)  # a copy: pyarrow's null column is read-only
    values[missing_mask(values)] = None
    return values


def clustering_of_cube(run: RunDir, name: str, ids: np.ndarray) -> pd.DataFrame:
    """A clustering's table, row for row the cube's galaxies ``ids``; a ``UserError`` for one that is not
    (cut short, ids changed by hand: aligned by id, the galaxies it missed dropped out of the scores
    without a word)."""
    table = run.read_clustering(name)
    if len(table) != len(ids) or not np.array_equal(table["id"].astype(str).to_numpy(), np.asarray(ids).astype(str)):
        raise UserError(f"clustering '{name}' does not match the run's cube (re-run `morphospace cluster`)")
    return table


def clustering_in_cube_order(run: RunDir, name: str, ids: np.ndarray) -> np.ndarray:
    """A clustering's labels in the order of the cube's galaxies ``ids``, as floats (:func:`clustering_of_cube`)."""
    return clustering_of_cube(run, name, ids)["label"].to_numpy(dtype=np.float64, na_value=np.nan)


def refuse_identifier(values: pd.Series, what: str) -> None:
    """A ``UserError`` for a column that gives every galaxy a value of its own (an id: as many classes
    as galaxies, none of which a comparison or a classifier can learn from), ten galaxies or more."""
    known = pd.Series(np.asarray(values, dtype=object))[~missing_mask(values)].astype(str)
    if len(known) >= 10 and known.nunique() == len(known):
        raise UserError(f"{what} gives each of its {len(known)} galaxies a value of its own (an identifier), "
                        "not classes: name a column of classes")


def check_label_settings(run: RunDir, cfg: Any) -> None:
    """The catalogue columns the later stages will read (``data.truth_label``,
    ``cluster.nuisance_columns``), checked once the catalogue exists: a typo is one line before the
    training, not after it (:func:`check_label_columns` of the run's catalogue)."""
    check_label_columns(run.read_catalogue(), cfg)


def check_label_columns(catalogue: pd.DataFrame, cfg: Any) -> None:
    """:func:`check_label_settings` of a catalogue not yet in a run (an ingest's, before it replaces
    the run's own).

    Raises
    ------
    UserError
        Naming the setting and the column that is not in the catalogue.
    """
    columns = set(catalogue.columns)
    wanted = [("data.truth_label", cfg.data.truth_label)] if cfg.data.truth_label else []
    wanted += [("cluster.nuisance_columns", c) for c in cfg.cluster.nuisance_columns]
    for key, column in wanted:
        if column not in columns:
            # the ingest's own bookkeeping (flags, cube rows, source files) left out of the list
            shown = sorted(c for c in columns if not str(c).startswith("flag_")
                           and c not in INGEST_COLUMNS)
            raise UserError(f"{key}: '{column}' is not a catalogue column (columns: {', '.join(shown) or 'none'})")
    truth = cfg.data.truth_label
    if truth in INGEST_COLUMNS and truth != "id":  # the id: refused below, as an identifier
        raise UserError(f"data.truth_label: '{truth}' is the ingest's own column, not classes of galaxies: name a "
                        f"column of classes (label columns: {_other_label_columns(catalogue, truth)})")
    if truth:
        values = catalogue[truth]
        inside = values[catalogue["cube_index"] >= 0] if "cube_index" in catalogue else values
        if len(inside) and not _holds_labels(inside):
            raise UserError(f"data.truth_label: '{truth}' holds no label for any galaxy of the cube: name a column "
                            f"of classes (label columns: {_other_label_columns(catalogue, truth)})")
        if pd.api.types.is_float_dtype(inside) and np.isinf(inside.dropna().to_numpy(dtype=float)).any():
            # compared as a class "inf", refused by the LDA mid-stage; only the cube's galaxies are compared
            raise UserError(f"data.truth_label: '{truth}' holds {int(np.isinf(inside.dropna().to_numpy(float)).sum())} "
                            f"infinite value(s) for the galaxies of the cube, not classes: mend them (empty where a "
                            f"galaxy has no label) or name a column of classes (label columns: "
                            f"{_other_label_columns(catalogue, truth)})")
        enc = encode(inside, noise=False)
        classes = enc.uniques[np.unique(enc.codes[~enc.missing])]
        if len(classes) == 1:  # every agreement score against it is 0 by construction
            raise UserError(f"data.truth_label: '{truth}' holds one class ({classes[0]!r}) for the galaxies of the "
                            f"cube, so nothing to score against: name a column of two classes or more (label columns: "
                            f"{_other_label_columns(catalogue, truth)})")
        if pd.api.types.is_float_dtype(values):  # whole numbers stored as floats (T-types 1.0, 2.0) are classes
            present = values.dropna().to_numpy(dtype=float)
            fraction = present[np.isfinite(present) & (present != np.round(present))]
            if len(fraction):  # every distinct value would be a class of its own
                raise UserError(f"data.truth_label: '{truth}' holds continuous values (e.g. {float(fraction[0])!r}), not "
                                f"classes: name a column of classes (label columns: "
                                f"{_other_label_columns(catalogue, truth)})")
        refuse_identifier(inside, f"data.truth_label: '{truth}'")
