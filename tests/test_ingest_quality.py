"""Ingest quality control: bad input is flagged, reported and never lost; --strict; CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import error_page, galaxy_flux, galaxy_rgb, ingest_to, save_image, write_csv
from PIL import Image

from morphospace.cli import main
from morphospace.data.ingest import EXCLUDING, FLAG_DESCRIPTIONS
from morphospace.errors import UserError

# id -> the flags it must raise (an id listed twice in the catalogue is checked row by row below)
EXPECTED = {
    "trunc": {"truncated"}, "empty": {"empty_file"}, "corrupt": {"unreadable"}, "link": {"unreadable"},
    "html": {"not_image"}, "rand": {"not_image"}, "black": {"blank"}, "flatgrey": {"blank"},
    "white_page": {"not_galaxy"}, "white_page_jpg": {"not_galaxy"}, "grey_page": {"not_galaxy"},
    "grey_page_white": {"not_galaxy"}, "black_page": {"not_galaxy"}, "tiny": {"too_small"},
    "ghost": {"missing_image"}, "extra": {"no_catalogue_row"},
}
GOOD = ["g0", "g1", "g2", "g3", "extra"]


def messy_survey(root: Path) -> Path:
    """A folder survey with every kind of bad input, beside five good galaxies."""
    img = root / "images"
    for i in range(4):
        save_image(img / f"g{i}.{'jpg' if i % 2 else 'png'}", galaxy_rgb(96, seed=i))
    save_image(img / "extra.png", galaxy_rgb(96, seed=9))  # an image without a catalogue row
    good_jpg = (img / "g1.jpg").read_bytes()
    (img / "trunc.jpg").write_bytes(good_jpg[: len(good_jpg) // 2])
    (img / "empty.png").write_bytes(b"")
    png = bytearray((img / "g0.png").read_bytes())
    png[200:260] = bytes(60)
    (img / "corrupt.png").write_bytes(bytes(png))
    os.symlink(img / "gone.jpg", img / "link.jpg")  # a dangling link
    (img / "html.jpg").write_text("<html><body><h1>503 Service Unavailable</h1></body></html>")
    (img / "rand.dat").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    save_image(img / "black.png", np.zeros((96, 96, 3), np.uint8))
    grey = np.clip(128 + np.random.default_rng(1).normal(0, 1.5, (96, 96, 3)), 0, 255).astype(np.uint8)
    save_image(img / "flatgrey.jpg", grey)
    save_image(img / "white_page.png", error_page(96, 255, 0))
    save_image(img / "white_page_jpg.jpg", error_page(128, 255, 0))
    save_image(img / "grey_page.jpg", error_page(96, 128, 0))
    save_image(img / "grey_page_white.png", error_page(96, 128, 255))
    save_image(img / "black_page.png", error_page(96, 0, 255))
    save_image(img / "tiny.png", galaxy_rgb(4))
    save_image(img / "g3.tif", galaxy_rgb(96, seed=3))  # same stem as g3.png, in no row
    names = {p.name for p in img.iterdir()} - {"extra.png", "g3.tif"}
    rows = [[n.split(".")[0], f"images/{n}", "e"] for n in sorted(names)]
    rows.insert(2, ["g1", "images/g1.jpg", "repeat"])  # the same id twice
    rows.append(["ghost", "images/ghost.jpg", "s"])  # a row without an image
    write_csv(root / "catalogue.csv", ["id", "file", "morphology"], rows)
    return root


@pytest.fixture
def messy(tmp_path):
    """:func:`messy_survey` in a fresh folder."""
    return messy_survey(tmp_path / "messy")


def flagged(cat, flag: str) -> list[str]:
    """The ids raising ``flag`` in catalogue ``cat``, sorted."""
    return sorted(cat.loc[cat[f"flag_{flag}"], "id"])


def test_every_bad_input_is_flagged_reported_and_the_good_ones_ingested(messy, tmp_path):
    summary, cat, cube, run = ingest_to(messy, tmp_path / "run", ingest__workers=2, ingest__chunk_size=4)
    # never lost: one catalogue row per catalogue row and per file
    n_files = len(os.listdir(messy / "images"))
    assert len(cat) == summary["n_records"] == n_files + 2  # + the repeated row and the ghost row
    for gid, flags in {**EXPECTED, "g0": set(), "g2": set()}.items():
        raised = {f for f in FLAG_DESCRIPTIONS if cat.loc[cat["id"] == gid, f"flag_{f}"].any()}
        assert raised == flags, (gid, raised)
    # the repeated id: the first row is kept, the second flagged; the stray g3.tif is both
    g1 = cat[cat["id"] == "g1"]
    assert list(g1["flag_duplicate_id"]) == [False, True] and list(g1["cube_index"] >= 0) == [True, False]
    g3 = cat[cat["id"] == "g3"]
    assert list(g3["flag_duplicate_id"]) == [False, True] and g3["source"].iloc[1].endswith("g3.tif")
    assert g3["flag_no_catalogue_row"].iloc[1]
    # the good galaxies (and the image without a row) carry on into the cube, in order
    inside = cat[cat["cube_index"] >= 0].sort_values("cube_index")
    assert sorted(inside["id"]) == sorted(GOOD) and cube.shape == (5, 3, 64, 64)
    assert list(run.cube_ids()) == list(inside["id"])
    assert np.isfinite(cube).all()
    # excluding flags keep a galaxy out of the cube; warnings do not
    for flag in FLAG_DESCRIPTIONS:
        hit = cat[f"flag_{flag}"] & ~cat["flag_duplicate_id"]
        if hit.any():
            assert ((cat.loc[hit, "cube_index"] < 0).all()) == (flag in EXCLUDING), flag
    # one summary line per raised flag: count, meaning, examples, what was wrong
    for flag in set().union(*EXPECTED.values()) | {"duplicate_id"}:
        info = summary["flags"][flag]
        assert info["count"] == int(cat[f"flag_{flag}"].sum()) and info["meaning"] == FLAG_DESCRIPTIONS[flag]
        assert set(info["examples"]) <= set(cat.loc[cat[f"flag_{flag}"], "id"]) and info["examples"]
        assert info["excluded"] == (flag in EXCLUDING)
    assert "truncated" in summary["flags"]["truncated"]["details"]["trunc"]
    assert summary["n_in_cube"] == 5 and summary["n_flagged"] == int(cat.filter(like="flag_").any(axis=1).sum())
    assert not list(run.path.glob("*.partial")) and not list(run.path.glob(".*.partial"))


def test_strict_turns_flags_into_one_line_errors_and_writes_nothing(messy, tmp_path):
    with pytest.raises(UserError) as exc:
        ingest_to(messy, tmp_path / "run", strict=True)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("--strict:")
    assert "missing_image" in msg and "duplicate_id" in msg  # catalogue problems: found before decoding
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "log.txt"]
    # pixel problems only: strict finishes the pass, then fails listing them
    clean = tmp_path / "pix"
    save_image(clean / "a.png", galaxy_rgb(64))
    save_image(clean / "b.png", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(UserError, match=r"--strict: 1 image problem\(s\): 1 blank \(e.g. b\)"):
        ingest_to(clean, tmp_path / "run2", ingest__strict=True)
    assert not list((tmp_path / "run2").iterdir())


def test_duplicate_file_stems_without_a_catalogue_are_both_kept(tmp_path):
    save_image(tmp_path / "d" / "a.png", galaxy_rgb(48, seed=1))
    save_image(tmp_path / "d" / "a.jpg", galaxy_rgb(48, seed=2))
    save_image(tmp_path / "d" / "b.png", galaxy_rgb(48, seed=3))
    summary, cat, cube, _ = ingest_to(tmp_path / "d", tmp_path / "run")
    assert list(cat["id"]) == ["a", "a", "b"]
    assert list(cat["flag_duplicate_id"]) == [False, True, False]
    assert cube.shape[0] == 2 and summary["flags"]["duplicate_id"]["count"] == 1


def test_file_stem_ids_are_stripped_as_catalogue_ids_are(tmp_path):
    """A folder survey's " lead.png" was id " lead": the tags and labels files, whose ids are stripped
    as they are read, could not name it ("not in the cube")."""
    save_image(tmp_path / "d" / " lead.png", galaxy_rgb(48, seed=1))
    save_image(tmp_path / "d" / "b .png", galaxy_rgb(48, seed=2))
    save_image(tmp_path / "d" / "c.png", galaxy_rgb(48, seed=3))
    _, cat, cube, _ = ingest_to(tmp_path / "d", tmp_path / "run")
    assert sorted(cat["id"]) == ["b", "c", "lead"] and cube.shape[0] == 3
    # two files that strip to one id: the one already named so keeps it, the other is the duplicate
    save_image(tmp_path / "e" / " g1.png", galaxy_rgb(48, seed=4))
    save_image(tmp_path / "e" / "g1.png", galaxy_rgb(48, seed=5))
    _, cat, _, _ = ingest_to(tmp_path / "e", tmp_path / "run2")
    kept = cat.loc[~cat["flag_duplicate_id"], "source"].tolist()
    assert len(cat) == 2 and [Path(p).name for p in kept] == ["g1.png"]
    # no clash from stripping: the names' order, whatever else repeats (a.fits beside a.png)
    from morphospace.data.ingest.files import list_files

    for name in ("a.png", "a-1.png", "a_b.png", "a.fits"):
        (tmp_path / "f").mkdir(exist_ok=True)
        (tmp_path / "f" / name).write_bytes(b"")
    assert [name for _, name in list_files(tmp_path / "f", skip_companions=False)] == sorted(["a.png", "a-1.png", "a_b.png", "a.fits"])


def test_a_catalogue_row_without_id_or_naming_a_used_image_is_flagged(tmp_path, caplog):
    """An empty id cannot be looked up, and two rows naming one image would put one galaxy in the
    cube twice (its own nearest neighbour at distance 0): both flagged and left out, not silent."""
    root = tmp_path / "c"
    for i in range(3):
        save_image(root / "images" / f"g{i}.png", galaxy_rgb(48, seed=i))
    write_csv(root / "catalogue.csv", ["id", "file", "mag"],
              [["a", "images/g0.png", 17], ["", "images/g1.png", 18], ["b", "images/g2.png", 19],
               ["c", "images/g2.png", 20]])
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert list(cat["flag_missing_id"]) == [False, True, False, False]
    assert list(cat["flag_duplicate_file"]) == [False, False, False, True]
    assert cube.shape[0] == 2 and list(cat.loc[cat["cube_index"] >= 0, "id"]) == ["a", "b"]
    assert summary["flags"]["missing_id"]["count"] == 1 and summary["flags"]["duplicate_file"]["excluded"]
    assert summary["flags"]["missing_id"]["examples"] == [""]  # the report finds the row by it
    import logging

    from morphospace.data.ingest.catalogue import log_summary

    with caplog.at_level(logging.WARNING, logger="morphospace"):
        log_summary(summary)
    assert "e.g. (a row without an id)" in caplog.text  # an empty example before


def test_a_file_named_by_an_absolute_path_or_a_link_is_one_galaxy(tmp_path):
    """A catalogue's file column may name the folder's images by absolute paths or through "../":
    each is the image of its row, not read a second time as a galaxy without a row; a link to an
    image beside it is the same galaxy twice, flagged."""
    root = tmp_path / "c"
    for i in range(3):
        save_image(root / f"g{i}.png", galaxy_rgb(48, seed=i))
    write_csv(root / "catalogue.csv", ["id", "file", "mag"],
              [["a", str((root / "g0.png").resolve()), 17], ["b", "../c/g1.png", 18], ["c", "g2.png", 19]])
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert list(cat["id"]) == ["a", "b", "c"] and cube.shape[0] == 3
    assert not cat.filter(like="flag_").to_numpy().any()
    (root / "g3.png").symlink_to(root / "g1.png")  # one image under two names
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run2")
    assert list(cat["id"]) == ["a", "b", "c", "g3"] and list(cat["flag_duplicate_file"]) == [False, False, False, True]
    assert cube.shape[0] == 3 and summary["flags"]["duplicate_file"]["count"] == 1


def test_nan_and_inf_pixels_are_repaired_and_flagged(tmp_path):
    from astropy.io import fits

    root = tmp_path / "fits"
    root.mkdir()
    ok = galaxy_flux(64, seed=0)
    holes = galaxy_flux(64, seed=1)
    holes[5:9, 5:30] = np.nan
    holes[50, 50] = np.inf
    holes[51, 51] = -np.inf
    mostly_nan = galaxy_flux(64, seed=2)
    mostly_nan[:40] = np.nan
    cube3 = galaxy_flux(64, seed=3, bands=3)
    cube3[1, 10:12, 10:12] = np.nan
    for name, data in (("ok", ok), ("holes", holes), ("mostly_nan", mostly_nan)):
        fits.PrimaryHDU(data).writeto(root / f"{name}.fits")
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    row = dict(zip(cat["id"], cat.index))
    assert cat.loc[row["holes"], "flag_nonfinite"] and cat.loc[row["holes"], "cube_index"] >= 0
    assert cat.loc[row["mostly_nan"], "flag_blank"] and cat.loc[row["mostly_nan"], "flag_nonfinite"]
    assert cat.loc[row["mostly_nan"], "cube_index"] == -1
    assert not cat.loc[row["ok"], "flag_nonfinite"]
    assert np.isfinite(cube).all() and summary["flags"]["nonfinite"]["count"] == 2
    assert not summary["flags"]["nonfinite"]["excluded"]
    # a band cube with a NaN in one band
    root3 = tmp_path / "fits3"
    root3.mkdir()
    fits.PrimaryHDU(cube3).writeto(root3 / "c.fits")
    fits.PrimaryHDU(galaxy_flux(64, seed=4, bands=3)).writeto(root3 / "d.fits")
    no_z = galaxy_flux(64, seed=5, bands=3)
    no_z[2] = np.nan  # one band missing whole, as at a survey's coverage edge in one filter: was "100% NaN", blank
    fits.PrimaryHDU(no_z).writeto(root3 / "e.fits")
    _, cat3, c3, _ = ingest_to(root3, tmp_path / "run3")
    assert list(cat3["flag_nonfinite"]) == [True, False, True] and not cat3["flag_blank"].any()
    assert c3.shape == (3, 3, 64, 64) and np.isfinite(c3).all() and c3[2, :2].std() > 0


def test_flat_fits_frames(tmp_path):
    from astropy.io import fits

    root = tmp_path / "f"
    root.mkdir()
    fits.PrimaryHDU(np.full((64, 64), 100.0, np.float32)).writeto(root / "constant.fits")
    padded = galaxy_flux(64)
    padded[:, :40] = 0.0  # most of the cutout outside the survey footprint, zero-filled
    fits.PrimaryHDU(padded).writeto(root / "padded.fits")
    fits.PrimaryHDU(galaxy_flux(64, seed=5)).writeto(root / "good.fits")
    (root / "notfits.fits").write_text("SIMPLE  = this is not FITS")
    _, cat, cube, _ = ingest_to(root, tmp_path / "run")
    flags = {gid: {f for f in FLAG_DESCRIPTIONS if cat.loc[i, f"flag_{f}"]} for i, gid in enumerate(cat["id"])}
    assert flags == {"constant": {"blank"}, "padded": {"not_galaxy"}, "good": set(), "notfits": {"not_image"}}
    assert cube.shape[0] == 1


def test_every_image_flagged_is_a_user_error(tmp_path):
    save_image(tmp_path / "d" / "a.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="no usable galaxy.*1 blank"):
        ingest_to(tmp_path / "d", tmp_path / "run")


# --- the command line ----------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "morphospace", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_cli_strict_exit_2_one_line(messy, tmp_path):
    r = _cli("ingest", str(messy), "--out", str(tmp_path / "run"), "--strict", "--quiet")
    assert r.returncode == 2
    assert _one_line(r.stderr).startswith("morphospace: error: --strict:")
    assert not (tmp_path / "run" / "cube.npy").exists() and not (tmp_path / "run" / "catalogue.parquet").exists()


def test_cli_user_mistakes_exit_2_one_line(tmp_path, capsys):
    cases = []
    cases.append((["ingest", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r1")], "data not found"))
    (tmp_path / "table.csv").write_text("id,x\n1,2\n")
    cases.append((["ingest", str(tmp_path / "table.csv"), "--out", str(tmp_path / "r2")], "known layouts"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("hello")
    cases.append((["ingest", str(tmp_path / "docs"), "--out", str(tmp_path / "r3")], "no known survey layout"))
    good = tmp_path / "good"
    save_image(good / "a.png", galaxy_rgb(48))
    cases.append((["ingest", str(good), "--out", str(tmp_path / "r4"), "--set", "ingest.workerz=2"],
                  "unknown key 'ingest.workerz'"))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[preprocess]\nsise = 64\n")
    cases.append((["ingest", str(good), "--out", str(tmp_path / "r5"), "--config", str(cfg)],
                  "unknown key 'preprocess.sise'"))
    cases.append((["ingest", str(good), "--out", str(tmp_path / "r6"), "--catalogue", str(tmp_path / "no.csv")],
                  "catalogue not found"))
    cases.append((["ingest", str(good), "--out", str(tmp_path / "r7"), "--layout", "kaggle-gz2"],
                  "training_solutions_rev1.csv"))
    for argv, words in cases:
        code = main([*argv, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, argv
        line = _one_line(err)
        assert line.startswith("morphospace: error:") and words in line, (argv, line)


def test_cli_reports_flags_and_carries_on(messy, tmp_path, capsys):
    assert main(["ingest", str(messy), "--out", str(tmp_path / "run"), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "ingested 5 of" in out
    for flag in ("truncated", "empty_file", "not_image", "blank", "not_galaxy", "duplicate_id", "missing_image"):
        assert f"flagged {flag}" in err


def test_no_real_galaxy_is_flagged(sdss_gz1_path, tmp_path):
    """The whole sdss-gz1 set (3,359 real SDSS frames): nothing is blank or not a galaxy."""
    summary, cat, cube, _ = ingest_to(sdss_gz1_path, tmp_path / "run", ingest__workers=2)
    assert summary["n_records"] == 3359 and summary["n_in_cube"] == 3359, summary["flags"]
    assert not cat["flag_blank"].any() and not cat["flag_not_galaxy"].any()
    assert cube.shape == (3359, 3, 64, 64) and np.isfinite(cube).all()
    # a real frame rendered as a service page would be caught by the same checks
    page = Image.fromarray(error_page(423, 255, 0)).convert("RGB")
    from morphospace.data.ingest.decode import BadImage, Frame
    from morphospace.data.ingest.preprocess import PreprocessSpec, preprocess

    with pytest.raises(BadImage) as exc:
        preprocess(Frame(page, display=True), PreprocessSpec())
    assert exc.value.flag in ("not_galaxy", "blank")


def test_an_id_held_by_a_row_without_its_image_does_not_drop_the_real_image(tmp_path):
    """A catalogue row names g3.jpeg (a typo; the file is g3.jpg): that row has no image, so the
    image g3.jpg, found beside it with the id g3, is the first g3 that reaches the cube and is
    kept (it was flagged duplicate_id and dropped, the log saying "first occurrence kept" of a
    first that was kept out); likewise two rows of one id, the first's file gone."""
    root = tmp_path / "s"
    rows = []
    for i in range(4):
        save_image(root / f"g{i}.jpg", galaxy_rgb(48, seed=i))
        rows.append([f"g{i}", f"g{i}.jpg" if i != 3 else "g3.jpeg", "spiral"])
    save_image(root / "real.png", galaxy_rgb(48, seed=9))
    rows += [["h1", "gone.png", "disk"], ["h1", "real.png", "disk"]]
    write_csv(root / "cat.csv", ["id", "file", "morph"], rows)
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    inside = cat[cat["cube_index"] >= 0]
    assert sorted(inside["id"]) == ["g0", "g1", "g2", "g3", "h1"] and cube.shape[0] == 5
    assert not cat["flag_duplicate_id"].any()
    assert int(cat["flag_missing_image"].sum()) == 2


