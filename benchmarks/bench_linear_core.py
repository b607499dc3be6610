"""The linear core's fit (``fit_linear_core``: K by BIC over k_min..k_max, then the medoid of
``form.core_fits`` EM fits) on a trained run's form input, at its own size and resampled to
larger N, with the run's default settings: as shipped (EM on one BLAS thread) against EM on
every BLAS thread (the library's limit lifted for the call), alternating, in one process.

The core is CPU work on every machine, also where the trunk runs on a GPU: on the H200 machine
(16 cores) it took 13.5 s at 2,000 mock galaxies where this 2-core machine took about 5 s.
The rows beyond the run's own are its rows drawn with replacement plus N(0, 0.05) noise (the
form input is standardised), so the mixture has the survey's shape at any N.

Usage::

    .venv/bin/python benchmarks/bench_vade.py --out OUT --variants default --seeds 0 --no-peers
    .venv/bin/python benchmarks/bench_linear_core.py OUT/default_s0 --n 0 20000
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack, nullcontext
from unittest import mock
from pathlib import Path

import numpy as np
import threadpoolctl
from threadpoolctl import threadpool_info

from morphospace.vade import linear_core
from morphospace.vade.merge import ComponentMerger


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a trained form run (models/vade/form_input.npy)")
    ap.add_argument("--n", type=int, nargs="+", default=[0, 20000], help="galaxies (0: the run's own)")
    ap.add_argument("--fits", type=int, default=8)
    args = ap.parse_args()
    x = np.load(args.run / "models" / "vade" / "form_input.npy")
    blas = max((d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"), default=1)
    rng = np.random.default_rng(0)
    for n in args.n:
        xi = x if n in (0, len(x)) else x[rng.integers(0, len(x), n)] + rng.normal(0, 0.05, (n, x.shape[1])).astype(np.float32)
        for shipped in (True, False, True, False):
            with ExitStack() as stack:
                if not shipped:  # fit_linear_core imports the limit at call time: lifted here
                    stack.enter_context(mock.patch.object(threadpoolctl, "threadpool_limits", lambda *a, **k: nullcontext()))
                t0 = time.perf_counter()
                _, info = linear_core.fit_linear_core(xi, 16, 2, 12, 0, fits=args.fits, merger=ComponentMerger())
                seconds = time.perf_counter() - t0
            print(f"N = {len(xi)}: EM on {'1 BLAS thread (shipped)' if shipped else f'{blas} BLAS threads'}: "
                  f"{seconds:.1f} s (K = {info['n_components']})", flush=True)


if __name__ == "__main__":
    from _entry import run

    run(main)
