"""The nuisance audit: do clusters follow how a galaxy is seen rather than what it is?

AstroVaDEr's clusters followed orientation and the position of a neighbour
(Spindler, Geach & Smith 2021, MNRAS 502, 985: axis ratio, surface-brightness profile,
orientation and the presence of companions). This module measures, for every galaxy of a run's
cube:

- its **position angle** from the second moments of the central galaxy's light
  (:func:`position_angle`), binned into 0-45, 45-90, 90-135 and 135-180 degrees,
  or ``round`` when the moment ellipticity ``1 - b/a`` is below 0.1 (the angle
  of a near-round galaxy is noise, so it gets its own category);
- its **brightest companion** (:func:`brightest_companion`): whether a source
  other than the central galaxy is detected (``sep``) and in which quadrant of
  the stamp (TL, TR, BL, BR as displayed, row 0 at the top; ``none``);

and :func:`audit_run` scores every clustering against these, against the
catalogue's quality flags and against the synthetic survey's true nuisance
columns, by adjusted mutual information. High AMI with a nuisance is bad.

Angle convention: degrees in [0, 180), counter-clockwise from the +x axis
(image columns, to the right) with y pointing *up* the displayed image.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..image.sources import central_index as _central_index
from ..image.pool import map_chunks
from ..image.sources import detect as _detect
from ..progress import Timer, progress
from ..run import RunDir, write_table
from ..run.writes import read_parquet
from ..run.pages import PageReleaser
from .compare import plot_heatmap, score_pair
from .labels import clustering_in_cube_order, is_nuisance_column, labels_in_cube_order, missing_mask, truth_column

log = logging.getLogger("morphospace")

__all__ = [
    "PA_BINS",
    "QUADRANTS",
    "to_grey",
    "position_angle",
    "brightest_companion",
    "measure_nuisance",
    "nuisance_table",
    "audit_run",
]

PA_BINS = ("0-45", "45-90", "90-135", "135-180")
ROUND = "round"
QUADRANTS = ("TL", "TR", "BL", "BR")
NO_COMPANION = "none"
MAX_CATEGORIES = 20


def to_grey(images: Any) -> np.ndarray:
    """N x H x W grey images from N x C x H x W (channel mean), N x H x W or one H x W image."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = arr.mean(axis=1)
    elif arr.ndim != 3:
        raise UserError(f"expected images N x C x H x W or N x H x W, got shape {arr.shape}")
    return arr