def test_a_galaxy_a_twentieth_of_the_frame_is_no_blank_frame(tmp_path):
    """A fixed-angle survey's small galaxy covers too little of its frame to move the frame's
    percentiles: such frames were flagged blank and left out. Sky alone, or with one hot pixel, stays blank."""
    rng = np.random.default_rng(0)
    sky = np.clip(rng.normal(10, 1.5, (400, 400)), 0, 255)
    y, x = np.mgrid[:400, :400]
    galaxy = sky + 120 * np.exp(-((x - 200) ** 2 + (y - 200) ** 2) / (2 * 6.0 ** 2))  # ~20 px across
    hot = sky.copy()
    hot[200, 200] = 255
    img = tmp_path / "data"
    img.mkdir()
    noisier = np.clip(rng.normal(20, 2.4, (400, 400)), 0, 255)  # the noise's own tail is no galaxy
    for name, frame in (("galaxy", galaxy), ("sky", sky), ("hot", hot), ("noisier", noisier)):
        rgb = np.repeat(frame[..., None], 3, axis=2)
        save_image(img / f"{name}.png", rgb.round().astype(np.uint8))
        Image.fromarray((frame * 257).round().astype(np.uint16)).save(img / f"{name}16.png")  # 16-bit grey
    _, cat, _, _ = ingest_to(img, tmp_path / "run", preprocess__colour="grey")
    blank = dict(zip(cat["id"], cat["flag_blank"]))
    assert blank == {"galaxy": False, "sky": True, "hot": True, "noisier": True,
                     "galaxy16": False, "sky16": True, "hot16": True, "noisier16": True}


