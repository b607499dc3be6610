"""Reading a memory-mapped cube front to back without keeping its pages resident.

A page of a memory-mapped file, once read, stays mapped in the process and counts in its
resident memory (RSS) until the mapping goes. A stage that reads a whole 200,000-galaxy cube
of 64 px (9.8 GB) through its map would end with all of it resident, and a machine shared by
several processes would start evicting. The pages are only a cache of the file: telling the
kernel they are not needed (``MADV_DONTNEED``) drops them from this process, leaves them in
the page cache, and a later read maps them again.

The same loops allocate and free a batch's buffers over and over, and glibc keeps much of what
is freed without reusing it; :func:`trim_heap` gives it back, at every release.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap

__all__ = ["release_pages", "trim_heap", "PageReleaser", "RELEASE_BYTES", "SCATTERED_RESIDENT_MAX"]

# Bytes read from a map between two releases: large enough that the madvise call is rare,
# small enough that the resident memory of a full read stays far below the cube's size.
RELEASE_BYTES = 256 * 2**20
# A file mapped whole at most this large stays resident when read in random order: releasing it
# costs more page faults than the memory it saves (the SSL head on sdss-gz1's 258 MB view bank
# loaded its batches 2.4x slower so).
SCATTERED_RESIDENT_MAX = 2 * RELEASE_BYTES


def _mapping(array) -> "mmap.mmap | None":
    a = getattr(array, "cube", array)  # a RowView shows rows of its cube
    while a is not None:
        m = getattr(a, "_mmap", None)
        if isinstance(m, mmap.mmap):
            return m
        a = getattr(a, "base", None)
    return None


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    A loop that allocates and frees batch-sized buffers from several threads leaves glibc holding
    freed memory that it neither reuses nor returns: embedding 200,000 galaxies grew the resident
    memory by 24 kB a galaxy (5.3 GB), all of it given back by one ``malloc_trim``.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_pages(array) -> None:
    """Drop the pages of a memory-mapped array from this process (they stay in the page cache).

    Parameters
    ----------
    array : array-like
        A ``numpy.memmap``, a view of one, or a :class:`~morphospace.nets.batches.RowView` of
        one; anything else is left alone.
    """
    m = _mapping(array)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


class PageReleaser:
    """Counts the bytes read from some arrays and releases their pages every ``every`` bytes,
    with the heap's free memory (:func:`trim_heap`) that a batch loop leaves behind.

    Parameters
    ----------
    *arrays : array-like
        The arrays being read; those that are not memory-mapped have no pages to release.
    every : int, optional
        Bytes read between releases (default :data:`RELEASE_BYTES`).

    Examples
    --------
    >>> cube = np.zeros((10, 3, 4, 4), dtype=np.float32)
    >>> pages = PageReleaser(cube)
    >>> for s in range(0, 10, 4):
    ...     batch = np.array(cube[s:s + 4])
    ...     pages.read(batch.nbytes)
    """

    def __init__(self, *arrays, every: int | None = None):
        self.arrays = [a for a in arrays if a is not None and _mapping(a) is not None]
        self.every = RELEASE_BYTES if every is None else int(every)
        self.pending = 0

    @classmethod
    def scattered(cls, *arrays) -> "PageReleaser":
        """A releaser for rows read in random order (a shuffled loader, a sample): the kernel
        maps the pages around each row too (fault-around, read-ahead), so a read of scattered
        rows leaves several times its bytes resident; this one releases 8 times as often.
        At 200,000 galaxies the image decoder's shuffled reads of a 20,000-galaxy sample held
        4.4 GB of file pages without it. Files of at most :data:`SCATTERED_RESIDENT_MAX` bytes
        are left resident (read epoch after epoch, they would be mapped again and again)."""
        large = [a for a in arrays
                 if a is not None and (m := _mapping(a)) is not None and len(m) > SCATTERED_RESIDENT_MAX]
        # with nothing to release, only the heap is trimmed, at the usual pace
        return cls(*large, every=RELEASE_BYTES // 8 if large else RELEASE_BYTES)

    def read(self, nbytes: int) -> None:
        """Note that ``nbytes`` more were read; release the pages once ``every`` have been."""
        self.pending += int(nbytes)
        if self.pending >= self.every:
            self.release()

    def release(self) -> None:
        """Release the arrays' pages and the heap's free memory now."""
        for a in self.arrays:
            release_pages(a)
        trim_heap()
        self.pending = 0

