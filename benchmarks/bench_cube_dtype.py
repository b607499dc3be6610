"""The cube stored as float16 (the default) against float32: ingest and neighbour masking.

Every later stage streams the cube from disk, so its bytes are what a large survey's ingest
writes, masking reads and writes again, and the embedding reads back. For each survey and
round this times, alternately, ``morphospace ingest`` with ``--set ingest.cube_dtype=float16``
and ``=float32`` (each its own process under ``/usr/bin/time -v``), then the neighbour masking
of that cube (``masked_cube``, its own process), and prints wall time, peak RSS and the bytes
on disk. With ``--drop-caches`` (root only) the page cache is emptied before each command, so
the survey and the cube come from the disk as they do the first time a large survey is read.

Usage::

    .venv/bin/python benchmarks/bench_cube_dtype.py --data W/synth20000 W/synth200000 --work W2 --rounds 2

A survey folder can be rendered first with ``morphospace synth --n N --seed 0 --out DIR``.
Say what else ran on the machine when you quote its times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale  # noqa: E402 - the same timing under /usr/bin/time -v

MASK = ("import sys; from morphospace.image.masking import masked_cube; from morphospace.run import RunDir; "
        "masked_cube(RunDir(sys.argv[1]), workers=int(sys.argv[2]))")


def timed(cmd: list[str], drop: bool) -> tuple[float, float]:
    """:func:`bench_scale.timed` (wall seconds, peak RSS in MB), the page cache emptied first when ``drop``."""
    if drop:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    return bench_scale.timed(cmd)


def one(data: Path, run: Path, dtype: str, workers: int, drop: bool) -> dict:
    """Ingest ``data`` into ``run`` with the cube in ``dtype``, then mask it; the run is removed."""
    shutil.rmtree(run, ignore_errors=True)
    ms = str(Path(sys.executable).with_name("morphospace"))
    t_in, m_in = timed([ms, "ingest", str(data), "--out", str(run), "--workers", str(workers), "--quiet",
                        "--set", f"ingest.cube_dtype={dtype}"], drop)
    gb = (run / "cube.npy").stat().st_size / 1e9
    t_mask, m_mask = timed([sys.executable, "-c", MASK, str(run), str(workers)], drop)
    shutil.rmtree(run, ignore_errors=True)
    return {"ingest": t_in, "ingest_mb": m_in, "mask": t_mask, "mask_mb": m_mask, "cube_gb": gb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="survey folders")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per survey")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--drop-caches", action="store_true", help="empty the page cache before each command (root)")
    p.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_cube_dtype_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cpus {os.cpu_count()}, workers {args.workers}, page cache dropped: {args.drop_caches}", flush=True)
    for data in args.data:
        rows: dict[str, list[dict]] = {"float16": [], "float32": []}
        for r in range(args.rounds):
            for dtype in (("float16", "float32") if r % 2 == 0 else ("float32", "float16")):
                res = one(data, work / "run", dtype, args.workers, args.drop_caches)
                rows[dtype].append(res)
                print(f"  {data.name} round {r + 1} {dtype}: ingest {res['ingest']:.1f} s ({res['ingest_mb']:.0f} MB), "
                      f"masking {res['mask']:.1f} s ({res['mask_mb']:.0f} MB), cube {res['cube_gb']:.2f} GB",
                      flush=True)
        for key in ("ingest", "mask"):
            ratios = [a[key] / b[key] for a, b in zip(rows["float16"], rows["float32"])]
            print(f"{data.name} {key}: float16 / float32 time per round {', '.join(f'{x:.2f}' for x in ratios)}")


if __name__ == "__main__":
    from _entry import run

    run(main)
