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


def test_a_batch_is_read_at_once_in_the_order_asked(tmp_path):
    from morphospace.nets.batches import RowView, read_rows

    np.save(tmp_path / "cube.npy", np.random.default_rng(1).normal(size=(20, 2, 3, 3)).astype(np.float32))
    cube = np.load(tmp_path / "cube.npy", mmap_mode="r")
    index = [7, 2, 19, 2, 0]  # unsorted, with a repeat
    np.testing.assert_array_equal(read_rows(cube, index), np.asarray(cube)[index])
    view = RowView(cube, np.arange(20)[::-1])
    np.testing.assert_array_equal(read_rows(view, index), np.asarray(cube)[::-1][index])
    half = np.load(tmp_path / "cube.npy").astype(np.float16)  # a float16 cube comes back as float32
    assert read_rows(half, index).dtype == np.float32


def test_batched_fetch_gives_the_rows_one_by_one_would(tmp_path):
    from torch.utils.data import default_collate

    from morphospace.ssl.training import _stacked, _ViewPairs
    from morphospace.vade.data import CubeDataset

    cube = np.random.default_rng(3).normal(size=(12, 2, 3, 3)).astype(np.float32)
    bank = np.random.default_rng(4).normal(size=(3, 12, 5)).astype(np.float32)
    index = [5, 1, 11, 1]
    pairs = [(5, 0, 2), (1, 2, 1), (11, 1, 0), (1, 0, 2)]  # (galaxy, view a, view b)
    # each with its loader's collate: the SSL loaders' batches come stacked and pass through
    for ds, collate, items in ((CubeDataset(cube), default_collate, index), (_ViewPairs(bank), _stacked, pairs)):
        batch = collate(ds.__getitems__(items))
        one_by_one = torch.stack([ds[i] for i in items])
        assert torch.equal(batch, one_by_one)
    np.testing.assert_array_equal(_ViewPairs(bank).__getitems__(pairs)[1], bank[[2, 1], 1])
    assert torch.equal(_stacked([torch.ones(2), torch.zeros(2)]), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
