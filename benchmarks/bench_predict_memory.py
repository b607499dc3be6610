"""Peak memory of a prediction shared by several processes (``predict_rows`` through Lightning).

A view bank is 77 kB a galaxy (9 views x 2,144 features, float32): gathered in memory, a
20,000-galaxy training sample costs 1.5 GB in every process before the bank reaches its file.
This runs ``predict_rows`` over a fake memory-mapped float16 cube of ``--rows`` rows with a
network that gives ``--row-kb`` kB a row, on ``--devices`` CPU processes (``ddp_spawn``: the
workers predict, the calling process gathers, as every rank does under ``srun``), in a fresh
child process, and prints the peak resident memory (RSS, sampled every 20 ms from /proc) of the
gathering process and of the largest worker, with the wall time:

- ``--mode file``: the rows written into a memory-mapped ``.npy`` as the view bank is (with the
  ``into`` hook; code without it gathers the array and saves it, as the bank's code did);
- ``--mode memory``: the rows gathered into one array (what the embedding's callers take).

Usage::

    .venv/bin/python benchmarks/bench_predict_memory.py --rows 20000 --mode file
    PYTHONPATH=OLD/src .venv/bin/python benchmarks/bench_predict_memory.py --rows 20000 --mode file
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Wide(nn.Module):
    """``width`` float32 outputs a row (each row's pixel sum, repeated): cheap, and as wide as a bank row."""

    def __init__(self, width: int):
        super().__init__()
        self.width = int(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1, keepdim=True).expand(-1, self.width).contiguous()


def child(args) -> dict:
    from morphospace.nets.predict import predict_rows

    work = Path(args.work)
    cube = np.load(work / "cube.npy", mmap_mode="r")
    width = args.row_kb * 1024 // 4
    kw = {"accelerator": "cpu", "devices": args.devices, "strategy": "ddp_spawn"}
    t0 = time.perf_counter()
    if args.mode == "memory":
        out = predict_rows(Wide(width), cube, 256, trainer_kwargs=kw, work_dir=work / "shares")
        check = out
    elif "into" in inspect.signature(predict_rows).parameters:
        from morphospace.run.pages import PageReleaser

        mm = np.lib.format.open_memmap(work / "out.npy", mode="w+", dtype=np.float32, shape=(len(cube), width))
        written = PageReleaser(mm)  # as the view bank's writer does

        def into(index, rows):
            mm[index] = rows
            written.read(rows.nbytes)

        predict_rows(Wide(width), cube, 256, trainer_kwargs=kw, work_dir=work / "shares", into=into)
        mm.flush()
        check = np.load(work / "out.npy", mmap_mode="r")
    else:  # code before the hook: the whole array, then saved
        out = predict_rows(Wide(width), cube, 256, trainer_kwargs=kw, work_dir=work / "shares")
        np.save(work / "out.npy", out)
        check = out
    seconds = time.perf_counter() - t0
    rows = np.sort(np.random.default_rng(1).choice(len(cube), min(len(cube), 200), replace=False))
    expected = np.asarray(cube[rows], dtype=np.float32).reshape(len(rows), -1).sum(1)  # a sample: reading
    np.testing.assert_allclose(check[rows], np.repeat(expected[:, None], width, 1), rtol=1e-3)  # all maps all
    return {"seconds": round(seconds, 1)}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def peaks(proc: subprocess.Popen) -> tuple[dict, threading.Thread]:
    """The peak RSS of ``proc`` and of its descendants, sampled until it ends."""
    peak = {"gathering_MB": 0.0, "largest_worker_MB": 0.0}

    def sample():
        while proc.poll() is None:
            peak["gathering_MB"] = max(peak["gathering_MB"], rss_mb(proc.pid))
            todo = children(proc.pid)
            while todo:
                pid = todo.pop()
                peak["largest_worker_MB"] = max(peak["largest_worker_MB"], rss_mb(pid))
                todo += children(pid)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return peak, thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--row-kb", type=int, default=77)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--mode", choices=("file", "memory"), default="file")
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.work:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as work:
        rng = np.random.default_rng(0)
        np.save(Path(work) / "cube.npy", rng.normal(size=(args.rows, 3, 8, 8)).astype(np.float16))
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--row-kb", str(args.row_kb),
               "--devices", str(args.devices), "--mode", args.mode, "--work", work]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak, thread = peaks(proc)
        out, err = proc.communicate()
        thread.join()
        if proc.returncode:
            sys.exit(err[-3000:])
        result = {**json.loads(out.strip().splitlines()[-1]), **{k: round(v) for k, v in peak.items()}}
    output_mb = args.rows * (args.row_kb * 1024 // 4) * 4 / 2**20
    print(json.dumps({"rows": args.rows, "row_kb": args.row_kb, "devices": args.devices, "mode": args.mode,
                      "output_MB": round(output_mb), **result}))


if __name__ == "__main__":
    from _entry import run

    run(main)
