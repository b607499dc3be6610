"""The trunk-training regime's batches: two nuisance views of each image, made by the loader from
the batch's seed, the same whatever the number of loader processes (ssl/image_pairs.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphospace.ssl.augment import NuisanceAugment
from morphospace.ssl.image_pairs import BatchSeedSampler, ImagePairs


def _cube(n: int = 12, side: int = 16) -> np.ndarray:
    return np.random.default_rng(2).normal(0, 1, (n, 3, side, side)).astype(np.float32)


@pytest.mark.parametrize("light", [False, True])
def test_a_batch_holds_two_views_of_each_row_drawn_from_its_seed(light):
    cube, augment = _cube(), NuisanceAugment(light=light)
    pairs = ImagePairs(cube, augment)
    batch = pairs.__getitems__([(7, 99), (2, 99), (11, 99)])
    assert batch.shape == (3, 2, 3, 16, 16)
    g = torch.Generator().manual_seed(99)
    seeds = torch.randint(0, 2**62, (2,), generator=g).tolist()
    made = list(augment.views(torch.from_numpy(cube[[7, 2, 11]]), seeds))
    torch.testing.assert_close(batch[:, 0], made[0])
    torch.testing.assert_close(batch[:, 1], made[1])
    assert not torch.allclose(batch[:, 0], batch[:, 1])  # two different draws
    assert not torch.equal(pairs.__getitems__([(7, 98), (2, 98), (11, 98)]), batch)  # another seed, other views
    assert pairs[(7, 5)].shape == (2, 3, 16, 16)  # one row: a batch of one
    with pytest.raises(ValueError, match="one seed"):
        pairs.__getitems__([(0, 1), (1, 2)])


def test_the_sampler_gives_each_batch_one_seed_from_its_epoch_and_number():
    pairs = ImagePairs(_cube(10), NuisanceAugment())
    sampler = BatchSeedSampler(pairs, num_replicas=1, rank=0, shuffle=True, seed=3, batch_size=4)
    items = list(sampler)
    assert sorted(i for i, _ in items) == list(range(10))
    seeds = [s for _, s in items]
    assert len(set(seeds[:4])) == len(set(seeds[4:8])) == len(set(seeds[8:])) == 1  # a seed per batch
    assert len({seeds[0], seeds[4], seeds[8]}) == 3
    assert list(sampler) == items  # the same epoch: the same batches and seeds
    sampler.set_epoch(1)
    assert {s for _, s in sampler}.isdisjoint(seeds)
    other = BatchSeedSampler(pairs, num_replicas=2, rank=1, shuffle=True, seed=3, batch_size=4)
    assert {s for _, s in other}.isdisjoint(seeds)  # another process draws other views
    with pytest.raises(ValueError, match="batch_size"):
        BatchSeedSampler(pairs, num_replicas=1, rank=0, batch_size=0)


def test_a_trained_trunk_learns_the_same_with_loader_processes_and_resumes_exactly(tmp_path):
    from morphospace.ssl.embedder import FormHead, build_trunk
    from morphospace.ssl.training import SSLModule, ViewBankDataModule, _fit_head

    cube = _cube(16, 32)
    quiet = {"enable_progress_bar": False}

    def fit(name: str, max_epochs: int, workers: int = 0, resume: bool = False) -> dict:
        torch.manual_seed(0)
        trunk = build_trunk("small", 32, seed=0)
        head = FormHead(trunk.dim, dim=4, hidden=16)
        module = SSLModule(head, trunk.train(), epochs=2, proj_dim=8)  # the schedule of a 2-epoch fit
        data = ViewBankDataModule(cube, 8, seed=5, of="cube", workers=workers, augment=NuisanceAugment(light=True))
        _fit_head(module, data, tmp_path / name, max_epochs, resume, quiet)
        return {k: v.clone() for k, v in module.state_dict().items()}

    whole = fit("whole", 2)
    loaded = fit("loaded", 2, workers=2)
    fit("stopped", 1)
    resumed = fit("stopped", 2, resume=True)
    assert all(torch.equal(whole[k], loaded[k]) for k in whole)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    first = fit("one", 1)
    assert not all(torch.equal(whole[k], first[k]) for k in whole)  # the second epoch did train
