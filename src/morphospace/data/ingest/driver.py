"""The ingest stage: a survey on disk -> the run's cube, catalogue and summary, written atomically.

Everything is written under temporary names first and renamed into place (the catalogue
last), so a killed ingest leaves only ``.partial`` files and the next run starts clean.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from types import SimpleNamespace
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...config import Config
from ...errors import UserError
from ...progress import progress
from ...run import RunDir, atomic_path, in_cube_order
from ...run.writes import to_parquet
from .catalogue import N_EXAMPLES, build_catalogue, flag_counts_line, log_summary, raise_if_flagged, summarise
from .cube import CubeWriter
from .layouts import Survey, read_survey
from .positions import set_positions
from .records import second_chances
from .preprocess import PreprocessSpec
from .replace import (SUPERSEDING, earlier_cube, galaxies_of, recipe_of, recover_left_aside, restore_earlier_outputs,
                      set_aside_results, set_earlier_outputs_aside, take_back_results)
from .workers import ingest_pool, run_chunks

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("morphospace")

LEVEL_SAMPLE = 64  # frames whose highest levels set the scale frames beyond 8 bits are judged on


def _resolve_framing(survey, spec: PreprocessSpec, pool=None, workers: int = 1) -> tuple[PreprocessSpec, str]:
    """``framing = "auto"`` made "fixed" or "galaxy" by the spread of a sample's apparent sizes
    (:func:`~morphospace.data.ingest.framing.framing_for`), and ``crop = "auto"`` made the crop
    that frames the sample's median galaxy (:func:`~morphospace.data.ingest.framing.survey_crop`),
    measured on the ingest's ``pool`` of ``workers`` where it has one; the spec unchanged where
    neither is asked, and a log line saying what was measured and chosen."""
    if spec.framing != "auto" and not spec.crop_auto:
        return spec, ""
    from dataclasses import replace

    from .framing import AUTO_SAMPLE, AUTO_SPREAD, framing_for, size_spread, survey_crop
    from .workers import sampled_crops

    crops = sampled_crops(survey, spec, AUTO_SAMPLE, pool=pool, parts=workers)
    measured = sum(c is not None for c in crops)
    notes = []
    if spec.framing == "auto":
        spread = size_spread(crops)
        chosen = framing_for(spread)
        why = (f"apparent sizes of {measured} sampled galaxies span {spread:.2f}x (10-90%), "
               f"{'at or above' if chosen == 'galaxy' else 'below'} {AUTO_SPREAD:g}x"
               if spread is not None else f"only {measured} sampled galaxies measured")
        spec = replace(spec, framing=chosen, size_spread=spread)
        notes.append(f"framing auto: {chosen} ({why})")
    if spec.crop_auto:
        crop = survey_crop(crops)
        why = (f"frames the median of {measured} sampled galaxies at {spec.galaxy_r90s:g} R90"
               if crop is not None else f"only {measured} sampled galaxies measured")
        spec = replace(spec, crop=spec.crop if crop is None else crop, crop_auto=False)
        notes.append(f"crop auto: {spec.crop:g}{' where no galaxy is found' if spec.framing == 'galaxy' else ''} "
                     f"({why})")
        overflowing = sum(c is not None and c >= 1.0 for c in crops)
        if crop == 1.0 and 2 * overflowing > measured:
            log.warning("%d of %d sampled galaxies are wider than their frames (%g R90 a side): the sky, measured "
                        "at the frame's border, holds some of their light, and their outskirts are cut; "
                        "cutouts of a wider field would show them whole", overflowing, measured, spec.galaxy_r90s)
    return spec, "; ".join(notes)


def _resolve_levels(survey, spec: PreprocessSpec, pool=None, workers: int = 1) -> tuple[PreprocessSpec, str]:
    """The spec with its ``level_top`` measured on a sample of the survey's frames beyond 8 bits
    (:func:`~morphospace.data.ingest.spec.level_top_of`), and a log line where it is below the
    files' full scale."""
    from dataclasses import replace

    from .spec import level_top_of
    from .workers import sampled_level_tops

    tops = sampled_level_tops(survey, spec, LEVEL_SAMPLE, pool=pool, parts=workers)
    top = level_top_of(tops)
    if top == 1.0:
        return spec, ""
    unused = round(-math.log2(top))
    example = f", e.g. {16 - unused}-bit data in 16-bit files" if unused < 8 else ""
    return replace(spec, level_top=top), (
        f"levels: {len(tops)} sampled frames beyond 8 bits with a galaxy reach at most {max(tops):.3g} of their "
        f"files' scale (the top {unused} bits unused{example}): such frames are judged (blank, flat) on "
        f"2^-{unused} of it")


