"""Ingest preprocessing: crop, size, grey/colour, asinh and min-max, the astrovader preset."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import galaxy_flux, galaxy_rgb, ingest_to, save_image, tiny_fits_folder, tiny_galaxy10
from PIL import Image

from morphospace.config import PreprocessConfig
from morphospace.data.ingest import PreprocessSpec
from morphospace.data.ingest.decode import Frame, decode
from morphospace.data.ingest.normalise import normalise, normalise_levels
from morphospace.data.ingest.pixels import LUMINANCE, crop_box
from morphospace.data.ingest.preprocess import preprocess
from morphospace.data.ingest.records import Record
from morphospace.errors import NotAvailableError, UserError

SHARED = Path(__file__).resolve().parents[2] / "shared"


def rows(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Preprocess one 8-bit RGB array through the Pillow fast path."""
    return preprocess(Frame(Image.fromarray(arr), display=True), spec)[0]


def test_shapes_for_size_and_colour(tmp_path):
    for i in range(3):
        save_image(tmp_path / "data" / f"g{i}.jpg", galaxy_rgb(160, seed=i))
    cases = {(): (3, 3, 64, 64), (("preprocess.size", 128),): (3, 3, 128, 128),
             (("preprocess.colour", "grey"),): (3, 1, 64, 64),
             (("preprocess.colour", "grey"), ("preprocess.size", 128)): (3, 1, 128, 128)}
    for k, (over, shape) in enumerate(cases.items()):
        overrides = {a.replace(".", "__"): b for a, b in over}
        summary, _, cube, _ = ingest_to(tmp_path / "data", tmp_path / f"run{k}", **overrides)
        assert cube.shape == shape, over
        assert summary["cube_shape"] == list(shape)


def test_asinh_default_range_sky_near_zero_galaxy_near_one():
    spec = PreprocessSpec.from_config(PreprocessConfig())
    assert (spec.crop, spec.size, spec.channels, spec.normalise) == (0.5, 64, 3, "asinh")
    for seed in range(3):
        row = rows(galaxy_rgb(192, seed=seed, sky=20.0), spec)
        assert row.dtype == np.float32 and row.min() >= -0.2 and row.max() <= 1.5
        border = np.concatenate([row[:, :4].ravel(), row[:, -4:].ravel()])
        assert abs(np.median(border)) < 0.15  # the sky (20 counts) is subtracted
        centre = row[:, 28:36, 28:36]
        assert 0.6 < np.percentile(centre, 90) < 1.3  # the galaxy's robust peak maps to about 1


def test_minmax_is_exactly_zero_to_one_on_every_path(tmp_path):
    spec = PreprocessSpec(normalise="minmax")
    for seed in range(3):
        for path_spec in (spec, PreprocessSpec(normalise="minmax", exact=True)):
            row = rows(galaxy_rgb(128, seed=seed), path_spec)
            assert row.min() == 0.0 and row.max() == 1.0
    flux = preprocess(galaxy_flux(64, bands=3).transpose(1, 2, 0).copy(), spec)[0]
    assert flux.min() == 0.0 and flux.max() == 1.0
    from astropy.io import fits

    (tmp_path / "f").mkdir()
    fits.PrimaryHDU(galaxy_flux(64)).writeto(tmp_path / "f" / "a.fits")
    _, _, cube, _ = ingest_to(tmp_path / "f", tmp_path / "run", preprocess__normalise="minmax")
    assert cube.min() == 0.0 and cube.max() == 1.0


