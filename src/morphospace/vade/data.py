"""What the VaDE trains on: the rows of an .npy (a cube, or the form embedding) as a Lightning
DataModule with a seeded, rank-aware sampler, and the batch augmentations (flips, dihedral,
rotations) drawn from a per-step generator.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..image.geometry import rotate
from ..nets.batches import RowView, loader_options, read_rows
from ..run.pages import PageReleaser

__all__ = ["CubeDataset", "CubeDataModule", "augment"]


class CubeDataset:
    """Rows of the (memory-mapped) image cube as float32 tensors."""

    def __init__(self, cube: np.ndarray):
        self.cube = cube
        self.pages = PageReleaser.scattered(cube)  # shuffled epochs: pages need not stay resident

    def __len__(self) -> int:
        return len(self.cube)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.array(self.cube[i], dtype=np.float32))

    def __getitems__(self, index: list[int]) -> list:
        """A batch's rows in one read (the DataLoader's batched fetch); collated as usual."""
        return list(torch.from_numpy(read_rows(self.cube, index, pages=self.pages)))


class CubeDataModule(pl.LightningDataModule):
    """The run's cube; shuffled per epoch by a seeded sampler (sharded under DDP).

    Parameters
    ----------
    cube_path : Path
        ``cube.npy`` (memory-mapped).
    batch_size : int
        Per device.
    seed : int
        Of the data order (with the epoch).
    rows : array of int, optional
        Train on these rows of the cube only (a sample of a large survey); None: every row.
    workers : int
        Loader processes (``train.loader_workers``); 0: the main process reads.
    """

    def __init__(self, cube_path: Path, batch_size: int, seed: int, rows: np.ndarray | None = None,
                 workers: int = 0):
        super().__init__()
        self.workers = int(workers)
        self.cube_path = Path(cube_path)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rows = rows
        self.dataset: CubeDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Open the cube memory-mapped (once; later calls do nothing)."""
        if self.dataset is None:
            cube = np.load(self.cube_path, mmap_mode="r")
            self.dataset = CubeDataset(cube if self.rows is None else RowView(cube, self.rows))

    def train_dataloader(self):
        """Per-device batches in an order that depends only on ``(seed, epoch)``: a shuffling
        ``DistributedSampler`` even for one process, sharded by rank under DDP.
        """
        self.setup()
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        # DistributedSampler also for one process: its order depends only on (seed, epoch)
        sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                     drop_last=False)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, drop_last=False,
                          **loader_options(self.workers))

    def full_dataloader(self, batch: int = 256):
        """Every galaxy trained on once, in cube order."""
        self.setup()
        return DataLoader(self.dataset, batch_size=batch, shuffle=False, **loader_options(self.workers, persistent=False))


def augment(x, kind: str, generator):
    """Random flips / dihedral transforms / rotations (any angle) of a batch, from ``generator``."""
    if kind == "none":
        return x
    n = x.shape[0]

    def draw(p: float = 0.5):
        return (torch.rand(n, generator=generator) < p).to(x.device)[:, None, None, None]

    x = torch.where(draw(), x.flip(-1), x)
    x = torch.where(draw(), x.flip(-2), x)
    if kind == "dihedral":
        x = torch.where(draw(), x.transpose(-1, -2), x)
    elif kind == "rotate":
        angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi).to(x.device, x.dtype)
        x = rotate(x, angle)
    return x
