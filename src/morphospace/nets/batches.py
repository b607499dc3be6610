"""A network over an array: one forward pass in batches, without gradients.

Cubes are memory-mapped and may not fit in memory: :func:`forward_in_batches` reads
``batch_size`` rows at a time (as a writable float32 copy), runs a network, or any function
of a tensor, on them under ``torch.no_grad`` and stacks the outputs. Every "encode / embed /
extract the whole cube" of the toolkit goes through it. :func:`extract_features` is the
same for a feature network (eval mode, progress bar); :class:`RowView` selects rows of a
cube without copying it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..progress import progress
from ..run.pages import PageReleaser

__all__ = ["forward_in_batches", "extract_features", "RowView", "INFERENCE_BATCH", "loader_options", "read_rows"]

# Rows per batch of inference. Small on purpose: with 256 images a batch, a CNN's activation
# tensors (tens to hundreds of MB) exceed glibc's 32 MB ceiling for reusing freed heap memory,
# so every batch maps fresh pages and the kernel zeroes them (page faults, system time). On the
# frozen EfficientNet-Lite0 trunk at 112 px, 512 galaxies x 8 views on one thread: batch 256
# took 29.5 s of CPU (15.8 s of it system time, 9.0 M page faults, peak RSS 1,139 MB), batch 32
# 13-16 s (0.1-3 s system, <= 1.8 M faults, 591 MB).
INFERENCE_BATCH = 32


def loader_options(workers: int, persistent: bool = True) -> dict:
    """Keyword arguments of a ``DataLoader`` that reads a cube with ``workers`` processes.

    Parameters
    ----------
    workers : int
        0: the main process reads (right on a CPU, whose cores are busy computing); on a GPU,
        a few workers keep it fed (``benchmarks/bench_loader.py`` measures images/s).
    persistent : bool
        Keep the workers between epochs (a training loader).

    Returns
    -------
    dict
        ``num_workers``, ``pin_memory`` (when CUDA is available) and, with workers,
        ``persistent_workers`` and ``prefetch_factor``.
    """
    workers = int(workers)
    if workers < 0:
        raise ValueError(f"loader workers must be >= 0, got {workers}")
    opts: dict = {"num_workers": workers, "pin_memory": torch.cuda.is_available()}
    if workers > 0:
        opts.update(persistent_workers=persistent, prefetch_factor=4)
    return opts


def read_rows(x, index, pages: PageReleaser | None = None) -> np.ndarray:
    """Rows ``index`` of ``x`` as one float32 array, read with one fancy index.

    A DataLoader's batch read this way (its dataset's ``__getitems__``) costs one pass over a
    memory-mapped file instead of one Python call and one small copy per row: the rows are read
    in file order and put back in the order asked for.

    Parameters
    ----------
    x : array-like
        An array, a memmap or a :class:`RowView`.
    index : sequence of int
        The rows, in the order wanted (repeats allowed).
    pages : PageReleaser, optional
        Told of the bytes read, so that a memory-mapped ``x`` read epoch after epoch does not
        stay resident (:meth:`PageReleaser.scattered`).

    Returns
    -------
    ndarray float32
        ``x[index]``.
    """
    index = np.asarray(index, dtype=np.int64)
    order = np.argsort(index, kind="stable")
    rows = x[index[order]]
    out = np.empty((len(index), *rows.shape[1:]), dtype=np.float32)
    out[order] = rows  # back to the order asked for (float32, from a float16 cube too)
    if pages is not None:
        pages.read(rows.nbytes)  # the bytes of the file, whatever its dtype
    return out


def _rows(x, s: int, batch_size: int) -> torch.Tensor:
    return torch.from_numpy(np.array(x[s:s + batch_size], dtype=np.float32))  # a copy: memmaps are read-only


@torch.no_grad()
def forward_in_batches(fn: Callable, x, batch_size: int = INFERENCE_BATCH, desc: str = "", extra=None,
                       prepare: Callable | None = None, into: Callable | None = None):
    """``fn`` over the rows of ``x``, ``batch_size`` at a time; the outputs concatenated.

    Parameters
    ----------
    fn : callable
        Maps a float32 tensor ``(n, ...)`` to a tensor ``(n, ...)`` or a tuple of them; with
        ``extra``, it takes the two batches.
    x : array-like (N, ...)
        Anything with ``len`` and row slicing: an array, a memmap, a :class:`RowView`.
    batch_size : int
    desc : str
        Label of a progress bar ("": no bar).
    extra : array-like (N, ...), optional
        A second array read alongside ``x``, row for row.
    prepare : callable, optional
        Maps a batch's rows of ``x`` as read (e.g. float16 rows of a memory-mapped cube) to the
        float32 array ``fn`` takes, e.g. the neighbour masking a model was trained with.
    into : callable, optional
        ``into(index, *outputs)`` receives each batch (its row indices and each output's rows)
        instead of the outputs being concatenated; e.g. to write them into a memory-mapped file.

    Returns
    -------
    ndarray, tuple of ndarray, or None
        A tuple when ``fn`` returns one; None when ``x`` has no rows, or with ``into``.
    """
    starts = range(0, len(x), batch_size)
    batches = progress(starts, total=len(starts), desc=desc, unit="batch") if desc else starts
    outs = []
    pages = PageReleaser(x, extra)  # a memory-mapped cube is read once: its pages need not stay resident
    for s in batches:
        # what prepare gives back may be the memory map's own read-only rows (nothing to change): copied then
        xb = _rows(x, s, batch_size) if prepare is None else torch.from_numpy(
            np.require(prepare(x[s:s + batch_size]), dtype=np.float32, requirements="W"))
        eb = None if extra is None else _rows(extra, s, batch_size)
        pages.read(xb.nbytes + (0 if eb is None else eb.nbytes))
        y = fn(xb) if eb is None else fn(xb, eb)
        y = tuple(t.numpy() for t in y) if isinstance(y, tuple) else y.numpy()
        if into is None:
            outs.append(y)
        else:
            into(np.arange(s, s + len(xb)), *(y if isinstance(y, tuple) else (y,)))
    if not outs:
        return None
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate([o[i] for o in outs]) for i in range(len(outs[0])))
    return np.concatenate(outs)


def extract_features(module: nn.Module, cube, batch_size: int = INFERENCE_BATCH, desc: str = "features") -> np.ndarray:
    """Run ``module`` (in eval mode) over every row of ``cube`` in batches; returns ``(N, D)`` float32.

    Parameters
    ----------
    module : nn.Module
        Maps ``n x C x H x W`` float tensors to ``n x D`` (a :class:`~morphospace.nets.backbones.FeatureNet`).
    cube : array (N, C, H, W)
        Read ``batch_size`` rows at a time, so a memory-mapped cube never sits in memory whole.
    batch_size : int
    desc : str
        Label of the progress bar.

    Returns
    -------
    ndarray (N, D) float32

    Raises
    ------
    UserError
        The cube has no rows.
    """
    was_training = module.training
    module.eval()
    try:
        out = forward_in_batches(module, cube, batch_size, desc=desc)
    finally:
        module.train(was_training)
    if out is None:
        raise UserError("the cube is empty: no images to extract features from")
    return out.astype(np.float32, copy=False)


class RowView:
    """Rows ``rows`` of a (memory-mapped) cube, indexable like an array without copying it.

    Parameters
    ----------
    cube : array-like (N, ...)
        An array or memmap.
    rows : array of int
        The rows of ``cube`` the view shows, in this order.

    Attributes
    ----------
    shape : tuple
        ``(len(rows),) + cube.shape[1:]``.
    dtype : numpy dtype
        The cube's.
    """

    def __init__(self, cube, rows: np.ndarray):
        self.cube = cube
        self.rows = np.asarray(rows)
        self.shape = (len(self.rows),) + tuple(cube.shape[1:])
        self.dtype = cube.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.cube[self.rows[index]]
