"""Neighbour masking: every source but the central galaxy hidden before a model sees a cutout.

Why: a survey cutout centred on one galaxy also holds neighbours, stars and fragments at
random places. A model that reconstructs pixels spends latent capacity on them, and a
clustering of that latent space then follows *where a neighbour sits*: the published
AstroVaDEr (Spindler, Geach & Smith 2021, MNRAS 502, 985) "places high importance on the presence
of companion objects", and 6 of its 12 component means, decoded from the released weights, are a
galaxy with a companion at a given position.
On SDSS Galaxy Zoo 1 cutouts, 60% of the frames hold a companion that ``sep`` detects.

How, per image (framework-free: numpy, scipy and sep):

1. detect sources on the channel mean (``sep``, threshold in units of the border noise,
   deblending on), and find the central galaxy (:func:`morphospace.image.sources.central_index`);
   Where no source covers the centre or lies near it (two nuclei of a merger on either side of
   it, a star field, a galaxy larger than the frame), nothing is masked: masking every source
   would leave sky, or half a merger. Such frames are listed (``central_found`` false);
2. the other sources' segments, grown by ``grow`` pixels, form the mask; the central
   galaxy's own segment is never masked, nor, with ``keep_companions`` > 0, a source that
   touches it and holds at least that fraction of its light (a merging partner or a tidal
   feature, which deblending splits off the galaxy). Off by default: measured on sdss-gz1
   (``benchmarks/bench_mask_companions.py``), keeping major partners (0.25) lifts a linear
   merger-against-rest probe on the form embedding (balanced accuracy 0.71 -> 0.78) but not how
   often a merger's nearest galaxies are mergers (0.098 -> 0.101), and lowers K-Means(3) (0.314 ->
   0.301), the 10% probe (0.789 -> 0.781) and the label-free UMAP silhouette (0.433 -> 0.401);
3. a masked pixel takes the value of its 180-degree twin about the frame centre (the
   galaxy's light is roughly point-symmetric, so a companion overlapping the galaxy's halo
   is replaced by the halo on the other side), unless that twin is masked too, in which
   case it takes sky: the border's own pixels, drawn at random per channel from those within
   3 robust sigma of the border's median (so a neighbour on the border is not copied), from a
   generator seeded by the image's own bytes (the same image gets the same fill wherever it
   sits in a batch or a cube). The sky's own values, not Gaussian noise of its level and
   sigma: on SDSS JPEGs, whose sky is clipped at black, a median 13% of such noise fell
   below the darkest border pixel, a mark of where a neighbour had been.

The raw cube is left untouched (galleries and the feature study show the real cutouts);
:func:`masked_cube` writes the masked copy beside it, ``cube_masked.npy``, with
``cube_masked.parquet`` (per galaxy: sources masked, fraction of pixels masked, whether a
central source was found), and
rebuilds it whenever the cube or the parameters change.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..progress import progress
from ..run import RunDir, atomic_path, built_by_one, new_npy_map, read_cached_npy, write_json, write_table
from ..run.writes import read_parquet
from .pool import map_chunks
from .sources import central_index, detect, sky_pixels

log = logging.getLogger("morphospace")

__all__ = ["MaskParams", "mask_neighbours", "mask_images", "masked_cube", "model_input_path"]

MASKED_CUBE = "cube_masked.npy"
MASKED_TABLE = "cube_masked.parquet"
MASKED_META = "cube_masked.json"
MASKING_LOCK = ".cube_masked.lock"  # the processes of a job started together mask the cube once


def _process_start() -> float:
    """When this process started (Unix time): from /proc where there is one, else now."""
    try:
        with open("/proc/self/stat") as fh:  # field 22, after the command's name in parentheses
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_STARTED = _process_start()


@dataclass(frozen=True)
class MaskParams:
    """Detection and masking settings (the defaults are the ones measured on sdss-gz1).

    Attributes
    ----------
    thresh : float
        Detection threshold in units of the border noise. 2 finds faint neighbours without
        fragmenting the sky.
    minarea : int
        Pixels a source needs (at 64 px, 4 keeps faint stars).
    deblend_cont : float
        sep's deblending contrast: a neighbour touching the galaxy is split off it.
    grow : int
        Pixels by which each masked segment is dilated (a segment stops at the threshold
        isophote; the neighbour's wings reach beyond it).
    keep_companions : float
        A source whose segment touches the central galaxy's and whose light above the sky is at
        least this fraction of the galaxy's is kept, as part of the galaxy (0.25: a major
        merger's 1:4); 0, the default, masks every other source (measured above).
    """

    thresh: float = 2.0
    minarea: int = 4
    deblend_cont: float = 0.005
    grow: int = 2
    keep_companions: float = 0.0


def _companions(data: np.ndarray, seg: np.ndarray, own: np.ndarray, fraction: float) -> np.ndarray:
    """The pixels of the sources touching the central galaxy's segment ``own`` whose light above the sky
    (``data``, sky-subtracted) is at least ``fraction`` of the galaxy's."""
    from scipy.ndimage import binary_dilation

    kept = np.zeros(seg.shape, dtype=bool)
    if fraction <= 0 or not own.any():
        return kept
    light = np.clip(data, 0.0, None)
    galaxy = float(light[own].sum())
    for label in np.unique(seg[binary_dilation(own) & ~own]):
        if label > 0 and float(light[seg == label].sum()) >= fraction * galaxy:
            kept |= seg == label
    return kept


def mask_neighbours(image: np.ndarray, params: MaskParams = MaskParams()) -> tuple[np.ndarray, int, float]:
    """One image with every source but the central galaxy replaced.

    Parameters
    ----------
    image : ndarray, shape (C, H, W)
        The image (detection runs on the channel mean).
    params : MaskParams
        Detection and masking settings.

    Returns
    -------
    masked : ndarray (C, H, W), float32
        A copy (the input is never modified); the input itself when nothing was masked.
    n_masked : int
        Sources masked.
    fraction : float
        Fraction of the pixels replaced.
    """
    return _masked(image, params)[:3]


def _masked(image: np.ndarray, params: MaskParams) -> tuple[np.ndarray, int, float, bool]:
    """:func:`mask_neighbours`, and whether a central source was found (nothing masked if not)."""
    from scipy.ndimage import binary_dilation

    img = np.ascontiguousarray(image, dtype=np.float32)
    data, objects, seg = detect(img.mean(0), params.thresh, params.minarea, params.deblend_cont)
    central = central_index(objects, seg)
    if central is None:
        return img, 0, 0.0, False
    own = seg == (central + 1)
    own |= _companions(data, seg, own, params.keep_companions)
    others = (seg > 0) & ~own
    if not others.any():
        return img, 0, 0.0, True
    mask = binary_dilation(others, iterations=params.grow) if params.grow > 0 else others
    mask &= ~own
    twin_masked = mask[::-1, ::-1]
    rng = np.random.default_rng(zlib.crc32(img.tobytes()))
    out = img.copy()
    h, w = seg.shape
    for c in range(img.shape[0]):
        ch = img[c]
        sky = rng.choice(sky_pixels(ch), size=(h, w))
        fill = np.where(twin_masked, sky, ch[::-1, ::-1])
        out[c][mask] = fill[mask]
    n_masked = len(np.setdiff1d(np.unique(seg[others]), [0]))
    return out, int(n_masked), float(mask.mean()), True


def mask_images(images: np.ndarray, out: np.ndarray | None = None, params: MaskParams = MaskParams(),
                desc: str = "masking neighbours") -> tuple[np.ndarray, pd.DataFrame]:
    """:func:`mask_neighbours` over a stack of images.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W)
        The images.
    out : ndarray, optional
        Receives the result (same shape, e.g. a writable memmap); a new array otherwise.
    params : MaskParams
        Detection and masking settings.
    desc : str
        Progress-bar label (shown above 256 images); ``""`` for none.

    Returns
    -------
    masked : ndarray, shape (N, C, H, W), float32
    table : pandas.DataFrame
        ``n_masked``, ``masked_fraction`` and ``central_found`` per image.
    """
    images = np.asarray(images) if not hasattr(images, "shape") else images
    if images.ndim != 4:
        raise ValueError(f"expected N x C x H x W images, got shape {images.shape}")
    if out is None:
        out = np.empty(images.shape, dtype=np.float32)
    n_masked = np.zeros(len(images), dtype=np.int32)
    fraction = np.zeros(len(images), dtype=np.float32)
    central = np.zeros(len(images), dtype=bool)
    rows = range(len(images))
    for i in progress(rows, total=len(images), desc=desc, unit="img") if desc and len(images) > 256 else rows:
        out[i], n_masked[i], fraction[i], central[i] = _masked(images[i], params)
    return out, pd.DataFrame({"n_masked": n_masked, "masked_fraction": fraction, "central_found": central})


def _cube_signature(cube_path: Path, params: MaskParams) -> dict:
    st = cube_path.stat()
    # a setting added since (keep_companions) enters only when set: at its default the pixels are what
    # an earlier version masked, and its masked cubes (25-49 GB at 10^6 galaxies) stay good
    settings = {k: v for k, v in asdict(params).items() if k != "keep_companions" or v}
    # rule 2: a frame without a central source is left as it is (rule 1 masked every source in it);
    # rule 3: sky is filled with the border's own pixels (rule 2: Gaussian noise, below black on a clipped sky)
    return {"cube_size": st.st_size, "cube_mtime_ns": st.st_mtime_ns, "params": settings, "rule": 3}


def _mask_chunk(start: int, stop: int, cube_path: str, out_path: str, params: MaskParams) -> pd.DataFrame:
    """Mask rows ``[start, stop)`` of the cube at ``cube_path`` into the same rows of ``out_path``."""
    cube = np.load(cube_path, mmap_mode="r")
    out = np.load(out_path, mmap_mode="r+")
    _, table = mask_images(np.asarray(cube[start:stop], dtype=np.float32), out=out[start:stop], params=params, desc="")
    out.flush()
    return table


def masked_cube(run: RunDir, params: MaskParams = MaskParams(), workers: int = 1) -> np.ndarray:
    """The run's cube with neighbours masked (memory-mapped), built once and kept beside it.

    Rebuilt when ``cube.npy`` changed (size or modification time) or ``params`` differ. The
    write is atomic: a killed build leaves no ``cube_masked.npy`` that looks complete. The
    cube is read and written in chunks of 512 rows (memory does not grow with it), on
    ``workers`` processes (the result does not depend on how many).

    Parameters
    ----------
    run : RunDir
        The run; ``cube_masked.npy``, ``.parquet`` and ``.json`` are written in it.
    params : MaskParams
        Detection and masking settings.
    workers : int
        Processes that share the images.

    Returns
    -------
    numpy.memmap, shape (N, C, H, W), the cube's float dtype
    """
    with built_by_one(run.path / MASKING_LOCK):
        return _masked_cube(run, params, workers)


def _masked_cube(run: RunDir, params: MaskParams, workers: int) -> np.ndarray:
    cube = run.read_cube()
    path, meta = run.path / MASKED_CUBE, run.path / MASKED_META
    signature = _cube_signature(run.cube, params)
    if path.is_file() and meta.is_file():
        try:
            stored = json.loads(meta.read_text())
            kept = {key: stored.get(key) for key in signature}
            if isinstance(kept.get("params"), dict) and not kept["params"].get("keep_companions", 1):
                kept["params"] = {k: v for k, v in kept["params"].items() if k != "keep_companions"}  # 0: as unset
            up_to_date = kept == signature
        except (OSError, ValueError, AttributeError):
            up_to_date = False  # unreadable metadata: rebuild
        masked = read_cached_npy(path, cube.shape) if up_to_date else None
        if masked is not None:
            if _built_meanwhile_by_another(stored):
                _log_built_by_another(run)
            return masked
        if up_to_date:
            log.warning("%s is damaged (cut short, or not the cube's shape): masked again", path.name)
    meta.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        # stored like the cube (float16 by default: half the bytes to write and to read back)
        dtype = cube.dtype if cube.dtype in (np.float16, np.float32) else np.float32
        out = new_npy_map(tmp, dtype, cube.shape)
        out.flush()
        del out  # the chunks write through their own maps
        tables = map_chunks(_mask_chunk, len(cube), str(run.cube), str(tmp), params, chunk=512,
                            workers=workers, desc="masking neighbours")
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        {"n_masked": [], "masked_fraction": [], "central_found": []})
    table.insert(0, "id", run.cube_ids().astype(str))
    write_table(run.path / MASKED_TABLE, table)
    # who built it and when: a process of the same job that finds it built says so in its log
    write_json(meta, {**signature, "built_by_pid": os.getpid(), "built_at": time.time()})
    _log_masking(table)
    return np.load(path, mmap_mode="r")


