"""Sky positions at ingest: RA/Dec columns under their common names, sexagesimal strings, the WCS of
FITS cutouts, bad values flagged and kept, the export, and the synthetic survey's mock positions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from fixtures import galaxy_flux, ingest_to, tiny_folder_survey, write_csv

from morphospace.data.ingest import FLAG_DESCRIPTIONS
from morphospace.data.ingest.positions import find_position_columns, parse_positions, wcs_centre
from morphospace.errors import UserError


def _survey(tmp_path, header: list[str], rows: list[list]):
    """Six rendered galaxies g0..g5 with a catalogue of ``header`` (its first column the id)."""
    root = tiny_folder_survey(tmp_path / "data", n=6, catalogue=False, formats=("png",), size=48)
    write_csv(root / "catalogue.csv", header, rows)
    return root


# --- catalogue columns ---------------------------------------------------------------------------

@pytest.mark.parametrize("ra, dec", [("ra", "dec"), ("RA", "DEC"), ("RA", "Dec"), ("ra_deg", "dec_deg"),
                                     ("RAJ2000", "DEJ2000"), ("raj2000", "dej2000"), ("ra_j2000", "dec_j2000"),
                                     ("alpha", "delta"), ("RA_ICRS", "DE_ICRS")])
def test_every_common_name_becomes_ra_and_dec_in_degrees(tmp_path, ra, dec):
    assert find_position_columns(["id", "morph", ra, dec]) == (ra, dec)
    root = _survey(tmp_path, ["id", ra, dec, "morph"],
                   [[f"g{i}", 150.0 + i / 10, -2.5 + i, "disk" if i % 2 else "round"] for i in range(6)])
    _, cat, _, _ = ingest_to(root, tmp_path / "run", preprocess__size=16)
    assert cat["ra"].dtype == np.float64 and cat["dec"].dtype == np.float64
    np.testing.assert_allclose(cat["ra"], 150.0 + np.arange(6) / 10)
    np.testing.assert_allclose(cat["dec"], -2.5 + np.arange(6))
    # the columns read are replaced, not repeated (FITS column names ignore case)
    assert [c for c in cat.columns if c.lower() in (ra.lower(), dec.lower(), "ra", "dec")] == ["ra", "dec"]
    assert "morph" in cat and not cat["flag_bad_position"].any()


def test_names_that_are_not_a_pair_are_left_alone():
    assert find_position_columns(["id", "ra"]) is None  # RA without Dec: not a position
    assert find_position_columns(["id", "rad", "decade"]) is None
    assert find_position_columns(["DEC", "RA", "raj2000", "dej2000"]) == ("RA", "DEC")  # the first pair wins


def test_sexagesimal_strings_are_hours_for_ra_and_degrees_for_dec():
    ra, dec, problems = parse_positions(
        ["12:34:56.7", "12h34m56.7s", "12 34 56.7", "188.73625", "00:00:00"],
        ["+12:34:56", "12d34m56s", "12 34 56", "12.582222", "-00:30:00"], ("RA", "Dec"))
    assert not problems
    np.testing.assert_allclose(ra, [188.73625] * 4 + [0.0], atol=1e-9)
    np.testing.assert_allclose(dec[:4], 12 + 34 / 60 + 56 / 3600, atol=1e-6)
    assert dec[4] == pytest.approx(-0.5)  # the sign of a declination between 0 and -1 degree is kept
    # impossible clock readings are problems, not wrapped values
    ra, dec, problems = parse_positions(["24:00:00", "12:60:00", "1 2 3 4", "12:34"], ["1", "1", "1", "+12:30"])
    assert sorted(problems) == [0, 1, 2] and np.isnan(ra[:3]).all() and np.isnan(dec[:3]).all()
    assert (ra[3], dec[3]) == pytest.approx((188.5, 12.5))


def test_sexagesimal_positions_through_the_ingest(tmp_path):
    root = _survey(tmp_path, ["id", "RA", "Dec"],
                   [["g0", "12:34:56.7", "+12:34:56"], ["g1", "00:00:01", "-89:59:59"], ["g2", "", ""],
                    ["g3", "23:59:59.9", "+00:00:00"], ["g4", "1.5", "2.5"], ["g5", "10 00 00", "-45 00 00"]])
    summary, cat, _, _ = ingest_to(root, tmp_path / "run", preprocess__size=16)
    assert cat["ra"].iloc[0] == pytest.approx(188.73625) and cat["dec"].iloc[1] == pytest.approx(-89.99972, abs=1e-5)
    assert np.isnan(cat["ra"].iloc[2]) and np.isnan(cat["dec"].iloc[2])  # an empty cell: no position, no flag
    assert cat["ra"].iloc[5] == pytest.approx(150.0) and cat["dec"].iloc[5] == pytest.approx(-45.0)
    assert not cat["flag_bad_position"].any() and "bad_position" not in summary["flags"]
    assert summary["n_positions"] == 5


# --- bad values: flagged, left empty, the galaxy kept ------------------------------------------------

def test_bad_positions_are_flagged_left_empty_and_the_galaxies_kept(tmp_path):
    root = _survey(tmp_path, ["id", "ra", "dec"],
                   [["g0", "10.0", "95.0"], ["g1", "400", "0"], ["g2", "-10", "5"], ["g3", "abc", "1"],
                    ["g4", "12.0", ""], ["g5", "nan", "3"]])
    summary, cat, cube, _ = ingest_to(root, tmp_path / "run", preprocess__size=16)
    assert len(cube) == 6 and (cat["cube_index"] >= 0).all()  # a bad position never costs a galaxy
    bad = cat.set_index("id")["flag_bad_position"]
    assert list(bad[bad].index) == ["g0", "g1", "g3", "g4", "g5"]
    assert cat.loc[cat["flag_bad_position"], ["ra", "dec"]].isna().all().all()
    assert cat["ra"].iloc[2] == pytest.approx(350.0) and cat["dec"].iloc[2] == pytest.approx(5.0)  # wrapped
    info = summary["flags"]["bad_position"]
    assert info["count"] == 5 and not info["excluded"] and info["meaning"] == FLAG_DESCRIPTIONS["bad_position"]
    details = info["details"]
    assert "95" in details["g0"] and "400" in details["g1"] and "abc" in details["g3"]
    assert "without" in details["g4"] and "without" in details["g5"]  # "nan" is a missing value, as an empty cell


def test_strict_refuses_a_bad_position(tmp_path):
    root = _survey(tmp_path, ["id", "ra", "dec"], [[f"g{i}", "10", "95" if i == 2 else "1"] for i in range(6)])
    with pytest.raises(UserError, match="bad_position"):
        ingest_to(root, tmp_path / "run", strict=True, preprocess__size=16)


def test_a_survey_without_positions_gets_no_position_columns(tiny_folder_survey, tmp_path):
    summary, cat, _, _ = ingest_to(tiny_folder_survey, tmp_path / "run", preprocess__size=16)
    assert "ra" not in cat and "dec" not in cat and not cat["flag_bad_position"].any()
    assert summary["n_positions"] == 0


def test_ra_without_dec_is_said(tiny_folder_survey, tmp_path, caplog):
    """An ra column without dec was kept as a label without a word (no position, no flag)."""
    cat = pd.read_csv(tiny_folder_survey / "catalogue.csv")
    cat.assign(RA=150.0 + 0.01 * np.arange(len(cat))).to_csv(tiny_folder_survey / "catalogue.csv", index=False)
    with caplog.at_level("WARNING", logger="morphospace"):
        summary, _, _, _ = ingest_to(tiny_folder_survey, tmp_path / "run", preprocess__size=16)
    assert summary["n_positions"] == 0
    assert any("RA without its partner column" in r.getMessage() for r in caplog.records)


# --- FITS cutouts: the WCS of the centre pixel -------------------------------------------------------

def _tan(ra0: float, dec0: float, crpix: float = 32.5, scale: float = 1e-4, **extra) -> dict:
    return {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": crpix, "CRPIX2": crpix, "CRVAL1": ra0,
            "CRVAL2": dec0, "CDELT1": -scale, "CDELT2": scale, "CUNIT1": "deg", "CUNIT2": "deg", **extra}


def test_wcs_centre_is_the_world_position_of_the_middle_pixel():
    # the reference pixel at the centre (1-based 32.5 of 64): the reference position itself
    assert wcs_centre(fits.Header(_tan(150.0, 2.0)), 64, 64) == pytest.approx((150.0, 2.0))
    # the reference pixel in the corner: the centre is 31.5 pixels of 1e-4 deg away on each axis
    ra, dec = wcs_centre(fits.Header(_tan(10.0, 20.0, crpix=1.0)), 64, 64)
    assert dec == pytest.approx(20.0 + 31.5e-4, abs=1e-7)
    assert ra == pytest.approx(10.0 - 31.5e-4 / np.cos(np.radians(20.0)), abs=1e-7)
    # a galactic WCS is converted to ICRS: (l, b) = (0, 0) is RA 266.405, Dec -28.936
    gal = {"CTYPE1": "GLON-TAN", "CTYPE2": "GLAT-TAN", "CRPIX1": 32.5, "CRPIX2": 32.5, "CRVAL1": 0.0,
           "CRVAL2": 0.0, "CDELT1": -1e-4, "CDELT2": 1e-4}
    assert wcs_centre(fits.Header(gal), 64, 64) == pytest.approx((266.40499, -28.93617), abs=1e-4)
    # no celestial WCS: no position, and no error
    assert wcs_centre(fits.Header({"OBJECT": "m51"}), 64, 64) is None
    assert wcs_centre(fits.Header({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR"}), 64, 64) is None
    with pytest.raises(ValueError, match="WCS"):
        wcs_centre(fits.Header({**_tan(10.0, 20.0), "CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"}), 64, 64)


def test_fits_cutouts_carry_their_wcs_position_into_the_catalogue(tmp_path):
    root = tmp_path / "fits"
    root.mkdir()
    headers = [_tan(150.0, 2.0), _tan(151.0, -3.0, crpix=1.0), {}, {**_tan(1.0, 2.0), "CTYPE1": "RA---XYZ",
                                                                    "CTYPE2": "DEC--XYZ"}]
    for i, h in enumerate(headers):
        hdu = fits.PrimaryHDU(galaxy_flux(64, seed=i))
        hdu.header.update(h)
        hdu.writeto(root / f"f{i}.fits")
    cube = fits.PrimaryHDU(galaxy_flux(64, seed=9, bands=3))  # a band cube, with a 2-D celestial WCS
    cube.header.update(_tan(200.0, 45.0))
    cube.writeto(root / "f4.fits")
    summary, cat, _, _ = ingest_to(root, tmp_path / "run", preprocess__size=16)
    pos = cat.set_index("id")[["ra", "dec", "flag_bad_position"]]
    assert tuple(pos.loc["f0", ["ra", "dec"]]) == pytest.approx((150.0, 2.0))
    assert pos.loc["f1", "dec"] == pytest.approx(-3.0 + 31.5e-4, abs=1e-7)
    assert pos.loc["f2", ["ra", "dec"]].isna().all() and not pos.loc["f2", "flag_bad_position"]  # no WCS
    assert pos.loc["f3", ["ra", "dec"]].isna().all() and pos.loc["f3", "flag_bad_position"]  # a broken one
    assert "WCS" in summary["flags"]["bad_position"]["details"]["f3"]
    assert tuple(pos.loc["f4", ["ra", "dec"]]) == pytest.approx((200.0, 45.0))
    assert (cat["cube_index"] >= 0).all()


def test_a_catalogue_position_comes_before_the_wcs(tmp_path):
    root = tmp_path / "fits"
    root.mkdir()
    for i in range(3):
        hdu = fits.PrimaryHDU(galaxy_flux(64, seed=i))
        hdu.header.update(_tan(150.0 + i, 2.0))
        hdu.writeto(root / f"f{i}.fits")
    write_csv(root / "cat.csv", ["id", "RAJ2000", "DEJ2000"],
              [["f0", "10.5", "-1.5"], ["f1", "", ""], ["f2", "x", "1"]])
    _, cat, _, _ = ingest_to(root, tmp_path / "run", preprocess__size=16)
    pos = cat.set_index("id")
    assert (pos.loc["f0", "ra"], pos.loc["f0", "dec"]) == pytest.approx((10.5, -1.5))  # the catalogue's
    assert (pos.loc["f1", "ra"], pos.loc["f1", "dec"]) == pytest.approx((151.0, 2.0))  # none there: the WCS's
    assert pos.loc["f2", "flag_bad_position"] and np.isnan(pos.loc["f2", "ra"])  # the catalogue's problem stands


# --- the export ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".csv", ".parquet", ".fits"])
def test_the_export_carries_ra_and_dec(tmp_path, ext):
    from astropy.table import Table

    from morphospace.export import export

    root = _survey(tmp_path, ["id", "RA", "Dec"], [[f"g{i}", f"{10 + i}:00:00", f"-{i}:30:00"] for i in range(5)]
                   + [["g5", "", ""]])
    _, cat, _, run = ingest_to(root, tmp_path / "run", preprocess__size=16)
    out = export(run, tmp_path / f"results{ext}")
    if ext == ".fits":
        table = Table.read(out)
        assert table["ra"].dtype.kind == table["dec"].dtype.kind == "f" and table["ra"].dtype.itemsize == 8
        assert str(table["ra"].unit) == str(table["dec"].unit) == "deg"
        back = table.to_pandas()
    else:
        back = pd.read_csv(out) if ext == ".csv" else pd.read_parquet(out)
    assert back["ra"].dtype == np.float64
    np.testing.assert_allclose(back["ra"][:5], 150.0 + 15.0 * np.arange(5))
    np.testing.assert_allclose(back["dec"][:5], [-0.5, -1.5, -2.5, -3.5, -4.5])
    assert np.isnan(back["ra"][5]) and "flag_bad_position" in back


# --- the synthetic survey: mock positions --------------------------------------------------------

def test_the_synthetic_survey_has_mock_positions_in_a_small_patch(tmp_path):
    from morphospace.data.synth import make_survey
    from morphospace.data.synth.truth import MOCK_PATCH, TRUTH_COLUMNS, mock_position

    a = make_survey(tmp_path / "a", n=3, seed=4, size=32, workers=1, progress=False)
    cat = pd.read_csv(a / "catalogue.csv")
    ra0, dec0, side = MOCK_PATCH
    assert cat["dec"].between(dec0 - side / 2, dec0 + side / 2).all()
    assert (np.abs(cat["ra"] - ra0) <= side).all() and cat["ra"].nunique() == 3
    assert "MOCK" in TRUTH_COLUMNS["ra"]  # documented as made up
    # a function of (seed, index) only
    assert (cat.loc[1, "ra"], cat.loc[1, "dec"]) == pytest.approx(mock_position(4, 1))
    assert mock_position(4, 1) == mock_position(4, 1) != mock_position(5, 1)
    _, ingested, _, _ = ingest_to(a, tmp_path / "run", preprocess__size=16)
    np.testing.assert_allclose(ingested["ra"], cat["ra"])
    assert not ingested["flag_bad_position"].any()
