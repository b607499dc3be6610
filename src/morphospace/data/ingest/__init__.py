"""Survey ingest: any known layout -> the image cube + the catalogue of a run.

Examples
--------
>>> from morphospace.config import Config
>>> from morphospace.run import RunDir
>>> summary = ingest("path/to/survey", RunDir("run", create=True), Config())  # doctest: +SKIP
>>> summary["n_in_cube"], summary["flags"].keys()  # doctest: +SKIP

The stages:

1. :func:`~morphospace.data.ingest.layouts.read_survey` lists the records (no pixels yet)
   and flags catalogue-level problems (missing images, duplicate ids, ...);
2. a process pool decodes and preprocesses chunks of records
   (:mod:`~morphospace.data.ingest.decode`, :mod:`~morphospace.data.ingest.preprocess`), a few
   chunks in flight at a time, so memory stays flat however large the survey;
3. the parent appends each chunk's good rows to ``cube.npy.partial`` in input order
   (:class:`~morphospace.data.ingest.cube.CubeWriter`) and collects the flags;
4. the cube is finished, the catalogue and summary written to temporary names, and
   all three renamed into place (the catalogue last). A killed ingest leaves only
   ``.partial`` files; the next run starts clean.

Bad input never stops the run: every problem is a flag in the catalogue and a line
of the summary (count, meaning, example ids and what was wrong), and the good
galaxies go on. ``strict=True`` makes any flag an error (one line, nothing written).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import Config
from ...errors import UserError
from ...progress import progress
from ...run import RunDir, atomic_path
from .cube import CubeWriter, partial_path
from .decode import BadImage, decode, frame_from_array, read_hdf5_rows
from .layouts import LAYOUTS, Survey, detect_layout, read_survey
from .preprocess import PreprocessSpec, RowBlock, preprocess_block
from .records import EXCLUDING, FLAG_DESCRIPTIONS, Record

__all__ = ["ingest", "read_survey", "detect_layout", "LAYOUTS", "FLAG_DESCRIPTIONS", "EXCLUDING",
           "PreprocessSpec", "build_catalogue"]

log = logging.getLogger("morphospace")

RESERVED = ("id", "source", "cube_index")
N_EXAMPLES = 5

# Worker-process state: open HDF5 files are reused across chunks.
_H5_CACHE: dict = {}


# --- worker side ---------------------------------------------------------------------------

def _worker_init(parent_pid: int) -> None:
    """Ctrl-C is the parent's to handle; a worker whose parent died exits (no orphans).

    The objects inherited from the parent (modules, the survey...) are frozen out of the
    garbage collector: its full passes then neither walk them nor write to their pages
    (which a forked worker would otherwise copy, page by page).
    """
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start_ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != start_ppid or not _alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_hdf5(items: list) -> dict:
    """HDF5 rows of a chunk's items, read as one slice: item index -> array or BadImage."""
    h5 = [j for j, it in enumerate(items) if it is not None and it[1] == "hdf5"]
    out: dict = {}
    if h5:
        path = items[h5[0]][0]
        try:
            for j, arr in zip(h5, read_hdf5_rows(path, [items[j][2] for j in h5], _H5_CACHE)):
                out[j] = arr
        except BadImage:
            for j in h5:  # a damaged chunk of the file: find the rows that are really lost
                try:
                    out[j] = read_hdf5_rows(path, [items[j][2]], _H5_CACHE)[0]
                except BadImage as exc:
                    out[j] = exc
    return out


def _decode_one(item, min_side: int, h5_rows: dict, j: int):
    """The frame of one item (or the BadImage that says why there is none)."""
    if item[1] == "hdf5":
        frame = h5_rows[j]
        return frame_from_array(frame) if isinstance(frame, np.ndarray) else frame
    try:
        return decode(Record(id="", source=item[0], kind=item[1], index=item[2]), min_side=min_side)
    except BadImage as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a hostile file must not stop a survey
        return BadImage("unreadable", f"{type(exc).__name__}: {exc}")


def _process_chunk(start: int, items: list, spec: PreprocessSpec) -> tuple[int, RowBlock, list]:
    """Decode and preprocess one chunk (runs in a worker process).

    ``items`` holds ``(source, kind, index)`` per record, or None for records that are
    not to be decoded. Returns ``(start, rows, results)``: the good rows as a
    :class:`~morphospace.data.ingest.preprocess.RowBlock` (compact: 8-bit levels and lookup
    tables where it can) and per item ``(in_cube, flags, detail)``. Frames are decoded
    one at a time as the preprocessing asks for them, so a chunk holds one decoded
    frame at a time.
    """
    h5_rows, min_side = _read_hdf5(items), spec.min_side()
    shape = (spec.channels, spec.size, spec.size)

    def frames(results: list, todo: list):
        for j, item in enumerate(items):
            if item is None:
                results[j] = (False, (), "")
                continue
            frame = _decode_one(item, min_side, h5_rows, j)
            if isinstance(frame, BadImage):
                results[j] = (False, frame.flags, frame.detail)
                continue
            todo.append(j)
            yield frame
            frame = None  # noqa: F841 - not kept while the next frame is decoded

    results: list = [None] * len(items)
    todo: list = []
    try:
        block, done = preprocess_block(frames(results, todo), spec)
    except Exception:  # noqa: BLE001 - one bad frame must not sink its chunk: redo one by one
        results, todo = [None] * len(items), []
        blocks, done = [], []
        for frame in frames(results, todo):
            b, d = _preprocess_one(frame, spec)
            blocks.append(b)
            done.append(d)
        block = RowBlock.concat(blocks, shape)
    for j, out in zip(todo, done):
        if isinstance(out, BadImage):
            results[j] = (False, out.flags, out.detail)
        else:
            results[j] = (True, tuple(sorted(out)), "")
    return start, block, results


