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

Wherever a catalogue has RA/Dec columns (any layout), they become the float64 ``ra`` and ``dec``
columns of the run's catalogue (:mod:`~morphospace.data.ingest.positions`).

Every file of an image folder counts (except hidden files and, beside a catalogue,
text companions such as CSV, JSON or Markdown), so a stray non-image file is
flagged ``not_image`` rather than silently skipped, and two files with the same
name stem are both kept (the second flagged ``duplicate_id``).

The pieces the layouts share: :mod:`~morphospace.data.ingest.files` (which files are
galaxies), :mod:`~morphospace.data.ingest.tables` (catalogues and their join with the
files) and :mod:`~morphospace.data.ingest.labels` (label vocabularies, derived classes).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DataConfig
from ...errors import UserError, first_line
from .files import (HDF5_EXTENSIONS, SYNTH_MARKER, csv_header, file_kind, image_bands, images_in_subfolders, is_fits,
                    is_image, list_files, say_unread_beside, subfolder_images, survey_bands)
from .labels import GALAXY10_MORPH3, GALAXY10_NAMES, GZ1_MORPH3, GZ2_MORPH3, derive_gz2_class, vote_fractions
from .positions import find_position_columns, parse_positions, set_positions
from .records import Record, flag_duplicates
from .tables import find_catalogue, join_files, pick_column, read_table, typed

log = logging.getLogger("morphospace")

LAYOUTS = ("folder", "sdss-gz1", "kaggle-gz2", "galaxy10", "fits", "synthetic")
KAGGLE_IMAGES = "images_training_rev1"
KAGGLE_CSV = "training_solutions_rev1.csv"

