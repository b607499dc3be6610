"""Which files of a survey folder are galaxies: extensions, name stems and the folder listing.

Every file of an image folder counts (except hidden files and, beside a catalogue, text
companions such as CSV, JSON or Markdown), so a stray non-image file is flagged
``not_image`` rather than silently skipped.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ...errors import UserError

log = logging.getLogger("morphospace")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp", ".webp")
# compressed as astropy reads them: gzip, bzip2 (SDSS's frames) and fpack's tiles
FITS_EXTENSIONS = tuple(base + packed for base in (".fits", ".fit", ".fts") for packed in ("", ".gz", ".bz2", ".fz"))
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")
# Files beside the images that are documentation or tables, not galaxies (top-level folders only).
COMPANION_EXTENSIONS = (".csv", ".tsv", ".json", ".txt", ".md", ".rst", ".toml", ".yaml", ".yml", ".parquet",
                        ".py", ".ipynb", ".log", ".html", ".pdf") + HDF5_EXTENSIONS
SYNTH_MARKER = "morphospace_synth.json"  # written by morphospace.data.synth; never a galaxy

# longest first, so "x.fits.gz" loses ".fits.gz" rather than ".gz"
_EXTENSIONS_LONGEST_FIRST = tuple(sorted(IMAGE_EXTENSIONS + FITS_EXTENSIONS, key=len, reverse=True))
_OTHER_EXTENSION = re.compile(r"\.(?=[0-9]*[A-Za-z])[A-Za-z0-9]{1,5}")  # a letter in it: not a name's digits
# one-dot extensions: where the last dot starts one of these, no longer extension can match
_SIMPLE_EXTENSIONS = frozenset(e for e in IMAGE_EXTENSIONS + FITS_EXTENSIONS if e.count(".") == 1)


def is_fits(name: str) -> bool:
    """Whether file ``name`` is FITS by its extension (compressed ones included).

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    bool
    """
    return name.lower().endswith(FITS_EXTENSIONS)


def is_image(name: str) -> bool:
    """Whether file ``name`` is a rendered image (JPEG, PNG, TIFF, ...) by its extension.

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    bool
    """
    return name.lower().endswith(IMAGE_EXTENSIONS)


def file_kind(name: str) -> str:
    """The decoder a file goes to: ``"fits"`` or ``"image"`` (Pillow; it flags what is neither).

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    str
    """
    return "fits" if is_fits(name) else "image"


def stem(name: str) -> str:
    """A file name without its image or FITS extension (``a.fits.gz`` -> ``a``): the galaxy id.

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    str
    """
    dot = name.rfind(".")
    if dot > 0 and name[dot:].lower() in _SIMPLE_EXTENSIONS:  # the usual case, without the loop below
        return name[:dot]
    lower = name.lower()
    for ext in _EXTENSIONS_LONGEST_FIRST:
        if lower.endswith(ext):
            return name[: -len(ext)]
    # another extension (".jfif"), but not the digits of a name with dots in it: J150.12+02.51 and
    # J150.12+02.98 were both read as the galaxy J150.12+02, the second flagged a duplicate
    base, ext = os.path.splitext(name)
    return base if _OTHER_EXTENSION.fullmatch(ext) else name


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file's first line (empty when it cannot be read).

    Parameters
    ----------
    path : Path
        A CSV file.

    Returns
    -------
    list of str
    """
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            return [c.strip() for c in fh.readline().strip().split(",")]
    except OSError:
        return []


