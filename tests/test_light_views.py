"""The SSL head's nuisance views made on the galaxy's light (``form.aug_light``, the default): sky
beyond the frame, the sky's noise kept through the warp, noise added in units of the row's own sky,
the row normalised again as the ingest does; and the setting reaches the view bank and the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphospace.data.ingest.framing import border_sky
from morphospace.data.ingest.sky_noise import grained_noise, sky_grain
from morphospace.data.ingest.spec import PreprocessSpec
from morphospace.ssl.augment import NuisanceAugment

from test_invariance import S, _few_levels, _galaxy

STILL = dict(rotation=0.0, shift=0.0, scale=(1.0, 1.0), p_blur=0.0, p_noise=0.0, light=True)  # no change but a flip


def _rows(n: int = 6, grain: float = 0.7) -> torch.Tensor:
    return torch.from_numpy(np.stack([_galaxy(3.0, 1.5, angle=0.3 * i, grain=grain, seed=i) for i in range(n)]))


def _border(x: np.ndarray, w: int = 5) -> np.ndarray:
    """The top and bottom strips of each row (n, C, 2w, S)."""
    return np.concatenate([x[..., :w, :], x[..., -w:, :]], axis=-2)


def _neighbours(x: np.ndarray) -> float:
    """The correlation of horizontally neighbouring pixels."""
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    return float((x[..., :-1] * x[..., 1:]).sum() / np.sqrt((x[..., :-1] ** 2).sum() * (x[..., 1:] ** 2).sum()))


def test_unchanged_but_for_a_flip_a_light_view_is_the_row():
    """Undoing the stretch, putting nothing through the warp and normalising again gives the row back:
    the light path adds nothing of its own."""
    x = _rows()
    y = NuisanceAugment(**STILL)(x, 3).numpy()
    for row, view in zip(x.numpy(), y):
        assert min(np.abs(view - row).max(), np.abs(view - row[..., ::-1]).max()) < 2e-3


def test_beyond_a_shrunk_frame_is_the_row_s_sky_not_zeros():
    x = _rows(grain=0.7)
    shrink = {**STILL, "scale": (0.6, 0.6)}  # the frame covers the central 29 of 48 px (rows 10-38)
    view = NuisanceAugment(**shrink)(x, 1).numpy()
    pixels = _border(NuisanceAugment(**{**shrink, "light": False})(x, 1).numpy())
    assert np.all(pixels == 0.0)  # the earlier views: black beyond the frame
    # the sky beyond the frame against the sky within it, both normalised with the view (a smaller
    # galaxy's peak is lower, so the ingest's normalisation makes its noise larger in either)
    beyond, within = _border(view), np.concatenate([view[..., 11:15, 11:37], view[..., 33:37, 11:37]], axis=-2)
    ratio = beyond.std(axis=(-2, -1)) / within.std(axis=(-2, -1))
    assert 0.85 < ratio.mean() < 1.2 and np.all((ratio > 0.65) & (ratio < 1.5)), ratio
    assert np.abs(np.median(beyond) - np.median(within)) < 0.2 * within.std()
    # and the grain of the sky it was given is the row's own (neighbours correlated as in the row)
    assert _neighbours(beyond) == pytest.approx(_neighbours(_border(x.numpy())), abs=0.12)


def test_a_turn_keeps_the_sky_s_noise_that_resampling_smooths_away():
    """Bilinear resampling at an angle averages neighbouring pixels: the sky inside the frame would be
    smoother than the row's. The light views give that noise back; the pixel views do not."""
    x = _rows(n=12, grain=0.0)
    r = np.hypot(*np.indices((S, S)) - (S - 1) / 2)
    ring = (r > 14) & (r < 22)  # inside the frame at any angle, outside the galaxy
    turn = {**STILL, "rotation": 180.0}
    before = x.numpy()[..., ring].std()
    light = NuisanceAugment(**turn)(x, 5).numpy()[..., ring].std()
    pixels = NuisanceAugment(**{**turn, "light": False})(x, 5).numpy()[..., ring].std()
    assert 0.9 < light / before < 1.1, light / before
    assert pixels / before < 0.9, pixels / before


