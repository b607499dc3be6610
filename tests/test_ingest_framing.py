"""Framing by the galaxy's own size (``preprocess.framing = "galaxy"``): apparent size does not reach the cube."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures import galaxy_light, ingest_to, save_image, tiny_galaxy10

from morphospace.config import PreprocessConfig
from morphospace.data.ingest import PreprocessSpec
from morphospace.data.ingest.framing import framing_for, galaxy_crop, galaxy_r90, size_spread, survey_crop
from morphospace.data.ingest.preprocess import preprocess
from morphospace.errors import UserError

SHAPE = {"q": 0.5, "angle": 0.4}  # one galaxy, seen at several distances


def frame(scale: float, size: int = 256, seed: int = 0, peak: float = 200.0, sky: float = 10.0,
          noise: float = 3.0) -> np.ndarray:
    """An 8-bit grey frame of the same disk with scale length ``scale`` px, on a noisy sky."""
    rng = np.random.default_rng(seed)
    light = peak * galaxy_light(size, 0, scale=scale, **SHAPE) + sky + rng.normal(0, noise, (size, size))
    return np.clip(np.round(light), 0, 255).astype(np.uint8)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_r90_follows_the_galaxy_size_and_is_close_to_its_true_value():
    # an exponential disk holds 90% of its light within 3.89 scale lengths (along its major axis
    # for q = 1); the faint outskirts below 3 sigma of the sky are lost, so a little less
    r_small, r_large = galaxy_r90(frame(4.0)), galaxy_r90(frame(10.0))
    assert r_large / r_small == pytest.approx(2.5, rel=0.15)
    assert 0.5 * 3.89 * 10 < r_large < 3.89 * 10
    # the fraction is the same measured on the frame or on a regular sample of it
    big = frame(10.0, size=400)
    assert galaxy_crop(big[::4, ::4], 4.3) == pytest.approx(galaxy_crop(big, 4.3), rel=0.1)


def test_a_neighbour_does_not_inflate_the_galaxy_size():
    alone = frame(6.0).astype(np.float64)
    yy, xx = np.mgrid[:256, :256]
    neighbour = 180 * np.exp(-np.hypot(yy - 128, xx - 158) / 5.0)  # a bright galaxy touching it: without
    # the symmetry its light joined the galaxy's and R90 read 36 px instead of 13
    crowded = np.clip(alone + neighbour, 0, 255).astype(np.uint8)
    assert galaxy_r90(crowded) == pytest.approx(galaxy_r90(alone.astype(np.uint8)), rel=0.1)


def test_no_central_galaxy_gives_none():
    sky = frame(4.0, seed=1) * 0 + np.random.default_rng(1).normal(10, 3, (256, 256)).clip(0, 255).astype(np.uint8)
    assert galaxy_r90(sky) is None
    assert galaxy_r90(np.full((64, 64), 7, dtype=np.uint8)) is None
    off = sky.copy()
    off[20:26, 200:206] = 250  # a star far from the centre
    assert galaxy_crop(off, 4.3) is None


def test_ingest_frames_each_galaxy_by_its_size_so_distance_leaves_the_cube(tmp_path):
    data = tmp_path / "survey"
    for k, scale in enumerate((3.0, 5.0, 9.0)):  # the same galaxy at three distances
        save_image(data / f"g{k}.png", np.repeat(frame(scale, seed=k)[..., None], 3, axis=2))
    fixed = ingest_to(data, tmp_path / "fixed")[2]
    summary, cat, framed, run = ingest_to(data, tmp_path / "framed", preprocess__framing="galaxy")
    assert summary["preprocess"]["framing"] == "galaxy" and summary["preprocess"]["galaxy_r90s"] == 4.3
    assert PreprocessSpec.of_run(run.ingest_summary).framing == "galaxy"  # new images are framed alike
    assert (cat["cube_index"] >= 0).all() and not summary["flags"]
    # framed: the three rows agree up to their noise; fixed crop: the galaxy's size is what differs
    pairs = ((0, 1), (1, 2), (0, 2))
    framed_corr = min(corr(framed[i], framed[j]) for i, j in pairs)
    fixed_corr = min(corr(fixed[i], fixed[j]) for i, j in pairs)
    assert framed_corr > 0.9 and fixed_corr < 0.75
    assert 1 - framed_corr < 0.2 * (1 - fixed_corr)
    # the catalogue says which crop each row was cut with: the galaxy's apparent size
    crops = cat.set_index("id").loc[["g0", "g1", "g2"], "crop"].to_numpy()
    assert crops[2] / crops[0] == pytest.approx(3.0, rel=0.15) and crops[1] / crops[0] == pytest.approx(5 / 3, rel=0.15)
    assert (ingest_to(data, tmp_path / "fixed2")[1]["crop"] == 0.5).all()


def test_a_frame_without_a_central_galaxy_keeps_the_fixed_crop_and_is_flagged(tmp_path):
    data = tmp_path / "survey"
    save_image(data / "galaxy.png", np.repeat(frame(5.0)[..., None], 3, axis=2))
    stars = np.random.default_rng(2).normal(10, 3, (256, 256))
    for r, c in ((30, 40), (200, 60), (60, 210), (220, 220)):
        stars[r - 3:r + 3, c - 3:c + 3] = 250
    save_image(data / "stars.png", np.repeat(stars.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2))
    summary, cat, cube, _ = ingest_to(data, tmp_path / "run", preprocess__framing="galaxy")
    flagged = cat.set_index("id")["flag_unframed"]
    assert flagged["stars"] and not flagged["galaxy"]
    assert summary["flags"]["unframed"]["count"] == 1 and not summary["flags"]["unframed"]["excluded"]
    assert len(cube) == 2
    fixed = ingest_to(data, tmp_path / "fixed")[2]
    row = int(cat.set_index("id").loc["stars", "cube_index"])
    np.testing.assert_array_equal(cube[row], fixed[row])  # the fixed crop, exactly


def test_flux_frames_are_framed_the_same_way():
    rng = np.random.default_rng(3)
    frames = [(1000 * galaxy_light(200, 0, scale=s, **SHAPE) + 100 + rng.normal(0, 5, (200, 200))
               ).astype(np.float32)[..., None] for s in (3.0, 8.0)]
    framed = [preprocess(f, PreprocessSpec(framing="galaxy", channels=1))[0] for f in frames]
    fixed = [preprocess(f, PreprocessSpec(channels=1))[0] for f in frames]
    assert corr(*framed) > 0.9 and corr(*fixed) < 0.75


def test_framing_decodes_jpegs_finely_enough_for_a_small_galaxy():
    assert PreprocessSpec(framing="galaxy").min_side() > PreprocessSpec().min_side()


def test_a_bad_framing_is_a_user_error():
    with pytest.raises(UserError, match="framing"):
        PreprocessSpec.from_config(PreprocessConfig(framing="adaptive"))


def survey_of_sizes(folder, scales) -> None:
    for k, scale in enumerate(scales):
        save_image(folder / f"g{k:02d}.png", np.repeat(frame(scale, size=128, seed=k)[..., None], 3, axis=2))


def test_auto_frames_by_the_galaxy_when_apparent_sizes_spread_widely(tmp_path, caplog):
    survey_of_sizes(tmp_path / "far_and_near", np.geomspace(1.5, 9.0, 24))  # fixed-angle cutouts
    survey_of_sizes(tmp_path / "scaled", np.full(24, 4.0) * np.linspace(0.9, 1.1, 24))  # scaled to each galaxy
    with caplog.at_level("INFO", logger="morphospace"):
        wide = ingest_to(tmp_path / "far_and_near", tmp_path / "r1", preprocess__framing="auto")[0]["preprocess"]
    narrow = ingest_to(tmp_path / "scaled", tmp_path / "r2", preprocess__framing="auto")[0]["preprocess"]
    assert wide["framing"] == "galaxy" and wide["size_spread"] > 3
    assert narrow["framing"] == "fixed" and narrow["size_spread"] < 1.5
    assert "framing auto: galaxy (apparent sizes of 24 sampled galaxies span" in caplog.text


def test_auto_needs_twenty_galaxies_to_leave_the_fixed_crop():
    assert size_spread([0.1, 0.5] * 9) is None and framing_for(None) == "fixed"
    assert framing_for(size_spread([0.1, 0.5] * 10)) == "galaxy"
    assert framing_for(size_spread([0.2] * 20 + [None] * 5)) == "fixed"


def test_auto_crop_frames_the_median_galaxy_on_a_ladder_through_one_half():
    # sdss-gz1's medians over samples of 200 (0.50-0.52) keep the crop its measurements were made with
    assert survey_crop([0.504] * 20) == survey_crop([0.523] * 20 + [None] * 3) == 0.5
    assert survey_crop([0.45, 0.55, 0.52] * 7) == 0.5
    # a survey cut out tighter (the galaxy fills its frame) or wider gets the step nearest its median
    assert survey_crop([0.95] * 20) == 1.0 and survey_crop([1.0] * 20) == 1.0
    assert survey_crop([0.27] * 20) == 0.25 and survey_crop([0.2, 0.3, 0.25, 0.26] * 5) == 0.25
    assert survey_crop([0.66] * 20) == 0.63 and survey_crop([0.36] * 20) == 0.397
    assert survey_crop([0.01] * 20) == 0.05  # never below the smallest crop
    assert survey_crop([0.5] * 19 + [None] * 10) is None  # too few galaxies: the caller keeps 0.5


def test_auto_crop_shows_a_survey_cut_tight_about_its_galaxies_whole(tmp_path, caplog):
    """The fixed 0.5 crop cut away the outer half of every galaxy of a survey whose cutouts a galaxy
    fills; ``crop = "auto"`` (the default) measures that on a sample and widens the crop."""
    survey_of_sizes(tmp_path / "tight", np.full(24, 11.0) * np.linspace(0.9, 1.1, 24))  # R90 a fifth of the side
    with caplog.at_level("INFO", logger="morphospace"):
        summary, cat, cube, run = ingest_to(tmp_path / "tight", tmp_path / "auto")
    pre = summary["preprocess"]
    assert pre["framing"] == "fixed" and pre["crop"] == 0.794 and (cat["crop"] == 0.794).all()
    assert "crop auto: 0.794 (frames the median of 24 sampled galaxies at 4.3 R90)" in caplog.text
    assert PreprocessSpec.of_run(run.ingest_summary).crop == 0.794  # a new image is cut alike
    # the galaxy's light now fades into the row's border instead of running off it
    border = np.concatenate([cube[:, :, :3].ravel(), cube[:, :, -3:].ravel()])
    half = ingest_to(tmp_path / "tight", tmp_path / "half", preprocess__crop=0.5)
    assert half[0]["preprocess"]["crop"] == 0.5  # a crop set is kept
    half_border = np.concatenate([half[2][:, :, :3].ravel(), half[2][:, :, -3:].ravel()])
    assert np.mean(border) < 0.5 * np.mean(half_border)
    assert "wider than their frames" not in caplog.text
    # galaxies wider than their frames: shown whole as far as the frame goes, and said
    survey_of_sizes(tmp_path / "overflowing", np.full(24, 20.0) * np.linspace(0.9, 1.1, 24))
    with caplog.at_level("WARNING", logger="morphospace"):
        assert ingest_to(tmp_path / "overflowing", tmp_path / "over")[0]["preprocess"]["crop"] == 1.0
    assert "24 of 24 sampled galaxies are wider than their frames (4.3 R90 a side)" in caplog.text
    # a survey whose galaxies fill sdss-gz1's share of the frame keeps 0.5; so does one too small to measure
    survey_of_sizes(tmp_path / "like_gz1", np.full(24, 7.0) * np.linspace(0.9, 1.1, 24))
    assert ingest_to(tmp_path / "like_gz1", tmp_path / "gz1")[0]["preprocess"]["crop"] == 0.5
    assert ingest_to(tiny_galaxy10(tmp_path / "tiny.h5"), tmp_path / "tiny")[0]["preprocess"]["crop"] == 0.5


def test_auto_reads_an_hdf5_survey_row_by_row(tmp_path):
    import h5py

    # a Galaxy10-style file of fixed-angle cutouts: the same galaxy far and near
    images = np.stack([np.repeat(frame(s, size=128, seed=k)[..., None], 3, axis=2)
                       for k, s in enumerate(np.geomspace(1.5, 9.0, 24))])
    path = tmp_path / "g10.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(4, 128, 128, 3), compression="gzip")
        f.create_dataset("ans", data=np.arange(24, dtype=np.uint8) % 10)
    summary, cat, _, _ = ingest_to(path, tmp_path / "run", preprocess__framing="auto")
    assert summary["layout"] == "galaxy10" and summary["preprocess"]["framing"] == "galaxy"
    assert summary["preprocess"]["size_spread"] > 3 and summary["n_in_cube"] == 24
    crops = cat.sort_values("cube_index")["crop"].to_numpy()
    # nearer galaxies get wider crops (ties: R90 in whole pixels of the ~100 px sample)
    assert np.all(np.diff(crops) >= 0) and crops[-1] / crops[0] > 4
    # too few galaxies to tell: the fixed crop
    small = ingest_to(tiny_galaxy10(tmp_path / "tiny.h5"), tmp_path / "run2", preprocess__framing="auto")[0]
    assert small["preprocess"]["framing"] == "fixed" and small["preprocess"]["size_spread"] is None


def test_auto_measures_its_sample_on_the_ingest_workers_with_the_same_result(tmp_path):
    from morphospace.data.ingest.layouts import read_survey
    from morphospace.data.ingest.workers import ingest_pool, sampled_crops
    from morphospace.config import DataConfig

    survey_of_sizes(tmp_path / "far_and_near", np.geomspace(1.5, 9.0, 24))
    survey = read_survey(tmp_path / "far_and_near", DataConfig())
    spec = PreprocessSpec(size=32)
    alone = sampled_crops(survey, spec, 20)
    with ingest_pool(2) as pool:
        shared = sampled_crops(survey, spec, 20, pool=pool, parts=2)
    assert len(alone) == 20 and shared == alone
    one = ingest_to(tmp_path / "far_and_near", tmp_path / "r1", preprocess__framing="auto")
    two = ingest_to(tmp_path / "far_and_near", tmp_path / "r2", preprocess__framing="auto",
                    ingest__workers=2, ingest__chunk_size=4)
    assert two[0]["preprocess"]["size_spread"] == one[0]["preprocess"]["size_spread"]
    assert two[0]["preprocess"]["framing"] == "galaxy" and np.array_equal(two[2], one[2])


def test_frames_of_several_sizes_are_recorded_said_and_audited(tmp_path, caplog):
    """Frames of several pixel sizes in one survey were resampled to one size without a word, so
    clusters that followed the frame size (its resolution, its noise) could not be told."""
    from astropy.io import fits

    from morphospace.analysis.nuisance import nuisance_table
    from morphospace.config import Config

    data = tmp_path / "survey"
    for k, side in enumerate((64, 96, 96, 128)):
        save_image(data / f"g{k}.png", np.repeat(frame(side / 16, size=side, seed=k)[..., None], 3, axis=2))
    fits.PrimaryHDU(frame(5.0, size=80, seed=9).astype(np.float32)).writeto(data / "g4.fits")  # the float path too
    with caplog.at_level("INFO", logger="morphospace"):
        summary, cat, _, run = ingest_to(data, tmp_path / "run", preprocess__size=32)
    sides = cat.set_index("id").loc[["g0", "g1", "g2", "g3", "g4"], "frame_px"].tolist()
    assert sides == [64, 96, 96, 128, 80]
    assert summary["frame_sizes"] == {"min": 64, "max": 128, "distinct": 4}
    assert "frames of 4 sizes (64 to 128 px on the shorter side) resampled to 32 px" in caplog.text
    measured = pd.DataFrame({"id": cat["id"], "pa_bin": None, "companion": None, "companion_quadrant": None})
    assert nuisance_table(run, Config(), measured)["frame_px"].tolist() == [64, 96, 96, 128, 80]
    # audited when the user names the nuisance columns too (as the flags: the ingest's own), never a truth
    from morphospace.analysis.labels import check_label_columns, is_label_column, is_nuisance_column
    from morphospace.config import apply_overrides
    from morphospace.errors import UserError

    named = apply_overrides(Config(), ['cluster.nuisance_columns=["crop"]'])
    assert "frame_px" in nuisance_table(run, named, measured).columns
    with pytest.raises(UserError, match="'frame_px' is the ingest's own column"):
        check_label_columns(cat, apply_overrides(Config(), ["data.truth_label=frame_px"]))
    # an earlier export read back as the catalogue: its frame_px (renamed catalogue_frame_px) is no label
    again = cat.assign(catalogue_frame_px=cat["frame_px"], catalogue_crop=[0.5, 0.6] * 2 + [0.5])
    assert not is_label_column(again, "catalogue_frame_px") and not is_label_column(again, "catalogue_crop")
    assert is_nuisance_column("catalogue_frame_px")
    # a JPEG is decoded at a draft scale (a 424 px frame at 53 px for a 32 px cube): its size as stored is
    # recorded, so that a JPEG and a PNG of one size are one size (the draft's was a spurious second)
    for k, ext in ((1, "png"), (2, "jpg")):
        save_image(tmp_path / "alike" / f"g{k}.{ext}", np.repeat(frame(26.0, size=424, seed=k)[..., None], 3, axis=2))
    caplog.clear()
    with caplog.at_level("INFO", logger="morphospace"):
        same = ingest_to(tmp_path / "alike", tmp_path / "one", preprocess__size=32)[0]
    assert same["frame_sizes"] is None and "resampled to" not in caplog.text
    assert ingest_to(tmp_path / "alike", tmp_path / "two", preprocess__size=32)[1]["frame_px"].tolist() == [424, 424]
