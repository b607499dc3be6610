"""Survey layouts on disk, auto-detected.

Each layout turns a path into a :class:`Survey`: a list of :class:`Record` (one per
galaxy, in catalogue order, then images without a catalogue row) and a table of
label columns aligned with it. Known layouts, tried in this order:

``synthetic``
    The built-in mock survey written by ``morphospace synth``: a folder with a
    ``morphospace_synth.json`` marker, ``catalogue.csv`` (id, file, morphology, truth
    columns) and ``images/``.
``sdss-gz1``
    ``images/<objid>.jpeg`` + ``labels.csv`` (objid, gz1_class, gz1_name); a ``morph3``
    column is derived: elliptical (0), spiral (1, 2), edge_on (3), missing otherwise.
``kaggle-gz2``
    Kaggle "Galaxy Zoo - The Galaxy Challenge": ``images_training_rev1/<GalaxyID>.jpg`` +
    ``training_solutions_rev1.csv`` (GalaxyID and the 37 vote fractions Class1.1 ...
    Class11.6). Columns ``gz2_class`` and ``morph3`` are derived from the vote
    fractions by :func:`derive_gz2_class` with the cuts of ``data.vote_thresholds``.
``fits``
    A folder of FITS cutouts (2-D, or a band cube), optionally with a catalogue.
``folder``
    A folder of images (JPEG/PNG/TIFF/...), or a folder with an ``images/`` sub-folder,
    optionally with a catalogue CSV naming an id column, a file column and label
    columns (guessed, or named by ``data.id_column``, ``data.file_column``,
    ``data.label_columns``; ``data.catalogue`` names the CSV). Without a file column
    an image belongs to the row whose id is its file name without extension.
``galaxy10``
    Galaxy10 HDF5 (SDSS 69x69 or DECaLS 256x256): datasets ``images`` (N x H x W x 3
    uint8) and ``ans`` (class 0-9); a ``.h5`` file, or a folder holding one. Other 1-D
    datasets of length N (DECaLS: ra, dec, redshift, pxscale) become columns.

Every file of an image folder counts (except hidden files and, beside a catalogue,
text companions such as CSV, JSON or Markdown), so a stray non-image file is
flagged ``not_image`` rather than silently skipped, and two files with the same
name stem are both kept (the second flagged ``duplicate_id``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DataConfig, VoteThresholds
from ...errors import UserError, first_line
from .records import Record, flag_duplicates

log = logging.getLogger("morphospace")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp", ".webp")
FITS_EXTENSIONS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")
# Files beside the images that are documentation or tables, not galaxies (top-level folders only).
COMPANION_EXTENSIONS = (".csv", ".tsv", ".json", ".txt", ".md", ".rst", ".toml", ".yaml", ".yml", ".parquet",
                        ".py", ".ipynb", ".log", ".html", ".pdf") + HDF5_EXTENSIONS
LAYOUTS = ("folder", "sdss-gz1", "kaggle-gz2", "galaxy10", "fits", "synthetic")
SYNTH_MARKER = "morphospace_synth.json"
KAGGLE_IMAGES = "images_training_rev1"
KAGGLE_CSV = "training_solutions_rev1.csv"
KAGGLE_VOTE_COLUMNS = [f"Class{q}.{a}" for q, n in
                       [(1, 3), (2, 2), (3, 2), (4, 2), (5, 4), (6, 2), (7, 3), (8, 7), (9, 3), (10, 3), (11, 6)]
                       for a in range(1, n + 1)]

GZ1_MORPH3 = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "edge_on"}
GZ2_MORPH3 = {"smooth": "elliptical", "spiral": "spiral", "barred_spiral": "spiral", "edge_on": "edge_on"}
GALAXY10_NAMES = {
    "decals": [
        "disturbed", "merging", "round_smooth", "in_between_round_smooth", "cigar_shaped_smooth",
        "barred_spiral", "unbarred_tight_spiral", "unbarred_loose_spiral", "edge_on_without_bulge",
        "edge_on_with_bulge",
    ],
    "sdss": [
        "disk_face_on_no_spiral", "smooth_completely_round", "smooth_in_between_round",
        "smooth_cigar_shaped", "disk_edge_on_rounded_bulge", "disk_edge_on_boxy_bulge",
        "disk_edge_on_no_bulge", "disk_face_on_tight_spiral", "disk_face_on_medium_spiral",
        "disk_face_on_loose_spiral",
    ],
}
GALAXY10_MORPH3 = {
    "decals": {2: "elliptical", 3: "elliptical", 4: "elliptical", 5: "spiral", 6: "spiral", 7: "spiral",
               8: "edge_on", 9: "edge_on"},
    "sdss": {1: "elliptical", 2: "elliptical", 3: "elliptical", 4: "edge_on", 5: "edge_on", 6: "edge_on",
             7: "spiral", 8: "spiral", 9: "spiral"},
}


@dataclass
class Survey:
    """A survey listed from disk.

    Attributes
    ----------
    layout : str
    root : Path
    records : list of Record
    labels : pandas.DataFrame
        One row per record (same order), one column per label.
    n_bands : int
        3 for colour images, the band count for FITS cubes, 1 for grey.
    """

    layout: str
    root: Path
    records: list[Record]
    labels: pd.DataFrame
    n_bands: int

    def __len__(self) -> int:
        return len(self.records)

    @property
    def label_columns(self) -> list[str]:
        return [str(c) for c in self.labels.columns]


def _known() -> str:
    return f"known layouts: {', '.join(LAYOUTS)}"


def _is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_EXTENSIONS)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _kind(name: str) -> str:
    return "fits" if _is_fits(name) else "image"


_EXTENSIONS_LONGEST_FIRST = tuple(sorted(IMAGE_EXTENSIONS + FITS_EXTENSIONS, key=len, reverse=True))


def _stem(name: str) -> str:
    lower = name.lower()
    for ext in _EXTENSIONS_LONGEST_FIRST:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            return [c.strip() for c in fh.readline().strip().split(",")]
    except OSError:
        return []


def detect_layout(path: str | Path) -> str:
    """Name the layout of ``path``, or raise a one-line error listing the known layouts."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data not found: {path}")
    if path.is_file():
        if path.name.lower().endswith(HDF5_EXTENSIONS):
            return "galaxy10"
        raise UserError(f"cannot read {path}: give a survey folder or a Galaxy10 .h5 file ({_known()})")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise UserError(f"cannot list {path}: {exc.strerror or exc}") from None
    if SYNTH_MARKER in names:
        return "synthetic"
    if (path / "images").is_dir() and (path / "labels.csv").is_file():
        header = _csv_header(path / "labels.csv")
        if "objid" in header and "gz1_class" in header:
            return "sdss-gz1"
    if (path / KAGGLE_IMAGES).is_dir() and (path / KAGGLE_CSV).is_file():
        return "kaggle-gz2"
    inner = os.listdir(path / "images") if (path / "images").is_dir() else []
    if any(_is_fits(n) for n in names + inner):
        return "fits"
    if any(_is_image(n) for n in names) or (path / "images").is_dir():
        return "folder"
    if sum(n.lower().endswith(HDF5_EXTENSIONS) for n in names) == 1:
        return "galaxy10"
    raise UserError(
        f"no known survey layout in {path} ({_known()}: a folder of JPEG/PNG/TIFF or FITS files, "
        "optionally with a catalogue CSV, or a Galaxy10 .h5 file)"
    )


