"""`VaDE.fit` leaves the caller's process as it found it: Lightning's seed_everything reseeded numpy's,
Python's and torch's global generators to the estimator's seed (every np.random draw after a fit was
the same whatever the notebook had seeded), its Trainer left torch's deterministic-algorithms switch on
(CUDA ops without a deterministic kernel then raise in the user's own code) with PL_GLOBAL_SEED,
PL_SEED_WORKERS and CUBLAS_WORKSPACE_CONFIG in os.environ, and config={"train.num_threads": n} left
torch on n threads."""

import os
import random

import numpy as np
import torch

import morphospace as ms

ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")


def _blobs(n=24, size=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    widths = rng.uniform(1.5, 5, (n, 2))
    out = np.exp(-(xx / widths[:, :1, None]) ** 2 - (yy / widths[:, 1:, None]) ** 2)
    return (out + rng.normal(0, 0.02, out.shape))[:, None].astype(np.float32)


def test_a_fit_leaves_the_global_random_state_threads_and_switches_as_they_were():
    X = _blobs()
    threads = torch.get_num_threads()
    wanted = 1 if threads != 1 else 2
    env = {k: os.environ.get(k) for k in ENV}
    deterministic = torch.are_deterministic_algorithms_enabled()

    def draws():
        return np.random.rand(), random.random(), float(torch.rand(1))

    np.random.seed(123), random.seed(123), torch.manual_seed(123)
    expected = draws()
    np.random.seed(123), random.seed(123), torch.manual_seed(123)
    ms.VaDE(preset="default", n_components=2, latent_dim=4, epochs=2, pretrain_epochs=1, random_state=5,
            verbose=False, config={"train.batch_size": 12, "model.widths": [8, 16, 16, 16],
                                   "train.num_threads": wanted}).fit(X)
    assert draws() == expected  # the notebook's own streams go on where they were
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert {k: os.environ.get(k) for k in ENV} == env
    assert torch.get_num_threads() == threads


def test_the_gpus_generators_are_forked_where_cuda_is_up_and_cuda_is_not_started(monkeypatch):
    """seeded() forked the CPU generator alone: on a GPU the fit reseeded every device's generator and
    left it so. It forks each device's where CUDA is initialised, and starts no CUDA where it is not."""
    from contextlib import nullcontext

    from morphospace.nets import scoped

    seen = []

    def fork(devices=None, **kw):
        seen.append(list(devices))
        return nullcontext()

    monkeypatch.setattr(torch.random, "fork_rng", fork)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)  # seed_everything's GPU call
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with scoped.seeded(1):
        pass
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    with scoped.seeded(1):
        pass
    assert seen == [[0, 1], []]