def test_a_faint_galaxy_on_a_quiet_eight_bit_sky_is_no_blank_frame(tmp_path):
    """8-bit frames were judged on levels alone: a galaxy 15 levels above a sky whose noise is about a
    level (10-30 sigma) spans less than the contrast asked, and was flagged blank and left out.
    The sky's noise is now read from the border's histogram; sky alone stays blank."""
    y, x = np.mgrid[:128, :128]
    img = tmp_path / "data"
    img.mkdir()
    for name, sigma, peak in (("faint", 1.0, 15), ("fainter", 0.5, 12), ("quiet_sky", 0.5, 0), ("sky", 1.0, 0)):
        rng = np.random.default_rng(len(name))
        frame = 20 + rng.normal(0, sigma, (128, 128)) + peak * np.exp(-((x - 64) ** 2 + (y - 64) ** 2) / (2 * 6.0**2))
        save_image(img / f"{name}.png", np.repeat(frame[..., None], 3, axis=2).round().clip(0, 255).astype(np.uint8))
    smudge = np.full((128, 128), 3.0)
    smudge[63:65, 63:66] += 6  # a few pixels a few levels above a sky on one level: no galaxy
    save_image(img / "smudge.png", np.repeat(smudge[..., None], 3, axis=2).astype(np.uint8))
    _, cat, _, _ = ingest_to(img, tmp_path / "run")
    assert dict(zip(cat["id"], cat["flag_blank"])) == {"faint": False, "fainter": False, "quiet_sky": True,
                                                       "sky": True, "smudge": True}