def read_survey(path: str | Path, cfg: DataConfig) -> Survey:
    """List the survey at ``path`` with the layout named in ``cfg.layout`` (or detected)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data not found: {path}")
    layout = cfg.layout if cfg.layout not in ("", "auto") else detect_layout(path)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}' ({_known()})")
    if layout != "galaxy10" and not path.is_dir():
        raise UserError(f"layout {layout} reads a folder, but {path} is a file")
    reader = {
        "folder": _read_folder,
        "fits": _read_folder,
        "synthetic": _read_synthetic,
        "sdss-gz1": _read_sdss_gz1,
        "kaggle-gz2": _read_kaggle,
        "galaxy10": _read_galaxy10,
    }[layout]
    survey = reader(path, cfg)
    survey.layout = layout
    flag_duplicates(survey.records)
    if not survey.records:
        raise UserError(f"no galaxies found in {path} (layout {layout})")
    return survey


# --- catalogue helpers ------------------------------------------------------------------

def _read_table(path: Path) -> pd.DataFrame:
    """A catalogue as strings (CSV) or as stored (Parquet); a UserError when unreadable."""
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
            return table.astype(str).where(table.notna(), "")
        # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first column name
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise UserError(f"cannot read catalogue {path}: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types
        raise UserError(f"cannot read catalogue {path}: {type(exc).__name__}") from None


def _typed(series: pd.Series) -> pd.Series:
    """A string column as integers, floats or strings; empty cells become missing."""
    s = series.astype(str).str.strip()
    present = s != ""
    if not present.any():
        return pd.Series(pd.NA, index=s.index, dtype="string")
    values = s[present]
    if values.str.fullmatch(r"[+-]?\d{1,18}").all():  # int64 exactly (ids of 18 digits included)
        out = pd.Series(pd.NA, index=s.index, dtype="Int64")
        out[present] = values.astype(np.int64)
        return out
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        out = pd.Series(np.nan, index=s.index, dtype="float64")
        out[present] = numbers.astype(float)
        return out
    out = s.astype("string")
    out[~present] = pd.NA
    return out


def _pick(columns: list[str], wanted: str, guesses: tuple[str, ...], what: str, path: Path) -> str | None:
    if wanted:
        if wanted not in columns:
            raise UserError(f"catalogue {path.name} has no {what} column '{wanted}' (columns: {', '.join(columns)})")
        return wanted
    lower = {c.lower(): c for c in columns}
    for g in guesses:
        if g in lower:
            return lower[g]
    return None


def _list_files(folder: Path, skip_companions: bool) -> list[tuple[str, str]]:
    """(stem, file name) of every candidate image in ``folder``, sorted by name.

    Hidden files and sub-folders are skipped; so are text companions (CSV, JSON, ...)
    when ``skip_companions`` (images beside their catalogue). Broken links and files of
    any other kind are kept: decoding flags them.
    """
    out = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise UserError(f"cannot list {folder}: {exc.strerror or exc}") from None
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name == SYNTH_MARKER:
            continue
        try:
            if entry.is_dir():
                continue
        except OSError:
            pass
        if skip_companions and name.lower().endswith(COMPANION_EXTENSIONS):
            continue
        out.append((_stem(name), name))
    return out


def _join(image_dir: Path, root: Path, ids: list[str], files_col: list[str] | None,
          files: list[tuple[str, str]], table: pd.DataFrame) -> tuple[list[Record], pd.DataFrame]:
    """Join catalogue rows with files on disk.

    Returns one record per catalogue row (flagged ``missing_image`` when its file is
    absent), then one per image no row names (flagged ``no_catalogue_row``), and the
    label table aligned with them.
    """
    first_by_stem: dict[str, str] = {}
    for stem, name in files:
        first_by_stem.setdefault(stem, name)
    listed = {name for _, name in files}
    records: list[Record] = []
    used: set[str] = set()
    in_dir = _in_dir(image_dir)
    for i, gid in enumerate(ids):
        name = first_by_stem.get(gid) if files_col is None else files_col[i]
        if not name:
            records.append(Record(id=gid, source="", flags=frozenset({"missing_image"})))
            continue
        if files_col is None:  # a file of the folder, matched by stem: plain string work (pathlib costs more)
            used.add(name)
            records.append(Record(id=gid, source=in_dir(name), kind=_kind(name)))
            continue
        p = Path(name)
        candidates = [p] if p.is_absolute() else [root / p, image_dir / p]
        full = next((c for c in candidates if c.parent == image_dir and c.name in listed), None)
        if full is None:
            full = next((c for c in candidates if os.path.lexists(c)), None)
        if full is None:
            records.append(Record(id=gid, source=str(candidates[0]), kind=_kind(name),
                                  flags=frozenset({"missing_image"})))
            continue
        if full.parent == image_dir:
            used.add(full.name)
        records.append(Record(id=gid, source=str(full), kind=_kind(full.name)))
    if ids and files and not any(r.source and "missing_image" not in r.flags for r in records):
        raise UserError(f"none of the {len(ids)} catalogue rows matches an image in {image_dir} (e.g. id "
                        f"'{ids[0]}', file '{files[0][1]}'): name the id or file column with --id-column or "
                        "--file-column")
    rows = list(range(len(ids)))
    for stem, name in files:
        if name not in used:
            records.append(Record(id=stem, source=in_dir(name), kind=_kind(name),
                                  flags=frozenset({"no_catalogue_row"})))
            rows.append(-1)
    labels = table.reindex(rows).reset_index(drop=True) if len(table.columns) else pd.DataFrame(index=range(len(rows)))
    return records, labels


def _in_dir(folder: Path):
    """``lambda name: str(folder / name)`` for plain file names, without building a Path each time."""
    base = str(folder)
    if base == ".":
        return lambda name: name
    return lambda name: os.path.join(base, name)


def _fits_bands(paths: list[Path]) -> int:
    from astropy.io import fits

    for p in paths[:20]:
        try:
            with fits.open(p, memmap=False) as hdul:
                for hdu in hdul:
                    d = getattr(hdu, "data", None)
                    if d is not None and np.ndim(d) >= 2:
                        shape = [s for s in np.shape(d)]
                        while len(shape) > 3 and shape[0] == 1:
                            shape = shape[1:]
                        return 1 if len(shape) == 2 else int(shape[0])
        except Exception:  # noqa: BLE001 - a broken file is flagged when decoded; look at the next one
            continue
    return 1


# --- layouts -------------------------------------------------------------------------------

def _find_catalogue(path: Path, cfg: DataConfig) -> Path | None:
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


def _read_folder(path: Path, cfg: DataConfig, cat_path: Path | None = None) -> Survey:
    image_dir = path / "images" if (path / "images").is_dir() else path
    cat_path = cat_path or _find_catalogue(path, cfg)
    files = _list_files(image_dir, skip_companions=image_dir == path)
    n_fits = sum(_is_fits(n) for _, n in files)
    n_bands = _fits_bands([image_dir / n for _, n in files if _is_fits(n)]) if n_fits > len(files) / 2 else 3
    if cat_path is None:
        if not files:
            raise UserError(f"no images in {image_dir} ({_known()})")
        records = [Record(id=stem, source=str(image_dir / name), kind=_kind(name)) for stem, name in files]
        return Survey("folder", path, records, pd.DataFrame(index=range(len(records))), n_bands)
    table = _read_table(cat_path)
    cols = [str(c) for c in table.columns]
    id_col = _pick(cols, cfg.id_column, ("id", "objid", "galaxyid", "galaxy_id", "name", "dr7objid"), "id", cat_path)
    if id_col is None:
        raise UserError(f"catalogue {cat_path.name} has no id column: name it with --id-column "
                        f"(columns: {', '.join(cols)})")
    file_col = _pick(cols, cfg.file_column, ("file", "filename", "file_name", "path", "image", "location"),
                     "file", cat_path)
    label_cols = list(cfg.label_columns) or [c for c in cols if c not in (id_col, file_col)]
    missing = [c for c in label_cols if c not in cols]
    if missing:
        raise UserError(f"catalogue {cat_path.name} has no label column(s) {', '.join(missing)} "
                        f"(columns: {', '.join(cols)})")
    ids = table[id_col].astype(str).str.strip().tolist()
    file_values = table[file_col].astype(str).str.strip().tolist() if file_col else None
    labels = pd.DataFrame({c: _typed(table[c]) for c in label_cols})
    records, labels = _join(image_dir, path, ids, file_values, files, labels)
    return Survey("folder", path, records, labels, n_bands)


def _read_synthetic(path: Path, cfg: DataConfig) -> Survey:
    try:
        marker = json.loads((path / SYNTH_MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / SYNTH_MARKER}: {exc}") from None
    cat = path / str(marker.get("catalogue", "catalogue.csv"))
    if not cat.is_file():
        raise UserError(f"synthetic survey {path} has no {cat.name}")
    sub = DataConfig(**{**cfg.__dict__, "id_column": str(marker.get("id_column", "id")),
                        "file_column": str(marker.get("file_column", "file"))})
    return _read_folder(path, sub, cat_path=cat)


def _read_sdss_gz1(path: Path, cfg: DataConfig) -> Survey:
    table = _read_table(path / "labels.csv")
    if "objid" not in table.columns:
        raise UserError(f"{path / 'labels.csv'} has no 'objid' column (sdss-gz1 layout: objid,gz1_class,gz1_name)")
    files = _list_files(path / "images", skip_companions=False)
    label_cols = [c for c in table.columns if c != "objid"]
    labels = pd.DataFrame({c: _typed(table[c]) for c in label_cols})
    if "gz1_class" in labels:
        labels["morph3"] = labels["gz1_class"].map(GZ1_MORPH3, na_action="ignore").astype("string")
    ids = table["objid"].astype(str).str.strip().tolist()
    records, labels = _join(path / "images", path, ids, None, files, labels)
    return Survey("sdss-gz1", path, records, labels, 3)


def derive_gz2_class(votes: pd.DataFrame, t: VoteThresholds) -> pd.Series:
    """Morphology class of each galaxy from Kaggle Galaxy Zoo 2 vote fractions.

    The cuts apply to the columns as the Kaggle file gives them, where the answers to
    a later question are already multiplied by the fraction of volunteers who reached
    it: a cut of 0.5 on ``Class3.1`` means more than half of *all* volunteers saw a bar.
    The first rule that passes wins:

    ============== ============================ ===========================================
    class          rule                         question (answer)
    ============== ============================ ===========================================
    artifact       Class1.3 > t.artifact        Q1 smooth or features (star or artifact)
    merger         Class8.6 > t.merger          Q8 odd feature (merger)
    smooth         Class1.1 > t.smooth          Q1 (smooth)
    edge_on        Class2.1 > t.edge_on         Q2 edge-on disk (yes)
    barred_spiral  Class3.1 > t.barred          Q3 bar (yes)
    spiral         Class4.1 > t.spiral          Q4 spiral arms (yes)
    uncertain      otherwise
    ============== ============================ ===========================================

    Bars come before arms so that barred disks form their own class.
    """
    rules = [("artifact", "Class1.3", t.artifact), ("merger", "Class8.6", t.merger),
             ("smooth", "Class1.1", t.smooth), ("edge_on", "Class2.1", t.edge_on),
             ("barred_spiral", "Class3.1", t.barred), ("spiral", "Class4.1", t.spiral)]
    out = np.full(len(votes), "uncertain", dtype=object)
    decided = np.zeros(len(votes), dtype=bool)
    for name, col, cut in rules:
        passes = pd.to_numeric(votes[col], errors="coerce").to_numpy(dtype=float) > cut
        take = passes & ~decided
        out[take] = name
        decided |= take
    return pd.Series(out, index=votes.index, dtype="string")


def _read_kaggle(path: Path, cfg: DataConfig) -> Survey:
    table = _read_table(path / KAGGLE_CSV)
    needed = ["GalaxyID", "Class1.1", "Class1.3", "Class2.1", "Class3.1", "Class4.1", "Class8.6"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"{KAGGLE_CSV} lacks column(s) {', '.join(missing)} (Kaggle Galaxy Zoo layout: "
                        "GalaxyID, Class1.1 ... Class11.6)")
    vote_cols = [c for c in table.columns if c.startswith("Class")]
    votes = pd.DataFrame({c: _typed(table[c]).astype(float) for c in vote_cols})
    labels = pd.DataFrame({"gz2_class": derive_gz2_class(votes, cfg.vote_thresholds)})
    labels["morph3"] = labels["gz2_class"].map(GZ2_MORPH3).astype("string")
    labels = pd.concat([labels, votes], axis=1)
    files = _list_files(path / KAGGLE_IMAGES, skip_companions=False)
    ids = table["GalaxyID"].astype(str).str.strip().tolist()
    records, labels = _join(path / KAGGLE_IMAGES, path, ids, None, files, labels)
    return Survey("kaggle-gz2", path, records, labels, 3)


def _read_galaxy10(path: Path, cfg: DataConfig) -> Survey:
    import h5py

    if path.is_dir():
        h5 = [p for p in sorted(path.iterdir()) if p.name.lower().endswith(HDF5_EXTENSIONS)]
        if len(h5) != 1:
            raise UserError(f"{path}: expected one Galaxy10 .h5 file, found {len(h5)}")
        path = h5[0]
    extra: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            if "images" not in f or "ans" not in f:
                raise UserError(f"{path.name} is not a Galaxy10 file (needs datasets 'images' and 'ans'; "
                                f"has {', '.join(f.keys()) or 'none'})")
            shape = f["images"].shape
            ans = np.asarray(f["ans"][:]).astype(np.int64).ravel()
            for key in f.keys():
                ds = f[key]
                if key not in ("images", "ans") and isinstance(ds, h5py.Dataset) and ds.shape == (len(ans),) \
                        and ds.dtype.kind in "iuf":
                    extra[key] = np.asarray(ds[:])
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ... for damaged files
        raise UserError(f"cannot read HDF5 file {path}: {first_line(exc)}") from None
    if len(shape) not in (3, 4) or shape[0] != len(ans):
        raise UserError(f"{path.name}: 'images' must be N x H x W x 3 with one 'ans' per image "
                        f"(got {shape}, {len(ans)} answers)")
    survey_kind = "decals" if shape[1] >= 128 else "sdss"
    names = GALAXY10_NAMES[survey_kind]
    width = len(str(max(shape[0] - 1, 0)))
    records = [Record(id=f"{i:0{width}d}", source=str(path), kind="hdf5", index=i) for i in range(len(ans))]
    labels = pd.DataFrame({
        "galaxy10_class": pd.array(ans, dtype="Int64"),
        "galaxy10_name": pd.array([names[a] if 0 <= a < len(names) else None for a in ans], dtype="string"),
        "morph3": pd.array([GALAXY10_MORPH3[survey_kind].get(int(a)) for a in ans], dtype="string"),
    })
    for key, values in extra.items():
        labels[key] = values
    n_bands = int(shape[3]) if len(shape) == 4 else 1
    return Survey("galaxy10", path, records, labels, n_bands)
