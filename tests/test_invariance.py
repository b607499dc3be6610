"""The intervention test (morphospace.vade.invariance): each change does what it says to a galaxy's
light and nothing else, the test scores the run's own clusters through the run's own path, and the
report says what the clusters follow."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from morphospace.data.ingest.normalise import normalise
from morphospace.data.ingest.spec import PreprocessSpec
from morphospace.data.ingest.framing import border_sky
from morphospace.data.ingest.sky_noise import row_sky, sky_level_noise, unstretch
from morphospace.vade.invariance import CHANGES, _changed_light, change_rows

from test_form import form_run  # noqa: F401 (a fixture: a tiny trained and embedded form run)

SPEC = PreprocessSpec()  # asinh, softening 0.1, as the ingest makes a cube
S = 48


def _galaxy(sigma_x: float, sigma_y: float, angle: float = 0.0, noise: float = 0.01, seed: int = 0,
            centre: tuple[float, float] = ((S - 1) / 2, (S - 1) / 2), grain: float = 0.0,
            spec: PreprocessSpec = SPEC, clip: float | None = None) -> np.ndarray:
    """A cube row (3, S, S) of an elliptical Gaussian galaxy in sky noise (white, or of the given
    grain: correlated between neighbours as a resampled cutout's), normalised as the ingest does;
    ``clip``: the first band's sky clipped this many of its sigmas off its level (0), as an 8-bit sky
    near black is."""
    rows, cols = np.indices((S, S), dtype=np.float64)
    dy, dx = rows - centre[0], cols - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    light = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    sky = rng.normal(0.0, 1.0, (3, S, S))
    if grain:
        sky = np.stack([ndimage.gaussian_filter(b, grain, mode="wrap") for b in sky])
        sky /= sky.std()
    img = np.stack([light * w for w in (0.6, 0.8, 1.0)]) + noise * sky
    if clip is not None:
        img[0] = np.maximum(img[0], clip * noise)
    return normalise(img.transpose(1, 2, 0).astype(np.float32), spec, sky=np.zeros(3, np.float32)).transpose(2, 0, 1)


def _few_levels(rows: np.ndarray) -> np.ndarray:
    """Rows (n, C, S, S) with their sky put on two levels, most of it at 0: a faint 8-bit sky, whose
    border has a MAD of 0."""
    sky = np.abs(rows) < 0.15
    return np.where(sky, np.where(rows > 0.04, 0.08, 0.0), rows).astype(np.float32)


def _ring(x: np.ndarray, w: int = S // 10) -> np.ndarray:
    """The pixels of each frame's border ring (..., n), ``w`` wide: those border_sky measures."""
    lead = x.shape[:-2]
    return np.concatenate([x[..., :w, :].reshape(*lead, -1), x[..., -w:, :].reshape(*lead, -1),
                           x[..., w:-w, :w].reshape(*lead, -1), x[..., w:-w, -w:].reshape(*lead, -1)], axis=-1)


def _moments(row: np.ndarray) -> tuple[float, float, float, float]:
    """Centroid (y, x), size (sqrt of the trace of the second moments) and position angle (degrees,
    of the major axis from +x, y down) of the light above 5% of its peak."""
    lin = unstretch(row[None], SPEC)[0].mean(0)
    w = np.where(lin > 0.05 * lin.max(), lin, 0.0)
    rows, cols = np.indices(w.shape)
    t = w.sum()
    cy, cx = (w * rows).sum() / t, (w * cols).sum() / t
    iyy, ixx = (w * (rows - cy) ** 2).sum() / t, (w * (cols - cx) ** 2).sum() / t
    ixy = (w * (rows - cy) * (cols - cx)).sum() / t
    return cy, cx, float(np.sqrt(ixx + iyy)), float(np.degrees(0.5 * np.arctan2(2 * ixy, ixx - iyy)))


@pytest.mark.parametrize("grain", [0.0, 0.9])  # white sky noise, and sdss-gz1's (neighbours correlated at 0.7)
def test_each_change_does_what_it_says_and_keeps_the_sky_noise(grain):
    row = _galaxy(4.0, 2.0, angle=0.0, grain=grain)[None]
    cy, cx, size, pa = _moments(row[0])
    out = {c: change_rows(row, c, SPEC, seed=1)[0] for c in CHANGES}
    m = {c: _moments(r) for c, r in out.items()}
    assert m["smaller"][2] / size == pytest.approx(0.7, rel=0.08)
    assert m["larger"][2] / size == pytest.approx(1.4, rel=0.08)
    assert abs(abs(m["turned 45 deg"][3] - pa) - 45.0) < 4.0  # turned, the size kept
    assert m["turned 45 deg"][2] == pytest.approx(size, rel=0.05)
    assert m["wider PSF"][2] > 1.04 * size and m["wider PSF"][3] == pytest.approx(pa, abs=2.0)
    # moved half a pixel along the diagonal, and nothing else
    assert m["moved 1/2 px"][0] - cy == pytest.approx(0.5 / np.sqrt(2), abs=0.08)
    assert m["moved 1/2 px"][1] - cx == pytest.approx(0.5 / np.sqrt(2), abs=0.08)
    assert m["moved 1/2 px"][2] == pytest.approx(size, rel=0.03)
    # the sky's noise, in the light's own units (before the normalisation, which divides a shrunk
    # galaxy by a lower peak, as the ingest would): given back where resampling or blurring smoothed
    # it, doubled where fainter; the sky's level kept
    # (the mean over 3 bands and 4 draws: one band's border, its noise correlated, varies by 20%)
    lights = [unstretch(_galaxy(4.0, 2.0, grain=grain, seed=s)[None], SPEC)[0] for s in range(4)]
    for change, factor in (("moved 1/2 px", 1.0), ("smaller", 1.0), ("larger", 1.0), ("turned 45 deg", 1.0),
                           ("wider PSF", 1.0), ("fainter", 2.0)):
        ratios, levels = [], []
        for s, lin in enumerate(lights):
            new = _changed_light(lin, change, np.random.default_rng(s + 10))
            ratios.append(border_sky(new)[1] / border_sky(lin)[1])
            levels.append(np.median(new[:, :4], axis=(1, 2)) / (factor * border_sky(lin)[1]))
        assert np.mean(ratios) == pytest.approx(factor, rel=0.08), change
        assert abs(np.mean(levels)) < 0.1, change  # the sky's level kept (0 here): no offset beyond the draws' noise
    assert m["fainter"][2] == pytest.approx(size, rel=0.1)  # the galaxy itself as it was
    # as the ingest normalises: the central galaxy's robust peak maps to 1 again
    for change, r in out.items():
        assert np.percentile(r[:, S // 4: 3 * S // 4, S // 4: 3 * S // 4], 99) == pytest.approx(1.0, abs=0.1), change


def test_a_min_max_cube_keeps_its_sky_level():
    """The astrovader preset's rows are min-max scaled, their sky above 0: beyond the frame is that
    sky, and the row keeps its scale (normalised again, the added noise's extremes lifted the sky 2-3
    sigma)."""
    spec = PreprocessSpec(normalise="minmax")
    row = _galaxy(4.0, 2.0, grain=0.9, spec=spec)[None]
    level, noise = np.median(row[0, :, :4], axis=(1, 2)), border_sky(row[0])[1]
    for change in CHANGES:
        new = change_rows(row, change, spec, seed=2)[0]
        assert new.min() >= 0 and new.max() <= 1
        loud = 2.0 if change == "fainter" else 1.0  # its noise doubled
        assert (np.abs(np.median(new[:, :4], axis=(1, 2)) - level) < 0.5 * loud * noise).all(), change


def test_a_sky_of_few_levels_gets_noise_as_the_light_views_give_it():
    """A faint 8-bit sky (MAD 0) is measured as the light views measure it (its border's plain spread):
    made fainter, its noise grows; beyond a shrunk frame is sky with noise, not a flat fill."""
    rows = _few_levels(np.stack([_galaxy(3.0, 1.5, angle=0.3 * i, seed=i) for i in range(4)]))
    for i, lin in enumerate(unstretch(rows, SPEC)):
        assert np.all(border_sky(lin)[1] == 0)
        spread = _ring(lin).std(axis=-1)
        added = _ring(_changed_light(lin, "fainter", np.random.default_rng(i)) - lin).std(axis=-1)
        assert np.all((added > 1.4 * spread) & (added < 2.1 * spread)), added / spread  # sqrt 3 of it
        beyond = _changed_light(lin, "smaller", np.random.default_rng(i))[:, :4].std(axis=(-2, -1))
        assert np.all(beyond > 0.7 * spread), beyond / spread


@pytest.mark.parametrize("upper", [0.04, 0.1, 0.12])  # the sky's upper level: about 21%, 2% and 0.3% of the ring
def test_a_neighbour_in_a_sky_of_few_levels_does_not_set_its_noise(upper):
    """The floor for a MAD-0 sky is the spread of the ring's pixels near the sky's level: a bright
    neighbour of 20 pixels in the ring (3% of it) made the plain spread 23 times the sky's noise, and
    the spread of its middle 90% 60-80 times where the sky's upper level is rare (found by review)."""
    rows = _galaxy(3.0, 1.5)[None]
    few = np.where(np.abs(rows) < 0.15, np.where(rows > upper, 0.08, 0.0), rows).astype(np.float32)
    lin = unstretch(few, SPEC)[0]
    clean = sky_level_noise(lin)[1]
    assert np.all(clean > 0)
    lin[:, 1:3, 20:30] = lin.max()  # a neighbour in the top of the ring
    assert np.all(border_sky(lin)[1] == 0)
    assert np.all(sky_level_noise(lin)[1] < 1.5 * clean), sky_level_noise(lin)[1] / clean


def test_a_frame_half_of_zeros_keeps_most_of_its_sky_s_noise_as_its_floor():
    # a cutout at a survey's edge: more than half its border 0 (MAD 0), the rest a sky of smooth noise
    frame = np.random.default_rng(0).normal(0.0, 1.0, (64, 64))
    frame[:, :40] = 0.0
    assert border_sky(frame)[1] == 0
    assert 0.4 < sky_level_noise(frame)[1] < 1.0


@pytest.mark.parametrize("spec", [SPEC, PreprocessSpec(normalise="minmax")])
def test_a_grey_row_stays_grey_under_every_change(spec):
    """A grey frame in a colour cube (its band repeated, as the ingest writes it): the noise given back
    or added is one in every band, so the changed row is grey too."""
    grey = np.repeat(_galaxy(4.0, 2.0, grain=0.9, spec=spec)[2:], 3, axis=0)
    for change in CHANGES:
        new = change_rows(grey[None], change, spec, seed=3)[0]
        np.testing.assert_array_equal(new, np.broadcast_to(new[:1], new.shape), err_msg=change)
        assert not np.array_equal(new, grey), change


def test_changes_are_seeded_and_an_unknown_one_is_refused():
    row = _galaxy(3.0, 3.0)[None]
    np.testing.assert_array_equal(change_rows(row, "fainter", SPEC, seed=4), change_rows(row, "fainter", SPEC, seed=4))
    assert not np.array_equal(change_rows(row, "fainter", SPEC, seed=4), change_rows(row, "fainter", SPEC, seed=5))
    with pytest.raises(ValueError, match="change must be one of"):
        change_rows(row, "bluer", SPEC)


def test_the_test_scores_the_run_s_own_clusters_reproducibly(form_run, tmp_path, caplog):  # noqa: F811
    import logging
    import shutil

    from morphospace.analysis.labels import clustering_in_cube_order
    from morphospace.config import apply_overrides
    from morphospace.data.sample import sample_rows
    from morphospace.pipeline.stages import _intervention_test
    from morphospace.run import RunDir
    from morphospace.vade.invariance import _clusters, invariance_audit
    from morphospace.vade.io import cluster_groups, fingerprint, load_vade, model_file

    source, cfg, _, _ = form_run
    run = RunDir(shutil.copytree(source.path, tmp_path / "run"))
    table = invariance_audit(run, n=24, seed=3)
    assert list(table["change"]) == list(CHANGES) and (table["n"] == 24).all()
    assert table["changed"].between(0, 1).all() and (table["ari"] <= 1).all()
    control = table.set_index("change").loc["moved 1/2 px"]
    np.testing.assert_allclose(table["excess"], table["changed"] - control["changed"], atol=1e-12)
    assert (table["excess_low"] <= table["excess"] + 1e-12).all() and (table["excess"] <= table["excess_high"] + 1e-12).all()
    saved = pd.read_csv(run.path / "comparisons" / "invariance.csv")
    pd.testing.assert_frame_equal(saved, table, check_dtype=False)
    pd.testing.assert_frame_equal(invariance_audit(run, n=24, seed=3), table)
    # the unchanged galaxies take the path of the run's own: their clusters are the run's
    model, hp, _ = load_vade(model_file(run))
    model.eval()
    groups = cluster_groups(run, model.prior.n_components, made_by=fingerprint(hp, model.state_dict()))
    rows = sample_rows(40, 24, 3)
    before = _clusters(model, hp, groups, np.asarray(run.read_cube()[rows], dtype=np.float32))
    own = clustering_in_cube_order(run, "vade", run.cube_ids())[rows].astype(int)
    np.testing.assert_array_equal(before, own)
    sizes = np.bincount(own) / len(own)
    assert table["chance"].iloc[0] == pytest.approx(1 - (sizes**2).sum())
    # the compare stage's part
    _intervention_test(run, apply_overrides(cfg, ["cluster.invariance_sample=8"]))
    every = pd.read_csv(run.path / "comparisons" / "invariance.csv")
    assert len(every) == len(CHANGES) and (every["n"] == 8).all()
    _intervention_test(run, apply_overrides(cfg, ["cluster.invariance_sample=128"]))  # more than there are: all
    assert (pd.read_csv(run.path / "comparisons" / "invariance.csv")["n"] == 40).all()
    # a test that cannot be made (the record of the merge damaged) is a warning, not a failed stage
    (run.model_dir("vade") / "clusters.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        _intervention_test(run, cfg)
    assert "intervention test skipped" in caplog.text


def test_an_earlier_intervention_table_goes_in_one_place_the_compare_stage(form_run, tmp_path, monkeypatch):  # noqa: F811
    """The compare stage and its test part each removed an earlier table; the stage alone does now,
    before anything it writes. A stale table is gone however the test ends (not asked, failed), and
    one this compare made stays, the test part deleting none it did not make."""
    import shutil

    from morphospace.config import apply_overrides
    from morphospace.pipeline.stages import _intervention_test, stage_compare
    from morphospace.run import RunDir
    from morphospace.vade import invariance

    source, cfg, _, _ = form_run
    run = RunDir(shutil.copytree(source.path, tmp_path / "run"))
    path = run.path / "comparisons" / "invariance.csv"
    sample = {n: apply_overrides(cfg, [f"cluster.invariance_sample={n}"]) for n in (0, 8)}

    def stale() -> None:  # an earlier model's table: 999 galaxies, none of this run's
        path.parent.mkdir(exist_ok=True)
        pd.DataFrame([{"change": c, "what": w, "changed": 0.5, "ari": 0.5, "excess": 0.0, "excess_low": -0.1,
                       "excess_high": 0.1, "chance": 0.6, "n": 999} for c, w in CHANGES.items()]).to_csv(path, index=False)

    stale()
    stage_compare(run, sample[0])  # no test asked
    assert not path.exists()
    stale()
    with monkeypatch.context() as m:  # a test that fails
        m.setattr(invariance, "invariance_audit", lambda *a, **k: 1 / 0)
        stage_compare(run, sample[8])
    assert not path.exists()
    stale()
    stage_compare(run, sample[8])
    assert (pd.read_csv(path)["n"] == 8).all()  # this compare's, kept
    _intervention_test(run, sample[0])  # the test part only writes: the rule is the stage's
    assert (pd.read_csv(path)["n"] == 8).all()


def _view(tmp_path, changed: dict[str, tuple[float, float, float]], chance: float = 0.6):
    """The report's view of a table: per change, its share and the low and high of its excess."""
    from morphospace.report.sections.invariance import invariance_view

    path = tmp_path / "invariance.csv"
    base = changed["moved 1/2 px"][0]
    pd.DataFrame([{"change": c, "what": CHANGES[c], "changed": v, "ari": 1 - v, "excess": v - base, "excess_low": lo,
                   "excess_high": hi, "chance": chance, "n": 100} for c, (v, lo, hi) in changed.items()]).to_csv(path, index=False)
    return invariance_view(SimpleNamespace(contents=SimpleNamespace(comparison=lambda name: path)))


def test_the_report_names_what_the_clusters_are_not_invariant_to(tmp_path):
    follows = _view(tmp_path, {"moved 1/2 px": (0.1, 0, 0), "smaller": (0.35, 0.17, 0.33), "turned 45 deg": (0.12, -0.05, 0.09),
                               "fainter": (0.25, 0.04, 0.26)})
    assert "not invariant to how a galaxy is shown" in follows["verdict"]
    assert "35% when shrunk to 0.7" in follows["verdict"] and "+25 points over the control" in follows["verdict"]
    assert "25% when made 2x fainter" in follows["verdict"] and "95% interval +4 to +26" in follows["verdict"]
    assert "turned" not in follows["verdict"] and "10% when they are only moved" in follows["verdict"]
    assert follows["n"] == 100 and follows["chance"] == 0.6
    # a share twice the control's, but within the sample's noise: not named
    noisy = _view(tmp_path, {"moved 1/2 px": (0.02, 0, 0), "larger": (0.05, -0.01, 0.07)})
    assert noisy["verdict"].startswith("No change is shown to send more of the 100 galaxies to another cluster")
    assert "the highest reaching +7 points" in noisy["verdict"]  # not a claim of invariance
    # one cluster: nothing to change to, nothing said
    assert _view(tmp_path, {"moved 1/2 px": (0.0, 0, 0), "smaller": (0.0, 0, 0)}, chance=0.0)["verdict"] == ""
    # a control that moves as much as half of chance: nothing can be told
    scrambled = _view(tmp_path, {"moved 1/2 px": (0.45, 0, 0), "smaller": (0.7, 0.15, 0.35)}, chance=0.75)
    assert scrambled["verdict"].startswith("Inconclusive: even the control")


def test_the_sky_s_grain_is_not_taken_from_a_neighbour_in_the_border():
    """The grain is read from the border's sky; a star there made it 2 px (noise then under-restored)."""
    from morphospace.data.ingest.sky_noise import sky_grain

    for grain in (0.0, 0.9):
        lin = unstretch(_galaxy(4.0, 2.0, grain=grain, seed=3)[None], SPEC)[0]
        alone = sky_grain(lin)
        rows, cols = np.indices((S, S))
        star = 0.5 * np.exp(-0.5 * ((rows - 2) ** 2 + (cols - 10) ** 2) / 1.2**2)  # in the top strip
        assert sky_grain(lin + star) == pytest.approx(alone, abs=0.15), grain
        assert alone == pytest.approx(grain, abs=0.2)


def _on_floor(light: np.ndarray) -> np.ndarray:
    """The share of each band's border ring (..., C) at the band's lowest light."""
    low = light.min(axis=(-2, -1))[..., None]
    return (_ring(light) <= low + 2.0**-9 * np.abs(low)).mean(-1)


def test_a_sky_clipped_at_black_is_clipped_again_by_every_change():
    """An 8-bit sky near black is clipped there (on sdss-gz1 nearly every row, in some band): the noise
    a change adds or gives back about the sky's level went below that floor, light no frame of the
    survey shows (it would clip it again). Its other bands, unclipped, are as without a floor."""
    row = _galaxy(4.0, 2.0, grain=0.9, clip=-1.0).astype(np.float16)[None]  # the cube is float16
    lin = unstretch(row, SPEC)[0]
    assert _on_floor(lin)[0] > 0.1  # a sixth of the sky's pixels
    for i, change in enumerate(CHANGES):
        new = _changed_light(lin, change, np.random.default_rng(i))
        assert new[0].min() == lin[0].min(), change  # the floor reached, never crossed
        # normalised again, the changed row reads as a sky clipped in its first band and only there
        again = unstretch(change_rows(row, change, SPEC, seed=i), SPEC)[0]
        assert _on_floor(again)[0] > 0.05 and np.all(_on_floor(again)[1:] < 0.01), change
        assert np.isfinite(row_sky(again).floor[0]), change
    sky = row_sky(lin)
    assert sky.floor[0] == lin[0].min() and np.all(np.isinf(sky.floor[1:]))
    for i, change in enumerate(CHANGES):  # the bands without a floor as they came, the one with clipped
        new = _changed_light(lin, change, np.random.default_rng(i))
        unfloored = _changed_light(lin, change, np.random.default_rng(i), sky._replace(floor=np.full(3, -np.inf)))
        assert unfloored[0].min() < sky.floor[0], change
        np.testing.assert_array_equal(new[1:], unfloored[1:], err_msg=change)
        np.testing.assert_array_equal(new[0], np.maximum(unfloored[0], sky.floor[0]), err_msg=change)
    grey = np.repeat(row[:, :1], 3, axis=1)  # a grey row keeps one floor in every band: it stays grey
    for change in CHANGES:
        new = change_rows(grey, change, SPEC, seed=3)[0]
        np.testing.assert_array_equal(new, np.broadcast_to(new[:1], new.shape), err_msg=change)


def test_an_unclipped_sky_has_no_floor_and_its_noise_doubled_goes_below_its_lowest_pixel():
    for grain in (0.0, 0.9):
        lin = unstretch(_galaxy(4.0, 2.0, grain=grain).astype(np.float16)[None], SPEC)[0]
        assert np.all(_on_floor(lin) < 0.01) and np.all(np.isinf(row_sky(lin).floor))
        new = _changed_light(lin, "fainter", np.random.default_rng(0))  # its noise doubled, as it comes
        assert np.all(new.min(axis=(-2, -1)) < lin.min(axis=(-2, -1)))


def test_odd_low_pixels_a_neighbour_or_a_sky_at_its_lowest_level_set_no_floor():
    """Only the sky's own noise, clipped, is a floor: a few galaxy pixels at an odd low value (the
    band's lowest, but none of its ring), a bright neighbour in the ring all at one value, a dark patch
    of the ring far below the sky, and a sky of few levels whose level is its lowest value (no side
    below it) are not."""
    row = _galaxy(4.0, 2.0, grain=0.9)
    lin = unstretch(row[None], SPEC)[0]
    sigma = sky_level_noise(lin)[1][:, None, None]
    odd = lin.copy()
    odd[:, S // 2:S // 2 + 1, S // 2 - 2:S // 2 + 2] = -5.0 * sigma  # in the galaxy, below any sky pixel
    star = lin.copy()
    star[:, 1:3, 10:25] = lin.max()  # 30 pixels, 4% of the ring, at one value
    dark = lin.copy()
    dark[:, 1:3, 10:25] = -6.0 * sigma  # the same patch far below the sky
    for name, light in (("odd", odd), ("star", star), ("dark", dark)):
        assert np.all(np.isinf(row_sky(light).floor)), name
    assert _on_floor(dark).min() > 0.01  # the dark patch has the share: its depth rules it out
    # a bright neighbour in the ring of a clipped sky leaves it its floor
    clipped = unstretch(_galaxy(4.0, 2.0, grain=0.9, clip=-1.0)[None], SPEC)[0]
    clipped[:, 1:3, 10:25] = clipped.max()
    assert np.isfinite(row_sky(clipped).floor[0])
    few = unstretch(_few_levels(row[None]), SPEC)[0]
    assert np.all((_ring(few) == 0).mean(-1) > 0.5) and np.all(np.isinf(row_sky(few).floor))


def test_the_stretch_s_own_clip_is_no_floor_and_filled_pixels_below_a_floor_do_not_hide_it():
    """Two ways the floor was misread. A faint, noisy row piles its sky on the ingest's own clip of the
    stretch (-0.2): normalising again clips there anew, so a floor there would pile the changed sky at
    the old clip's light instead. And a neighbour's mask filled with unclipped sky put a few pixels
    below black inside the frame: taken as the band's lowest, they hid the floor."""
    from morphospace.data.ingest.normalise import STRETCH_LOW

    noisy = _galaxy(4.0, 2.0, noise=0.05).astype(np.float16)[None]
    assert np.all((_ring(noisy[0]) == np.float16(STRETCH_LOW)).mean(-1) > 0.05)  # its sky on the clip
    lin = unstretch(noisy, SPEC)[0]
    assert np.all(np.isfinite(row_sky(lin).floor))  # read as a floor, the clip unknown...
    assert np.all(np.isinf(row_sky(lin, SPEC).floor))  # ...but not with the cube's normalisation
    for change in ("larger", "fainter"):
        again = change_rows(noisy, change, SPEC, seed=1)[0]
        assert np.all(_on_floor(again) > 0.05) and np.all(again.min(axis=(-2, -1)) == np.float32(STRETCH_LOW))
    row = unstretch(_galaxy(4.0, 2.0, grain=0.9, clip=-1.0).astype(np.float16)[None], SPEC)[0]
    floor = row_sky(row, SPEC).floor[0]
    filled = row.copy()
    filled[0, S // 2 - 12:S // 2 - 10, S // 2:S // 2 + 3] = floor - 0.5 * np.abs(floor)  # inside the frame
    assert row_sky(filled, SPEC).floor[0] == floor
    assert _changed_light(filled, "larger", np.random.default_rng(0), row_sky(filled, SPEC))[0].min() == floor
