"""The Lightning side of VaDE training: data, the phased module, checkpoints, :func:`fit_vade`.

:class:`VaDEModule` runs the phases described in :mod:`morphospace.vade.train` (pretraining,
mixture initialisation, joint training) with the guards on the mixture and the checkpointed
state that makes ``--resume`` exact; :class:`CubeDataModule` serves the (memory-mapped) cube
in a seeded order, sharded under DDP. :func:`fit_vade` fits one to the rows of an ``.npy``
(the cube, its neighbour-masked copy, or the form embedding of the form-first VaDE).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, DistributedSampler

from ..config import Config
from ..errors import UserError, first_line
from ..image.geometry import rotate
from ..progress import is_quiet, quiet_lightning
from ..run import RunDir, write_json
from .hparams import latent_weight, lr_factor
from .io import MODEL_FILE, model_dir
from .mixture import fit_mixture, principal_axes, select_k
from .model import PRIOR_LOG_VAR_RANGE
from .networks import build_model

__all__ = ["TrainResult", "VaDEModule", "CubeDataModule", "augment", "fit_vade", "prepare_model_dir",
           "write_training_summary", "LAST_CHECKPOINT"]

log = logging.getLogger("morphospace")

LAST_CHECKPOINT = "last.ckpt"
# per-epoch means written to the logs (the first five in every phase, the others when joint)
EPOCH_TERMS = ("loss", "reconstruction", "kl", "neg_elbo", "latent_weight",
               "expected_log_pz_c", "expected_log_pc", "entropy_c", "neg_entropy_z")


# --- data ------------------------------------------------------------------------------------

class CubeDataset:
    """Rows of the (memory-mapped) image cube as float32 tensors."""

    def __init__(self, cube: np.ndarray):
        self.cube = cube

    def __len__(self) -> int:
        return len(self.cube)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.array(self.cube[i], dtype=np.float32))


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
    """

    def __init__(self, cube_path: Path, batch_size: int, seed: int):
        super().__init__()
        self.cube_path = Path(cube_path)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.dataset: CubeDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = CubeDataset(np.load(self.cube_path, mmap_mode="r"))

    def train_dataloader(self):
        self.setup()
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        # DistributedSampler also for one process: its order depends only on (seed, epoch)
        sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                     drop_last=False)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, num_workers=0, drop_last=False)

    def full_dataloader(self, batch: int = 256):
        """Every galaxy once, in cube order."""
        self.setup()
        return DataLoader(self.dataset, batch_size=batch, shuffle=False, num_workers=0)


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


def step_generator(seed: int, step: int, rank: int):
    """A CPU generator that depends only on (seed, global step, rank)."""
    state = np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# --- the Lightning module ----------------------------------------------------------------------

