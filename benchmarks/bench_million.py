"""Reduce + cluster + compare + report on a 10^6-galaxy embedding: wall time and peak RSS per stage.

A fake run (``tests/report_fakerun.py``: small images of three forms at random angles, a
catalogue with a ``morphology`` label and the position angle) is written once with N
galaxies, then given what the embed stage would leave: a 64-d ``form`` embedding in which the
forms separate (with a little position-angle leak, like a real model) and its anomaly score;
the fake run's own maps, clusterings and comparisons are removed, so that each stage computes
its own. Every stage then runs as its own ``morphospace`` process under ``/usr/bin/time -v``
(its peak resident memory is its own), as ``morphospace run`` orders them after ``embed``.
The aim of issue #10: the four stages under 30 minutes and 8 GB at 10^6 galaxies on 2 cores.

Usage::

    .venv/bin/python benchmarks/bench_million.py                       # N = 10^6
    .venv/bin/python benchmarks/bench_million.py --n 20000 --work /tmp/m20k --keep
    .venv/bin/python benchmarks/bench_million.py --n 1000000 --work /tmp/m1m --keep --stages reduce

Say what else ran on the machine when you quote its times. Writes under --work (default: a
temporary folder), which it removes unless --keep (a kept run is reused by the next call).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scale import timed  # noqa: E402
from morphospace.analysis.labels import labels_in_cube_order  # noqa: E402
from morphospace.run import RunDir, write_npy  # noqa: E402
from report_fakerun import make_fake_run  # noqa: E402

STAGES = ["reduce", "cluster", "compare", "report"]
FORMS = ("elliptical", "spiral", "edge_on")


def make_run(path: Path, n: int, size: int, seed: int = 0) -> RunDir:
    """A fake run of ``n`` galaxies as the embed stage leaves it (see the module's docstring)."""
    t = time.perf_counter()
    run = make_fake_run(path, n=n, size=size, seed=seed, n_flagged=3, chunk=20000)
    morph = np.asarray(labels_in_cube_order(run, "morphology"), dtype=object)
    forms = np.array([FORMS.index(m) if m in FORMS else 0 for m in morph])
    pa = np.radians(run.read_catalogue().set_index("cube_index").loc[np.arange(n), "pa_deg"].to_numpy(float))
    rng = np.random.default_rng(seed + 1)
    centres = rng.normal(0, 1.5, (3, 64))
    form = np.empty((n, 64), np.float32)
    for start in range(0, n, 100_000):  # bounded memory while drawing
        s = slice(start, min(n, start + 100_000))
        form[s] = centres[forms[s]] + rng.normal(0, 1, (s.stop - s.start, 64))
        form[s, :2] += 0.3 * np.c_[np.cos(2 * pa[s]), np.sin(2 * pa[s])]
    write_npy(run.embedding_path("form"), form)
    for folder in ("reductions", "comparisons", "figures"):
        shutil.rmtree(run.path / folder, ignore_errors=True)
    for stale in (run.path / "clusterings").glob("kmeans*"):  # the model's own clustering (vade) stays
        stale.unlink()
    for stale in (run.path / "report.html", run.path / "report_files"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    print(f"fake run of {n:,} galaxies ({size} px) written in {time.perf_counter() - t:.0f} s: {path}", flush=True)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--size", type=int, default=16, help="side of the fake images (the cube is N x 3 x size^2)")
    p.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES)
    p.add_argument("--set", action="append", default=[], help="configuration override (repeatable)")
    p.add_argument("--work", help="working folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_million_"))
    path = work / f"run{args.n}"
    if not (path / "embeddings" / "form.npy").is_file():
        make_run(path, args.n, args.size)
    ms = str(Path(sys.executable).with_name("morphospace"))
    sets = [a for s in args.set for a in ("--set", s)]
    total_t, peak = 0.0, 0.0
    print(f"N = {args.n:,}; settings: {args.set or 'defaults'}")
    for stage in args.stages:
        wall, rss = timed([ms, stage, str(path), "--quiet", *sets])
        total_t, peak = total_t + wall, max(peak, rss)
        print(f"  {stage:<8} {wall:8.1f} s  {rss:7.0f} MB", flush=True)
    print(f"  {'total':<8} {total_t:8.1f} s  {peak:7.0f} MB (peak of any stage)")
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
