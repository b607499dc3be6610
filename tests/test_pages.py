"""A memory-mapped cube read front to back does not stay resident (run/pages.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from morphospace.nets.batches import RowView, forward_in_batches
from morphospace.run import pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RssFile from /proc (Linux)")

MB = 2**20


def _rss(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    pytest.skip(f"no {field} in /proc/self/status")


def rss_file() -> int:
    """Bytes of file-backed pages resident in this process."""
    return _rss("RssFile")


@pytest.fixture
def cube(tmp_path):
    """A 48 MB float32 cube on disk, opened as a memory map (pages not yet read)."""
    path = tmp_path / "cube.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(768, 4, 64, 64))
    mm[:] = np.arange(768, dtype=np.float32)[:, None, None, None]
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


def read_all(cube, releaser=None, batch=64) -> int:
    """Read every row in batches; return the growth of resident file pages at the largest."""
    base, peak = rss_file(), 0
    for s in range(0, len(cube), batch):
        b = np.array(cube[s:s + batch])
        if releaser is not None:
            releaser.read(b.nbytes)
        peak = max(peak, rss_file() - base)
    return peak


def test_reading_without_release_keeps_the_pages(cube):
    # the control: without a release, the whole file ends up resident in this process
    assert read_all(cube) > 40 * MB


def test_releaser_keeps_resident_pages_below_its_budget(cube):
    grown = read_all(cube, pages.PageReleaser(cube, every=8 * MB))
    assert grown < 12 * MB  # one budget and a batch, never the 48 MB file


def test_releaser_reaches_a_row_view_and_ignores_plain_arrays(cube):
    view = RowView(cube, np.arange(len(cube))[::-1])
    grown = read_all(view, pages.PageReleaser(view, every=8 * MB))
    assert grown < 12 * MB
    plain = pages.PageReleaser(np.zeros(4), None)
    assert plain.arrays == []
    plain.read(10**12)  # nothing to release, nothing raised


def test_forward_in_batches_releases_the_cube(cube, monkeypatch):
    monkeypatch.setattr(pages, "RELEASE_BYTES", 4 * MB)
    base, seen = rss_file(), []

    def fn(xb):
        seen.append(rss_file() - base)
        return xb.mean(dim=(1, 2, 3))

    out = forward_in_batches(fn, cube, batch_size=32)
    np.testing.assert_array_equal(out, np.arange(768, dtype=np.float32))  # the rows, in order, unchanged
    # a budget and a batch, plus the page cache's mapping granularity (large folios: up to 2 MB)
    assert max(seen) < 12 * MB


def rss_anon() -> int:
    """Bytes of anonymous memory (the heap) resident in this process."""
    return _rss("RssAnon")


def test_trim_heap_returns_freed_memory_that_malloc_keeps():
    if pages._malloc_trim() is None:
        pytest.skip("not glibc: no malloc_trim")
    # 128 MB in 2 kB blocks, one in 64 kept: the heap cannot shrink from its top, so the
    # freed blocks stay resident until trimmed (the embedding loop's 5.3 GB at 200,000 galaxies)
    arrays = [np.ones(512, dtype=np.float32) for _ in range(64 * 1024)]
    kept = arrays[::64]
    del arrays
    before = rss_anon()
    pages.trim_heap()
    assert before - rss_anon() > 64 * MB
    assert all(float(k[0]) == 1.0 for k in kept)  # the blocks still in use are untouched


def test_releaser_trims_the_heap_for_plain_arrays_too(monkeypatch):
    calls = []
    monkeypatch.setattr(pages, "trim_heap", lambda: calls.append(1))
    releaser = pages.PageReleaser(np.zeros(4), every=100)
    releaser.read(60)
    assert calls == []
    releaser.read(60)
    assert calls == [1] and releaser.pending == 0


@pytest.mark.parametrize("dataset", ["cube", "decoder"])
def test_shuffled_training_loaders_release_the_cube(cube, monkeypatch, dataset):
    """Epochs of shuffled batches (the VaDE's and the image decoder's loaders) keep a memory-mapped
    cube's pages below the scattered budget, and still deliver every row."""
    from torch.utils.data import DataLoader

    from morphospace.vade.data import CubeDataset
    from morphospace.vade.form_decoder import CodesAndImages

    monkeypatch.setattr(pages, "RELEASE_BYTES", 32 * MB)  # scattered: a release every 4 MB read
    monkeypatch.setattr(pages, "SCATTERED_RESIDENT_MAX", 16 * MB)  # the 48 MB file counts as large
    codes = np.zeros((len(cube), 2), dtype=np.float32)
    data = CubeDataset(cube) if dataset == "cube" else CodesAndImages(codes, codes, cube)
    base, peak, seen = rss_file(), 0, []
    for _ in range(2):
        for batch in DataLoader(data, batch_size=32, shuffle=True):
            images = batch if dataset == "cube" else batch[2]
            seen.extend(images[:, 0, 0, 0].int().tolist())
            peak = max(peak, rss_file() - base)
    assert sorted(seen) == sorted(list(range(768)) * 2)  # every row, each epoch, intact
    # not the 48 MB file (the control above keeps > 40 MB); scattered rows map whole folios
    # of the page cache around them, so the bound is looser than the 4 MB budget
    assert peak < 28 * MB


def test_a_small_file_read_in_random_order_stays_resident(cube, monkeypatch):
    """Below ``SCATTERED_RESIDENT_MAX`` a shuffled reader keeps the file mapped (re-mapping it every
    few batches cost the SSL head more than the memory saved); above, it releases it."""
    released = []
    monkeypatch.setattr(pages, "release_pages", lambda a: released.append(a))
    monkeypatch.setattr(pages, "SCATTERED_RESIDENT_MAX", 64 * MB)  # the fixture's cube: 48 MB
    small = pages.PageReleaser.scattered(cube)
    assert small.arrays == []
    small.read(1 << 40)
    assert released == []
    monkeypatch.setattr(pages, "SCATTERED_RESIDENT_MAX", 16 * MB)
    large = pages.PageReleaser.scattered(cube)
    assert len(large.arrays) == 1
    large.read(1 << 40)
    assert len(released) == 1