def _preprocess_one(frame, spec: PreprocessSpec) -> tuple[RowBlock, "set[str] | BadImage"]:
    try:
        block, done = preprocess_block([frame], spec)
        return block, done[0]
    except Exception as exc:  # noqa: BLE001 - flagged with its reason rather than a traceback
        return RowBlock.empty((spec.channels, spec.size, spec.size)), \
            BadImage("unreadable", f"{type(exc).__name__}: {exc}")


# --- parent side ---------------------------------------------------------------------------

def _items(records: list[Record]) -> list:
    return [(r.source, r.kind, r.index) if r.decodable else None for r in records]


def _run_pool(survey: Survey, spec: PreprocessSpec, workers: int, chunk: int):
    """Yield ``(start, rows, results)`` per chunk, in input order."""
    records = survey.records
    starts = range(0, len(records), chunk)
    if workers <= 1:
        try:
            for s in starts:
                yield _process_chunk(s, _items(records[s:s + chunk]), spec)
        finally:
            _close_h5()
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        # At most a few chunks in flight: memory stays flat as N grows.
        pending = []
        it = iter(starts)
        for s in it:
            pending.append(pool.submit(_process_chunk, s, _items(records[s:s + chunk]), spec))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.pop(0).result()
            s = next(it, None)
            if s is not None:
                pending.append(pool.submit(_process_chunk, s, _items(records[s:s + chunk]), spec))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _close_h5() -> None:
    for f in _H5_CACHE.values():
        try:
            f.close()
        except Exception:  # noqa: BLE001
            pass
    _H5_CACHE.clear()