def test_the_added_noise_is_up_to_twice_the_sky_s():
    """``sky_noise`` = sqrt 3 adds at most three times the sky's variance: its noise at most doubled."""
    x = _rows(n=24)
    y = NuisanceAugment(**{**STILL, "p_noise": 1.0})(x, 2).numpy()
    ratio = _border(y).std(axis=(-3, -2, -1)) / _border(x.numpy()).std(axis=(-3, -2, -1))
    assert np.all((ratio > 0.9) & (ratio < 2.15)), ratio
    assert 1.2 < ratio.mean() < 1.7  # sqrt(1 + 3 u^2) for u uniform in [0, 1]: 1.42 on average
    quiet = NuisanceAugment(**{**STILL, "p_noise": 1.0, "sky_noise": 0.0})(x, 2).numpy()
    assert np.allclose(_border(quiet).std(axis=(-3, -2, -1)), _border(x.numpy()).std(axis=(-3, -2, -1)), rtol=0.02)


def test_light_views_of_a_min_max_cube_stay_in_its_range():
    spec = PreprocessSpec(normalise="minmax")
    x = _rows(n=4, grain=0.0).numpy()
    x = (x - x.min(axis=(1, 2, 3), keepdims=True)) / np.ptp(x, axis=(1, 2, 3), keepdims=True)
    y = NuisanceAugment(**{**STILL, "scale": (0.6, 0.6)}, normalise=spec.normalise)(torch.from_numpy(x), 0).numpy()
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert np.all(_border(y).std(axis=(-2, -1)) > 0.5 * _border(x).std(axis=(-2, -1)))  # sky, not a flat fill


def test_a_light_view_is_a_function_of_its_seed():
    x = _rows(n=3)
    aug = NuisanceAugment(light=True)
    assert torch.equal(aug(x, 7), aug(x, 7)) and not torch.allclose(aug(x, 7), aug(x, 8))
    assert aug(x, 7).dtype == x.dtype and aug(x, 7).shape == x.shape


def test_grained_noise_has_the_grain_asked_for_row_by_row():
    """One batch, a grain per row: each row's neighbours correlate as exp(-1 / 4 g^2), which is what
    :func:`sky_grain` reads back."""
    field = grained_noise((3, 2, 64, 64), np.array([0.0, 0.6, 1.0]), np.random.default_rng(0))
    assert np.allclose(field[1:].std(axis=(-2, -1)), 1.0) and np.allclose(field[0].std(axis=(-2, -1)), 1.0, atol=0.03)
    for row, g in zip(field, (0.0, 0.6, 1.0)):
        assert _neighbours(row) == pytest.approx(np.exp(-1 / (4 * g * g)) if g else 0.0, abs=0.05)
        assert sky_grain(row) == pytest.approx(g, abs=0.1)


def test_the_sky_s_noise_is_whole_across_the_frame_s_edge():
    """Where the frame's edge covers part of a pixel (and a blur spreads it), that pixel's sky is part
    warped, part new: its noise must still be the row's, or every shrunk view shows a square."""
    from morphospace.data.ingest.sky_noise import unstretch
    from test_invariance import SPEC

    x = _rows(n=48, grain=0.0)
    for blur in (0.0, 1.0):
        aug = NuisanceAugment(**{**STILL, "scale": (0.6, 0.6), "p_blur": blur, "blur_sigma": (1.5, 1.5)})
        light = unstretch(aug(x, 3).numpy(), SPEC)[..., 12:17, :]  # rows inside the frame, off the galaxy
        light = light / light[..., :5].std()  # the views' own scale: the sky beyond the frame
        columns = light.std(axis=(0, 1, 2))
        assert np.all((columns[:16] > 0.85) & (columns[:16] < 1.15)), (blur, columns[:16].round(2))


