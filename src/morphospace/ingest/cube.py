"""An on-disk image cube written row by row, in the ``.npy`` format.

Rows are appended with plain file writes (not a memory map) so the writer's memory
stays flat however many galaxies there are. The file is created under a temporary
name with room for the maximum row count; :meth:`CubeWriter.commit` shrinks the
header to the rows actually written, truncates the file and renames it into place,
so a killed ingest never leaves a ``cube.npy`` that looks complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _header(shape: tuple[int, ...], length: int | None = None) -> bytes:
    """A version-1.0 .npy header for float32 C-order data, padded to ``length`` bytes."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (tuple(shape),)
    # magic (6) + version (2) + header length (2) + text + newline, padded to 64.
    if length is None:
        length = 10 + len(text) + 1
        length += (-length) % 64
    pad = length - 10 - len(text) - 1
    if pad < 0:
        raise ValueError("header does not fit")
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + (len(body)).to_bytes(2, "little") + body


class CubeWriter:
    """Append C x H x W float32 rows to ``path`` (atomically on :meth:`commit`).

    Parameters
    ----------
    path : Path
        Final location (``cube.npy``).
    max_rows : int
        Upper bound on the number of rows.
    row_shape : tuple
        (C, H, W).
    """

    def __init__(self, path: Path, max_rows: int, row_shape: tuple[int, int, int]):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._header_len = len(_header((max_rows, *self.row_shape)))
        self._fh = open(self.tmp, "wb")
        self._fh.write(_header((max_rows, *self.row_shape)))

    def append(self, row: np.ndarray) -> int:
        """Write one row; return its index."""
        if row.shape != self.row_shape:
            raise ValueError(f"row shape {row.shape} != cube row shape {self.row_shape}")
        self._fh.write(np.ascontiguousarray(row, dtype="<f4").tobytes())
        self.rows += 1
        return self.rows - 1

    def commit(self) -> Path:
        """Fix the header to the written row count and rename into place."""
        self._fh.flush()
        self._fh.seek(0)
        self._fh.write(_header((self.rows, *self.row_shape), self._header_len))
        self._fh.truncate(self._header_len + self.rows * int(np.prod(self.row_shape)) * 4)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)
