"""Atomic writes: every file of a run is written to a temporary name beside it and renamed into
place, so a killed stage never leaves a file that looks complete; and the stamp that tells a
result derived from a file which version of the file it was.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

__all__ = ["SHARE_FOLDERS", "atomic_path", "content_stamp", "file_stamp", "new_npy_map", "partial_path", "read_cached_npy", "read_parquet",
           "read_stamped_pickle", "spreadsheet_safe", "stamp_is_current", "to_parquet", "write_json", "write_npy",
           "write_stamped_pickle", "write_table", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{_fitting(path.name)}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the user's usual mode
    try:
        try:
            yield tmp_path
        except OSError as exc:
            # a write the file system refused (a full disk, a quota) names no file: "cannot use: No
            # space left on device", not where; it is the file being written
            if exc.filename is None and exc.errno in _WRITE_ERRNOS:
                raise type(exc)(exc.errno, exc.strerror, str(path)) from None
            raise
        try:
            os.replace(tmp_path, path)
        except OSError as exc:  # it names the temporary file, gone by the time the error is said
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# what a write refuses where the file system, not the caller, is at fault
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _fitting(name: str) -> str:
    """``name`` cut short enough that its temporary name (``.<name>.<8 random>.partial``) stays within
    the 255 bytes a file name may have: a legal 250-byte name was refused, "File name too long"."""
    room = 255 - len(".") - len(".12345678.partial")
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name


def partial_path(path: str | Path) -> Path:
    """A temporary name beside ``path`` of :func:`atomic_path`'s shape, for a file written otherwise
    (a memory-mapped one) and renamed onto ``path`` when whole: left behind a killed writer, the run's
    next writer removes it (:func:`remove_partials`)."""
    import secrets

    path = Path(path)
    return path.with_name(f".{_fitting(path.name)}.{secrets.token_hex(4)}.partial")


# the folders where the processes of a distributed prediction leave their shares of the rows, as large as
# its result (a view bank's): removed by its first process once gathered, and by the run's next writer
# where the job was killed
SHARE_FOLDERS = frozenset({"predict_shares", "bank_shares"})


def remove_partials(root: Path, files, folders) -> None:
    """Remove the temporary files :func:`atomic_path` (or :func:`partial_path`) left behind a killed
    writer: those of ``files`` at the top of ``root``, and every one under its ``folders``, and the
    :data:`SHARE_FOLDERS` under them. Only for the run's one writer (it holds the lock: no other
    command is writing them)."""
    import re
    import shutil

    # the shape of atomic_path's names exactly: `.results.csv.x1.partial`, an export's beside
    # `results.csv`, is not the run's file's, nor is `.catalogue.parquet.csv.<8>.partial`
    shape = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.partial")
    stale = [p for p in root.glob(".*.partial") if (m := shape.fullmatch(p.name)) and m.group(1) in files]
    stale += [p for folder in folders if (root / folder).is_dir() for p in (root / folder).rglob(".*.partial")
              if shape.fullmatch(p.name)]
    for p in stale:
        try:
            p.unlink()
        except OSError:  # gone already, or not ours to remove: the command goes on
            pass
    for folder in folders:
        if (root / folder).is_dir():
            for shares in [d for d in (root / folder).rglob("*_shares") if d.name in SHARE_FOLDERS and d.is_dir()]:
                shutil.rmtree(shares, ignore_errors=True)


def write_text(path: str | Path, text: str, errors: str = "strict") -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`), as UTF-8.

    Parameters
    ----------
    path : str or Path
    text : str
    errors : str
        What to do with what UTF-8 cannot encode (a path whose name is not UTF-8 holds such
        characters): ``"strict"`` refuses, ``"replace"`` writes a replacement character (a page
        meant to be read, not parsed back).
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors=errors)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented JSON, atomically.

    Parameters
    ----------
    path : str or Path
    obj : JSON-serialisable
        NumPy scalars and arrays become numbers and lists; paths become strings.
    """
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def new_npy_map(path: str | Path, dtype, shape: tuple) -> np.memmap:
    """A new ``.npy`` at ``path`` mapped for writing (``open_memmap``, mode ``w+``), its bytes reserved
    on disk first: a sparse file written through its map on a full disk kills the process with SIGBUS
    (no message, the partial file left filling the disk); reserved, a full disk is an ``OSError``
    naming the file, before any work. Where the file system cannot reserve, the file stays sparse.

    Parameters
    ----------
    path : str or Path
    dtype : numpy dtype
    shape : tuple of int

    Returns
    -------
    numpy.memmap
    """
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            out._mmap.close()  # nothing was written through it
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    return out