@pytest.mark.parametrize("exact", [False, True])
def test_grey_uses_astrovader_luminance_weights(exact):
    np.testing.assert_allclose(LUMINANCE, [0.2125, 0.7154, 0.0721])
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :16, 0] = 255  # red band
    img[:, 16:32, 1] = 255  # green band
    img[:, 32:48, 2] = 255  # blue band; the last quarter stays black
    img[:2, 48:] = 37  # a little structure in the black part, so the frame is not flat
    spec = PreprocessSpec(crop=1.0, size=64, channels=1, normalise="minmax", exact=exact)
    row = rows(img, spec)[0]
    # min-max divides by the brightest (green) region: red and blue keep the weight ratios
    assert row[10, 8] == pytest.approx(0.2125 / 0.7154, abs=1e-3 if exact else 6e-3)
    assert row[10, 24] == pytest.approx(1.0)
    assert row[10, 40] == pytest.approx(0.0721 / 0.7154, abs=1e-3 if exact else 6e-3)
    assert row[10, 56] == pytest.approx(0.0, abs=1e-6)


def test_crop_fraction_keeps_the_centre():
    img = galaxy_rgb(128, seed=2)
    img[:4] = img[-4:] = img[:, :4] = img[:, -4:] = 255  # a bright frame edge (thinner than the sky ring)
    whole = rows(img, PreprocessSpec(crop=1.0, normalise="minmax"))
    half = rows(img, PreprocessSpec(crop=0.5, normalise="minmax"))
    assert whole[:, :2].mean() > 0.9  # the edge is in the uncropped frame
    assert half[:, :2].mean() < 0.3  # and not in the central half
    assert crop_box(128, 128, 0.5) == (32, 32, 96, 96)
    assert crop_box(100, 200, 0.75) == (62, 12, 137, 87)  # a square on the shorter side, centred


def test_bright_star_near_the_edge_squashes_minmax_not_asinh():
    # A faint galaxy, and the same frame with a saturated star inside the crop but off the centre.
    kw = dict(size=192, seed=1, peak=100.0, q=0.7, angle=0.3)
    clean, starred = galaxy_rgb(**kw), galaxy_rgb(star=(58, 62), **kw)
    centre = (slice(None), slice(24, 40), slice(24, 40))
    asinh = PreprocessSpec()
    a0, a1 = rows(clean, asinh), rows(starred, asinh)
    assert a1.max() > 1.0  # the star is in the crop, and bright
    assert np.abs(a1[centre] - a0[centre]).max() < 0.02  # the galaxy's stretch did not move
    minmax = PreprocessSpec(normalise="minmax")
    m0, m1 = rows(clean, minmax), rows(starred, minmax)
    assert m1[centre].mean() < 0.7 * m0[centre].mean()  # min-max squashes the galaxy


def test_lookup_table_normalisation_equals_float_normalisation():
    rng = np.random.default_rng(0)
    for norm in ("asinh", "minmax"):
        spec = PreprocessSpec(normalise=norm)
        a = np.clip(rng.normal(30, 20, (64, 64, 3)) + 150 * np.exp(-np.hypot(*np.mgrid[-32:32, -32:32]) / 6)[..., None],
                    0, 255).astype(np.uint8)
        sky = np.array([0.1, 0.12, 0.09], np.float32)
        lut = normalise_levels(a, spec, sky, 3)
        flt = normalise(a.astype(np.float32) / 255, spec, sky).transpose(2, 0, 1)
        np.testing.assert_allclose(lut, flt, atol=2e-6)


def test_fast_8bit_path_matches_the_float_path():
    for seed in range(3):
        img = galaxy_rgb(192, seed=seed)
        fast, exact = rows(img, PreprocessSpec()), rows(img, PreprocessSpec(exact=True))
        diff = np.abs(fast - exact)
        assert diff.max() < 0.05 and diff.mean() < 0.01  # 8-bit rounding of the resize only


def test_jpeg_draft_decodes_at_reduced_scale_without_changing_the_result(tmp_path):
    path = save_image(tmp_path / "big.jpg", galaxy_rgb(424, seed=3))
    spec = PreprocessSpec()
    assert spec.min_side() == 128
    drafted = decode(Record(id="x", source=str(path)), min_side=spec.min_side())
    full = decode(Record(id="x", source=str(path)), min_side=0)
    assert drafted.shape == (212, 212) and full.shape == (424, 424)
    a, b = preprocess(drafted, spec)[0], preprocess(full, spec)[0]
    assert np.abs(a - b).mean() < 0.02