def _built_meanwhile_by_another(stored: dict) -> bool:
    """Built since this process started, by another process: by another task of a job started
    together (srun), whose log lines went to its own stderr, not to the run's log."""
    built_at, pid = stored.get("built_at"), stored.get("built_by_pid")
    return isinstance(built_at, (int, float)) and built_at >= _STARTED and pid != os.getpid()


def _log_built_by_another(run: RunDir) -> None:
    try:
        table = read_parquet(run.path / MASKED_TABLE)  # central_found: in tables of rule 2
    except (OSError, ValueError, KeyError):
        log.info("the neighbour-masked cube was built by another process of this job")
        return
    _log_masking(table, "by another process of this job")


def _log_masking(table: pd.DataFrame, by: str = "") -> None:
    log.info("neighbours masked%s in %d of %d images (%.1f%% of the pixels)", f" {by}" if by else "",
             int((table["n_masked"] > 0).sum()), len(table),
             100 * float(table["masked_fraction"].mean()) if len(table) else 0.0)
    if "central_found" in table and not table["central_found"].all():
        missed = table.index[~table["central_found"].astype(bool)]
        ids = table["id"].iloc[missed[:5]].tolist() if "id" in table else missed[:5].tolist()
        log.warning("no central source found in %d of %d images (e.g. %s): left unmasked; listed in %s "
                    "(central_found false)", len(missed), len(table), ", ".join(map(str, ids)), MASKED_TABLE)


def model_input_path(run: RunDir, hp: dict) -> Path:
    """The cube a VaDE with hyper-parameters ``hp`` reads.

    Parameters
    ----------
    run : RunDir
        The run.
    hp : dict
        The VaDE's hyper-parameters; ``mask_neighbours`` selects the masked cube.

    Returns
    -------
    Path
        ``cube.npy``, or its neighbour-masked copy (built if needed).
    """
    if hp.get("mask_neighbours", False):
        masked_cube(run)
        return run.path / MASKED_CUBE
    return run.cube
