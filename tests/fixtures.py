"""Tiny surveys on disk, in every layout the ingest reads, for tests.

Plain functions (import them: ``from fixtures import tiny_folder_survey``); the
pytest fixtures of ``conftest.py`` wrap a few of them. Every image is rendered
here (a noisy exponential galaxy on a dark sky, like a small SDSS cutout), so the
tests need no data from outside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

KAGGLE_VOTE_COLUMNS = [f"Class{q}.{a}" for q, n in
                       [(1, 3), (2, 2), (3, 2), (4, 2), (5, 4), (6, 2), (7, 3), (8, 7), (9, 3), (10, 3), (11, 6)]
                       for a in range(1, n + 1)]
MORPHOLOGIES = ["elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "irregular"]


def galaxy_light(size: int = 96, seed: int = 0, q: float | None = None, angle: float | None = None,
                 scale: float | None = None) -> np.ndarray:
    """A noiseless exponential disk centred in a ``size`` frame, peak 1.

    Parameters
    ----------
    size : int
        Frame side.
    seed : int
        Draws the shape parameters left as None.
    q, angle, scale : float, optional
        Axis ratio, major-axis angle (radians) and scale length (pixels).

    Returns
    -------
    ndarray, shape (size, size), float
    """
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.3, 1.0) if q is None else q
    angle = rng.uniform(0, np.pi) if angle is None else angle
    scale = size * rng.uniform(0.04, 0.08) if scale is None else scale
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / q
    return np.exp(-np.hypot(u, v) / scale)


def galaxy_rgb(size: int = 96, seed: int = 0, peak: float = 200.0, sky: float = 8.0, noise: float = 3.0,
               star: tuple[int, int] | None = None, star_peak: float = 255.0, **shape) -> np.ndarray:
    """An 8-bit RGB cutout: galaxy + dark noisy sky (+ an optional bright star).

    Parameters
    ----------
    size, seed : int
        Frame side and seed (shape and noise).
    peak, sky, noise : float
        Galaxy peak, sky level and noise sigma, in 8-bit levels.
    star : tuple of int, optional
        (row, col) of a bright star.
    star_peak : float
        Its brightness.
    **shape
        ``q``, ``angle``, ``scale`` of :func:`galaxy_light`.

    Returns
    -------
    ndarray, shape (size, size, 3), uint8
    """
    rng = np.random.default_rng(seed + 1000)
    light = peak * galaxy_light(size, seed, **shape)
    if star is not None:
        yy, xx = np.mgrid[:size, :size]
        light = light + star_peak * 4 * np.exp(-((yy - star[0]) ** 2 + (xx - star[1]) ** 2) / (2 * 1.5 ** 2))
    rgb = light[..., None] * np.array([1.0, 0.85, 0.7]) + sky + rng.normal(0, noise, (size, size, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def galaxy_flux(size: int = 64, seed: int = 0, bands: int = 1, peak: float = 1000.0, sky: float = 100.0,
                noise: float = 5.0) -> np.ndarray:
    """A float32 FITS-like cutout in flux units.

    Parameters
    ----------
    size, seed, bands : int
        Frame side, seed, number of bands.
    peak, sky, noise : float
        Galaxy peak, sky level and noise sigma.

    Returns
    -------
    ndarray, float32
        (size, size) for one band, else (bands, size, size).
    """
    rng = np.random.default_rng(seed + 2000)
    light = peak * galaxy_light(size, seed)
    if bands == 1:
        return (light + sky + rng.normal(0, noise, (size, size))).astype(np.float32)
    return np.stack([light * (0.6 + 0.2 * b) + sky + rng.normal(0, noise, (size, size))
                     for b in range(bands)]).astype(np.float32)


def save_image(path: Path, arr: np.ndarray, **kwargs) -> Path:
    """Save an 8-bit array by extension (JPEG, PNG, TIFF, ...), creating the folder.

    Parameters
    ----------
    path : Path
        Destination; its extension picks the format (JPEG quality 92 by default).
    arr : ndarray, uint8
        The image.
    **kwargs
        Passed to Pillow's ``save``.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        kwargs.setdefault("quality", 92)
    img.save(path, **kwargs)
    return path


