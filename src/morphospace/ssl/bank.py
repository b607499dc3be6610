"""The view bank: trunk features of every galaxy's dihedral and nuisance views (V x N x F).

The frozen-trunk regime of :mod:`morphospace.ssl.training` trains its head on this bank. Its
views come in blocks of :data:`BLOCK` rows: a nuisance view of a block depends only on
``(seed, view, first row of the block)``. The bank is therefore the same whether one process
walks the blocks in order on the CPU (:func:`view_bank`, the default) or Lightning shares them
among GPUs and nodes (``trainer_kwargs``: each block goes to one process whole). Through
Lightning the nuisance views are made where the block is read: in the loader's processes
(``loader_workers``), not in the step that runs the trunk. On the CPU (numpy and kornia on CPU
tensors) a view made on the galaxy's light costs about half a trunk pass (1.26 ms a view against
2.5 ms a trunk pass on 2 cores); made in the predict step, the 4 of a galaxy would take about four
times what a GPU needs for its 12 trunk passes, and the GPU would wait.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..image.geometry import dihedral
from ..nets.batches import INFERENCE_BATCH
from ..nets.predict import predict_rows, uses_trainer
from ..progress import progress
from ..run.pages import PageReleaser
from .augment import NuisanceAugment
from .embedder import TrunkTaps

__all__ = ["view_bank", "view_seed", "N_DIHEDRAL", "BLOCK"]

N_DIHEDRAL = 8
BLOCK = INFERENCE_BATCH  # rows per block of views (fixed: the nuisance views' seeds depend on it)
ROUNDS = 16  # through Lightning the blocks go in up to this many rounds, each noted for a resume,
ROUND_BLOCKS = 128  # of this many blocks at least (32,768 galaxies): a round costs a Trainer and its loaders


def view_seed(*parts: int) -> int:
    """A 62-bit seed from integers (``numpy.random.SeedSequence``)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _nuisance_views(x: torch.Tensor, start: int, aug_views: int, seed: int,
                    augment: NuisanceAugment) -> list[torch.Tensor]:
    """The ``aug_views`` nuisance views of rows ``start ...`` (the block ``x``): their draws depend
    only on ``(seed, view, start)``."""
    seeds = [view_seed(seed, v, start) for v in range(N_DIHEDRAL, N_DIHEDRAL + aug_views)]
    return list(augment.views(x, seeds))


def _features(trunk: TrunkTaps, x: torch.Tensor, nuisance) -> torch.Tensor:
    """(8 + len(nuisance), n, F) trunk features of the dihedral views of images ``x``, then of
    the nuisance views ``nuisance`` (made from them)."""
    return torch.stack([trunk(dihedral(x, v)) for v in range(N_DIHEDRAL)] + [trunk(view) for view in nuisance])


def _block_views(trunk: TrunkTaps, x: torch.Tensor, start: int, aug_views: int, seed: int,
                 augment: NuisanceAugment) -> torch.Tensor:
    """(8 + aug_views, n, F) trunk features of the views of rows ``start ...`` (the block ``x``)."""
    return _features(trunk, x, _nuisance_views(x, start, aug_views, seed, augment))