def test_the_level_top_is_the_highest_level_rounded_up_to_a_power_of_two():
    from morphospace.data.ingest.spec import LOWEST_LEVEL_TOP, level_top_of

    assert level_top_of([4095 / 65535]) == 2.0**-4  # a camera's 12 bits in a 16-bit file
    assert level_top_of([0.01, 4000 / 65535, 0.03]) == 2.0**-4
    assert level_top_of([16383 / 65535]) == 0.25 and level_top_of([0.25]) == 0.25
    assert level_top_of([0.2, 1.0]) == 1.0  # one frame at the full scale
    assert level_top_of([]) == 1.0 and level_top_of([0.0]) == 1.0
    # faint frames (or a sample of empty sky) are judged on 12 bits at the least: noise is not stretched further
    assert level_top_of([50 / 65535]) == 2.0**-10 and level_top_of([0.01]) == 2.0**-6
    assert level_top_of([255 / np.iinfo(np.int64).max]) == 2.0**-55  # 8-bit levels stored as int64
    assert level_top_of([1e-30]) == LOWEST_LEVEL_TOP


def _twelve_bit_survey(root: Path, factor: int = 1, galaxies: int = 6, scale: tuple = (4, 10)) -> None:
    """Grey 16-bit PNGs holding 12-bit levels (times ``factor``): ``galaxies`` galaxies of a scale
    length drawn in ``scale`` (px of 96) and a blank frame."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96] - 47.5
    root.mkdir(exist_ok=True)
    for i in range(galaxies):
        q, pa = rng.uniform(0.4, 1), rng.uniform(0, np.pi)
        u, v = xx * np.cos(pa) + yy * np.sin(pa), (-xx * np.sin(pa) + yy * np.cos(pa)) / q
        level = 200 + 3500 * np.exp(-np.hypot(u, v) / rng.uniform(*scale)) + rng.normal(0, 15, (96, 96))
        Image.fromarray(np.clip(level, 0, 4095).astype(np.uint16) * factor).save(root / f"g{i}.png")
    sky = np.clip(200 + rng.normal(0, 15, (96, 96)), 0, 4095).astype(np.uint16)
    Image.fromarray(sky * factor).save(root / "blank.png")


@pytest.mark.parametrize("framing", ["fixed", "galaxy", "auto"])
def test_twelve_bit_levels_in_sixteen_bit_files_are_judged_on_their_own_scale(tmp_path, framing, caplog):
    """A camera's 12-bit data in 16-bit PNGs peaks at a sixteenth of the file's scale: every
    galaxy was flagged blank. The ingest measures the survey's top level on a sample (one scale
    for the survey, so a blank frame's noise is not stretched), keeps the galaxies with the rows
    their 16-bit copy gives, still flags the blank frame, and says so; `similar --image` reads the
    scale back from the run."""
    from morphospace.data.ingest import PreprocessSpec
    from morphospace.data.ingest.workers import preprocess_file

    n = 24  # auto's size spread needs 20 measured galaxies
    _twelve_bit_survey(tmp_path / "twelve", galaxies=n)
    _twelve_bit_survey(tmp_path / "sixteen", factor=16, galaxies=n)  # the same levels filling the file's scale
    with caplog.at_level("INFO", logger="morphospace"):
        summary12, cat12, cube12, _ = ingest_to(tmp_path / "twelve", tmp_path / "run12", preprocess__framing=framing)
    assert f"levels: {n} sampled frames beyond 8 bits with a galaxy reach at most" in caplog.text  # not the blank one
    assert "(the top 4 bits unused, e.g. 12-bit data in 16-bit files)" in caplog.text
    summary16, _, cube16, _ = ingest_to(tmp_path / "sixteen", tmp_path / "run16", preprocess__framing=framing)
    assert dict(zip(cat12["id"], cat12["flag_blank"])) == {**{f"g{i}": False for i in range(n)}, "blank": True}
    assert summary12["preprocess"]["level_top"] == 2.0**-4 and summary16["preprocess"]["level_top"] == 1.0
    for key in ("framing", "size_spread"):  # auto's sample of sizes measured on the same scale too
        assert summary12["preprocess"][key] == summary16["preprocess"][key]
    assert framing != "auto" or summary12["preprocess"]["size_spread"] is not None
    np.testing.assert_array_equal(np.asarray(cube12), np.asarray(cube16))
    spec = PreprocessSpec.of_run(tmp_path / "run12" / "ingest_summary.json")
    assert spec.level_top == 2.0**-4
    row, _ = preprocess_file(tmp_path / "twelve" / "g0.png", spec)
    np.testing.assert_array_equal(row.astype(np.float16), np.asarray(cube12)[int(cat12.set_index("id").loc["g0", "cube_index"])])
    # on the file's own scale its levels span a sixteenth of it, but it stands far above its sky's noise
    assert np.isfinite(preprocess_file(tmp_path / "twelve" / "g0.png", PreprocessSpec())[0]).all()
    with pytest.raises(UserError, match="blank"):  # the sky alone is blank on either scale
        preprocess_file(tmp_path / "twelve" / "blank.png", PreprocessSpec())


def test_a_few_sixteen_bit_frames_among_jpegs_are_found_and_empty_sky_stays_blank(tmp_path, monkeypatch):
    """The level sample is drawn among the frames that may hold more than 8 bits (PNG, TIFF,
    HDF5): two 12-bit PNGs among 70 JPEGs were missed by a sample of all frames and flagged
    blank. A survey of nothing but 12-bit sky is not stretched until its noise passes (its
    frames set no scale: nothing in them stands above their noise)."""
    survey = tmp_path / "mixed"
    for i in range(70):
        save_image(survey / f"j{i:02d}.jpg", galaxy_rgb(seed=i))
    _twelve_bit_survey(survey, galaxies=2)
    monkeypatch.setattr("morphospace.data.ingest.driver.LEVEL_SAMPLE", 4)  # 4 of 73 frames would miss the 3 PNGs
    summary, cat, _, _ = ingest_to(survey, tmp_path / "run", preprocess__colour="grey")
    assert summary["preprocess"]["level_top"] == 2.0**-4
    blank = dict(zip(cat["id"], cat["flag_blank"]))
    assert blank["g0"] == blank["g1"] == False and blank["blank"] == True  # noqa: E712
    assert not any(blank[f"j{i:02d}"] for i in range(70))

    sky = tmp_path / "sky"
    sky.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(np.clip(200 + rng.normal(0, 15, (96, 96)), 0, 4095).astype(np.uint16)).save(sky / f"s{i}.png")
    with pytest.raises(UserError, match="all 6 were flagged .6 blank"):
        ingest_to(sky, tmp_path / "sky_run")


def test_faint_galaxies_of_a_linear_sixteen_bit_survey_are_not_blank(tmp_path):
    """Linear 16-bit frames: the bright galaxies fill the files' scale (so it is the survey's), the
    faint ones a few hundredths of it. Each stands 100 sigmas or more above its sky, yet seven of
    twenty were flagged blank ("constant frame"); frames of sky alone still are."""
    root = tmp_path / "linear"
    root.mkdir()
    yy, xx = np.mgrid[:64, :64] - 31.5
    peaks = np.geomspace(60000, 1000, 20)
    for i, peak in enumerate(peaks):
        level = 500 + peak * np.exp(-(xx**2 / 60 + yy**2 / 25)) + np.random.default_rng(i).normal(0, 10, (64, 64))
        Image.fromarray(np.clip(level, 0, 65535).astype(np.uint16)).save(root / f"g{i:02d}.png")
    rng = np.random.default_rng(99)
    Image.fromarray(np.clip(500 + rng.normal(0, 10, (64, 64)), 0, 65535).astype(np.uint16)).save(root / "sky.png")
    Image.fromarray(np.full((64, 64), 500, np.uint16)).save(root / "flat.png")
    hot = np.full((64, 64), 500, np.uint16)
    hot[30:33, 30:32] = 501  # a few hot pixels on a noiseless flat frame: no noise to stand above
    Image.fromarray(hot).save(root / "hot.png")
    padded = np.clip(500 + rng.normal(0, 10, (64, 64)), 0, 65535).astype(np.uint16)
    padded[:, :40] = 0  # sky beside a zero-filled edge of the footprint
    Image.fromarray(padded).save(root / "padded.png")
    # background-subtracted: the sky's noise clipped at 0 (half the ring is 0), and a galaxy of 300 sigma
    clipped = np.clip(rng.normal(0, 10, (64, 64)) + 3000 * np.exp(-(xx**2 / 60 + yy**2 / 25)), 0, 65535)
    Image.fromarray(clipped.astype(np.uint16)).save(root / "clipped.png")
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert summary["preprocess"]["level_top"] == 1.0
    blank = dict(zip(cat["id"], cat["flag_blank"]))
    assert blank == {**{f"g{i:02d}": False for i in range(20)}, "sky": True, "flat": True, "hot": True,
                     "padded": True, "clipped": False}
    faint = np.asarray(cube)[int(cat.set_index("id").loc["g19", "cube_index"])]
    assert np.isfinite(faint).all() and faint.std() > 0.1  # normalised like the bright ones, not a flat row


def test_twelve_bit_galaxies_that_fill_their_frames_set_the_level_scale(tmp_path):
    """The level sample's galaxies stand out above the sky of the frame's border: judged against
    the whole frame's spread (the galaxy's own light), galaxies that fill their frames set no
    scale, and such a survey was judged on the files' full scale again."""
    _twelve_bit_survey(tmp_path / "big", galaxies=6, scale=(25, 35))
    summary, cat, _, _ = ingest_to(tmp_path / "big", tmp_path / "run")
    assert summary["preprocess"]["level_top"] == 2.0**-4
    assert dict(zip(cat["id"], cat["flag_blank"])) == {**{f"g{i}": False for i in range(6)}, "blank": True}


