"""torch's process-wide state set for a block and put back after it: the CPU thread count, and
every global random state with Lightning's seed (an estimator's fit leaves the caller's as it was)."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Iterator

import lightning.pytorch as pl
import numpy as np
import torch

__all__ = ["seeded", "torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``n`` for a block, then restored.

    Parameters
    ----------
    n : int or None
        Threads; None or 0 leaves the count as it is.
    """
    n = int(n) if n else 0
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0:
            torch.set_num_threads(before)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """:func:`lightning.pytorch.seed_everything` for a block; every global random state, the
    deterministic-algorithms switch and the variables Lightning sets are restored afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    deterministic = torch.are_deterministic_algorithms_enabled()
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")}
    # the GPUs' generators too where CUDA is up (forking them would start CUDA in a process that
    # has not: a DDP launcher forks its workers before they touch the GPU)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            pl.seed_everything(int(seed), workers=True, verbose=False)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.use_deterministic_algorithms(deterministic)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
