"""Can the data loading feed a GPU? Images/s read from the memory-mapped cube, against loader workers.

Writes a cube of N galaxies (``--n``, default 20,000; 3 x 64 x 64 float32, the default
ingest's size: 1 GB at 20,000) under ``--scratch``, then reads it through the two loaders a
GPU run uses, with 0, 1, 2 and 4 worker processes (``train.loader_workers``):

- the VaDE's training loader (:class:`morphospace.vade.data.CubeDataModule`: rows in a
  shuffled order, batch 128, the default ``train.batch_size``), for ``--batches`` batches;
- the embedding's loader (``morphospace.nets.predict``: rows in cube order with their
  indices, batch 32), for the same number of images.

Each is read twice and the second pass is timed, so the cube is in the page cache, as it is
after the first epoch of a run whose cube fits in memory; ``--cold`` times the first pass
instead (after writing, so the cache is warm unless the cube exceeds memory). For scale, the
script also times the form trunk (EfficientNet-Lite0 at 112 px, bf16) on this CPU: a GPU
consumes an order of magnitude more, which is what the loader must keep up with.

Usage::

    .venv/bin/python benchmarks/bench_loader.py
    .venv/bin/python benchmarks/bench_loader.py --n 5000 --workers 0 2 --batches 40

Say what else ran on the machine when you quote its numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from morphospace.nets.batches import loader_options  # noqa: E402
from morphospace.nets.predict import _IndexedRows  # noqa: E402
from morphospace.vade.data import CubeDataModule  # noqa: E402


def write_cube(path: Path, n: int, size: int = 64) -> None:
    cube = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 3, size, size))
    rng = np.random.default_rng(0)
    for s in range(0, n, 2000):
        cube[s:s + 2000] = rng.random((min(2000, n - s), 3, size, size), dtype=np.float32)
    cube.flush()


def rate(loader, images: int, cold: bool) -> float:
    """Images/s of the loader over ``images`` rows (the second pass unless ``cold``)."""
    def one_pass():
        seen, t = 0, time.perf_counter()
        for batch in loader:
            x = batch[1] if isinstance(batch, (list, tuple)) else batch
            seen += len(x)
            if seen >= images:
                break
        return seen / (time.perf_counter() - t)
    first = one_pass()
    return first if cold else one_pass()


def trunk_rate(seconds: float = 10.0) -> float:
    from morphospace.ssl.embedder import build_trunk
    trunk = build_trunk("efficientnet-lite0", 112, precision="bf16").eval()
    x = torch.rand(32, 3, 64, 64)
    with torch.no_grad():
        trunk(x)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            trunk(x)
            n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    p.add_argument("--batches", type=int, default=100, help="training batches (of 128) timed")
    p.add_argument("--cold", action="store_true", help="time the first pass")
    p.add_argument("--scratch", default="/tmp/morphospace_bench_loader")
    p.add_argument("--keep", action="store_true", help="keep the cube for the next call")
    args = p.parse_args()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"cube{args.n}.npy"
    if not path.is_file():
        write_cube(path, args.n)
    images = min(args.n, args.batches * 128)
    print(f"cube {args.n:,} x 3 x 64 x 64 float32 ({path.stat().st_size / 1e9:.2f} GB); {images:,} images a pass; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"{'workers':>8} {'train loader (img/s)':>22} {'embed loader (img/s)':>22}")
    for w in args.workers:
        dm = CubeDataModule(path, batch_size=128, seed=0, workers=w)
        dm.setup()
        train = rate(dm.train_dataloader(), images, args.cold)
        cube = np.load(path, mmap_mode="r")
        embed = rate(DataLoader(_IndexedRows(cube), batch_size=32, shuffle=False,
                                **loader_options(w, persistent=False)), images, args.cold)
        print(f"{w:>8} {train:>22,.0f} {embed:>22,.0f}", flush=True)
    print(f"form trunk on this CPU (EfficientNet-Lite0, 112 px, bf16, batch 32): {trunk_rate():,.0f} img/s")
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    from _entry import run

    run(main)