def test_a_sky_of_few_levels_still_gets_noise():
    """A faint 8-bit sky can hold one level in most of its border: a MAD of 0. Its spread is used,
    not no noise at all."""
    x = _few_levels(_rows(n=4, grain=0.0).numpy())  # most of the sky at 0
    view = NuisanceAugment(**{**STILL, "scale": (0.6, 0.6)})(torch.from_numpy(x), 0).numpy()
    assert np.all(_border(view).std(axis=(-2, -1)) > 0.3 * _border(x).std(axis=(-2, -1)))


def test_the_light_views_measure_the_sky_as_the_intervention_test_does():
    """One measurement of the sky's level and noise for both (with the floor of a sky of few levels,
    on the same border): the views and the test's changes start from the same sky."""
    from morphospace.data.ingest.sky_noise import unstretch
    from test_invariance import SPEC, _ring

    few = _few_levels(_rows(n=4, grain=0.0).numpy())
    lin = unstretch(few, SPEC).astype(np.float32)
    assert np.all(border_sky(lin)[1] == 0)
    # the floor: the spread of (the middle of) border_sky's own ring, no neighbour in it
    sigma = NuisanceAugment(light=True)._rows_light(torch.from_numpy(few)).sigma[..., 0, 0]
    np.testing.assert_allclose(sigma, _ring(lin).std(axis=-1), rtol=0.25)
    from morphospace.data.ingest.sky_noise import sky_level_noise

    for x in (_rows(n=4).numpy(), few):
        rows = NuisanceAugment(light=True)._rows_light(torch.from_numpy(x))
        level, sigma = sky_level_noise(unstretch(x, SPEC).astype(np.float32))
        np.testing.assert_array_equal(rows.level[..., 0, 0], level)
        np.testing.assert_array_equal(rows.sigma[..., 0, 0], sigma)
        assert np.all(sigma > 0)


def test_a_grey_row_s_light_views_stay_grey():
    """A grey frame in a colour cube (its band repeated, as the ingest writes it) gets the same noise in
    every band, so its views are grey; a colour row's bands get their own."""
    x = _rows(n=4).numpy()
    x[1] = x[1, 2:]  # grey
    aug = NuisanceAugment(light=True, p_noise=1.0)
    for seed in (0, 1, 2):
        view = aug(torch.from_numpy(x), seed).numpy()
        np.testing.assert_array_equal(view[1], np.broadcast_to(view[1, :1], view[1].shape))
        colour = view[[0, 2, 3]]
        assert np.all(np.abs(colour[:, 1] - colour[:, 0]).max(axis=(-2, -1)) > 0.01)


@pytest.mark.parametrize("light", [True, False])
def test_views_of_several_seeds_are_each_seed_s_own_view(light):
    # the view bank makes a block's views in one call, the rows' light measured once: each view
    # must still be the one a call with its seed alone gives, bit for bit
    x = _rows()
    augment = NuisanceAugment(light=light)
    seeds = [3, 99, 12345]
    together = list(augment.views(x, seeds))
    assert len(together) == len(seeds)
    for seed, view in zip(seeds, together):
        assert torch.equal(view, augment(x, seed=seed))
    assert not torch.equal(together[0], together[1])


def test_a_sky_of_few_levels_keeps_its_grain():
    # a grained sky quantised so that most of it sits on one level (MAD 0): every pixel off that level
    # read as a source, and the grain as white noise (0)
    from morphospace.data.ingest.sky_noise import sky_grain

    rng = np.random.default_rng(0)
    sky = grained_noise((2, 3, 64, 64), np.full(2, 1.0), rng)
    few = np.round(sky / 2.2).astype(np.float32)  # about 2/3 of the pixels on level 0
    assert np.all(border_sky(few)[1] == 0)
    assert np.all(sky_grain(few) > 0.5), sky_grain(few)