def test_eight_bit_levels_stored_as_int64_in_hdf5_are_galaxies(tmp_path):
    """An HDF5 set of 0-255 levels written as int64 (numpy's default integer) was judged on the
    int64 scale: every galaxy blank, and the ingest stopped with no usable galaxy."""
    import h5py

    from fixtures import tiny_galaxy10

    path = tiny_galaxy10(tmp_path / "g10.h5", n=6)
    with h5py.File(path, "r+") as f:
        images = f["images"][:].astype(np.int64)
        del f["images"]
        f.create_dataset("images", data=images)
    summary, cat, cube, _ = ingest_to(path, tmp_path / "run")
    assert summary["preprocess"]["level_top"] == 2.0**-55 and not cat["flag_blank"].any() and len(cube) == 6


def test_a_flag_that_keeps_galaxies_says_which_another_flag_kept_out(tmp_path, caplog):
    """A stray text file without a catalogue row was flagged not_image (excluded) and no_catalogue_row,
    whose line said "kept" for all of them: the summary now counts those in the cube."""
    import logging

    root = tmp_path / "survey"
    for name in ("a", "b", "c"):
        save_image(root / "images" / f"{name}.png", galaxy_rgb(96, seed=ord(name)))
    (root / "images" / "notes.txt").write_text("observing notes, not an image\n")
    write_csv(root / "catalogue.csv", ["id", "file", "morphology"], [["a", "images/a.png", "e"], ["b", "images/b.png", "s"]])
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        summary, cat, _, run = ingest_to(root, tmp_path / "run")
    row = summary["flags"]["no_catalogue_row"]
    assert (row["count"], row["n_in_cube"], row["excluded"]) == (2, 1, False)
    assert flagged(cat, "no_catalogue_row") == ["c", "notes"] and flagged(cat, "not_image") == ["notes"]
    assert "1 kept, 1 excluded by another flag" in caplog.text
    from morphospace.config import Config
    from morphospace.report import build_report

    page = build_report(run, Config()).read_text()
    assert '<span class="pill warn">1 kept</span><div class="muted small">the rest kept out by another flag' in page


