"""Survey layouts on disk, auto-detected.

Each layout turns a path into a :class:`Survey`: a list of :class:`Record` and the
names of its label columns. Known layouts:

``folder``
    A folder of images (JPEG/PNG/TIFF) or FITS cutouts, with an optional catalogue
    CSV naming an id column, a file column and label columns.
``sdss-gz1``
    ``images/<objid>.jpeg`` + ``labels.csv`` (objid, gz1_class, gz1_name).
``kaggle-gz2``
    Kaggle "Galaxy Zoo - The Galaxy Challenge": ``images_training_rev1/<GalaxyID>.jpg`` +
    ``training_solutions_rev1.csv`` (37 vote fractions); a morphology class is derived
    from the vote fractions by the cuts of :class:`~morphospace.config.VoteThresholds`.
``galaxy10``
    Galaxy10 HDF5 (SDSS 69x69 or DECaLS 256x256): datasets ``images`` and ``ans``.
``fits``
    A folder of FITS cutouts (2-D, or a band cube), with an optional catalogue CSV.
``synthetic``
    The built-in mock survey written by ``morphospace synth`` (a folder layout with a
    ``morphospace_synth.json`` marker).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DataConfig, VoteThresholds
from ..errors import UserError
from .records import Record, flag_duplicates

log = logging.getLogger("morphospace")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp", ".webp")
FITS_EXTENSIONS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")
CATALOGUE_EXTENSIONS = (".csv", ".json", ".txt", ".md", ".toml", ".parquet", ".h5", ".hdf5")
LAYOUTS = ("folder", "sdss-gz1", "kaggle-gz2", "galaxy10", "fits", "synthetic")
SYNTH_MARKER = "morphospace_synth.json"

GZ1_MORPH3 = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "edge_on"}
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


@dataclass
class Survey:
    """A survey listed from disk: its records and which columns are labels."""

    layout: str
    root: Path
    records: list[Record]
    label_columns: list[str]
    n_bands: int  # 3 for colour images, the band count for FITS, 1 for grey

    def __len__(self) -> int:
        return len(self.records)


def _is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_EXTENSIONS)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _stem(name: str) -> str:
    lower = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS + FITS_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def detect_layout(path: Path) -> str:
    """Name the layout of ``path``, or raise a one-line error listing the known layouts."""
    if not path.exists():
        raise UserError(f"data not found: {path}")
    if path.is_file():
        if path.name.lower().endswith(HDF5_EXTENSIONS):
            return "galaxy10"
        raise UserError(
            f"cannot read {path}: a data path is a folder or a Galaxy10 .h5 file "
            f"(known layouts: {', '.join(LAYOUTS)})"
        )
    if (path / SYNTH_MARKER).is_file():
        return "synthetic"
    if (path / "images").is_dir() and (path / "labels.csv").is_file():
        return "sdss-gz1"
    if (path / "images_training_rev1").is_dir() and (path / "training_solutions_rev1.csv").is_file():
        return "kaggle-gz2"
    names = os.listdir(path)
    h5 = [n for n in names if n.lower().endswith(HDF5_EXTENSIONS)]
    if any(_is_fits(n) for n in names):
        return "fits"
    if any(_is_image(n) for n in names) or (path / "images").is_dir():
        return "folder"
    if len(h5) == 1:
        return "galaxy10"
    raise UserError(
        f"no known survey layout in {path} (known layouts: {', '.join(LAYOUTS)}; "
        "a folder of JPEG/PNG/TIFF or FITS files, optionally with a catalogue CSV)"
    )


def read_survey(path: str | Path, cfg: DataConfig) -> Survey:
    """List the survey at ``path`` with the layout named in ``cfg.layout`` (or detected)."""
    path = Path(path)
    layout = cfg.layout if cfg.layout != "auto" else detect_layout(path)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}' (known layouts: {', '.join(LAYOUTS)})")
    if not path.exists():
        raise UserError(f"data not found: {path}")
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

def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"cannot read catalogue {path}: {str(exc).splitlines()[0]}") from None


def _typed(series: pd.Series) -> pd.Series:
    """Turn a string column back into numbers where every non-empty value is numeric."""
    nonempty = series[series != ""]
    numeric = pd.to_numeric(nonempty, errors="coerce")
    if len(nonempty) and numeric.notna().all():
        out = pd.to_numeric(series.replace("", np.nan), errors="coerce")
        if (out.dropna() % 1 == 0).all() and out.notna().all():
            return out.astype(np.int64)
        return out
    return series.replace("", None)


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


def _records_from_catalogue(
    root: Path, image_dir: Path, table: pd.DataFrame, id_col: str, file_col: str | None,
    label_cols: list[str], files: dict[str, str],
) -> list[Record]:
    """Join a catalogue with the files on disk; flag rows without images and images without rows."""
    labels = {c: _typed(table[c]) for c in label_cols}
    records: list[Record] = []
    used: set[str] = set()
    ids = table[id_col].astype(str).str.strip()
    for i, gid in enumerate(ids):
        if file_col:
            name = str(table[file_col].iloc[i]).strip()
            full = (root / name) if (root / name).exists() else (image_dir / name)
            key = os.path.basename(name)
        else:
            key = files.get(gid, "")
            full = image_dir / key if key else Path("")
        row_labels = {c: _scalar(labels[c].iloc[i]) for c in label_cols}
        rec = Record(id=gid, source=str(full), kind="fits" if _is_fits(str(full)) else "image", labels=row_labels)
        if not key or not full.is_file():
            rec.flags.add("missing_image")
            rec.source = str(full) if key else ""
        else:
            used.add(key)
        records.append(rec)
    for stem, name in files.items():
        if name not in used:
            records.append(Record(
                id=stem, source=str(image_dir / name), kind="fits" if _is_fits(name) else "image",
                labels={c: None for c in label_cols}, flags={"no_catalogue_row"},
            ))
    return records


def _scalar(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _list_files(folder: Path) -> dict[str, str]:
    """Map file stem -> file name for every candidate image in ``folder`` (sorted).

    Every regular file counts except catalogue-like text files, so a stray non-image
    file in an image folder is flagged ``not_image`` rather than silently skipped.
    """
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or not (folder / name).is_file():
            continue
        if name.lower().endswith(CATALOGUE_EXTENSIONS):
            continue
        out[_stem(name)] = name
    return out


def _fits_bands(files: dict[str, str], folder: Path) -> int:
    from astropy.io import fits

    for name in files.values():
        if _is_fits(name):
            try:
                with fits.open(folder / name, memmap=False) as hdul:
                    for hdu in hdul:
                        if hdu.data is not None:
                            return 1 if hdu.data.ndim == 2 else int(hdu.data.shape[0])
            except Exception:  # a broken file is flagged when decoded; look at the next one
                continue
    return 1


# --- layouts -------------------------------------------------------------------------------

def _read_folder(path: Path, cfg: DataConfig) -> Survey:
    image_dir = path / "images" if (path / "images").is_dir() else path
    files = _list_files(image_dir)
    cat_path = Path(cfg.catalogue) if cfg.catalogue else None
    if cat_path is None:
        csvs = sorted(p for p in path.glob("*.csv"))
        if len(csvs) > 1:
            raise UserError(
                f"{path} has several CSV files ({', '.join(p.name for p in csvs)}): name the catalogue with --catalogue"
            )
        cat_path = csvs[0] if csvs else None
    elif not cat_path.is_file():
        raise UserError(f"catalogue not found: {cat_path}")
    fits_count = sum(_is_fits(n) for n in files.values())
    n_bands = _fits_bands(files, image_dir) if fits_count > len(files) / 2 else 3
    if cat_path is None:
        records = [
            Record(id=stem, source=str(image_dir / name), kind="fits" if _is_fits(name) else "image")
            for stem, name in files.items()
        ]
        return Survey("folder", path, records, [], n_bands)
    table = _read_csv(cat_path)
    cols = list(table.columns)
    id_col = _pick(cols, cfg.id_column, ("id", "objid", "galaxyid", "galaxy_id", "name", "dr7objid"), "id", cat_path)
    if id_col is None:
        raise UserError(f"catalogue {cat_path.name} has no id column: name it with --id-column (columns: {', '.join(cols)})")
    file_col = _pick(cols, cfg.file_column, ("file", "filename", "file_name", "path", "image", "location"), "file", cat_path)
    label_cols = cfg.label_columns or [c for c in cols if c not in (id_col, file_col)]
    missing = [c for c in label_cols if c not in cols]
    if missing:
        raise UserError(f"catalogue {cat_path.name} has no label column(s) {', '.join(missing)}")
    records = _records_from_catalogue(path, image_dir, table, id_col, file_col, label_cols, files)
    return Survey("folder", path, records, label_cols, n_bands)


def _read_synthetic(path: Path, cfg: DataConfig) -> Survey:
    sub = DataConfig(**{**cfg.__dict__, "catalogue": str(path / "catalogue.csv"), "id_column": "id", "file_column": "file"})
    return _read_folder(path, sub)


def _read_sdss_gz1(path: Path, cfg: DataConfig) -> Survey:
    table = _read_csv(path / "labels.csv")
    if "objid" not in table.columns:
        raise UserError(f"{path / 'labels.csv'} has no 'objid' column (sdss-gz1 layout: objid,gz1_class,gz1_name)")
    files = _list_files(path / "images")
    label_cols = [c for c in table.columns if c != "objid"]
    records = _records_from_catalogue(path, path / "images", table, "objid", None, label_cols, files)
    for rec in records:
        cls = rec.labels.get("gz1_class")
        rec.labels["morph3"] = GZ1_MORPH3.get(cls) if cls is not None else None
    return Survey("sdss-gz1", path, records, label_cols + ["morph3"], 3)


def derive_gz2_class(votes: pd.DataFrame, t: VoteThresholds) -> pd.Series:
    """Morphology class from Kaggle GZ2 vote fractions.

    Cuts on the columns themselves (the Kaggle file already multiplies later answers by
    the fraction of volunteers who reached the question): ``smooth`` if Class1.1 > t.smooth,
    else ``edge_on`` if Class2.1 > t.edge_on, else ``barred`` if Class3.1 > t.barred, else
    ``spiral`` if Class4.1 > t.spiral, else ``uncertain``. Bar comes before spiral so that
    barred spirals form their own class.
    """
    out = pd.Series("uncertain", index=votes.index, dtype=object)
    rules = [("spiral", "Class4.1", t.spiral), ("barred", "Class3.1", t.barred),
             ("edge_on", "Class2.1", t.edge_on), ("smooth", "Class1.1", t.smooth)]
    for name, col, cut in rules:  # applied last-wins, so the first rule of the docstring has priority
        out[votes[col].astype(float) > cut] = name
    return out


def _read_kaggle(path: Path, cfg: DataConfig) -> Survey:
    table = _read_csv(path / "training_solutions_rev1.csv")
    needed = ["GalaxyID", "Class1.1", "Class2.1", "Class3.1", "Class4.1"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"training_solutions_rev1.csv lacks column(s) {', '.join(missing)} (Kaggle Galaxy Zoo layout)")
    table["gz2_class"] = derive_gz2_class(table, cfg.vote_thresholds)
    vote_cols = [c for c in table.columns if c.startswith("Class")]
    files = _list_files(path / "images_training_rev1")
    records = _records_from_catalogue(
        path, path / "images_training_rev1", table, "GalaxyID", None, ["gz2_class"] + vote_cols, files
    )
    return Survey("kaggle-gz2", path, records, ["gz2_class"] + vote_cols, 3)


def _read_galaxy10(path: Path, cfg: DataConfig) -> Survey:
    import h5py

    if path.is_dir():
        h5 = [p for p in sorted(path.iterdir()) if p.name.lower().endswith(HDF5_EXTENSIONS)]
        if len(h5) != 1:
            raise UserError(f"{path}: expected one Galaxy10 .h5 file, found {len(h5)}")
        path = h5[0]
    try:
        with h5py.File(path, "r") as f:
            if "images" not in f or "ans" not in f:
                raise UserError(f"{path.name} is not a Galaxy10 file (needs datasets 'images' and 'ans'; has {', '.join(f.keys())})")
            shape = f["images"].shape
            ans = np.asarray(f["ans"][:]).astype(int)
    except OSError as exc:
        raise UserError(f"cannot read HDF5 file {path}: {exc}") from None
    if len(shape) != 4 or shape[0] != len(ans):
        raise UserError(f"{path.name}: 'images' must be N x H x W x 3 with one 'ans' per image (got {shape}, {len(ans)})")
    names = GALAXY10_NAMES["decals" if shape[1] >= 128 else "sdss"]
    width = len(str(shape[0]))
    records = [
        Record(id=f"{i:0{width}d}", source=str(path), kind="hdf5", index=i,
               labels={"galaxy10_class": int(a), "galaxy10_name": names[a] if 0 <= a < len(names) else None})
        for i, a in enumerate(ans)
    ]
    return Survey("galaxy10", path, records, ["galaxy10_class", "galaxy10_name"], int(shape[3]))
