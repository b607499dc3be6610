"""Survey ingest: any known layout -> the image cube + the catalogue of a run.

Examples
--------
>>> from morphospace.config import Config
>>> from morphospace.rundir import RunDir
>>> summary = ingest("path/to/survey", RunDir("run", create=True), Config())  # doctest: +SKIP

The stages:

1. :func:`~morphospace.ingest.layouts.read_survey` lists the records (no pixels yet)
   and flags catalogue-level problems (missing images, duplicate ids, ...);
2. a process pool decodes and preprocesses chunks of records
   (:mod:`~morphospace.ingest.decode`, :mod:`~morphospace.ingest.preprocess`);
3. the parent appends good rows to the cube in input order
   (:class:`~morphospace.ingest.cube.CubeWriter`) and collects the flags;
4. the catalogue and the ingest summary are written last, atomically.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config
from ..errors import UserError
from ..progress import progress
from ..rundir import RunDir, write_json, write_table
from .cube import CubeWriter
from .decode import BadImage, decode, draft_side
from .layouts import LAYOUTS, Survey, detect_layout, read_survey
from .preprocess import PreprocessSpec, preprocess
from .records import EXCLUDING, FLAG_DESCRIPTIONS, Record

__all__ = ["ingest", "read_survey", "detect_layout", "LAYOUTS", "FLAG_DESCRIPTIONS", "PreprocessSpec"]

log = logging.getLogger("morphospace")

# Worker-process state: open HDF5 files are reused across chunks.
_H5_CACHE: dict = {}


def _process_chunk(records: list[Record], spec: PreprocessSpec) -> list[tuple[np.ndarray | None, set[str]]]:
    """Decode and preprocess a chunk of records (runs in a worker process)."""
    out = []
    side = draft_side(spec.crop, spec.size)
    for rec in records:
        if not rec.decodable:
            out.append((None, set()))
            continue
        try:
            raw = decode(rec, min_side=side, h5_cache=_H5_CACHE)
            row, flags = preprocess(raw, spec)
        except BadImage as exc:
            out.append((None, {exc.flag}))
            continue
        out.append((row, flags))
    return out


def _chunks(records: list[Record], size: int):
    for start in range(0, len(records), size):
        yield records[start: start + size]


def ingest(data: str | Path, run: RunDir, cfg: Config, strict: bool | None = None) -> dict:
    """Ingest the survey at ``data`` into ``run``; return the ingest summary.

    Parameters
    ----------
    data : str or Path
        A survey in any layout of :data:`LAYOUTS`.
    run : RunDir
        The run directory; its cube, catalogue and summary are replaced.
    cfg : Config
        Uses ``cfg.data``, ``cfg.preprocess`` and ``cfg.ingest``.
    strict : bool, optional
        Turn every quality flag into an error (default ``cfg.ingest.strict``).
    """
    strict = cfg.ingest.strict if strict is None else strict
    t0 = time.perf_counter()
    survey = read_survey(data, cfg.data)
    spec = PreprocessSpec.from_config(cfg.preprocess, survey.n_bands, cfg.ingest.blank_std)
    log.info("ingest: %d records, layout %s, %s -> %dx%dx%d, %d workers",
             len(survey), survey.layout, data, spec.channels, spec.size, spec.size, cfg.ingest.workers)
    if strict:
        _raise_if_flagged(survey.records, "catalogue")

    # Start clean: an old cube or catalogue must never pair with a new one.
    for stale in (run.catalogue, run.ingest_summary, run.cube):
        stale.unlink(missing_ok=True)
    writer = CubeWriter(run.cube, len(survey), (spec.channels, spec.size, spec.size))
    cube_index = np.full(len(survey), -1, dtype=np.int64)
    try:
        results = _run_pool(survey, spec, cfg.ingest.workers, cfg.ingest.chunk_size)
        for i, (row, flags) in enumerate(progress(results, total=len(survey), desc="ingest", unit="img")):
            rec = survey.records[i]
            rec.flags |= flags
            if strict and rec.flags:
                raise UserError(f"--strict: galaxy {rec.id} flagged {', '.join(sorted(rec.flags))}")
            if row is not None:
                cube_index[i] = writer.append(row)
        if writer.rows == 0:
            raise UserError(f"no usable galaxy in {data}: every image was flagged (see the log)")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    catalogue = build_catalogue(survey, cube_index)
    summary = summarise(survey, catalogue, spec, time.perf_counter() - t0)
    write_table(run.catalogue, catalogue)
    write_json(run.ingest_summary, summary)
    _log_summary(summary)
    return summary


def _run_pool(survey: Survey, spec: PreprocessSpec, workers: int, chunk: int):
    """Yield (row, flags) per record in input order, decoding on ``workers`` processes."""
    chunks = list(_chunks(survey.records, max(1, chunk)))
    if workers <= 1:
        for c in chunks:
            yield from _process_chunk(c, spec)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # Keep at most a few chunks in flight so memory stays flat as N grows.
        pending = []
        it = iter(chunks)
        for c in it:
            pending.append(pool.submit(_process_chunk, c, spec))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_process_chunk, nxt, spec))
            yield from done.result()


def build_catalogue(survey: Survey, cube_index: np.ndarray) -> pd.DataFrame:
    """One row per record: id, source, labels, flag_<reason> booleans, cube_index."""
    recs = survey.records
    table = pd.DataFrame({"id": [r.id for r in recs], "source": [r.source if r.kind != "hdf5" else f"{r.source}#{r.index}" for r in recs]})
    for col in survey.label_columns:
        values = [r.labels.get(col) for r in recs]
        table[col] = pd.Series(values, dtype=_label_dtype(values))
    for flag in FLAG_DESCRIPTIONS:
        table[f"flag_{flag}"] = np.array([flag in r.flags for r in recs], dtype=bool)
    table["cube_index"] = cube_index
    return table


def _label_dtype(values: list) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return "Int64"
    if present and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def summarise(survey: Survey, catalogue: pd.DataFrame, spec: PreprocessSpec, seconds: float) -> dict:
    flags = {}
    for flag, words in FLAG_DESCRIPTIONS.items():
        hit = catalogue.loc[catalogue[f"flag_{flag}"], "id"]
        if len(hit):
            flags[flag] = {"count": int(len(hit)), "meaning": words, "excluded": flag in EXCLUDING,
                           "examples": hit.head(5).tolist()}
    return {
        "layout": survey.layout,
        "source": str(survey.root),
        "n_records": int(len(catalogue)),
        "n_in_cube": int((catalogue["cube_index"] >= 0).sum()),
        "cube_shape": [int((catalogue["cube_index"] >= 0).sum()), spec.channels, spec.size, spec.size],
        "label_columns": survey.label_columns,
        "preprocess": {"crop": spec.crop, "size": spec.size, "channels": spec.channels,
                       "normalise": spec.normalise, "softening": spec.softening},
        "flags": flags,
        "seconds": round(seconds, 3),
    }


def _log_summary(summary: dict) -> None:
    log.info("ingest: %d of %d galaxies in the cube %s (%.1f s)", summary["n_in_cube"], summary["n_records"],
             "x".join(map(str, summary["cube_shape"])), summary["seconds"])
    for flag, info in summary["flags"].items():
        log.warning("  flagged %-17s %5d  (%s; %s) e.g. %s", flag, info["count"], info["meaning"],
                    "excluded" if info["excluded"] else "kept", ", ".join(map(str, info["examples"][:3])))


def _raise_if_flagged(records: list[Record], where: str) -> None:
    bad = [r for r in records if r.flags]
    if bad:
        r = bad[0]
        raise UserError(f"--strict: {len(bad)} {where} problem(s), e.g. galaxy {r.id}: {', '.join(sorted(r.flags))}")