def test_astrovader_preset_is_the_published_recipe(tmp_path):
    spec = PreprocessSpec.from_config(PreprocessConfig(preset="astrovader"))
    assert (spec.crop, spec.size, spec.channels, spec.normalise) == (0.75, 128, 1, "minmax")
    assert spec.resample == "bilinear" and spec.exact and spec.min_side() == 0
    # a key set to a non-default value is kept (e.g. another survey's framing)
    assert PreprocessSpec.from_config(PreprocessConfig(preset="astrovader", crop=0.45)).crop == 0.45
    # 256 x 256 cutouts: central 192, grey, bilinear to 128, min-max, as written out by hand
    img = galaxy_rgb(256, seed=4)
    save_image(tmp_path / "data" / "a.png", img)
    _, _, cube, _ = ingest_to(tmp_path / "data", tmp_path / "run", preprocess__preset="astrovader",
                              ingest__cube_dtype="float32")
    grey = (img[32:224, 32:224].astype(np.float32) / 255) @ LUMINANCE
    ref = np.asarray(Image.fromarray(grey, mode="F").resize((128, 128), Image.Resampling.BILINEAR))
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert cube.shape == (1, 1, 128, 128)
    np.testing.assert_allclose(cube[0, 0], ref, atol=1e-5)
    assert cube.min() == 0.0 and cube.max() == 1.0
    # the default float16 cube: the same to float16's precision (2^-11 of a value below 1)
    _, _, half, _ = ingest_to(tmp_path / "data", tmp_path / "run16", preprocess__preset="astrovader")
    assert half.dtype == np.float16 and half.min() == 0.0 and half.max() == 1.0
    np.testing.assert_allclose(half[0, 0], ref, atol=2.0 ** -11)


def test_a_key_set_to_its_default_value_is_kept_under_the_preset_and_saved_as_used(tmp_path):
    """`ingest --preset astrovader --size 64` (or `--set preprocess.size=64` before it) is a 64 px
    cube, though 64 is also the default; the run's config.toml says what the cube was made with."""
    from morphospace.cli import main
    from morphospace.config import load_config

    save_image(tmp_path / "data" / "a.png", galaxy_rgb(256, seed=4))
    for extra in (["--size", "64", "--colour", "rgb"], ["--set", "preprocess.size=64", "--set", "preprocess.colour=rgb"]):
        run = tmp_path / f"run{len(extra[0])}"
        assert main(["ingest", str(tmp_path / "data"), "--out", str(run), "--preset", "astrovader", *extra,
                     "--quiet"]) == 0
        cube = np.load(run / "cube.npy", mmap_mode="r")
        saved = load_config(run / "config.toml").preprocess
        assert cube.shape == (1, 3, 64, 64)
        assert (saved.size, saved.colour, saved.crop, saved.normalise) == (64, "rgb", 0.75, "minmax")
    assert main(["ingest", str(tmp_path / "data"), "--out", str(tmp_path / "plain"), "--preset", "astrovader",
                 "--quiet"]) == 0
    assert load_config(tmp_path / "plain" / "config.toml").preprocess.size == 128
    assert np.load(tmp_path / "plain" / "cube.npy", mmap_mode="r").shape == (1, 1, 128, 128)


