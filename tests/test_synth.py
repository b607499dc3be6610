"""The built-in synthetic survey: layout, determinism, truth columns and what they mean."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fixtures import all_end, descendants, in_own_group
from PIL import Image

from morphospace.data import synth
from morphospace.errors import UserError


@pytest.fixture(scope="module")
def survey60(tmp_path_factory):
    """One balanced survey of 60 galaxies (10 per class), rendered once for the module."""
    out = tmp_path_factory.mktemp("synth") / "s60"
    synth.make_survey(out, n=60, seed=7, size=96, workers=1, progress=False)
    return out


def _catalogue(path):
    return pd.read_csv(path / synth.CATALOGUE_NAME)


# --- layout and catalogue -----------------------------------------------------------------------

def test_layout_marker_and_images(survey60):
    cat = _catalogue(survey60)
    assert list(cat.columns[:3]) == ["id", "file", "morphology"]
    assert len(cat) == 60 and cat["id"].is_unique
    marker = json.loads((survey60 / synth.MARKER_NAME).read_text())
    assert marker["n"] == 60 and marker["seed"] == 7 and marker["size"] == 96
    assert marker["version"] == synth.GENERATOR_VERSION
    assert set(cat.columns) <= set(marker["columns"])  # every column is documented
    pngs = sorted((survey60 / "images").glob("*.png"))
    assert len(pngs) == 60
    for rel in cat["file"].iloc[:12]:
        with Image.open(survey60 / rel) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (96, 96)


def test_balanced_classes(survey60):
    counts = _catalogue(survey60)["morphology"].value_counts()
    assert set(counts.index) == set(synth.MORPHOLOGIES)
    assert (counts == 10).all()


def test_truth_value_ranges(survey60):
    cat = _catalogue(survey60)
    assert cat["position_angle"].between(0, 180).all()
    assert cat["inclination"].between(0, 90).all()
    assert cat["axis_ratio"].between(0.02, 1.0).all()
    spiral = cat["morphology"].isin(["spiral", "barred_spiral"])
    assert set(cat.loc[spiral, "winding"]) <= {-1, 1} and (cat.loc[~spiral, "winding"] == 0).all()
    assert cat.loc[spiral, "n_arms"].between(2, 4).all() and (cat.loc[~spiral, "n_arms"] == 0).all()
    assert (cat.loc[cat.morphology == "barred_spiral", "bar_fraction"] > 0).all()
    assert (cat.loc[cat.morphology != "barred_spiral", "bar_fraction"] == 0).all()
    assert (cat.loc[cat.morphology == "edge_on", "inclination"] >= 80).all()
    assert (cat.loc[cat.morphology == "edge_on", "axis_ratio"] < 0.4).all()
    assert set(cat.loc[cat.morphology == "irregular", "irregular_kind"]) <= {"merger", "clumpy"}
    assert cat.loc[cat.morphology != "irregular", "irregular_kind"].isna().all()
    for col in ("size_px", "flux", "psf_fwhm_px", "sky_noise"):
        assert (cat[col] > 0).all(), col
    # the galaxy sits well inside the central half that the default preprocessing keeps
    assert (cat["r90_px"] < 96 / 4).all()
    assert cat["n_companions"].between(0, synth.MAX_COMPANIONS).all()
    assert cat["n_companions"].nunique() > 1


def test_companions_recorded_inside_frame_and_visible(survey60):
    cat = _catalogue(survey60)
    seen = 0
    for _, row in cat.iterrows():
        img = np.asarray(Image.open(survey60 / row["file"]), dtype=float).sum(axis=2)
        sky = np.median(img)
        noise = 1.4826 * np.median(np.abs(img - sky))
        for k in range(1, synth.MAX_COMPANIONS + 1):
            present = k <= row["n_companions"]
            assert pd.notna(row[f"comp{k}_x"]) == present
            assert (row[f"comp{k}_kind"] in ("star", "galaxy")) if present else pd.isna(row[f"comp{k}_kind"])
            if present:
                x, y = row[f"comp{k}_x"], row[f"comp{k}_y"]
                assert 0 <= x <= 95 and 0 <= y <= 95
                # a recorded neighbour is a real source at that pixel (x = column, y = row)
                assert img[int(round(y)), int(round(x))] > sky + 5 * noise
                seen += 1
    assert seen >= 10


# --- determinism --------------------------------------------------------------------------------

def test_same_seed_same_bytes_any_worker_count(tmp_path):
    a = synth.make_survey(tmp_path / "a", n=12, seed=3, size=64, workers=1, progress=False)
    b = synth.make_survey(tmp_path / "b", n=12, seed=3, size=64, workers=2, progress=False)
    c = synth.make_survey(tmp_path / "c", n=12, seed=4, size=64, workers=1, progress=False)
    assert synth.survey_digest(a) == synth.survey_digest(b)
    assert synth.survey_digest(a) != synth.survey_digest(c)
    for name in ("synth_000000.png", "synth_000011.png"):
        assert (a / "images" / name).read_bytes() != (c / "images" / name).read_bytes()


def test_prefix_of_a_larger_survey_is_the_same(tmp_path):
    small = synth.make_survey(tmp_path / "s", n=6, seed=5, size=64, workers=1, progress=False)
    large = synth.make_survey(tmp_path / "l", n=9, seed=5, size=64, workers=1, progress=False)
    for i in range(6):
        name = f"images/synth_{i:06d}.png"
        assert (small / name).read_bytes() == (large / name).read_bytes()


def test_reuse_overwrite_and_refusals(tmp_path, caplog):
    out = synth.make_survey(tmp_path / "s", n=6, seed=1, size=64, workers=1, progress=False)
    stamp = (out / synth.MARKER_NAME).stat().st_mtime_ns
    assert synth.make_survey(out, n=6, seed=1, size=64, workers=1, progress=False) == out
    assert (out / synth.MARKER_NAME).stat().st_mtime_ns == stamp  # reused, not re-rendered
    with pytest.raises(UserError, match=r"holds another synthetic survey \(n 6 there\): choose another folder, or "
                                        "delete that one first"):
        synth.make_survey(out, n=7, seed=1, size=64, workers=1, progress=False)
    with pytest.raises(UserError, match=r"\(size 64 there\)"):  # named what differs, not the n and seed asked for
        synth.make_survey(out, n=6, seed=1, size=32, workers=1, progress=False)
    (out / "images" / "synth_000002.png").unlink()  # deleted by hand: rendered again, not reused a galaxy short
    synth.make_survey(out, n=6, seed=1, size=64, workers=1, progress=False)
    assert len(list((out / "images").glob("*.png"))) == 6
    synth.make_survey(out, n=7, seed=1, size=64, workers=1, progress=False, overwrite=True)
    assert len(list((out / "images").glob("*.png"))) == 7 and synth.read_marker(out)["n"] == 7
    import logging

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="morphospace"):  # the same survey, whole: nothing is missing
        synth.make_survey(out, n=7, seed=1, size=64, workers=1, progress=False, overwrite=True)
    assert "missing" not in caplog.text
    # an interrupted run (images, no marker) is rendered again without asking
    (out / synth.MARKER_NAME).unlink()
    (out / "images" / "synth_000003.png").write_bytes(b"half a file")
    synth.make_survey(out, n=7, seed=1, size=64, workers=1, progress=False)
    with Image.open(out / "images" / "synth_000003.png") as im:
        assert im.size == (64, 64)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        synth.make_survey(other, n=6, progress=False, workers=1, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    # a catalogue of the user's own (with or without an images folder) is no interrupted survey: it was
    # taken for one and replaced
    for mine in ("cat_only", "cat_and_images"):
        folder = tmp_path / mine
        (folder / "images").mkdir(parents=True, exist_ok=mine == "cat_and_images")
        if mine == "cat_only":
            (folder / "images").rmdir()
        (folder / "catalogue.csv").write_text("id,notes\nmy_gal,precious\n")
        with pytest.raises(UserError, match="not empty and is not a synthetic survey"):
            synth.make_survey(folder, n=2, size=32, progress=False, workers=1)
        assert (folder / "catalogue.csv").read_text() == "id,notes\nmy_gal,precious\n"
    # a damaged marker: one line, not a traceback
    for damage in ("{garbage", "[1, 2]"):
        (out / synth.MARKER_NAME).write_text(damage)
        with pytest.raises(UserError, match="is damaged"):
            synth.make_survey(out, n=6, seed=1, size=64, workers=1, progress=False)
    for bad in ({"n": 0}, {"seed": -1}, {"size": 8}, {"workers": 0}, {"morphologies": ["blob"]},
                {"size": 100_000}, {"n": 10**10}, {"seed": 2**40}):
        with pytest.raises(UserError):
            synth.make_survey(tmp_path / "bad", progress=False, **{"n": 6, **bad})
    assert not (tmp_path / "bad").exists()  # refused before anything was made
    with pytest.raises(UserError, match="empty text"):
        synth.make_survey("", n=2, size=32, progress=False, workers=1)


def test_subset_of_morphologies(tmp_path):
    out = synth.make_survey(tmp_path / "s", n=8, seed=2, size=64, workers=1, progress=False,
                            morphologies=["elliptical", "edge_on"])
    assert (_catalogue(out)["morphology"].value_counts() == 4).all()


# --- the truth means what it says ---------------------------------------------------------------

def _face_on_spiral(winding: int, size: int = 128) -> np.ndarray:
    """Noiseless r band of one face-on 2-armed spiral, no neighbours, arms starting at 90 deg."""
    p = synth.sample_params(11, 0, size, morphology="spiral")
    p.update(winding=winding, inclination=0.0, position_angle=0.0, arm_phase=math.pi / 2, n_arms=2,
             pitch_angle=20.0, arm_fraction=0.6, n_knots=0, companions=[], field=[])
    return synth.render_bands(p, noise=False)[1]


def _arm_slope(img: np.ndarray, m: int = 2) -> float:
    """d(arm angle)/d(ln r) of the m-armed pattern, angles counter-clockwise as displayed."""
    size = img.shape[0]
    c = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = cols - c, -(rows - c)  # screen y points up: row 0 is the top of the image
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    radii = np.linspace(5.0, 16.0, 12)
    phases = []
    for r0 in radii:
        ring = np.abs(r - r0) < 0.5
        phases.append(np.angle(np.sum(img[ring] * np.exp(-1j * m * theta[ring]))))
    # for light ~ cos(m (theta - arm)), the m-th azimuthal mode has phase -m * arm
    arm_angle = -np.unwrap(phases) / m
    return float(np.polyfit(np.log(radii), arm_angle, 1)[0])


def test_winding_is_the_displayed_handedness():
    plus, minus = _face_on_spiral(+1), _face_on_spiral(-1)
    # +1: the arms turn clockwise (angle decreasing) when followed outward on the screen
    assert _arm_slope(plus) < -0.5 and _arm_slope(minus) > 0.5
    # a mirror image has the other handedness
    assert _arm_slope(np.fliplr(plus)) > 0.5


def test_winding_flip_is_a_mirror_image():
    plus, minus = _face_on_spiral(+1), _face_on_spiral(-1)

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    def arms(a):  # the non-axisymmetric light: the image minus its azimuthal mean profile
        rows, cols = np.mgrid[0:a.shape[0], 0:a.shape[1]]
        ring = np.hypot(rows - 63.5, cols - 63.5).astype(int)
        return a - (np.bincount(ring.ravel(), a.ravel()) / np.bincount(ring.ravel()))[ring]

    mirrored = np.flipud(plus)  # mirror about the horizontal axis (the arm phase is 90 deg)
    assert corr(mirrored, minus) > 0.999
    assert corr(arms(mirrored), arms(minus)) > corr(arms(plus), arms(minus)) + 0.3


def test_inclination_and_position_angle_shape_the_image():
    def moments_of(**kw):
        p = synth.sample_params(4, 0, 128, morphology="lenticular")
        p.update(companions=[], field=[], bulge_fraction=0.2, **kw)
        img = synth.render_bands(p, noise=False)[1]
        img = np.where(img > 1e-3 * img.max(), img, 0.0)  # the galaxy, not its faintest wings
        rows, cols = np.mgrid[0:128, 0:128]
        x, y = cols - 63.5, -(rows - 63.5)
        w = img / img.sum()
        cxx, cyy, cxy = (w * x * x).sum(), (w * y * y).sum(), (w * x * y).sum()
        evals, evecs = np.linalg.eigh([[cxx, cxy], [cxy, cyy]])
        angle = math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])) % 180
        return math.sqrt(evals[0] / evals[1]), angle

    q_face, _ = moments_of(inclination=5.0)
    q_incl, angle = moments_of(inclination=70.0, position_angle=30.0)
    assert q_face > 0.9 and q_incl < 0.7
    assert abs(angle - 30.0) < 3.0  # counter-clockwise from +x as displayed


def test_colours_follow_the_populations():
    """Ellipticals are redder (g-r) than the star-forming disks of spirals, as in the images."""
    def rgb_ratio(morph):
        vals = []
        for i in range(6):
            rgb, _ = synth.render_galaxy(9, i, 96, morphology=morph, companions=[], field=[])
            core = rgb[36:60, 36:60].reshape(-1, 3).astype(float)
            vals.append(core[:, 0].sum() / core[:, 2].sum())  # R / B
        return float(np.median(vals))

    assert rgb_ratio("elliptical") > rgb_ratio("spiral") + 0.15


def test_unknown_override_is_refused():
    with pytest.raises(UserError, match="unknown galaxy parameter"):
        synth.render_galaxy(0, 0, 64, windings=1)


def test_forcing_a_class_keeps_the_frame_and_neighbours():
    a = synth.sample_params(3, 5, 128, morphology="spiral")
    b = synth.sample_params(3, 5, 128, morphology="elliptical")
    for key in ("psf_fwhm_px", "sky_noise", "flux", "r90_px", "position_angle", "noise_seed", "companions", "field"):
        assert a[key] == b[key], key
    assert a["n_arms"] > 0 and b["n_arms"] == 0


def _moments_shape(img: np.ndarray) -> tuple[float, float]:
    """Axis ratio and screen angle (degrees counter-clockwise from +x, row 0 at the top) of an image."""
    rows, cols = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    w = img / img.sum()
    x, y = cols - (w * cols).sum(), -(rows - (w * rows).sum())
    cov = np.array([[(w * x * x).sum(), (w * x * y).sum()], [(w * x * y).sum(), (w * y * y).sum()]])
    values, vectors = np.linalg.eigh(cov)
    return math.sqrt(values[0] / values[1]), math.degrees(math.atan2(vectors[1, 1], vectors[0, 1])) % 180


def test_edge_on_axis_ratios_do_not_depend_on_the_frame_and_irregulars_are_measured_as_drawn():
    """An edge-on disk a tenth of a pixel thick read q = 0.0 at 33 px and 0.32 at 32 px for a true
    0.066 (second moments on the survey's pixels); an irregular's position angle and axis ratio
    were those before its distortion shear (median 22-29 degrees off the galaxy drawn)."""
    import galsim

    from morphospace.data.synth.galaxies import galsim_angle, spheroid
    from morphospace.data.synth.params import projected_q, sample_params
    from morphospace.data.synth.truth import _edge_on_axis_ratio, truth_row

    edge = next(p for i in range(60) if (p := sample_params(0, i, size=128))["morphology"] == "edge_on")
    assert _edge_on_axis_ratio({**edge, "size": 32}) == _edge_on_axis_ratio({**edge, "size": 33})
    disk = galsim.InclinedExponential(edge["inclination"] * galsim.degrees, half_light_radius=edge["disk_hlr"],
                                      scale_h_over_r=edge["scale_h_over_r"])
    fine = disk.drawImage(nx=1024, ny=1024, scale=0.125, method="no_pixel").array  # 8x finer, no pixel
    assert _edge_on_axis_ratio(edge) == pytest.approx(_moments_shape(fine)[0], rel=0.05)
    checked = 0
    for i in range(300):
        p = sample_params(0, i, size=128)
        if p["morphology"] != "irregular" or p["distortion"] < 0.15:
            continue
        body = spheroid(1.0, p["disk_hlr"], projected_q(p["inclination"], p["bulge_q0"]), p["position_angle"])
        body = body.shear(g=p["distortion"], beta=galsim_angle(p["distortion_angle"]))
        q, pa = _moments_shape(body.drawImage(nx=256, ny=256, scale=0.5, method="no_pixel").array)
        row = truth_row(p)
        assert row["axis_ratio"] == pytest.approx(q, abs=0.02)
        if q < 0.8:
            assert min(abs(row["position_angle"] - pa), 180 - abs(row["position_angle"] - pa)) < 3
        checked += 1
    assert checked >= 5


def test_a_script_without_the_main_guard_gets_its_survey(tmp_path):
    """The survey's workers start by forkserver, which imports the calling script again: an unguarded
    script's own call ran in each worker, stopped there, and the caller got BrokenProcessPool from deep
    inside (later, a message to add the guard). The survey is now rendered in the script's own process,
    with one line that says why and how to use the workers."""
    import os
    import subprocess
    import sys

    import pandas as pd

    script = tmp_path / "unguarded.py"
    script.write_text("import logging\nfrom morphospace.data import synth\n"
                      "logging.basicConfig(format='%(message)s')\n"
                      f"synth.make_survey({str(tmp_path / 'out')!r}, n=8, seed=3, workers=2, progress=False)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MORPHOSPACE_CACHE": str(tmp_path / "cache")}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "runs in this process only" in line]
    assert len(said) == 1 and said[0].startswith("synth runs in this process only, not in 2") and \
        'put the calls under that guard' in said[0]
    assert len(pd.read_csv(tmp_path / "out" / "catalogue.csv")) == 8


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads the process table from /proc")
def test_the_rendering_workers_exit_when_the_survey_s_maker_is_killed(tmp_path):
    """`kill -9` of `morphospace synth` (or `run`) left its forkserver workers rendering on into the
    folder (51 images, then 192) and then waiting forever, 185 MB each."""
    import os
    import signal
    import sys
    import time

    script = tmp_path / "maker.py"
    out = tmp_path / "out"
    script.write_text("from morphospace.data import synth\nif __name__ == '__main__':\n"
                      f"    synth.make_survey({str(out)!r}, n=2000, seed=3, size=64, workers=2, progress=False)\n")
    with in_own_group([sys.executable, str(script)], cwd=tmp_path,
                      env={**os.environ, "MORPHOSPACE_CACHE": str(tmp_path / "cache")}) as proc:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list((out / synth.IMAGE_DIR).glob("*"))) < 10:
            assert proc.poll() is None, "the survey was made before it could be killed"
            time.sleep(0.05)
        below = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert below and all_end(below, 15)


def test_a_survey_whose_rendering_did_not_finish_is_refused_by_the_ingest(tmp_path, capsys):
    """`synth` stopped half way (SIGTERM: 24 of 300 images, no catalogue, no marker): its images were
    ingested as the whole survey, 'ingested 24 of 24 galaxies', without a word."""
    import shutil

    from morphospace.cli import main

    out = tmp_path / "survey"
    assert main(["synth", "--n", "6", "--seed", "0", "--out", str(out), "--size", "48", "--quiet"]) == 0
    (out / synth.MARKER_NAME).unlink()
    (out / "catalogue.csv").unlink()  # the state a stop during the images leaves
    assert main(["ingest", str(out), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "a synthetic survey whose rendering did not finish" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["synth", "--n", "6", "--seed", "0", "--out", str(out), "--size", "48", "--quiet"]) == 0  # finished
    assert main(["ingest", str(out), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    shutil.rmtree(tmp_path / "run")
    mine = tmp_path / "mine"  # a folder of the user's own images is no survey of ours
    shutil.copytree(out / "images", mine)
    assert main(["ingest", str(mine), "--out", str(tmp_path / "run"), "--quiet"]) == 0