def error_page(size: int = 96, background: int | tuple = 255, ink: int | tuple = 0,
               lines: tuple[str, ...] = ("Image not", "available", "for this", "position")) -> np.ndarray:
    """A rendered "image not available" frame: flat background with text lines.

    Parameters
    ----------
    size : int
        Frame side.
    background, ink : int or tuple
        Grey level or RGB of the page and the text.
    lines : tuple of str
        The text.

    Returns
    -------
    ndarray, shape (size, size, 3), uint8
    """
    bg = background if isinstance(background, tuple) else (background,) * 3
    fg = ink if isinstance(ink, tuple) else (ink,) * 3
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    step = size // (len(lines) + 1)
    for k, text in enumerate(lines):
        draw.text((size // 10, step * (k + 0.6)), text, fill=fg)
    return np.asarray(img)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """Write a plain CSV (no quoting; None as an empty cell), creating the folder.

    Parameters
    ----------
    path : Path
        Destination.
    header : list of str
        Column names.
    rows : list of list
        The rows.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- layouts -------------------------------------------------------------------------------

def tiny_folder_survey(root: Path, n: int = 6, catalogue: bool = True, formats=("png", "jpg", "tif"),
                       size: int = 96, images_subdir: bool = False) -> Path:
    """A folder of images (mixed formats) named ``g<i>.<ext>``, optionally with a catalogue.

    Parameters
    ----------
    root : Path
        The survey folder.
    n : int
        Galaxies.
    catalogue : bool
        Write ``catalogue.csv`` (id, file, morphology, redshift).
    formats : tuple of str
        Extensions, in turn.
    size : int
        Frame side.
    images_subdir : bool
        Put the images in ``images/``.

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    img_dir = root / "images" if images_subdir else root
    rows = []
    for i in range(n):
        ext = formats[i % len(formats)]
        name = f"g{i}.{ext}"
        save_image(img_dir / name, galaxy_rgb(size, seed=i))
        rel = f"images/{name}" if images_subdir else name
        rows.append([f"g{i}", rel, MORPHOLOGIES[i % len(MORPHOLOGIES)], round(0.01 * (i + 1), 3)])
    if catalogue:
        write_csv(root / "catalogue.csv", ["id", "file", "morphology", "redshift"], rows)
    return root


def tiny_sdss_gz1(root: Path, n: int = 6, size: int = 96) -> Path:
    """The sdss-gz1 layout: ``images/<objid>.jpeg`` + ``labels.csv`` (objid, gz1_class, gz1_name).

    Parameters
    ----------
    root : Path
        The survey folder.
    n, size : int
        Galaxies and frame side.

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    names = ["elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger"]
    rows = []
    for i in range(n):
        objid = 587722952767439450 + 17 * i
        save_image(root / "images" / f"{objid}.jpeg", galaxy_rgb(size, seed=i))
        rows.append([objid, i % 6, names[i % 6]])
    write_csv(root / "labels.csv", ["objid", "gz1_class", "gz1_name"], rows)
    return root


def kaggle_votes(kind: str) -> dict[str, float]:
    """A plausible row of the 37 Kaggle vote fractions for a galaxy of ``kind``.

    Parameters
    ----------
    kind : str
        One of ``KAGGLE_KINDS``.

    Returns
    -------
    dict
        Column -> vote fraction.
    """
    v = dict.fromkeys(KAGGLE_VOTE_COLUMNS, 0.0)
    if kind == "smooth":
        v.update({"Class1.1": 0.8, "Class1.2": 0.18, "Class1.3": 0.02, "Class7.1": 0.5, "Class7.2": 0.3})
    elif kind == "edge_on":
        v.update({"Class1.1": 0.1, "Class1.2": 0.88, "Class1.3": 0.02, "Class2.1": 0.7, "Class2.2": 0.18})
    elif kind == "barred_spiral":
        v.update({"Class1.1": 0.05, "Class1.2": 0.93, "Class1.3": 0.02, "Class2.1": 0.03, "Class2.2": 0.9,
                  "Class3.1": 0.6, "Class3.2": 0.3, "Class4.1": 0.8, "Class4.2": 0.1})
    elif kind == "spiral":
        v.update({"Class1.1": 0.1, "Class1.2": 0.88, "Class1.3": 0.02, "Class2.1": 0.05, "Class2.2": 0.83,
                  "Class3.1": 0.1, "Class3.2": 0.73, "Class4.1": 0.7, "Class4.2": 0.13})
    elif kind == "merger":
        v.update({"Class1.1": 0.5, "Class1.2": 0.45, "Class1.3": 0.05, "Class6.1": 0.9, "Class6.2": 0.1,
                  "Class8.6": 0.7})
    elif kind == "artifact":
        v.update({"Class1.1": 0.2, "Class1.2": 0.1, "Class1.3": 0.7})
    elif kind == "uncertain":
        v.update({"Class1.1": 0.45, "Class1.2": 0.5, "Class1.3": 0.05, "Class2.1": 0.2, "Class2.2": 0.3,
                  "Class4.1": 0.2})
    return v


KAGGLE_KINDS = ["smooth", "edge_on", "barred_spiral", "spiral", "merger", "artifact", "uncertain"]


def tiny_kaggle(root: Path, kinds: list[str] | None = None, size: int = 96) -> Path:
    """Kaggle "Galaxy Zoo - The Galaxy Challenge": ``images_training_rev1/<GalaxyID>.jpg`` +
    ``training_solutions_rev1.csv`` with GalaxyID and all 37 vote-fraction columns.

    Parameters
    ----------
    root : Path
        The survey folder.
    kinds : list of str, optional
        One galaxy per kind (default ``KAGGLE_KINDS``).
    size : int
        Frame side.

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    kinds = kinds or KAGGLE_KINDS
    rows = []
    for i, kind in enumerate(kinds):
        gid = 100008 + 15 * i
        save_image(root / "images_training_rev1" / f"{gid}.jpg", galaxy_rgb(size, seed=i))
        votes = kaggle_votes(kind)
        rows.append([gid] + [votes[c] for c in KAGGLE_VOTE_COLUMNS])
    write_csv(root / "training_solutions_rev1.csv", ["GalaxyID"] + KAGGLE_VOTE_COLUMNS, rows)
    return root


def tiny_galaxy10(path: Path, n: int = 6, kind: str = "sdss", extra: bool = False) -> Path:
    """A Galaxy10 HDF5 file: ``images`` (N x H x W x 3 uint8; 69 px for SDSS, 256 for DECaLS), ``ans``.

    Parameters
    ----------
    path : Path
        The ``.h5`` file.
    n : int
        Galaxies.
    kind : str
        ``"sdss"`` or ``"decals"``.
    extra : bool
        Add 1-D ``redshift`` and ``ra`` datasets.

    Returns
    -------
    Path
        ``path``.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = 69 if kind == "sdss" else 256
    images = np.stack([galaxy_rgb(side, seed=i) for i in range(n)])
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(min(n, 4), side, side, 3), compression="gzip")
        f.create_dataset("ans", data=np.arange(n, dtype=np.uint8) % 10)
        if extra:
            f.create_dataset("redshift", data=np.linspace(0.01, 0.1, n))
            f.create_dataset("ra", data=np.linspace(150, 151, n))
    return path


def tiny_fits_folder(root: Path, n: int = 4, bands: int = 1, size: int = 64, catalogue: bool = False) -> Path:
    """A folder of FITS cutouts ``f<i>.fits`` (2-D, or a band cube), optionally with a catalogue.

    Parameters
    ----------
    root : Path
        The survey folder.
    n, bands, size : int
        Galaxies, bands per cutout and frame side.
    catalogue : bool
        Write ``cat.csv`` (id, mag).

    Returns
    -------
    Path
        ``root``.
    """
    from astropy.io import fits

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        fits.PrimaryHDU(galaxy_flux(size, seed=i, bands=bands)).writeto(root / f"f{i}.fits", overwrite=True)
    if catalogue:
        write_csv(root / "cat.csv", ["id", "mag"], [[f"f{i}", 17 + i] for i in range(n)])
    return root


def tiny_synthetic(root: Path, n: int = 6, size: int = 96) -> Path:
    """The shape of ``morphospace synth`` output: marker + catalogue.csv (id, file, morphology, truth) + images/.

    Parameters
    ----------
    root : Path
        The survey folder.
    n, size : int
        Galaxies and frame side.

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    rows = []
    for i in range(n):
        gid = f"synth_{i:06d}"
        save_image(root / "images" / f"{gid}.png", galaxy_rgb(size, seed=i))
        rows.append([gid, f"images/{gid}.png", MORPHOLOGIES[i % 6], round(10.0 * i, 1), 1 if i % 2 else -1])
    write_csv(root / "catalogue.csv", ["id", "file", "morphology", "position_angle", "winding"], rows)
    (root / "morphospace_synth.json").write_text(json.dumps({
        "generator": "morphospace.synth", "n": n, "seed": 0, "size": size, "catalogue": "catalogue.csv",
        "images": "images", "id_column": "id", "file_column": "file", "truth_label": "morphology"}))
    return root


def many_jpegs(folder: Path, n: int, size: int = 48) -> Path:
    """``n`` small JPEGs (8 renderings, copied) named ``g<i>.jpg``: for streaming and kill tests.

    Parameters
    ----------
    folder : Path
        Where to write them.
    n, size : int
        Files and frame side.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    protos = []
    for k in range(8):
        p = save_image(folder / "proto.jpg", galaxy_rgb(size, seed=k))
        protos.append(p.read_bytes())
    (folder / "proto.jpg").unlink()
    for i in range(n):
        (folder / f"g{i:05d}.jpg").write_bytes(protos[i % len(protos)])
    return folder


def ingest_to(data: Path, run_dir: Path, strict: bool | None = None, **overrides):
    """Ingest ``data`` into ``run_dir`` with config overrides (workers default 1).

    Parameters
    ----------
    data : Path
        The survey.
    run_dir : Path
        The run folder (created).
    strict : bool, optional
        Passed to :func:`morphospace.data.ingest.ingest`.
    **overrides
        Dotted config keys with ``__`` for ``.``, e.g. ``preprocess__size=32``.

    Returns
    -------
    summary : dict
    catalogue : pandas.DataFrame
    cube : ndarray
    run : RunDir
    """
    from morphospace.config import Config, apply_overrides
    from morphospace.data.ingest import ingest
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir

    set_quiet(True)
    values = {"ingest.workers": 1}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    cfg = apply_overrides(Config(), values)
    run = RunDir(run_dir, create=True)
    summary = ingest(data, run, cfg, strict=strict)
    return summary, run.read_catalogue(), run.read_cube(), run


def rendered(fig) -> np.ndarray:
    """The figure as an H x W x 3 float array in [0, 1], drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3] / 255.0


def crop(img: np.ndarray, ax) -> np.ndarray:
    """The pixels inside ``ax`` (display coordinates start at the bottom)."""
    box = ax.get_window_extent()
    h = img.shape[0]
    return img[int(h - box.y1) + 1:int(h - box.y0) - 1, int(box.x0) + 1:int(box.x1) - 1]


def parents_of_processes() -> dict[int, int]:
    """pid -> parent pid of every process, from Linux's /proc."""
    import os

    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parents[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return parents


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return [p for p, parent in parents_of_processes().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...)."""
    parents = parents_of_processes()
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        out += kids
        todo += kids
    return out


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no one has reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def all_end(pids: list[int], seconds: float) -> bool:
    """Whether every process of ``pids`` has ended within ``seconds`` (polled)."""
    import time

    deadline = time.monotonic() + seconds
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(running(p) for p in pids)


def in_own_group(args: list[str], **kwargs):
    """A context manager: ``subprocess.Popen(args)`` in a session of its own, whose whole process
    group is killed on the way out (no stray process, whatever the test asserted)."""
    import contextlib
    import os
    import signal
    import subprocess

    @contextlib.contextmanager
    def started():
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        try:
            yield proc
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    return started()


def sigint_state() -> str:
    """What decides whether a Ctrl-C raised now acts, for a test's failure message: Python's SIGINT
    handler, the C-level handler the kernel calls (Python's own unless a C library replaced it
    behind ``signal.getsignal``), the signals blocked in this thread, the threads running."""
    import ctypes
    import signal
    import threading

    action = ctypes.create_string_buffer(256)  # a struct sigaction: the handler's address first
    ctypes.CDLL(None).sigaction(int(signal.SIGINT), None, action)
    return (f"handler {signal.getsignal(signal.SIGINT)!r}, C handler {int.from_bytes(action.raw[:8], 'little'):#x}, "
            f"blocked {sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))}, "
            f"threads {[t.name for t in threading.enumerate()]}")


def chunk_pid(start: int, stop: int) -> tuple[int, int]:
    """A chunk's start and the process that did it (``map_chunks``' workers import it by name)."""
    import os

    return start, os.getpid()


def chunk_dies(start: int, stop: int) -> None:
    """A chunk whose worker process dies (killed, out of memory) as ``map_chunks`` runs it."""
    import os

    os._exit(1)
