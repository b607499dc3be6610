"""Neighbour masking: companions hidden, the central galaxy kept, deterministic, cached per run."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from morphospace.image.masking import MASKED_CUBE, MASKED_TABLE, mask_images, mask_neighbours, masked_cube
from morphospace.image.sources import border_pixels
from morphospace.run import RunDir, write_npy, write_table

SIDE = 48


def blob(row, col, sigma, amp):
    """A Gaussian of peak ``amp`` and width ``sigma`` at (row, col) on a SIDE x SIDE frame."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return amp * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma**2))


def stamp(companion: bool, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A central galaxy on faint noise (C x SIDE x SIDE), with a companion up right if asked."""
    rng = np.random.default_rng(seed)
    img = blob(23.5, 23.5, 4.0, 1.0)
    if companion:
        img = img + blob(8, 40, 1.5, 0.8)
    return (img[None] * np.ones((channels, 1, 1)) + rng.normal(0, 0.02, (channels, SIDE, SIDE))).astype(np.float32)


def test_a_companion_is_replaced_by_sky_and_the_galaxy_is_kept():
    img = stamp(companion=True)
    out, n, frac = mask_neighbours(img)
    assert n == 1 and 0 < frac < 0.1
    # the companion's peak is now sky (noise of the border, ~0.02), it was 0.8
    assert np.abs(out[:, 6:11, 38:43]).max() < 0.15
    assert img[:, 8, 40].min() > 0.7
    # the central galaxy's pixels are untouched
    np.testing.assert_array_equal(out[:, 18:30, 18:30], img[:, 18:30, 18:30])
    # the input is not modified
    np.testing.assert_array_equal(img, stamp(companion=True))


def test_a_lone_galaxy_is_returned_unchanged():
    img = stamp(companion=False)
    out, n, frac = mask_neighbours(img)
    assert n == 0 and frac == 0.0
    np.testing.assert_array_equal(out, img)


def test_a_companion_on_the_halo_takes_the_halo_of_the_other_side():
    # a star on the galaxy's wing: its pixels take their point-symmetric twins' values
    galaxy = blob(23.5, 23.5, 6.0, 1.0)
    img = (galaxy + blob(23.5, 36, 1.0, 1.0))[None].astype(np.float32)
    img = img + np.random.default_rng(1).normal(0, 0.01, img.shape).astype(np.float32)
    out, n, _ = mask_neighbours(img)
    assert n == 1
    assert np.abs(img[0, 22:25, 35:38] - galaxy[22:25, 35:38]).max() > 0.5  # the star was there
    assert np.abs(out[0, 22:25, 35:38] - galaxy[22:25, 35:38]).max() < 0.05  # now the halo is


def test_same_image_same_output_wherever_it_sits():
    a, b = stamp(True, seed=1), stamp(True, seed=2)
    batch, table = mask_images(np.stack([a, b]), desc="")
    alone, _ = mask_images(b[None], desc="")
    np.testing.assert_array_equal(batch[1], alone[0])
    assert list(table.columns) == ["n_masked", "masked_fraction", "central_found"]
    assert table["n_masked"].tolist() == [1, 1] and table["central_found"].tolist() == [True, True]


def test_a_frame_without_a_central_source_is_left_as_it_is_and_listed():
    """Two nuclei on either side of the centre, neither within 10% of the side of it: masking
    every source (as before) left sky where the merger was."""
    rng = np.random.default_rng(3)
    pair = blob(23.5, 13, 2.0, 1.0) + blob(23.5, 34, 2.0, 1.0)
    img = (pair[None] * np.ones((3, 1, 1)) + rng.normal(0, 0.02, (3, SIDE, SIDE))).astype(np.float32)
    out, n, frac = mask_neighbours(img)
    assert n == 0 and frac == 0.0
    np.testing.assert_array_equal(out, img)
    _, table = mask_images(np.stack([img, stamp(True)]), desc="")
    assert table["central_found"].tolist() == [False, True] and table["n_masked"].tolist() == [0, 1]


def make_run(path, n=6):
    """A run with ``n`` stamps (every other one with a companion) and their catalogue."""
    run = RunDir(path, create=True)
    write_npy(run.cube, np.stack([stamp(i % 2 == 1, seed=i) for i in range(n)]))
    write_table(run.catalogue, pd.DataFrame({"id": [f"g{i}" for i in range(n)], "source": "x",
                                             "cube_index": np.arange(n)}))
    return run


def test_masked_cube_is_built_once_and_rebuilt_when_the_cube_changes(tmp_path):
    run = make_run(tmp_path / "run")
    m = masked_cube(run)
    assert m.shape == run.read_cube().shape
    table = pd.read_parquet(run.path / MASKED_TABLE)
    assert table["id"].tolist() == [f"g{i}" for i in range(6)]
    assert table["n_masked"].tolist() == [0, 1, 0, 1, 0, 1]
    first = (run.path / MASKED_CUBE).stat().st_mtime_ns
    masked_cube(run)
    assert (run.path / MASKED_CUBE).stat().st_mtime_ns == first  # cached
    # a cube masked by a version before keep_companions (its settings without it) is still good at
    # its default: an upgrade masked every run's cube again (25-49 GB at 10^6 galaxies)
    import json

    from morphospace.image.masking import MASKED_META, MaskParams

    meta = json.loads((run.path / MASKED_META).read_text())
    for stored in ({}, {"keep_companions": 0.0}):  # without it, or at 0 (as one version wrote it)
        meta["params"].pop("keep_companions", None)
        meta["params"].update(stored)
        (run.path / MASKED_META).write_text(json.dumps(meta))
        masked_cube(run)
        assert (run.path / MASKED_CUBE).stat().st_mtime_ns == first
    meta = json.loads((run.path / MASKED_META).read_text())
    (run.path / MASKED_META).write_text(json.dumps({k: v for k, v in meta.items() if k != "rule"}))
    masked_cube(run)  # masked by the rule before frames without a central source were left alone
    assert (run.path / MASKED_CUBE).stat().st_mtime_ns != first
    first = (run.path / MASKED_CUBE).stat().st_mtime_ns
    masked_cube(run, MaskParams(keep_companions=0.25))  # another setting: masked again
    assert (run.path / MASKED_CUBE).stat().st_mtime_ns != first
    masked_cube(run)
    first = (run.path / MASKED_CUBE).stat().st_mtime_ns
    cube = np.asarray(run.read_cube()).copy()
    cube[0] = stamp(True, seed=9)
    write_npy(run.cube, cube)
    os.utime(run.cube, ns=(first + 10**9, first + 10**9))
    assert float(np.asarray(masked_cube(run))[0, :, 8, 40].max()) < 0.15  # rebuilt: g0 now has a companion


@pytest.mark.parametrize("mask", [True, False])
def test_the_api_applies_the_models_input_transform(tmp_path, mask):
    import torch

    from morphospace.api import VaDEModel
    from morphospace.vade.networks import build_model

    hp = {"preset": "default", "channels": 3, "image_size": SIDE, "latent_dim": 3, "n_components": 2,
          "k_min": 2, "k_max": 2, "recon_sigma": 0.1, "radial_inner": 0.0, "radial_width": 0.0,
          "canonicalise": False, "flip_invariant": False, "widths": [4, 8], "mask_neighbours": mask}
    torch.manual_seed(0)
    model = VaDEModel(build_model(hp), hp)
    x = np.stack([stamp(True, seed=3), stamp(False, seed=4)])
    mu, _ = model.encode(x)
    with torch.no_grad():
        seen = mask_images(x, desc="")[0] if mask else x
        expect = model.vade.encode(torch.from_numpy(seen))[0].numpy()
    np.testing.assert_allclose(mu, expect, rtol=1e-5, atol=1e-6)


def test_masked_cube_on_a_process_pool_is_the_same_as_on_one(tmp_path, monkeypatch):
    from morphospace.image import masking

    one, two = make_run(tmp_path / "one", n=9), make_run(tmp_path / "two", n=9)
    a = np.asarray(masked_cube(one))
    old = masking.map_chunks
    # 9 rows in chunks of 4: three chunks over two processes
    monkeypatch.setattr(masking, "map_chunks", lambda *args, **kw: old(*args, **{**kw, "chunk": 4}))
    b = np.asarray(masked_cube(two, workers=2))
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_parquet(one.path / MASKED_TABLE), pd.read_parquet(two.path / MASKED_TABLE))


def test_masked_cube_is_stored_like_the_cube(tmp_path):
    """A float16 cube (the ingest's default) gets a float16 masked copy: the float32 one rounded."""
    wide, half = make_run(tmp_path / "wide"), make_run(tmp_path / "half")
    write_npy(half.cube, np.asarray(half.read_cube()).astype(np.float16))
    a, b = masked_cube(wide), masked_cube(half)
    assert a.dtype == np.float32 and b.dtype == np.float16
    # masking works in float32 on the rows it reads; the stored result differs by float16 rounding
    np.testing.assert_allclose(np.asarray(b, dtype=np.float32), a, atol=2e-3)


def test_a_merging_partner_can_be_kept_as_part_of_the_galaxy_and_a_minor_or_detached_one_cannot():
    """Deblending splits a merger's partner off the central galaxy, and every source but the central
    one is masked (on sdss-gz1 about 45% of the GZ1 mergers lose their partner or tail). With
    ``keep_companions`` a source touching the galaxy with at least that fraction of its light is
    kept (off by default: measured, it costs the form embedding more than it gives)."""
    from morphospace.image.masking import MaskParams

    keep = MaskParams(keep_companions=0.25)
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.01, (1, SIDE, SIDE))
    galaxy = blob(23.5, 21, 3.5, 1.0)
    major = (galaxy + blob(23.5, 31, 3.0, 0.8))[None] + noise  # touching, 0.59 of the galaxy's light
    out, n, frac = mask_neighbours(major.astype(np.float32), keep)
    assert n == 0 and frac == 0.0 and np.array_equal(out, major.astype(np.float32))
    out, n, _ = mask_neighbours(major.astype(np.float32))  # the default masks it
    assert n == 1 and out[0, 23, 31] < 0.6 * major[0, 23, 31]
    minor = (galaxy + blob(23.5, 29, 1.2, 0.8))[None] + noise  # touching, 0.09 of its light: a star, a knot
    out, n, _ = mask_neighbours(minor.astype(np.float32), keep)
    assert n == 1 and out[0, 23, 29] < 0.9 * minor[0, 23, 29]
    apart = (galaxy + blob(6, 42, 3.0, 0.8))[None] + noise  # as bright, but apart from it: a neighbour
    out, n, _ = mask_neighbours(apart.astype(np.float32), keep)
    assert n == 1 and out[0, 6, 42] < 0.1


def test_sky_filled_in_takes_the_border_s_own_values_on_a_sky_clipped_at_black():
    """An 8-bit JPEG's sky clipped at black: the fill was the border's median plus Gaussian noise of its
    sigma, and much of it fell below black (no real sky pixel is): a mark of where a neighbour was.
    Two companions on opposite sides (each the other's twin, so both take sky) are filled with values
    the border holds, in its proportions."""
    rng = np.random.default_rng(3)
    img = blob(23.5, 23.5, 4.0, 0.8) + blob(8, 40, 1.5, 0.8) + blob(39, 7, 1.5, 0.8)
    img = np.round(np.clip(img[None] + rng.normal(0.01, 0.02, (3, SIDE, SIDE)), 0, 1) * 255) / 255
    img = img.astype(np.float32)
    out, n, _ = mask_neighbours(img)
    assert n == 2
    changed = out != img
    for c in range(3):
        border, fill = border_pixels(img[c]), out[c][changed[c]]
        assert len(fill) > 30 and fill.min() >= border.min() == 0  # nothing below black
        assert set(np.unique(fill)) <= set(np.unique(border))  # the sky's own 8-bit levels
        assert abs((fill == 0).mean() - (border == 0).mean()) < 0.15  # black as often as on the border