class _Blocks:
    """Item ``i`` is block ``first + i`` of a cube with its nuisance views: (1 + aug_views, block, C, H, W),
    the block's rows first, then each view of them, every one zero-padded to ``block`` rows; the
    blocks ``first`` to ``stop`` (all by default). Read by the loader's processes, which so make the
    views (module docstring)."""

    def __init__(self, cube, block: int, aug_views: int, seed: int, augment: NuisanceAugment,
                 first: int = 0, stop: int | None = None):
        self.cube, self.block = cube, int(block)
        self.aug_views, self.seed, self.augment = int(aug_views), int(seed), augment
        total = -(-len(cube) // self.block)
        self.first, self.stop = int(first), total if stop is None else min(int(stop), total)
        self.shape = (self.stop - self.first, 1 + self.aug_views, self.block, *cube.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i) -> np.ndarray:
        if np.ndim(i):  # several blocks (a batched fetch)
            return np.stack([self[int(j)] for j in i])
        start = (self.first + int(i)) * self.block
        rows = torch.from_numpy(np.asarray(self.cube[start:start + self.block], dtype=np.float32))
        out = np.zeros(self.shape[1:], dtype=np.float32)
        out[0, :len(rows)] = rows.numpy()
        with torch.no_grad():
            for v, view in enumerate(_nuisance_views(rows, start, self.aug_views, self.seed, self.augment), 1):
                out[v, :len(rows)] = view.numpy()
        return out


class _BlockViews(nn.Module):
    """Blocks with their nuisance views (b, 1 + aug_views, block, C, H, W; :class:`_Blocks`) of a
    cube of ``n`` rows and their indices (b, 1) -> (b, V, block, F) features, each block's views
    computed on its real rows only (as :func:`view_bank` does)."""

    def __init__(self, trunk: TrunkTaps, block: int, n: int):
        super().__init__()
        self.trunk, self.block, self.n = trunk, int(block), int(n)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        outs = []
        for xb, i in zip(x, index.long().flatten().tolist()):
            start = i * self.block
            rows = min(self.block, self.n - start)
            views = _features(self.trunk, xb[0, :rows], xb[1:, :rows])
            outs.append(torch.nn.functional.pad(views, (0, 0, 0, self.block - rows)))
        return torch.stack(outs)


@torch.no_grad()
def view_bank(trunk: TrunkTaps, cube, aug_views: int, seed: int, augment: NuisanceAugment = NuisanceAugment(),
              out: np.ndarray | Callable[[], np.ndarray] | None = None, trainer_kwargs: dict | None = None,
              work_dir: str | Path | None = None, loader_workers: int = 0, first_only: bool = False,
              first_block: int = 0, on_block: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Trunk features of every galaxy's 8 dihedral views, then ``aug_views`` nuisance views.

    Parameters
    ----------
    trunk : TrunkTaps
        Put in eval mode while the bank is computed.
    cube : array-like (N, C, H, W)
        An array, a memmap or a :class:`~morphospace.nets.batches.RowView`.
    aug_views : int
        Nuisance views per galaxy.
    seed : int
        The nuisance views' seed.
    augment : NuisanceAugment
    out : array (8 + aug_views, N, F) or callable, optional
        Filled and returned (e.g. a memmap); else a new array. A callable returning the array is
        called once the first features are ready (through Lightning: once every process has
        passed the shared prediction), e.g. to create a file only then.
    trainer_kwargs : dict, optional
        ``accelerator``, ``devices``, ``num_nodes``, ``strategy``: with any accelerator but the CPU,
        or several processes, the blocks go through Lightning (:func:`~morphospace.nets.predict.predict_rows`).
    work_dir : path, optional
        Where the processes leave their shares (required through Lightning).
    loader_workers : int
        Processes reading the cube for each device and making its nuisance views, through Lightning.
    first_only : bool
        Through Lightning, only the first process fills ``out`` (one writer); the others
        compute their share and return None.
    first_block : int
        The blocks of :data:`BLOCK` rows before it are in ``out`` already (a bank a killed
        training left): only the later ones are computed.
    on_block : callable, optional
        Called with the number of blocks done: on the CPU after each block; through Lightning,
        on the process that fills ``out``, after each of up to :data:`ROUNDS` rounds of at least
        :data:`ROUND_BLOCKS` blocks, whose shares are gathered into ``out`` at its end (without it,
        one round).

    Returns
    -------
    ndarray (8 + aug_views, N, F) float32, or None
        The head's output averaged over the first 8 is what
        :class:`~morphospace.ssl.embedder.FormEmbedder` computes from the images.
    """
    n = len(cube)
    v_total = N_DIHEDRAL + int(aug_views)
    if out is None:
        out = np.empty((v_total, n, trunk.dim), dtype=np.float32)
    was = trunk.training
    trunk.eval()
    try:
        if uses_trainer(trainer_kwargs):
            total = -(-n // BLOCK)
            # in rounds where blocks done are noted (on_block), so that a kill loses a round at most
            step = total if on_block is None else max(ROUND_BLOCKS, -(-total // ROUNDS))
            filled: dict = {}  # the bank and its page releaser, once the first rows come

            def place(item: np.ndarray, feats: np.ndarray) -> None:  # (b, V, BLOCK, F) -> (V, N, F)
                if not filled:
                    filled["bank"] = out() if callable(out) else out
                    filled["pages"] = PageReleaser(filled["bank"])  # a memory-mapped bank need not stay resident
                for i, f in zip(item, feats):  # an item counts from the round's first block
                    s = (first + int(i)) * BLOCK
                    filled["bank"][:, s:s + BLOCK] = f[:, :min(BLOCK, n - s)]
                filled["pages"].read(feats.nbytes)

            for first in range(int(first_block), total, step):
                stop = min(total, first + step)
                index = np.arange(first, stop, dtype=np.float32)[:, None]  # the predictor passes only inputs
                predict_rows(_BlockViews(trunk, BLOCK, n), _Blocks(cube, BLOCK, aug_views, seed, augment, first, stop),
                             batch_size=1, extra=index, trainer_kwargs=trainer_kwargs, work_dir=work_dir,
                             desc="form features", loader_workers=loader_workers, into=place, first_only=first_only)
                if on_block is not None and filled:  # the process that collected them
                    on_block(stop)
            return filled.get("bank")  # None on a process that did not collect
        if callable(out):
            out = out()
        starts = range(int(first_block) * BLOCK, n, BLOCK)
        pages = PageReleaser(cube, out)  # a memory-mapped cube and bank need not stay resident
        for s in progress(starts, total=-(-n // BLOCK), initial=int(first_block), desc="form features", unit="batch"):
            x = torch.from_numpy(np.array(cube[s:s + BLOCK], dtype=np.float32))
            views = _block_views(trunk, x, s, aug_views, seed, augment).numpy()
            out[:, s:s + len(x)] = views
            pages.read(x.numel() * 4 + views.nbytes)
            if on_block is not None:
                on_block(s // BLOCK + 1)
    finally:
        trunk.train(was)
    return out
