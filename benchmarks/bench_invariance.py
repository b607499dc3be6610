"""The intervention test of a run's own clusters on a larger sample than the compare stage's.

:func:`morphospace.vade.invariance.invariance_audit` on ``--n`` galaxies of a trained and
embedded run (it writes the run's ``comparisons/invariance.csv``, as the compare stage does) and
prints the table with the time it took. ``--latent-shift`` prints instead how far each change moves
the sample's galaxies in the model's latent space (the median distance between a galaxy's code
before and after), in units of the median distance from a galaxy to its nearest neighbour among the
run's galaxies: whether the representation moves, apart from where the clusters' boundaries lie.

Usage::

    .venv/bin/morphospace run --data ../shared/data/sdss-gz1 --out RUN --quiet
    .venv/bin/python benchmarks/bench_invariance.py RUN --n 512
    .venv/bin/python benchmarks/bench_invariance.py RUN --n 256 --latent-shift
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
    ap.add_argument("--latent-shift", action="store_true", help="how far each change moves the latent codes")
    args = ap.parse_args(argv)
    if args.latent_shift:
        return latent_shift(args.run, args.n, args.seed)
    from morphospace.run import RunDir
    from morphospace.vade.invariance import invariance_audit

    t0 = time.perf_counter()
    table = invariance_audit(RunDir(args.run), n=args.n, seed=args.seed)
    print(table.round(3).to_string(index=False))
    print(f"{time.perf_counter() - t0:.1f} s for {int(table['n'].iloc[0])} galaxies")
    return 0


def latent_shift(path: Path, n: int, seed: int) -> int:
    """Print each change's median move of the latent codes over the median nearest-neighbour distance."""
    import numpy as np
    import torch
    from sklearn.neighbors import NearestNeighbors

    from morphospace.data.sample import sample_rows
    from morphospace.run import RunDir
    from morphospace.vade.invariance import CHANGES, _spec_of, change_rows
    from morphospace.vade.io import load_vade, model_file
    from morphospace.vade.query import as_the_model_reads

    run = RunDir(path)
    model, hp, _ = load_vade(model_file(run))
    model.eval()
    cube = run.read_cube()
    drawn = sample_rows(len(cube), n, seed)
    images = np.asarray(cube[np.arange(len(cube)) if drawn is None else drawn], dtype=np.float32)

    def codes(rows: np.ndarray) -> np.ndarray:
        rows = as_the_model_reads(rows, hp)
        with torch.no_grad():
            return np.concatenate([model.encode_with_target(torch.from_numpy(np.ascontiguousarray(rows[s:s + 64])))[1].numpy()
                                   for s in range(0, len(rows), 64)])

    before = codes(images)
    distance, _ = NearestNeighbors(n_neighbors=2).fit(run.read_embedding("vade")).kneighbors(before)
    unit = float(np.median(distance[:, 1]))  # the sample's own codes are among the run's: the second nearest
    moves = {change: float(np.median(np.linalg.norm(codes(change_rows(images, change, _spec_of(run), seed=seed + 1 + i))
                                                    - before, axis=1))) / unit
             for i, change in enumerate(CHANGES)}
    print(f"{path}: median move over the median nearest-neighbour distance ({unit:.3f}), {len(images)} galaxies")
    print("  " + " | ".join(f"{change} {move:.2f}" for change, move in moves.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