def file_stamp(path: str | Path) -> dict:
    """What identifies a file's version for a cache derived from it: its size and modification
    time (ns). A cache that stores it is fitted again once the file's stamp differs (a copied run's
    caches too: time, never a wrong result). Results a user sees take :func:`content_stamp`."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def content_stamp(path: str | Path) -> dict:
    """:func:`file_stamp` and the sha256 of the file's bytes: what a result the user sees (the
    comparisons, a classification, the tags' re-ranking) records of the files it came from, so
    that :func:`stamp_is_current` still knows them in a copied run (``cp -r``, ``rsync`` without
    ``-t``, an archive unpacked: new modification times, the same bytes)."""
    import hashlib

    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())  # of the bytes read, whatever is renamed into place meanwhile
        digest = hashlib.file_digest(fh, "sha256").hexdigest()  # ~1.6 GB/s
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def stamp_is_current(stamp: Any, path: str | Path) -> bool:
    """Whether ``path`` is still the file a :func:`content_stamp` (or an older :func:`file_stamp`)
    was taken of: the same size, and the same modification time or else the same bytes. A file
    missing now is current only for a stamp of None (missing then too).

    Parameters
    ----------
    stamp : dict or None
        As recorded.
    path : str or Path

    Returns
    -------
    bool
    """
    try:
        st = Path(path).stat()
    except OSError:
        return stamp is None
    if not isinstance(stamp, dict) or stamp.get("size") != st.st_size:
        return False
    if stamp.get("mtime_ns") == st.st_mtime_ns:
        return True
    try:
        return "sha256" in stamp and content_stamp(path)["sha256"] == stamp["sha256"]
    except OSError:
        return False


def _file_identity(st: os.stat_result) -> dict:
    """Which file a ``stat`` describes: inode, owner, size and the time its inode last changed.

    A copy, an unpacked archive or a file put in place by hand is another inode with a ctime of
    its own, which no one can set (only the clock can), so a note recording these vouches for the
    very file the writer renamed into place, and for no file made elsewhere. (Not the device: a
    cluster's file system has another device number on every node that mounts it.)
    """
    return {"ino": st.st_ino, "uid": st.st_uid, "ctime_ns": st.st_ctime_ns, "size": st.st_size}


def read_stamped_pickle(path: str | Path, note: str | Path, stamp: dict) -> Any:
    """The object pickled at ``path`` if the JSON ``note`` beside it holds ``stamp``, else None.

    A fitted model cached in a run (a neighbour index, an anomaly scorer) is reused only while
    the files it was fitted on are the same (their :func:`file_stamp` in ``stamp``), and only if
    the pickle is the very file :func:`write_stamped_pickle` wrote on this machine, as this
    user: unpickling runs code, and a run folder may come from someone else (a copy, an
    archive, a colleague's folder read in place), whose pickle is then never read, only fitted
    again. A damaged pickle, or one naming classes this version
    no longer has, reads as None too: the caller fits it again.

    Parameters
    ----------
    path, note : str or Path
        The pickle and its note, as :func:`write_stamped_pickle` writes them.
    stamp : dict
        What the model must have been fitted on.

    Returns
    -------
    object or None
    """
    path, note = Path(path), Path(note)
    if not (path.is_file() and note.is_file()):
        return None
    try:
        with open(path, "rb") as fh:  # the file judged is the file read: no swap between the two
            identity = _file_identity(os.fstat(fh.fileno()))
            if identity["uid"] != getattr(os, "geteuid", lambda: identity["uid"])():
                return None
            if json.loads(note.read_text()) != {"stamp": stamp, "pickle": identity}:
                return None
            return pickle.load(fh)
    except (OSError, ValueError, EOFError, AttributeError, ImportError, pickle.UnpicklingError):
        return None  # damaged or foreign: fitted again


def read_cached_npy(path: str | Path, shape: tuple | None = None) -> np.ndarray | None:
    """A cache a stage keeps beside its results (the masked cube, the view bank, the training's form
    embedding), memory-mapped; None when it is missing, damaged (cut short, not an array) or not of
    ``shape``: the caller computes it again, as it would without it.

    Parameters
    ----------
    path : str or Path
    shape : tuple, optional
        The shape it must have.

    Returns
    -------
    numpy.memmap or None
    """
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if shape is not None and tuple(arr.shape) != tuple(shape):
        return None
    return arr


def write_stamped_pickle(path: str | Path, note: str | Path, stamp: dict, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` and ``stamp`` to the JSON ``note`` beside it, each atomically (the
    pickle first: a note never vouches for a pickle that is not written yet), with the pickle's
    identity on this machine (see :func:`read_stamped_pickle`).

    Parameters
    ----------
    path, note : str or Path
    stamp : dict
        What ``obj`` was fitted on (see :func:`read_stamped_pickle`).
    obj : object
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh)
    write_json(note, {"stamp": stamp, "pickle": _file_identity(Path(path).stat())})


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as a C-contiguous ``.npy``, atomically.

    Parameters
    ----------
    path : str or Path
    array : ndarray
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))


def read_parquet(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_parquet`` through a Python file: pyarrow cannot encode a path that is not UTF-8
    (a folder named in Latin-1), which it would report as a damaged file."""
    with open(path, "rb") as fh:
        return pd.read_parquet(fh, **kwargs)


def to_parquet(table: pd.DataFrame, path: str | Path) -> None:
    """``table.to_parquet(path, index=False)`` through a Python file, as :func:`read_parquet` reads."""
    with open(path, "wb") as fh:
        table.to_parquet(fh, index=False)


_FORMULA = r"^[=+\-@\t\r]"  # what a spreadsheet opening a CSV runs as a formula ...
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"  # ... unless it is a plain number


def spreadsheet_safe(table: pd.DataFrame, keep: tuple[str, ...] = ("id",)) -> pd.DataFrame:
    """``table`` for a CSV a person opens in a spreadsheet: text that would run as a formula (``=``,
    ``+``, ``-``, ``@``, tab or CR first, not a plain number) gets a leading apostrophe, as the
    explorer's downloads do. The ``keep`` columns (ids: they must match the catalogue's) and numbers
    are written as they are.

    Parameters
    ----------
    table : DataFrame
    keep : tuple of str
        Columns left exactly as they are.

    Returns
    -------
    DataFrame
        A copy where anything changed, else ``table`` itself.
    """
    out = table
    for col in table.columns:
        if col in keep or not (pd.api.types.is_object_dtype(table[col]) or pd.api.types.is_string_dtype(table[col])):
            continue
        text = table[col].astype("string")
        risky = (text.str.contains(_FORMULA, regex=True) & ~text.str.contains(_NUMBER, regex=True)).fillna(False)
        if risky.any():
            out = out.copy() if out is table else out
            out[col] = table[col].where(~risky.to_numpy(), "'" + text)
    return out


def spreadsheet_guard_removed(text: pd.Series) -> pd.Series:
    """One text column of a CSV read back as it was before :func:`spreadsheet_safe` (or the explorer's
    download) guarded it: the apostrophe put before text a spreadsheet would run as a formula is taken
    off, so that a class named ``=E`` written out and read back is ``=E``, not ``'=E``. An apostrophe
    that guard would not have written (before a plain number or a letter) stays."""
    rest = text.str.slice(1)
    guarded = (text.str.startswith("'") & rest.str.contains(_FORMULA, regex=True)
               & ~rest.str.contains(_NUMBER, regex=True)).fillna(False)
    return text.where(~guarded.to_numpy(), rest)


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write a DataFrame by extension (.parquet or .csv), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            to_parquet(table, tmp)
        elif path.suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unknown table extension: {path.suffix}")
