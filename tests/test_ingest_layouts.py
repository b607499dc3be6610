"""Ingest: every survey layout is detected, read and ingested (tiny fixtures built here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import (KAGGLE_KINDS, KAGGLE_VOTE_COLUMNS, galaxy_flux, galaxy_rgb, ingest_to, kaggle_votes, save_image,
                      tiny_fits_folder, tiny_folder_survey, tiny_galaxy10, write_csv)
from PIL import Image

from morphospace.config import DataConfig, VoteThresholds
from morphospace.data.ingest import LAYOUTS, detect_layout, read_survey
from morphospace.data.ingest.layouts import derive_gz2_class
from morphospace.errors import UserError


def test_detects_every_layout(tmp_path, tiny_folder_survey, tiny_sdss_gz1, tiny_kaggle, tiny_synthetic):
    assert detect_layout(tiny_folder_survey) == "folder"
    assert detect_layout(tiny_sdss_gz1) == "sdss-gz1"
    assert detect_layout(tiny_kaggle) == "kaggle-gz2"
    assert detect_layout(tiny_synthetic) == "synthetic"
    assert detect_layout(tiny_fits_folder(tmp_path / "fits")) == "fits"
    h5 = tiny_galaxy10(tmp_path / "g10" / "Galaxy10.h5", n=3)
    assert detect_layout(h5) == "galaxy10"
    assert detect_layout(h5.parent) == "galaxy10"
    # images/ + a labels.csv that is not Galaxy Zoo's: a plain folder with a catalogue
    other = tiny_folder_survey.parent / "other"
    save_image(other / "images" / "a.png", galaxy_rgb(32))
    write_csv(other / "labels.csv", ["id", "kind"], [["a", "x"]])
    assert detect_layout(other) == "folder"
    # FITS cutouts beside ordinary images: read alike, but not named a FITS survey in the report
    mixed = tiny_fits_folder(tmp_path / "mixed")
    save_image(mixed / "z.png", galaxy_rgb(32))
    assert detect_layout(mixed) == "folder"


def test_unknown_layout_is_one_line_listing_the_known_ones(tmp_path):
    (tmp_path / "notes.txt").write_text("not a survey")
    with pytest.raises(UserError) as exc:
        detect_layout(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg
    for layout in LAYOUTS:
        assert layout in msg
    with pytest.raises(UserError, match="known layouts"):
        detect_layout(tmp_path / "notes.txt")  # a file that is not a Galaxy10 .h5
    with pytest.raises(UserError, match="data not found"):
        detect_layout(tmp_path / "missing")


def test_float16_cube_is_the_float32_cube_rounded(tiny_folder_survey, tmp_path):
    """``ingest.cube_dtype``: the default float16 cube holds the float32 one to float16's precision."""
    s16, _, c16, _ = ingest_to(tiny_folder_survey, tmp_path / "r16")
    s32, _, c32, _ = ingest_to(tiny_folder_survey, tmp_path / "r32", ingest__cube_dtype="float32")
    assert (s16["cube_dtype"], s32["cube_dtype"]) == ("float16", "float32")
    assert c16.dtype == np.float16 and c32.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(c16), np.asarray(c32).astype(np.float16))
    assert (tmp_path / "r16" / "cube.npy").stat().st_size < 0.51 * (tmp_path / "r32" / "cube.npy").stat().st_size


def test_folder_with_catalogue_jpeg_png_tiff(tiny_folder_survey, tmp_path):
    summary, cat, cube, run = ingest_to(tiny_folder_survey, tmp_path / "run")
    assert summary["layout"] == "folder" and summary["n_in_cube"] == 6 and not summary["flags"]
    assert cube.shape == (6, 3, 64, 64) and cube.dtype == np.float16  # ingest.cube_dtype default
    assert {"png", "jpg", "tif"} == {s.rsplit(".", 1)[1] for s in cat["source"]}
    assert list(cat["id"]) == [f"g{i}" for i in range(6)]
    assert list(cat["morphology"])[:3] == ["elliptical", "lenticular", "spiral"]
    assert cat["redshift"].dtype == np.float64 and cat["redshift"].iloc[0] == pytest.approx(0.01)
    assert list(cat["cube_index"]) == list(range(6))
    assert list(run.cube_ids()) == list(cat["id"])
    assert all(f"flag_{f}" in cat for f in ("blank", "not_galaxy", "duplicate_id", "missing_image"))


def test_folder_without_catalogue_and_with_images_subfolder(tmp_path):
    bare = tiny_folder_survey(tmp_path / "bare", n=4, catalogue=False)
    summary, cat, cube, _ = ingest_to(bare, tmp_path / "run1")
    assert sorted(cat["id"]) == ["g0", "g1", "g2", "g3"] and cube.shape[0] == 4
    assert summary["label_columns"] == []

    sub = tiny_folder_survey(tmp_path / "sub", n=4, images_subdir=True)
    summary, cat, cube, _ = ingest_to(sub, tmp_path / "run2")
    assert summary["n_in_cube"] == 4 and not summary["flags"]
    assert all("/images/" in s for s in cat["source"])


def test_catalogue_columns_named_in_the_config(tmp_path):
    root = tmp_path / "named"
    for i in range(3):
        save_image(root / "pix" / f"obj_{i}.png", galaxy_rgb(48, seed=i))
    write_csv(root / "my_table.csv", ["objname", "img", "class", "junk"],
              [[f"N{i}", f"pix/obj_{i}.png", f"c{i}", i] for i in range(3)])
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run", data__id_column="objname", data__file_column="img",
                                      data__label_columns=["class"], data__layout="folder")
    assert list(cat["id"]) == ["N0", "N1", "N2"] and cube.shape[0] == 3
    assert "class" in cat and "junk" not in cat
    assert summary["label_columns"] == ["class"]


def test_text_that_means_no_value_is_a_missing_label_not_a_class(tmp_path):
    """astropy and numpy write a missing float as "nan", databases as "null", people as "N/A": such a
    cell is a missing label (a number column stays numbers), as the analyses read it."""
    root = tmp_path / "na"
    for i in range(4):
        save_image(root / f"g{i}.png", galaxy_rgb(48, seed=i))
    write_csv(root / "catalogue.csv", ["id", "file", "frac", "kind"],
              [["a", "g0.png", "0.1", "spiral"], ["b", "g1.png", "nan", "N/A"], ["c", "g2.png", "0.7", "null"],
               ["d", "g3.png", "NA", "elliptical"]])
    _, cat, _, _ = ingest_to(root, tmp_path / "run")
    assert cat["frac"].dtype == np.float64 and cat["frac"].isna().tolist() == [False, True, False, True]
    assert cat["kind"].isna().tolist() == [False, True, True, False]