class VaDEModule(pl.LightningModule):
    """A :class:`VaDE` with its phases, schedule, guards and checkpointed state."""

    def __init__(self, **hparams):
        super().__init__()
        self.save_hyperparameters()
        self.hp = dict(hparams)
        self.model = build_model(self.hp)
        # phase state, in the state dict (hence in every checkpoint)
        self.register_buffer("mixture_ready", torch.tensor(0, dtype=torch.long))
        self.init_info: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._counts: torch.Tensor | None = None
        self._sums: torch.Tensor | None = None

    # phases ------------------------------------------------------------------------
    @property
    def joint(self) -> bool:
        return self.current_epoch >= self.hp["pretrain_epochs"]

    def on_train_epoch_start(self) -> None:
        if self.joint and not int(self.mixture_ready):
            self._initialise_mixture()
        k = self.model.prior.max_components
        self._counts = torch.zeros(k, dtype=torch.float64, device=self.device)
        self._sums = torch.zeros(len(EPOCH_TERMS) + 1, dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def encode_dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """``(z_mean, z_var)`` of every galaxy in cube order (no augmentation)."""
        was_training = self.model.training
        self.model.eval()
        means, variances = [], []
        for x in self.trainer.datamodule.full_dataloader():
            mu, log_var = self.model.encode(x.to(self.device))
            means.append(mu.float().cpu().numpy())
            variances.append(log_var.float().exp().cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(means).astype(np.float64), np.concatenate(variances).astype(np.float64)

    def _initialise_mixture(self) -> None:
        z, z_var = self.encode_dataset()
        info: dict[str, Any] = {"epoch": int(self.current_epoch)}
        if self.trainer.is_global_zero:
            rotation = None
            if self.hp["align_latent"]:
                rotation = principal_axes(z)
                z, z_var = z @ rotation.T, z_var @ (rotation**2).T   # diag of R diag(v) R^T
            if self.hp["n_components"] > 0:
                k = self.hp["n_components"]
            else:
                k, bic = select_k(z, self.hp["k_min"], self.hp["k_max"], self.hp["seed"])
                info["bic"] = {str(kk): v for kk, v in bic.items()}
                log.info("mixture: K = %d chosen by BIC over K in [%d, %d]", k, min(bic), max(bic))
                if k == max(bic) and len(bic) > 1:
                    # the BIC still falls at the top of the range: the data did not choose K, the cap did
                    log.warning("mixture: the BIC chose K = %d, the largest tried; raise model.k_max to search "
                                "further, or set model.n_components", k)
            fit = fit_mixture(z, k, self.hp["seed"], posterior_var=z_var)
            info.update({"k": k, "weights": fit["weights"].tolist()})
            payload = (fit, info, rotation)
        else:
            payload = None
        # every rank applies rank 0's rotation and mixture
        fit, info, rotation = self.trainer.strategy.broadcast(payload, src=0)
        if rotation is not None:
            self.model.rotate_latent(torch.as_tensor(rotation, dtype=torch.float32))
            self._rotate_optimiser_state(torch.as_tensor(rotation, dtype=torch.float32))
        self.model.prior.set_parameters(fit["weights"], fit["means"], fit["variances"])
        self.mixture_ready.fill_(1)
        self.init_info = info
        # the prior's optimiser state starts afresh; the networks' is kept (resetting it jolts the
        # encoder: every weight moves by ~lr in the first Adam steps), except in the published recipe
        for opt in self.trainer.optimizers:
            if self.hp["schedule"] == "astrovader":
                opt.state.clear()
            else:
                for p in self.model.prior.parameters():
                    opt.state.pop(p, None)
        log.info("mixture initialised from z_mean: K = %d, weights %s", info["k"],
                 np.array2string(np.asarray(info["weights"]), precision=3))

    @torch.no_grad()
    def _rotate_optimiser_state(self, r: torch.Tensor) -> None:
        """Turn Adam's moments of the rotated layers with them (the first moment exactly, the
        second by the squared rotation): dropping them instead would restart those layers with
        full-size Adam steps, a jolt to every code."""
        mean, fc = self.model.encoder.mean, self.model.decoder.fc
        for opt in self.trainer.optimizers:
            for p, left in ((mean.weight, True), (mean.bias, True), (fc.weight, False)):
                state = opt.state.get(p)
                if not state or "exp_avg" not in state:
                    continue
                rr = r.to(state["exp_avg"])
                if left:
                    state["exp_avg"].copy_(rr @ state["exp_avg"])
                    state["exp_avg_sq"].copy_((rr**2) @ state["exp_avg_sq"])
                else:
                    state["exp_avg"].copy_(state["exp_avg"] @ rr.T)
                    state["exp_avg_sq"].copy_(state["exp_avg_sq"] @ (rr**2).T)

    # training ------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x = batch
        g = step_generator(self.hp["seed"], self.global_step, self.global_rank)
        x = augment(x, self.hp["augment"], g)
        mode = "vade" if self.joint else "vae"
        t = self.model.loss_terms(x, mode=mode, generator=g)
        n_batches = max(1, self.trainer.num_training_batches)
        joint_epoch = self.current_epoch - self.hp["pretrain_epochs"] + batch_idx / n_batches
        w = latent_weight(self.hp, joint_epoch) if mode == "vade" else 1.0
        loss = (t.reconstruction + w * t.kl).mean()
        if mode != "vade":
            # every parameter must take part in every step under DDP
            loss = loss + 0.0 * sum(p.sum() for p in self.model.prior.parameters())
        # per-epoch sums, reduced across processes once at the epoch end (one collective that every
        # rank issues at the same point; Lightning's sync_dist metrics are computed lazily by the
        # progress bar on rank 0 only, which would interleave with the guard's collective)
        n = x.shape[0]
        with torch.no_grad():
            row = [n, loss.detach() * n, t.reconstruction.sum(), t.kl.sum(), (t.reconstruction + t.kl).sum(), w * n]
            if mode == "vade":
                row += [t.expected_log_pz_c.sum(), t.expected_log_pc.sum(), t.entropy_c.sum(), t.neg_entropy_z.sum()]
                k = t.log_gamma.shape[1]
                self._counts[:k] += torch.bincount(t.log_gamma.argmax(1), minlength=k).double()
            else:
                row += [0.0] * 4
            self._sums += torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in row])
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def on_train_epoch_end(self) -> None:
        totals = self.trainer.strategy.reduce(torch.cat([self._sums, self._counts]), reduce_op="sum")
        sums, counts = totals[: len(EPOCH_TERMS) + 1].cpu(), totals[len(EPOCH_TERMS) + 1:]
        n = max(float(sums[0]), 1.0)
        names = EPOCH_TERMS if self.joint else EPOCH_TERMS[:5]
        # the values are already global (identical on every rank): written once, by rank 0
        for i, name in enumerate(names):
            self.log(name, float(sums[i + 1]) / n, on_epoch=True, rank_zero_only=True)
        self.log("phase", float(self.joint), on_epoch=True, rank_zero_only=True)
        self.log("lr", self.hp["lr"] * lr_factor(self.hp, self.current_epoch), on_epoch=True, rank_zero_only=True)
        if self.joint and int(self.mixture_ready):
            self._guard(counts)

    @torch.no_grad()
    def _guard(self, counts: torch.Tensor) -> None:
        """Detect collapse, empty components and exploding variances; split to re-seed."""
        prior = self.model.prior
        k = prior.n_components
        counts = counts[:k].cpu().numpy()
        weights = prior.log_weights[:k].exp().cpu().numpy()
        log_vars = prior.log_vars[:k].cpu().numpy()
        total = counts.sum()
        self.log("n_empty", float((counts == 0).sum()), on_epoch=True, rank_zero_only=True)
        self.log("largest_fraction", float(counts.max() / max(total, 1)), on_epoch=True, rank_zero_only=True)
        if k > 1 and total > 0 and counts.max() >= 0.95 * total:
            self._event("collapse", int(counts.argmax()),
                        f"{counts.max() / total:.1%} of the galaxies are in component {counts.argmax()}")
        starved = (weights < self.hp["min_weight"]) | (counts == 0)
        exploded = log_vars.max(1) >= PRIOR_LOG_VAR_RANGE[1] - 1e-3
        bad = np.where(starved | exploded)[0]
        if len(bad) == 0 or len(bad) == k:
            return
        if self.current_epoch >= self.hp["epochs"] - 1:
            # a component re-seeded now would never be trained: report only
            self._event("unresolved", int(bad[0]), f"components {bad.tolist()} are empty, starved or "
                        "exploding at the last epoch (left as they are)")
            return
        for c in bad:
            why = "exploding variance" if exploded[c] else (
                "empty" if counts[c] == 0 else f"weight {weights[c]:.4f} < {self.hp['min_weight']}")
            donors = [j for j in np.argsort(-counts) if j not in bad]
            if not donors:
                break
            j = int(donors[0])
            self._split(j, int(c))
            counts[j] = counts[c] = counts[j] / 2
            self._event("reinitialised", int(c), f"component {c} ({why}): re-seeded by splitting component {j}")
        # stale Adam moments would push the re-seeded components straight back
        for opt in self.trainer.optimizers:
            for p in prior.parameters():
                opt.state.pop(p, None)

    def _split(self, j: int, c: int) -> None:
        prior = self.model.prior
        std = torch.exp(0.5 * prior.log_vars[j])
        d = int(torch.argmax(std))
        step = torch.zeros_like(std)
        step[d] = 0.5 * std[d]
        prior.means[c] = prior.means[j] + step
        prior.means[j] = prior.means[j] - step
        prior.raw_log_vars[c] = prior.log_vars[j]
        prior.raw_log_vars[j] = prior.log_vars[j]
        half = prior.logits[j] - math.log(2.0)
        prior.logits[j] = half
        prior.logits[c] = half

    def _event(self, kind: str, component: int, message: str) -> None:
        self.events.append({"epoch": int(self.current_epoch), "event": kind, "component": component,
                            "message": message})
        if self.trainer.is_global_zero:
            log.warning("vade epoch %d: %s", self.current_epoch, message)

    # optimiser --------------------------------------------------------------------------
    def configure_optimizers(self):
        net = [p for n, p in self.model.named_parameters() if not n.startswith("prior.")]
        groups = [{"params": net, "weight_decay": self.hp["weight_decay"]},
                  {"params": list(self.model.prior.parameters()), "weight_decay": 0.0}]
        opt = torch.optim.Adam(groups, lr=self.hp["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(self.hp, e))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # checkpoint state -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # plain tensors and lists only: Lightning reloads checkpoints with torch.load(weights_only=True)
        np_state = np.random.get_state()
        py_state = random.getstate()
        checkpoint["morphospace"] = {
            "init_info": self.init_info,
            "events": self.events,
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                              int(np_state[3]), float(np_state[4])],
                    "python": [py_state[0], list(py_state[1]), py_state[2]]},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("morphospace", {})
        self.init_info = state.get("init_info", {})
        self.events = list(state.get("events", []))
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            version, internal, gauss = rng["python"]
            random.setstate((version, tuple(internal), gauss))


# --- running ------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What :func:`train_run` did. Only ``global_rank == 0`` wrote the model."""

    model_path: Path
    global_rank: int
    epochs: int
    n_components: int
    events: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _clear_previous(mdir: Path) -> None:
    for p in list(mdir.glob("*.ckpt")) + [mdir / MODEL_FILE, mdir / "hparams.json", mdir / "training.json"]:
        p.unlink(missing_ok=True)
    for sub in ("logs", "ssl"):
        shutil.rmtree(mdir / sub, ignore_errors=True)


def _comparable(hp: dict[str, Any]) -> dict[str, Any]:
    # fields that may change on resume without changing the model
    return {k: v for k, v in hp.items() if k not in ("epochs",)}


def prepare_model_dir(run: RunDir, cfg: Config, hp: dict[str, Any], resume: bool,
                      checkpoint: str = LAST_CHECKPOINT) -> Path:
    """``RUN/models/vade/``: checked against ``hp`` for a resume, else cleared; ``hparams.json`` written.

    ``checkpoint`` (relative to the model directory) is the one a resume continues from.
    """
    mdir = model_dir(run)
    last = mdir / checkpoint
    if resume:
        if not last.is_file():
            raise UserError(f"nothing to resume: {last} not found (train without --resume first)")
        try:
            torch.load(last, map_location="cpu", weights_only=False)
        except Exception as exc:  # a checkpoint cut short by a full disk or a kill mid-write
            raise UserError(f"{last} is damaged ({first_line(exc)[:160]}): train again without --resume") from None
        saved = json.loads((mdir / "hparams.json").read_text()) if (mdir / "hparams.json").is_file() else None
        if saved is not None and _comparable(saved) != _comparable(hp):
            diff = sorted(k for k in set(saved) | set(hp) if k != "epochs" and saved.get(k) != hp.get(k))
            raise UserError(f"cannot resume: the configuration changed ({', '.join(diff)})")
    else:
        _clear_previous(mdir)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    write_json(mdir / "hparams.json", hp)
    return mdir


def write_training_summary(mdir: Path, module: VaDEModule, hp: dict[str, Any], seconds: float, n_images: int,
                           **more: Any) -> None:
    """``training.json`` beside the model, and one log line."""
    k = module.model.prior.n_components
    write_json(mdir / "training.json", {"seconds": seconds, "epochs": hp["epochs"], "n_components": k,
                                        "init": module.init_info, "events": module.events, "n_images": n_images,
                                        **more})
    log.info("VaDE trained: %d epochs, K = %d, %.1f s; model in %s", hp["epochs"], k, seconds, mdir)


def fit_vade(hp: dict[str, Any], input_path: Path, mdir: Path, cfg: Config, resume: bool = False,
             callbacks: list | None = None) -> tuple[VaDEModule, pl.Trainer, float]:
    """Fit a :class:`VaDEModule` to the rows of ``input_path`` (an .npy): checkpoints and logs in ``mdir``."""
    pl.seed_everything(hp["seed"], workers=True, verbose=False)
    last = mdir / LAST_CHECKPOINT
    module = VaDEModule(**hp)
    data = CubeDataModule(input_path, hp["batch_size"], hp["seed"])
    logs = mdir / "logs"
    version = f"v{len(list((logs / 'csv').glob('v*')))}" if (logs / "csv").is_dir() else "v0"
    loggers = [CSVLogger(str(logs), name="csv", version=version),
               TensorBoardLogger(str(logs), name="tensorboard", version=version, default_hp_metric=False)]
    # keep the newest epoch's checkpoint (monitor=None, top-1) and last.ckpt linking to it
    ckpt = ModelCheckpoint(dirpath=str(mdir), filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                           save_top_k=1, save_last="link", every_n_epochs=1, save_on_train_epoch_end=True,
                           enable_version_counter=False)
    t0 = time.perf_counter()
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=hp["epochs"], accelerator=cfg.train.accelerator, devices=cfg.train.devices,
            num_nodes=cfg.train.num_nodes, strategy=cfg.train.strategy, precision=cfg.train.precision,
            logger=loggers, callbacks=[ckpt] + list(callbacks or []), default_root_dir=str(mdir),
            gradient_clip_val=hp["grad_clip"] or None, deterministic=cfg.train.accelerator == "cpu",
            use_distributed_sampler=False, enable_progress_bar=not is_quiet(), enable_model_summary=False,
            log_every_n_steps=1, num_sanity_val_steps=0,
        )
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    return module, trainer, time.perf_counter() - t0