def test_a_jpeg_with_corrupt_data_is_flagged_not_ingested_as_garbage(tmp_path):
    """Bit rot inside a JPEG's compressed data: libjpeg-turbo warned, the file went to Pillow, which
    decodes such data without a word, and the garbled frame entered the cube unflagged. Now it is
    flagged unreadable, whichever decoder reads it (a .jpg, the same bytes under a .png name, a JPEG
    with an Exif segment); the good copies beside it are not."""
    import io

    folder = tmp_path / "s"
    folder.mkdir()
    buf = io.BytesIO()
    Image.fromarray(galaxy_rgb(424, seed=1)).save(buf, "JPEG", quality=90)
    exif = io.BytesIO()
    Image.fromarray(galaxy_rgb(424, seed=2)).save(exif, "JPEG", quality=90, exif=Image.Exif().tobytes())
    for name, data in (("plain", buf.getvalue()), ("exif", exif.getvalue())):
        rotten = bytearray(data)
        rotten[2000:2400] = b"\x55" * 400
        (folder / f"{name}_good.jpg").write_bytes(data)
        (folder / f"{name}_rot.jpg").write_bytes(bytes(rotten))
        (folder / f"{name}_rot_named_png.png").write_bytes(bytes(rotten))
    # padding before the end marker (libjpeg-turbo: "extraneous bytes before marker 0xd9"): the same pixels
    data = buf.getvalue()
    (folder / "padded.jpg").write_bytes(data[:-2] + bytes(200) + data[-2:])
    summary, cat, cube, _ = ingest_to(folder, tmp_path / "run", preprocess__size=32)
    assert flagged(cat, "unreadable") == sorted(f"{n}_rot{s}" for n in ("plain", "exif") for s in ("", "_named_png"))
    assert "corrupt JPEG data" in str(summary["flags"]["unreadable"])
    assert len(cube) == 3


