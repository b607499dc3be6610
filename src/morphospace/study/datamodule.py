"""The fine-tuner's data: labelled cube rows in seeded batches, and their augmentation.

:class:`FineTuneData` serves labelled rows of a (memory-mapped) cube in seeded batches (the
last partial batch dropped: batch-norm statistics over one or two images are noise), the
validation rows in order, and the un-augmented images the batch-norm statistics are
re-estimated on; :func:`augment` turns and mirrors a training batch; :func:`rows` reads
rows of a memmap as a tensor.
"""

from __future__ import annotations

import math
from typing import Iterator

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader

from ..nets.batches import INFERENCE_BATCH

__all__ = ["augment", "rows", "FineTuneData"]


# --- augmentation and rows --------------------------------------------------------------------

def augment(x: torch.Tensor, generator: torch.Generator, max_angle: float = 15.0) -> torch.Tensor:
    """Random 90-degree rotations, mirror flips and small arbitrary rotations of a batch.

    A galaxy's class depends neither on its orientation nor on its handedness. The
    90-degree turns and flips are exact (no interpolation); the extra rotation of up to
    ``max_angle`` degrees is bilinear with reflected borders.

    Parameters
    ----------
    x : Tensor (N, C, H, W)
        Square images, on any device.
    generator : torch.Generator
        A CPU generator: the draws depend only on it, whatever the device of ``x``.
    max_angle : float
        Largest extra rotation in degrees (0: the dihedral transforms only).

    Returns
    -------
    Tensor (N, C, H, W)
    """
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), generator=generator)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_angle)
    out = torch.empty_like(x)
    for turns in range(4):
        sel = (k == turns).to(x.device)
        if sel.any():
            out[sel] = torch.rot90(x[sel], turns, dims=(2, 3))
    out = torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)
    if max_angle > 0:
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out


def rows(X, index: np.ndarray) -> torch.Tensor:
    """Rows ``index`` of an array or memmap as a float32 tensor, in the order asked.

    Parameters
    ----------
    X : array-like (N, ...)
        An array, a memmap or a :class:`~morphospace.nets.batches.RowView`.
    index : array of int
        Rows to read; they are read in sorted order (fastest on a memmap).

    Returns
    -------
    Tensor (len(index), ...)
    """
    index = np.asarray(index)
    order = np.argsort(index, kind="stable")
    block = np.asarray(X[index[order]], dtype=np.float32)
    out = np.empty_like(block)
    out[order] = block
    return torch.from_numpy(out)


class _LabelledRows:
    """Rows of X with their targets; indexed by an array of row numbers (a whole batch at once)."""

    def __init__(self, X, targets: np.ndarray):
        self.X, self.targets = X, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.asarray(index)
        return rows(self.X, index), torch.from_numpy(np.asarray(self.targets[index]))


# --- data ----------------------------------------------------------------------------------------

class FineTuneData(pl.LightningDataModule):
    """Labelled rows of a cube, split into training and validation batches.

    Parameters
    ----------
    X : array-like (N, C, H, W)
        The images (a memory-mapped cube is read batch by batch).
    targets : ndarray (N,) or (N, K)
        Class indices (int64) or vote fractions (float32), row for row with ``X``.
    train_index, val_index : ndarray of int
        Rows of ``X`` for training and for validation.
    batch_size : int
        Training batch size; a last partial batch is dropped (unless it is the only one).
    seed : int
        Seeds the batch order (a new permutation every epoch, the same ones every fit) and
        the choice of the images the batch-norm statistics are estimated on.
    bn_samples : int
        Training images per batch-norm re-estimation.
    eval_batch_size : int
        Batch size of the validation and batch-norm passes (no gradients).
    """

    def __init__(self, X, targets: np.ndarray, train_index: np.ndarray, val_index: np.ndarray, batch_size: int,
                 seed: int, bn_samples: int = 1024, eval_batch_size: int = INFERENCE_BATCH):
        super().__init__()
        self.dataset = _LabelledRows(X, targets)
        self.train_index = np.asarray(train_index)
        self.val_index = np.asarray(val_index)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.bn_samples = int(bn_samples)
        self.eval_batch_size = int(eval_batch_size)

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch.

        Returns
        -------
        int
            Full training batches, at least one.
        """
        return max(1, len(self.train_index) // self.batch_size)

    def _loader(self, batches) -> DataLoader:
        # batch_size=None: each item of ``batches`` is one whole batch of row numbers
        return DataLoader(self.dataset, sampler=batches, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; every epoch draws the next permutation of a seeded generator.

        Returns
        -------
        DataLoader
            ``(images, targets)`` batches.
        """
        drop_last = len(self.train_index) >= self.batch_size
        shuffled = _Take(self.train_index, EpochPermutations(len(self.train_index), self.seed))
        return self._loader(_EpochBatches(shuffled, self.batch_size, drop_last=drop_last))

    def val_dataloader(self) -> DataLoader:
        """The validation rows in order.

        Returns
        -------
        DataLoader
            ``(images, targets)`` batches of ``eval_batch_size``.
        """
        return self._loader(_chunks(self.val_index, self.eval_batch_size))

    def bn_dataloader(self, epoch: int) -> DataLoader:
        """Un-augmented training images for :func:`torch.optim.swa_utils.update_bn`.

        Parameters
        ----------
        epoch : int
            With the seed, picks the images (at most ``bn_samples``) of this epoch.

        Returns
        -------
        DataLoader
            ``(images, targets)`` batches in row order.
        """
        rng = np.random.default_rng([self.seed, int(epoch)])
        chosen = np.sort(rng.permutation(self.train_index)[:self.bn_samples])
        return self._loader(_chunks(chosen, self.eval_batch_size))


class EpochPermutations:
    """Row numbers ``0..n-1`` in the permutation of each epoch: the ``e``-th that a torch
    ``RandomSampler`` with a generator seeded ``seed`` draws, computed from the epoch alone, so that
    a resumed fine-tuning shuffles its next epoch as the uninterrupted one would have. Lightning
    calls :meth:`set_epoch` before each epoch; without it, each pass is the next epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), None
        self._next = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        epoch = self._next if self.epoch is None else self.epoch
        self._next = epoch + 1
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(epoch):  # RandomSampler draws two permutations an epoch (the second cut to none)
            torch.randperm(self.n, generator=gen)
            torch.randperm(self.n, generator=gen)
        return iter(torch.randperm(self.n, generator=gen).tolist())


class _EpochBatches(BatchSampler):
    """Batches of a sampler that Lightning tells the epoch (it calls the loader's sampler's ``set_epoch``)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


class _Take:
    """``values[i]`` for each ``i`` of a sampler (a sampler of row numbers)."""

    def __init__(self, values: np.ndarray, sampler):
        self.values, self.sampler = values, sampler

    def set_epoch(self, epoch: int) -> None:  # Lightning reaches the batch sampler's sampler only
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        return (int(self.values[i]) for i in self.sampler)


def _chunks(index: np.ndarray, size: int) -> list[np.ndarray]:
    return [index[s:s + size] for s in range(0, len(index), size)]
