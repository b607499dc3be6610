"""Per-image work over a memory-mapped cube, in chunks of rows, on a pool of processes.

Source detection (neighbour masking, the nuisance audit) is pure Python + sep per image: one
core does a few hundred images a second, so 10^6 galaxies want every core. :func:`map_chunks`
hands each process the cube's *path* and a range of rows (never the pixels: each process maps
the file itself, so nothing is copied and memory does not grow with the survey), and returns the
chunks' results in row order, whatever order they finish in. Processes are spawned, not forked,
so a parent that has loaded torch (and its threads) cannot deadlock them; a spawned process imports
the calling script again, so a script that calls morphospace outside its ``__main__`` guard gets
the work done in its own process (:func:`morphospace.script_guard.pool_size`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from ..errors import UserError
from ..orphans import exit_with_parent
from ..progress import progress
from ..script_guard import RERUN_HINT, leave_a_rerun, pool_size

__all__ = ["map_chunks", "chunk_ranges"]


def chunk_ranges(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in steps of ``chunk``."""
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def map_chunks(fn: Callable[..., Any], n: int, *args: Any, chunk: int = 512, workers: int = 1,
               desc: str = "") -> list[Any]:
    """``fn(start, stop, *args)`` for every chunk of ``range(n)``; the results in chunk order.

    Parameters
    ----------
    fn : callable
        A module-level function (the spawned processes import it by name).
    n : int
        Rows in all.
    *args
        Passed on to ``fn``: paths and small settings, not arrays.
    chunk : int
        Rows per call.
    workers : int
        Processes; 1 (or a single chunk) runs in this process.
    desc : str
        Progress-bar label ("": none).

    Returns
    -------
    list
        ``fn``'s result for each chunk, in row order.
    """
    leave_a_rerun()  # a spawned worker importing the calling script again: its owner does this work
    ranges = chunk_ranges(n, chunk)
    if workers > 1 and len(ranges) > 1:
        workers = pool_size(workers, desc or "the work")
    if workers <= 1 or len(ranges) <= 1:
        it = progress(ranges, total=len(ranges), desc=desc, unit="chunk") if desc else ranges
        return [fn(s, e, *args) for s, e in it]
    results: list[Any] = [None] * len(ranges)
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(ranges)), mp_context=mp.get_context("spawn"),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:  # no orphans
            futures = {pool.submit(fn, s, e, *args): i for i, (s, e) in enumerate(ranges)}
            done = as_completed(futures)
            for fut in progress(done, total=len(futures), desc=desc, unit="chunk") if desc else done:
                results[futures[fut]] = fut.result()
    except BrokenProcessPool:
        raise UserError(f"{desc or 'a pool of processes'}: a worker process stopped (killed, out of memory, or it "
                        f"ran the calling script again: {RERUN_HINT})") from None
    return results
