"""The nuisance audit: do clusters follow how a galaxy is seen rather than what it is?

AstroVaDEr's clusters followed orientation and the position of a neighbour
(Spindler, Geach & Smith 2021, MNRAS 502, 985: axis ratio, surface-brightness profile,
orientation and the presence of companions). For every galaxy of a run's cube its position
angle and brightest companion are measured on the image (:mod:`.nuisance_measure`), and
:func:`audit_run` scores every clustering against these, against the catalogue's quality flags
and against the synthetic survey's true nuisance columns, by adjusted mutual information. High
AMI with a nuisance is bad.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..progress import Timer
from ..run import RunDir, write_table
from ..run.writes import read_parquet
from .compare import plot_heatmap, score_pair
# the measurements on the images, re-exported for their users
from .nuisance_measure import (NO_COMPANION, PA_BINS, QUADRANTS, ROUND, brightest_companion,  # noqa: F401
                               measure_nuisance, pa_bin, position_angle, to_grey)
from .labels import clustering_in_cube_order, is_nuisance_column, labels_in_cube_order, missing_mask, truth_column

log = logging.getLogger("morphospace")

MAX_CATEGORIES = 20  # a catalogue's nuisance column of more values is binned

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
    ``companion``, ``companion_quadrant`` (measured; missing for galaxies without a companion),
    ``flag_*`` (catalogue quality flags with both values among the cube's
    galaxies), ``handedness`` (cw / acw for sdss-gz1 spirals, from ``gz1_name``)
    and the catalogue's nuisance columns (``cluster.nuisance_columns``, or
    recognised by name: position_angle, winding, n_companions, psf*, size*, ...),
    binned.
    """
    inside = run.cube_catalogue()
    m = measured.set_index(measured["id"].astype(str)).reindex(inside["id"].astype(str))
    bins = np.array(m["pa_bin"].to_numpy(dtype=object), dtype=object)  # a copy: an all-null column reads only
    # a round galaxy has no position angle: orientation is audited among elongated galaxies alone,
    # since roundness is form (ellipticals are round) and a bin of its own made every clustering
    # that follows morphology read as following the position angle
    bins[bins == ROUND] = None
    # where a companion sits is audited among the galaxies that have one: whether one is there is the
    # `companion` row (its value "none" was left out only because the text reads as a missing label)
    quadrant = np.array(m["companion_quadrant"].to_numpy(dtype=object), dtype=object)
    quadrant[quadrant == NO_COMPANION] = None
    table = pd.DataFrame({
        "pa_bin": bins,
        "companion": m["companion"].to_numpy(dtype=object),
        "companion_quadrant": quadrant,
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
            if {"pa_deg", "ellipticity"} <= set(cached.columns):  # binned by this round_threshold, not the cache's
                measured = cached.assign(pa_bin=[pa_bin(p, e, round_threshold) for p, e in
                                                 zip(cached["pa_deg"].to_numpy(float), cached["ellipticity"].to_numpy(float))])
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
