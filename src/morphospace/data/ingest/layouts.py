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

Each layout's reader is in :mod:`~morphospace.data.ingest.readers`, the :class:`Survey` it returns
in :mod:`~morphospace.data.ingest.records`. The pieces the readers share: :mod:`~morphospace.data.ingest.files` (which files are
galaxies), :mod:`~morphospace.data.ingest.tables` (catalogues and their join with the
files) and :mod:`~morphospace.data.ingest.labels` (label vocabularies, derived classes).
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

from ...config import DataConfig
from ...errors import UserError
from .files import HDF5_EXTENSIONS, SYNTH_MARKER, csv_header, is_fits, is_image, subfolder_images
from .labels import derive_gz2_class
from .positions import POSITION_COLUMNS, find_position_columns, parse_positions, set_positions
from .readers import KAGGLE_CSV, KAGGLE_IMAGES, LAYOUTS, READERS, known_layouts
from .records import Survey, flag_duplicates

log = logging.getLogger("morphospace")

__all__ = ["LAYOUTS", "Survey", "detect_layout", "read_survey", "derive_gz2_class"]


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
        raise UserError(f"cannot read {path}: give a survey folder or a Galaxy10 .h5 file ({known_layouts()})")
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
    # FITS cutouts alone: "fits"; beside ordinary images, a folder of both (read alike, named as it is)
    if any(is_fits(n) for n in names + inner) and not any(is_image(n) and not is_fits(n) for n in names + inner):
        return "fits"
    if any(is_image(n) for n in names) or (path / "images").is_dir():
        return "folder"
    h5 = sorted(n for n in names if n.lower().endswith(HDF5_EXTENSIONS))
    if len(h5) == 1:
        return "galaxy10"
    nested = list(itertools.islice(subfolder_images(path), 20))
    if nested:  # a catalogue whose file column names images in sub-folders, or those images alone (classes, batches)
        return "fits" if all(is_fits(p) for p in nested) else "folder"
    if h5:  # said as what it is: which of them is the survey cannot be guessed
        raise UserError(f"{path} holds {len(h5)} HDF5 files ({', '.join(h5[:3])}{', ...' if len(h5) > 3 else ''}): "
                        "give the Galaxy10 .h5 file itself")
    raise UserError(
        f"no known survey layout in {path} ({known_layouts()}: a folder of JPEG/PNG/TIFF or FITS files, "
        f"optionally with a catalogue CSV, or a Galaxy10 .h5 file)"
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
        raise UserError(f"unknown layout '{layout}' ({known_layouts()})")
    layout = _with_own_catalogue(path, layout, cfg)
    if layout != "galaxy10" and not path.is_dir():
        raise UserError(f"layout {layout} reads a folder, but {path} is a file")
    survey = READERS[layout](path, cfg)
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
        # one of a pair (alpha and delta aside: other quantities go by those names too): kept as a
        # label, and said (no position is read, and no galaxy is flagged bad_position either)
        named = {name for pair_ in POSITION_COLUMNS if pair_ != ("alpha", "delta") for name in pair_}
        half = sorted(c for c in survey.label_columns if c.lower() in named)
        if half:
            log.warning("the catalogue has %s without its partner column: no sky positions are read (name "
                        "both, e.g. ra and dec)", ", ".join(half))
        return
    ra, dec, problems = parse_positions(survey.labels[pair[0]], survey.labels[pair[1]], pair)
    survey.labels = set_positions(survey.labels, ra, dec, replace=pair)
    for i, why in sorted(problems.items()):
        survey.records[i].flag("bad_position")
        survey.notes.setdefault("bad_position", {}).setdefault(survey.records[i].id, why)


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
