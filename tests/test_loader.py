"""Loader workers read the memory-mapped cube without changing what a network sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphospace.nets.batches import loader_options
from morphospace.vade.data import CubeDataModule


def test_loader_options():
    assert loader_options(0) == {"num_workers": 0, "pin_memory": torch.cuda.is_available()}
    opts = loader_options(3, persistent=False)
    assert opts["num_workers"] == 3 and opts["persistent_workers"] is False and opts["prefetch_factor"] > 1
    with pytest.raises(ValueError, match=">= 0"):
        loader_options(-1)


def batches(path, workers, rows=None):
    dm = CubeDataModule(path, batch_size=7, seed=3, rows=rows, workers=workers)
    dm.setup()
    return [b.numpy() for b in dm.train_dataloader()], [b.numpy() for b in dm.full_dataloader(batch=5)]


def test_workers_serve_the_batches_of_the_main_process(tmp_path):
    cube = np.random.default_rng(0).normal(size=(30, 2, 4, 4)).astype(np.float32)
    path = tmp_path / "cube.npy"
    np.save(path, cube)
    rows = np.array([3, 1, 4, 15, 9, 2, 6, 5, 28, 27, 11])
    for sel in (None, rows):
        train0, full0 = batches(path, 0, sel)
        train2, full2 = batches(path, 2, sel)
        assert len(train0) == len(train2) and len(full0) == len(full2)
        for a, b in zip(train0 + full0, train2 + full2):
            np.testing.assert_array_equal(a, b)
        seen = np.concatenate(full2)
        np.testing.assert_array_equal(seen, cube if sel is None else cube[sel])
