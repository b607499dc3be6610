"""Rendering a whole synthetic survey: one galaxy at a time, in worker processes, into a folder."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ...errors import UserError
from ...orphans import exit_with_parent
from ...progress import progress as _progress_bar
from ...run import write_json, write_table
from ...script_guard import RERUN_HINT, leave_a_rerun, pool_size
from .files import (CATALOGUE_NAME, IMAGE_DIR, MARKER_NAME, image_id, is_synth_survey, looks_like_partial_survey,
                    marker, read_marker, remove_survey, write_png)
from .observe import render_bands
from .params import MORPHOLOGIES, sample_params
from .stretch import CHROMA_BLUR_PX, lupton_rgb
from .truth import truth_row

log = logging.getLogger("morphospace")


def render_galaxy(seed: int, index: int, size: int = 128, morphology: str | None = None,
                  morphologies: Sequence[str] = MORPHOLOGIES, **overrides: Any) -> tuple[np.ndarray, dict]:
    """Render one galaxy of the survey as an RGB uint8 array and its truth row.

    Parameters
    ----------
    seed, index : int
        The survey seed and the galaxy's position in the survey.
    size : int
        Frame side in pixels.
    morphology : str, optional
        Force the class (the frame and neighbours stay those of ``index``).
    morphologies : sequence of str
        The classes of the balanced draw.
    **overrides
        Replace drawn parameters (keys of :func:`~morphospace.data.synth.params.sample_params`)
        before rendering, e.g. ``winding=-1`` or ``companions=[]``, to make controlled variants.

    Returns
    -------
    rgb : ndarray, shape (size, size, 3), uint8
        The image as written to the survey's PNG.
    row : dict
        Its truth columns (:func:`~morphospace.data.synth.truth.truth_row`).
    """
    p = sample_params(seed, index, size, morphology, morphologies)
    unknown = set(overrides) - set(p)
    if unknown:
        raise UserError(f"unknown galaxy parameter(s): {', '.join(sorted(unknown))}")
    p.update(overrides)
    rgb = lupton_rgb(render_bands(p), chroma_blur=CHROMA_BLUR_PX * p["size"] / 128.0)
    return rgb, truth_row(p)


def _work(job: tuple[int, int, int, int, tuple[str, ...], str]) -> dict[str, Any]:
    """Render galaxy ``index`` to its PNG and return its catalogue row (runs in a worker)."""
    seed, index, n, size, morphologies, out_dir = job
    rgb, row = render_galaxy(seed, index, size, morphologies=morphologies)
    gid = image_id(index, n)
    rel = f"{IMAGE_DIR}/{gid}.png"
    write_png(Path(out_dir) / rel, rgb)
    return {"id": gid, "file": rel, **row}


# a survey's bounds: ten million galaxies (the largest surveys of today), frames up to 2048 px (a frame
# of 100,000 px asked for 149 GB and stopped in a traceback, its folder left behind)
MAX_N, MAX_SIZE = 10_000_000, 2048


def _check_args(n: Any, seed: Any, size: Any, workers: Any, morphologies: Sequence[str]) -> None:
    for name, value, low, high in (("n", n, 1, MAX_N), ("seed", seed, 0, 2**32 - 1), ("size", size, 32, MAX_SIZE),
                                   ("workers", workers, 1, 1024)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise UserError(f"synth: {name} must be an integer from {low} to {high:,}, got {value!r}")
    bad = [m for m in morphologies if m not in MORPHOLOGIES]
    if bad or not morphologies or len(set(morphologies)) != len(morphologies):
        raise UserError(f"synth: morphologies must be distinct names among {', '.join(MORPHOLOGIES)}, got {list(morphologies)}")


def survey_whole(out: Path, n: int) -> bool:
    """Whether ``out`` holds a finished synthetic survey (its marker written) of ``n`` galaxies with every
    image and its catalogue there: one a user or a kill left short is rendered again, not read as is."""
    return is_synth_survey(out) and read_marker(out).get("n") == n and _all_there(out, n)


def _all_there(out: Path, n: int) -> bool:
    """Whether a finished survey's n images and its catalogue are all in ``out`` (a file deleted by
    hand made the survey reused with a galaxy short)."""
    images = out / IMAGE_DIR
    return (out / CATALOGUE_NAME).is_file() and images.is_dir() and \
        all((images / f"{image_id(i, n)}.png").is_file() for i in range(n))


def make_survey(out_dir: str | Path, n: int = 2000, seed: int = 0, size: int = 128, workers: int = 2,
                progress: bool = True, morphologies: Sequence[str] | None = None, overwrite: bool = False) -> Path:
    """Render a labelled mock survey into ``out_dir`` and return its path.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write (created). It must be empty or absent, or already hold a synthetic
        survey: one with the same parameters is reused as is; a different one needs
        ``overwrite=True``; an interrupted one (images but no marker) is rendered again.
    n : int
        Number of galaxies.
    seed : int
        Survey seed; the same seed gives byte-identical files.
    size : int
        Frame side in pixels (the galaxy's R90 is about 10 % of it).
    workers : int
        Processes rendering in parallel (1: in this process). The output does not depend on it.
    progress : bool
        Show a progress bar (also silenced by ``morphospace.progress.set_quiet``).
    morphologies : sequence of str, optional
        Classes to draw, balanced; default all six of ``MORPHOLOGIES``.
    overwrite : bool
        Replace a synthetic survey with different parameters.

    Returns
    -------
    Path
        ``out_dir``.
    """
    leave_a_rerun()  # a spawned worker importing the calling script again must not render the survey too
    morphologies = tuple(morphologies) if morphologies is not None else MORPHOLOGIES
    _check_args(n, seed, size, workers, morphologies)
    n, seed, size, workers = int(n), int(seed), int(size), int(workers)
    if not str(out_dir).strip():  # Path("") is the current folder: the survey went there
        raise UserError("synth: the output folder is empty text: name a folder (--out DIR)")
    out = Path(out_dir)
    want = marker(seed, n, size, morphologies)
    if out.exists() and not out.is_dir():
        raise UserError(f"synth: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if is_synth_survey(out):
            have = read_marker(out)
            whole = _all_there(out, n)
            if have == want and not overwrite and whole:
                log.info("synthetic survey already in %s (n=%d, seed=%d): reused", out, n, seed)
                return out
            if have == want and not whole:
                log.warning("%s holds this synthetic survey with images or its catalogue missing: rendering it again", out)
            elif have != want and not overwrite:
                differs = [f"{k} {have.get(k)!r}" for k in ("version", "n", "seed", "size", "morphologies")
                           if have.get(k) != want.get(k)]
                raise UserError(f"synth: {out} holds another synthetic survey ({', '.join(differs) or 'other settings'}"
                                f" there): choose another folder, or delete that one first")
            remove_survey(out)
        elif looks_like_partial_survey(out):
            log.info("%s holds an interrupted synthetic survey (no marker): rendering it again", out)
            remove_survey(out)
        else:
            raise UserError(f"synth: {out} is not empty and is not a synthetic survey: choose an empty folder")
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    jobs = [(seed, i, n, size, morphologies, str(out)) for i in range(n)]
    show = bool(progress)
    if workers > 1 and n >= 2 * workers:
        workers = pool_size(workers, "synth")  # 1 for a script that calls it outside its __main__ guard
    if workers == 1 or n < 2 * workers:
        results = map(_work, jobs)
        rows = list(_progress_bar(results, total=n, desc="synth", unit="gal") if show else results)
    else:
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        chunk = max(1, min(32, n // (8 * workers)))
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=exit_with_parent,
                                     initargs=(os.getpid(),)) as pool:  # no orphans rendering on after a kill -9
                results = pool.map(_work, jobs, chunksize=chunk)
                rows = list(_progress_bar(results, total=n, desc="synth", unit="gal") if show else results)
        except BrokenProcessPool:
            # a worker of this start method imports the calling script again: one whose calls pool_size could
            # not place (its source unreadable) runs them in each worker, which then leaves (script_guard)
            raise UserError(f"synth: a worker process stopped (killed, out of memory, or it ran the calling script "
                            f"again: {RERUN_HINT})") from None
    table = pd.DataFrame(rows)
    write_table(out / CATALOGUE_NAME, table)
    write_json(out / MARKER_NAME, want)  # last: its presence means the survey is complete
    return out
