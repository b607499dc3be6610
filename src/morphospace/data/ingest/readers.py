"""The readers of each survey layout (:mod:`~morphospace.data.ingest.layouts` detects the layout
and picks one): a path in, a :class:`~morphospace.data.ingest.records.Survey` out, no pixel read.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DataConfig
from ...errors import UserError, first_line
from .files import (HDF5_EXTENSIONS, SYNTH_MARKER, file_kind, image_bands, images_in_subfolders, is_fits, list_files,
                    say_unread_beside, stem, subfolder_images, survey_bands)
from .labels import (GALAXY10_MORPH3, GALAXY10_NAMES, GZ1_MORPH3, GZ2_MORPH3, derive_gz2_class, gz1_classes,
                     vote_fractions, with_gz_classes)
from .positions import find_position_columns
from .records import Record, Survey
from .tables import find_catalogue, join_files, pick_column, read_table, typed

log = logging.getLogger("morphospace")

__all__ = ["LAYOUTS", "READERS", "known_layouts", "KAGGLE_IMAGES", "KAGGLE_CSV"]

LAYOUTS = ("folder", "sdss-gz1", "kaggle-gz2", "galaxy10", "fits", "synthetic")
KAGGLE_IMAGES = "images_training_rev1"
KAGGLE_CSV = "training_solutions_rev1.csv"


# the column names a folder's catalogue is read by (case-insensitive, the first present), unless named by
# data.id_column and data.file_column (--id-column, --file-column); the README's "Data it reads" lists them
# Zoobot's and Galaxy Zoo DESI's own (id_str, file_loc; dr8_id, iauname) before objid, which in DESI
# catalogues numbers a galaxy within its brick only
ID_COLUMNS = ("id", "id_str", "dr8_id", "iauname", "objid", "galaxyid", "galaxy_id", "name", "dr7objid")
FILE_COLUMNS = ("file", "file_loc", "filename", "file_name", "path", "image", "location")


def known_layouts() -> str:
    """The known layouts, for an error line."""
    return f"known layouts: {', '.join(LAYOUTS)}"


def read_folder(path: Path, cfg: DataConfig, cat_path: Path | None = None) -> Survey:
    image_dir = path / "images" if (path / "images").is_dir() else path
    cat_path = cat_path or find_catalogue(path, cfg)
    files = list_files(image_dir, skip_companions=image_dir == path)

    if cat_path is None:
        if not files:
            nested = sorted(os.path.relpath(p, image_dir) for p in subfolder_images(image_dir))
            if not nested:
                raise UserError(f"no images in {image_dir} ({known_layouts()})")
            return _read_sub_folders(path, image_dir, nested)
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
    id_col = pick_column(cols, cfg.id_column, ID_COLUMNS, "id", cat_path)
    file_col = pick_column(cols, cfg.file_column, FILE_COLUMNS, "file", cat_path)
    if id_col is None and file_col is None:
        raise UserError(f"catalogue {cat_path.name} has neither an id column nor a file column: name one with "
                        f"--id-column or --file-column (columns: {', '.join(cols)})")
    label_cols = list(cfg.label_columns) or [c for c in cols if c not in (id_col, file_col)]
    label_cols += [c for c in find_position_columns(cols) or () if c not in label_cols]  # RA/Dec always read
    missing = [c for c in label_cols if c not in cols]
    if missing:
        raise UserError(f"catalogue {cat_path.name} has no label column(s) {', '.join(missing)} "
                        f"(columns: {', '.join(cols)})")
    file_values = table[file_col].astype(str).str.strip().tolist() if file_col else None
    ids = table[id_col].astype(str).str.strip().tolist() if id_col else None
    ids_of_files = ids is None
    if ids is None:  # a file column alone: each galaxy's id is its file's name stem, as without a catalogue
        ids = [_file_id(v) for v in file_values]
        log.info("catalogue %s has no id column: each galaxy's id is its file name without extension (column %s)",
                 cat_path.name, file_col)
    elif file_col is None and _are_file_names(ids, files):
        # ids written as the folder's file names (587722952767439450.jpeg): matched by stem, none found its
        # image, and the error quoted the row's id and the folder's file, the same name twice
        file_values, ids = ids, [_file_id(v) for v in ids]
        log.info("catalogue %s: column %s holds the images' file names (e.g. %s): read as the file column, "
                 "each galaxy's id is its file name without extension (%s), as without a catalogue",
                 cat_path.name, id_col, file_values[0], ids[0])
        ids_of_files = True
    labels = with_gz_classes(pd.DataFrame({c: typed(table[c]) for c in label_cols}), cfg.vote_thresholds, cat_path.name)
    records, labels = join_files(image_dir, path, ids, file_values, files, labels)
    if ids_of_files:  # the rows' files as found (join_files: one record per row first)
        clash = _id_shared(ids, file_values, [r.source for r in records[:len(ids)]])
        if clash:
            gid, seen, value = clash
            raise UserError(f"catalogue {cat_path.name}: the files {seen!r} and {value!r} would both be galaxy "
                            f"{gid!r} (an id is a file's name without extension): give the catalogue an id "
                            f"column (--id-column)")
    _say_unnamed_in_subfolders(image_dir, records, cat_path.name)
    say_unread_beside(path, image_dir, {r.source for r in records if r.source})
    return Survey("folder", path, records, labels, _bands(records))


def _read_sub_folders(path: Path, image_dir: Path, nested: list[str]) -> Survey:
    """A folder whose images all sit in sub-folders (classes: ``spiral/``, ``elliptical/``; or batches:
    ``000/``, ``001/``), at any depth: every image is read, its id its file name without extension,
    as at the top level, and its sub-folder (``spiral``; ``a/b`` deeper down) is the label column
    ``folder``. Two files that would be one galaxy (``spiral/000.png``, ``elliptical/000.png``) are
    refused in one line: a catalogue with an id column tells them apart."""
    ids = [_file_id(rel) for rel in nested]
    top = str(image_dir)  # joined as strings: a Path per file costs seconds at 10^6 files
    sources = [os.path.join(top, rel) for rel in nested]
    clash = _id_shared(ids, nested, sources)
    if clash:
        gid, seen, rel = clash
        raise UserError(f"{image_dir}: the images {seen!r} and {rel!r} of its sub-folders would both be galaxy "
                        f"{gid!r} (an id is a file's name without extension): give a catalogue CSV with an id "
                        f"column and a file column naming them (a row '{rel}')")
    records = [Record(id=gid, source=src, kind=file_kind(rel)) for gid, rel, src in zip(ids, nested, sources)]
    folders = [os.path.dirname(rel).replace(os.sep, "/") for rel in nested]
    log.info("%s: %d image file(s) in %d sub-folder(s), none at the top: each read, its sub-folder the label "
             "column 'folder'", image_dir, len(records), len(set(folders)))
    return Survey("folder", path, records, pd.DataFrame({"folder": folders}), _bands(records))


def _file_id(value: str) -> str:
    """The id a catalogue's file cell gives a galaxy: its file name's stem (``sub/a.fits.gz`` -> ``a``), the
    id an image of a folder without catalogue gets (:func:`~morphospace.data.ingest.files.list_files`)."""
    gid = stem(os.path.basename(value))
    return gid.strip() or gid


def _are_file_names(ids: list[str], files: list[tuple[str, str]]) -> bool:
    """Whether a catalogue's ids are its images' file names, extension included: every id given names a
    file of the folder and none is a file's name stem (the ids a folder's images have). A catalogue that
    mixes the two keeps its ids as they are, each matched as before."""
    names = {name for _, name in files}
    stems = {s for s, _ in files}
    given = [i for i in ids if i]
    return bool(given) and all(i in names and i not in stems for i in given)


def _id_shared(ids: list[str], file_values: list[str], sources: list[str]) -> tuple[str, str, str] | None:
    """The first id taken from file names that two different files would give, as ``(id, the first
    file, the second)`` (``spiral/000.png`` and ``elliptical/000.png``; ``a.jpg`` and ``a.png``), or
    None: the second would be dropped as a duplicate, so the callers refuse it in one line. One file
    named twice, however its path is written (``sub/a.jpg``, ``./sub/a.jpg``, absolute, through
    ``../`` or a link), is no clash: the second row is flagged as the same file, as with an id column
    (it stopped the ingest)."""
    first: dict[str, tuple[str, str]] = {}
    for gid, value, source in zip(ids, file_values, sources):
        if not gid:
            continue
        seen, seen_source = first.setdefault(gid, (value, source))
        # resolved only where two rows share an id: a path per row resolved cost seconds at 10^6 rows
        if seen != value and os.path.realpath(seen_source) != os.path.realpath(source):
            return gid, seen, value
    return None


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


def read_synthetic(path: Path, cfg: DataConfig) -> Survey:
    try:
        marker = json.loads((path / SYNTH_MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / SYNTH_MARKER}: {exc}") from None
    cat = path / str(marker.get("catalogue", "catalogue.csv"))
    if not cat.is_file():
        raise UserError(f"synthetic survey {path} has no {cat.name}")
    sub = DataConfig(**{**cfg.__dict__, "id_column": str(marker.get("id_column", "id")),
                        "file_column": str(marker.get("file_column", "file"))})
    return read_folder(path, sub, cat_path=cat)


def read_sdss_gz1(path: Path, cfg: DataConfig) -> Survey:
    table = read_table(path / "labels.csv")
    if "objid" not in table.columns:
        raise UserError(f"{path / 'labels.csv'} has no 'objid' column (sdss-gz1 layout: objid,gz1_class,gz1_name)")
    files = list_files(path / "images", skip_companions=False)
    label_cols = [c for c in table.columns if c != "objid"]
    # a column of the user's named like the one derived here is kept, renamed, as the other layouts keep
    # theirs (a labels.csv's own morph3 was replaced by the derived one without a word)
    derives = "gz1_class" in label_cols
    kept_as = "catalogue_morph3"
    while kept_as in label_cols:  # a catalogue_morph3 of its own too: neither overwritten
        kept_as = f"catalogue_{kept_as}"
    labels = pd.DataFrame({(kept_as if derives and c == "morph3" else c):
                           gz1_classes(table, "labels.csv") if c == "gz1_class" else typed(table[c]) for c in label_cols})
    if derives:
        if "morph3" in label_cols:
            log.info("labels.csv's own column morph3 is kept as %s: morph3 is derived from gz1_class", kept_as)
        labels["morph3"] = labels["gz1_class"].map(GZ1_MORPH3, na_action="ignore").astype("string")
    ids = table["objid"].astype(str).str.strip().tolist()
    records, labels = join_files(path / "images", path, ids, None, files, labels)
    return Survey("sdss-gz1", path, records, labels, 3)


def read_kaggle(path: Path, cfg: DataConfig) -> Survey:
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
    # the table's other columns (positions, redshifts...) kept as any layout keeps its catalogue's: they were
    # dropped, and ra/dec with them; one named like ours is kept renamed
    others = {(c if c not in labels.columns and c not in ("id", "source") else f"catalogue_{c}"): typed(table[c]).array
              for c in table.columns if c != "GalaxyID" and c not in vote_cols}
    labels = pd.concat([labels, votes, pd.DataFrame(others, index=labels.index)], axis=1)
    files = list_files(path / KAGGLE_IMAGES, skip_companions=False)
    ids = table["GalaxyID"].astype(str).str.strip()
    # written as floats by a spreadsheet or pandas (100008.0): the images are named 100008.jpg
    ids = ids.str.replace(r"^(\d+)\.0*$", r"\1", regex=True).tolist()
    records, labels = join_files(path / KAGGLE_IMAGES, path, ids, None, files, labels)
    return Survey("kaggle-gz2", path, records, labels, 3)


def read_galaxy10(path: Path, cfg: DataConfig) -> Survey:
    import h5py

    if path.is_dir():
        h5 = [p for p in sorted(path.iterdir()) if p.name.lower().endswith(HDF5_EXTENSIONS)]
        if len(h5) != 1:
            raise UserError(f"{path}: expected one Galaxy10 .h5 file, found {len(h5)}")
        path = h5[0]
    extra: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            if "images" not in f or "ans" not in f:
                raise UserError(f"{path.name} is not a Galaxy10 file (needs datasets 'images' and 'ans'; "
                                f"has {', '.join(f.keys()) or 'none'})")
            for key in ("images", "ans"):
                if not isinstance(f[key], h5py.Dataset):  # a group: "'Group' object has no attribute 'shape'"
                    raise UserError(f"{path.name}: '{key}' must be a dataset (an array), not a group of them")
            if f["ans"].dtype.kind not in "biuf":
                raise UserError(f"{path.name}: 'ans' must hold class numbers, got {f['ans'].dtype}")
            shape, kind = f["images"].shape, f["images"].dtype.kind
            if kind not in "biuf":  # text or complex pixels: a traceback from the decode, or the imaginary part lost
                raise UserError(f"{path.name}: 'images' must hold numbers (integers or floats), got "
                                f"{f['images'].dtype}")
            ans_shape = f["ans"].shape
            if sum(d > 1 for d in ans_shape) > 1:  # one class per image (a row or column vector too), not a table
                raise UserError(f"{path.name}: 'ans' must hold one class number per image (shape N), got shape "
                                f"{ans_shape}")
            answers = np.asarray(f["ans"][:], dtype=np.float64).ravel()
            # a class is an integer: NaN (a float 'ans' with gaps) or 2.5 is no class, not int64's minimum
            known = np.isfinite(answers) & (answers == np.round(answers))
            ans = np.where(known, answers, -1).astype(np.int64)
            for key in f.keys():
                ds = f[key]
                if key in ("images", "ans"):
                    continue
                # one value per image: (N,), or (N, 1) as a column vector is often stored
                per_image = isinstance(ds, h5py.Dataset) and ds.shape in ((len(ans),), (len(ans), 1))
                if per_image and ds.dtype.kind in "biuf":  # bool too
                    extra[key] = np.asarray(ds[:]).reshape(len(ans))
                elif per_image and h5py.check_string_dtype(ds.dtype):
                    # text, as a user's own ids or names: dropped, no result could be matched back to them.
                    # As UTF-8 whatever the dataset declares: h5py tags numpy's byte strings ASCII, and
                    # read so, an accented name came out as two replacement characters without a word
                    text = ds.asstr(encoding="utf-8", errors="replace")[:].reshape(len(ans))
                    bad = sum(not _utf8(b) for b in np.asarray(ds[:]).reshape(len(ans)))  # a real U+FFFD is fine
                    if bad:
                        log.warning("%s: %d values of '%s' are not UTF-8 text: their undecodable bytes read as "
                                    "\ufffd", path.name, bad, key)
                    extra[key] = pd.array(text, dtype="string")
                else:
                    skipped.append(key)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ... for damaged files
        raise UserError(f"cannot read HDF5 file {path}: {first_line(exc)}") from None
    if skipped:  # said, not dropped without a word
        log.info("%s: %s left out of the catalogue (not one number, text or true/false per image)", path.name,
                 ", ".join(skipped))
    if len(shape) not in (3, 4) or shape[0] != len(ans):
        raise UserError(f"{path.name}: 'images' must be N x H x W x 3 with one 'ans' per image "
                        f"(got {shape}, {len(ans)} answers)")
    if len(shape) == 4 and shape[3] not in (1, 3):
        # bands first (N x 3 x H x W) would be read as H x W images of 69 bands: stripes, silently
        hint = ": the bands come first; store them last" if shape[1] in (1, 3) else ""
        raise UserError(f"{path.name}: 'images' must be N x H x W x 3 (bands last), got {shape}{hint}")
    # the DECaLS set's own pxscale says which it is once its 256 px images are made smaller (a common
    # first step): by the size alone its classes were given the SDSS set's names
    survey_kind = "decals" if "pxscale" in extra or shape[1] >= 128 else "sdss"
    names = GALAXY10_NAMES[survey_kind]
    # a class is an integer of the vocabulary: 12 or 2.5 was left without a class, without a word
    bad = np.isfinite(answers) & ((ans < 0) | (ans >= len(names)) | ~known)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"{path.name}: 'ans' of image {row} is {answers[row]:g}: Galaxy10 classes are the numbers "
                        f"0 to {len(names) - 1} ({int(bad.sum())} such answer(s))")
    if not np.isfinite(answers).all():
        log.info("%s: %d images without a class ('ans' NaN): kept, unlabelled", path.name,
                 int((~np.isfinite(answers)).sum()))
    log.info("%s: Galaxy10 %s class names (%s; the DECaLS set has pxscale and images 256 px wide, the SDSS "
             "set's are 69 px)", path.name, "DECaLS" if survey_kind == "decals" else "SDSS",
             "it has pxscale" if "pxscale" in extra else f"images {shape[2] if len(shape) > 2 else shape[1]} px wide")
    width = len(str(max(shape[0] - 1, 0)))
    records = [Record(id=f"{i:0{width}d}", source=str(path), kind="hdf5", index=i) for i in range(len(ans))]
    classes = pd.array(ans, dtype="Int64")
    classes[(ans < 0) | (ans >= len(names))] = pd.NA
    labels = pd.DataFrame({
        "galaxy10_class": classes,
        "galaxy10_name": pd.array([names[a] if 0 <= a < len(names) else None for a in ans], dtype="string"),
        "morph3": pd.array([GALAXY10_MORPH3[survey_kind].get(int(a)) for a in ans], dtype="string"),
    })
    for key, values in extra.items():  # one named like a column of ours is kept, renamed (as a catalogue's)
        labels[key if key not in labels.columns and key not in ("id", "source") else f"catalogue_{key}"] = values
    n_bands = int(shape[3]) if len(shape) == 4 else 1
    return Survey("galaxy10", path, records, labels, n_bands)


READERS = {
    "folder": read_folder,
    "fits": read_folder,
    "synthetic": read_synthetic,
    "sdss-gz1": read_sdss_gz1,
    "kaggle-gz2": read_kaggle,
    "galaxy10": read_galaxy10,
}


def _utf8(value) -> bool:
    """Whether ``value`` (bytes, as h5py reads a string dataset, or text) is UTF-8 text."""
    if not isinstance(value, bytes):
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
