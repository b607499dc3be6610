"""The JPEG decode through libjpeg-turbo (simplejpeg) against Pillow's, and the fallback to Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures import galaxy_rgb, save_image
from morphospace.data.ingest import decode as dec
from morphospace.data.ingest.decode import BadImage, decode, draft_scale
from morphospace.data.ingest.preprocess import PreprocessSpec
from morphospace.data.ingest.records import Record
from morphospace.data.ingest.workers import _process_chunk

pytest.importorskip("simplejpeg")


def _frames(path, min_side, monkeypatch):
    """(turbo frame, Pillow frame) of one file, the turbo one asserted to be decoded by turbo."""
    turbo = dec._decode_turbo(str(path), min_side)
    assert turbo is not None
    with monkeypatch.context() as m:
        m.setattr(dec, "simplejpeg", None)
        pillow = decode(Record(id="x", source=str(path)), min_side=min_side)
    return turbo, pillow


def _rows(path, spec, monkeypatch, turbo=True):
    """The cube row and flags of one file by the worker's path, with or without libjpeg-turbo."""
    with monkeypatch.context() as m:
        if not turbo:
            m.setattr(dec, "simplejpeg", None)
        _, block, results = _process_chunk(0, [(str(path), "image", -1)], spec)
    return block.to_array(), results


@pytest.mark.parametrize("side,min_side", [(424, 128), (423, 128), (300, 40), (150, 0), (97, 30)])
def test_turbo_decode_gives_pillows_pixels_at_pillows_draft_scale(tmp_path, monkeypatch, side, min_side):
    path = save_image(tmp_path / "g.jpg", galaxy_rgb(side, seed=side))
    turbo, pillow = _frames(path, min_side, monkeypatch)
    assert turbo.pixels.mode == pillow.pixels.mode == "RGB"
    assert turbo.shape == pillow.shape
    with Image.open(path) as img:  # the scale Pillow's draft mode picks
        if min_side:
            img.draft("RGB", (min_side, min_side))
        assert turbo.shape == (img.size[1], img.size[0])
    np.testing.assert_array_equal(np.asarray(turbo.pixels), np.asarray(pillow.pixels))


def test_grey_and_progressive_jpegs(tmp_path, monkeypatch):
    grey = save_image(tmp_path / "grey.jpg", galaxy_rgb(200, seed=1)[..., 1])
    turbo, pillow = _frames(grey, 64, monkeypatch)
    assert turbo.pixels.mode == pillow.pixels.mode == "L" and turbo.shape == (100, 100)
    np.testing.assert_array_equal(np.asarray(turbo.pixels), np.asarray(pillow.pixels))
    prog = save_image(tmp_path / "prog.jpg", galaxy_rgb(200, seed=2), progressive=True)
    turbo, pillow = _frames(prog, 64, monkeypatch)
    np.testing.assert_array_equal(np.asarray(turbo.pixels), np.asarray(pillow.pixels))
    spec = PreprocessSpec(crop=0.6, size=24)
    for path in (grey, prog):  # grey: one band in every channel of a colour cube
        fast, res_fast = _rows(path, spec, monkeypatch)
        slow, res_slow = _rows(path, spec, monkeypatch, turbo=False)
        assert res_fast == res_slow and fast.shape == (1, 3, 24, 24)
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("crop,size,side", [(0.37, 20, 150), (0.5, 64, 423), (0.81, 33, 131)])
def test_cube_rows_match_the_pillow_path_with_crops_off_the_blocks(tmp_path, monkeypatch, crop, size, side):
    # crops whose edges fall inside 8 x 8 blocks (and 4:2:0 chroma blocks), non-square frames
    img = galaxy_rgb(side + 17, seed=5)[:side, : side + 11]
    path = save_image(tmp_path / "g.jpg", img)
    spec = PreprocessSpec(crop=crop, size=size)
    fast, res_fast = _rows(path, spec, monkeypatch)
    slow, res_slow = _rows(path, spec, monkeypatch, turbo=False)
    assert res_fast == res_slow and res_fast[0][0]
    assert fast.shape == (1, 3, size, size)
    np.testing.assert_array_equal(fast, slow)


