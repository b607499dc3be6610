"""Position angle, companions and the nuisance audit."""

import numpy as np
import pandas as pd
import pytest

from morphospace.analysis.compare import score_pair
from morphospace.analysis.nuisance import (
    _bin_column,
    audit_run,
    brightest_companion,
    measure_nuisance,
    position_angle,
)
from morphospace.config import Config
from morphospace.errors import UserError
from morphospace.run import RunDir, write_npy, write_table

SIZE = 48


def gaussian(pa_deg=0.0, q=1.0, sigma=5.0, row=None, col=None, amp=1.0, size=SIZE):
    """An elliptical Gaussian; pa counter-clockwise from +x with y up the displayed image."""
    rows, cols = np.indices((size, size), dtype=float)
    cy = (size - 1) / 2 if row is None else row
    cx = (size - 1) / 2 if col is None else col
    x, y = cols - cx, -(rows - cy)
    t = np.radians(pa_deg)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    return amp * np.exp(-0.5 * (u**2 / sigma**2 + v**2 / (q * sigma) ** 2))


@pytest.mark.parametrize("pa, expected", [(10, "0-45"), (60, "45-90"), (100, "90-135"), (160, "135-180")])
def test_position_angle_of_an_elongated_gaussian(pa, expected):
    rng = np.random.default_rng(pa)
    img = gaussian(pa, q=0.4) + rng.normal(scale=0.01, size=(SIZE, SIZE))
    t = position_angle(img[None, None])
    assert t["pa_bin"].iloc[0] == expected
    assert abs((t["pa_deg"].iloc[0] - pa + 90) % 180 - 90) < 3
    assert t["ellipticity"].iloc[0] == pytest.approx(0.6, abs=0.1)


def test_a_round_galaxy_has_no_angle_bin_and_a_blank_one_none():
    images = np.stack([gaussian(30, q=1.0), np.zeros((SIZE, SIZE))])[:, None]
    t = position_angle(images)
    assert t["pa_bin"].iloc[0] == "round"
    assert t["ellipticity"].iloc[0] < 0.1
    assert pd.isna(t["pa_bin"].iloc[1]) and np.isnan(t["pa_deg"].iloc[1])


@pytest.mark.parametrize("row, col, quadrant", [(8, 8, "TL"), (8, 40, "TR"), (40, 6, "BL"), (39, 41, "BR")])
def test_companion_quadrant_of_a_point_source(row, col, quadrant):
    img = gaussian(45, q=0.5, sigma=4) + gaussian(sigma=1.2, row=row, col=col, amp=0.6)
    rgb = np.repeat(img[None, None], 3, axis=1)  # channels are averaged to grey
    t = brightest_companion(rgb)
    assert bool(t["companion"].iloc[0])
    assert t["companion_quadrant"].iloc[0] == quadrant
    assert t["companion_x"].iloc[0] == pytest.approx(col, abs=0.5)
    assert t["companion_y"].iloc[0] == pytest.approx(row, abs=0.5)


def test_the_brightest_of_two_companions_wins_and_a_lone_galaxy_has_none():
    two = gaussian(0, q=0.6) + gaussian(sigma=1.2, row=6, col=6, amp=0.3) + gaussian(sigma=1.5, row=40, col=40, amp=0.8)
    t = brightest_companion(np.stack([two, gaussian(0, q=0.6)]))
    assert t["companion_quadrant"].tolist() == ["BR", "none"]
    assert t["companion"].tolist() == [True, False]


def test_binning_of_catalogue_nuisance_columns():
    rng = np.random.default_rng(0)
    deg = pd.Series(rng.uniform(0, 360, 200))
    rad = pd.Series(np.radians(deg))
    b_deg, b_rad = _bin_column("position_angle", deg), _bin_column("position_angle", rad)
    assert set(b_deg) == {"0-45", "45-90", "90-135", "135-180"}
    assert b_deg.tolist() == b_rad.tolist()
    size = _bin_column("size_arcsec", pd.Series(rng.random(200)))
    assert sorted(size.unique()) == ["Q1", "Q2", "Q3", "Q4"]
    assert _bin_column("n_companions", pd.Series([0, 1, 2, 0] * 5)).tolist() == [0, 1, 2, 0] * 5
    assert _bin_column("winding", pd.Series(["cw"] * 4)) is None  # one value: nothing to audit
    # winding 0 (no arms) is not a hand: missing, so only spirals are scored
    assert _bin_column("winding", pd.Series([1, -1, 0, 1])).tolist() == [1, -1, None, 1]
    # frames of one size and a few smaller (21 sizes): quartiles collapsed into one bin, so that every
    # clustering read AMI 0 against it (and a one-cluster clustering 1.0); the few keep a bin of their own
    sides = pd.Series(pd.array([423] * 61 + list(range(100, 120)), dtype="Int32"))
    binned = _bin_column("frame_px", sides)
    assert binned is not None and binned.nunique() >= 2 and binned[61] != binned[0] and binned[:61].nunique() == 1


