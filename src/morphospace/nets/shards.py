"""Training data for Lightning fits that may run on several processes: each trains on its own shard.

:class:`ShardedData` is the one DataModule of the form model's fits (the SSL head on a view bank
or a cube, the image decoder on codes and images): a seeded ``DistributedSampler`` gives every
process its shard, reshuffled every epoch (Lightning sets the epoch), the whole dataset on one.
"""

from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
from torch.utils.data import DataLoader, DistributedSampler

from .batches import loader_options

__all__ = ["ShardedData"]


class ShardedData(pl.LightningDataModule):
    """A training dataset, each process of a (distributed) fit on its own shard.

    Parameters
    ----------
    dataset : Dataset
    batch_size : int
        Per process.
    seed : int
        The sampler's shuffling seed.
    whole_batches : bool
        Drop a last incomplete batch, unless the shard is one batch or less: then that batch,
        not none (a shard under a batch would otherwise train on nothing).
    workers : int
        Loader processes (:func:`~morphospace.nets.batches.loader_options`).
    collate_fn : callable, optional
    sampler : type, optional
        A ``DistributedSampler`` subclass (the same arguments), e.g. one that yields what each
        item of a batch needs besides its index; ``DistributedSampler`` by default.
    """

    def __init__(self, dataset, batch_size: int, seed: int, *, whole_batches: bool = False, workers: int = 0,
                 collate_fn: Callable | None = None, sampler: Callable[..., DistributedSampler] = DistributedSampler):
        super().__init__()
        self.dataset, self.batch_size, self.seed = dataset, int(batch_size), int(seed)
        self.whole_batches, self.workers, self.collate_fn = bool(whole_batches), int(workers), collate_fn
        self.sampler = sampler

    def train_dataloader(self) -> DataLoader:
        """This process's shard (of the attached trainer's processes; the whole dataset unattached)."""
        t = self.trainer
        world, rank = (t.world_size, t.global_rank) if t is not None else (1, 0)
        sampler = self.sampler(self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                               drop_last=self.whole_batches)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate_fn,
                          drop_last=self.whole_batches and len(sampler) > self.batch_size,
                          **loader_options(self.workers))