def _moments(data: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Position angle (degrees) and ellipticity 1 - b/a of the light inside ``mask``."""
    w = np.where(mask, np.clip(data, 0.0, None), 0.0).astype(np.float64)
    total = w.sum()
    if total <= 0:
        return float("nan"), float("nan")
    rows, cols = np.indices(data.shape, dtype=np.float64)
    x = cols
    y = -rows  # y up the displayed image
    mx, my = (w * x).sum() / total, (w * y).sum() / total
    dx, dy = x - mx, y - my
    ixx = (w * dx * dx).sum() / total
    iyy = (w * dy * dy).sum() / total
    ixy = (w * dx * dy).sum() / total
    pa = np.degrees(0.5 * np.arctan2(2.0 * ixy, ixx - iyy)) % 180.0
    half_trace = 0.5 * (ixx + iyy)
    root = np.sqrt(max(0.25 * (ixx - iyy) ** 2 + ixy**2, 0.0))
    lam1, lam2 = half_trace + root, max(half_trace - root, 0.0)
    ellipticity = 1.0 - np.sqrt(lam2 / lam1) if lam1 > 0 else float("nan")
    return float(pa), float(ellipticity)


def _pa_bin(pa: float, ellipticity: float, round_threshold: float) -> str | None:
    if not np.isfinite(pa) or not np.isfinite(ellipticity):
        return None
    if ellipticity < round_threshold:
        return ROUND
    return PA_BINS[min(int(pa // 45.0), 3)]


def _quadrant(x: float, y: float, shape: tuple[int, int]) -> str:
    h, w = shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    return ("T" if y < cy else "B") + ("L" if x < cx else "R")


def _measure_one(img: np.ndarray, round_threshold: float, thresh: float, minarea: int,
                 deblend_cont: float, min_flux_ratio: float) -> dict[str, Any]:
    data, objects, seg = _detect(img, thresh, minarea, deblend_cont)
    central = _central_index(objects, seg)
    row: dict[str, Any] = {"pa_deg": float("nan"), "ellipticity": float("nan"), "pa_bin": None,
                           "companion": False, "companion_quadrant": NO_COMPANION,
                           "companion_x": float("nan"), "companion_y": float("nan"),
                           "companion_flux_ratio": float("nan"), "n_sources": int(len(objects))}
    if central is not None:
        pa, e = _moments(data, seg == central + 1)
        row.update(pa_deg=pa, ellipticity=e, pa_bin=_pa_bin(pa, e, round_threshold))
    cflux = float(objects["flux"][central]) if central is not None else float("nan")
    others = [i for i in range(len(objects)) if i != central]
    if central is not None and cflux > 0:
        # faint specks (noise peaks, stamp-edge fragments) cannot shape a clustering
        others = [i for i in others if float(objects["flux"][i]) >= min_flux_ratio * cflux]
    if others:
        best = max(others, key=lambda i: float(objects["flux"][i]))
        x, y = float(objects["x"][best]), float(objects["y"][best])
        row.update(companion=True, companion_quadrant=_quadrant(x, y, img.shape), companion_x=x,
                   companion_y=y, companion_flux_ratio=float(objects["flux"][best]) / cflux
                   if central is not None and cflux > 0 else float("nan"))
    return row


def _measure_chunk(start: int, stop: int, cube_path: str, settings: tuple) -> list[dict[str, Any]]:
    """:func:`_measure_one` over rows ``[start, stop)`` of the cube at ``cube_path``."""
    return [_measure_one(img, *settings) for img in to_grey(np.load(cube_path, mmap_mode="r")[start:stop])]


def measure_nuisance(images: Any, ids: Any = None, round_threshold: float = 0.1, thresh: float = 3.0,
                     minarea: int = 5, deblend_cont: float = 0.005, min_flux_ratio: float = 0.01,
                     desc: str = "nuisance", workers: int = 1) -> pd.DataFrame:
    """Position angle and brightest companion of every image, detecting sources once per image.

    Parameters
    ----------
    images : array-like
        N x C x H x W, N x H x W or H x W (a memory-mapped cube is read row by row).
    ids : array-like or None
        Galaxy ids for the ``id`` column (default 0..N-1).
    round_threshold : float
        Ellipticity ``1 - b/a`` below which the position angle is ``round``.
    thresh, minarea, deblend_cont : float, int, float
        sep detection threshold (in noise sigmas, noise from the stamp border),
        minimum pixels per source and deblending contrast.
    min_flux_ratio : float
        Sources fainter than this fraction of the central galaxy's flux are not
        companions (on SDSS stamps they are mostly noise peaks and fragments cut
        by the stamp edge).
    desc : str
        Progress-bar label.
    workers : int
        Processes sharing the images, when ``images`` is a whole ``.npy`` file opened with
        ``np.load(..., mmap_mode="r")`` (each process maps the file itself); otherwise one.

    Returns
    -------
    DataFrame
        id, pa_deg, pa_bin (None where no central galaxy was found), ellipticity,
        companion, companion_quadrant, companion_x, companion_y,
        companion_flux_ratio, n_sources.
    """
    arr = images if hasattr(images, "shape") else np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    n = arr.shape[0]
    settings = (round_threshold, thresh, minarea, deblend_cont, min_flux_ratio)
    source = _whole_file(arr)
    if workers > 1 and source is not None:
        rows = [r for part in map_chunks(_measure_chunk, n, source, settings, chunk=512, workers=workers, desc=desc)
                for r in part]
    else:
        pages, rows = PageReleaser(arr), []  # read once: a memory map's pages need not stay resident
        row_bytes = arr[:1].nbytes  # a slice of a memmap: no read
        for i in progress(range(n), total=n, desc=desc, unit="img"):
            pages.read(row_bytes)
            rows.append(_measure_one(to_grey(arr[i : i + 1])[0], *settings))
    table = pd.DataFrame(rows)
    table.insert(0, "id", np.arange(n) if ids is None else np.asarray(ids))
    cols = ["id", "pa_deg", "pa_bin", "ellipticity", "companion", "companion_quadrant",
            "companion_x", "companion_y", "companion_flux_ratio", "n_sources"]
    return table[cols] if n else pd.DataFrame(columns=cols)


def _whole_file(arr: Any) -> str | None:
    """The path of the ``.npy`` that ``arr`` maps in full, or None (an array in memory, a slice)."""
    name = getattr(arr, "filename", None)
    if not isinstance(arr, np.memmap) or not name:
        return None
    try:
        whole = np.load(name, mmap_mode="r")
    except (OSError, ValueError):
        return None
    same = whole.shape == arr.shape and whole.dtype == arr.dtype and whole.offset == arr.offset
    return str(name) if same else None


def position_angle(images: Any, round_threshold: float = 0.1, **kw: Any) -> pd.DataFrame:
    """Position angle of the central galaxy of each image, from its light's second moments.

    The central galaxy is the ``sep`` source covering the stamp centre; its
    isophotal pixels (background-subtracted, negatives clipped) weight the
    moments. Returns a DataFrame with ``pa_deg`` (0-180, counter-clockwise from
    +x, y up), ``ellipticity`` (1 - b/a) and ``pa_bin`` (one of :data:`PA_BINS`,
    ``round`` below ``round_threshold``, None when nothing is detected).
    """
    t = measure_nuisance(images, round_threshold=round_threshold, **kw)
    return t[["pa_deg", "ellipticity", "pa_bin"]]


def brightest_companion(images: Any, **kw: Any) -> pd.DataFrame:
    """The brightest ``sep`` source other than the central galaxy, per image.

    Returns a DataFrame with ``companion`` (bool), ``companion_quadrant``
    (TL/TR/BL/BR of the displayed stamp, row 0 on top, or ``none``), its pixel
    position and flux ratio to the central galaxy.
    """
    t = measure_nuisance(images, **kw)
    return t[["companion", "companion_quadrant", "companion_x", "companion_y", "companion_flux_ratio"]]


# --- the audit ------------------------------------------------------------------------

def _is_angle(name: str) -> bool:
    low = name.lower()
    return "position_angle" in low or low in ("pa", "pa_deg")


def _bin_column(name: str, s: pd.Series) -> pd.Series | None:
    """A catalogue nuisance column as categories: angles in 4 bins, few values as they are,
    continuous values in quartiles. None if it cannot be binned."""
    values = s.to_numpy(dtype=object)
    miss = missing_mask(values)
    if name.lower().startswith("winding") and pd.api.types.is_numeric_dtype(s):
        # winding 0 = no arms: handedness is undefined there, not a third hand
        miss = miss | (s.fillna(0).to_numpy(dtype=float) == 0)
    if miss.all():
        return None
    out = pd.Series([None] * len(s), dtype=object, index=s.index)
    present = s[~miss]
    if _is_angle(name) and pd.api.types.is_numeric_dtype(s):
        deg = present.astype(float)
        if deg.abs().max() <= 2 * np.pi + 1e-9 and deg.nunique() > MAX_CATEGORIES:
            deg = np.degrees(deg)  # many distinct values all within 2 pi: radians
        deg = deg % 180.0
        out[~miss] = [PA_BINS[min(int(v // 45.0), 3)] for v in deg]
        return out
    if pd.api.types.is_bool_dtype(s):
        out[~miss] = present.astype(bool).to_numpy()
        return out
    n_unique = present.nunique()
    if n_unique < 2:
        return None
    if pd.api.types.is_float_dtype(s) and n_unique > 10 or pd.api.types.is_integer_dtype(s) and n_unique > MAX_CATEGORIES:
        values = present.astype(float)
        q = pd.qcut(values, 4, duplicates="drop")
        if q.cat.categories.size < 2:  # one value holds most galaxies (frames of 423 px, a few smaller):
            # quartiles collapse into one bin; four equal steps of the (log) range keep the few apart
            q = pd.cut(np.log(values) if (values > 0).all() else values, 4).cat.remove_unused_categories()
        out[~miss] = [f"Q{c + 1}" for c in q.cat.codes]
        return out if q.cat.categories.size >= 2 else None
    if n_unique > MAX_CATEGORIES:
        return None
    out[~miss] = present.to_numpy(dtype=object)
    return out


def nuisance_table(run: RunDir, cfg: Any, measured: pd.DataFrame) -> pd.DataFrame:
    """The nuisance categories of every galaxy of the cube (cube order), one column each.

    Columns: ``pa_bin`` (measured; missing for round galaxies, which have no position angle),
    ``companion``, ``companion_quadrant`` (measured),
    ``flag_*`` (catalogue quality flags with both values among the cube's
    galaxies), ``handedness`` (cw / acw for sdss-gz1 spirals, from ``gz1_name``)
    and the catalogue's nuisance columns (``cluster.nuisance_columns``, or
    recognised by name: position_angle, winding, n_companions, psf*, size*, ...),
    binned.
    """
    inside = run.cube_catalogue()
    m = measured.set_index(measured["id"].astype(str)).reindex(inside["id"].astype(str))
    pa_bin = np.array(m["pa_bin"].to_numpy(dtype=object), dtype=object)  # a copy: an all-null column reads only
    # a round galaxy has no position angle: orientation is audited among elongated galaxies alone,
    # since roundness is form (ellipticals are round) and a bin of its own made every clustering
    # that follows morphology read as following the position angle
    pa_bin[pa_bin == ROUND] = None
    table = pd.DataFrame({
        "pa_bin": pa_bin,
        "companion": m["companion"].to_numpy(dtype=object),
        "companion_quadrant": m["companion_quadrant"].to_numpy(dtype=object),
    })
    for col in inside.columns:
        if col.startswith("flag_"):
            flags = inside[col].fillna(False).astype(bool)
            if flags.any() and not flags.all():
                table[col] = flags.to_numpy()
    if "gz1_name" in inside.columns:
        names = inside["gz1_name"].astype("string").fillna("")
        hand = np.where(names.str.endswith("_acw"), "acw", np.where(names.str.endswith("_cw"), "cw", None))
        if len(set(hand[hand != None])) == 2:  # noqa: E711 (element-wise on an object array)
            table["handedness"] = hand
    wanted = list(cfg.cluster.nuisance_columns)
    for col in wanted:
        if col not in inside.columns:
            raise UserError(f"cluster.nuisance_columns: '{col}' is not a catalogue column")
    cols = wanted or [c for c in inside.columns if is_nuisance_column(c) and not c.startswith("flag_")
                      and not re.match(r"comp\d+_", c.lower())]  # per-companion positions: too fine to bin
    if "frame_px" in inside.columns and "frame_px" not in cols:  # the ingest's own, as the flags: always audited
        cols = [*cols, "frame_px"]
    for col in cols:
        binned = _bin_column(col, inside[col])
        if binned is None:
            continue
        key = col if col not in table.columns else f"true_{col}"
        table[key] = binned.to_numpy(dtype=object)
    table.insert(0, "id", inside["id"].to_numpy())
    return table


ANOMALY_ROW = "anomaly score (tenths)"


def _anomaly_deciles(run: RunDir, ids: np.ndarray) -> np.ndarray | None:
    """The tenth of the anomaly score (the form one, else the VaDE's) each cube galaxy is in, or None."""
    from .anomaly import read_anomaly

    def of_cube(table: pd.DataFrame, column: str) -> np.ndarray | None:
        same = column in table and len(table) == len(ids) and (
            "id" not in table or np.array_equal(table["id"].astype(str).to_numpy(), ids.astype(str)))
        return table[column].to_numpy(dtype=float) if same else None

    try:  # a reference row: an unreadable score leaves it out, not the audit
        found = read_anomaly(run)
        score = of_cube(found[0], "form_anomaly") if found is not None else None
        if score is None and (run.path / "vade_galaxies.parquet").is_file():
            score = of_cube(read_parquet(run.path / "vade_galaxies.parquet"), "anomaly")
    except (UserError, OSError, ValueError) as exc:
        log.warning("the nuisance audit leaves out the anomaly score: %s", exc)
        return None
    finite = np.isfinite(score) if score is not None else None
    if score is None or not finite.any():
        return None
    out = np.full(len(score), None, dtype=object)  # no score: left out, as a missing nuisance is
    ranks = pd.Series(score[finite]).rank(method="min").to_numpy() - 1  # tied scores share a tenth
    out[finite] = (ranks * 10 // finite.sum()).astype(int)
    return out


def _ami(labels, values) -> float:
    """The AMI of a labelling with a nuisance; NaN where the labelling has one value (every galaxy
    in one cluster, or all noise), which explains nothing and scored 1.0 beside a one-valued column."""
    if pd.Series(np.asarray(labels, dtype=object)).dropna().nunique() < 2:
        return float("nan")
    return score_pair(labels, values)["ami"]


def audit_run(run: RunDir, cfg: Any, recompute: bool = False, round_threshold: float = 0.1) -> pd.DataFrame:
    """AMI of every clustering of a run with every nuisance; rows clusterings, columns nuisances.

    Measures the cube once (``nuisance.parquet`` in the run: id, pa_deg, pa_bin,
    ellipticity, companion, companion_quadrant, ...; reused while its ids match
    the cube unless ``recompute``), builds the categories of
    :func:`nuisance_table` and writes ``comparisons/nuisance_audit.csv`` (first
    column ``clustering``; AMI with noise as its own cluster, missing values
    dropped) and ``figures/nuisance_audit.png``. The truth label column, when
    there is one, is a last reference row (how much the human morphology
    itself goes with each nuisance: ellipticals are round, for instance), and the anomaly score's
    tenths another (:data:`ANOMALY_ROW`: whether what reads as strange follows a nuisance).
    """
    clusterings = run.clusterings()
    if not clusterings:
        raise UserError(f"no clusterings in {run.path}: run `morphospace cluster` first")
    # the earlier audit goes first: one stopped half way must not leave the earlier clusterings' numbers
    (run.path / "comparisons" / "nuisance_audit.csv").unlink(missing_ok=True)
    (run.path / "figures" / "nuisance_audit.png").unlink(missing_ok=True)
    ids = run.cube_ids()
    path = run.path / "nuisance.parquet"
    measured = None
    if path.exists() and not recompute:
        cached = read_parquet(path)
        if len(cached) == len(ids) and np.array_equal(cached["id"].astype(str).to_numpy(), ids.astype(str)):
            measured = cached
    if measured is None:
        cube = run.read_cube()
        with Timer(f"measuring position angles and companions of {len(ids)} galaxies"):
            measured = measure_nuisance(cube, ids=ids, round_threshold=round_threshold,
                                        workers=cfg.ingest.workers if hasattr(cfg, "ingest") else 1)
        write_table(path, measured)
    table = nuisance_table(run, cfg, measured)
    # a nuisance every galaxy shares (no companion found anywhere) explains nothing: it read AMI 0 and
    # was named what the clusters follow most, or 1.0 beside a clustering of one cluster
    constant = [c for c in table.columns if c != "id" and pd.Series(table[c]).dropna().nunique() < 2]
    if constant:
        log.info("nuisance audit: %s the same for every galaxy: left out", ", ".join(constant))
    nuisances = [c for c in table.columns if c != "id" and c not in constant]

    def row(name: str, labels) -> dict:
        return {"clustering": name, **{nz: _ami(labels, table[nz].to_numpy(dtype=object)) for nz in nuisances}}

    rows = [row(name, clustering_in_cube_order(run, name, ids)) for name in clusterings]
    truth = truth_column(run.read_catalogue(), cfg)
    if truth is not None and truth not in clusterings:
        rows.append(row(truth, labels_in_cube_order(run, truth)))
    deciles = _anomaly_deciles(run, ids)
    if deciles is not None:  # the anomaly score's tenths: does "strange" follow a nuisance?
        rows.append(row(ANOMALY_ROW, deciles))
    audit = pd.DataFrame(rows, columns=["clustering", *nuisances])
    write_table(run.sub("comparisons") / "nuisance_audit.csv", audit)
    if nuisances:
        plot_heatmap(audit.set_index("clustering"), run.figure_path("nuisance_audit"),
                     "AMI with nuisances (lower is better)", vmin=0.0,
                     vmax=max(0.2, float(np.nanmax(audit[nuisances].to_numpy(dtype=float)))
                              if audit[nuisances].notna().any().any() else 0.2),
                     split_rows=len(clusterings), cmap="magma")
    return audit
