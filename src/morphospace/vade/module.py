"""The VaDE's LightningModule: pretraining as an autoencoder, the mixture initialised by BIC,
then the VaDE loss with its guards (empty or collapsing components re-split, latent weight
cycles), logged per epoch; checkpoints carry the phase so that a resume continues it.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from .data import augment
from .hparams import latent_weight, lr_factor
from .mixture import fit_mixture, principal_axes, select_k
from .networks import build_model
from .prior import PRIOR_LOG_VAR_RANGE

log = logging.getLogger("morphospace")

__all__ = ["EPOCH_TERMS", "step_generator", "VaDEModule"]


EPOCH_TERMS = ("loss", "reconstruction", "kl", "neg_elbo", "latent_weight",
               "expected_log_pz_c", "expected_log_pc", "entropy_c", "neg_entropy_z")


# --- data ------------------------------------------------------------------------------------

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
        """Whether this epoch is in the joint phase (the VaDE loss): past ``pretrain_epochs``."""
        return self.current_epoch >= self.hp["pretrain_epochs"]

    def on_train_epoch_start(self) -> None:
        """At the first joint epoch, initialise the mixture (once); reset the epoch's sums and counts."""
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
        """Loss of one augmented batch: the VAE loss (KL to N(0, I)) while pretraining, then the VaDE
        loss with the KL weighted by :func:`~morphospace.vade.hparams.latent_weight`.
        """
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
        """Sum the epoch's terms across processes and log their means, the phase and the learning rate;
        in the joint phase, guard against empty, starved, collapsing or exploding components.
        """
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
        """Adam (weight decay on the networks, none on the prior), the rate scaled per epoch by
        :func:`~morphospace.vade.hparams.lr_factor`.
        """
        net = [p for n, p in self.model.named_parameters() if not n.startswith("prior.")]
        groups = [{"params": net, "weight_decay": self.hp["weight_decay"]},
                  {"params": list(self.model.prior.parameters()), "weight_decay": 0.0}]
        opt = torch.optim.Adam(groups, lr=self.hp["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(self.hp, e))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # checkpoint state -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add the mixture's initialisation info, the guard's events and the torch, NumPy and Python RNG
        states to the checkpoint (as plain tensors and lists).
        """
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
        """Restore what :meth:`on_save_checkpoint` stored, so a resumed run continues the same random streams."""
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