def test_image_modes_all_become_the_requested_channels(tmp_path):
    root = tmp_path / "modes"
    rgb = galaxy_rgb(64)
    grey = rgb[..., 1]
    Image.fromarray(grey).save(root.mkdir() or root / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(root / "sixteen.png")
    Image.fromarray(grey.astype(np.float32) * 3.5, mode="F").save(root / "float.tif")
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert summary["n_in_cube"] == 5, summary["flags"]
    assert cube.shape == (5, 3, 64, 64) and np.isfinite(cube).all()
    _, _, grey_cube, _ = ingest_to(root, tmp_path / "run_grey", preprocess__colour="grey")
    assert grey_cube.shape == (5, 1, 64, 64)


def test_a_survey_of_grey_images_makes_a_grey_cube(tmp_path):
    """A single-band survey as grey JPEG/PNG was a three-channel cube of one band repeated, with
    every galaxy flagged fewer_bands; a grey frame among colour ones is still flagged."""
    root = tmp_path / "grey"
    root.mkdir()
    for i in range(4):
        grey = galaxy_rgb(64, seed=i)[..., 1]
        Image.fromarray(grey).save(root / f"g{i}.jpg") if i % 2 else \
            Image.fromarray(grey.astype(np.uint16) * 257).save(root / f"g{i}.png")
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert cube.shape == (4, 1, 64, 64) and not summary["flags"]
    # the same images in a sub-folder a catalogue names: grey too (the bands came from the top level)
    nested = tmp_path / "nested"
    (nested / "img").mkdir(parents=True)
    for p in sorted(root.iterdir()):
        p.rename(nested / "img" / p.name)
    write_csv(nested / "cat.csv", ["id", "file"], [[p.stem, f"img/{p.name}"] for p in sorted((nested / "img").iterdir())])
    summary, _, cube, _ = ingest_to(nested, tmp_path / "run_nested")
    assert cube.shape == (4, 1, 64, 64) and not summary["flags"]
    save_image(nested / "img" / "colour.png", galaxy_rgb(64, seed=9))
    summary, cat, cube, _ = ingest_to(nested / "img", tmp_path / "run_mixed")
    assert cube.shape == (5, 3, 64, 64) and summary["flags"]["fewer_bands"]["count"] == 4


def _png16(path, arr):
    """A 16-bit PNG of ``arr`` (H x W x 3 or 4, uint16), written by hand: Pillow writes none."""
    import struct
    import zlib

    h, w, bands = arr.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    colour = {3: 2, 4: 6}[bands]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_colour_pngs_are_kept_and_flagged_as_read_at_8_bits(tmp_path):
    """Pillow reads a 16-bit colour PNG's bands as their high bytes (it has no 16-bit colour mode):
    the galaxy is kept, flagged depth_reduced, and the summary counts it; 16-bit grey, which Pillow
    reads whole, and 8-bit colour are not flagged."""
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(3):
        save_image(root / f"c{i}.png", galaxy_rgb(64, seed=i))
    rgb = galaxy_rgb(64, seed=7).astype(np.uint16) * 257
    _png16(root / "deep.png", rgb)
    _png16(root / "deep_alpha.png", np.concatenate([rgb, np.full((64, 64, 1), 65535, np.uint16)], axis=-1))
    assert np.array_equal(np.asarray(Image.open(root / "deep.png")), rgb >> 8)  # what Pillow gives
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert summary["n_in_cube"] == 5 and cube.shape == (5, 3, 64, 64)
    assert sorted(cat.loc[cat["flag_depth_reduced"], "id"]) == ["deep", "deep_alpha"]
    assert summary["flags"]["depth_reduced"]["count"] == 2
    # 12-bit data in 16-bit bands: Pillow's high bytes are 0-15, here a galaxy of 9 levels on a sky of
    # 0, under 10 sigmas of a level's noise: a blank frame; the flag says why
    _png16(root / "faint.png", galaxy_rgb(64, seed=8).astype(np.uint16) * 16)
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run_faint")
    faint = cat.set_index("id").loc["faint"]
    assert faint["flag_blank"] and faint["flag_depth_reduced"] and summary["n_in_cube"] == 5
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(3):
        Image.fromarray(galaxy_rgb(64, seed=i)[..., 1].astype(np.uint16) * 257).save(grey / f"g{i}.png")
    summary, cat, _, _ = ingest_to(grey, tmp_path / "run_grey")
    assert "depth_reduced" not in summary["flags"] and not cat["flag_depth_reduced"].any()


def test_sdss_gz1_layout_and_morph3(tiny_sdss_gz1, tmp_path):
    summary, cat, cube, _ = ingest_to(tiny_sdss_gz1, tmp_path / "run")
    assert summary["layout"] == "sdss-gz1" and cube.shape == (6, 3, 64, 64)
    assert cat["id"].iloc[0] == "587722952767439450"  # ids stay exact strings
    assert str(cat["gz1_class"].dtype) == "Int64"
    assert list(cat["gz1_name"]) == ["elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger"]
    morph3 = cat["morph3"].astype(object).where(cat["morph3"].notna(), None).tolist()
    assert morph3 == ["elliptical", "spiral", "spiral", "edge_on", None, None]
    # a labels.csv with a morph3 of its own: kept as catalogue_morph3 (it was replaced by the derived one)
    import shutil

    own = tmp_path / "own"
    shutil.copytree(tiny_sdss_gz1, own)
    lines = (own / "labels.csv").read_text().splitlines()
    (own / "labels.csv").write_text("\n".join([lines[0] + ",morph3"] + [f"{row},mine{i}" for i, row in
                                                                        enumerate(lines[1:])]) + "\n")
    _, cat, _, _ = ingest_to(own, tmp_path / "run2")
    assert cat["catalogue_morph3"].tolist()[:2] == ["mine0", "mine1"] and cat["morph3"].iloc[0] == "elliptical"


def test_label_columns_hold_for_every_layout(tiny_sdss_gz1, tmp_path):
    """`data.label_columns` was read by the folder layout alone: elsewhere a typo kept every column."""
    assert list(read_survey(tiny_sdss_gz1, DataConfig(label_columns=["morph3"])).labels.columns) == ["morph3"]
    twice = read_survey(tiny_sdss_gz1, DataConfig(label_columns=["morph3", "gz1_name", "morph3"]))
    assert list(twice.labels.columns) == ["morph3", "gz1_name"]  # named twice, kept once (not a traceback)
    with pytest.raises(UserError, match=r"data.label_columns: nosuch not among the survey's label columns "
                                        r"\(gz1_class, gz1_name, morph3\)"):
        read_survey(tiny_sdss_gz1, DataConfig(label_columns=["nosuch"]))
    h5 = tiny_galaxy10(tmp_path / "Galaxy10.h5", n=3)
    assert list(read_survey(h5, DataConfig(label_columns=["galaxy10_name"])).labels.columns) == ["galaxy10_name"]
    bare = tiny_folder_survey(tmp_path / "bare", n=3, catalogue=False)
    with pytest.raises(UserError, match="it has none"):
        read_survey(bare, DataConfig(label_columns=["morphology"]))


def test_kaggle_layout_keeps_all_37_vote_columns_and_derives_classes(tiny_kaggle, tmp_path):
    summary, cat, cube, _ = ingest_to(tiny_kaggle, tmp_path / "run")
    assert summary["layout"] == "kaggle-gz2" and cube.shape[0] == len(KAGGLE_KINDS)
    assert len(KAGGLE_VOTE_COLUMNS) == 37
    for col in KAGGLE_VOTE_COLUMNS:
        assert cat[col].dtype == np.float64, col
    assert list(cat["gz2_class"]) == KAGGLE_KINDS  # the fixture's rows are one of each kind
    morph3 = dict(zip(cat["gz2_class"], cat["morph3"].astype(object).where(cat["morph3"].notna(), None)))
    assert morph3 == {"smooth": "elliptical", "edge_on": "edge_on", "barred_spiral": "spiral", "spiral": "spiral",
                      "merger": None, "artifact": None, "uncertain": None}
    assert cat.loc[0, "id"] == "100008"
    # the table's other columns are kept, positions read: they were dropped, ra/dec with them
    import shutil

    with_pos = tmp_path / "with_pos"
    shutil.copytree(tiny_kaggle, with_pos)
    table = pd.read_csv(with_pos / "training_solutions_rev1.csv")
    table["RA"], table["DEC"], table["redshift"] = 150.0, np.linspace(-10, 10, len(table)), 0.05
    table.to_csv(with_pos / "training_solutions_rev1.csv", index=False)
    _, cat, _, _ = ingest_to(with_pos, tmp_path / "run_pos")
    assert cat["ra"].tolist() == [150.0] * len(table) and cat["redshift"].tolist() == [0.05] * len(table)
    assert cat.set_index("id").loc[str(table["GalaxyID"].iloc[-1]), "dec"] == pytest.approx(10.0)
    # GalaxyIDs written as floats (a spreadsheet's 100008.0) name the same images: every row matched
    table["GalaxyID"] = table["GalaxyID"].astype(float)
    table.to_csv(with_pos / "training_solutions_rev1.csv", index=False)
    summary, cat, _, _ = ingest_to(with_pos, tmp_path / "run_floats")
    assert not summary["flags"] and cat.loc[0, "id"] == "100008"


def test_kaggle_thresholds_come_from_the_config(tiny_kaggle, tmp_path):
    _, cat, _, _ = ingest_to(tiny_kaggle, tmp_path / "run", data__vote_thresholds__smooth=0.9,
                             data__vote_thresholds__barred=0.7)
    classes = dict(zip(KAGGLE_KINDS, cat["gz2_class"]))
    assert classes["smooth"] == "uncertain"  # Class1.1 = 0.8 no longer passes
    assert classes["barred_spiral"] == "spiral"  # Class3.1 = 0.6 fails, Class4.1 = 0.8 passes


def test_derive_gz2_class_rule_order():
    votes = pd.DataFrame([kaggle_votes(k) for k in KAGGLE_KINDS])
    assert list(derive_gz2_class(votes, VoteThresholds())) == KAGGLE_KINDS
    # a galaxy passing several cuts takes the first rule: artifact before smooth
    both = kaggle_votes("smooth") | {"Class1.3": 0.6}
    assert derive_gz2_class(pd.DataFrame([both]), VoteThresholds()).iloc[0] == "artifact"
    lenient = VoteThresholds(artifact=0.99, merger=0.99, smooth=0.99, edge_on=0.99, barred=0.99, spiral=0.05)
    assert derive_gz2_class(pd.DataFrame([kaggle_votes("edge_on")]), lenient).iloc[0] == "uncertain"


def test_kaggle_votes_missing_or_not_fractions(tiny_kaggle, tmp_path):
    """A galaxy missing a vote the rules read has no class (it was "uncertain", or "merger" when
    Class1.1 was blank); a cell that is no fraction is a one-line error naming it."""
    import shutil

    votes = pd.DataFrame([kaggle_votes("smooth"), kaggle_votes("spiral") | {"Class1.1": np.nan}])
    assert derive_gz2_class(votes, VoteThresholds()).tolist() == ["smooth", pd.NA]
    csv = tiny_kaggle / "training_solutions_rev1.csv"
    table = pd.read_csv(csv)
    for value, shown in (("abc", "'abc'"), (1.5, "'1.5'")):
        bad = tmp_path / f"k{shown}"
        shutil.copytree(tiny_kaggle, bad)
        edited = table.astype({"Class2.1": object})
        edited.loc[1, "Class2.1"] = value
        edited.to_csv(bad / csv.name, index=False)
        with pytest.raises(UserError, match=rf"Class2.1 of GalaxyID {table['GalaxyID'][1]} is {shown}: vote "
                                            r"fractions are numbers in \[0, 1\]"):
            read_survey(bad, DataConfig())


def test_kaggle_vote_cells_reading_na_are_missing_votes(tiny_kaggle, tmp_path):
    """A vote cell reading NA, nan or null was a one-line error ("vote fractions are numbers"),
    where the README says such a cell is a missing label, as an empty one is."""
    import shutil

    csv = tiny_kaggle / "training_solutions_rev1.csv"
    table = pd.read_csv(csv)
    for marker in ("NA", "nan", "null", " None "):
        data = tmp_path / f"k_{marker.strip()}"
        shutil.copytree(tiny_kaggle, data)
        edited = table.astype({"Class1.1": object})
        edited.loc[1, "Class1.1"] = marker
        edited.to_csv(data / csv.name, index=False)
        survey = read_survey(data, DataConfig())
        assert pd.isna(survey.labels["Class1.1"].iloc[1]) and survey.labels["Class1.1"].notna().sum() == len(table) - 1


def test_a_file_named_in_decomposed_unicode_is_its_catalogue_row(tmp_path):
    """A macOS disk writes 'galáxia.png' decomposed (NFD); the catalogue's id is composed (NFC): the
    row was flagged missing_image and the image no_catalogue_row, one galaxy as two, its labels lost."""
    import unicodedata

    root = tmp_path / "survey"
    nfc = unicodedata.normalize("NFC", "galáxia")
    save_image(root / "images" / f"{unicodedata.normalize('NFD', nfc)}.png", galaxy_rgb(48, seed=1))
    save_image(root / "images" / "plain.png", galaxy_rgb(48, seed=2))
    write_csv(root / "catalogue.csv", ["id", "morph"], [[nfc, "spiral"], ["plain", "elliptical"]])
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert len(cat) == 2 and cube.shape[0] == 2 and not summary["flags"]
    assert cat.set_index("id").loc[nfc, "morph"] == "spiral"


def test_kaggle_csv_without_vote_columns_is_a_user_error(tmp_path):
    root = tmp_path / "k"
    save_image(root / "images_training_rev1" / "1.jpg", galaxy_rgb(32))
    write_csv(root / "training_solutions_rev1.csv", ["GalaxyID", "Class1.1"], [[1, 0.5]])
    with pytest.raises(UserError, match="Class1.3"):
        read_survey(root, DataConfig())


@pytest.mark.parametrize("kind,side", [("sdss", 69), ("decals", 256)])
def test_galaxy10_hdf5(tmp_path, kind, side):
    h5 = tiny_galaxy10(tmp_path / f"Galaxy10_{kind}.h5", n=6, kind=kind, extra=True)
    summary, cat, cube, _ = ingest_to(h5, tmp_path / "run", ingest__chunk_size=4)
    assert summary["layout"] == "galaxy10" and cube.shape == (6, 3, 64, 64) and not summary["flags"]
    assert list(cat["id"]) == [str(i) for i in range(6)]
    assert cat["source"].iloc[2].endswith(f"{h5.name}#2")
    assert list(cat["galaxy10_class"]) == list(range(6))
    names = {"sdss": "smooth_completely_round", "decals": "merging"}
    assert cat["galaxy10_name"].iloc[1] == names[kind]
    assert cat["redshift"].iloc[-1] == pytest.approx(0.1) and "ra" in cat
    # the rows are the right images, in order: compare with the first one preprocessed alone
    _, _, single, _ = ingest_to(h5, tmp_path / "run_workers", ingest__workers=2, ingest__chunk_size=2)
    np.testing.assert_array_equal(single, cube)


def test_galaxy10_answers_that_are_no_class_are_missing_or_refused(tmp_path, caplog):
    """A float 'ans' with NaN gaps gives no class (not int64's minimum as a class), and says so; 2.5 or
    12 were left without a class without a word: a one-line error naming the image."""
    import h5py

    h5 = tiny_galaxy10(tmp_path / "Galaxy10.h5", n=4)
    with h5py.File(h5, "r+") as f:
        del f["ans"]
        f.create_dataset("ans", data=np.array([1.0, np.nan, 3.0, np.nan]))
    with caplog.at_level("INFO", logger="morphospace"):
        survey = read_survey(h5, DataConfig())
    assert survey.labels["galaxy10_class"].isna().tolist() == [False, True, False, True]
    assert survey.labels["galaxy10_class"].iloc[0] == 1 and survey.labels["galaxy10_name"].isna().sum() == 2
    assert "2 images without a class ('ans' NaN): kept, unlabelled" in caplog.text
    assert "Galaxy10 SDSS class names" in caplog.text
    for key in ("images", "ans"):  # a group, or text classes: the words of h5py and numpy
        broken = tiny_galaxy10(tmp_path / f"broken_{key}.h5", n=2)
        with h5py.File(broken, "r+") as f:
            del f[key]
            if key == "images":
                f.create_group("images").create_dataset("x", data=np.zeros(2))
            else:
                f.create_dataset("ans", data=np.array([b"spiral", b"round"]))
        with pytest.raises(UserError, match="'images' must be a dataset" if key == "images" else "'ans' must hold class numbers"):
            read_survey(broken, DataConfig())
    table = tiny_galaxy10(tmp_path / "table.h5", n=3)  # two numbers an image: said with its shape (was "6 answers")
    with h5py.File(table, "r+") as f:
        del f["ans"]
        f.create_dataset("ans", data=np.zeros((3, 2)))
    with pytest.raises(UserError, match=r"'ans' must hold one class number per image \(shape N\), got shape \(3, 2\)"):
        read_survey(table, DataConfig())
    column = tiny_galaxy10(tmp_path / "column.h5", n=3)  # a column vector is one class an image: read
    with h5py.File(column, "r+") as f:
        del f["ans"]
        f.create_dataset("ans", data=np.array([[1], [2], [3]]))
    assert read_survey(column, DataConfig()).labels["galaxy10_class"].tolist() == [1, 2, 3]
    with h5py.File(column, "r+") as f:  # a row vector (a column-major writer's): read too
        del f["ans"]
        f.create_dataset("ans", data=np.array([[1, 2, 3]]))
    assert read_survey(column, DataConfig()).labels["galaxy10_class"].tolist() == [1, 2, 3]
    for bad, shown in ((2.5, "2.5"), (12.0, "12"), (-1.0, "-1")):
        with h5py.File(h5, "r+") as f:
            f["ans"][2] = bad
        with pytest.raises(UserError, match=f"'ans' of image 2 is {shown}: Galaxy10 classes are the numbers 0 to 9"):
            read_survey(h5, DataConfig())


def test_a_gz1_class_that_is_no_class_is_refused(tiny_sdss_gz1):
    """One text cell in gz1_class made the column text, so that every galaxy's morph3 was missing and
    the truth silently became another column."""
    data = tiny_sdss_gz1
    table = pd.read_csv(data / "labels.csv", dtype=str)
    assert read_survey(data, DataConfig()).labels["morph3"].notna().any()
    for bad in ("S", "7", "-1"):
        table.loc[1, "gz1_class"] = bad
        table.to_csv(data / "labels.csv", index=False)
        with pytest.raises(UserError, match=f"gz1_class of objid {table['objid'][1]} is '{bad}': Galaxy Zoo 1 classes"):
            read_survey(data, DataConfig())
    table.loc[1, "gz1_class"] = ""  # an empty cell is a missing class
    table.to_csv(data / "labels.csv", index=False)
    assert read_survey(data, DataConfig()).labels["morph3"].notna().sum() >= 1


def test_galaxy10_datasets_left_out_are_named(tmp_path, caplog):
    """A dataset that is not one number per image (2-D, another length, text) was left out without a word."""
    import logging

    import h5py

    h5 = tiny_galaxy10(tmp_path / "Galaxy10.h5", n=4)
    with h5py.File(h5, "r+") as f:
        f.create_dataset("zoo_votes", data=np.zeros((4, 3)))
        f.create_dataset("names", data=np.array([b"a", b"b", b"c", b"d"]))
        f.create_dataset("sersic_n", data=np.arange(4.0))
        f.create_dataset("is_merger", data=np.array([True, False, False, True]))  # one per image: was left out
    with caplog.at_level(logging.INFO, logger="morphospace"):
        survey = read_survey(h5, DataConfig())
    assert "sersic_n" in survey.labels and "zoo_votes" not in survey.labels
    assert list(survey.labels["is_merger"]) == [True, False, False, True]
    assert list(survey.labels["names"]) == ["a", "b", "c", "d"]  # text, as a user's own ids: was left out
    assert "Galaxy10.h5: zoo_votes left out of the catalogue (not one number, text or true/false per image)" \
        in caplog.text


def test_galaxy10_text_in_byte_strings_reads_as_utf8_and_column_vectors_are_kept(tmp_path, caplog):
    """numpy's byte strings, which h5py tags ASCII, were read as ASCII: "NGC é0" came out as
    "NGC \ufffd\ufffd0" without a word; a dataset of shape (N, 1), one number per image, was left out."""
    import logging

    import h5py

    h5 = tiny_galaxy10(tmp_path / "Galaxy10.h5", n=4)
    with h5py.File(h5, "r+") as f:
        f.create_dataset("name", data=np.array([f"NGC é{i}".encode() for i in range(4)]))
        f.create_dataset("latin", data=np.array([b"ok", "caf\xe9".encode("latin-1"), b"x", b"y"]))
        f.create_dataset("redshift", data=np.arange(4.0).reshape(4, 1) / 10)
        f.create_dataset("legit", data=np.array([f"x\ufffd{i}".encode() for i in range(4)]))  # a real U+FFFD
    with caplog.at_level(logging.INFO, logger="morphospace"):
        survey = read_survey(h5, DataConfig())
    assert list(survey.labels["name"]) == ["NGC é0", "NGC é1", "NGC é2", "NGC é3"]
    assert list(survey.labels["redshift"]) == [0.0, 0.1, 0.2, 0.3]
    assert survey.labels["latin"][1] == "caf\ufffd"  # not UTF-8: said, not garbled silently
    assert "1 values of 'latin' are not UTF-8 text" in caplog.text and "'name'" not in caplog.text
    assert survey.labels["legit"][0] == "x\ufffd0" and "'legit'" not in caplog.text


def test_a_galaxy10_decals_set_made_smaller_keeps_its_class_names(tmp_path, caplog):
    """The DECaLS set's 256 px images shrunk to 64 px (a common first step) were given the SDSS
    set's class names by their size: its barred spirals called edge-on disks."""
    import logging

    import h5py

    h5 = tiny_galaxy10(tmp_path / "Galaxy10_DECals_64.h5", n=6)
    with h5py.File(h5, "r+") as f:
        f.create_dataset("pxscale", data=np.full(6, 0.262 * 4))
    with caplog.at_level(logging.INFO, logger="morphospace"):
        survey = read_survey(h5, DataConfig())
    assert survey.labels["galaxy10_name"].iloc[1] == "merging" and "Galaxy10 DECaLS class names (it has pxscale" in caplog.text
    assert survey.labels["galaxy10_name"].iloc[5] == "barred_spiral"


def test_a_catalogue_not_separated_by_commas_is_said_so(tmp_path):
    """A semicolon catalogue was read as one column: "has no id column: name it with --id-column"."""
    save_image(tmp_path / "s" / "a.png", galaxy_rgb(48, seed=1))
    (tmp_path / "s" / "catalogue.csv").write_text("id;morph\na;x\n")
    with pytest.raises(UserError, match=r"is not comma-separated \(its header reads 'id;morph', separated by ';'\)"):
        ingest_to(tmp_path / "s", tmp_path / "run")


def test_galaxy10_text_pixels_small_rows_and_datasets_named_like_ours(tmp_path, capsys):
    """Text pixels in 'images' ended the ingest in a traceback; rows under 8 px were blown up to the
    cube's size where a file that small is flagged too_small; a dataset named like a label column we
    derive (morph3) replaced it without a word."""
    import h5py

    from morphospace.cli import main

    h5 = tiny_galaxy10(tmp_path / "text.h5", n=3)
    with h5py.File(h5, "r+") as f:
        del f["images"]
        f.create_dataset("images", data=np.full((3, 16, 16, 3), b"x", dtype="S1"))
    assert main(["ingest", str(h5), "--out", str(tmp_path / "r_text"), "--quiet"]) == 2
    assert "'images' must hold numbers" in capsys.readouterr().err
    small = tiny_galaxy10(tmp_path / "small.h5", n=4)
    with h5py.File(small, "r+") as f:
        del f["images"]
        images = (np.random.default_rng(0).random((4, 20, 20, 3)) * 255).astype(np.uint8)
        f.create_dataset("images", data=images)
        f.create_dataset("morph3", data=np.arange(4.0))
    survey = read_survey(small, DataConfig())
    assert survey.labels["catalogue_morph3"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert survey.labels["morph3"].dtype == "string"  # ours, derived from 'ans'; theirs kept beside it
    with h5py.File(small, "r+") as f:
        del f["images"]
        f.create_dataset("images", data=images[:, :2, :2])
    with pytest.raises(UserError, match="all 4 were flagged .*too_small"):
        ingest_to(small, tmp_path / "r_small")


def test_hdf5_that_is_not_galaxy10_is_a_user_error(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("pixels", data=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="not a Galaxy10 file"):
        read_survey(tmp_path / "x.h5", DataConfig())
    (tmp_path / "broken.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match="cannot read HDF5"):
        read_survey(tmp_path / "broken.h5", DataConfig())
    # a folder of two: which is the survey cannot be guessed, and the error says so (it said no layout)
    with pytest.raises(UserError, match=r"holds 2 HDF5 files \(broken.h5, x.h5\): give the Galaxy10 .h5 file"):
        read_survey(tmp_path, DataConfig())
    # bands first: read as 69 x 69 images of 69 bands they would be stripes, so refused
    with h5py.File(tmp_path / "bands_first.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3, 69, 69), np.uint8))
        f.create_dataset("ans", data=np.array([0, 1]))
    with pytest.raises(UserError, match=r"bands last\), got \(2, 3, 69, 69\): the bands come first"):
        read_survey(tmp_path / "bands_first.h5", DataConfig())


def test_fits_2d_and_band_cubes(tmp_path, caplog):
    two_d = tiny_fits_folder(tmp_path / "f2", n=3, catalogue=True)
    summary, cat, cube, _ = ingest_to(two_d, tmp_path / "r2")
    assert summary["layout"] == "fits" and cube.shape == (3, 1, 64, 64)  # one band: grey
    assert list(cat["mag"]) == [17, 18, 19]
    three = tiny_fits_folder(tmp_path / "f3", n=3, bands=3)
    _, _, cube3, _ = ingest_to(three, tmp_path / "r3")
    assert cube3.shape == (3, 3, 64, 64)
    five = tiny_fits_folder(tmp_path / "f5", n=2, bands=5)
    with caplog.at_level("WARNING", logger="morphospace"):
        _, _, cube5, _ = ingest_to(five, tmp_path / "r5", preprocess__colour="grey", preprocess__size=32)
        _, _, cube5c, _ = ingest_to(five, tmp_path / "r5c", preprocess__size=32)
    assert cube5.shape == (2, 1, 32, 32) and cube5c.shape == (2, 3, 32, 32)
    # which bands the cube keeps is said (it was silent)
    assert "5 bands: the cube's grey channel is their mean" in caplog.text
    assert "5 bands: the cube's colour channels are the file's first three, the third as red" in caplog.text
    # the galaxy is in the middle: the centre is the brightest part of the row
    row = cube[0, 0]
    assert row[28:36, 28:36].mean() > row[:8].mean() + 0.5


def test_synthetic_layout(tiny_synthetic, tmp_path):
    summary, cat, cube, _ = ingest_to(tiny_synthetic, tmp_path / "run")
    assert summary["layout"] == "synthetic" and cube.shape == (6, 3, 64, 64) and not summary["flags"]
    assert list(cat["id"]) == [f"synth_{i:06d}" for i in range(6)]
    assert cat["morphology"].iloc[4] == "edge_on"
    assert cat["position_angle"].dtype == np.float64 and str(cat["winding"].dtype) == "Int64"
    assert "file" not in cat  # the file column is the source, not a label


def test_forced_layout_and_unknown_layout(tiny_folder_survey):
    assert read_survey(tiny_folder_survey, DataConfig(layout="folder")).layout == "folder"
    with pytest.raises(UserError, match="unknown layout 'zip'.*known layouts"):
        read_survey(tiny_folder_survey, DataConfig.model_construct(layout="zip"))


def test_spreadsheet_catalogue_and_odd_file_names(tmp_path):
    root = tmp_path / "odd"
    save_image(root / "a b.png", galaxy_rgb(48, seed=1))
    # a file name that is not valid UTF-8 (kept by Python as surrogates)
    save_image(root / b"gal\xff.png".decode("utf-8", "surrogateescape"), galaxy_rgb(48, seed=2))
    # with a byte-order mark, and a header and rows ending in a comma (an empty "Unnamed: 2" column)
    (root / "cat.csv").write_text("id,kind,\n a b ,spiral,\n", encoding="utf-8-sig")
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert cube.shape[0] == 2 and cat.loc[0, "id"] == "a b" and cat.loc[0, "kind"] == "spiral"
    assert not any(c.startswith("Unnamed") for c in cat.columns) and summary["label_columns"] == ["kind"]
    assert cat.loc[1, "id"].startswith("gal") and cat.loc[1, "flag_no_catalogue_row"]


def test_a_header_named_twice_is_refused_and_renamed_columns_are_named_as_stored(tmp_path, caplog):
    """`id,klass,klass` became klass and klass.1 without a word (a join of two tables repeats such
    columns): the first kept, said; a column named like ours (crop, source, flag_*) was stored as
    catalogue_<name> while the summary listed it by the name it no longer has."""
    root = tmp_path / "survey"
    for k in range(2):
        save_image(root / f"g{k}.png", galaxy_rgb(48, seed=k))
    (root / "cat.csv").write_text("id,klass,ra,klass\ng0,a,1,b\ng1,b,2,a\n")
    with caplog.at_level("INFO", logger="morphospace"):
        cat = ingest_to(root, tmp_path / "run")[1]
    assert cat.set_index("id")["klass"].to_dict() == {"g0": "a", "g1": "b"} and "klass.1" not in cat.columns
    assert "names a column twice (klass): the first of each kept, the others left out" in caplog.text
    (root / "cat.csv").write_text("id,source,crop,klass\ng0,x,1,a\ng1,y,2,b\n")
    with caplog.at_level("INFO", logger="morphospace"):
        summary, cat, _, _ = ingest_to(root, tmp_path / "run")
    assert summary["label_columns"] == ["catalogue_source", "catalogue_crop", "klass"]
    assert set(summary["label_columns"]) <= set(cat.columns)
    assert "catalogue column(s) source, crop named like the ingest's own: kept as catalogue_source, catalogue_crop" \
        in caplog.text
    # a renamed column meets the catalogue's own of that name (an exported results table ingested
    # again): one overwrote the other, the log saying both were kept
    (root / "cat.csv").write_text("id,crop,catalogue_crop,cube_index,catalogue_cube_index\ng0,m0,o0,0,0\ng1,m1,o1,1,10\n")
    summary, cat, _, _ = ingest_to(root, tmp_path / "run")
    by_id = cat.set_index("id")
    assert by_id.loc["g1", ["catalogue_crop", "catalogue_catalogue_crop"]].tolist() == ["o1", "m1"]
    assert by_id.loc["g1", "catalogue_cube_index"] == 10 and by_id.loc["g1", "catalogue_catalogue_cube_index"] == 1
    assert set(summary["label_columns"]) <= set(cat.columns)
    # classes that differ only in case are kept apart, and said (the comparisons count them as two)
    (root / "cat.csv").write_text("id,klass\ng0,Spiral\ng1,spiral\n")
    caplog.clear()
    with caplog.at_level("INFO", logger="morphospace"):
        cat = ingest_to(root, tmp_path / "run")[1]
    assert sorted(cat["klass"]) == ["Spiral", "spiral"]
    assert "catalogue column klass: classes differ only in case (Spiral, spiral): kept apart" in caplog.text


def test_a_catalogue_that_matches_no_image_is_a_user_error(tmp_path):
    root = tmp_path / "mismatch"
    for i in range(2):
        save_image(root / f"gal_{i:03d}.png", galaxy_rgb(32, seed=i))
    write_csv(root / "catalogue.csv", ["id", "kind"], [[1, "a"], [2, "b"]])
    with pytest.raises(UserError, match="none of the 2 catalogue rows matches an image"):
        read_survey(root, DataConfig())
    # a file column naming the images in another case: it quoted the folder's file as the row's and
    # advised naming the columns, which were found
    write_csv(root / "catalogue.csv", ["id", "file"], [["a", "GAL_000.PNG"], ["b", "GAL_001.PNG"]])
    with pytest.raises(UserError, match="upper and lower case only .*'GAL_000.PNG', the folder's 'gal_000.png'"):
        read_survey(root, DataConfig())


def test_catalogue_ids_written_as_file_names_are_read_as_the_file_column(tmp_path, caplog):
    """A catalogue ``id,morph`` whose ids are the images' file names (587722952767439450.jpeg) matched no
    image by stem, and the error quoted the same name twice ("its first row: id '587722952767439450.jpeg';
    the folder's first image: '587722952767439450.jpeg'"): they are the file column, and each id its stem."""
    import logging

    root = tmp_path / "named"
    for i in range(3):
        save_image(root / f"58772295276743945{i}.jpeg", galaxy_rgb(48, seed=i))
    write_csv(tmp_path / "ext.csv", ["id", "morph"], [[f"58772295276743945{i}.jpeg", m]
                                                      for i, m in enumerate(("spiral", "elliptical", "spiral"))])
    with caplog.at_level(logging.INFO, logger="morphospace"):
        survey = read_survey(root, DataConfig(catalogue=str(tmp_path / "ext.csv")))
    assert [r.id for r in survey.records] == [f"58772295276743945{i}" for i in range(3)]
    assert [Path(r.source).name for r in survey.records] == [f"58772295276743945{i}.jpeg" for i in range(3)]
    assert not any(r.flags for r in survey.records) and list(survey.labels["morph"]) == ["spiral", "elliptical", "spiral"]
    assert "column id holds the images' file names" in caplog.text
    # the same ids beside a folder without catalogue: the galaxies are the same ones
    bare = read_survey(root, DataConfig())
    assert [r.id for r in bare.records] == [r.id for r in survey.records]
    # ids that are stems stay ids, even where one is also a file's whole name
    write_csv(tmp_path / "ext.csv", ["id", "morph"], [[f"58772295276743945{i}", "x"] for i in range(3)])
    survey = read_survey(root, DataConfig(catalogue=str(tmp_path / "ext.csv")))
    assert [r.id for r in survey.records] == [f"58772295276743945{i}" for i in range(3)]


def test_a_catalogue_with_a_file_column_alone_takes_ids_from_the_file_names(tmp_path):
    """A catalogue ``file,morph`` was refused: "has no id column: name it with --id-column". Each id is
    the file's name stem, the id that image gets in a folder without catalogue."""
    root = tmp_path / "files"
    for name in ("a.png", "b.tif", "sub/c.jpg"):
        save_image(root / name, galaxy_rgb(48, seed=1))
    write_csv(root / "cat.csv", ["file", "morph"], [["a.png", "spiral"], ["b.tif", "elliptical"],
                                                   ["sub/c.jpg", "spiral"]])
    survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == ["a", "b", "c"]
    assert [Path(r.source).name for r in survey.records] == ["a.png", "b.tif", "c.jpg"]
    assert not any(r.flags for r in survey.records)
    assert list(survey.labels.columns) == ["morph"] and list(survey.labels["morph"]) == ["spiral", "elliptical", "spiral"]
    # neither an id nor a file column: both options named
    write_csv(root / "cat.csv", ["morph"], [["spiral"]])
    with pytest.raises(UserError, match="neither an id column nor a file column: name one with --id-column or "
                                        "--file-column"):
        read_survey(root, DataConfig())


def test_ids_from_file_names_that_two_files_share_are_refused_and_a_mixed_catalogue_keeps_its_ids(tmp_path):
    """A folder per class with the same file names (spiral/000.png, elliptical/000.png), or a.jpg beside
    a.png, would give two galaxies one id from the file names, and the second was dropped as a duplicate
    with a flag: refused in one line, naming both files. A catalogue whose ids are partly file names
    and partly stems keeps its ids as written: each row matched as before."""
    root = tmp_path / "classes"
    for name in ("spiral/000.png", "elliptical/000.png"):
        save_image(root / name, galaxy_rgb(48, seed=2))
    write_csv(root / "cat.csv", ["file", "morph"], [["spiral/000.png", "spiral"], ["elliptical/000.png", "elliptical"]])
    with pytest.raises(UserError, match="'spiral/000.png' and 'elliptical/000.png' would both be galaxy '000'"):
        read_survey(root, DataConfig())
    twins = tmp_path / "twins"
    for name in ("a.jpg", "a.png", "b.png"):
        save_image(twins / name, galaxy_rgb(48, seed=3))
    write_csv(tmp_path / "ids.csv", ["id", "morph"], [["a.jpg", "x"], ["a.png", "y"], ["b.png", "z"]])
    with pytest.raises(UserError, match="would both be galaxy 'a'"):
        read_survey(twins, DataConfig(catalogue=str(tmp_path / "ids.csv")))
    mixed = tmp_path / "mixed"
    for name in ("a.png", "b.png", "c.png"):
        save_image(mixed / name, galaxy_rgb(48, seed=4))
    write_csv(tmp_path / "mixed.csv", ["id", "morph"], [["a.png", "x"], ["b.png", "y"], ["c", "z"]])
    survey = read_survey(mixed, DataConfig(catalogue=str(tmp_path / "mixed.csv")))
    by_id = {r.id: r for r in survey.records}
    assert "c" in by_id and not by_id["c"].flags  # matched by its stem, as before
    # one file named twice by two spellings of its path is no clash (it stopped the ingest, "the files
    # 'spiral/000.png' and './spiral/000.png' would both be galaxy '000'"): the second row is flagged and
    # kept out, as when the same spelling comes twice (that too is the same file: duplicate_file)
    from morphospace.data.ingest.records import flag_duplicates

    for second in ("./spiral/000.png", str(root / "spiral/000.png"), "spiral/../spiral/000.png", "spiral/000.png"):
        write_csv(root / "cat.csv", ["file", "morph"], [["spiral/000.png", "spiral"], [second, "again"]])
        records = read_survey(root, DataConfig()).records
        flag_duplicates(records)
        assert [r.id for r in records[:2]] == ["000", "000"] and not records[0].flags
        # the same file an earlier row holds: duplicate_file, as the README says (duplicate_id alone before)
        assert {"duplicate_id", "duplicate_file"} <= records[1].flags and not records[1].decodable, second


def test_images_in_sub_folders_of_a_folder_survey_are_said_not_read(tmp_path, caplog):
    import logging

    root = tmp_path / "mixed"
    for name in ("a.png", "b.png", "sub/c.png", "sub/deeper/d.png", ".hidden/e.png", "sub/notes.txt"):
        save_image(root / name, galaxy_rgb(32)) if name.endswith(".png") else (root / name).write_text("x")
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == ["a", "b"]
    assert "2 image file(s) in sub-folders" in caplog.text


def test_a_folder_of_class_or_batch_sub_folders_alone_is_read_with_its_sub_folder_as_a_label(tmp_path, caplog):
    """A folder of class sub-folders (spiral/, elliptical/), the layout of many labelled cutout sets, was
    refused ("no known survey layout"; "no images" with --layout folder), though it held them: every image
    is read, its id its file name, its sub-folder the label column 'folder'."""
    import logging

    classes = tmp_path / "classes"
    for name in ("spiral/s1.png", "elliptical/e1.png", "elliptical/e2.png", "odd/deeper/x1.png", ".hidden/h.png"):
        save_image(classes / name, galaxy_rgb(32))
    (classes / "spiral" / "notes.txt").write_text("not a galaxy")
    assert detect_layout(classes) == "folder"
    for cfg in (DataConfig(), DataConfig(layout="folder")):
        with caplog.at_level(logging.INFO, logger="morphospace"):
            survey = read_survey(classes, cfg)
        assert [r.id for r in survey.records] == ["e1", "e2", "x1", "s1"]
        assert survey.labels["folder"].tolist() == ["elliptical", "elliptical", "odd/deeper", "spiral"]
        assert all(r.decodable and not r.flags for r in survey.records)
    assert "4 image file(s) in 3 sub-folder(s), none at the top" in caplog.text
    # two files that would be one galaxy are refused, in one line naming both
    save_image(classes / "spiral" / "e1.png", galaxy_rgb(32, seed=3))
    with pytest.raises(UserError, match=r"the images 'elliptical/e1.png' and 'spiral/e1.png' of its sub-folders "
                                        r"would both be galaxy 'e1'.*give a catalogue CSV with an id column"):
        read_survey(classes, DataConfig())
    # sub-folders of FITS cutouts alone: the fits layout, read the same way
    batches = tmp_path / "batches"
    for b in ("000", "001"):
        for f in tiny_fits_folder(batches / b, n=2).glob("*.fits"):
            f.rename(f.with_name(f"b{b}_{f.name}"))  # file names unique across the batches
    assert detect_layout(batches) == "fits"
    survey = read_survey(batches, DataConfig())
    assert set(survey.labels["folder"]) == {"000", "001"} and all(r.kind == "fits" for r in survey.records)


def test_linked_sub_folders_are_read_as_sub_folders(tmp_path, caplog):
    """A sub-folder that is a link (a batch of cutouts on another disk) was left out without a word,
    and a catalogue naming its images was refused: "no known survey layout"."""
    import logging

    batch = tmp_path / "elsewhere" / "batch"
    for i in range(3):
        save_image(batch / f"g{i}.png", galaxy_rgb(32, seed=i))
    root = tmp_path / "survey"
    save_image(root / "top.png", galaxy_rgb(32, seed=9))
    (root / "batch").symlink_to(batch, target_is_directory=True)
    (batch / "loop").symlink_to(root, target_is_directory=True)  # a link to a folder above: no endless walk
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        assert [r.id for r in read_survey(root, DataConfig()).records] == ["top"]
    assert "3 image file(s) in sub-folders" in caplog.text
    (root / "top.png").unlink()
    write_csv(root / "catalogue.csv", ["id", "file"], [[f"g{i}", f"batch/g{i}.png"] for i in range(2)])
    assert detect_layout(root) == "folder"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        assert [r.id for r in read_survey(root, DataConfig()).records] == ["g0", "g1"]
    assert "1 image file(s) in sub-folders of" in caplog.text and "g2.png" in caplog.text


def test_a_catalogue_of_images_in_a_sub_folder_is_found_and_what_it_does_not_name_said(tmp_path, caplog):
    """Images in img/ named by a top-level CSV: "no known survey layout" (and with --layout folder,
    the images of img/ that no row named were dropped without a word)."""
    import logging

    root = tmp_path / "survey"
    for i in range(4):
        save_image(root / "img" / f"g{i}.png", galaxy_rgb(32, seed=i))
    write_csv(root / "labels.csv", ["id", "file", "kind"], [[f"g{i}", f"img/g{i}.png", "e"] for i in range(3)])
    assert detect_layout(root) == "folder"
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == ["g0", "g1", "g2"]
    assert "1 image file(s) in sub-folders of" in caplog.text and "img/g3.png" in caplog.text
    # the catalogue elsewhere, named by --catalogue: read as a folder too
    outside = write_csv(tmp_path / "cat.csv", ["id", "file"], [["g0", "img/g0.png"]])
    (root / "labels.csv").unlink()
    assert [r.id for r in read_survey(root, DataConfig(catalogue=str(outside))).records] == ["g0"]


def test_fits_in_small_flux_units_are_galaxies_not_blank_frames(tmp_path):
    """An f_nu image in cgs units (values near 1e-25) was flagged blank ("standard deviation 0"):
    its variance underflowed in float32. The same galaxy at any scale is ingested alike."""
    from astropy.io import fits

    yy, xx = np.mgrid[:64, :64] - 31.5
    galaxy = np.exp(-(xx**2 + yy**2) / 60) + np.random.default_rng(0).normal(0, 0.01, (64, 64))
    root = tmp_path / "fits"
    root.mkdir()
    for name, scale, dtype in (("unit", 1.0, np.float32), ("cgs32", 1e-25, np.float32), ("cgs64", 1e-30, np.float64)):
        fits.PrimaryHDU((galaxy * scale).astype(dtype)).writeto(root / f"{name}.fits")
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert not cat["flag_blank"].any() and cube.shape[0] == 3
    rows = np.asarray(cube, dtype=np.float32)
    np.testing.assert_allclose(rows[1], rows[0], atol=2e-3)


def test_fits_band_cubes_with_the_bands_last_are_read_as_such(tmp_path):
    """An RGB array saved as it is, (64, 64, 3), was read bands-first: 64 bands of 3 x 64 pixels, every
    file flagged too_small. A few bands on the last axis and frames on the others are bands last."""
    from astropy.io import fits

    yy, xx = np.mgrid[:64, :64] - 31.5
    galaxy = np.exp(-(xx**2 + yy**2) / 60)
    first, last = tmp_path / "first", tmp_path / "last"
    for folder, cube in ((first, np.stack([galaxy, 0.5 * galaxy, 0.25 * galaxy])), (last, None)):
        folder.mkdir()
        for i in range(2):
            data = cube if cube is not None else np.stack([galaxy, 0.5 * galaxy, 0.25 * galaxy], axis=-1)
            fits.PrimaryHDU(data.astype(np.float32)).writeto(folder / f"g{i}.fits")
    _, cat_first, cube_first, _ = ingest_to(first, tmp_path / "r_first")
    summary, cat_last, cube_last, _ = ingest_to(last, tmp_path / "r_last")
    assert cube_last.shape == (2, 3, 64, 64) and not summary["flags"]
    np.testing.assert_allclose(np.asarray(cube_last, np.float32), np.asarray(cube_first, np.float32), atol=1e-3)


def test_fits_of_mixed_band_counts_take_the_most_common_and_say_so(tmp_path, caplog):
    """One 2-D cutout first among band cubes: the survey is the cubes' colour (the first file no
    longer decides), the log says the files differ, and the grey frame is flagged fewer_bands."""
    import logging

    from astropy.io import fits

    root = tiny_fits_folder(tmp_path / "mixed", n=4, bands=3)
    fits.PrimaryHDU(galaxy_flux(64, seed=9)).writeto(root / "a_grey.fits")
    # and a five-band frame: its last two bands left without a word
    fits.PrimaryHDU(np.stack([galaxy_flux(64, seed=8)] * 5)).writeto(root / "z_five.fits")
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        summary, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert cube.shape == (6, 3, 64, 64) and "do not all have the same number of bands" in caplog.text
    assert "frames with more keep their first three" in caplog.text
    assert list(cat.loc[cat["flag_fewer_bands"], "id"]) == ["a_grey"] and summary["flags"]["fewer_bands"]["count"] == 1
    _, grey_cat, grey, _ = ingest_to(root, tmp_path / "grey", preprocess__colour="grey")
    assert grey.shape == (6, 1, 64, 64) and not grey_cat["flag_fewer_bands"].any()  # averaged: nothing lost


def test_images_beside_an_images_folder_are_said_not_read(tmp_path, caplog):
    import logging

    root = tmp_path / "beside"
    for name in ("images/a.png", "images/b.png", "c.png", "d.png"):
        save_image(root / name, galaxy_rgb(32))
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == ["a", "b"]
    assert "2 image file(s) at the top of" in caplog.text
    caplog.clear()  # named by a catalogue's file column, they are read: nothing to say
    write_csv(root / "catalogue.csv", ["id", "file"], [["a", "images/a.png"], ["b", "images/b.png"],
                                                      ["c", "c.png"], ["d", "d.png"]])
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == ["a", "b", "c", "d"] and "not read" not in caplog.text


def test_your_own_catalogue_for_a_survey_with_its_own_labels(tiny_sdss_gz1, tmp_path, caplog):
    """`--catalogue mine.csv` on a folder that looks like sdss-gz1 reads its images with that
    catalogue (said in the log); with `--layout sdss-gz1` named too, it is refused in one line."""
    import logging

    ids = [p.stem for p in sorted((tiny_sdss_gz1 / "images").iterdir())]
    write_csv(tmp_path / "mine.csv", ["objid", "my_class", "zphot"], [[i, "ab"[k % 2], 0.1 * k] for k, i in enumerate(ids)])
    with caplog.at_level(logging.INFO, logger="morphospace"):
        _, cat, cube, _ = ingest_to(tiny_sdss_gz1, tmp_path / "run", data__catalogue=str(tmp_path / "mine.csv"))
    assert "my_class" in cat and "zphot" in cat and "gz1_class" not in cat and cube.shape[0] == len(ids)
    assert "looks like a sdss-gz1 survey; read as a folder of images" in caplog.text
    with pytest.raises(UserError, match="reads its own labels, not the catalogue"):
        read_survey(tiny_sdss_gz1, DataConfig(layout="sdss-gz1", catalogue=str(tmp_path / "mine.csv")))



def test_long_integers_keep_every_digit():
    """A 19-digit column (SDSS's specObjID beside the id) went through a float: 60 distinct values
    read back as 2, the export wrote 2.99e+18."""
    import pandas as pd

    from morphospace.data.ingest.tables import typed

    spec = typed(pd.Series(["2990000000000000000", "2990000000000000007", "-9223372036854775808", ""]))
    assert spec.dtype == "Int64" and spec.tolist()[:3] == [2990000000000000000, 2990000000000000007, -2**63]
    beyond = typed(pd.Series(["99999999999999999999", "1"]))  # no int64 holds it: kept as written
    assert beyond.dtype == "string" and beyond.tolist() == ["99999999999999999999", "1"]
    among_fractions = typed(pd.Series(["0.5", "2990000000000000007"]))
    assert among_fractions.dtype == "string" and among_fractions.iloc[1] == "2990000000000000007"
    assert typed(pd.Series(["0.5", "123456789012345"])).dtype == "float64"  # 15 digits: a float holds them


def test_codes_written_with_leading_zeros_keep_them(tmp_path):
    """A tile, field or plate column written 000, 001, ... is a code: stored as text, its zeros
    kept (it became the integers 0, 1, ... and the export read 1 for 001); plain numbers stay numbers."""
    import pandas as pd

    from morphospace.data.ingest.tables import typed

    codes = typed(pd.Series(["000", "001", "017", ""]))
    assert codes.dtype == "string" and codes.tolist()[:3] == ["000", "001", "017"] and pd.isna(codes.iloc[3])
    assert typed(pd.Series(["0", "1", "17"])).dtype == "Int64"
    assert typed(pd.Series(["012.5", "3"])).dtype == "float64"
    root = tmp_path / "s"
    for i in range(3):
        save_image(root / f"g{i}.png", galaxy_rgb(48, seed=i))
    write_csv(root / "catalogue.csv", ["id", "file", "tile"], [[f"g{i}", f"g{i}.png", f"00{i}"] for i in range(3)])
    _, cat, _, _ = ingest_to(root, tmp_path / "run")
    assert cat["tile"].tolist() == ["000", "001", "002"]


def test_a_grey_frame_with_alpha_is_a_grey_frame(tmp_path):
    """A grey PNG with an alpha channel (mode LA) in a colour survey is flagged fewer_bands as a
    plain grey one is (it was turned into RGB first and passed as colour), its pixels the same."""
    root = tmp_path / "s"
    for i in range(3):
        save_image(root / f"c{i}.png", galaxy_rgb(48, seed=i))
    grey = galaxy_rgb(48, seed=5)[..., 0]
    Image.fromarray(grey, "L").save(root / "g_l.png")
    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA").save(root / "g_la.png")
    _, cat, cube, _ = ingest_to(root, tmp_path / "run")
    assert sorted(cat.loc[cat["flag_fewer_bands"], "id"]) == ["g_l", "g_la"]
    rows = cat.set_index("id")["cube_index"]
    np.testing.assert_array_equal(cube[rows["g_l"]], cube[rows["g_la"]])


def test_a_galaxy10_file_beside_a_folder_survey_s_images_is_said(tmp_path, caplog):
    """An .h5 beside the images of a folder survey was passed over without a word (it may hold
    galaxies of its own)."""
    root = tmp_path / "mixed"
    for i in range(2):
        save_image(root / f"g{i}.png", galaxy_rgb(32, seed=i))
    tiny_galaxy10(root / "Galaxy10.h5", n=3)
    with caplog.at_level("INFO", logger="morphospace"):
        survey = read_survey(root, DataConfig())
    assert survey.layout == "folder" and len(survey.records) == 2
    assert "Galaxy10.h5 is left out of this folder survey" in caplog.text


def test_a_five_band_fits_cube_with_the_bands_last_is_read_as_five_bands(tmp_path):
    """(64, 64, 5), a grizy cube saved bands last, was read as 64 bands of 5 x 64 pixels: every file
    flagged too_small and the survey lost. Read as five bands, it is the bands-first cube's survey."""
    from astropy.io import fits

    from morphospace.data.ingest.fits_frames import bands_last

    yy, xx = np.mgrid[:64, :64] - 31.5
    bands = np.stack([np.exp(-(xx**2 + yy**2) / (40 + 10 * b)) for b in range(5)])
    first, last = tmp_path / "first", tmp_path / "last"
    for folder, data in ((first, bands), (last, np.moveaxis(bands, 0, -1))):
        folder.mkdir()
        for i in range(2):
            fits.PrimaryHDU(data.astype(np.float32)).writeto(folder / f"g{i}.fits")
    _, _, cube_first, _ = ingest_to(first, tmp_path / "r_first")
    summary, _, cube_last, _ = ingest_to(last, tmp_path / "r_last")
    assert cube_last.shape == cube_first.shape == (2, 3, 64, 64) and not summary["flags"]
    np.testing.assert_allclose(np.asarray(cube_last, np.float32), np.asarray(cube_first, np.float32), atol=1e-3)
    assert not bands_last((5, 64, 64)) and not bands_last((64, 64, 64)) and not bands_last((3, 8, 8))


def test_the_band_sample_does_not_alias_with_a_pattern_in_the_file_list():
    """58 files of which every third is grey: an even spacing opened every third file, all grey, and a
    colour survey (38 of 58) became a grey cube; each sampled file is now drawn from its own stretch."""
    from morphospace.data.ingest.files import spread_sample

    paths = [Path(f"f{i:03d}_{'grey' if i % 3 == 0 else 'rgb'}.fits") for i in range(58)]
    picked = spread_sample(paths, 20)
    assert len(picked) == 20 and len(set(picked)) == 20
    grey = sum("grey" in p.name for p in picked)
    assert 2 <= grey < 10, grey  # about a third, as in the list
    assert picked == spread_sample(paths, 20)  # the same every time
    assert picked[0] in paths[:3] and picked[-1] in paths[-3:]  # spread over the whole list
    assert spread_sample(paths[:5], 20) == paths[:5] and spread_sample([], 20) == []


def test_a_parquet_catalogue_s_whole_number_floats_are_read_as_integers(tmp_path):
    """An integer id column with one missing id is stored as floats: ids became "1.0", "2.0", which the
    files (1.png) and any later labels file naming 1 never matched."""
    root = tmp_path / "pq"
    for k in range(1, 4):
        save_image(root / "images" / f"{k}.png", galaxy_rgb(48, seed=k))
    pd.DataFrame({"id": [1.0, 2.0, np.nan], "file": ["images/1.png", "images/2.png", "images/3.png"],
                  "ttype": [1.0, -2.0, 3.0], "z": [0.1, 0.25, np.nan]}).to_parquet(root / "cat.parquet")
    _, cat, cube, _ = ingest_to(root, tmp_path / "run", data__catalogue=str(root / "cat.parquet"))
    assert cat["id"].tolist()[:2] == ["1", "2"] and cube.shape[0] == 2  # the row without an id: flagged
    assert cat["ttype"].tolist() == [1, -2, 3] and cat["z"].tolist()[:2] == [0.1, 0.25]


def test_ids_with_dots_and_compressed_fits_names(tmp_path):
    """Galaxies named by position with no extension (J150.12+02.51, J150.12+02.98) were both read
    as J150.12+02, the second flagged a duplicate; SDSS's bzip2 frames (.fits.bz2) were flagged
    not_image, and a .fit.fz file got the id 'c.fit'."""
    import bz2

    from astropy.io import fits

    from morphospace.data.ingest.files import stem

    assert [stem(n) for n in ("J150.12+02.51", "x.jfif", "g.JPG", "1237.5", "c.fit.fz", "f.fits.bz2")] == [
        "J150.12+02.51", "x", "g", "1237.5", "c", "f"]
    root = tmp_path / "survey"
    root.mkdir()
    for name, seed in (("J150.12+02.51", 1), ("J150.12+02.98", 2)):  # PNGs without an extension
        Image.fromarray(galaxy_rgb(48, seed=seed)).save(root / name, format="PNG")
    frame = np.asarray(galaxy_rgb(48, seed=3), np.float32).mean(axis=2)
    fits.PrimaryHDU(frame).writeto(tmp_path / "f.fits")
    (root / "frame-r-000094.fits.bz2").write_bytes(bz2.compress((tmp_path / "f.fits").read_bytes()))
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run", preprocess__colour="grey")
    assert sorted(cat["id"]) == ["J150.12+02.51", "J150.12+02.98", "frame-r-000094"]
    assert cube.shape[0] == 3 and not summary["flags"]


def test_zoobot_and_galaxy_zoo_desi_catalogues_are_read_by_their_own_columns(tmp_path):
    """Zoobot's catalogue names each galaxy by id_str and its image by file_loc (an absolute path); a Galaxy
    Zoo DESI one by dr8_id, beside an objid that numbers galaxies within a brick only: reading objid as the
    id flagged every galaxy sharing one a duplicate and left it out."""
    root = tmp_path / "desi"
    for i in range(3):
        save_image(root / "images" / f"100_{i}.png", galaxy_rgb(32, seed=i))
        save_image(root / "images" / f"200_{i}.png", galaxy_rgb(32, seed=10 + i))
    rows = [[f"{b}_{i}", str(i), str(root / "images" / f"{b}_{i}.png"), f"{0.1 * i:.1f}"] for b in (100, 200)
            for i in range(3)]
    write_csv(root / "zoobot.csv", ["id_str", "objid", "file_loc", "smooth-or-featured_smooth_fraction"], rows)
    survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == [r[0] for r in rows] and not any(r.flags for r in survey.records)
    assert [Path(r.source).name for r in survey.records] == [f"{r[0]}.png" for r in rows]
    (root / "zoobot.csv").unlink()
    write_csv(root / "desi.csv", ["dr8_id", "objid", "ra", "dec"], [[r[0], r[1], "150.1", "2.2"] for r in rows])
    survey = read_survey(root, DataConfig())
    assert [r.id for r in survey.records] == [r[0] for r in rows] and not any(r.flags for r in survey.records)


@pytest.mark.parametrize("suffix", ["", "-dr8"])
def test_galaxy_zoo_decals_vote_fractions_give_gz_class_and_morph3(tmp_path, suffix):
    """A Galaxy Zoo DECaLS / DESI catalogue's fractions are of the volunteers who answered each question:
    the classes are those of the Kaggle rules once each is multiplied by the share who reached it."""
    root = tmp_path / "decals"
    q = {k: f"{k}{suffix}" for k in ("smooth-or-featured", "disk-edge-on", "has-spiral-arms", "bar", "merging")}
    header = ["iauname", f"{q['smooth-or-featured']}_smooth_fraction", f"{q['smooth-or-featured']}_featured-or-disk_fraction",
              f"{q['smooth-or-featured']}_artifact_fraction", f"{q['disk-edge-on']}_yes_fraction",
              f"{q['has-spiral-arms']}_yes_fraction", f"{q['bar']}_strong_fraction", f"{q['bar']}_weak_fraction",
              f"{q['merging']}_merger_fraction"]
    rows = {  # smooth, featured, artifact, edge-on yes, arms yes, bar strong, bar weak, merger -> class
        "J1": ([0.8, 0.2, 0.0, None, None, None, None, 0.1], "smooth", "elliptical"),  # deeper questions unreached
        "J2": ([0.1, 0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0], "edge_on", "edge_on"),
        "J3": ([0.1, 0.9, 0.0, 0.0, 0.9, 0.5, 0.3, 0.0], "barred_spiral", "spiral"),
        "J4": ([0.1, 0.9, 0.0, 0.1, 0.8, 0.1, 0.1, 0.0], "spiral", "spiral"),
        # arms said yes by 0.8 of those asked, but only 0.55 x 0.5 of all reached the question: not a spiral
        "J5": ([0.45, 0.55, 0.0, 0.5, 0.8, 0.0, 0.0, 0.0], "uncertain", None),
        "J6": ([0.2, 0.2, 0.6, None, None, None, None, None], "artifact", None),
        "J7": ([0.3, 0.7, 0.0, 0.0, 0.2, 0.0, 0.0, 0.6], "merger", None),
        "J8": ([None, None, None, None, None, None, None, None], None, None),  # no votes at all: no class
    }
    for gid in rows:
        save_image(root / f"{gid}.png", galaxy_rgb(32))
    write_csv(root / "gz.csv", header, [[gid, *values] for gid, (values, _, _) in rows.items()])
    survey = read_survey(root, DataConfig())
    got = survey.labels.set_index(pd.Index([r.id for r in survey.records]))
    for gid, (_, gz, m3) in rows.items():
        assert (None if pd.isna(got.loc[gid, "gz_class"]) else got.loc[gid, "gz_class"]) == gz, gid
        assert (None if pd.isna(got.loc[gid, "morph3"]) else got.loc[gid, "morph3"]) == m3, gid
    # a catalogue's own morph3 is its own: nothing derived
    write_csv(root / "gz.csv", header + ["morph3"], [[gid, *values, "mine"] for gid, (values, _, _) in rows.items()])
    labels = read_survey(root, DataConfig()).labels
    assert "gz_class" not in labels and set(labels["morph3"]) == {"mine"}


def test_galaxy_zoo_2_class_strings_give_morph3(tmp_path):
    """Hart et al. 2016's gz2_class ("Ei", "SBc2m", "Ser", "A") is the label most SDSS samples come with."""
    root = tmp_path / "gz2"
    classes = {"1": "Ei", "2": "Er", "3": "Sc2m", "4": "SBb?t", "5": "Ser", "6": "Seb", "7": "A", "8": ""}
    for gid in classes:
        save_image(root / f"{gid}.png", galaxy_rgb(32))
    write_csv(root / "gz2.csv", ["dr7objid", "gz2_class"], [[gid, c] for gid, c in classes.items()])
    labels = read_survey(root, DataConfig()).labels
    got = [None if pd.isna(v) else v for v in labels["morph3"]]
    assert got == ["elliptical", "elliptical", "spiral", "spiral", "edge_on", "edge_on", None, None]
    # a gz2_class column of other words is someone else's: no morph3 made up from it
    write_csv(root / "gz2.csv", ["dr7objid", "gz2_class"], [[gid, "Sunny"] for gid in classes])
    assert "morph3" not in read_survey(root, DataConfig()).labels


def test_galaxy_zoo_1_vote_fractions_give_gz1_name_and_morph3(tmp_path):
    """Lintott et al. 2011's table gives each answer's vote fraction: the largest names the class, as
    sdss-gz1's gz1_name does, and morph3 follows (either winding a spiral)."""
    root = tmp_path / "gz1"
    votes = {"1": [0.8, 0.1, 0.0, 0.1, 0.0, 0.0], "2": [0.1, 0.2, 0.6, 0.1, 0.0, 0.0],
             "3": [0.2, 0.1, 0.1, 0.6, 0.0, 0.0], "4": [0.1, 0.1, 0.1, 0.1, 0.1, 0.5], "5": [None] * 6}
    for gid in votes:
        save_image(root / f"{gid}.png", galaxy_rgb(32))
    write_csv(root / "gz1.csv", ["OBJID", "P_EL", "P_CW", "P_ACW", "P_EDGE", "P_DK", "P_MG"],
              [[gid, *v] for gid, v in votes.items()])
    labels = read_survey(root, DataConfig()).labels
    assert [None if pd.isna(v) else v for v in labels["gz1_name"]] == ["elliptical", "spiral_acw", "edge_on", "merger", None]
    assert [None if pd.isna(v) else v for v in labels["morph3"]] == ["elliptical", "spiral", "edge_on", None, None]
