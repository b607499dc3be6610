"""How every stage of ``morphospace run`` grows with the number of galaxies: wall time and peak RSS.

For each N the built-in synthetic survey of N galaxies is rendered once (not timed with the run),
then every stage runs as its own ``morphospace`` process under ``/usr/bin/time -v`` (so its peak
resident memory is its own), in the order of ``morphospace run``. With two or more N the script
prints each stage's growth exponent between consecutive sizes, ``log(t2 / t1) / log(N2 / N1)``
(the aim for every stage but training: <= 1.15).

Usage::

    .venv/bin/python benchmarks/bench_scale.py --n 2000 20000          # default settings of `run`
    .venv/bin/python benchmarks/bench_scale.py --n 500 --quick         # smoke test: tiny schedule
    .venv/bin/python benchmarks/bench_scale.py --n 20000 --set train.epochs=12

Say what else ran on the machine when you quote its times. Writes under --work (default: a
temporary folder), which it removes unless --keep.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = ["ingest", "train", "embed", "reduce", "cluster", "compare", "report"]
QUICK = ["train.epochs=2", "train.pretrain_epochs=1", "form.ssl_epochs=2", "form.decoder_epochs=1",
         "form.aug_views=1", "form.input_size=64"]


def timed(cmd: list[str]) -> tuple[float, float]:
    """``(wall seconds, peak RSS in MB)`` of ``cmd`` run under ``/usr/bin/time -v``."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    h, m, s = wall.groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(rss.group(1)) / 1024


def bench_size(n: int, work: Path, settings: list[str], workers: int) -> dict[str, tuple[float, float]]:
    ms = str(Path(sys.executable).with_name("morphospace"))
    survey, run = work / f"synth{n}", work / f"run{n}"
    if not (survey / "catalogue.csv").is_file():
        subprocess.run([ms, "synth", "--n", str(n), "--seed", "0", "--out", str(survey), "--workers", str(workers),
                        "--quiet"], check=True)
    shutil.rmtree(run, ignore_errors=True)
    sets = [a for s in settings for a in ("--set", s)]
    out = {}
    for stage in STAGES:
        if stage == "ingest":
            cmd = [ms, "ingest", str(survey), "--out", str(run), "--workers", str(workers), "--quiet", *sets]
        else:
            cmd = [ms, stage, str(run), "--quiet", *sets]
        out[stage] = timed(cmd)
        print(f"  N={n:>8,} {stage:<8} {out[stage][0]:8.1f} s  {out[stage][1]:7.0f} MB", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[2000, 20000], help="survey sizes")
    p.add_argument("--set", action="append", default=[], help="configuration override (repeatable)")
    p.add_argument("--workers", type=int, default=2, help="ingest / masking / audit processes")
    p.add_argument("--quick", action="store_true", help="a tiny training schedule: check that the script runs")
    p.add_argument("--work", help="working folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    args = p.parse_args()
    settings = (QUICK if args.quick else []) + args.set
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"settings: {settings or 'defaults'}; workers {args.workers}; work {work}")
    results = {n: bench_size(n, work, settings, args.workers) for n in sorted(args.n)}
    sizes = sorted(results)
    print("\nstage      " + "".join(f"{f'N={n:,}':>22}" for n in sizes)
          + "".join(f"{f'exp {a:,}->{b:,}':>22}" for a, b in zip(sizes, sizes[1:])))
    for stage in STAGES + ["total"]:
        cells = []
        for n in sizes:
            t, rss = (sum(v[0] for v in results[n].values()), max(v[1] for v in results[n].values())) \
                if stage == "total" else results[n][stage]
            cells.append(f"{t:10.1f} s {rss:7.0f} MB")
        exps = []
        for a, b in zip(sizes, sizes[1:]):
            ta = sum(v[0] for v in results[a].values()) if stage == "total" else results[a][stage][0]
            tb = sum(v[0] for v in results[b].values()) if stage == "total" else results[b][stage][0]
            exps.append(f"{math.log(tb / ta) / math.log(b / a):22.2f}" if ta > 0 and tb > 0 else f"{'-':>22}")
        print(f"{stage:<11}" + "".join(f"{c:>22}" for c in cells) + "".join(exps))
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