def ingest(data: str | Path, run: RunDir, cfg: Config, strict: bool | None = None,
           check: Callable[[pd.DataFrame, tuple], object] | None = None) -> dict:
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
    check : callable, optional
        Called with the new catalogue and the new cube's shape before anything of the run is
        replaced or set aside; an exception it raises (a label setting the new survey cannot serve,
        more mixture components than galaxies) leaves the run as it was.

    Returns
    -------
    dict
        The summary also written to ``ingest_summary.json``: layout, counts, cube
        shape, label columns, the preprocessing, and per raised flag its count,
        meaning, whether it excludes the galaxy, example ids and what was wrong.
    """
    strict = cfg.ingest.strict if strict is None else strict
    workers, chunk = int(cfg.ingest.workers), int(cfg.ingest.chunk_size)
    if workers < 1:
        raise UserError(f"ingest.workers must be at least 1, got {workers}")
    if chunk < 1:
        raise UserError(f"ingest.chunk_size must be at least 1, got {chunk}")
    t0 = time.perf_counter()
    recover_left_aside(run)  # first: an ingest that fails early must not leave a killed one's state
    # listed by its absolute path, so the catalogue's sources name the files wherever the command ran:
    # a re-ingest tells the same galaxies from others by them (by the path as typed, the same relative
    # path from another folder read as the same survey, and the survey by another path as another)
    survey = read_survey(Path(os.path.abspath(data)), cfg.data)
    spec = PreprocessSpec.from_config(cfg.preprocess, survey.n_bands, cfg.ingest)
    procs = min(workers, max(1, len(survey) // chunk + 1))
    try:
        with ingest_pool(procs) as pool:  # one pool: the framing sample, then the chunks
            spec, levels_note = _resolve_levels(survey, spec, pool, procs)  # before the framing: it sees them
            spec, framing_note = _resolve_framing(survey, spec, pool, procs)
            for note in (levels_note, framing_note):
                if note:
                    log.info("%s", note)
            log.info("ingest: %d records, layout %s, %s -> %dx%dx%d, %d worker(s)%s",
                     len(survey), survey.layout, data, spec.channels, spec.size, spec.size, workers,
                     f"; each galaxy framed by its size ({spec.galaxy_r90s:g} R90 a side)"
                     if spec.framing == "galaxy" else "")
            if survey.n_bands > spec.channels and survey.n_bands != 3:  # said, not dropped silently
                log.warning("the survey's frames have %d bands: the cube's %s %s", survey.n_bands,
                            "colour channels are" if spec.channels == 3 else "grey channel is",
                            "the file's first three, the third as red" if spec.channels == 3 else "their mean")
            if strict:
                raise_if_flagged(survey, "catalogue")
            summary = _write_outputs(survey, spec, run, data, cfg, strict, procs, pool, t0, check)
    except BrokenProcessPool:
        raise UserError("an ingest worker process died (killed, out of memory, or a decoder crash); "
                        "nothing was written: re-run to start again") from None
    log_summary(summary)
    return summary


def _write_outputs(survey, spec: PreprocessSpec, run: RunDir, data, cfg: Config, strict: bool, procs: int,
                   pool, t0: float, check) -> dict:
    """The rest of :func:`ingest`: the chunks decoded on ``pool`` (``procs`` processes) into the cube,
    then the catalogue (put to ``check``) and the summary, each written under a temporary name and
    renamed."""
    workers, chunk, cube_dtype = int(cfg.ingest.workers), int(cfg.ingest.chunk_size), cfg.ingest.cube_dtype
    earlier = earlier_cube(run)
    try:
        writer = CubeWriter(run.cube, len(survey), (spec.channels, spec.size, spec.size), cube_dtype)
    except OSError as exc:
        raise UserError(f"cannot write in {run.path}: {exc.strerror or exc}") from None
    cube_index = np.full(len(survey), -1, dtype=np.int64)
    crops = np.full(len(survey), np.nan, dtype=np.float32)  # per record, the crop its row was cut with
    sides = np.zeros(len(survey), dtype=np.int32)  # per record, its frame's shorter side (0: not in the cube)
    details: dict[str, dict[str, str]] = {f: dict(list(d.items())[:N_EXAMPLES]) for f, d in survey.notes.items()}
    skies: dict[int, object] = {}  # record -> the position its FITS header gave
    chunks = run_chunks(survey, spec, chunk, pool, procs)
    buffer = np.empty((min(chunk, len(survey)), spec.channels, spec.size, spec.size), dtype=writer.dtype)
    outputs: list | None = None  # the earlier outputs set aside, once they are
    set_aside: tuple[Path, str] | None = None  # where the earlier results went, and the line saying so
    published = False
    def take(rows: list[int] | range, block, results) -> None:
        """A decoded chunk of the records ``rows`` into the cube, the catalogue's columns and the flags."""
        first = writer.append_rows(block.to_array(out=buffer))
        k = 0
        for i, (in_cube, flags, detail, sky) in zip(rows, results):
            rec = survey.records[i]
            if sky is not None:
                skies[i] = sky
            if in_cube:
                cube_index[i] = first + k
                crops[i] = block.crops[k]
                sides[i] = block.sides[k]
                k += 1
            for flag in flags:
                rec.flag(flag)
                ex = details.setdefault(flag, {})
                if len(ex) < N_EXAMPLES:
                    ex[rec.id] = detail

    try:
        for start, block, results in progress(chunks, total=(len(survey) + chunk - 1) // chunk,
                                              desc="ingest", unit="chunk"):
            take(range(start, start + len(results)), block, results)
        chunks.close()
        # a galaxy listed twice whose first file was unusable: its next listing is decoded now
        while rescue := second_chances(survey.records, cube_index):
            picked = SimpleNamespace(records=[survey.records[i] for i in rescue])
            for start, block, results in run_chunks(picked, spec, chunk, pool, procs):
                take(rescue[start:start + len(results)], block, results)
            log.info("%d galaxies listed again after an unusable first listing: the next listing ingested",
                     len(rescue))
        if pool is not None:  # the workers are gone before the outputs are written
            pool.shutdown(wait=True)
        fits_positions(survey, skies)
        for gid, why in list(survey.notes.get("bad_position", {}).items())[:N_EXAMPLES]:
            details.setdefault("bad_position", {}).setdefault(gid, why)
        if strict:
            raise_if_flagged(survey, "image")
        if writer.rows == 0:
            raise UserError(f"no usable galaxy in {data}: all {len(survey)} were flagged "
                            f"({flag_counts_line(survey)})")
        writer.finish(background=True)  # synced while the catalogue is built; published once synced
        catalogue = build_catalogue(survey, cube_index, crops, sides)
        if check is not None:  # before the earlier results are set aside: a refusal changes nothing
            check(catalogue, (writer.rows, *writer.row_shape))
        summary = summarise(survey, catalogue, spec, details, time.perf_counter() - t0, workers, writer.dtype.name)
        # Everything is written under temporary names first (and the cube synced), then the earlier
        # outputs and results set aside, and last the renames: cube, summary, catalogue. A failure
        # before the renames are done (a full disk, a cube that cannot be replaced) puts the earlier
        # outputs and results back: the run is as it was.
        with atomic_path(run.catalogue) as cat_tmp:
            to_parquet(catalogue, cat_tmp)
            with atomic_path(run.ingest_summary) as sum_tmp:
                sum_tmp.write_text(json.dumps(summary, indent=2) + "\n")
                writer.wait_synced()
                outputs = set_earlier_outputs_aside(run)
                set_aside = set_aside_results(run, earlier, galaxies_of(in_cube_order(catalogue)),
                                                                 recipe_of(summary["preprocess"]))
                writer.publish()
        published = True
    except BaseException as exc:
        writer.abort()
        if outputs is not None and not published:  # the run as it was: its outputs, then its results
            restore_earlier_outputs(run, outputs)
            take_back_results(run, None if set_aside is None else set_aside[0])
        if isinstance(exc, OSError):  # disk full, permissions: the user's to fix, in one line
            raise UserError(f"cannot write in {run.path}: {exc.strerror or exc}") from None
        raise
    finally:
        chunks.close()
    for _, aside in outputs:  # the new outputs in place: the earlier ones go
        try:
            aside.unlink(missing_ok=True)
        except OSError:  # left hidden; the next ingest removes it
            pass
    if set_aside is not None:
        (run.path / SUPERSEDING).unlink(missing_ok=True)  # published: the results stay where they went
        log.warning("%s", set_aside[1])
    return summary


