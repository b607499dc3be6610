"""Benchmark of the built-in synthetic survey: render n galaxies with a process pool.

Times :func:`morphospace.data.synth.make_survey` end to end (worker start-up, rendering, PNG
writing, catalogue and marker) into a temporary directory and prints the total seconds
and images per second. The target is 2,000 galaxies at 128 x 128 in under 30 s on 2 cores.

Usage::

    .venv/bin/python benchmarks/bench_synth.py                  # n = 2000, workers = 2, 128 px
    .venv/bin/python benchmarks/bench_synth.py --n 200 --workers 1

Timings depend on the machine and its load (the 1-minute load average is printed beside
them). To tell load from cost, a second, in-process pass over ``--cpu-sample`` galaxies
measures the CPU time per galaxy (``time.process_time``, which other processes do not
inflate much), and the script prints the wall time that cost implies on ``workers`` idle
cores. It writes nothing outside a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Time one survey of the size the command line asks for, then the CPU per galaxy."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu-sample", type=int, default=200, help="galaxies of the in-process CPU-time pass (0: skip)")
    args = ap.parse_args()

    from morphospace.data import synth

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        out = Path(tmp) / "survey"
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        synth.make_survey(out, n=args.n, seed=args.seed, size=args.size, workers=args.workers, progress=False)
        elapsed = time.perf_counter() - t0
        n_files = len(list((out / "images").glob("*.png")))
        megabytes = sum(f.stat().st_size for f in (out / "images").iterdir()) / 1e6
    print(f"synth: n={args.n} size={args.size} workers={args.workers} seed={args.seed} "
          f"(cpus={os.cpu_count()}, load before={load:.2f}, after={os.getloadavg()[0]:.2f})")
    print(f"  total {elapsed:.2f} s, {args.n / elapsed:.1f} images/s, {n_files} PNG files, {megabytes:.1f} MB")
    if args.cpu_sample > 0:
        with tempfile.TemporaryDirectory(prefix="bench_synth_cpu_") as tmp:
            k = args.cpu_sample
            synth.make_survey(Path(tmp) / "warm", n=12, seed=args.seed + 1, size=args.size, workers=1, progress=False)
            c0 = time.process_time()
            synth.make_survey(Path(tmp) / "cpu", n=k, seed=args.seed, size=args.size, workers=1, progress=False)
            per = (time.process_time() - c0) / k
        print(f"  CPU per galaxy (in-process pass of {k}): {per * 1e3:.1f} ms -> "
              f"{args.n * per / args.workers:.1f} s of rendering for n={args.n} on {args.workers} idle cores")


if __name__ == "__main__":
    from _entry import run

    run(main)
