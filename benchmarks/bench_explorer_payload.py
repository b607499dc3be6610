"""What the explorer's sky positions, labels and search cost: payload bytes per galaxy and the neighbour search.

For a fake run (``tests/report_fakerun.py``) of N galaxies, with and without ``ra``/``dec`` in its
catalogue, it prints the size of the explorer's embedded JSON by part (the parts this feature added:
``sky``, the sky map, ``storageKey``), in bytes per galaxy, and the time of the explorer's
neighbour search (:func:`morphospace.report.neighbours.nearest_neighbours`, the approximate
index, faiss's inverted file; pynndescent's before) at N and at 20,000 galaxies, beside
scikit-learn's exact search for comparison, each timed twice (pynndescent's first build of a
process included numba's compilation).

Usage::

    .venv/bin/python benchmarks/bench_explorer_payload.py             # N = 3,359 (sdss-gz1's size)
    .venv/bin/python benchmarks/bench_explorer_payload.py --n 500     # a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from morphospace.report.collect import RunContents  # noqa: E402
from morphospace.report.explorer import explorer_payload  # noqa: E402
from morphospace.report.neighbours import nearest_neighbours  # noqa: E402
from morphospace.run import write_table  # noqa: E402
from report_fakerun import make_fake_run  # noqa: E402


def size(obj) -> int:
    return len(json.dumps(obj, separators=(",", ":")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3359)
    args = ap.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        run = make_fake_run(Path(tmp) / "run", n=n, size=16)
        c = RunContents(run)
        t = time.perf_counter()
        plain = explorer_payload(c, np.arange(c.n))
        t_plain = time.perf_counter() - t
        rng = np.random.default_rng(0)
        cat = run.read_catalogue()
        cat["ra"], cat["dec"] = rng.uniform(120, 240, len(cat)), rng.uniform(-5, 60, len(cat))
        write_table(run.catalogue, cat)
        c = RunContents(run)
        t = time.perf_counter()
        sky = explorer_payload(c, np.arange(c.n))
        t_sky = time.perf_counter() - t
    total_plain, total_sky = size(plain), size(sky)
    added_plain = size(plain["storageKey"]) + len('"storageKey":,"sky":null,"index":"approximate",')
    sky_map = next(m for m in sky["maps"] if m.get("kind") == "sky")
    print(f"explorer payload of {n:,} galaxies (JSON as embedded)")
    print(f"  without ra/dec: {total_plain:,} B = {total_plain / n:.1f} B/galaxy; added by this feature: "
          f"{added_plain} B in all ({added_plain / n:.3f} B/galaxy)")
    print(f"  with ra/dec:    {total_sky:,} B = {total_sky / n:.1f} B/galaxy")
    print(f"    sky (RA, Dec float64): {size(sky['sky']) / n:.1f} B/galaxy")
    print(f"    sky map (xy float32 + {len(sky_map['grid'])} graticule lines): {size(sky_map) / n:.1f} B/galaxy "
          f"({size(sky_map['grid'])} B of graticule)")
    print(f"  payload built in {t_plain:.1f} s (first, with numba's compilation) and {t_sky:.1f} s")

    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(1).normal(size=(20000, 16)).astype(np.float32)
    for rows in (n, 20000):
        t = time.perf_counter()
        nn = nearest_neighbours(X[:rows], k=8)
        t_index = time.perf_counter() - t
        t = time.perf_counter()
        _, exact = NearestNeighbors(n_neighbors=9).fit(X[:rows]).kneighbors(X[:rows])
        t_exact = time.perf_counter() - t
        recall = np.mean([len(set(a) & set(b[1:])) / 8 for a, b in zip(nn, exact)])
        print(f"  neighbours of {rows:,} galaxies (16-d, k=8): index {t_index:.2f} s, recall {recall:.3f} "
              f"against sklearn's exact search ({t_exact:.2f} s)")


if __name__ == "__main__":
    from _entry import run

    run(main)