def test_a_row_naming_an_earlier_row_s_image_does_not_take_its_id_from_the_galaxy(tmp_path):
    """A copy-paste slip in the catalogue (row g2 names g1's file): the row was flagged
    duplicate_file, and yet it held the id g2, so the image g2.png was flagged duplicate_id and
    the galaxy g2 was lost, while the summary said 'first occurrence kept'."""
    folder = tmp_path / "s"
    for k in range(4):
        save_image(folder / f"g{k}.png", galaxy_rgb(96, seed=k))
    write_csv(folder / "catalogue.csv", ["id", "file", "morphology"],
              [["g0", "g0.png", "E"], ["g1", "g1.png", "S"], ["g2", "g1.png", "E"], ["g3", "g3.png", "S"]])
    _, cat, cube, _ = ingest_to(folder, tmp_path / "run")
    assert flagged(cat, "duplicate_file") == ["g2"] and flagged(cat, "duplicate_id") == []
    kept = cat[cat["cube_index"] >= 0]
    assert sorted(kept["id"]) == ["g0", "g1", "g2", "g3"] and len(cube) == 4
    assert kept.loc[kept["id"] == "g2", "source"].str.endswith("g2.png").all()


def test_a_colour_frame_in_a_survey_sampled_as_grey_is_flagged(tmp_path):
    """The survey's band count comes from a sample of its files: two colour PNGs among 38 grey ones,
    outside the sample, were read as grey without a word. They still are (the cube follows the
    sample) but flagged colour_reduced and counted in the summary; a grey cube asked for is not."""
    from morphospace.data.ingest.files import spread_sample

    folder = tmp_path / "s"
    names = [f"g{k:03d}.png" for k in range(40)]
    # two colour frames the sample does not open, here and once g005 is a FITS file (listed or not)
    later = [n for n in names if n != "g005.png"]
    sampled = {p.name for files in (names, later, [*later[:5], "g005.fits", *later[5:]])
               for p in spread_sample([folder / n for n in files], 20)}
    colour = [n for n in names if n not in sampled][:2]
    assert len(colour) == 2 and "g005.png" not in colour
    for k, name in enumerate(names):
        rgb = galaxy_rgb(64, seed=k)
        save_image(folder / name, rgb if name in colour else rgb.mean(axis=-1).astype(np.uint8))
    summary, cat, cube, _ = ingest_to(folder, tmp_path / "run", preprocess__size=16)
    want = [n[:-4] for n in colour]
    assert cube.shape[1] == 1 and flagged(cat, "colour_reduced") == want
    assert summary["flags"]["colour_reduced"]["count"] == 2 and not summary["flags"]["colour_reduced"]["excluded"]
    _, asked, _, _ = ingest_to(folder, tmp_path / "grey", preprocess__size=16, preprocess__colour="grey")
    assert flagged(asked, "colour_reduced") == []
    # a two-band FITS frame among grey ones is averaged too: its colour is as lost
    from astropy.io import fits

    two = np.stack([galaxy_rgb(64, seed=7)[..., b].astype(np.float32) for b in (0, 1)])
    fits.PrimaryHDU(two).writeto(folder / "g005.fits")
    (folder / "g005.png").unlink()
    _, cat, cube, _ = ingest_to(folder, tmp_path / "run2", preprocess__size=16)
    assert cube.shape[1] == 1 and flagged(cat, "colour_reduced") == sorted(want + ["g005"])


