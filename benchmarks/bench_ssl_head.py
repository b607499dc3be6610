"""The SSL head's training rate on a view bank: data alone and whole steps (issue 10, the GPU run).

On the H200 the default model's SSL head starved the GPU: each step read all 12 views of its
galaxies from the bank (15.7 MB a batch of 256 at 1,280 features) to train on 2. This measures,
on a random V x N x F bank written once as a memory-mapped ``.npy`` (page cache warm), the
loader's ms per batch alone and the fit's ms per step (Lightning, CPU, the run's
:func:`~morphospace.ssl.training._fit_head`), so the two reads can be compared on any machine
(run it on the code before and after a change).

Usage::

    .venv/bin/python benchmarks/bench_ssl_head.py --work /tmp/hb --n 20000 --epochs 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from morphospace.ssl.embedder import FormHead
from morphospace.ssl.training import SSLModule, ViewBankDataModule, _fit_head


def bank_file(work: Path, n: int, views: int, features: int) -> Path:
    """A random float32 (views, n, features) bank at ``work``, written once."""
    path = work / f"bank_{views}x{n}x{features}.npy"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(views, n, features))
        rng = np.random.default_rng(0)
        for s in range(0, n, 2000):
            mm[:, s:s + 2000] = rng.standard_normal((views, min(2000, n - s), features), dtype=np.float32)
        mm.flush()
        del mm
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="where the bank file goes (1.2 GB at the defaults)")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--views", type=int, default=12, help="8 dihedral + form.aug_views (4)")
    ap.add_argument("--features", type=int, default=1280, help="the trunk's (EfficientNet-Lite0: 1,280)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    bank = np.load(bank_file(args.work, args.n, args.views, args.features), mmap_mode="r")
    head = FormHead(args.features, dim=64)
    head.set_scaling(bank)
    t0, batches = time.perf_counter(), 0
    for _ in ViewBankDataModule(bank, args.batch, 0).train_dataloader():
        batches += 1
    data_ms = 1000 * (time.perf_counter() - t0) / batches
    module = SSLModule(head, epochs=args.epochs)
    t0 = time.perf_counter()
    _fit_head(module, ViewBankDataModule(bank, args.batch, 0), args.work / "ckpt", args.epochs, False,
              {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False})
    seconds = time.perf_counter() - t0
    steps = args.epochs * (args.n // args.batch)
    print(f"N = {args.n}, {args.views} views x {args.features} features: data alone {data_ms:.1f} ms a batch; "
          f"fit {1000 * seconds / steps:.1f} ms a step ({steps} steps, {seconds:.1f} s)")


if __name__ == "__main__":
    from _entry import run

    run(main)
