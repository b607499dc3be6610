"""A network over every row of a cube on one or many devices, the outputs in cube order.

:func:`predict_rows` is :func:`~morphospace.nets.batches.forward_in_batches` with Lightning's
``Trainer.predict`` underneath when more than one process shares the work (``devices`` x
``num_nodes`` > 1: several GPUs, several nodes under SLURM, or CPU processes talking over gloo)
or when the work runs on an accelerator (one GPU too), with ``loader_workers`` processes
reading the cube for each device.
Each process takes its share of the rows (Lightning's unrepeated distributed sampler), every batch
carries the indices of its rows, each process appends each batch to files of its own in a working
folder as it comes, and after a barrier every process reads all the shares back, a chunk at a time
from their memory maps, and puts the rows in cube order (or hands them to the caller's ``into``),
so the result is the same array on every process, and the same as on one process.
On a single CPU process it is the plain batched loop (no Trainer, no files).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..progress import quiet_lightning, with_bars
from ..run.pages import PageReleaser
from ..run import write_json
from .launched import ctrl_c_raised, with_job_signals
from .batches import INFERENCE_BATCH, forward_in_batches, loader_options, read_rows
from .spawn import spawned_workers

__all__ = ["predict_rows", "world_size", "uses_trainer", "barrier"]

# Bytes of the shares read at a time when they are gathered
GATHER_BYTES = 64 * 2**20


def world_size(trainer_kwargs: dict[str, Any] | None) -> int:
    """Processes a Trainer built from ``trainer_kwargs`` would run (``devices`` x ``num_nodes``; 1 for
    ``devices`` that are not a count, e.g. ``"auto"`` on a single CPU)."""
    kw = trainer_kwargs or {}
    devices = kw.get("devices", 1)
    count = len(devices) if isinstance(devices, (list, tuple)) else devices if isinstance(devices, int) else 1
    return max(1, int(count)) * max(1, int(kw.get("num_nodes", 1) or 1))


def accelerated(trainer_kwargs: dict[str, Any] | None) -> bool:
    """Whether a Trainer built from ``trainer_kwargs`` runs on an accelerator, not the CPU (``"auto"``:
    where CUDA is available)."""
    accelerator = str((trainer_kwargs or {}).get("accelerator") or "cpu").lower()
    return torch.cuda.is_available() if accelerator == "auto" else accelerator != "cpu"


def uses_trainer(trainer_kwargs: dict[str, Any] | None) -> bool:
    """Whether :func:`predict_rows` goes through Lightning: several processes, or any accelerator
    but the CPU (one GPU too: the plain loop would run the network on the CPU)."""
    return world_size(trainer_kwargs) > 1 or accelerated(trainer_kwargs)


class _IndexedRows(Dataset):
    """Row ``i`` as ``(i, x[i])`` or ``(i, x[i], extra[i])``, float32 tensors; at least ``length`` items,
    the first rows again beyond the last (Lightning's sampler gives every process one at least)."""

    def __init__(self, x, extra=None, length: int = 0):
        self.x, self.extra = x, extra
        self.pages = PageReleaser(x, extra)  # read once: pages need not stay resident
        self.length = max(len(x), length) if len(x) else 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        i = i % len(self.x)
        row = torch.from_numpy(np.array(self.x[i], dtype=np.float32))
        if self.extra is None:
            return i, row
        return i, row, torch.from_numpy(np.array(self.extra[i], dtype=np.float32))

    def __getitems__(self, index: list[int]) -> list:
        """A batch's rows in one read (the DataLoader's batched fetch); collated as usual."""
        index = [i % len(self.x) for i in index]
        rows = torch.from_numpy(read_rows(self.x, index, pages=self.pages))
        if self.extra is None:
            return list(zip(index, rows))
        return list(zip(index, rows, torch.from_numpy(read_rows(self.extra, index, pages=self.pages))))


class _Predictor(pl.LightningModule):
    """``net`` as a LightningModule whose predict step keeps each row's index with its output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def predict_step(self, batch, batch_idx):
        index, *inputs = batch
        out = self.net(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        return index.cpu().numpy(), tuple(o.detach().float().cpu().numpy() for o in outs), isinstance(out, tuple)


class _ShareWriter(BasePredictionWriter):
    """Appends each batch's rows (indices, then each output) to this process's files in ``folder``
    as the batch comes, and at the end ``rank<r>.json``, which says what the files hold: no process
    keeps its share in memory (a view bank is 77 kB a galaxy)."""

    def __init__(self, folder: Path):
        super().__init__(write_interval="batch")
        self.folder = folder
        self._files: list = []
        self._meta: dict = {}

    def _path(self, rank: int, name: str) -> Path:
        return self.folder / f"rank{rank}.{name}"

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        # made again here, where every process has joined the group: tasks started together (srun)
        # made it before the first cleared the model's folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path(trainer.global_rank, "json").unlink(missing_ok=True)  # a crashed run's account
        self._files = [open(self._path(trainer.global_rank, "index"), "wb")]
        self._meta = {"rows": 0, "outs": [], "is_tuple": False}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        index, outs, is_tuple = prediction
        if len(self._files) == 1:  # the first batch says how many outputs, of which shapes
            self._meta.update(is_tuple=bool(is_tuple),
                              outs=[{"dtype": o.dtype.str, "shape": list(o.shape[1:])} for o in outs])
            self._files += [open(self._path(trainer.global_rank, f"out{j}"), "wb") for j in range(len(outs))]
        for f, a in zip(self._files, (index.astype(np.int64), *outs)):
            f.write(np.ascontiguousarray(a).tobytes())
        self._meta["rows"] += len(index)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        for f in self._files:
            f.close()
        write_json(self._path(trainer.global_rank, "json"), self._meta)
        super().on_predict_epoch_end(trainer, pl_module)


def _shares(folder: Path, world: int):
    """Each process's share as (indices, outputs, is_tuple), memory-mapped from its files."""
    for r in range(world):
        meta = json.loads((folder / f"rank{r}.json").read_text())
        if not meta["rows"]:
            continue
        rows = meta["rows"]
        index = np.memmap(folder / f"rank{r}.index", dtype=np.int64, mode="r", shape=(rows,))
        outs = [np.memmap(folder / f"rank{r}.out{j}", dtype=np.dtype(o["dtype"]), mode="r", shape=(rows, *o["shape"]))
                for j, o in enumerate(meta["outs"])]
        yield index, outs, meta["is_tuple"]


def _gather(folder: Path, n: int, world: int, into: Callable | None = None):
    """Every process's rows, a chunk at a time, to ``into(index, *outputs)``, or else into arrays
    in cube order (returned). Raises if a row is missing."""
    seen = np.zeros(n, dtype=bool)
    full: list[np.ndarray] = []
    is_tuple = False
    for index, outs, is_tuple in _shares(folder, world):
        if into is None and not full:
            full = [np.empty((n, *o.shape[1:]), dtype=o.dtype) for o in outs]
        row_bytes = sum(o.dtype.itemsize * int(np.prod(o.shape[1:])) for o in outs)
        step = max(1, GATHER_BYTES // max(1, row_bytes))
        pages = PageReleaser(*outs)
        for s in range(0, len(index), step):
            i = np.asarray(index[s:s + step])
            chunk = [np.asarray(o[s:s + step]) for o in outs]
            if into is None:
                for f, c in zip(full, chunk):
                    f[i] = c
            else:
                into(i, *chunk)
            seen[i] = True
            pages.read(len(i) * row_bytes)
        del index, outs, pages
    if not seen.all():
        raise RuntimeError(f"distributed prediction lost {int((~seen).sum())} of {n} rows")
    if into is not None or not full:
        return None
    return tuple(full) if is_tuple else full[0]


def predict_rows(net: nn.Module, x, batch_size: int = INFERENCE_BATCH, *, extra=None, trainer_kwargs: dict | None = None,
                 work_dir: str | Path | None = None, desc: str = "", loader_workers: int = 0,
                 into: Callable[..., None] | None = None, first_only: bool = False):
    """``net`` over every row of ``x`` (and ``extra``), in batches, on one or many processes.

    Parameters
    ----------
    net : nn.Module
        Maps a float32 batch (and the matching batch of ``extra``) to a tensor or a tuple of
        tensors, one row out per row in. A module (not a closure): the processes of a spawned
        run receive it pickled.
    x : array-like (N, ...)
        An array, a memmap or a :class:`~morphospace.nets.batches.RowView`.
    batch_size : int
        Rows per batch, per process.
    extra : array-like (N, ...), optional
        A second input read alongside ``x``.
    trainer_kwargs : dict, optional
        ``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision`` as Lightning takes
        them. One process (the default) runs the plain batched loop.
    work_dir : path, optional
        Where the processes leave their shares (required with more than one process; removed
        after); must be on a file system every process sees.
    desc : str
        Progress bar label ("": none).
    loader_workers : int
        Processes reading ``x`` for each device (``train.loader_workers``), so that a GPU is
        not starved; 0 reads in the main process. Used on the Lightning path only.
    into : callable, optional
        ``into(index, *outputs)`` receives the rows, a chunk at a time and in no set order (their
        indices in ``x`` and each output's rows), on every process, instead of the rows being
        gathered into new arrays: to write them straight into a memory-mapped file. On the
        Lightning path it is first called once every process's share is on disk.
    first_only : bool
        Only the first process (global rank 0) reads the shares back; the others return None
        once it has (one writer for the file the rows go to). A spawning strategy gathers in
        the calling process, which counts as the first.

    Returns
    -------
    ndarray or tuple of ndarray or None
        Row ``i`` of each output is ``net``'s output for row ``i`` of ``x``, on every process
        (with ``first_only``, on the first); None with ``into``.
    """
    world = world_size(trainer_kwargs)
    if not uses_trainer(trainer_kwargs):
        return forward_in_batches(net.eval(), x, batch_size, desc=desc, extra=extra, into=into)
    if work_dir is None:
        raise ValueError("predict_rows through Lightning needs a work_dir that every process sees")
    folder = Path(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    kw = dict(logger=False, enable_progress_bar=bool(desc), enable_model_summary=False,
              enable_checkpointing=False, default_root_dir=str(folder), use_distributed_sampler=True)
    kw.update(trainer_kwargs or {})
    loader = DataLoader(_IndexedRows(x, extra, length=world), batch_size=batch_size, shuffle=False,
                        **loader_options(loader_workers, persistent=False))
    with quiet_lightning():
        trainer = pl.Trainer(**with_bars(with_job_signals(dict(kw, callbacks=[_ShareWriter(folder)]))))
        with spawned_workers(trainer), ctrl_c_raised():
            trainer.predict(_Predictor(net.eval()), dataloaders=loader, return_predictions=False)
    trainer.strategy.barrier("predict_rows")  # every share is on disk before anyone reads them
    out = _gather(folder, len(x), world, into) if trainer.global_rank == 0 or not first_only else None
    trainer.strategy.barrier("predict_rows_read")  # everyone has read them before rank 0 cleans up
    if trainer.global_rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def barrier() -> None:
    """Wait for every process of the distributed run this process belongs to (none: return at once).

    After :func:`predict_rows` through Lightning under ``srun`` or ``torchrun`` the processes
    stay in their process group, so that one of them can write a file that the others then read.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
