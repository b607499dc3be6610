"""Ingest fast path: the batched checks and rows equal the per-frame recipe, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures import error_page, galaxy_flux, galaxy_rgb
from PIL import Image

from morphospace.data.ingest.cube import CubeWriter
from morphospace.data.ingest.decode import BadImage, Frame
from morphospace.data.ingest.histograms import sample_8bit, stats_8bit, stats_8bit_arrays, stats_8bit_many
from morphospace.data.ingest.normalise import level_luts, normalise_levels
from morphospace.data.ingest.preprocess import PreprocessSpec, RowBlock, _row_8bit, preprocess, preprocess_block
from morphospace.data.ingest.quality import judge


def _bright_border_dark_centre(size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(5)
    a = np.full((size, size, 3), 200.0) + rng.normal(0, 3, (size, size, 3))
    yy, xx = np.mgrid[:size, :size] - size / 2
    a[np.hypot(yy, xx) < size / 4] = 10
    return np.clip(a, 0, 255).astype(np.uint8)


def _frames() -> list[np.ndarray]:
    """Galaxies and every kind of frame the checks must catch, 8-bit, colour and grey."""
    rng = np.random.default_rng(0)
    flat = np.clip(128 + rng.normal(0, 1.5, (96, 96, 3)), 0, 255).astype(np.uint8)
    return [galaxy_rgb(96, seed=0), galaxy_rgb(160, seed=1), galaxy_rgb(212, seed=2, star=(80, 120)),
            galaxy_rgb(96, seed=3, peak=20.0), galaxy_rgb(96, seed=4)[..., 1],  # a faint one; a grey one
            error_page(96, 255, 0), error_page(128, 128, 0), error_page(96, 0, 255), error_page(96, 128, 255),
            np.zeros((96, 96, 3), np.uint8), flat, _bright_border_dark_centre(),
            np.full((64, 64), 9, np.uint8), galaxy_rgb(120, seed=6, sky=60.0)]


def _reference(img: Image.Image, spec: PreprocessSpec):
    """The per-frame recipe: the exact statistics and checks, then the row."""
    sample = sample_8bit(img)
    try:
        judge(stats_8bit(sample), True, spec)
    except BadImage as exc:
        return exc
    return _row_8bit(img, stats_8bit_many([sample])[1][0], spec)


@pytest.mark.parametrize("spec", [PreprocessSpec(), PreprocessSpec(normalise="minmax"), PreprocessSpec(channels=1),
                                  PreprocessSpec(size=32, crop=0.8), PreprocessSpec(exact=True)])
def test_batched_checks_and_rows_equal_the_per_frame_recipe(spec):
    images = [Image.fromarray(a) for a in _frames()]
    block, results = preprocess_block(iter([Frame(im, display=True) for im in images]), spec)
    rows = block.to_array()
    r = 0
    for im, got in zip(images, results):
        want = _reference(im, spec)
        if isinstance(want, BadImage):
            assert isinstance(got, BadImage) and got.flags == want.flags and got.detail == want.detail
        else:  # a grey frame in a colour cube is said so; nothing else is flagged
            assert got == ({"fewer_bands"} if im.mode == "L" and spec.channels == 3 else set())
            np.testing.assert_array_equal(rows[r], want)
            r += 1
    assert r == len(block)
    flags = [res.flag if isinstance(res, BadImage) else None for res in results]
    assert flags[:5] == [None] * 5 and flags[-1] is None
    assert flags[5:12] == ["not_galaxy"] * 4 + ["blank", "blank", "not_galaxy"]


def test_ring_and_centre_median_bounds_hold():
    rng = np.random.default_rng(1)
    samples = []
    for k in range(40):
        side = int(rng.integers(12, 120))
        a = rng.integers(0, 256, (side, side, 3)) * rng.uniform(0, 1, 3) + rng.uniform(0, 100)
        if k % 3 == 0:
            a[side // 3: 2 * side // 3, side // 3: 2 * side // 3] = rng.uniform(0, 255)
        samples.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    samples.append(Image.fromarray(_bright_border_dark_centre(60)).convert("L"))
    st = stats_8bit_arrays(samples)
    for i in range(len(samples)):
        exact = st.frame_stats(i)
        assert st.ring_max[i] >= round(exact.ring_median * 255)
        assert st.centre_min[i] <= round(exact.centre_median * 255)


def test_level_luts_of_a_batch_equal_one_at_a_time():
    rng = np.random.default_rng(2)
    light = 150 * np.exp(-np.hypot(*np.mgrid[-32:32, -32:32]) / 6)[..., None]
    levels = np.stack([np.clip(rng.normal(30, 20, (64, 64, 3)) + f * light, 0, 255).astype(np.uint8)
                       for f in (1.0, 0.3, 0.0, 2.0)])
    levels[2] = 5  # no light in the centre: the brightest pixel sets the scale
    skies = rng.uniform(0.0, 0.2, (4, 3)).astype(np.float32)
    for spec in (PreprocessSpec(), PreprocessSpec(normalise="minmax"), PreprocessSpec(softening=0.5)):
        luts = level_luts(levels, skies, spec)
        for i in range(4):
            np.testing.assert_array_equal(luts[i], level_luts(levels[i:i + 1], skies[i:i + 1], spec)[0])
            row = np.stack([luts[i, c][levels[i, ..., c]] for c in range(3)])
            np.testing.assert_array_equal(row, normalise_levels(levels[i], spec, skies[i], 3))


def test_a_block_keeps_the_input_order_across_row_kinds():
    # grey JPEG-like frames, colour frames, and flux arrays (float rows) in one batch
    frames = [Frame(Image.fromarray(galaxy_rgb(96, seed=1)), True),
              Frame(Image.fromarray(galaxy_rgb(96, seed=2)[..., 0]), True),
              galaxy_flux(64, seed=3, bands=3).transpose(1, 2, 0).copy(),
              Frame(Image.fromarray(np.zeros((48, 48, 3), np.uint8)), True),
              Frame(Image.fromarray(galaxy_rgb(80, seed=4)), True)]
    for spec in (PreprocessSpec(), PreprocessSpec(channels=1)):
        block, results = preprocess_block(frames, spec)
        assert [isinstance(r, BadImage) for r in results] == [False, False, False, True, False]
        rows = block.to_array()
        want = [preprocess(f, spec)[0] for k, f in enumerate(frames) if k != 3]
        assert rows.shape == (4, spec.channels, spec.size, spec.size)
        for got, ref in zip(rows, want):
            np.testing.assert_array_equal(got, ref)
        both = RowBlock.concat([block, block], block.shape)
        np.testing.assert_array_equal(both.to_array(), np.concatenate([rows, rows]))
    assert len(RowBlock.empty((3, 8, 8)).to_array()) == 0


def test_cube_writer_syncs_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setattr(CubeWriter, "SYNC_EVERY", 1000)
    rows = np.random.default_rng(3).normal(size=(40, 2, 8, 8)).astype(np.float32)
    w = CubeWriter(tmp_path / "cube.npy", 40, (2, 8, 8))
    for k in range(0, 40, 4):
        w.append_rows(rows[k:k + 4])
    w.publish()  # finishes first
    np.testing.assert_array_equal(np.load(tmp_path / "cube.npy"), rows)
    w2 = CubeWriter(tmp_path / "c2.npy", 40, (2, 8, 8))
    w2.append_rows(rows)
    w2.abort()
    assert not list(tmp_path.glob("c2*"))
    # the final sync in the background: published only once it is done; or aborted
    w3 = CubeWriter(tmp_path / "c3.npy", 40, (2, 8, 8))
    w3.append_rows(rows[:7])
    w3.finish(background=True)
    assert not (tmp_path / "c3.npy").exists()
    w3.publish()
    np.testing.assert_array_equal(np.load(tmp_path / "c3.npy"), rows[:7])
    w4 = CubeWriter(tmp_path / "c4.npy", 40, (2, 8, 8))
    w4.append_rows(rows)
    w4.finish(background=True)
    w4.abort()
    assert not list(tmp_path.glob("c4*"))
