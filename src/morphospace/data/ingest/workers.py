"""Decoding and preprocessing a survey in chunks, in a pool of worker processes.

The parent lists the records; each worker decodes and preprocesses one chunk of them and
sends back the good rows (compact: 8-bit levels and lookup tables where it can) and a
verdict per record. A few chunks are in flight at a time, so memory stays flat however
large the survey; chunks come back in input order.
"""

from __future__ import annotations

import gc
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Generator, Iterator

import numpy as np

from ...errors import NotAvailableError, UserError, missing_package
from ...orphans import exit_with_parent
from .decode import MIN_SIDE, BadImage, decode, frame_from_array, read_hdf5_rows
from .files import file_kind
from .layouts import Survey
from .preprocess import PreprocessSpec, RowBlock, preprocess_block
from .quality import SIGNAL_SIGMAS  # a frame's top sets the level scale only where it holds a source
from .records import FLAG_DESCRIPTIONS, Record

# Worker-process state: open HDF5 files are reused across chunks.
_H5_CACHE: dict = {}


def _worker_init(parent_pid: int) -> None:
    """Ctrl-C is the parent's to handle; a worker whose parent died exits (no orphans).

    The objects inherited from the parent (modules, the survey...) are frozen out of the
    garbage collector: its full passes then neither walk them nor write to their pages
    (which a forked worker would otherwise copy, page by page).
    """
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)


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
        if not isinstance(frame, np.ndarray):
            return frame
        if min(frame.shape[:2]) < MIN_SIDE:  # as a file's frame is: 2 x 2 rows were blown up to the cube's size
            return BadImage("too_small", f"{frame.shape[1]}x{frame.shape[0]} pixels")
        return frame_from_array(frame)
    try:
        return decode(Record(id="", source=item[0], kind=item[1], index=item[2]), min_side=min_side)
    except BadImage as exc:
        return exc
    except ImportError as exc:
        raise (missing_package(exc) or exc) from None
    except Exception as exc:  # noqa: BLE001 - a hostile file must not stop a survey
        return BadImage("unreadable", f"{type(exc).__name__}: {exc}")


def _process_chunk(start: int, items: list, spec: PreprocessSpec) -> tuple[int, RowBlock, list]:
    """Decode and preprocess one chunk (runs in a worker process).

    ``items`` holds ``(source, kind, index)`` per record, or None for records that are
    not to be decoded. Returns ``(start, rows, results)``: the good rows as a
    :class:`~morphospace.data.ingest.preprocess.RowBlock` (compact: 8-bit levels and lookup
    tables where it can) and per item ``(in_cube, flags, detail, sky)``, ``sky`` the
    position a FITS header gave (:attr:`~morphospace.data.ingest.decode.Frame.sky`). Frames
    are decoded one at a time as the preprocessing asks for them, so a chunk holds one
    decoded frame at a time.
    """
    h5_rows, min_side = _read_hdf5(items), spec.min_side()
    shape = (spec.channels, spec.size, spec.size)

    skies: dict[int, object] = {}

    def frames(results: list, todo: list):
        for j, item in enumerate(items):
            if item is None:
                results[j] = (False, (), "", None)
                continue
            frame = _decode_one(item, min_side, h5_rows, j)
            if isinstance(frame, BadImage):
                results[j] = (False, frame.flags, frame.detail, None)
                continue
            todo.append(j)
            if frame.sky is not None:
                skies[j] = frame.sky
            yield frame
            frame = None  # noqa: F841 - not kept while the next frame is decoded

    results: list = [None] * len(items)
    todo: list = []
    try:
        block, done = preprocess_block(frames(results, todo), spec)
    except NotAvailableError:  # a missing package (from _decode_one): no frame would fare better
        raise
    except ImportError as exc:
        raise (missing_package(exc) or exc) from None
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
            results[j] = (False, out.flags, out.detail, skies.get(j))
        else:
            results[j] = (True, tuple(sorted(out)), "", skies.get(j))
    return start, block, results


def _preprocess_one(frame, spec: PreprocessSpec) -> tuple[RowBlock, "set[str] | BadImage"]:
    try:
        block, done = preprocess_block([frame], spec)
        return block, done[0]
    except ImportError as exc:
        raise (missing_package(exc) or exc) from None
    except Exception as exc:  # noqa: BLE001 - flagged with its reason rather than a traceback
        return RowBlock.empty((spec.channels, spec.size, spec.size)), \
            BadImage("unreadable", f"{type(exc).__name__}: {exc}")


