"""Do the run's own clusters stay put when only how a galaxy is seen changes? An intervention test.

The nuisance audit (:mod:`morphospace.analysis.nuisance`) correlates the clusters with what is
measured on the images. A size measured on an image is also a measure of form (the light
profile: docs/measurements/invariance.md), so a correlation cannot tell a cluster that follows
size from one that follows concentration. This test intervenes instead. A reproducible sample of
the run's galaxies is shown again with one thing changed at a time:

``smaller`` / ``larger``
    shrunk to 0.7 or grown to 1.4 times its apparent size about the frame's centre;
``turned 45 deg``
    turned by 45 degrees (the form model averages the eight quarter turns and flips, so those
    would show nothing);
``wider PSF``
    blurred by a Gaussian of 1 pixel (of the cube), as worse seeing does;
``fainter``
    its signal-to-noise halved (the sky's noise doubled), as a galaxy 2x fainter shows (the
    ingest scales each galaxy by its own peak, so brightness alone changes nothing).

Each change is made on the cube row's light (the ingest's stretch undone); beyond the frame is
the row's sky, and the sky's noise that resampling or blurring smooths away is given back, drawn
with the grain the row's own sky shows (neighbouring pixels of a resampled, compressed cutout are
correlated); a band whose sky the survey clipped (an 8-bit sky near black:
:func:`~morphospace.data.ingest.sky_noise.sky_floor`) is clipped again at that floor, as the survey
would (noise added about the sky's level would show light below black); the row is then normalised
again as the ingest normalises (:func:`morphospace.data.ingest.normalise.normalise`; a min-max cube
keeps each row's scale, since the new noise's extremes would lift its sky). A grey
row (a grey frame in a colour cube) gets the same noise in every band, so it stays grey.
It is then embedded as a new image is (``morphospace similar --image``: neighbours masked, the
model's encoder) and assigned to
the run's clusters (its mixture's responsibilities, components merged as the run's are). A
control, ``moved 1/2 px`` (half a pixel along the diagonal), goes through the same resampling and
noise alone: what it changes is the test's own floor, the galaxies at a cluster's edge. Scored
against the same galaxies unchanged, through the same path: the share whose cluster changes, and
the ARI of the clusters before and after (1: the clusters ignore the change; 0: as if drawn anew),
and the share's excess over the control's, galaxy by galaxy, with a 95% interval from resampling
the galaxies (a sample of 256 leaves a share uncertain by about 0.03). The chance share, what two
unrelated draws of the clusters' sizes would change, is beside them. Size and seeing change with
the galaxy's pixels: shrunk, its PSF and its noise's grain shrink with it, which a galaxy farther
away would not show; the test asks whether the model's clusters are invariant to these changes of
the image, not how a survey's own selection of sizes enters them.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from ..data.ingest.sky_noise import RowSky, grained_noise, grey_as_one, restretch, row_sky, unstretch
from ..data.ingest.spec import PreprocessSpec
from ..data.sample import sample_rows
from ..progress import Timer
from ..run import RunDir, write_table
from .io import cluster_groups, fingerprint, load_vade, model_file
from .query import as_the_model_reads

log = logging.getLogger("morphospace")

__all__ = ["CHANGES", "CONTROL", "INVARIANCE_FILE", "change_rows", "invariance_audit"]

INVARIANCE_FILE = "invariance.csv"  # in comparisons/
BATCH = 64
CONTROL = "moved 1/2 px"
RESAMPLES = 2000  # of the galaxies, for the interval of each change's excess over the control

# what each change does, in the words of the report
CHANGES = {
    "moved 1/2 px": "moved by half a pixel (a control: the resampling and the noise given back alone)",
    "smaller": "shrunk to 0.7 of its apparent size",
    "larger": "grown to 1.4 times its apparent size",
    "turned 45 deg": "turned by 45 degrees",
    "wider PSF": "blurred by a Gaussian of 1 pixel (worse seeing)",
    "fainter": "made 2x fainter (its signal-to-noise halved)",
}


def _affine(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Each band of ``img`` (C, S, S) resampled about the centre by ``matrix`` (output to input
    coordinates, bilinear); NaN where the input has no pixel."""
    centre = (np.array(img.shape[1:]) - 1) / 2.0
    offset = centre - matrix @ centre
    return np.stack([ndimage.affine_transform(band, matrix, offset=offset, order=1, cval=np.nan) for band in img])


