"""An on-disk image cube written row by row, in the ``.npy`` format.

Rows are appended with plain file writes (not a memory map) so the writer's memory
stays flat however many galaxies there are. The file is written under the name
``cube.npy.partial`` with a header sized for the maximum row count;
:meth:`CubeWriter.finish` rewrites the header for the rows actually written,
truncates and syncs the file, and :meth:`CubeWriter.publish` renames it into place.
A killed ingest therefore never leaves a ``cube.npy`` that looks complete: only a
``.partial``, which the next ingest replaces.

Rows are stored as float16 by default (``ingest.cube_dtype``): half the bytes of float32 to
write, read and keep in the page cache at every later stage, at a precision (3 decimal digits
of a value near 1) finer than an 8-bit image's steps and than the noise of a survey image.

While rows are appended, every ``SYNC_EVERY`` bytes a background thread syncs what is
written so far (``fdatasync``), so the disk writes overlap the decoding and the final
sync waits for the last stretch only, not the whole cube.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


CUBE_DTYPES = ("float16", "float32")


def _header(shape: tuple[int, ...], length: int | None = None, dtype: str = "float32") -> bytes:
    """A version-1.0 .npy header for little-endian C-order ``dtype`` data, padded to ``length`` bytes."""
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).newbyteorder("<").str,
                                                                        tuple(shape))
    # magic (6) + version (2) + header length (2) + text + newline, padded to 64.
    if length is None:
        length = 10 + len(text) + 1
        length += (-length) % 64
    pad = length - 10 - len(text) - 1
    if pad < 0:
        raise ValueError("header does not fit")
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + (len(body)).to_bytes(2, "little") + body


def partial_path(path: Path) -> Path:
    """Where the cube for ``path`` is written until it is complete (``cube.npy.partial``).

    Parameters
    ----------
    path : Path
        The final location.

    Returns
    -------
    Path
    """
    return Path(path).with_name(Path(path).name + ".partial")


class CubeWriter:
    """Append C x H x W rows to ``path`` (atomically on :meth:`publish`).

    Parameters
    ----------
    path : Path
        Final location (``cube.npy``).
    max_rows : int
        Upper bound on the number of rows.
    row_shape : tuple
        (C, H, W).
    dtype : {"float32", "float16"}
        How the rows are stored.
    """

    SYNC_EVERY = 32 * 2**20

    def __init__(self, path: Path, max_rows: int, row_shape: tuple[int, int, int], dtype: str = "float32"):
        if str(dtype) not in CUBE_DTYPES:
            raise ValueError(f"cube dtype {dtype!r} is not one of {CUBE_DTYPES}")
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.rows = 0
        self._finished = False
        self._unsynced = 0
        self._syncer: _Sync | None = None
        self._final_sync: _Sync | None = None
        first = _header((max_rows, *self.row_shape), dtype=self.dtype)
        self._header_len = len(first)
        self._fh = open(self.tmp, "wb")  # "wb": a stale .partial of a killed run is replaced
        self._fh.write(first)

    def append(self, row: np.ndarray) -> int:
        """Write one row.

        Parameters
        ----------
        row : ndarray, shape (C, H, W)
            The row.

        Returns
        -------
        int
            Its index in the cube.
        """
        return self.append_rows(row[None])

    def append_rows(self, rows: np.ndarray) -> int:
        """Write a block of rows.

        Parameters
        ----------
        rows : ndarray, shape (k, C, H, W)
            The rows (converted to the cube's little-endian dtype).

        Returns
        -------
        int
            The index of the first in the cube.
        """
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"row shape {rows.shape[1:]} != cube row shape {self.row_shape}")
        first = self.rows
        if len(rows):
            data = memoryview(np.ascontiguousarray(rows, dtype=self.dtype)).cast("B")
            self._fh.write(data)
            self.rows += len(rows)
            self._unsynced += data.nbytes
            if self._unsynced >= self.SYNC_EVERY and not (self._syncer and self._syncer.running()):
                # sync what is written so far while we decode; its errors are left to the final sync
                self._fh.flush()
                self._unsynced = 0
                self._syncer = _Sync(self._fh.fileno(), getattr(os, "fdatasync", os.fsync))
        return first

    def _join_syncer(self) -> None:
        if self._syncer is not None:
            self._syncer.wait(check=False)
            self._syncer = None

    def finish(self, background: bool = False) -> None:
        """Fix the header to the written row count, truncate and sync (still under ``.partial``).

        With ``background=True`` the final sync runs in a thread while the caller goes on
        (the catalogue is built meanwhile); :meth:`publish` waits for it and raises its
        error, if any, before the cube is renamed into place.

        Parameters
        ----------
        background : bool
            Sync in a thread rather than before returning.
        """
        self._join_syncer()
        self._fh.flush()
        self._fh.seek(0)
        self._fh.write(_header((self.rows, *self.row_shape), self._header_len, self.dtype))
        self._fh.truncate(self._header_len + self.rows * int(np.prod(self.row_shape)) * self.dtype.itemsize)
        self._fh.flush()
        if background:
            self._final_sync = _Sync(self._fh.fileno(), os.fsync)
        else:
            os.fsync(self._fh.fileno())
            self._fh.close()
        self._finished = True

    def _wait_final_sync(self) -> None:
        sync, self._final_sync = self._final_sync, None
        if sync is not None:
            try:
                sync.wait()
            finally:
                self._fh.close()

    def wait_synced(self) -> None:
        """Finish the cube (if not yet) and wait until it is on disk: what can fail before the
        rename (a full disk, an I/O error) fails here."""
        if not self._finished:
            self.finish()
        self._wait_final_sync()

    def publish(self) -> Path:
        """Rename the finished cube into place (once it is synced).

        Returns
        -------
        Path
            The cube's final location.
        """
        if not self._finished:
            self.finish()
        self._wait_final_sync()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and remove the partial file."""
        self._join_syncer()  # the file descriptor stays valid until its sync is done
        try:
            self._wait_final_sync()
        except OSError:
            pass
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


class _Sync:
    """``sync(fd)`` (``os.fsync`` or ``os.fdatasync``) in a thread; :meth:`wait` joins it and
    raises its error (``check=True``)."""

    def __init__(self, fd: int, sync):
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(sync, fd), daemon=True, name="cube-sync")
        self._thread.start()

    def _run(self, sync, fd: int) -> None:
        try:
            sync(fd)
        except OSError as exc:
            self.error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, check: bool = True) -> None:
        self._thread.join()
        if check and self.error is not None:
            raise self.error