__all__ = ["LAYOUTS", "Survey", "detect_layout", "read_survey", "derive_gz2_class"]


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
    notes : dict
        flag -> {galaxy id: what was wrong}, for flags raised while listing (the summary's details).
    """

    layout: str
    root: Path
    records: list[Record]
    labels: pd.DataFrame
    n_bands: int
    notes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def label_columns(self) -> list[str]:
        """The names of the label columns, as strings."""
        return [str(c) for c in self.labels.columns]


def _known() -> str:
    return f"known layouts: {', '.join(LAYOUTS)}"


def detect_layout(path: str | Path) -> str:
    """Name the layout of ``path`` from what is on disk (first match in :data:`LAYOUTS` order).

    Parameters
    ----------
    path : str or Path
        A survey folder, or a Galaxy10 ``.h5`` file.

    Returns
    -------
    str
        One of :data:`LAYOUTS`.

    Raises
    ------
    UserError
        One line listing the known layouts, when none matches.
    """
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
        header = csv_header(path / "labels.csv")
        if "objid" in header and "gz1_class" in header:
            return "sdss-gz1"
    if (path / KAGGLE_IMAGES).is_dir() and (path / KAGGLE_CSV).is_file():
        return "kaggle-gz2"
    inner = os.listdir(path / "images") if (path / "images").is_dir() else []
    if any(is_fits(n) for n in names + inner):
        return "fits"
    if any(is_image(n) for n in names) or (path / "images").is_dir():
        return "folder"
    if sum(n.lower().endswith(HDF5_EXTENSIONS) for n in names) == 1:
        return "galaxy10"
    if any(n.lower().endswith(".csv") for n in names) and next(subfolder_images(path), None) is not None:
        return "folder"  # a catalogue whose file column names images in sub-folders
    raise UserError(
        f"no known survey layout in {path} ({_known()}: a folder of JPEG/PNG/TIFF or FITS files, "
        "optionally with a catalogue CSV, or a Galaxy10 .h5 file)"
    )


def _detected(path: Path, cfg: DataConfig) -> str:
    """:func:`detect_layout`, or the folder layout for a folder that matches none but comes with a
    catalogue of the user's (``--catalogue``: its file column may name images anywhere)."""
    try:
        return detect_layout(path)
    except UserError:
        if cfg.catalogue and path.is_dir():
            return "folder"
        raise


def read_survey(path: str | Path, cfg: DataConfig) -> Survey:
    """List the survey at ``path``: its records (no pixels read) and label table.

    Parameters
    ----------
    path : str or Path
        A survey folder, or a Galaxy10 ``.h5`` file.
    cfg : DataConfig
        ``layout`` (``"auto"`` or ``""``: detected), and the catalogue and column names.

    Returns
    -------
    Survey
        Records flagged for what the listing shows (missing image, no catalogue row,
        duplicate id).

    Raises
    ------
    UserError
        For an unknown layout, an unreadable catalogue, or a survey without galaxies.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"data not found: {path}")
    layout = cfg.layout if cfg.layout not in ("", "auto") else _detected(path, cfg)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}' ({_known()})")
    layout = _with_own_catalogue(path, layout, cfg)
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
    if cfg.label_columns:  # the folder reader applies it to its catalogue; every layout is held to it
        _keep_label_columns(survey, list(cfg.label_columns))
    catalogue_positions(survey)
    flag_duplicates(survey.records)
    if not survey.records:
        raise UserError(f"no galaxies found in {path} (layout {layout})")
    return survey


def _keep_label_columns(survey: Survey, wanted: list[str]) -> None:
    """Keep ``data.label_columns`` (and the RA/Dec pair, always read) of the survey's labels; a
    ``UserError`` naming those it does not have (they were ignored outside the folder layout)."""
    have = [str(c) for c in survey.labels.columns]
    wanted = list(dict.fromkeys(wanted))  # a column named twice is kept once
    missing = [c for c in wanted if c not in have]
    if missing:
        raise UserError(f"data.label_columns: {', '.join(missing)} not among the survey's label columns "
                        f"({', '.join(have) or 'it has none'})")
    keep = wanted + [c for c in find_position_columns(have) or () if c not in wanted]
    survey.labels = survey.labels[keep]


def catalogue_positions(survey: Survey) -> None:
    """Read the survey's RA/Dec columns, if it has a pair (:mod:`~morphospace.data.ingest.positions`).

    The pair is replaced in ``survey.labels`` by float64 ``ra`` and ``dec`` (degrees); records
    whose position is unusable are flagged ``bad_position`` and the reason noted.

    Parameters
    ----------
    survey : Survey
        Changed in place.
    """
    pair = find_position_columns(survey.label_columns)
    if pair is None:
        return
    ra, dec, problems = parse_positions(survey.labels[pair[0]], survey.labels[pair[1]], pair)
    survey.labels = set_positions(survey.labels, ra, dec, replace=pair)
    for i, why in sorted(problems.items()):
        survey.records[i].flag("bad_position")
        survey.notes.setdefault("bad_position", {}).setdefault(survey.records[i].id, why)


def _read_folder(path: Path, cfg: DataConfig, cat_path: Path | None = None) -> Survey:
    image_dir = path / "images" if (path / "images").is_dir() else path
    cat_path = cat_path or find_catalogue(path, cfg)
    files = list_files(image_dir, skip_companions=image_dir == path)

    if cat_path is None:
        if not files:
            raise UserError(f"no images in {image_dir} ({_known()})")
        records = [Record(id=stem, source=str(image_dir / name), kind=file_kind(name)) for stem, name in files]
        nested = images_in_subfolders(image_dir)
        if nested:  # said, not lost silently
            log.warning("%d image file(s) in sub-folders of %s are not read: a folder survey is the images at "
                        "its top level (a catalogue whose file column names sub-folder paths reads them)",
                        nested, image_dir)
        say_unread_beside(path, image_dir, {r.source for r in records if r.source})
        return Survey("folder", path, records, pd.DataFrame(index=range(len(records))), _bands(records))
    table = read_table(cat_path)
    cols = [str(c) for c in table.columns]
    id_col = pick_column(cols, cfg.id_column, ("id", "objid", "galaxyid", "galaxy_id", "name", "dr7objid"), "id", cat_path)
    if id_col is None:
        raise UserError(f"catalogue {cat_path.name} has no id column: name it with --id-column "
                        f"(columns: {', '.join(cols)})")
    file_col = pick_column(cols, cfg.file_column, ("file", "filename", "file_name", "path", "image", "location"),
                     "file", cat_path)
    label_cols = list(cfg.label_columns) or [c for c in cols if c not in (id_col, file_col)]
    label_cols += [c for c in find_position_columns(cols) or () if c not in label_cols]  # RA/Dec always read
    missing = [c for c in label_cols if c not in cols]
    if missing:
        raise UserError(f"catalogue {cat_path.name} has no label column(s) {', '.join(missing)} "
                        f"(columns: {', '.join(cols)})")
    ids = table[id_col].astype(str).str.strip().tolist()
    file_values = table[file_col].astype(str).str.strip().tolist() if file_col else None
    labels = pd.DataFrame({c: typed(table[c]) for c in label_cols})
    records, labels = join_files(image_dir, path, ids, file_values, files, labels)
    _say_unnamed_in_subfolders(image_dir, records, cat_path.name)
    say_unread_beside(path, image_dir, {r.source for r in records if r.source})
    return Survey("folder", path, records, labels, _bands(records))


def _bands(records: list[Record]) -> int:
    """The survey's band count from the files its records read (top level or any sub-folder a
    catalogue names): FITS by :func:`survey_bands` when most are FITS, images by :func:`image_bands`."""
    sources = [Path(r.source) for r in records if r.source]
    fits = [p for p in sources if is_fits(p.name)]
    if len(fits) > len(sources) / 2:
        return survey_bands(fits)
    return image_bands([p for p in sources if not is_fits(p.name)])


def _say_unnamed_in_subfolders(image_dir: Path, records: list[Record], catalogue: str) -> None:
    """Images in sub-folders of a catalogue's survey that no row names are said in the log (those at
    the top without a row are kept, flagged no_catalogue_row). Paths are compared as written first,
    and resolved through links only for those left over: at 10^6 files each resolution costs."""
    def plain(p: str) -> str:
        return os.path.normpath(os.path.abspath(p))

    read = {plain(r.source) for r in records if r.source}
    unnamed = [p for p in subfolder_images(image_dir) if plain(p) not in read]
    if unnamed:
        real = {os.path.realpath(r.source) for r in records if r.source}
        unnamed = [p for p in unnamed if os.path.realpath(p) not in real]
    if unnamed:
        log.warning("%d image file(s) in sub-folders of %s are named by no row of %s and not read (e.g. %s)",
                    len(unnamed), image_dir, catalogue, os.path.relpath(unnamed[0], image_dir))


def _with_own_catalogue(path: Path, layout: str, cfg: DataConfig) -> str:
    """The layout that reads the user's own catalogue (``data.catalogue``, ``--catalogue``): a survey
    detected as sdss-gz1, kaggle-gz2 or synthetic is then read as a folder of images with it (the
    log says so); a layout named explicitly that reads its own catalogue refuses it in one line.
    Id or file columns named for such a layout are said not to be used."""
    if layout in ("folder", "fits"):
        return layout
    if cfg.catalogue:
        if layout == "galaxy10" or cfg.layout not in ("", "auto"):
            raise UserError(f"the {layout} layout reads its own labels, not the catalogue {cfg.catalogue}: "
                            + ("drop --catalogue" if layout == "galaxy10" else
                               "drop --catalogue, or read the images with it as --layout folder"))
        log.info("%s looks like a %s survey; read as a folder of images with the catalogue %s", path, layout,
                 cfg.catalogue)
        return "folder"
    unused = [f"{name} '{value}'" for name, value in (("data.id_column", cfg.id_column),
                                                      ("data.file_column", cfg.file_column)) if value]
    if unused:
        log.warning("%s not used: the %s layout reads its own catalogue (give --catalogue to read the images with "
                    "yours)", " and ".join(unused), layout)
    return layout


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
    table = read_table(path / "labels.csv")
    if "objid" not in table.columns:
        raise UserError(f"{path / 'labels.csv'} has no 'objid' column (sdss-gz1 layout: objid,gz1_class,gz1_name)")
    files = list_files(path / "images", skip_companions=False)
    label_cols = [c for c in table.columns if c != "objid"]
    labels = pd.DataFrame({c: typed(table[c]) for c in label_cols})
    if "gz1_class" in labels:
        labels["morph3"] = labels["gz1_class"].map(GZ1_MORPH3, na_action="ignore").astype("string")
    ids = table["objid"].astype(str).str.strip().tolist()
    records, labels = join_files(path / "images", path, ids, None, files, labels)
    return Survey("sdss-gz1", path, records, labels, 3)


def _read_kaggle(path: Path, cfg: DataConfig) -> Survey:
    table = read_table(path / KAGGLE_CSV)
    needed = ["GalaxyID", "Class1.1", "Class1.3", "Class2.1", "Class3.1", "Class4.1", "Class8.6"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"{KAGGLE_CSV} lacks column(s) {', '.join(missing)} (Kaggle Galaxy Zoo layout: "
                        "GalaxyID, Class1.1 ... Class11.6)")
    vote_cols = [c for c in table.columns if c.startswith("Class")]
    votes = pd.DataFrame({c: vote_fractions(table, c, KAGGLE_CSV) for c in vote_cols})
    labels = pd.DataFrame({"gz2_class": derive_gz2_class(votes, cfg.vote_thresholds)})
    labels["morph3"] = labels["gz2_class"].map(GZ2_MORPH3).astype("string")
    labels = pd.concat([labels, votes], axis=1)
    files = list_files(path / KAGGLE_IMAGES, skip_companions=False)
    ids = table["GalaxyID"].astype(str).str.strip().tolist()
    records, labels = join_files(path / KAGGLE_IMAGES, path, ids, None, files, labels)
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
            answers = np.asarray(f["ans"][:], dtype=np.float64).ravel()
            # a class is an integer: NaN (a float 'ans' with gaps) or 2.5 is no class, not int64's minimum
            known = np.isfinite(answers) & (answers == np.round(answers))
            ans = np.where(known, answers, -1).astype(np.int64)
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
    if len(shape) == 4 and shape[3] not in (1, 3):
        # bands first (N x 3 x H x W) would be read as H x W images of 69 bands: stripes, silently
        hint = ": the bands come first; store them last" if shape[1] in (1, 3) else ""
        raise UserError(f"{path.name}: 'images' must be N x H x W x 3 (bands last), got {shape}{hint}")
    survey_kind = "decals" if shape[1] >= 128 else "sdss"
    names = GALAXY10_NAMES[survey_kind]
    width = len(str(max(shape[0] - 1, 0)))
    records = [Record(id=f"{i:0{width}d}", source=str(path), kind="hdf5", index=i) for i in range(len(ans))]
    classes = pd.array(ans, dtype="Int64")
    classes[(ans < 0) | (ans >= len(names))] = pd.NA
    labels = pd.DataFrame({
        "galaxy10_class": classes,
        "galaxy10_name": pd.array([names[a] if 0 <= a < len(names) else None for a in ans], dtype="string"),
        "morph3": pd.array([GALAXY10_MORPH3[survey_kind].get(int(a)) for a in ans], dtype="string"),
    })
    for key, values in extra.items():
        labels[key] = values
    n_bands = int(shape[3]) if len(shape) == 4 else 1
    return Survey("galaxy10", path, records, labels, n_bands)
