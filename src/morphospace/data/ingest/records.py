"""What the ingest reads: one :class:`Record` per galaxy, before any pixel is decoded.

A layout (see :mod:`morphospace.data.ingest.layouts`) turns a survey on disk into a
list of records and a table of label columns. Problems visible from the listing
alone (a catalogue row without an image, an image without a row, a repeated id)
are flagged here; problems with pixels are flagged when the record is decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# Every quality flag the ingest can raise, with the words used in the summary.
# ``EXCLUDING`` flags keep a galaxy out of the cube; the others are warnings.
# The catalogue always has one boolean ``flag_<name>`` column per entry, in this order.
FLAG_DESCRIPTIONS = {
    "empty_file": "zero-byte file",
    "not_image": "not an image file",
    "truncated": "truncated image file",
    "unreadable": "file could not be read",
    "too_small": "image smaller than 8 pixels on a side",
    "blank": "blank or near-constant image",
    "not_galaxy": "frame is not a galaxy (flat frame with text or graphics, e.g. a service error page)",
    "nonfinite": "NaN or inf pixels (replaced by the sky level)",
    "unframed": "no central galaxy found to frame by its size (framing 'galaxy'): the fixed crop was used",
    "fewer_bands": "fewer bands than the cube's colour channels (a grey frame in a colour survey): its band repeated",
    "colour_reduced": "a colour frame in a survey whose sampled frames are grey: read as grey like them (its colour "
                      "lost; set preprocess.colour = 'grey' to say so, or make the survey's frames alike)",
    "depth_reduced": "16-bit colour image read at 8 bits per band (Pillow's limit): save as FITS to keep the depth",
    "duplicate_id": "id seen before (the first usable occurrence kept)",
    "missing_id": "catalogue row with an empty id",
    "duplicate_file": "image named by an earlier catalogue row too (first row kept)",
    "missing_image": "catalogue row without an image",
    "no_catalogue_row": "image without a catalogue row (no labels)",
    "bad_position": "RA/Dec unusable (out of range, not a number, one without the other, or a failing WCS): left empty",
}
EXCLUDING = frozenset(
    {"empty_file", "not_image", "truncated", "unreadable", "too_small", "blank", "not_galaxy",
     "duplicate_id", "missing_id", "duplicate_file", "missing_image"}
)


@dataclass(slots=True)  # slots: tens of thousands of these live in the parent at once
class Record:
    """One galaxy to ingest.

    Parameters
    ----------
    id : str
        The galaxy id (always a string, as in the catalogue).
    source : str
        Where the pixels are: a file path, or the HDF5 file for a row of a Galaxy10 set.
    kind : str
        ``"image"`` (Pillow), ``"fits"`` (astropy) or ``"hdf5"`` (h5py).
    index : int
        Row in an HDF5 dataset (``kind == "hdf5"``), else -1.
    flags : frozenset of str
        Flags raised so far (before decoding: missing image, duplicate id, ...); add
        with :meth:`flag`. (Labels live in the survey's table, not in records.)
    """

    id: str
    source: str
    kind: str = "image"
    index: int = -1
    flags: frozenset = frozenset()  # shared while empty: most records never get a flag

    def flag(self, name: str) -> None:
        """Raise flag ``name``.

        Parameters
        ----------
        name : str
            A key of ``FLAG_DESCRIPTIONS``.
        """
        self.flags = self.flags | {name}

    @property
    def decodable(self) -> bool:
        """Whether the pixels are worth decoding (no excluding flag raised yet)."""
        return not (self.flags & EXCLUDING)

    @property
    def where(self) -> str:
        """The source as written in the catalogue (``file#row`` for an HDF5 row)."""
        return f"{self.source}#{self.index}" if self.kind == "hdf5" else self.source


def flag_duplicates(records: list[Record]) -> None:
    """Flag every record whose id an earlier record that is not kept out already holds, whose id is
    empty, or whose image an earlier record already holds (the first occurrence is kept).

    Parameters
    ----------
    records : list of Record
        Flagged ``duplicate_id``, ``missing_id`` or ``duplicate_file`` in place.
    """
    seen: set[bytes] = set()
    sources: set = set()
    stats: dict[str, object] = {}  # one stat per file (an HDF5 set holds many rows)
    for rec in records:
        key = _id_key(rec)  # as it will be written
        # the same file (or HDF5 row) an earlier kept record holds: one galaxy twice, under two ids or
        # under one (a row repeated: it was flagged duplicate_id alone, where the README says duplicate_file)
        where = _file_identity(rec, stats) if rec.source and rec.decodable else None
        if not key.strip():
            rec.flag("missing_id")
        elif key in seen:
            rec.flag("duplicate_id")
        if where is not None and where in sources:
            rec.flag("duplicate_file")
        elif where is not None and rec.decodable:  # a record kept out holds no file for the ones after it
            sources.add(where)
        # a record kept out (a row whose image is missing, or names an earlier row's image) does
        # not hold its id: the record after it is the first occurrence, and kept (it was dropped:
        # "first kept" though none was)
        if rec.decodable:
            seen.add(key)


def _id_key(rec: Record) -> bytes:
    """An id as it will be written: file names that are not UTF-8 decode to lone surrogates, which
    the catalogue stores as U+FFFD, so two such ids can become one."""
    return str(rec.id).encode("utf-8", "replace")


def _file_identity(rec: Record, stats: dict):
    """What names one image whatever the path to it: the file's device and inode (the same file
    by a relative and an absolute path, through a link, under two names), and the row of an HDF5
    set; the normalised path where the file cannot be read (decoding flags it)."""
    node = stats.get(rec.source)
    if node is None:
        try:
            st = os.stat(rec.source)
        except (OSError, ValueError):
            return os.path.normpath(rec.where)
        # a file system without inode numbers (0) names files by their resolved path instead
        node = stats[rec.source] = (st.st_dev, st.st_ino) if st.st_ino else (os.path.realpath(rec.source), 0)
    return (*node, rec.index if rec.kind == "hdf5" else None)


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


def second_chances(records: list[Record], cube_index) -> list[int]:
    """Records whose id none of its records holds in the cube (its first occurrence turned out
    unreadable, blank, too small...) and that were kept out only as a later occurrence of that id:
    the first such record of each id, ``duplicate_id`` taken back so that it is decoded. Without
    it, a galaxy listed twice, whose first file was damaged, was lost.

    Parameters
    ----------
    records : list of Record
    cube_index : array of int
        Per record, its cube row (-1: not in the cube).

    Returns
    -------
    list of int
        The records to decode now, in record order.
    """
    # an image no catalogue row names has none of the row's labels: not the galaxy the row meant
    candidates = [i for i, rec in enumerate(records) if cube_index[i] < 0
                  and rec.flags & EXCLUDING == {"duplicate_id"} and "no_catalogue_row" not in rec.flags]
    if not candidates:  # the common case: no file looked at again
        return []
    held = {_id_key(rec) for rec, row in zip(records, cube_index) if row >= 0}
    stats: dict[str, object] = {}
    files = {_file_identity(rec, stats) for rec, row in zip(records, cube_index) if row >= 0 and rec.source}
    out: list[int] = []
    for i in candidates:
        rec = records[i]
        k = _id_key(rec)
        if k in held:
            continue
        where = _file_identity(rec, stats) if rec.source else None
        if where is not None and where in files:  # its image is in the cube already, under another id
            rec.flag("duplicate_file")
            continue
        rec.flags = rec.flags - {"duplicate_id"}
        held.add(k)  # one record of the id a round; a later one if this one fails too
        files.add(where)
        out.append(i)
    return out