def list_files(folder: Path, skip_companions: bool) -> list[tuple[str, str]]:
    """(stem, file name) of every candidate image in ``folder``, sorted by name.

    Hidden files and sub-folders are skipped; so are text companions (CSV, JSON, ...)
    when ``skip_companions`` (images beside their catalogue). Broken links and files of
    any other kind are kept: decoding flags them.

    Parameters
    ----------
    folder : Path
        The image folder.
    skip_companions : bool
        Leave out files with a ``COMPANION_EXTENSIONS`` extension.

    Returns
    -------
    list of (str, str)
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
            if name.lower().endswith(HDF5_EXTENSIONS):  # may hold galaxies of its own: said, not passed over
                log.info("%s is left out of this folder survey (its images are the survey): to ingest the "
                         "HDF5 file, give its path", name)
            continue
        # the id stripped as a catalogue's ids are (" lead.png" was id " lead", which the tags and labels
        # files, stripped as they are read, could never name); a name of spaces alone keeps them
        gid = stem(name)
        out.append((gid.strip() or gid, name))
    # where stripping makes two ids one (" g1.png" and "g1.png"), the file already named so keeps the id
    # (the later of two alike is flagged a duplicate): the stripped one of such a pair goes last; the
    # order is the names' otherwise (a re-ingest compares the ids in order)
    clean = {gid for gid, name in out if stem(name) == gid}
    clash = {gid for gid, name in out if stem(name) != gid} & clean
    return sorted(out, key=lambda item: item[0] in clash and stem(item[1]) != item[0]) if clash else out


def subfolder_images(folder: Path) -> Iterator[str]:
    """The image or FITS files (paths) the (non-hidden) sub-folders of ``folder`` hold, at any depth, as
    they are found: what a folder survey with images at its top level leaves out unless a catalogue
    row names them, and the whole survey of a folder without (its classes' or batches' folders).
    Linked sub-folders are followed (a batch linked in was left out without a word), each real
    folder once (a link to a folder above would loop)."""
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if Path(root) != Path(folder):
            yield from (os.path.join(root, n) for n in names if not n.startswith(".") and (is_image(n) or is_fits(n)))


def images_in_subfolders(folder: Path) -> int:
    """How many files :func:`subfolder_images` finds."""
    return sum(1 for _ in subfolder_images(folder))


def in_dir(folder: Path) -> Callable[[str], str]:
    """``lambda name: str(folder / name)`` for plain file names, without building a Path each time.

    Parameters
    ----------
    folder : Path
        The folder.

    Returns
    -------
    callable
        File name -> path string.
    """
    base = str(folder)
    if base == ".":
        return lambda name: name
    return lambda name: os.path.join(base, name)


def spread_sample(paths: list[Path], sample: int) -> list[Path]:
    """At most ``sample`` of ``paths``: one drawn (with a fixed seed) from each of ``sample`` equal
    stretches of the list, so spread over it as an even spacing is, without its aliasing: of files
    where every third is grey, every third file was sampled, all grey, and the colour survey read grey."""
    n, k = len(paths), min(sample, len(paths))
    if k == n:
        return list(paths)
    edges = np.linspace(0, n, k + 1).astype(int)
    rng = np.random.default_rng(0)
    return [paths[int(rng.integers(a, b))] for a, b in zip(edges[:-1], edges[1:])]


def fits_bands(paths: list[Path], sample: int = 20) -> dict[int, int]:
    """The band counts of a folder of FITS files, on a sample of them.

    Parameters
    ----------
    paths : list of Path
        FITS files.
    sample : int
        How many files to open, spread evenly over the list.

    Returns
    -------
    dict
        Band count (1 for 2-D images, the first axis's length for a band cube) -> how many of
        the readable sampled files have it; empty when none is readable.
    """
    from astropy.io import fits

    from .fits_frames import bands_last

    counts: dict[int, int] = {}
    for p in spread_sample(paths, sample):
        if not os.path.isfile(p):  # a pipe waits for a writer that never comes: flagged when decoded
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a damaged file's warnings: it is flagged when decoded
                with fits.open(p, memmap=False) as hdul:
                    images = [h for h in hdul if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) >= 2]
                    if len(images) > 1 and not counts:  # once: e.g. one band per extension, or image + mask + variance
                        log.info("%s holds %d image extensions: the first, %s, is read (bands in separate extensions "
                                 "are not combined: give each file a band cube)", p.name, len(images),
                                 images[0].name or "PRIMARY")
                    for hdu in hdul:
                        d = getattr(hdu, "data", None)
                        if d is not None and np.ndim(d) >= 2:
                            shape = [s for s in np.shape(d)]
                            while len(shape) > 3 and shape[0] == 1:
                                shape = shape[1:]
                            bands = 1 if len(shape) == 2 else int(shape[-1] if bands_last(shape) else shape[0])
                            counts[bands] = counts.get(bands, 0) + 1
                            break
        except Exception:  # noqa: BLE001 - a broken file is flagged when decoded; look at the next one
            continue
    return counts


def survey_bands(fits_paths: list[Path]) -> int:
    """The band count of a FITS survey: the most common one in a sample of its files (the larger
    on a tie); where the files differ, the log says so and what becomes of the others."""
    counts = fits_bands(fits_paths)
    if not counts:
        return 1
    bands = max(counts, key=lambda b: (counts[b], b))
    if len(counts) > 1:
        seen = ", ".join(f"{n} with {b} band{'s' if b > 1 else ''}" for b, n in sorted(counts.items()))
        log.warning("the FITS files do not all have the same number of bands (of %d sampled: %s): the survey is "
                    "read as %d-band; frames with fewer bands than the cube's colour channels are flagged "
                    "fewer_bands, frames with more keep their first three in a colour cube, and colour frames "
                    "in a grey cube are averaged", sum(counts.values()), seen, bands)
    return bands


GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def image_bands(paths: list[Path], sample: int = 20) -> int:
    """The band count of a survey of JPEG/PNG/TIFF images: 1 when every readable file of a sample
    (spread evenly over the list; only their headers are read) is grey, else 3. A grey survey was
    made a three-channel cube of one band repeated, every galaxy flagged fewer_bands."""
    from PIL import Image

    modes, pages = [], None
    for p in spread_sample(paths, sample):
        if not os.path.isfile(p):  # a pipe waits for a writer that never comes: flagged when decoded
            continue
        try:
            with Image.open(p) as img:
                modes.append(img.mode)
                if pages is None and img.format == "TIFF" and getattr(img, "n_frames", 1) > 1:  # not an MPO's
                    pages = (p.name, img.n_frames)
        except Exception:  # noqa: BLE001 - an unreadable file is the ingest's to flag
            continue
    if pages:  # e.g. a TIFF of one band per page: said, as a FITS file's other extensions are
        log.warning("%s holds %d pages (frames): the first is read (bands on separate pages are not combined: "
                    "give each file a band cube as FITS)", *pages)
    if modes and all(m in GREY_MODES for m in modes):
        log.info("the survey's images are grey (%d sampled): its cube has one channel (a colour frame among "
                 "them is read as grey and flagged colour_reduced)", len(modes))
        return 1
    return 3


def say_unread_beside(path: Path, image_dir: Path, read: set[str]) -> None:
    """Images at the top of a survey whose images are in its ``images/`` folder are not read
    (unless a catalogue row names them, ``read`` holding the records' sources): the log says how
    many, not lost silently."""
    if image_dir == path:
        return
    read = {os.path.normpath(r) for r in read}
    beside = [name for _, name in list_files(path, skip_companions=True)
              if (is_image(name) or is_fits(name)) and os.path.normpath(path / name) not in read]
    if beside:
        log.warning("%d image file(s) at the top of %s are not read (e.g. %s): beside an images/ folder, the "
                    "survey is the images in it; move them there, or name them in a catalogue's file column",
                    len(beside), path, beside[0])