def _zoom(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: _affine(img, np.eye(2) / factor)


def _turn(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
    a = np.radians(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return lambda img: _affine(img, rotation)


def _shift(pixels: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: np.stack([ndimage.shift(band, (pixels, pixels), order=1, cval=np.nan) for band in img])


def _blur(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: np.stack([ndimage.gaussian_filter(band, sigma, mode="nearest") for band in img])


# the changes made by resampling or blurring (``fainter`` adds noise alone)
OPERATIONS = {"moved 1/2 px": _shift(0.5 / np.sqrt(2.0)), "smaller": _zoom(0.7), "larger": _zoom(1.4),
              "turned 45 deg": _turn(45.0), "wider PSF": _blur(1.0)}


def _noise_left(op: Callable[[np.ndarray], np.ndarray], shape: tuple, grain: float) -> float:
    """How much of a unit noise of this grain ``op`` leaves (its standard deviation after), measured."""
    out = op(grained_noise((1, *shape[1:]), grain, np.random.default_rng(0)))
    return float(np.nanstd(out[:, 4:-4, 4:-4]))


def change_rows(rows: np.ndarray, change: str, spec: PreprocessSpec, seed: int = 0,
                sky: RowSky | None = None) -> np.ndarray:
    """Cube rows as they would read with one thing about how they are seen changed (see the module
    docstring).

    Parameters
    ----------
    rows : ndarray, shape (n, C, S, S)
        Rows of a cube made with ``spec``.
    change : str
        One of :data:`CHANGES`.
    spec : PreprocessSpec
        The recipe the cube was made with (its normalisation).
    seed : int
        Seeds the sky noise given back or added.
    sky : RowSky, optional
        The sky of the rows' light (:func:`~morphospace.data.ingest.sky_noise.row_sky` of
        :func:`~morphospace.data.ingest.sky_noise.unstretch` of ``rows``), measured here if not given:
        the test changes the same rows six ways.

    Returns
    -------
    ndarray, shape (n, C, S, S), float32
    """
    if change not in CHANGES:
        raise ValueError(f"change must be one of {', '.join(CHANGES)}; got {change!r}")
    rng = np.random.default_rng(seed)
    light = unstretch(rows, spec)
    sky = row_sky(light, spec) if sky is None else sky
    return restretch(np.array([_changed_light(lin, change, rng, RowSky(*(v[i] for v in sky)))
                               for i, lin in enumerate(light)]).reshape(light.shape), spec)


def _changed_light(lin: np.ndarray, change: str, rng: np.random.Generator, sky: RowSky | None = None) -> np.ndarray:
    """One row's light (C, S, S) with ``change`` made, the sky's noise kept (or doubled: ``fainter``),
    clipped at its sky's floor where the survey clipped it, before the ingest's normalisation; ``sky``:
    the row's (:func:`row_sky`), measured here if not given."""
    level, sigma, grain, grey, floor = row_sky(lin) if sky is None else sky  # as the light views measure it
    level, sigma = level[:, None, None], sigma[:, None, None]  # per band
    # the sky's own noise, its grain included; one in every band of a grey row, which stays grey
    noise = grey_as_one(grained_noise(lin.shape, grain, rng), grey) * sigma
    op = OPERATIONS.get(change)
    if op is None:  # fainter: the sky's noise doubled
        new = lin + np.sqrt(3.0) * noise
    else:
        moved = op(lin)
        empty = np.isnan(moved)  # beyond the frame: sky
        # what resampling or blurring smoothed away of the sky's noise, given back
        keep = np.sqrt(max(0.0, 1.0 - _noise_left(op, lin.shape, grain) ** 2))
        new = np.where(empty, level + noise, moved + keep * noise)
    # the survey clips again what the new noise takes below its sky's floor (-inf: none, no change)
    return np.maximum(new, np.asarray(floor, dtype=new.dtype)[:, None, None])


def _clusters(model, hp: dict, groups: list[list[int]], rows: np.ndarray) -> np.ndarray:
    """The run's cluster of each row, as a new image is embedded (neighbours masked where the model
    reads masked images)."""
    rows = as_the_model_reads(rows, hp)
    labels = []
    with torch.no_grad():
        for start in range(0, len(rows), BATCH):
            _, mu, log_var = model.encode_with_target(torch.from_numpy(np.ascontiguousarray(rows[start:start + BATCH])))
            proba = model.prior.log_responsibilities(mu, log_var).exp().numpy()
            merged = np.stack([proba[:, g].sum(1) for g in groups], axis=1)
            labels.append(merged.argmax(1))
    return np.concatenate(labels)


def _spec_of(run: RunDir) -> PreprocessSpec:
    """The recipe the run's cube was made with; the ingest's default stretch, said, for a cube
    that no ingest made (written from arrays)."""
    if run.ingest_summary.is_file():
        return PreprocessSpec.of_run(run.ingest_summary, run.config)
    log.info("intervention test: %s has no ingest summary; its cube is taken as the ingest's default "
             "stretch made it (asinh, softening 0.1)", run.path)
    return PreprocessSpec()


def invariance_audit(run: RunDir, n: int = 256, seed: int = 0) -> pd.DataFrame:
    """How often the run's own clusters change under each of :data:`CHANGES`; written to
    ``comparisons/invariance.csv``.

    Parameters
    ----------
    run : RunDir
        A run with a trained and embedded VaDE.
    n : int
        Galaxies in the sample (all of them when the cube has fewer).
    seed : int
        Draws the sample and the noise.

    Returns
    -------
    DataFrame
        One row per change: ``change``, ``what``, ``changed`` (share of the sample whose cluster
        changes), ``ari`` (before against after), ``excess`` (``changed`` less the control's, galaxy
        by galaxy) with ``excess_low`` and ``excess_high`` (its 95% interval, by resampling the
        galaxies: :data:`RESAMPLES`), ``chance`` (the share two unrelated draws of the clusters'
        sizes would change), ``n``.
    """
    model, hp, _ = load_vade(model_file(run))
    model.eval()
    groups = cluster_groups(run, model.prior.n_components, made_by=fingerprint(hp, model.state_dict()))
    spec = _spec_of(run)
    cube = run.read_cube()
    drawn = sample_rows(len(cube), n, seed)
    rows = np.arange(len(cube)) if drawn is None else drawn  # sorted: the memory map read in order
    images = np.asarray(cube[rows], dtype=np.float32)
    records, moved = [], {}
    with Timer(f"intervention test: {len(rows)} galaxies, each seen {len(CHANGES)} ways"):
        sky = row_sky(unstretch(images, spec), spec)  # the same for every change
        before = _clusters(model, hp, groups, images)
        sizes = np.bincount(before) / len(before)
        chance = float(1.0 - (sizes**2).sum())
        for i, (change, what) in enumerate(CHANGES.items()):
            after = _clusters(model, hp, groups, change_rows(images, change, spec, seed=seed + 1 + i, sky=sky))
            moved[change] = (after != before).astype(np.float64)
            records.append({"change": change, "what": what, "changed": float(moved[change].mean()),
                            "ari": float(adjusted_rand_score(before, after)), "chance": chance, "n": len(rows)})
    # each change against the control on the same galaxies: the difference, and how sure it is
    diffs = {r["change"]: moved[r["change"]] - moved[CONTROL] for r in records}
    means: dict[str, list] = {change: [] for change in diffs}
    for start in range(0, RESAMPLES, 100):  # 100 resamples at a time, shared by every change: memory of 100 x n
        picks = np.random.default_rng([seed, start]).integers(0, len(rows), size=(min(100, RESAMPLES - start), len(rows)))
        for change, diff in diffs.items():
            means[change].append(diff[picks].mean(axis=1))
    for record in records:
        diff = diffs[record["change"]]
        low, high = np.percentile(np.concatenate(means[record["change"]]), [2.5, 97.5])
        record.update(excess=float(diff.mean()), excess_low=float(low), excess_high=float(high))
    table = pd.DataFrame(records)[["change", "what", "changed", "ari", "excess", "excess_low", "excess_high",
                                   "chance", "n"]]
    write_table(run.sub("comparisons") / INVARIANCE_FILE, table)
    log.info("intervention test (%d galaxies): share whose cluster changes %s (chance %.2f)", len(rows),
             ", ".join(f"{r['change']} {r['changed']:.2f}" for r in records), chance)
    return table
