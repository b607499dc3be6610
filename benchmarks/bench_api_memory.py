"""Peak memory of the notebook API on a memory-mapped cube: it must not grow with N.

Writes a fake float16 cube of ``--n`` galaxies (random pixels, the shape of a trained run's
model) under ``--work``, then, each in a fresh child process, sampling its resident memory
(RSS) every 20 ms from /proc:

- ``transform``: ``ms.VaDE.load(RUN/models/vade/model.pt).transform(cube)`` (the encoder over
  every row of the memory-mapped cube);
- ``fit``: ``ms.VaDE(preset="default", epochs=2, pretrain_epochs=1).fit(cube)`` (the pixel
  VaDE, a short schedule, trained on a sample of ``--fit-sample`` galaxies, default 1,000, as
  ``train.sample`` does at scale; every galaxy's neighbours masked and every galaxy encoded).

Prints the peak RSS of each, its growth over the child's RSS after the imports, and the
cube's size in memory as float32 (what a full in-memory copy would cost).

Usage::

    .venv/bin/python benchmarks/bench_api_memory.py --run RUN --n 20000 --work /tmp/apimem
    .venv/bin/python benchmarks/bench_api_memory.py --run RUN --n 20000 --only transform
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CHILD = {
    "transform": """
import sys, numpy as np, morphospace as ms
from morphospace.api import VaDE
print("ready", flush=True); sys.stdin.readline()
cube = np.load(sys.argv[1], mmap_mode="r")
z = VaDE.load(sys.argv[2]).transform(cube)
print("done", z.shape, flush=True)
""",
    "fit": """
import sys, numpy as np, morphospace as ms
print("ready", flush=True); sys.stdin.readline()
cube = np.load(sys.argv[1], mmap_mode="r")
m = ms.VaDE(preset="default", n_components=3, epochs=2, pretrain_epochs=1, batch_size=256,
            config={"train.sample": int(sys.argv[3])}, random_state=0).fit(cube)
print("done", m.latent_.shape, flush=True)
""",
}


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(what: str, cube: Path, model: Path, fit_sample: int) -> tuple[int, int, float]:
    """(RSS after the imports, peak RSS, seconds) of one child, in kB."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD[what], str(cube), str(model), str(fit_sample)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    base = rss_kb(proc.pid)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(proc.pid))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out = proc.stdout.read()
    proc.wait()
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    if proc.returncode != 0 or "done" not in out:
        raise SystemExit(f"{what} failed (rc {proc.returncode})")
    return base, peak[0], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a trained run: its model's image shape and model.pt")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--fit-sample", type=int, default=1000, help="galaxies `fit` trains on (train.sample)")
    ap.add_argument("--work", default="/tmp/morphospace_bench_api_memory")
    ap.add_argument("--only", choices=sorted(CHILD), nargs="*", default=sorted(CHILD, reverse=True))
    args = ap.parse_args()
    model = Path(args.run) / "models" / "vade" / "model.pt"
    shape = np.load(Path(args.run) / "cube.npy", mmap_mode="r").shape[1:]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cube = work / f"cube_{args.n}.npy"
    if not cube.is_file():
        out = np.lib.format.open_memmap(cube, mode="w+", dtype=np.float16, shape=(args.n, *shape))
        rng = np.random.default_rng(0)
        for s in range(0, args.n, 2048):
            out[s:s + 2048] = rng.normal(0, 1, size=(min(2048, args.n - s), *shape)).astype(np.float16)
        out.flush()
        del out
    as_float32 = args.n * int(np.prod(shape)) * 4 / 2**20
    print(f"cube: {args.n} x {' x '.join(map(str, shape))} float16 ({as_float32:.0f} MB as float32)")
    for what in args.only:
        base, peak, seconds = measure(what, cube, model, args.fit_sample)
        print(f"{what:10s} peak RSS {peak / 1024:7.0f} MB  (+{(peak - base) / 1024:6.0f} MB over the imports)  "
              f"{seconds:6.1f} s")


if __name__ == "__main__":
    from _entry import run

    run(main)
