"""The Lightning side of fine-tuning: the module and the Trainer (:func:`fit_classifier`).

The data come from :class:`~morphospace.study.datamodule.FineTuneData`.
:class:`FineTuneModule` trains a :class:`~morphospace.nets.backbones.FeatureNet` plus a
linear head with augmentation, a cosine-decayed AdamW and, before each validation, the
batch-norm running statistics re-estimated with the current weights
(:func:`torch.optim.swa_utils.update_bn`). :func:`fit_classifier` drives both with a
:class:`lightning.pytorch.Trainer` built the way the VaDE's is (quiet, seeded,
deterministic on CPU): :class:`~lightning.pytorch.callbacks.EarlyStopping` on the
validation loss and :class:`~lightning.pytorch.callbacks.ModelCheckpoint` keeping the best
epoch's weights in the model directory, which are loaded back at the end.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn
from torch.optim.swa_utils import update_bn

from ..errors import UserError
from ..nets.checkpoints import resumed_from
from ..nets.launched import ctrl_c_raised, fit_kwargs
from ..nets.scoped import seeded
from ..nets.spawn import spawned_workers
from ..progress import quiet_lightning, with_bars
from .datamodule import FineTuneData, augment

__all__ = ["FineTuneModule", "fit_classifier", "BEST_CHECKPOINT"]

log = logging.getLogger("morphospace")

BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"  # every epoch, the whole state: what a fine-tuning resumes from
# Lightning's advice for big data loaders; our batches are read from a memmap in the main process
_LIGHTNING_ADVICE = (r".*does not have many workers.*", r".*smaller than the logging interval.*",
                     r".*Checkpoint directory .* exists.*")


# --- the module -----------------------------------------------------------------------------------

class _OnlyBatchNormTrains(nn.Module):
    """A view of a network whose ``train()`` switches its batch-norm layers only.

    :func:`update_bn` puts the model it is given in training mode, then back in the mode it
    found; through this view the other layers stay in eval mode (no dropout, no
    drop-connect) while the statistics are estimated, and afterwards every layer is back in
    the mode it had.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.training = False  # what update_bn restores: train(False), i.e. the saved modes
        self._modes: dict[nn.Module, bool] = {}

    def train(self, mode: bool = True) -> "_OnlyBatchNormTrains":
        self.training = mode
        if mode:
            self._modes = {m: m.training for m in self.net.modules()}
            self.net.eval()
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
        else:
            for m, was in self._modes.items():
                m.training = was
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FineTuneModule(pl.LightningModule):
    """A feature network and a linear head trained on class indices or vote fractions.

    Parameters
    ----------
    net : FeatureNet
        The backbone (its parameters are trained at ``backbone_lr``).
    head : nn.Linear
        Features to logits (classification) or to pre-sigmoid fractions (regression).
    task : {"classification", "regression"}
        Cross-entropy (weighted by ``class_weights``) or the mean squared error of
        ``sigmoid(head(net(x)))``.
    lr, backbone_lr, weight_decay : float
        AdamW settings of the head and of the backbone; the rate decays by a cosine over
        ``total_steps``.
    total_steps : int
        Optimiser steps of the whole fit (the cosine's period).
    class_weights : Tensor or None
        Per-class loss weights (classification).
    augment : bool
        Rotations and flips of every training batch (see :func:`augment`).
    seed : int
        Seeds the augmentation.
    verbose : bool
        One log line per epoch.

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``, ``val_accuracy``
        (classification) or ``val_rmse`` (regression), ``seconds``.
    """

    def __init__(self, net: nn.Module, head: nn.Linear, task: str, lr: float, backbone_lr: float,
                 weight_decay: float, total_steps: int, class_weights: torch.Tensor | None = None,
                 augment: bool = True, seed: int = 0, verbose: bool = False):
        super().__init__()
        self.net, self.head, self.task = net, head, task
        self.lr, self.backbone_lr, self.weight_decay = float(lr), float(backbone_lr), float(weight_decay)
        self.total_steps = int(total_steps)
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.augment, self.seed, self.verbose = bool(augment), int(seed), bool(verbose)
        self.history: list[dict] = []
        self.signature: dict = {}  # what the fine-tuning started from: a resume must start from the same
        self._gen = torch.Generator().manual_seed(self.seed)
        self._train_sum = self._train_n = 0.0
        self._val_out: list[torch.Tensor] = []
        self._val_target: list[torch.Tensor] = []
        self._t0 = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Head outputs of a batch of images.

        Parameters
        ----------
        x : Tensor (n, C, H, W)

        Returns
        -------
        Tensor (n, K)
            Logits (classification) or pre-sigmoid fractions (regression).
        """
        return self.head(self.net(x))

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits (classification) or squared error of the fractions (regression).

        Parameters
        ----------
        out : Tensor (n, K)
            Head outputs.
        target : Tensor (n,) of int64, or (n, K) of float

        Returns
        -------
        Tensor
            The mean loss of the batch (weighted by class in classification).
        """
        if self.task == "classification":
            return F.cross_entropy(out, target, weight=self.class_weights)
        return F.mse_loss(torch.sigmoid(out), target)

    # training -------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        """Start the epoch's clock and training-loss sums."""
        self._t0 = time.perf_counter()
        self._train_sum = self._train_n = 0.0

    def training_step(self, batch, batch_idx):
        """Loss of one augmented batch (summed into the epoch's training loss).

        Parameters
        ----------
        batch : tuple of Tensor
            ``(images, targets)``.
        batch_idx : int

        Returns
        -------
        Tensor
            The loss Lightning back-propagates.
        """
        x, y = batch
        if self.augment:
            x = augment(x, self._gen)
        loss = self.loss(self(x), y)
        self._train_sum += float(loss.detach()) * len(x)
        self._train_n += len(x)
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, logger=False,
                 batch_size=len(x))
        return loss

    def configure_optimizers(self):
        """AdamW over the backbone and the head (two rates), cosine-decayed step by step.

        Returns
        -------
        dict
            ``optimizer`` and ``lr_scheduler`` as Lightning takes them.
        """
        opt = torch.optim.AdamW([{"params": self.net.parameters(), "lr": self.backbone_lr},
                                 {"params": self.head.parameters(), "lr": self.lr}], weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.total_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # resuming ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the epochs' history and the augmentation's generator with the weights."""
        # torch's own generators too: dropout draws from them (Lightning seeds them afresh when it resumes)
        checkpoint["morphospace"] = {"history": list(self.history), "generator": self._gen.get_state(),
                                     "torch_rng": torch.get_rng_state(), "signature": dict(self.signature)}
        if torch.cuda.is_available():
            checkpoint["morphospace"]["cuda_rng"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Take back what :meth:`on_save_checkpoint` kept (a resumed fine-tuning goes on as it was)."""
        kept = checkpoint.get("morphospace", {})
        self.history = list(kept.get("history", []))
        if "generator" in kept:
            self._gen.set_state(kept["generator"])
        if "torch_rng" in kept:
            torch.set_rng_state(kept["torch_rng"])
        if "cuda_rng" in kept and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(kept["cuda_rng"])

    # validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        """Re-estimate the batch-norm statistics with the current weights, before validating."""
        # The running averages lag the weights; evaluated with them, a network that fits its
        # training batches can predict a single class (seen on small data). Statistics of
        # un-augmented training images with the current weights ("precise BN") fix that.
        data = self.trainer.datamodule
        if data is not None:
            update_bn(data.bn_dataloader(self.current_epoch), _OnlyBatchNormTrains(self.net), device=self.device)
        self._val_out, self._val_target = [], []

    def validation_step(self, batch, batch_idx) -> None:
        """Keep the outputs of one validation batch (scored at the epoch's end).

        Parameters
        ----------
        batch : tuple of Tensor
            ``(images, targets)``.
        batch_idx : int
        """
        x, y = batch
        self._val_out.append(self(x).float().cpu())
        self._val_target.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        """Score the whole validation split, log ``val_loss`` and append the epoch to :attr:`history`."""
        if self.trainer.sanity_checking or not self._val_out:
            return
        out, target = torch.cat(self._val_out), torch.cat(self._val_target)
        with torch.no_grad():  # over the whole split at once: a class-weighted mean is not a mean of batch means
            val_loss = float(self.loss(out.to(self.device), target.to(self.device)))
        record = {"epoch": int(self.current_epoch) + 1, "train_loss": self._train_sum / max(self._train_n, 1),
                  "val_loss": val_loss}
        if self.task == "classification":
            record["val_accuracy"] = float((out.argmax(1) == target).double().mean())
        else:
            record["val_rmse"] = float(torch.sqrt(((torch.sigmoid(out).double() - target.double()) ** 2).mean()))
        record["seconds"] = time.perf_counter() - self._t0
        self.history.append(record)
        self.log("val_loss", val_loss, prog_bar=True, logger=False, sync_dist=True)
        if self.verbose:
            log.info("epoch %d/%d: %s", record["epoch"], self.trainer.max_epochs,
                     ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))


# --- running ------------------------------------------------------------------------------------

def _resumable(last: Path, module: FineTuneModule) -> dict | None:
    """The checkpoint ``last`` where its fine-tuning had stopped early (None where it goes on); a
    one-line :class:`UserError` where there is none, or where it started from other images, labels,
    split or settings than ``module``'s."""
    if not last.is_file():
        raise UserError(f"nothing to resume: no {last.name} in {last.parent} (a fine-tuning writes it after "
                        "each epoch); run without --resume")
    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
        kept = state.get("morphospace", {}).get("signature", {})
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one line
        raise UserError(f"{last} cannot be read ({type(exc).__name__}): run without --resume") from None
    differ = sorted(k for k in set(kept) | set(module.signature) if kept.get(k) != module.signature.get(k))
    if kept and "test_fraction" not in kept and module.signature.get("test_fraction"):
        raise UserError(f"{last} is of a fine-tuning begun before fine-tunings held out a test split, and cannot go "
                        "on as one: run without --resume to start afresh")
    if differ:
        raise UserError(f"{last} is of a fine-tuning with other {', '.join(differ[:6])} than this one's: "
                        "--resume goes on with the same one; run without --resume to start afresh")
    early = [v for k, v in state.get("callbacks", {}).items() if str(k).startswith("EarlyStopping")]
    return state if any(int(v.get("stopped_epoch", 0)) > 0 for v in early if isinstance(v, dict)) else None


def fit_classifier(module: FineTuneModule, data: FineTuneData, epochs: int, patience: int, checkpoint_dir: Path,
                   seed: int, accelerator: str = "cpu", devices: int = 1, precision: str = "32-true",
                   resume: bool = False) -> int:
    """Train ``module`` on ``data`` with a Lightning Trainer; the best epoch's weights are loaded back.

    Parameters
    ----------
    module : FineTuneModule
    data : FineTuneData
    epochs : int
        Most epochs.
    patience : int
        :class:`~lightning.pytorch.callbacks.EarlyStopping` patience on ``val_loss``, in
        epochs (0: never stop early).
    checkpoint_dir : Path
        Where :class:`~lightning.pytorch.callbacks.ModelCheckpoint` keeps ``best.ckpt``
        (the weights of the epoch with the lowest validation loss; overwritten by a new fit).
    seed : int
        Passed to :func:`lightning.pytorch.seed_everything` (global random states are
        restored afterwards).
    accelerator, devices, precision
        As :class:`lightning.pytorch.Trainer` takes them; on the CPU the run is deterministic.
    resume : bool
        Go on from ``last.ckpt`` in ``checkpoint_dir`` (written after every epoch: weights,
        optimiser, schedule, early stopping, the best epoch so far, the history); a fit that
        does not resume removes it and ``best.ckpt`` first.

    Returns
    -------
    int
        The epoch whose weights were kept (1-based; 0 when no checkpoint was written).
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best, last = checkpoint_dir / BEST_CHECKPOINT, checkpoint_dir / LAST_CHECKPOINT
    stopped = None  # the checkpoint of a fine-tuning that had stopped early
    if resume:
        stopped = _resumable(last, module)
    else:
        best.unlink(missing_ok=True)
        last.unlink(missing_ok=True)
    ckpt = ModelCheckpoint(dirpath=str(checkpoint_dir), filename=best.stem, monitor="val_loss", mode="min",
                           save_top_k=1, save_weights_only=True, auto_insert_metric_name=False,
                           enable_version_counter=False)
    every = ModelCheckpoint(dirpath=str(checkpoint_dir), filename=last.stem, monitor=None, save_top_k=1,
                            every_n_epochs=1, save_weights_only=False, auto_insert_metric_name=False,
                            enable_version_counter=False)
    callbacks: list[pl.Callback] = [ckpt, every]
    if patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=int(patience), min_delta=1e-6))
    with seeded(seed), quiet_lightning(), warnings.catch_warnings():
        for message in _LIGHTNING_ADVICE:
            warnings.filterwarnings("ignore", message=message)
        trainer = pl.Trainer(**with_bars(fit_kwargs(dict(
            max_epochs=int(epochs), accelerator=accelerator, devices=devices, precision=precision,
            logger=False, callbacks=callbacks, default_root_dir=str(checkpoint_dir),
            deterministic=accelerator == "cpu", enable_model_summary=False,
            num_sanity_val_steps=0, use_distributed_sampler=False, log_every_n_steps=1,
        ))))
        if stopped is not None:  # Lightning does not keep "stop now": resumed, the fit would train on
            module.on_load_checkpoint(stopped)
            log.info("the fine-tuning in %s had stopped early: nothing more to train", checkpoint_dir)
        else:
            with spawned_workers(trainer, checkpoint_dir / "spawn"), ctrl_c_raised():
                trainer.fit(module, datamodule=data, ckpt_path=resumed_from(last, "the fine-tuning", epochs) if resume
                            else None)
        early = next((c for c in callbacks if isinstance(c, EarlyStopping)), None)
        if early is not None and early.stopped_epoch:
            log.info("early stop after epoch %d: validation loss has not improved for %d epochs",
                     early.stopped_epoch + 1, early.wait_count)
    module.cpu()
    if not best.is_file():
        return 0
    state = torch.load(best, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    return int(state["epoch"]) + 1