def fits_positions(survey: Survey, skies: dict[int, object]) -> None:
    """Fill in the positions the FITS headers gave, where the catalogue gave none.

    Parameters
    ----------
    survey : Survey
        Changed in place: ``ra`` and ``dec`` label columns (added if needed), ``bad_position``
        flags and notes for a WCS that does not evaluate.
    skies : dict
        Record index -> (RA, Dec) in degrees, or what is wrong with its WCS
        (:attr:`~morphospace.data.ingest.decode.Frame.sky`).
    """
    if not skies:
        return
    labels = survey.labels
    if "ra" in labels.columns and "dec" in labels.columns:
        ra, dec = labels["ra"].to_numpy(dtype=float).copy(), labels["dec"].to_numpy(dtype=float).copy()
    else:
        ra, dec = np.full(len(survey), np.nan), np.full(len(survey), np.nan)
    notes = survey.notes.setdefault("bad_position", {})
    for i, sky in sorted(skies.items()):
        rec = survey.records[i]
        if "bad_position" in rec.flags or not (np.isnan(ra[i]) and np.isnan(dec[i])):
            continue  # the catalogue's position (or its problem) comes first
        if isinstance(sky, str):
            rec.flag("bad_position")
            notes.setdefault(rec.id, f"FITS {sky}")
        else:
            ra[i], dec[i] = sky
    if "ra" in labels.columns and "dec" in labels.columns:
        labels["ra"], labels["dec"] = ra, dec
    elif not (np.isnan(ra).all() and not notes):
        survey.labels = set_positions(labels, ra, dec)
    if not notes:
        survey.notes.pop("bad_position")
