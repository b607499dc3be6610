"""The intervention test of a run's own clusters on a larger sample than the compare stage's.

:func:`morphospace.vade.invariance.invariance_audit` on ``--n`` galaxies of a trained and
embedded run (it writes the run's ``comparisons/invariance.csv``, as the compare stage does) and
prints the table with the time it took.

Usage::

    .venv/bin/morphospace run --data ../shared/data/sdss-gz1 --out RUN --quiet
    .venv/bin/python benchmarks/bench_invariance.py RUN --n 512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=512, help="galaxies in the sample")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from morphospace.run import RunDir
    from morphospace.vade.invariance import invariance_audit

    t0 = time.perf_counter()
    table = invariance_audit(RunDir(args.run), n=args.n, seed=args.seed)
    print(table.round(3).to_string(index=False))
    print(f"{time.perf_counter() - t0:.1f} s for {int(table['n'].iloc[0])} galaxies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
