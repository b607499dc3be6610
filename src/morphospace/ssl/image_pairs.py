"""The trunk-training regime's data: images with two nuisance views of each, made by the loader.

When the trunk trains (``form.train_trunk``, a GPU's regime) every step needs two fresh nuisance
views of each galaxy of its batch. Made in the training step, by numpy and kornia on the CPU,
they would keep a GPU waiting: a view made on the galaxy's light costs 1.26 ms of 2 CPU cores,
so a batch of 256 galaxies about 0.65 s, many times what a GPU takes for the trunk's forward
and backward passes of its 512 views. Here the loader's processes (``train.loader_workers``)
make them as they read the batch, while the GPU trains on the batch before.

The views of a batch are drawn from one seed, that of ``(seed, epoch, batch number, rank)``
(:class:`BatchSeedSampler` hands it to every row of the batch): the same batches and the same
views whatever the number of loader processes, and a fit resumed at an epoch's end draws what
the whole fit would have.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from ..nets.batches import read_rows
from ..run.pages import PageReleaser
from .augment import NuisanceAugment
from .bank import view_seed

__all__ = ["ImagePairs", "BatchSeedSampler"]


class ImagePairs:
    """Two nuisance views of rows of a cube: item ``(i, s)`` is row ``i`` in a batch whose views
    are drawn from seed ``s``; a batch's items, fetched together, give (B, 2, C, H, W).

    Parameters
    ----------
    cube : array-like (N, C, H, W)
        An array, a memmap or a :class:`~morphospace.nets.batches.RowView`.
    augment : NuisanceAugment
        Draws the views.
    """

    def __init__(self, cube, augment: NuisanceAugment):
        self.cube, self.augment = cube, augment
        self.pages = PageReleaser.scattered(cube)  # read every epoch, shuffled: need not stay resident

    def __len__(self) -> int:
        return len(self.cube)

    def __getitem__(self, item) -> torch.Tensor:
        """Row ``i`` as a batch of one: (2, C, H, W)."""
        return self.__getitems__([item])[0]

    def __getitems__(self, items: list) -> torch.Tensor:
        """A batch's rows read at once and two views of each drawn from the batch's seed."""
        index, seeds = zip(*((int(i), int(s)) for i, s in items))
        if len(set(seeds)) != 1:
            raise ValueError(f"one batch, one seed of its views: got {len(set(seeds))}")
        images = torch.from_numpy(read_rows(self.cube, list(index), pages=self.pages))
        g = torch.Generator().manual_seed(seeds[0])
        first_seed, second_seed = torch.randint(0, 2**62, (2,), generator=g).tolist()
        with torch.no_grad():  # the rows' light is measured once for both views
            first, second = self.augment.views(images, (first_seed, second_seed))
        return torch.stack([first, second], 1)


class BatchSeedSampler(DistributedSampler):
    """A ``DistributedSampler`` of an :class:`ImagePairs` that yields ``(row, seed of its batch)``,
    the seed drawn from ``(seed, epoch, batch number, rank)`` for batches of ``batch_size``
    consecutive rows (as the ``DataLoader`` groups them)."""

    def __init__(self, *args, batch_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def __iter__(self):
        index = list(super().__iter__())
        seeds = [view_seed(self.seed, self.epoch, b, self.rank) for b in range(-(-len(index) // self.batch_size))]
        return iter((i, seeds[k // self.batch_size]) for k, i in enumerate(index))
