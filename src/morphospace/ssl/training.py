"""Self-supervised training of the form embedding, with Lightning.

Two regimes, one :class:`SSLModule`:

``frozen trunk`` (the default, and what a CPU affords)
    Every galaxy is put through the trunk once per *view*: its eight dihedral views and
    ``aug_views`` random nuisance views (:class:`~morphospace.ssl.augment.NuisanceAugment`).
    That *view bank* (V x N x F) is the training set: each step reads two different views of
    each galaxy in the batch and trains the head (and its projector) to match them. An epoch
    costs milliseconds, so the head sees hundreds of view pairs per galaxy for the price of
    V trunk passes.
``train_trunk``
    The trunk is trained too, on views drawn afresh every step from the images (two
    augmentations per galaxy, made by the loader's processes: :mod:`~morphospace.ssl.image_pairs`),
    at ``trunk_lr_scale`` of the head's learning rate: in-domain
    adaptation of the ImageNet weights, or a ``small`` CNN from scratch. Needs a GPU for
    surveys of any size (10^5 galaxies); on two CPU cores it is a smoke test (and on 3,359
    galaxies adaptation lowers every score: docs/measurements/form-first.md).

The objective is NT-Xent (SimCLR) at temperature ``form.temperature`` or VICReg
(:mod:`morphospace.ssl.losses`). All randomness of a step comes from the seed, the epoch (the
shuffle, the bank's view pairs), the batch's number in its epoch (the image regime's
augmentations) and the rank, so ``--resume`` continues a killed run exactly.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DistributedSampler, default_collate

from ..nets.batches import forward_in_batches
from ..nets.checkpoints import resumed_from
from ..nets.launched import ctrl_c_raised, fit_kwargs
from ..nets.loss_logs import loss_loggers
from ..nets.predict import accelerated, world_size
from ..nets.shards import ShardedData
from ..nets.spawn import spawned_workers
from ..progress import quiet_lightning, with_bars
from ..run import launched_as_later_rank
from ..run.writes import read_cached_npy
from ..run.pages import PageReleaser
from .augment import NuisanceAugment
from .bank import N_DIHEDRAL, view_bank, view_seed
from .bank_file import discard_left, filled_bank
from .image_pairs import BatchSeedSampler, ImagePairs
from .embedder import FormEmbedder, FormHead, HeadEnsemble, TrunkTaps
from .losses import LOSSES, global_batch

__all__ = ["view_bank", "SSLModule", "ViewBankDataModule", "fit_embedder", "head_folder", "head_seed", "N_DIHEDRAL"]

log = logging.getLogger("morphospace")
CKPT_LOSS = "morphospace_ssl_loss"  # the last epoch's loss, in every checkpoint of an SSL head


class _ViewPairs:
    """Two views of a galaxy from a (V, N, F) view bank: item ``(i, a, b)`` is rows ``a`` and ``b``
    of galaxy ``i``, a (2, F) tensor. :class:`ViewPairSampler` draws the pairs."""

    def __init__(self, bank: np.ndarray):
        self.bank = bank
        self.views = bank.shape[0]
        self.pages = PageReleaser.scattered(bank)

    def __len__(self) -> int:
        return self.bank.shape[1]

    def __getitem__(self, item) -> torch.Tensor:
        i, a, b = item
        return torch.from_numpy(np.array(self.bank[[a, b], i], dtype=np.float32))

    def __getitems__(self, items: list) -> torch.Tensor:
        """A batch's pairs (B, 2, F) read with one gather: only the two views a step uses, not all V
        (a sixth of the bytes with the default 12 views; reading every view was half of a CPU
        step's time, and the loader's whole cost on a GPU)."""
        i, a, b = np.asarray(items, dtype=np.int64).T
        pairs = np.asarray(self.bank[np.stack([a, b], 1), i[:, None]], dtype=np.float32)
        self.pages.read(pairs.nbytes)
        return torch.from_numpy(pairs)


class ViewPairSampler(DistributedSampler):
    """A ``DistributedSampler`` of a :class:`_ViewPairs` that yields ``(galaxy, view a, view b)``:
    two different views, uniform over the ordered pairs, drawn from ``(seed, epoch, rank)`` (so
    a fit resumed at an epoch's end draws what the whole fit would have)."""

    def __iter__(self):
        index = list(super().__iter__())
        rng = np.random.default_rng(view_seed(self.seed, self.epoch, self.rank))
        v = self.dataset.views
        a = rng.integers(0, v, len(index))
        b = (a + rng.integers(1, v, len(index))) % v
        return iter(zip(index, a.tolist(), b.tolist()))


def _stacked(batch):
    """The loader's collate: a batch read whole by ``__getitems__`` is passed on as it is
    (stacking its rows again would copy the batch once more); rows fetched one at a time are
    stacked as usual."""
    return batch if isinstance(batch, torch.Tensor) else default_collate(batch)


class ViewBankDataModule(ShardedData):
    """Pairs of views of the galaxies of a V x N x F view bank (``of="bank"``: (B, 2, F) batches) or
    two nuisance views, drawn by ``augment``, of the images of a cube (``of="cube"``, for a trunk
    that trains: (B, 2, C, H, W) batches, :class:`~morphospace.ssl.image_pairs.ImagePairs`), each
    process on its shard, in whole batches (a batch of one has no negatives and no batch
    statistics), or one short batch where the shard is no larger."""

    def __init__(self, data: np.ndarray, batch_size: int, seed: int, of: str = "bank", workers: int = 0,
                 augment: NuisanceAugment = NuisanceAugment()):
        if of not in ("bank", "cube"):
            raise ValueError(f"of must be 'bank' or 'cube', got {of!r}")
        if of == "bank":
            super().__init__(_ViewPairs(data), batch_size, seed, whole_batches=True, workers=workers,
                             collate_fn=_stacked, sampler=ViewPairSampler)
        else:
            super().__init__(ImagePairs(data, augment), batch_size, seed, whole_batches=True, workers=workers,
                             collate_fn=_stacked, sampler=partial(BatchSeedSampler, batch_size=batch_size))


class SSLModule(pl.LightningModule):
    """The form head (and, with ``train_trunk``, the trunk) trained on pairs of views.

    Parameters
    ----------
    head : FormHead
    trunk : TrunkTaps, optional
        Needed only with ``train_trunk`` (batches are then images).
    loss : {"nt_xent", "vicreg"}
    temperature : float
        NT-Xent's temperature.
    lr, weight_decay : float
        AdamW, cosine-decayed over ``epochs``.
    epochs : int
    proj_dim : int
        Width of the projector the loss is computed on (discarded after training).
    trunk_lr_scale : float
        The trunk's learning rate as a fraction of ``lr`` (a pretrained trunk adapts gently).
    """

    def __init__(self, head: FormHead, trunk: TrunkTaps | None = None, loss: str = "nt_xent",
                 temperature: float = 0.2, lr: float = 1e-3, weight_decay: float = 1e-4, epochs: int = 60,
                 proj_dim: int = 256, trunk_lr_scale: float = 1.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r} (known: {', '.join(LOSSES)})")
        self.head, self.trunk = head, trunk
        self.projector = nn.Sequential(nn.BatchNorm1d(head.dim), nn.ReLU(), nn.Linear(head.dim, proj_dim),
                                       nn.BatchNorm1d(proj_dim), nn.ReLU(), nn.Linear(proj_dim, proj_dim))
        self.loss_name, self.temperature = loss, float(temperature)
        self.lr, self.weight_decay, self.epochs = float(lr), float(weight_decay), int(epochs)
        self.trunk_lr_scale = float(trunk_lr_scale)

    def _loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "nt_xent":
            return LOSSES["nt_xent"](z1, z2, temperature=self.temperature)
        return LOSSES[self.loss_name](z1, z2)

    def two_views(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features of two different views of each galaxy in the batch: the bank's pairs
        (B, 2, F) as they come (:class:`ViewPairSampler` drew them), or the trunk's features of
        the two augmentations of each image (B, 2, C, H, W) the loader made
        (:class:`~morphospace.ssl.image_pairs.ImagePairs`)."""
        if batch.ndim == 3:  # pairs of views from a view bank
            return batch[:, 0], batch[:, 1]
        if batch.ndim != 5:
            raise ValueError(f"expected (B, 2, F) view pairs or (B, 2, C, H, W) image pairs, got {tuple(batch.shape)}")
        if self.trunk is None:
            raise ValueError("image batches need a trunk")
        return self.trunk(batch[:, 0]), self.trunk(batch[:, 1])

    def training_step(self, batch, batch_idx):
        """NT-Xent or VICReg loss between the projected head outputs of two views of each galaxy;
        logs ``ssl_loss`` per epoch.
        """
        f1, f2 = self.two_views(batch)
        z1, z2 = (global_batch(self.projector(self.head(f))) for f in (f1, f2))  # every device's galaxies
        loss = self._loss(z1, z2)
        self.log("ssl_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The epoch's ``ssl_loss`` kept in the checkpoint: a resume of a finished head runs no epoch
        and so logs none, and the training notes still report the loss it ended at."""
        loss = self.trainer.callback_metrics.get("ssl_loss")
        if loss is not None:
            checkpoint[CKPT_LOSS] = float(loss)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint written before the per-group schedule (a6fb450) holds a CosineAnnealingLR's
        state, which the LambdaLR cannot load; the curve is the same, so its epoch count is kept."""
        for i, state in enumerate(checkpoint.get("lr_schedulers") or []):
            if "lr_lambdas" not in state:
                kept = {k: v for k, v in state.items() if k not in ("T_max", "eta_min")}
                checkpoint["lr_schedulers"][i] = {**kept, "lr_lambdas": [None] * len(state.get("base_lrs", [None]))}

    def configure_optimizers(self):
        """AdamW, the trunk (when it trains) at ``lr * trunk_lr_scale`` and the rest at ``lr``; every
        rate cosine-annealed per epoch over ``epochs`` to 5% of its start.
        """
        trunk = {id(p) for p in self.trunk.parameters()} if self.trunk is not None else set()
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in trunk]
        groups = [{"params": rest, "lr": self.lr}]
        if self.trunk is not None:
            groups.append({"params": [p for p in self.trunk.parameters() if p.requires_grad],
                           "lr": self.lr * self.trunk_lr_scale})
        opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        t_max = max(1, self.epochs)
        sched = torch.optim.lr_scheduler.LambdaLR(  # CosineAnnealingLR's curve, relative to each group's rate
            opt, lambda e: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(e, t_max) / t_max)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def fit_embedder(trunk: TrunkTaps, cube, out_dir: Path, *, dim: int = 64, aug_views: int = 2, epochs: int = 60,
                 batch_size: int = 256, loss: str = "nt_xent", temperature: float = 0.2, lr: float = 1e-3,
                 seed: int = 0, train_trunk: bool = False, trainer_kwargs: dict | None = None,
                 resume: bool = False, loader_workers: int = 0, views: int = N_DIHEDRAL,
                 trunk_lr_scale: float = 1.0, heads: int = 1, augment: NuisanceAugment = NuisanceAugment(),
                 bank_key: dict | None = None) -> tuple[FormEmbedder, np.ndarray, dict]:
    """Train a form embedder on a cube; returns it, the embedding of every galaxy and a summary.

    With a frozen trunk the view bank is kept as ``out_dir/view_bank.npy`` (a memmap) so a
    resumed run does not recompute it (the run's training removes it once its model is saved); Lightning writes ``out_dir/last.ckpt`` after every epoch.
    ``loader_workers`` read the cube when the trunk trains (``train.loader_workers``); ``views``
    dihedral views are averaged into the embedding (:class:`FormEmbedder`); a trained trunk
    learns at ``lr * trunk_lr_scale``. ``heads`` > 1 (frozen trunk only) trains that many heads
    on the same view bank from different seeds (:func:`head_seed`; checkpoints in
    ``out_dir/head{i}/`` beyond the first) and embeds with their :class:`HeadEnsemble`. ``augment``
    draws the nuisance views. On one CPU process the bank fills block by block, and a training
    killed meanwhile leaves it for ``resume`` to go on with (:class:`~morphospace.ssl.bank_file.FillingBank`),
    where ``bank_key`` (what the bank is made from beyond this function's settings, e.g. the
    training's) is the same.
    """
    if heads < 1 or (heads > 1 and train_trunk):
        raise ValueError(f"heads must be >= 1, and 1 when the trunk trains; got {heads}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, workers=True, verbose=False)
    head = FormHead(trunk.dim, dim=dim)
    info: dict = {"trunk": trunk.backbone, "trunk_dim": trunk.dim, "input_size": trunk.spec.size, "dim": dim,
                  "aug_views": aug_views, "epochs": epochs, "loss": loss, "temperature": temperature,
                  "train_trunk": train_trunk, "seed": seed, "embed_views": views, "heads": heads}
    if train_trunk:
        info["trunk_lr_scale"] = trunk_lr_scale
        with torch.no_grad():
            sample = np.array(cube[: min(len(cube), 512)], dtype=np.float32)
            head.set_scaling(trunk.eval()(torch.from_numpy(sample)).numpy(), bounded=False)  # the trunk will move
        trunk.train()
    else:
        for p in trunk.parameters():
            p.requires_grad_(False)
        bank_path = out_dir / "view_bank.npy"
        shape = (N_DIHEDRAL + aug_views, len(cube), trunk.dim)
        bank = read_cached_npy(bank_path, shape) if resume else None  # a damaged one is made again
        if bank is None:
            # one writer (through Lightning, the first process), going on from the blocks a killed
            # training left (srun starts the tasks at once; only the first clears the model folder)
            key = {"trunk": trunk.backbone, "input_size": trunk.spec.size, "seed": seed, "augment": repr(augment),
                   **(bank_key or {})}
            bank = filled_bank(trunk, cube, out_dir, shape, key, aug_views, seed, augment, resume,
                               trainer_kwargs=trainer_kwargs, loader_workers=loader_workers)
        elif not launched_as_later_rank():  # read whole: a bank left is not gone on with
            discard_left(out_dir)
        head.set_scaling(bank)  # streamed: the bank stays on disk
    losses = []
    trained = []
    for i in range(heads):
        if heads > 1:
            log.info("SSL head %d of %d", i + 1, heads)
        if i:
            pl.seed_everything(head_seed(seed, i), workers=True, verbose=False)
            head = FormHead(trunk.dim, dim=dim)
            with torch.no_grad():  # the same standardisation of the trunk's features
                for name in ("mean", "std", "low", "high"):
                    getattr(head, name).copy_(getattr(trained[0], name))
        data = (ViewBankDataModule(cube, batch_size, seed, of="cube", workers=loader_workers, augment=augment)
                if train_trunk else ViewBankDataModule(bank, batch_size, head_seed(seed, i), of="bank"))
        module = SSLModule(head, trunk if train_trunk else None, loss=loss, temperature=temperature, lr=lr,
                           epochs=epochs, trunk_lr_scale=trunk_lr_scale)
        losses.append(_fit_head(module, data, head_folder(out_dir, i), epochs, resume, trainer_kwargs,
                                log_to=(Path(out_dir).parent, f"ssl_head{i}" if i else "ssl")))
        trained.append(head.eval())
    head = trained[0] if heads == 1 else HeadEnsemble(trained)
    embedder = FormEmbedder(trunk, head, views=views).eval()
    if train_trunk:
        emb = forward_in_batches(embedder, cube)
    else:
        with torch.no_grad():
            emb = np.concatenate([
                torch.stack([head(torch.from_numpy(np.array(bank[v, s:s + 4096]))) for v in range(views)]).mean(0).numpy()
                for s in range(0, len(cube), 4096)])
    for p in trunk.parameters():
        p.requires_grad_(True)
    info["final_loss"] = losses[0] if heads == 1 else losses
    return embedder, emb.astype(np.float32), info


def head_folder(out_dir: str | Path, i: int) -> Path:
    """Where head ``i`` of an ensemble keeps its checkpoints: ``out_dir`` for the first (as a single
    head), ``out_dir/head{i}`` beyond it."""
    return Path(out_dir) / f"head{i}" if i else Path(out_dir)


def head_seed(seed: int, i: int) -> int:
    """The seed of head ``i`` of a run seeded ``seed``: ``seed`` for the first, so one head trains as
    before; far from every other run's seeds for the rest, so two runs share no head's draws."""
    return int(seed) if i == 0 else int(np.random.SeedSequence([int(seed), int(i)]).generate_state(1)[0])


def global_batch_norm(trainer_kwargs: dict | None) -> bool:
    """Whether the SSL fit synchronises its batch norms across processes (SimCLR's global batch norm,
    the statistics of the batch the loss sees): on several accelerators (torch syncs them on GPUs, not
    on CPUs)."""
    return accelerated(trainer_kwargs) and world_size(trainer_kwargs) > 1


def _fit_head(module: SSLModule, data: ViewBankDataModule, ckpt_dir: Path, epochs: int, resume: bool,
              trainer_kwargs: dict | None, log_to: tuple[Path, str] | None = None) -> float:
    """Train ``module`` with Lightning, checkpointing into ``ckpt_dir`` every epoch (resumed from its
    ``last.ckpt`` with ``resume``; its loss per epoch logged, with ``log_to`` = (the model's folder,
    a name), beside the model's other logs); returns the last epoch's loss (None when no epoch ran)."""
    ckpt = ModelCheckpoint(dirpath=str(ckpt_dir), filename="ssl", save_last=True, every_n_epochs=1,
                           save_on_train_epoch_end=True, enable_version_counter=False)
    last = ckpt_dir / "last.ckpt"
    kw = dict(max_epochs=epochs, logger=loss_loggers(*log_to) if log_to else False, callbacks=[ckpt],
              enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False, log_every_n_steps=1,
              default_root_dir=str(ckpt_dir), deterministic=True)
    kw.update(trainer_kwargs or {})
    kw.update(sync_batchnorm=global_batch_norm(trainer_kwargs))
    with quiet_lightning():
        trainer = pl.Trainer(**with_bars(fit_kwargs(kw)))
        with spawned_workers(trainer, ckpt_dir / "spawn"), ctrl_c_raised():
            trainer.fit(module, datamodule=data,
                        ckpt_path=resumed_from(last, "the SSL head", epochs) if resume else None)
    # the trainer's, not the module's: after a spawned fit the module here is no longer attached to it
    loss = trainer.callback_metrics.get("ssl_loss")  # none when no epoch ran (a resume of a finished head):
    if loss is None and resume and last.is_file():  # the loss the checkpoint ended at
        loss = _checkpoint_loss(last)
    return None if loss is None else float(loss)  # None: null in training.json, where NaN is no JSON


def _checkpoint_loss(path: Path) -> float | None:
    """The ``ssl_loss`` a checkpoint was written at (None for one written before it was kept)."""
    try:
        loss = torch.load(path, map_location="cpu", weights_only=True).get(CKPT_LOSS)
    except Exception:  # noqa: BLE001 - notes only: the trainer has just read the same file
        return None
    return None if loss is None else float(loss)
