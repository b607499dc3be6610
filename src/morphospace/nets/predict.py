"""A network over every row of a cube on one or many devices, the outputs in cube order.

:func:`predict_rows` is :func:`~morphospace.nets.batches.forward_in_batches` with Lightning's
``Trainer.predict`` underneath when more than one process shares the work (``devices`` x
``num_nodes`` > 1: several GPUs, several nodes under SLURM, or CPU processes talking over gloo)
or when the work runs on an accelerator (one GPU too), with ``loader_workers`` processes
reading the cube for each device.
Each process takes its share of the rows (Lightning's unrepeated distributed sampler), every batch
carries the indices of its rows, each process writes its share to a file of its own in a working
folder, and after a barrier every process reads all the shares back and puts the rows in cube
order, so the result is the same array on every process, and the same as on one process.
On a single CPU process it is the plain batched loop (no Trainer, no files).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..progress import is_quiet, quiet_lightning
from ..run.pages import PageReleaser
from .batches import INFERENCE_BATCH, forward_in_batches, loader_options, read_rows

__all__ = ["predict_rows", "world_size", "uses_trainer"]


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


class _ShardWriter(BasePredictionWriter):
    """Writes this process's rows (indices and outputs) to ``folder/rank<r>.npz`` at the end."""

    def __init__(self, folder: Path):
        super().__init__(write_interval="epoch")
        self.folder = folder

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        arrays: dict[str, np.ndarray] = {}
        if predictions:
            arrays["index"] = np.concatenate([p[0] for p in predictions])
            for j in range(len(predictions[0][1])):
                arrays[f"out{j}"] = np.concatenate([p[1][j] for p in predictions])
            arrays["is_tuple"] = np.array(predictions[0][2])
        tmp = self.folder / f"rank{trainer.global_rank}.partial.npz"
        np.savez(tmp, **arrays)
        tmp.replace(self.folder / f"rank{trainer.global_rank}.npz")


def _gather(folder: Path, n: int, world: int):
    shards = [np.load(folder / f"rank{r}.npz") for r in range(world)]
    shards = [s for s in shards if "index" in s.files]
    if not shards:
        return None
    n_out = sum(1 for k in shards[0].files if k.startswith("out"))
    outs = []
    for j in range(n_out):
        first = shards[0][f"out{j}"]
        full = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        seen = np.zeros(n, dtype=bool)
        for s in shards:
            full[s["index"]] = s[f"out{j}"]
            seen[s["index"]] = True
        if not seen.all():
            raise RuntimeError(f"distributed prediction lost {int((~seen).sum())} of {n} rows")
        outs.append(full)
    return tuple(outs) if bool(shards[0]["is_tuple"]) else outs[0]


def predict_rows(net: nn.Module, x, batch_size: int = INFERENCE_BATCH, *, extra=None, trainer_kwargs: dict | None = None,
                 work_dir: str | Path | None = None, desc: str = "", loader_workers: int = 0):
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

    Returns
    -------
    ndarray or tuple of ndarray
        Row ``i`` of each output is ``net``'s output for row ``i`` of ``x``, on every process.
    """
    world = world_size(trainer_kwargs)
    if not uses_trainer(trainer_kwargs):
        return forward_in_batches(net.eval(), x, batch_size, desc=desc, extra=extra)
    if work_dir is None:
        raise ValueError("predict_rows through Lightning needs a work_dir that every process sees")
    folder = Path(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    kw = dict(logger=False, enable_progress_bar=bool(desc) and not is_quiet(), enable_model_summary=False,
              enable_checkpointing=False, default_root_dir=str(folder), use_distributed_sampler=True)
    kw.update(trainer_kwargs or {})
    trainer = pl.Trainer(callbacks=[_ShardWriter(folder)], **kw)
    loader = DataLoader(_IndexedRows(x, extra, length=world), batch_size=batch_size, shuffle=False,
                        **loader_options(loader_workers, persistent=False))
    with quiet_lightning():
        trainer.predict(_Predictor(net.eval()), dataloaders=loader, return_predictions=False)
    trainer.strategy.barrier("predict_rows")  # every share is on disk before anyone reads them
    out = _gather(folder, len(x), world)
    trainer.strategy.barrier("predict_rows_read")  # everyone has read them before rank 0 cleans up
    if trainer.global_rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
    return out