def test_orientation_cmyk_and_other_formats_go_through_pillow(tmp_path):
    img = galaxy_rgb(64, seed=3)
    exif = Image.Exif()
    exif[dec.EXIF_ORIENTATION] = 6  # rotated: Pillow's path applies it
    rotated = save_image(tmp_path / "rot.jpg", img, exif=exif.tobytes())
    assert dec._has_app1(rotated.read_bytes()) is True
    assert dec._decode_turbo(str(rotated), 0) is None
    frame = decode(Record(id="x", source=str(rotated)))
    assert frame.shape == (64, 64)
    np.testing.assert_allclose(np.asarray(frame.pixels, dtype=float),
                               np.rot90(np.asarray(Image.open(rotated)), -1), atol=0)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(img).convert("CMYK").save(cmyk)
    assert dec._decode_turbo(str(cmyk), 0) is None
    assert decode(Record(id="x", source=str(cmyk))).pixels.mode == "RGB"
    png_named_jpg = tmp_path / "png.jpg"
    Image.fromarray(img).save(png_named_jpg, format="PNG")
    assert dec._decode_turbo(str(png_named_jpg), 0) is None
    assert decode(Record(id="x", source=str(png_named_jpg))).shape == (64, 64)
    jpeg_named_png = tmp_path / "jpeg.png"
    Image.fromarray(img).save(jpeg_named_png, format="JPEG")
    assert not dec._jpeg_name(str(jpeg_named_png))  # only JPEG names are tried
    assert decode(Record(id="x", source=str(jpeg_named_png))).shape == (64, 64)