def preprocess_file(path, spec: PreprocessSpec) -> tuple[np.ndarray, tuple[str, ...]]:
    """One image file -> its cube row, by the ingest's own path (decode, checks, preprocessing).

    Parameters
    ----------
    path : str or Path
        A JPEG/PNG/TIFF or FITS file.
    spec : PreprocessSpec
        The recipe (e.g. a run's, :meth:`PreprocessSpec.of_run`).

    Returns
    -------
    row : ndarray, shape (C, S, S), float32
    flags : tuple of str
        Warning flags raised (e.g. ``nonfinite``); the row is good.

    Raises
    ------
    UserError
        When the file is missing, or the ingest would flag it out of the cube (one line: the flag
        and what was wrong).
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        what = ("a folder, not an image file" if os.path.isdir(name) else
                "not a regular file (a pipe or a device): save the image to a file" if os.path.exists(name)
                else "no such file")
        raise UserError(f"{name}: {what}")
    _, block, results = _process_chunk(0, [(name, file_kind(os.path.basename(name)), -1)], spec)
    in_cube, flags, detail, _ = results[0]
    if not in_cube or len(block) != 1:
        what = FLAG_DESCRIPTIONS.get(flags[0], flags[0]) if flags else "not usable"
        raise UserError(f"{name}: {what}" + (f" ({detail.splitlines()[0][:160]})" if detail else "")
                        + ": give a JPEG, PNG, TIFF or FITS image of a galaxy")
    return block.to_array()[0], tuple(flags)


def _over_sample(survey: Survey, spec: PreprocessSpec, sample: int, seed: int, pool, parts: int, measure,
                 eligible=lambda record: True) -> list:
    """``measure(items, spec)`` over a seeded sample of the survey's decodable ``eligible``
    records, in their order, in ``parts`` contiguous parts on ``pool`` (or in this process
    without one): the same result either way."""
    decodable = [i for i, r in enumerate(survey.records) if r.decodable and eligible(r)]
    if len(decodable) > sample:
        decodable = sorted(np.random.default_rng(seed).choice(decodable, sample, replace=False).tolist())
    items = _items([survey.records[i] for i in decodable])
    if pool is None or parts <= 1 or len(items) < 2 * parts:
        return measure(items, spec)
    from scipy import ndimage  # noqa: F401 - imported once here, before the workers fork, not once in each

    step = -(-len(items) // parts)
    futures = [pool.submit(measure, items[s:s + step], spec) for s in range(0, len(items), step)]
    return [c for fut in futures for c in fut.result()]


def sampled_crops(survey: Survey, spec: PreprocessSpec, sample: int, seed: int = 0,
                  pool: ProcessPoolExecutor | None = None, parts: int = 1) -> list:
    """:func:`~morphospace.data.ingest.framing.galaxy_crop` of a seeded sample of the survey's frames.

    JPEGs are decoded at the smallest scale that keeps the ~100 px the sizes are measured on
    (a quarter of a 423 px frame); frames that cannot be decoded are left out, and frames
    without a central galaxy give None. The sample is measured in ``parts`` contiguous parts on
    ``pool`` (the ingest's own workers: the measure is serial work in front of every ingest), or
    in this process without one; the result is the same either way.

    Parameters
    ----------
    survey : Survey
    spec : PreprocessSpec
        Its ``galaxy_r90s``, ``draft`` and ``level_top`` are used.
    sample : int
        Frames measured at most.
    seed : int
    pool : ProcessPoolExecutor, optional
        Where the parts run (the ingest's own, :func:`ingest_pool`).
    parts : int
        How many parts the sample is measured in.

    Returns
    -------
    list of float or None
        In the order of the sampled records (the survey's order).
    """
    return _over_sample(survey, spec, sample, seed, pool, parts, _measured_crops)


def sampled_level_tops(survey: Survey, spec: PreprocessSpec, sample: int, seed: int = 0,
                       pool: ProcessPoolExecutor | None = None, parts: int = 1) -> list[float]:
    """The highest finite level of each sampled frame with levels beyond 8 bits (16-bit PNG or
    TIFF, integer HDF5 rows), on the file's 0-1 scale; 8-bit and flux frames are left out, and
    so are frames where nothing stands above the sky's noise (:data:`SIGNAL_SIGMAS`): a sample
    of empty sky does not set the scale its own noise is judged on.

    Parameters are those of :func:`sampled_crops`.

    Returns
    -------
    list of float
    """
    return _over_sample(survey, spec, sample, seed, pool, parts, _level_tops, eligible=_may_pass_8_bits)


def _may_pass_8_bits(record: Record) -> bool:
    """Whether a record's frame may hold levels beyond 8 bits: an HDF5 row, a PNG or a TIFF (a
    JPEG is 8 bits, a FITS file flux). Sampled among these only, so that a few 16-bit frames in
    a survey of JPEGs are found."""
    return record.kind == "hdf5" or str(record.source).lower().endswith((".png", ".tif", ".tiff"))


def _level_tops(items: list, spec: PreprocessSpec) -> list[float]:
    """:func:`sampled_level_tops`' measure of some of its items."""
    from .framing import border_sky

    tops = []
    try:
        for item in items:
            frame = _decode_one(item, 0, _read_hdf5([item]), 0)
            if isinstance(frame, BadImage) or not frame.display or hasattr(frame.pixels, "convert"):
                continue
            grey = np.nan_to_num(frame.pixels, nan=0.0, posinf=0.0, neginf=0.0).max(axis=-1)
            # the sky's noise from the frame's border: the whole frame's spread is the galaxy's own
            # where it fills the frame (one 30 px in scale in a 96 px frame read 5.6 sigmas, left out)
            sky, noise = border_sky(grey)
            if grey.max() - sky > SIGNAL_SIGMAS * noise:
                tops.append(float(grey.max()))
    finally:
        _close_h5()
    return tops


def _measured_crops(items: list, spec: PreprocessSpec) -> list:
    """:func:`sampled_crops`' measure of some of its items (in a worker process, or this one)."""
    from .decode import draft_side
    from .framing import galaxy_crop
    from .histograms import STATS_SIDE, sample_8bit

    min_side = draft_side(1.0, STATS_SIDE) if spec.draft else 0
    crops = []
    try:
        for item in items:
            # HDF5 rows one at a time: one slice over a scattered sample would read the whole file
            frame = _decode_one(item, min_side, _read_hdf5([item]), 0)
            if isinstance(frame, BadImage):
                continue
            if hasattr(frame.pixels, "convert"):  # an 8-bit Pillow image
                grey, unit = np.asarray(sample_8bit(frame.pixels).convert("L")), 1.0
            else:
                arr = spec.on_level_scale(np.nan_to_num(frame.pixels, nan=0.0, posinf=0.0, neginf=0.0), frame.display)
                step = max(1, min(arr.shape[:2]) // STATS_SIDE)
                grey, unit = arr[::step, ::step].mean(axis=-1), (1 / 255 if frame.display else 0.0)
            crops.append(galaxy_crop(grey, spec.galaxy_r90s, unit))
    finally:
        _close_h5()
    return crops


def _items(records: list[Record]) -> list:
    return [(r.source, r.kind, r.index) if r.decodable else None for r in records]


@contextmanager
def ingest_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """The ingest's worker processes, shut down on leaving (None for ``workers`` <= 1: everything
    runs in this process).

    Parameters
    ----------
    workers : int

    Yields
    ------
    ProcessPoolExecutor or None
    """
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_chunks(survey: Survey, spec: PreprocessSpec, chunk: int, pool: ProcessPoolExecutor | None,
               workers: int = 1) -> Generator[tuple[int, RowBlock, list], None, None]:
    """Decode and preprocess the survey chunk by chunk, on ``pool`` (None: in this process).

    Parameters
    ----------
    survey : Survey
        The records to ingest (those already flagged as excluded are not decoded).
    spec : PreprocessSpec
        The preprocessing recipe.
    chunk : int
        Records per chunk.
    pool : ProcessPoolExecutor or None
        The :func:`ingest_pool` to run on (left running for its owner to shut down).
    workers : int
        Its processes: twice as many chunks are kept in flight.

    Yields
    ------
    start : int
        Index of the chunk's first record.
    rows : RowBlock
        The chunk's good rows, in input order.
    results : list
        Per record ``(in_cube, flags, detail, sky)`` (see :func:`_process_chunk`).
    """
    records = survey.records
    starts = range(0, len(records), chunk)
    if pool is None:
        try:
            for s in starts:
                yield _process_chunk(s, _items(records[s:s + chunk]), spec)
        finally:
            _close_h5()
        return
    pending: list = []
    try:
        # At most a few chunks in flight: memory stays flat as N grows.
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
    finally:  # the caller's pool: what this generator queued must not run on after it
        for fut in pending:
            fut.cancel()


def _close_h5() -> None:
    for f in _H5_CACHE.values():
        try:
            f.close()
        except Exception:  # noqa: BLE001
            pass
    _H5_CACHE.clear()