def test_astrovader_preset_reproduces_the_published_reference_inputs():
    ref_path = SHARED / "peers" / "astrovader" / "reference.npz"
    images = SHARED / "data" / "sdss-gz1" / "images"
    if not ref_path.is_file() or not images.is_dir():
        pytest.skip(f"reference inputs not available ({ref_path})")
    ref = np.load(ref_path)
    # the reference crops 45 % of the sdss-gz1 frames (their framing is wider than GZ2's)
    spec = PreprocessSpec.from_config(PreprocessConfig(preset="astrovader", crop=0.45))
    for objid, x in zip(ref["objid"], ref["x"]):
        frame = decode(Record(id=str(objid), source=str(images / f"{objid}.jpeg")), min_side=spec.min_side())
        row = preprocess(frame, spec)[0]
        np.testing.assert_allclose(row[0], x, atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("crop", 0.0, "crop"), ("size", 4, "size"), ("colour", "cmyk", "colour"), ("normalise", "log", "normalise"),
    ("preset", "hubble", "preset"), ("asinh_softening", 0.0, "softening")])
def test_bad_preprocess_settings_are_user_errors(key, value, match):
    with pytest.raises(UserError, match=match):
        PreprocessSpec.from_config(PreprocessConfig(**{key: value}))


def test_a_missing_package_stops_the_ingest_in_one_line_instead_of_flagging_every_image(tmp_path, monkeypatch):
    """The astrovader preset's min-max interval is astropy's: without astropy every image used to be
    flagged 'unreadable' and the run failed on 'no usable galaxy', the cause hidden in the flags."""
    h5 = tiny_galaxy10(tmp_path / "g10.h5", n=4)
    monkeypatch.setitem(sys.modules, "astropy.visualization", None)  # as if astropy were not installed
    with pytest.raises(NotAvailableError, match="package 'astropy'"):
        ingest_to(h5, tmp_path / "run", preprocess__preset="astrovader")
    assert not (tmp_path / "run" / "cube.npy").exists()
    monkeypatch.delitem(sys.modules, "astropy.visualization")
    summary, _, cube, _ = ingest_to(h5, tmp_path / "run2", preprocess__preset="astrovader")
    assert cube.shape[0] == 4 and not summary["flags"]


def test_the_command_line_names_a_missing_package_in_one_line(tmp_path, monkeypatch, capsys):
    from morphospace.cli import main

    fits_dir = tiny_fits_folder(tmp_path / "fits", n=2)
    monkeypatch.setitem(sys.modules, "astropy.io", None)  # FITS reading needs astropy
    assert main(["ingest", str(fits_dir), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "package 'astropy' is not installed" in err and "Traceback" not in err


def test_a_fits_file_under_an_image_name_is_read_as_fits(tmp_path):
    """Pillow opens FITS too, but keeps neither its bands nor its header's sky: under a .png name
    the file is read by astropy like any FITS cutout."""
    from astropy.io import fits

    data = galaxy_flux(48, seed=3)
    data[:8] += 5.0  # the first rows of the file bright: where they end up says which way is up
    fits.PrimaryHDU(data).writeto(tmp_path / "g.fits")
    (tmp_path / "g.png").write_bytes((tmp_path / "g.fits").read_bytes())
    as_fits = decode(Record(id="g", source=str(tmp_path / "g.fits"), kind="fits"))
    as_png = decode(Record(id="g", source=str(tmp_path / "g.png"), kind="image"))
    assert isinstance(as_png.pixels, np.ndarray) and not as_png.display
    np.testing.assert_array_equal(as_png.pixels, as_fits.pixels)


@pytest.mark.parametrize("size, refused", [(17, True), (32, False)])
def test_an_ingest_says_when_the_model_cannot_take_its_cube(tmp_path, tiny_folder_survey, capsys, size, refused):
    """A 17 px cube was ingested without a word, and only `train` refused it (a multiple of 16)."""
    from morphospace.cli import main

    assert main(["ingest", str(tiny_folder_survey), "--out", str(tmp_path / "run"), "--size", str(size)]) == 0
    err = capsys.readouterr().err
    said = "must be a multiple of 16 px for model.preset 'form': `morphospace train` refuses this cube" in err
    assert said == refused, err
    assert (tmp_path / "run" / "cube.npy").is_file()