def test_damaged_jpegs_are_flagged_as_by_pillow(tmp_path, monkeypatch):
    good = save_image(tmp_path / "good.jpg", galaxy_rgb(128, seed=4)).read_bytes()
    cases = {"trunc.jpg": good[: len(good) // 2], "header.jpg": good[:300],
             "garbage.jpg": good[:200] + bytes(range(256)) * 8, "empty_scan.jpg": good[:good.index(b"\xff\xda")]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert dec._decode_turbo(str(tmp_path / name), 0) is None, name  # turbo declines: Pillow decides
        outcomes = []
        for turbo in (True, False):
            with monkeypatch.context() as m:
                if not turbo:
                    m.setattr(dec, "simplejpeg", None)
                try:
                    outcomes.append(np.asarray(decode(Record(id="x", source=str(tmp_path / name))).pixels))
                except BadImage as exc:
                    outcomes.append((exc.flag, exc.detail))
        assert str(outcomes[0]) == str(outcomes[1]), name
    with pytest.raises(BadImage) as exc:
        decode(Record(id="x", source=str(tmp_path / "trunc.jpg")))
    assert exc.value.flag == "truncated"


def test_without_simplejpeg_pillow_decodes_everything(tmp_path, monkeypatch):
    path = save_image(tmp_path / "g.jpg", galaxy_rgb(256, seed=6))
    calls = []
    real = dec._decode_pillow
    monkeypatch.setattr(dec, "_decode_pillow", lambda *a: calls.append(a) or real(*a))
    decode(Record(id="x", source=str(path)), min_side=64)
    assert calls == []  # turbo decoded it
    monkeypatch.setattr(dec, "simplejpeg", None)
    frame = decode(Record(id="x", source=str(path)), min_side=64)
    assert len(calls) == 1 and frame.shape == (64, 64)


def test_draft_scale_is_pillows():
    for w, h, m in [(423, 423, 128), (424, 300, 64), (1000, 90, 10), (50, 50, 60), (800, 800, 0), (64, 64, 8)]:
        img = Image.new("RGB", (w, h))
        img.save(buf := __import__("io").BytesIO(), format="JPEG")
        with Image.open(buf) as jpg:
            if m:
                jpg.draft("RGB", (m, m))
            s = draft_scale(w, h, m)
            assert jpg.size == (-(-w // s), -(-h // s)), (w, h, m)



def test_a_fits_file_cut_short_is_truncated_and_its_warning_stays_off_the_console(tmp_path, capfd):
    """astropy warns "File may have been truncated", then fails to shape the data: the file was
    flagged unreadable, and the warning (from the band count's sample of the files) reached the
    console under --quiet."""
    from astropy.io import fits

    from morphospace.cli import main

    root = tmp_path / "fits"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        fits.PrimaryHDU(rng.normal(size=(64, 64)).astype(np.float32) + 10 * (i + 1)).writeto(root / f"g{i}.fits")
    full = tmp_path / "whole.fits"
    fits.PrimaryHDU(rng.normal(size=(200, 200)).astype(np.float32)).writeto(full)
    (root / "short.fits").write_bytes(full.read_bytes()[:10000])
    with pytest.raises(BadImage) as err:
        decode(Record(id="short", source=str(root / "short.fits"), kind="fits"))
    assert err.value.flag == "truncated"
    capfd.readouterr()
    assert main(["ingest", str(root), "--out", str(tmp_path / "run"), "--quiet", "--workers", "1"]) == 0
    out, errs = capfd.readouterr()
    assert "truncated" in out + errs and "WARNING" not in out + errs


def test_a_fits_file_that_cannot_be_read_is_unreadable_not_a_non_image(tmp_path, monkeypatch):
    """A FITS file without read permission was flagged "not an image file" (a PermissionError is an
    OSError, which fits.open raises for a text file too); a PNG's is "unreadable"."""
    from astropy.io import fits

    path = tmp_path / "locked.fits"
    fits.PrimaryHDU(np.ones((32, 32), np.float32)).writeto(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(fits, "open", denied)  # chmod 000 does not bite a test run as root
    with pytest.raises(BadImage) as err:
        decode(Record(id="locked", source=str(path), kind="fits"))
    assert err.value.flag == "unreadable" and "Permission denied" in str(err.value)


def test_an_image_under_a_fits_name_is_read_as_what_it_is(tmp_path):
    """A PNG or JPEG named .fits was flagged not_image ("No SIMPLE card found"); a FITS file
    named .png was already read as FITS."""
    rgb = galaxy_rgb(48, seed=3)
    for name, fmt in (("png_as.fits", "PNG"), ("jpeg_as.fit", "JPEG")):
        Image.fromarray(rgb).save(tmp_path / name, format=fmt)
        frame = decode(Record(id=name, source=str(tmp_path / name), kind="fits"))
        assert frame.shape == (48, 48) and frame.display
    (tmp_path / "text.fits").write_text("not a FITS file at all, nor an image")
    with pytest.raises(BadImage) as err:
        decode(Record(id="text", source=str(tmp_path / "text.fits"), kind="fits"))
    assert err.value.flag == "not_image"


@pytest.mark.parametrize("bands", [0, 3])
def test_a_fits_frame_is_read_top_row_first_as_a_viewer_and_pillow_show_it(tmp_path, bands):
    """FITS stores its first row at the bottom (pixel y = 1); the cube holds a frame's top row first,
    as a JPEG does. Read in file order a FITS galaxy was mirrored against the JPEG of it (its
    spiral's winding reversed) and in every figure."""
    from astropy.io import fits

    shown = galaxy_rgb(40, seed=5).astype(np.float32).mean(axis=2)  # as a viewer shows it, top row first
    shown[:6] += 50.0  # a bright top edge: where it ends up says which way is up
    stored = shown[::-1]  # what a FITS writer stores: the bottom row first
    data = stored if not bands else np.stack([stored * (1 + b) for b in range(bands)])
    fits.PrimaryHDU(data).writeto(tmp_path / "g.fits")
    frame = decode(Record(id="g", source=str(tmp_path / "g.fits"), kind="fits")).pixels
    np.testing.assert_allclose(frame[..., -1], shown, rtol=1e-6)  # of a band cube the file's first band is blue
    if not bands:  # Pillow's own FITS reader shows it so too
        with Image.open(tmp_path / "g.fits") as img:
            np.testing.assert_allclose(np.asarray(img, dtype=np.float32), shown, rtol=1e-6)


def test_a_fits_band_cube_shows_its_reddest_of_three_bands_as_red(tmp_path):
    """A survey's band cube holds its bands bluest first (g, r, i; grizy): its first three became
    red, green and blue in that order, the g band shown red, the colours of a JPEG of the same
    galaxy reversed."""
    from astropy.io import fits

    rgb = galaxy_rgb(40, seed=7).astype(np.float32)  # as a JPEG shows it: R from i, G from r, B from g
    g, r, i = rgb[..., 2], rgb[..., 1], rgb[..., 0]
    fits.PrimaryHDU(np.stack([g, r, i, i * 2])[:, ::-1]).writeto(tmp_path / "griz.fits")  # bottom row first
    frame = decode(Record(id="g", source=str(tmp_path / "griz.fits"), kind="fits")).pixels
    np.testing.assert_allclose(frame[..., :3], rgb, rtol=1e-6)
    np.testing.assert_allclose(frame[..., 3], i * 2, rtol=1e-6)  # bands beyond the third keep their order