def _clean(run: RunDir) -> None:
    """Remove the outputs of an earlier ingest, and partial files of a killed one."""
    for path in (run.catalogue, run.ingest_summary, run.cube, partial_path(run.cube)):
        path.unlink(missing_ok=True)
    for name in (run.catalogue.name, run.ingest_summary.name):
        for stale in run.path.glob(f".{name}.*.partial"):
            stale.unlink(missing_ok=True)


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
    survey = read_survey(data, cfg.data)
    spec = PreprocessSpec.from_config(cfg.preprocess, survey.n_bands, cfg.ingest)
    log.info("ingest: %d records, layout %s, %s -> %dx%dx%d, %d worker(s)",
             len(survey), survey.layout, data, spec.channels, spec.size, spec.size, workers)
    if strict:
        _raise_if_flagged(survey, "catalogue")

    _clean(run)  # an old cube or catalogue must never pair with a new one
    try:
        writer = CubeWriter(run.cube, len(survey), (spec.channels, spec.size, spec.size))
    except OSError as exc:
        raise UserError(f"cannot write in {run.path}: {exc.strerror or exc}") from None
    cube_index = np.full(len(survey), -1, dtype=np.int64)
    details: dict[str, dict[str, str]] = {}
    chunks = _run_pool(survey, spec, min(workers, max(1, len(survey) // chunk + 1)), chunk)
    buffer = np.empty((min(chunk, len(survey)), spec.channels, spec.size, spec.size), dtype=np.float32)
    try:
        for start, block, results in progress(chunks, total=(len(survey) + chunk - 1) // chunk,
                                              desc="ingest", unit="chunk"):
            first = writer.append_rows(block.to_array(out=buffer))
            k = 0
            for j, (in_cube, flags, detail) in enumerate(results):
                rec = survey.records[start + j]
                if in_cube:
                    cube_index[start + j] = first + k
                    k += 1
                for flag in flags:
                    rec.flag(flag)
                    ex = details.setdefault(flag, {})
                    if len(ex) < N_EXAMPLES:
                        ex[rec.id] = detail
        chunks.close()  # the pool is shut down before the outputs are written
        if strict:
            _raise_if_flagged(survey, "image")
        if writer.rows == 0:
            raise UserError(f"no usable galaxy in {data}: all {len(survey)} were flagged "
                            f"({_flag_counts_line(survey)})")
        writer.finish(background=True)  # synced while the catalogue is built; published once synced
        catalogue = build_catalogue(survey, cube_index)
        summary = summarise(survey, catalogue, spec, details, time.perf_counter() - t0, workers)
        # Everything is written under temporary names first, then renamed: cube, summary, catalogue.
        with atomic_path(run.catalogue) as cat_tmp:
            catalogue.to_parquet(cat_tmp, index=False)
            with atomic_path(run.ingest_summary) as sum_tmp:
                sum_tmp.write_text(json.dumps(summary, indent=2) + "\n")
                writer.publish()
    except BrokenProcessPool:
        writer.abort()
        raise UserError("an ingest worker process died (killed, out of memory, or a decoder crash); "
                        "nothing was written: re-run to start again") from None
    except OSError as exc:  # disk full, permissions: the user's to fix, in one line
        writer.abort()
        raise UserError(f"cannot write in {run.path}: {exc.strerror or exc}") from None
    except BaseException:
        writer.abort()
        raise
    finally:
        chunks.close()
    _log_summary(summary)
    return summary


def build_catalogue(survey: Survey, cube_index: np.ndarray) -> pd.DataFrame:
    """One row per record: id, source, labels, ``flag_<reason>`` booleans, cube_index."""
    recs = survey.records
    table = pd.DataFrame({"id": pd.array(_storable([r.id for r in recs]), dtype=object),
                          "source": pd.array(_storable([r.where for r in recs]), dtype=object)})
    labels = survey.labels.reset_index(drop=True)
    for col in labels.columns:
        name = str(col)
        if name in RESERVED or name.startswith("flag_"):
            name = f"catalogue_{name}"  # a catalogue column named like ours is kept, renamed
        table[name] = labels[col].array
    flagged = [(i, r.flags) for i, r in enumerate(recs) if r.flags]  # one pass: most records have none
    for flag in FLAG_DESCRIPTIONS:
        column = np.zeros(len(recs), dtype=bool)
        column[[i for i, flags in flagged if flag in flags]] = True
        table[f"flag_{flag}"] = column
    table["cube_index"] = cube_index
    return table


def _storable(texts: list[str]) -> list[str]:
    """File names that are not valid UTF-8 (kept by Python as surrogates) made writable to Parquet."""
    try:
        "\n".join(texts).encode("utf-8")
        return texts
    except UnicodeEncodeError:
        return [t.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for t in texts]


def summarise(survey: Survey, catalogue: pd.DataFrame, spec: PreprocessSpec, details: dict,
              seconds: float, workers: int = 1) -> dict:
    """The ingest summary (also written as ``ingest_summary.json``)."""
    flags = {}
    for flag, words in FLAG_DESCRIPTIONS.items():
        hit = catalogue.loc[catalogue[f"flag_{flag}"], "id"]
        if len(hit):
            examples = [str(x) for x in hit.head(N_EXAMPLES)]
            known = details.get(flag, {})
            flags[flag] = {"count": int(len(hit)), "meaning": words, "excluded": flag in EXCLUDING,
                           "examples": examples,
                           "details": {gid: known[gid] for gid in examples if known.get(gid)}}
    n_in = int((catalogue["cube_index"] >= 0).sum())
    return {
        "layout": survey.layout,
        "source": str(survey.root),
        "n_records": int(len(catalogue)),
        "n_in_cube": n_in,
        "n_flagged": int(catalogue[[f"flag_{f}" for f in FLAG_DESCRIPTIONS]].any(axis=1).sum()),
        "cube_shape": [n_in, spec.channels, spec.size, spec.size],
        "label_columns": survey.label_columns,
        "preprocess": {"crop": spec.crop, "size": spec.size, "channels": spec.channels,
                       "normalise": spec.normalise, "softening": spec.softening, "resample": spec.resample,
                       "exact": spec.exact, "jpeg_draft": spec.draft},
        "flags": flags,
        "workers": workers,
        "seconds": round(seconds, 3),
    }


def _log_summary(summary: dict) -> None:
    log.info("ingest: %d of %d galaxies in the cube %s (%.1f s)", summary["n_in_cube"], summary["n_records"],
             "x".join(map(str, summary["cube_shape"])), summary["seconds"])
    for flag, info in summary["flags"].items():
        log.warning("  flagged %-17s %6d  (%s; %s) e.g. %s", flag, info["count"], info["meaning"],
                    "excluded" if info["excluded"] else "kept", ", ".join(map(str, info["examples"][:3])))


def _flag_counts_line(survey: Survey) -> str:
    counts: dict[str, list[str]] = {}
    for r in survey.records:
        for f in r.flags:
            counts.setdefault(f, []).append(r.id)
    parts = []
    for flag in FLAG_DESCRIPTIONS:
        if flag in counts:
            ids = counts[flag]
            parts.append(f"{len(ids)} {flag} (e.g. {', '.join(ids[:2])})")
    return "; ".join(parts)


def _raise_if_flagged(survey: Survey, where: str) -> None:
    n = sum(1 for r in survey.records if r.flags)
    if n:
        raise UserError(f"--strict: {n} {where} problem(s): {_flag_counts_line(survey)}; "
                        "run without --strict to ingest the good galaxies and flag the rest")
