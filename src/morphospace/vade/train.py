"""Training the VaDE with Lightning: phases, guards, checkpoints, resume, multi-GPU.

Phases
------
1. **Pretraining** (epochs ``[0, pretrain_epochs)``): a plain VAE (reconstruction + KL to
   N(0, I)); the mixture is not used.
2. **Mixture initialisation** (start of epoch ``pretrain_epochs``): every galaxy is encoded to
   ``z_mean``; with ``model.align_latent`` the latent axes are turned to the principal axes of
   ``z_mean`` (:meth:`VaDE.rotate_latent`: decoded images unchanged) so that a diagonal mixture
   fits the correlated VAE latent; if ``model.n_components = 0`` the number of components K is chosen from the data
   alone by the BIC of diagonal Gaussian mixtures for K in ``[model.k_min, model.k_max]``; then
   K-Means(K) and a diagonal GaussianMixture started at the K-Means centres, whose weights, means
   and variances are loaded into the prior (actually applied, unlike the published code). The
   optimiser state is reset.
3. **Joint training**: reconstruction + w * KL(q(z, c | x) || p(z, c)) (see
   :mod:`morphospace.vade.model`). ``default`` keeps w = 1; ``astrovader`` uses the published
   five 50-epoch cycles w = 0.3 (a^3 + 1), a ramping 0 -> 1 over 25 epochs then held 25.

After every joint epoch a guard looks at the mixture: a component with weight below
``model.min_weight`` or with no galaxy assigned during the epoch (empty), and one whose variance
reached the clamp (exploding), is re-initialised by splitting the most populated component
along its widest axis; all galaxies in one component (collapse) is reported. Each event is a
warning on the ``morphospace`` logger (which the command line also writes to ``RUN/log.txt``).

Reproducibility
---------------
All randomness of a training step (augmentation, reparameterisation noise) comes from a
generator seeded by ``(seed, global step, rank)``, and the data order from a
``DistributedSampler`` seeded by ``(seed, epoch)``, so a run is a pure function of its seed and
its checkpoint: ``train_run(..., resume=True)`` continues a killed run from
``RUN/models/vade/last.ckpt`` (written after every epoch, with the phase state and the RNG
states) and ends with the same weights and labels as an uninterrupted run (tested on CPU).

Multi-GPU and multi-node (SLURM)
--------------------------------
``train.devices``, ``train.num_nodes``, ``train.strategy`` (e.g. ``ddp``), ``train.precision``
and ``train.accelerator`` go to the Lightning ``Trainer``. Under SLURM, Lightning detects the
allocation (``SLURMEnvironment``) when the tasks are started by ``srun``, one task per device::

    #!/bin/bash
    #SBATCH --job-name=morphospace
    #SBATCH --nodes=2
    #SBATCH --ntasks-per-node=4          # = --devices
    #SBATCH --gpus-per-node=4
    #SBATCH --cpus-per-task=8
    #SBATCH --time=12:00:00
    #SBATCH --signal=SIGUSR1@120         # Lightning saves and requeues before the time limit
    #SBATCH --requeue
    RESUME=""
    [ -f runs/gz2/models/vade/last.ckpt ] && RESUME="--resume"
    srun morphospace train runs/gz2 --accelerator gpu --devices 4 --num-nodes 2 \\
         --strategy ddp --precision bf16-mixed $RESUME

The batch size is per device (the effective batch is ``batch_size * devices * num_nodes``).
Every rank runs :func:`train_run`; only rank 0 writes the final model, so a caller must stop
after training on the other ranks (``TrainResult.global_rank != 0``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, DistributedSampler

from ..api import MODEL_FILE, MODEL_NAME, model_dir, save_model
from ..image.masking import model_input_path
from ..config import Config, ModelConfig, TrainConfig
from ..errors import UserError, first_line
from .networks import build_model
from .model import PRIOR_LOG_VAR_RANGE, rotate
from ..progress import is_quiet
from ..run import RunDir, write_json

__all__ = ["train_run", "TrainResult", "VaDEModule", "CubeDataModule", "resolve_hparams", "latent_weight",
           "lr_factor", "select_k", "fit_mixture", "augment", "fit_vade", "ASTROVADER_RECIPE"]

log = logging.getLogger("morphospace")

LAST_CHECKPOINT = "last.ckpt"
AUGMENTATIONS = ("none", "flips", "dihedral", "rotate")
MIN_PER_COMPONENT = 10  # the BIC search never tries K > N / this
# per-epoch means written to the logs (the first five in every phase, the others when joint)
EPOCH_TERMS = ("loss", "reconstruction", "kl", "neg_elbo", "latent_weight",
               "expected_log_pz_c", "expected_log_pc", "entropy_c", "neg_entropy_z")
REG_COVAR = 1e-3  # variance floor of the initial mixture (latent codes are at scale ~1)

# the published AstroVaDEr recipe (../shared/docs/astrovader.md); config fields left at their defaults
# take these values under model.preset = "astrovader"
ASTROVADER_RECIPE = {
    "latent_dim": 20,
    "n_components": 12,
    "epochs": 350,
    "pretrain_epochs": 100,
    "batch_size": 190,
    "lr": 3e-4,
    "final_lr": 1e-6,
    # Keras l2(0.01) adds 0.01 * w^2 to the loss: gradient 0.02 w, i.e. Adam weight_decay 0.02
    "weight_decay": 0.02,
    "grad_clip": 1.0,
    "augment": "flips",
    "recon_sigma": 2 ** -0.5,   # per-image sum of squared errors
    "radial_inner": 0.0,
    "radial_width": 0.0,
    "canonicalise": False,
    "flip_invariant": False,
    "cycle_ramp": 25,
    "cycle_hold": 25,
    "cycle_base": 0.3,
    "align_latent": False,
    "mask_neighbours": False,
    "colour_weight": 1.0,
}


# --- hyper-parameters ------------------------------------------------------------------------

def resolve_hparams(cfg: Config, channels: int, image_size: int) -> dict[str, Any]:
    """Everything that defines a training run, as a flat JSON-able dict.

    Under ``model.preset = "astrovader"`` a field left at its default value takes the published
    value from :data:`ASTROVADER_RECIPE` (so ``--epochs 2`` still works for a smoke test); the
    network, loss and schedule are always the published ones.
    """
    m, t = cfg.model, cfg.train
    hp: dict[str, Any] = {
        "preset": m.preset, "channels": int(channels), "image_size": int(image_size),
        "latent_dim": m.latent_dim, "n_components": m.n_components, "k_min": m.k_min, "k_max": m.k_max,
        "min_weight": m.min_weight, "recon_sigma": m.recon_sigma, "radial_inner": m.radial_inner,
        "radial_width": m.radial_width, "canonicalise": m.canonicalise, "flip_invariant": m.flip_invariant,
        "widths": list(m.widths), "epochs": t.epochs, "pretrain_epochs": t.pretrain_epochs,
        "batch_size": t.batch_size, "lr": t.lr, "final_lr": t.lr * t.final_lr_fraction,
        "weight_decay": t.weight_decay, "grad_clip": t.grad_clip, "augment": t.augment, "seed": t.seed,
        "schedule": "default", "cycle_ramp": 0, "cycle_hold": 0, "cycle_base": 1.0,
        "align_latent": m.align_latent, "mask_neighbours": m.mask_neighbours,
        "colour_weight": m.colour_weight,
    }
    if m.preset == "astrovader":
        dm, dt = ModelConfig(), TrainConfig()
        for key, value in ASTROVADER_RECIPE.items():
            user = getattr(m, key, getattr(t, key, None))
            default = getattr(dm, key, getattr(dt, key, None))
            # user-set fields win; fields at their default (or not in the config) are published
            hp[key] = value if (user is None or user == default) else user
        for key in ("recon_sigma", "radial_inner", "radial_width", "canonicalise", "flip_invariant", "align_latent",
                    "weight_decay", "grad_clip", "augment", "cycle_ramp", "cycle_hold", "cycle_base",
                    "mask_neighbours", "colour_weight"):
            hp[key] = ASTROVADER_RECIPE[key]
        hp["final_lr"] = ASTROVADER_RECIPE["final_lr"]
        hp["schedule"] = "astrovader"
        hp["widths"] = []
    elif m.preset == "form":
        from ..ssl.embedder import resolve_precision

        # the core VaDE reads the form embedding (a vector): no image options apply to it
        f = cfg.form
        hp.update({"recon_sigma": f.recon_sigma, "radial_inner": 0.0, "radial_width": 0.0, "canonicalise": False,
                   "flip_invariant": False, "augment": "none", "mask_neighbours": True, "colour_weight": 1.0,
                   "form": {"backbone": f.backbone, "input_size": f.input_size, "dim": f.dim,
                            "precision": resolve_precision(f.precision),
                            "aug_views": f.aug_views, "ssl_epochs": f.ssl_epochs, "loss": f.loss,
                            "temperature": f.temperature, "train_trunk": f.train_trunk,
                            "decoder_epochs": f.decoder_epochs, "image_recon_sigma": m.recon_sigma}})
    elif m.preset != "default":
        raise UserError(f"unknown model.preset '{m.preset}' (known: form, default, astrovader)")
    _check_hparams(hp)
    return hp


def _check_hparams(hp: dict[str, Any]) -> None:
    if hp["epochs"] <= hp["pretrain_epochs"]:
        raise UserError(f"train.epochs ({hp['epochs']}) must exceed train.pretrain_epochs "
                        f"({hp['pretrain_epochs']}): the mixture is fitted after pretraining")
    if hp["pretrain_epochs"] < 0:
        raise UserError("train.pretrain_epochs must be >= 0")
    if hp["augment"] not in AUGMENTATIONS:
        raise UserError(f"train.augment must be one of {', '.join(AUGMENTATIONS)}, got '{hp['augment']}'")
    if hp["n_components"] < 0 or (hp["n_components"] == 0 and not 1 <= hp["k_min"] <= hp["k_max"]):
        raise UserError("model.n_components must be >= 0 (0: choose K in [model.k_min, model.k_max], k_min <= k_max)")
    if hp["latent_dim"] < 1:
        raise UserError("model.latent_dim must be >= 1")
    if hp["batch_size"] < 1:
        raise UserError("train.batch_size must be >= 1")
    if not (math.isfinite(hp["recon_sigma"]) and hp["recon_sigma"] > 0):
        raise UserError("model.recon_sigma (form.recon_sigma for the form preset) must be a positive number")
    if hp["colour_weight"] <= 0:
        raise UserError("model.colour_weight must be > 0")
    if hp["preset"] == "form":
        _check_form(hp["form"])
    side = 2 ** (len(hp["widths"]) if hp["preset"] in ("default", "form") else 3)
    if hp["image_size"] % side:
        raise UserError(f"the cube's images ({hp['image_size']} px) must be a multiple of {side} px "
                        f"for model.preset '{hp['preset']}'")


def _check_form(f: dict[str, Any]) -> None:
    # ranges and allowed values are checked when the configuration loads (config.RANGES,
    # CHOICES); the backbone registry lives with the backbones
    from ..nets.backbones import BACKBONES

    if f["backbone"] not in BACKBONES:
        raise UserError(f"form.backbone must be one of {', '.join(BACKBONES)}, got '{f['backbone']}'")


# --- schedules (framework-free) --------------------------------------------------------------

def latent_weight(hp: dict[str, Any], epoch: float) -> float:
    """Weight w of the KL term at (fractional) ``epoch`` of the joint phase (0 = its start).

    ``astrovader``: ``w = base * (a^3 + 1)``, ``a`` ramping 0 -> 1 over ``cycle_ramp`` epochs,
    then held ``cycle_hold`` epochs, repeating; ``default``: 1.
    """
    if hp["schedule"] != "astrovader":
        return 1.0
    period = hp["cycle_ramp"] + hp["cycle_hold"]
    pos = epoch % period
    a = min(1.0, pos / hp["cycle_ramp"]) if hp["cycle_ramp"] > 0 else 1.0
    return hp["cycle_base"] * (a**3 + 1.0)


def lr_factor(hp: dict[str, Any], epoch: int) -> float:
    """Learning rate at ``epoch`` divided by ``lr``.

    ``astrovader``: exponential decay to ``final_lr`` at the last epoch (3e-4 -> 1e-6 over
    350 epochs); ``default``: cosine from ``lr`` to ``final_lr`` over the run.
    """
    total = max(1, hp["epochs"])
    ratio = hp["final_lr"] / hp["lr"]
    frac = min(1.0, epoch / total)
    if hp["schedule"] == "astrovader":
        return ratio**frac
    return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


# --- mixture initialisation (framework-free) ------------------------------------------------

def select_k(z: np.ndarray, k_min: int, k_max: int, seed: int) -> tuple[int, dict[int, float]]:
    """K minimising the BIC of a diagonal Gaussian mixture on ``z`` (no labels involved)."""
    from sklearn.mixture import GaussianMixture

    # at least MIN_PER_COMPONENT galaxies per component: tiny components are noise, not morphology
    k_max = max(k_min, min(k_max, len(z) // MIN_PER_COMPONENT))
    bic: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        gm = GaussianMixture(k, covariance_type="diag", n_init=2, random_state=seed, reg_covar=REG_COVAR).fit(z)
        bic[k] = float(gm.bic(z))
    best = min(bic, key=bic.get)
    return best, bic


def principal_axes(z: np.ndarray) -> np.ndarray:
    """Orthogonal D x D matrix whose rows are the principal axes of ``z`` (largest variance first).

    Signs are fixed (largest loading positive) so the result is deterministic.
    """
    cov = np.cov(np.asarray(z, dtype=np.float64).T)
    vals, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, np.argsort(-vals)].T
    signs = np.sign(vecs[np.arange(len(vecs)), np.abs(vecs).argmax(1)])
    return vecs * signs[:, None]


def fit_mixture(z: np.ndarray, k: int, seed: int, posterior_var: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """K-Means(K) then a diagonal GaussianMixture started at its centres: weights, means, variances.

    Parameters
    ----------
    z : ndarray (N, D)
        The encoder means.
    k, seed : int
    posterior_var : ndarray (N, D), optional
        The encoder variances. Added, responsibility-weighted, to each component's variance,
        so that the component is the moment-matched Gaussian of its members' q(z|x), not only of
        their means. Without it, a latent dimension the VAE left unused (every z_mean ~ 0,
        every variance ~ 1) gets a component variance ~ 0, the closed-form responsibilities
        (which divide the encoder variance by the component variance) explode there, and every
        galaxy is assigned to the widest component: the collapse seen without it.
    """
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    km = KMeans(k, n_init=10, random_state=seed).fit(z)
    gm = GaussianMixture(k, covariance_type="diag", means_init=km.cluster_centers_, random_state=seed,
                         reg_covar=REG_COVAR, max_iter=500).fit(z)
    variances = gm.covariances_.copy()
    if posterior_var is not None:
        resp = gm.predict_proba(z)
        variances += (resp.T @ posterior_var) / np.clip(resp.sum(0), 1e-12, None)[:, None]
    return {"weights": gm.weights_, "means": gm.means_, "variances": variances}


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


def prepare_model_dir(run: RunDir, cfg: Config, hp: dict[str, Any], resume: bool) -> Path:
    """``RUN/models/vade/``: checked against ``hp`` for a resume, else cleared; ``hparams.json`` written."""
    mdir = model_dir(run)
    last = mdir / LAST_CHECKPOINT
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


def check_against_cube(cfg: Config, cube: np.ndarray) -> dict[str, Any]:
    """The hyper-parameters for ``cube``, checked against its size (the CLI calls this before it
    saves the configuration, so a rejected value never reaches ``RUN/config.toml``)."""
    if cube.ndim != 4 or cube.shape[2] != cube.shape[3]:
        raise UserError(f"cube.npy must be N x C x S x S, got shape {cube.shape}")
    if len(cube) < 2:
        raise UserError("the cube holds fewer than two galaxies: nothing to train on")
    hp = resolve_hparams(cfg, cube.shape[1], cube.shape[2])
    if hp["n_components"] > len(cube):
        raise UserError(f"model.n_components ({hp['n_components']}) exceeds the number of galaxies ({len(cube)})")
    return hp


def train_run(run: RunDir, cfg: Config, resume: bool = False, callbacks: list | None = None) -> TrainResult:
    """Train the VaDE of a run; writes ``RUN/models/vade/`` (checkpoints, logs, ``model.pt``).

    Parameters
    ----------
    run : RunDir
        Must hold ``cube.npy``.
    cfg : Config
        ``model`` and ``train`` sections.
    resume : bool
        Continue from ``RUN/models/vade/last.ckpt`` (same configuration; ``train.epochs`` may
        be raised). Without it, any previous training of the run is cleared first.
    callbacks : list, optional
        Extra Lightning callbacks (tests use one to simulate a kill).

    Returns
    -------
    TrainResult
    """
    cube = run.read_cube()
    hp = check_against_cube(cfg, cube)
    if hp["preset"] == "form":
        from .form_train import train_form_run  # the form-first VaDE wraps this module's training

        return train_form_run(run, cfg, hp, resume=resume, callbacks=callbacks)
    mdir = prepare_model_dir(run, cfg, hp, resume)
    log.info("training the VaDE (%s preset) on %d galaxies: %d epochs (%d pretraining), %s x %d device(s) x %d node(s)",
             hp["preset"], len(cube), hp["epochs"], hp["pretrain_epochs"], cfg.train.accelerator,
             cfg.train.devices, cfg.train.num_nodes)
    # neighbours masked or not
    module, trainer, seconds = fit_vade(hp, model_input_path(run, hp), mdir, cfg, resume, callbacks)
    result = TrainResult(model_path=mdir / MODEL_FILE, global_rank=trainer.global_rank, epochs=hp["epochs"],
                         n_components=module.model.prior.n_components, events=module.events, seconds=seconds)
    if trainer.is_global_zero:
        save_model(module.model, hp, mdir / MODEL_FILE, extra={"init": module.init_info, "events": module.events})
        write_training_summary(mdir, module, hp, seconds, len(cube))
    return result


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
    with _quiet_lightning():
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


class _quiet_lightning:
    """Lightning's info lines (tips, device summaries) down to warnings while fitting."""

    NAMES = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.callbacks.model_checkpoint", "lightning.pytorch.accelerators.cuda",
             "lightning.fabric.utilities.seed", "lightning.pytorch.utilities.seed")

    WARNINGS = (r"Checkpoint directory .* exists and is not empty",  # hparams.json and logs live there
                r".*isinstance\(treespec, LeafSpec\).*",  # inside Lightning, not ours
                r".*litlogger.*")

    def __enter__(self):
        self.levels = {n: logging.getLogger(n).level for n in self.NAMES}
        for n in self.NAMES:
            logging.getLogger(n).setLevel(logging.WARNING)
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        for message in self.WARNINGS:
            warnings.filterwarnings("ignore", message=message)

    def __exit__(self, *exc):
        self.catch.__exit__(*exc)
        for n, level in self.levels.items():
            logging.getLogger(n).setLevel(level)
