"""The ingest stage: a survey on disk -> the run's cube, catalogue and summary, written atomically.

Everything is written under temporary names first and renamed into place (the catalogue
last), so a killed ingest leaves only ``.partial`` files and the next run starts clean.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...config import Config
from ...errors import UserError
from ...progress import progress
from ...run import RunDir, atomic_path, in_cube_order
from ...run.rundir import DERIVED, IMPORTED_MARKER, TAGS_FILE
from ...run.writes import to_parquet
from .catalogue import N_EXAMPLES, build_catalogue, flag_counts_line, log_summary, raise_if_flagged, summarise
from .cube import CubeWriter, partial_path
from .layouts import Survey, read_survey
from .positions import set_positions
from .preprocess import PreprocessSpec
from .workers import ingest_pool, run_chunks

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("morphospace")

LEVEL_SAMPLE = 64  # frames whose highest levels set the scale frames beyond 8 bits are judged on


# what a cube's pixels are made with, beside its galaxies: results derived from a cube made
# otherwise (a model trained at 32 px, an embedding of grey images) do not describe the new one
RECIPE = ("crop", "framing", "galaxy_r90s", "size", "channels", "normalise", "softening", "resample")


def _recipe(preprocess: dict) -> dict:
    return {key: preprocess.get(key) for key in RECIPE}


def _earlier(run: RunDir) -> tuple[list, dict | None] | None:
    """The galaxies of the earlier cube and its recipe (:data:`RECIPE`; None where its summary does
    not say) where the run holds results derived from it (None otherwise, or unreadable); and
    partial files of a killed ingest removed. The earlier outputs themselves stay until the new ones
    are ready (:func:`_set_earlier_outputs_aside`): a re-ingest that fails (nothing usable, ``--strict``,
    a full disk) leaves the run as it was."""
    earlier = None
    if any(os.path.lexists(run.path / name) for name in DERIVED):
        try:
            galaxies = _galaxies(run.cube_catalogue())
        except Exception:  # noqa: BLE001 - a damaged earlier run: its results are set aside below
            galaxies = None
        try:
            recipe = _recipe(json.loads(run.ingest_summary.read_text())["preprocess"])
        except Exception:  # noqa: BLE001 - no summary, or one that does not say: the galaxies decide
            recipe = None
        earlier = None if galaxies is None else (galaxies, recipe)
    partial_path(run.cube).unlink(missing_ok=True)
    for name in (run.catalogue.name, run.ingest_summary.name):
        for stale in run.path.glob(f".{name}.*.partial"):
            stale.unlink(missing_ok=True)
    return earlier


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.earlier")


def _recover_left_aside(run: RunDir) -> None:
    """Earlier outputs an ingest killed outright left aside (SIGKILL between setting them aside and
    renaming the new ones in) put back, or removed: the catalogue is renamed last, so where it is in
    place the new outputs all are and the earlier ones go; where it is not, the earlier three come
    back over whatever of the new ones was renamed in (a new cube must not pair with an old catalogue)."""
    outputs = (run.catalogue, run.ingest_summary, run.cube)
    if not any(_aside(p).exists() for p in outputs):
        return
    if run.catalogue.exists():
        for p in outputs:
            _aside(p).unlink(missing_ok=True)
        return
    for p in outputs:
        if not _aside(p).exists():
            p.unlink(missing_ok=True)
    _put_back([(p, _aside(p)) for p in outputs if _aside(p).exists()])


def _set_earlier_outputs_aside(run: RunDir) -> list[tuple[Path, Path]]:
    """The earlier ingest's cube, catalogue and summary renamed to hidden names just before the new
    ones are renamed into place (an old cube or catalogue must never pair with a new one), and put
    back by :func:`_put_back` if the publishing fails: they were deleted, and a failure then (a cube
    that cannot be replaced) left the run with no cube or catalogue at all. Raises OSError, having
    put back what it moved, where one cannot be moved."""
    moved: list[tuple[Path, Path]] = []
    try:
        for path in (run.catalogue, run.ingest_summary, run.cube):
            if path.exists():
                os.replace(path, _aside(path))
                moved.append((path, _aside(path)))
    except BaseException:
        _put_back(moved)
        raise
    return moved


def _put_back(moved: list[tuple[Path, Path]]) -> None:
    for path, aside in reversed(moved):
        try:
            os.replace(aside, path)
        except Exception as exc:  # noqa: BLE001 - said: the earlier output is still there, under its hidden name
            log.warning("could not put %s back (%s): it is %s", path.name, exc, aside)


def _take_back_results(run: RunDir, dest: Path | None) -> None:
    """Results an ingest that then failed set aside in ``dest``, moved back where they were (never
    raising: the failure that calls for it is the one to say)."""
    if dest is None:
        return
    try:
        _move_back(run, dest)
    except Exception as exc:  # noqa: BLE001 - said, and the ingest's own error goes on
        log.warning("some of the results set aside in %s could not be moved back (%s)", dest, exc)


def _move_back(run: RunDir, dest: Path) -> None:

    def back(moved: Path) -> bool:  # whether everything under it went home
        home = run.path / moved.relative_to(dest)
        if not os.path.lexists(home):
            home.parent.mkdir(parents=True, exist_ok=True)
            os.replace(moved, home)
            return True
        if moved.is_dir() and not moved.is_symlink() and home.is_dir():  # an imported model's folder
            return all([back(p) for p in sorted(moved.iterdir())])
        return False

    if all([back(p) for p in sorted(dest.iterdir())]):
        shutil.rmtree(dest, ignore_errors=True)
        try:
            dest.parent.rmdir()  # superseded/, where it was the only one
        except OSError:
            pass
    else:
        log.warning("some of the results set aside in %s could not be moved back", dest)

def _galaxies(cube_catalogue) -> list[tuple[str, str]]:
    """What tells the galaxies of a cube, row by row: each one's id and the file it was read from
    (two synthetic surveys share their ids; another folder is another survey)."""
    sources = cube_catalogue["source"].astype(str).tolist() if "source" in cube_catalogue else [""] * len(cube_catalogue)
    return list(zip(cube_catalogue["id"].astype(str).tolist(), sources))


def _same_galaxies(new: list[tuple[str, str]], earlier: list[tuple[str, str]]) -> bool:
    """Whether two cubes hold the same galaxies: the same ids from the same files, a file named by
    its resolved path (the survey through a link, or by the relative path an earlier version wrote,
    read from the folder it was ingested from), so that the same files by another path are not
    taken for other galaxies and their results set aside."""
    if new == earlier:
        return True
    if len(new) != len(earlier) or [i for i, _ in new] != [i for i, _ in earlier]:
        return False

    folders: dict[str, str] = {}  # each folder resolved once (10^6 realpaths took half a minute)
    files: dict[str, str] = {}  # each HDF5 file once

    def split(source: str) -> tuple[str, str]:
        path, hash_, row = source.rpartition("#")  # an HDF5 row: file#row
        if hash_ and row.isdigit():
            if path not in files:
                files[path] = os.path.realpath(path) if os.path.isfile(path) else ""
            if files[path]:
                return files[path], f"#{row}"
        return source, ""

    def resolved(source: str) -> str:
        path, row = split(source)
        head, tail = os.path.split(path)
        if head not in folders:
            folders[head] = os.path.realpath(head or ".")
        return os.path.join(folders[head], tail) + row

    def same(a: str, b: str) -> bool:  # the folders first; a file that is itself a link, last
        return a == b or resolved(a) == resolved(b) or os.path.realpath(split(a)[0]) + split(a)[1] == \
            os.path.realpath(split(b)[0]) + split(b)[1]

    return all(same(a, b) for (_, a), (_, b) in zip(new, earlier))


def _set_aside_results_of_other_galaxies(run: RunDir, earlier: tuple | None, ids: list,
                                         recipe: dict) -> tuple[Path, str] | None:
    """Before a new cube of galaxies ``ids`` made with ``recipe`` is published: what the stages derived
    from the earlier cube (models, embeddings, maps, clusterings, classes, the report...) is moved to
    ``superseded/<UTC time>/`` (with the user's anomaly tags where the galaxies are others: they name
    galaxies by id, and ids recur), unless the earlier cube held the same galaxies made the same way (a
    re-run of the same survey keeps them, and its stages remake them; the same galaxies at another
    size or in grey are another cube, which a model trained on the earlier one does not fit; an
    imported model, made from no galaxies of the run, stays). Moved, not deleted: a trained model or labels
    filled in are not lost; a link among them is kept pointing where it pointed. Where a move fails
    (or Ctrl-C comes) what was moved goes back, and the error is raised: the new cube is then not
    published. Returns the folder and the line to log once the new cube is published."""
    present = [run.path / name for name in DERIVED if os.path.lexists(run.path / name)]
    imported = run.imported_model()
    if imported is not None:  # made from no galaxies of the run, it stays; what embed wrote beside it goes
        present = ([p for p in present if p.name != "models"]
                   + [p for p in sorted(imported.parent.iterdir()) if p != imported]
                   + [p for p in sorted(imported.iterdir()) if p.name not in ("model.pt", IMPORTED_MARKER)])
    same = earlier is not None and _same_galaxies(ids, earlier[0])
    if earlier is not None and not same and (run.path / TAGS_FILE).is_file():
        present.append(run.path / TAGS_FILE)  # the user's, but about the earlier galaxies by id
    if not present or (same and earlier[1] in (None, recipe)):
        return None
    if [p.name for p in present] == ["models"] and not (run.cube.exists() or run.catalogue.exists()):
        return None  # a model imported into a new run before imports were marked: made from no galaxies
    dest = run.new_superseded_folder()
    try:
        for path in present:
            _absolute_links(path, present)
            target = dest / path.relative_to(run.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    except BaseException:
        _take_back_results(run, dest)
        raise
    changed = [f"{k} {earlier[1][k]} -> {recipe[k]}" for k in RECIPE if same and earlier[1] and earlier[1][k] != recipe[k]]
    return dest, (f"the run's results ({', '.join(str(p.relative_to(run.path)) for p in present)}) were made from "
                  + (f"the same galaxies made otherwise ({', '.join(changed)})" if changed else
                     "the galaxies of the earlier ingest")
                  + f": moved to {dest.relative_to(run.path)} (delete it when you no longer need them)")


def _absolute_links(path: Path, moved: list[Path]) -> None:
    """Make ``path`` (a link) and the links under it absolute where they point outside what is
    ``moved`` with it, so that they still point where they did once moved two folders deeper (a
    models/ folder linked to a larger disk, say); links among the moved entries move with them."""
    links = [path] if path.is_symlink() else [Path(root) / name for root, dirs, files in os.walk(path)
                                              for name in dirs + files if (Path(root) / name).is_symlink()]
    for link in links:
        target = os.readlink(link)
        if os.path.isabs(target):
            continue
        where = os.path.normpath(os.path.join(link.parent, target))
        if any(Path(where).is_relative_to(m) and Path(where) != link for m in moved):
            continue
        tmp = link.with_name(f".{link.name}.relink")
        os.symlink(where, tmp)
        os.replace(tmp, link)


def _resolve_framing(survey, spec: PreprocessSpec, pool=None, workers: int = 1) -> tuple[PreprocessSpec, str]:
    """``framing = "auto"`` made "fixed" or "galaxy" by the spread of a sample's apparent sizes
    (:func:`~morphospace.data.ingest.framing.framing_for`), measured on the ingest's ``pool`` of
    ``workers`` where it has one; the spec unchanged otherwise, and a log line saying what was
    measured and chosen."""
    if spec.framing != "auto":
        return spec, ""
    from dataclasses import replace

    from .framing import AUTO_SAMPLE, AUTO_SPREAD, framing_for, size_spread
    from .workers import sampled_crops

    crops = sampled_crops(survey, spec, AUTO_SAMPLE, pool=pool, parts=workers)
    spread = size_spread(crops)
    chosen = framing_for(spread)
    measured = sum(c is not None for c in crops)
    why = (f"apparent sizes of {measured} sampled galaxies span {spread:.2f}x (10-90%), "
           f"{'at or above' if chosen == 'galaxy' else 'below'} {AUTO_SPREAD:g}x"
           if spread is not None else f"only {measured} sampled galaxies measured")
    return replace(spec, framing=chosen, size_spread=spread), f"framing auto: {chosen} ({why})"


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
    _recover_left_aside(run)  # first: an ingest that fails early must not leave a killed one's state
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
                log.warning("the survey's frames have %d bands: the cube's %s %s (in the order of the file)",
                            survey.n_bands, "colour channels are" if spec.channels == 3 else "grey channel is",
                            "its first three" if spec.channels == 3 else "their mean")
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
    earlier = _earlier(run)
    try:
        writer = CubeWriter(run.cube, len(survey), (spec.channels, spec.size, spec.size), cube_dtype)
    except OSError as exc:
        raise UserError(f"cannot write in {run.path}: {exc.strerror or exc}") from None
    cube_index = np.full(len(survey), -1, dtype=np.int64)
    crops = np.full(len(survey), np.nan, dtype=np.float32)  # per record, the crop its row was cut with
    details: dict[str, dict[str, str]] = {f: dict(list(d.items())[:N_EXAMPLES]) for f, d in survey.notes.items()}
    skies: dict[int, object] = {}  # record -> the position its FITS header gave
    chunks = run_chunks(survey, spec, chunk, pool, procs)
    buffer = np.empty((min(chunk, len(survey)), spec.channels, spec.size, spec.size), dtype=writer.dtype)
    outputs: list | None = None  # the earlier outputs set aside, once they are
    set_aside: tuple[Path, str] | None = None  # where the earlier results went, and the line saying so
    published = False
    try:
        for start, block, results in progress(chunks, total=(len(survey) + chunk - 1) // chunk,
                                              desc="ingest", unit="chunk"):
            first = writer.append_rows(block.to_array(out=buffer))
            k = 0
            for j, (in_cube, flags, detail, sky) in enumerate(results):
                rec = survey.records[start + j]
                if sky is not None:
                    skies[start + j] = sky
                if in_cube:
                    cube_index[start + j] = first + k
                    crops[start + j] = block.crops[k]
                    k += 1
                for flag in flags:
                    rec.flag(flag)
                    ex = details.setdefault(flag, {})
                    if len(ex) < N_EXAMPLES:
                        ex[rec.id] = detail
        chunks.close()
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
        catalogue = build_catalogue(survey, cube_index, crops)
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
                outputs = _set_earlier_outputs_aside(run)
                set_aside = _set_aside_results_of_other_galaxies(run, earlier, _galaxies(in_cube_order(catalogue)),
                                                                 _recipe(summary["preprocess"]))
                writer.publish()
        published = True
    except BaseException as exc:
        writer.abort()
        if outputs is not None and not published:  # the run as it was: its outputs, then its results
            for path in (run.catalogue, run.ingest_summary, run.cube):
                if not any(p == path for p, _ in outputs):
                    try:
                        path.unlink(missing_ok=True)  # one of the new outputs, with nothing earlier to pair with
                    except OSError:
                        pass
            _put_back(outputs)
            _take_back_results(run, None if set_aside is None else set_aside[0])
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