def test_a_multi_page_tiff_says_only_its_first_page_is_read(tmp_path, caplog):
    """A TIFF holding one band per page was read as its first page, grey, without a word (a FITS
    file's other extensions are said)."""
    folder = tmp_path / "s"
    folder.mkdir()
    for k in range(3):
        pages = [Image.fromarray(galaxy_flux(64, seed=k) * f) for f in (0.7, 0.85, 1.0)]
        pages[0].save(folder / f"s{k}.tif", save_all=True, append_images=pages[1:])
    with caplog.at_level("WARNING", logger="morphospace"):
        ingest_to(folder, tmp_path / "run", preprocess__size=16)
    assert any("holds 3 pages" in r.getMessage() and "the first is read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_galaxy_listed_again_after_an_unusable_first_listing_is_ingested(tmp_path, workers):
    """The first row of an id named a damaged file: the id was then held by that row, the next row of
    the id flagged a duplicate, and the galaxy was in the cube under neither."""
    root = tmp_path / "survey"
    (root / "images").mkdir(parents=True)
    for i in range(4):
        save_image(root / "images" / f"g{i}.png", galaxy_rgb(64, seed=i))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_csv(root / "catalogue.csv", ["id", "file"],
              [["g0", "g0.png"], ["x", "broken.png"], ["g1", "g1.png"], ["x", "g2.png"], ["x", "g3.png"]])
    summary, cat, cube, run = ingest_to(root, tmp_path / "run", ingest__workers=workers, ingest__chunk_size=2)
    x = cat[cat["id"] == "x"]
    assert list(x["cube_index"] >= 0) == [False, True, False]  # the second listing, not the third too
    assert list(x["flag_duplicate_id"]) == [False, False, True] and x["flag_duplicate_id"].iloc[2]
    assert bool(x.iloc[0][[c for c in cat if c.startswith("flag_")]].any())  # the damaged one says why
    assert cube.shape[0] == 3 and sorted(run.cube_ids()) == ["g0", "g1", "x"]
    alone = tmp_path / "alone"  # the second listing's file, ingested by itself: the same pixels
    (alone / "images").mkdir(parents=True)
    (alone / "images" / "g2.png").write_bytes((root / "images" / "g2.png").read_bytes())
    write_csv(alone / "catalogue.csv", ["id", "file"], [["x", "g2.png"]])
    np.testing.assert_array_equal(cube[list(run.cube_ids()).index("x")], ingest_to(alone, tmp_path / "r2")[2][0])


def test_a_listing_given_a_second_chance_is_not_another_galaxys_image_nor_an_unlisted_file(tmp_path):
    """The rescue of a galaxy listed twice must not put one image in the cube under two ids, nor read
    the galaxy from a file no row names (without the row's labels)."""
    root = tmp_path / "survey"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        save_image(root / "images" / f"g{i}.png", galaxy_rgb(64, seed=i))
    save_image(root / "images" / "z.png", galaxy_rgb(64, seed=7))  # named by no row, stem z
    for name in ("broken.png", "broken2.png"):
        (root / "images" / name).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_csv(root / "catalogue.csv", ["id", "file", "morph"],
              [["x", "broken.png", "spiral"], ["y", "g2.png", "disk"], ["g0", "g0.png", "e"], ["x", "g2.png", "s"],
               ["g1", "g1.png", "e"], ["z", "broken2.png", "spiral"]])
    _, cat, cube, run = ingest_to(root, tmp_path / "run")
    assert sorted(run.cube_ids()) == ["g0", "g1", "y"] and cube.shape[0] == 3
    x = cat[cat["id"] == "x"]
    assert list(x["cube_index"] >= 0) == [False, False] and bool(x["flag_duplicate_file"].iloc[1])
    z = cat[cat["id"] == "z"]
    assert not (z["cube_index"] >= 0).any()  # z.png, unlisted, does not stand in for the damaged row


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_pipe_among_the_images_is_flagged_not_waited_on(tmp_path):
    """A named pipe in the folder (`mkfifo`) hung the ingest for ever: its band sample and decode
    opened it and waited for a writer."""
    data = tmp_path / "data"
    for i in range(2):
        save_image(data / f"g{i}.png", galaxy_rgb(48, seed=i))
    os.mkfifo(data / "pipe.png")
    os.mkfifo(data / "pipe.fits")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "morphospace", "ingest", str(data), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    flags = json.loads((out / "ingest_summary.json").read_text())["flags"]
    assert flags["not_image"]["count"] == 2 and "not a regular file" in str(flags["not_image"]["details"])
