"""Benchmark of the survey ingest: throughput against a naive loop, and peak memory against N.

1. Throughput. Ingests ``../shared/data/sdss-gz1`` (3,359 JPEGs, 423 x 423) to 64 x 64
   colour with ``--workers`` processes (default 2), end to end (listing, decoding,
   checks, cube and catalogue writing), and times in the same run a naive
   one-file-at-a-time Pillow loop doing the least a model needs: open, convert to
   RGB, crop the centre half, resize to 64 x 64, to float32. Each is timed
   ``--repeats`` times, alternately, and the best of each is kept (the machine is
   shared, so the best is the least disturbed); the ratio is naive / ingest time. Every
   file is read once before the first round, so that both read from the page cache (the
   first ingest would otherwise be the only one to read from disk).
   ``--compare`` also ingests it once with JPEGs decoded by libjpeg-turbo (simplejpeg, the
   default) and once by Pillow alone, and prints the largest difference between the two
   cubes and whether every flag and catalogue column is the same.
   ``--decoders`` times libjpeg-turbo's colour decode into a Pillow image as packed RGB
   against RGBX (Pillow's own layout), alternated.
   ``--stages`` prints where one process's CPU goes per galaxy: reading and decoding,
   the quality checks' sample and histograms, the crop and resize, the batch statistics and
   normalisation, the lookups that make the float32 rows, and the cube writes.
2. Memory. Renders a folder of small JPEGs once (``--n-large`` files, default 20,000,
   under ``--scratch``, default /tmp/morphospace_bench_ingest), then ingests its first
   2,000 and all of it in a child process, sampling the resident memory (RSS) of the
   child and its worker processes together every 20 ms from /proc; prints the peak of
   the sum, the peak of the parent alone, and the largest worker's peak
   (``ru_maxrss`` of the children). Streaming means the peaks must not grow with N.

Usage::

    .venv/bin/python benchmarks/bench_ingest.py               # both parts
    .venv/bin/python benchmarks/bench_ingest.py --skip-memory
    .venv/bin/python benchmarks/bench_ingest.py --n-large 5000 --repeats 1
    .venv/bin/python benchmarks/bench_ingest.py --skip-memory --repeats 0 --compare

Timings depend on the machine and its load (the 1-minute load average is printed).
The script writes only under ``--scratch`` and a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "sdss-gz1"


# --- throughput -----------------------------------------------------------------------------

def naive_loop(paths: list[Path], size: int = 64, crop: float = 0.5) -> np.ndarray:
    """The baseline: open, convert, crop, resize, one file at a time, in this process.

    Parameters
    ----------
    paths : list of Path
        JPEG files.
    size : int
        Output side.
    crop : float
        Centre-crop fraction of the shorter side.

    Returns
    -------
    ndarray, shape (N, 3, size, size), float32
    """
    from PIL import Image

    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as img:
            img = img.convert("RGB")
            w, h = img.size
            side = int(round(min(w, h) * crop))
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size))
            out[i] = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return out


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_ingest(data: Path, workers: int, tmp: Path, keep: bool = False) -> tuple[float, float, dict]:
    """Time one ingest of ``data`` (64 px rows).

    Parameters
    ----------
    data : Path
        The survey.
    workers : int
        Ingest workers.
    tmp : Path
        Where the run goes (removed afterwards unless ``keep``).
    keep : bool
        Keep the run; its path is the summary's ``run``.

    Returns
    -------
    wall : float
        Seconds.
    cpu : float
        CPU seconds of this process and its workers.
    summary : dict
        The ingest summary, with ``parent_cpu``: the CPU seconds of this (the driver's) process alone.
    """
    from morphospace.config import Config, apply_overrides
    from morphospace.data.ingest import ingest
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir

    set_quiet(True)
    cfg = apply_overrides(Config(), {"ingest.workers": workers, "preprocess.size": 64})
    run = RunDir(tmp / f"run_{time.monotonic_ns()}", create=True)
    c0, p0, t0 = _cpu(), time.process_time(), time.perf_counter()
    summary = ingest(data, run, cfg)
    elapsed, cpu, parent = time.perf_counter() - t0, _cpu() - c0, time.process_time() - p0
    summary = {**summary, "parent_cpu": parent}  # the driver's own share (lookups, cube writes, catalogue)
    if keep:
        summary = {**summary, "run": run.path}
    else:
        shutil.rmtree(run.path)
    return elapsed, cpu, summary


def decoder() -> str:
    """The JPEG decoder the ingest uses here."""
    from morphospace.data.ingest import decode

    if decode.simplejpeg is None:
        return "Pillow (simplejpeg not importable)"
    return f"libjpeg-turbo via simplejpeg {decode.simplejpeg.__version__} (Pillow for what it declines)"


def stages(n: int = 1024, repeats: int = 3) -> None:
    """Print the CPU per galaxy of each step of the ingest's 8-bit path, in this process (best of ``repeats``).

    Parameters
    ----------
    n : int
        Files of sdss-gz1 to use.
    repeats : int
        Timings per step.
    """
    from morphospace.data.ingest.decode import decode
    from morphospace.data.ingest.histograms import histograms_8bit, sample_8bit, stats_from_histograms
    from morphospace.data.ingest.preprocess import PreprocessSpec, _resized_8bit, preprocess_block
    from morphospace.data.ingest.records import Record

    if not (SHARED / "images").is_dir():
        print("stages: skipped (no sdss-gz1)")
        return
    paths = [str(p) for p in sorted((SHARED / "images").iterdir())[:n]]
    spec = PreprocessSpec(size=64)

    def cpu_ms(fn) -> tuple[float, object]:
        best, out = float("inf"), None
        for _ in range(repeats):
            c0 = time.process_time()
            out = fn()
            best = min(best, time.process_time() - c0)
        return 1e3 * best / len(paths), out

    from morphospace.data.ingest import decode as decode_module

    def decode_all() -> list:
        return [decode(Record(id="", source=p), min_side=spec.min_side()) for p in paths]

    saved = decode_module.simplejpeg
    t_dec, frames = cpu_ms(decode_all)
    decode_module.simplejpeg = None
    try:
        t_pillow, _ = cpu_ms(decode_all) if saved is not None else (t_dec, None)
    finally:
        decode_module.simplejpeg = saved
    t_hist, hists = cpu_ms(lambda: [histograms_8bit(sample_8bit(f.pixels)) for f in frames])
    t_resize, _ = cpu_ms(lambda: [_resized_8bit(f.pixels, spec).tobytes() for f in frames])
    t_stats, _ = cpu_ms(lambda: stats_from_histograms(*map(list, zip(*hists))))
    t_block, (block, _) = cpu_ms(lambda: preprocess_block(frames, spec))
    t_rows, rows = cpu_ms(block.to_array)
    with tempfile.TemporaryDirectory(prefix="bench_ingest_stages_") as tmp:
        from morphospace.data.ingest.cube import CubeWriter

        def write() -> None:
            w = CubeWriter(Path(tmp) / "cube.npy", len(rows), rows.shape[1:])
            for s in range(0, len(rows), 256):
                w.append_rows(rows[s:s + 256])
            w.abort()

        t_write, _ = cpu_ms(write)
    rest = t_block - t_hist - t_resize - t_stats
    print(f"stages: CPU ms per galaxy, one process, {len(paths)} sdss-gz1 JPEGs -> 64 x 64 colour "
          f"[load {os.getloadavg()[0]:.2f}]")
    print(f"  read + decode {t_dec:.3f} ({decoder()}; Pillow alone {t_pillow:.3f}); checks' sample + histograms {t_hist:.3f}; "
          f"crop + resize {t_resize:.3f}; batch statistics {t_stats:.3f}; normalisation tables and the rest "
          f"{rest:.3f}; float32 rows by lookup {t_rows:.3f}; cube writes {t_write:.3f}")


def decoders(n: int = 1000, rounds: int = 7) -> None:
    """Print the CPU per galaxy of decoding a colour JPEG with libjpeg-turbo into a Pillow image,
    packed RGB against RGBX (Pillow's own 4-byte layout), alternated ``rounds`` times, and whether
    the two give the same pixels.

    Parameters
    ----------
    n : int
        Files of sdss-gz1 to use.
    rounds : int
        Alternated timings of each.
    """
    from PIL import Image

    from morphospace.data.ingest.decode import draft_scale, simplejpeg
    from morphospace.data.ingest.spec import PreprocessSpec

    if simplejpeg is None or not (SHARED / "images").is_dir():
        print("decoders: skipped (no simplejpeg or no sdss-gz1)")
        return
    data = [p.read_bytes() for p in sorted((SHARED / "images").iterdir())[:n]]
    min_side = PreprocessSpec(size=64).min_side()

    def image(blob: bytes, layout: str) -> Image.Image:
        h, w, _, _ = simplejpeg.decode_jpeg_header(blob)
        s = draft_scale(w, h, min_side)
        arr = simplejpeg.decode_jpeg(blob, layout, False, False, -(-h // s), -(-w // s), strict=True)
        return Image.frombytes("RGB", (arr.shape[1], arr.shape[0]), arr, "raw", layout)

    times: dict[str, list] = {"RGBX": [], "RGB": []}
    for _ in range(rounds):
        for layout, got in times.items():
            c0 = time.process_time()
            for blob in data:
                image(blob, layout)
            got.append(1e3 * (time.process_time() - c0) / len(data))
    same = all(image(b, "RGB").tobytes() == image(b, "RGBX").tobytes() for b in data[:50])
    print(f"decoders: CPU ms per galaxy, {len(data)} sdss-gz1 JPEGs decoded at the ingest's scale into an RGB "
          f"image, {rounds} alternated rounds [load {os.getloadavg()[0]:.2f}]")
    for layout, got in times.items():
        print(f"  as {layout}: best {min(got):.3f}, median {float(np.median(got)):.3f}")
    print(f"  same pixels: {same}")


def compare(workers: int) -> None:
    """Print how the cube and catalogue of sdss-gz1 differ between the simplejpeg and Pillow decodes.

    Parameters
    ----------
    workers : int
        Ingest workers.
    """
    import pandas as pd

    from morphospace.data.ingest import decode

    if not (SHARED / "images").is_dir() or decode.simplejpeg is None:
        print("compare: skipped (no sdss-gz1 or no simplejpeg)")
        return
    with tempfile.TemporaryDirectory(prefix="bench_ingest_cmp_") as tmp:
        t_turbo, c_turbo, turbo = time_ingest(SHARED, workers, Path(tmp), keep=True)
        saved, decode.simplejpeg = decode.simplejpeg, None  # the workers fork with this
        try:
            t_pil, c_pil, pil = time_ingest(SHARED, workers, Path(tmp), keep=True)
        finally:
            decode.simplejpeg = saved
        a, b = (np.load(r["run"] / "cube.npy", mmap_mode="r") for r in (turbo, pil))
        ca, cb = (pd.read_parquet(r["run"] / "catalogue.parquet") for r in (turbo, pil))
        same_shape = a.shape == b.shape
        diff = float(np.abs(np.asarray(a) - np.asarray(b)).max()) if same_shape else float("nan")
        print(f"compare: sdss-gz1 simplejpeg vs Pillow-only decode: cube {a.shape} vs {b.shape}, "
              f"max abs difference {diff:.3g}; catalogues identical: {ca.equals(cb)}; "
              f"flag counts identical: {turbo.get('flags') == pil.get('flags')}")
        print(f"  CPU per image: simplejpeg {1e3 * c_turbo / len(ca):.2f} ms, Pillow {1e3 * c_pil / len(cb):.2f} ms "
              f"(wall {t_turbo:.2f} s vs {t_pil:.2f} s) [load {os.getloadavg()[0]:.2f}]")


def throughput(workers: int, repeats: int) -> None:
    """Print the ingest's and the naive loop's speed on sdss-gz1 (best of ``repeats``).

    Parameters
    ----------
    workers : int
        Ingest workers.
    repeats : int
        Rounds.
    """
    if not (SHARED / "images").is_dir():
        print(f"throughput: skipped ({SHARED} not found)")
        return
    paths = sorted((SHARED / "images").iterdir())
    n = len(paths)
    best_ingest, best_naive = (float("inf"), 0.0), (float("inf"), 0.0)
    ratios: list[float] = []
    for path in paths:  # into the page cache first: otherwise only round 1's ingest reads from disk
        path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        for r in range(repeats):
            t, cpu, summary = time_ingest(SHARED, workers, Path(tmp))
            best_ingest = min(best_ingest, (t, cpu))
            c0, t0 = _cpu(), time.perf_counter()
            naive_loop(paths)
            t1, cpu1 = time.perf_counter() - t0, _cpu() - c0
            best_naive = min(best_naive, (t1, cpu1))
            ratios.append(t1 / t)
            print(f"  round {r + 1}: ingest {t:.2f} s ({n / t:.0f} img/s, CPU {1e3 * cpu / n:.2f} ms/img, "
                  f"of which the driver process {1e3 * summary['parent_cpu'] / n:.2f}), "
                  f"naive {t1:.2f} s ({n / t1:.0f} img/s, CPU {1e3 * cpu1 / n:.2f} ms/img), ratio {t1 / t:.2f}  "
                  f"[load {os.getloadavg()[0]:.2f}]")
    (ti, ci), (tn, cn) = best_ingest, best_naive
    print(f"throughput: sdss-gz1 {n} JPEGs -> {summary['cube_shape']} ({summary['n_in_cube']} in the cube), "
          f"{workers} workers; JPEG decoder: {decoder()}")
    print(f"  ratio naive / ingest per round: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(min {min(ratios):.2f}, {'>=' if min(ratios) >= 3 else '<'} 3x in every round)")
    print(f"  ingest best {ti:.2f} s = {n / ti:.0f} img/s; naive Pillow loop best {tn:.2f} s = {n / tn:.0f} img/s; "
          f"ratio {tn / ti:.2f}x")
    print(f"  CPU per image (all processes): ingest {1e3 * ci / n:.2f} ms, naive {1e3 * cn / n:.2f} ms "
          f"(with {workers} free cores the ratio would approach {workers * cn / ci:.1f}x)")


# --- memory ----------------------------------------------------------------------------------

def make_folder(folder: Path, n: int, side: int = 128) -> Path:
    """``n`` small galaxy-like JPEGs (64 distinct renderings, copied), made once.

    Parameters
    ----------
    folder : Path
        Where (reused when complete).
    n, side : int
        Files and frame side.

    Returns
    -------
    Path
        ``folder``.
    """
    from PIL import Image

    marker = folder / f".complete_{n}_{side}"
    if marker.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side] - side / 2
    protos = []
    for k in range(64):
        q, theta = rng.uniform(0.3, 1), rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = (-xx * np.sin(theta) + yy * np.cos(theta)) / q
        r = np.hypot(u, v) / rng.uniform(4, 12)
        light = np.exp(-r) * rng.uniform(150, 240)
        rgb = light[..., None] * np.array([1.0, 0.85, 0.7]) + rng.normal(6, 3, (side, side, 3))
        path = folder / f"proto_{k}.jpg"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
        protos.append(path.read_bytes())
        path.unlink()
    for i in range(n):
        (folder / f"g{i:06d}.jpg").write_bytes(protos[i % len(protos)])
    marker.touch()
    return folder


def _tree_rss(root: int) -> tuple[int, int]:
    """(RSS of ``root`` and all its descendants, RSS of ``root``) in bytes, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as fh:
                rss[int(d)] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total, rss.get(root, 0)


CHILD = """
import json, resource, sys
from morphospace.config import Config, apply_overrides
from morphospace.data.ingest import ingest
from morphospace.progress import set_quiet
from morphospace.run import RunDir
set_quiet(True)
data, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = ingest(data, RunDir(out, create=True), apply_overrides(Config(), {"ingest.workers": workers}))
print(json.dumps({"n": s["n_in_cube"], "seconds": s["seconds"],
                  "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def peak_memory(data: Path, out: Path, workers: int) -> dict:
    """Ingest in a child process, sampling the resident memory of it and its workers.

    Parameters
    ----------
    data : Path
        The survey.
    out : Path
        The run folder.
    workers : int
        Ingest workers.

    Returns
    -------
    dict
        ``n``, ``seconds``, ``children_maxrss_kb``, ``self_maxrss_kb``, and the peaks
        ``tree`` (parent + workers) and ``parent``, in bytes.
    """
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(out), str(workers)],
                            stdout=subprocess.PIPE, text=True)
    peak = {"tree": 0, "parent": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree, parent = _tree_rss(proc.pid)
            peak["tree"] = max(peak["tree"], tree)
            peak["parent"] = max(peak["parent"], parent)
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    stdout, _ = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"ingest child failed with status {proc.returncode}")
    info = json.loads(stdout.strip().splitlines()[-1])
    return {**info, **peak}


def memory(scratch: Path, n_large: int, n_small: int, workers: int) -> None:
    """Print the peak memory of ingesting ``n_small`` and ``n_large`` JPEGs: it should not grow with N.

    Parameters
    ----------
    scratch : Path
        Where the test folders are made (kept between runs).
    n_large, n_small : int
        The two survey sizes.
    workers : int
        Ingest workers.
    """
    t0 = time.perf_counter()
    big = make_folder(scratch / f"folder_{n_large}", n_large)
    small = scratch / f"folder_{n_small}"
    if not (small / f".complete_{n_small}").exists():
        if small.exists():
            shutil.rmtree(small)
        small.mkdir(parents=True)
        for p in sorted(big.glob("g*.jpg"))[:n_small]:
            os.link(p, small / p.name)
        (small / f".complete_{n_small}").touch()
    print(f"memory: folders of {n_small} and {n_large} JPEGs (128 x 128) under {scratch} "
          f"({time.perf_counter() - t0:.1f} s to prepare), {workers} workers")
    with tempfile.TemporaryDirectory(prefix="bench_ingest_mem_") as tmp:
        for n, folder in ((n_small, small), (n_large, big)):
            r = peak_memory(folder, Path(tmp) / f"run{n}", workers)
            print(f"  N={n:6d}: {r['n']} in the cube in {r['seconds']:.1f} s; peak RSS parent+workers "
                  f"{r['tree'] / 2**20:.0f} MiB, parent {r['parent'] / 2**20:.0f} MiB, "
                  f"largest worker (ru_maxrss) {r['children_maxrss_kb'] / 1024:.0f} MiB")


def main() -> None:
    """Run the benchmarks the command line asks for."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-large", type=int, default=20000)
    ap.add_argument("--n-small", type=int, default=2000)
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "morphospace_bench_ingest")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--compare", action="store_true", help="cube and catalogue: simplejpeg against Pillow alone")
    ap.add_argument("--stages", action="store_true", help="CPU per galaxy of each step, in one process")
    ap.add_argument("--decoders", action="store_true", help="colour JPEGs decoded as RGB against RGBX")
    args = ap.parse_args()
    print(f"bench_ingest: cpus={os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    if not args.skip_throughput and args.repeats > 0:
        throughput(args.workers, args.repeats)
    if args.stages:
        stages()
    if args.decoders:
        decoders()
    if args.compare:
        compare(args.workers)
    if not args.skip_memory:
        memory(args.scratch, args.n_large, args.n_small, args.workers)


if __name__ == "__main__":
    from _entry import run

    run(main)