def fake_run(tmp_path, n=40, seed=0):
    """A run whose cube holds elongated galaxies at random angles, half with a companion."""
    rng = np.random.default_rng(seed)
    run = RunDir(tmp_path / "run", create=True)
    pa = rng.uniform(0, 180, n)
    comp = np.arange(n) % 2 == 1
    cube = []
    for i in range(n):
        img = gaussian(pa[i], q=0.4) + rng.normal(scale=0.01, size=(SIZE, SIZE))
        if comp[i]:
            img += gaussian(sigma=1.2, row=8, col=40, amp=0.5)
        cube.append(img)
    cube_index = rng.permutation(n)
    cat = pd.DataFrame({
        "id": [f"g{i:02d}" for i in range(n)], "source": "x",
        "morphology": pd.array(np.array(["elliptical", "spiral"])[np.arange(n) % 2], dtype="string"),
        "position_angle": pa, "n_companions": comp.astype(int),
        "flag_low_snr": np.arange(n) % 4 == 0, "flag_blank": np.zeros(n, dtype=bool),
        "cube_index": cube_index,
    })
    write_table(run.catalogue, cat)
    order = np.argsort(cube_index)
    write_npy(run.cube, np.stack(cube)[order][:, None].astype(np.float32))
    ids = cat["id"].to_numpy()[order]
    bins = (pa[order] // 45).astype(int)
    run.write_clustering("kmeans4_pa", ids, bins)  # follows orientation
    run.write_clustering("kmeans2_comp", ids, comp[order].astype(int))  # follows the neighbour
    return run, pa[order], comp[order]


def test_audit_run_flags_clusterings_that_follow_nuisances(tmp_path):
    run, pa, comp = fake_run(tmp_path)
    audit = audit_run(run, Config())
    # every companion sits in one quadrant: among the galaxies with one, the quadrant tells nothing apart
    assert list(audit.columns) == ["clustering", "pa_bin", "companion",
                                   "flag_low_snr", "position_angle", "n_companions"]
    assert list(audit["clustering"]) == ["kmeans2_comp", "kmeans4_pa", "morphology"]
    a = audit.set_index("clustering")
    assert a.loc["kmeans4_pa", "position_angle"] == pytest.approx(1.0)
    assert a.loc["kmeans4_pa", "pa_bin"] > 0.8
    assert a.loc["kmeans2_comp", "companion"] == pytest.approx(1.0)
    assert a.loc["kmeans4_pa", "companion"] < 0.2
    measured = pd.read_parquet(run.path / "nuisance.parquet")
    assert list(measured["id"]) == list(run.cube_ids())
    assert {"id", "pa_deg", "pa_bin", "ellipticity", "companion", "companion_quadrant"} <= set(measured.columns)
    assert measured["companion"].tolist() == comp.tolist()
    assert score_pair(measured["pa_bin"], (pa // 45).astype(int))["ami"] > 0.8
    assert (run.path / "comparisons" / "nuisance_audit.csv").is_file()
    assert (run.path / "figures" / "nuisance_audit.png").stat().st_size > 1000
    # the measurements are reused while the cube's ids match
    stamp = (run.path / "nuisance.parquet").stat().st_mtime_ns
    audit_run(run, Config())
    assert (run.path / "nuisance.parquet").stat().st_mtime_ns == stamp


def test_the_audit_reads_orientation_among_elongated_galaxies_only(tmp_path):
    """Round galaxies had a position-angle bin of their own ('round'), so a clustering that follows
    form alone (round against elongated, at random angles) read as following the position angle
    (AMI 0.15 on a toy survey): roundness is form, not orientation."""
    rng = np.random.default_rng(1)
    n = 80
    round_ = np.arange(n) % 2 == 0
    pa = rng.uniform(0, 180, n)
    cube = np.stack([gaussian(pa[i], q=1.0 if round_[i] else 0.4) + rng.normal(scale=0.01, size=(SIZE, SIZE))
                     for i in range(n)])[:, None].astype(np.float32)
    run = RunDir(tmp_path / "run", create=True)
    ids = [f"g{i:02d}" for i in range(n)]
    write_table(run.catalogue, pd.DataFrame({"id": ids, "source": "x", "cube_index": np.arange(n)}))
    write_npy(run.cube, cube)
    run.write_clustering("kmeans2_form", ids, round_.astype(int))  # form, blind to the angle
    run.write_clustering("kmeans4_pa", ids, np.where(round_, 4, (pa // 45).astype(int)))  # the angle
    a = audit_run(run, Config()).set_index("clustering")
    assert a.loc["kmeans2_form", "pa_bin"] == pytest.approx(0.0, abs=0.02)
    assert a.loc["kmeans4_pa", "pa_bin"] > 0.8
    measured = pd.read_parquet(run.path / "nuisance.parquet")  # the measurement still says which are round
    assert (measured["pa_bin"] == "round").to_numpy().tolist() == round_.tolist()


def test_audit_run_named_nuisance_columns(tmp_path):
    run, _, _ = fake_run(tmp_path)
    cfg = Config()
    cfg.cluster.nuisance_columns = ["n_companions"]
    audit = audit_run(run, cfg)
    assert list(audit.columns)[-1] == "n_companions" and "position_angle" not in audit.columns
    cfg.cluster.nuisance_columns = ["seeing"]
    with pytest.raises(UserError, match="seeing"):
        audit_run(run, cfg)
    # an audit that failed leaves no earlier one to be read as its own (after compare's fresh record)
    assert not (run.path / "comparisons" / "nuisance_audit.csv").exists()
    assert not (run.path / "figures" / "nuisance_audit.png").exists()


def test_measure_nuisance_ids_and_columns():
    t = measure_nuisance(np.stack([gaussian(20, q=0.5)] * 3), ids=["a", "b", "c"])
    assert t["id"].tolist() == ["a", "b", "c"]
    assert t["pa_bin"].tolist() == ["0-45"] * 3


def test_measure_nuisance_on_a_process_pool_is_the_same_as_on_one(tmp_path, monkeypatch):
    from morphospace.analysis import nuisance_measure as nuisance

    run, _, _ = fake_run(tmp_path, n=10)
    cube = run.read_cube()
    one = measure_nuisance(cube, ids=run.cube_ids())
    old = nuisance.map_chunks
    monkeypatch.setattr(nuisance, "map_chunks", lambda *a, **kw: old(*a, **{**kw, "chunk": 3}))
    two = measure_nuisance(cube, ids=run.cube_ids(), workers=2)
    pd.testing.assert_frame_equal(one, two)
    # an array in memory (no file to map) is measured in this process, with the same result
    pd.testing.assert_frame_equal(one, measure_nuisance(np.asarray(cube), ids=run.cube_ids(), workers=2))


def test_the_anomaly_score_is_audited_like_a_clustering(tmp_path):
    """Whether what reads as strange follows a nuisance (the form anomaly score grows with apparent size
    and falls with seeing on real surveys): its tenths are a row of the audit."""
    from morphospace.analysis.nuisance import ANOMALY_ROW

    run, pa, comp = fake_run(tmp_path)
    assert ANOMALY_ROW not in list(audit_run(run, Config())["clustering"])  # no score: no row
    score = comp * 10.0 + np.random.default_rng(0).random(len(comp))  # strange = has a neighbour
    score[3] = np.nan
    write_table(run.path / "vade_galaxies.parquet", pd.DataFrame({"id": run.cube_ids(), "anomaly": score}))
    a = audit_run(run, Config()).set_index("clustering")
    assert list(a.index)[-1] == ANOMALY_ROW
    assert a.loc[ANOMALY_ROW, "companion"] > 0.2 > a.loc[ANOMALY_ROW, "position_angle"]


def test_a_damaged_anomaly_score_leaves_its_row_out_not_the_audit(tmp_path, caplog):
    from morphospace.analysis.nuisance import ANOMALY_ROW

    run, pa, comp = fake_run(tmp_path)
    (run.path / "anomaly.parquet").write_bytes(b"not a table")
    with caplog.at_level("WARNING", logger="morphospace"):
        audit = audit_run(run, Config())
    assert ANOMALY_ROW not in list(audit["clustering"]) and "kmeans4_pa" in list(audit["clustering"])
    assert "leaves out the anomaly score" in caplog.text
    (run.path / "anomaly.parquet").unlink()
    other = pd.DataFrame({"id": [f"other{i}" for i in range(len(comp))], "anomaly": np.arange(len(comp), dtype=float)})
    write_table(run.path / "vade_galaxies.parquet", other)  # of other galaxies: not this cube's score
    assert ANOMALY_ROW not in list(audit_run(run, Config())["clustering"])


def test_a_nuisance_every_galaxy_shares_and_a_one_cluster_clustering_score_nothing(tmp_path):
    """No companion anywhere: `companion` read AMI 0.000 and was named what the clusters follow most;
    beside an all-noise clustering (one value too) it scored 1.0, the brightest cell of the audit."""
    run, pa, comp = fake_run(tmp_path)
    cat = run.read_catalogue()
    cat["n_companions"] = 0  # a survey's column with one value
    write_table(run.catalogue, cat)
    run.write_clustering("hdbscan_all_noise", run.cube_ids(), np.full(len(pa), -1))
    audit = audit_run(run, Config()).set_index("clustering")
    assert "n_companions" not in audit.columns and "companion" in audit.columns  # measured: varies here
    assert audit.loc["hdbscan_all_noise"].isna().all()
    assert audit.loc["kmeans2_comp", "companion"] == pytest.approx(1.0)


def test_a_sky_clipped_at_zero_keeps_its_noise_level_and_no_noise_is_masked():
    """Half the border at zero (a sky clipped there): its MAD fell to 0.015 of the noise, and noise
    was detected as sources, masked (a fifth of the frame) and counted as companions."""
    from morphospace.image.masking import MaskParams, _masked
    from morphospace.image.sources import border_stats

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64].astype(float)
    galaxy = 20 * np.exp(-1.678 * (np.hypot(xx - 31.5, (yy - 31.5) / 0.5) / 5 - 1))
    img = np.clip(galaxy[None] + rng.normal(0, 1, (1, 64, 64)), 0, None).astype(np.float32)
    assert (img == 0).mean() > 0.4
    level, sigma = border_stats(img[0])
    assert level == 0 and 0.6 < sigma < 1.6  # the noise's own scale, from the half above zero
    out, n_masked, fraction, _ = _masked(img, MaskParams())
    assert n_masked == 0 and fraction < 0.01
    plain = (galaxy[None] + rng.normal(5, 1, (1, 64, 64))).astype(np.float32)  # an ordinary sky: unchanged
    assert abs(border_stats(plain[0])[1] - 1) < 0.15


def test_the_companion_quadrant_is_audited_among_galaxies_with_a_companion_by_design():
    """Its "none" was left out of the AMI only because the text reads as a missing label: now on
    purpose, said in the table (whether a companion is there is the `companion` row)."""
    from morphospace.analysis.nuisance import nuisance_table
    from morphospace.analysis.nuisance_measure import NO_COMPANION

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(folder, create=True)
        ids = [f"g{i}" for i in range(6)]
        write_table(run.catalogue, pd.DataFrame({"id": ids, "cube_index": range(6)}))
        measured = pd.DataFrame({"id": ids, "pa_bin": ["0-45"] * 6, "companion": [True, False] * 3,
                                 "companion_quadrant": ["TL", NO_COMPANION, "BR", NO_COMPANION, "TR", NO_COMPANION]})
        table = nuisance_table(run, Config(), measured)
    assert [None if pd.isna(v) else v for v in table["companion_quadrant"]] == ["TL", None, "BR", None, "TR", None]
    assert table["companion"].tolist() == [True, False] * 3


def test_a_round_threshold_given_rebins_the_cached_measurements(tmp_path):
    """Once nuisance.parquet existed, audit_run(round_threshold=x) kept the bins of the threshold it
    was measured with."""
    run, pa, comp = fake_run(tmp_path)
    audit_run(run, Config())
    cached = pd.read_parquet(run.path / "nuisance.parquet")
    assert (cached["pa_bin"] != "round").all()  # elongated (q = 0.4): none round at 0.1
    audit_run(run, Config(), round_threshold=0.99)
    assert (pd.read_parquet(run.path / "nuisance.parquet")["pa_bin"] == cached["pa_bin"]).all()  # the cache kept
    assert "pa_bin" not in audit_run(run, Config(), round_threshold=0.99).columns  # every galaxy round: none binned
