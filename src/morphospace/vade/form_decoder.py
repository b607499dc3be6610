"""The image decoder of the form-first VaDE: latent codes -> galaxies, trained with Lightning.

The core VaDE's latent space is shaped by the form embedding alone. The image decoder is
fitted afterwards, with that space held fixed: each step draws ``z ~ q(z | x)`` for a batch
of galaxies (so that the decoder also knows the neighbourhood of every code, which is
where samples from a mixture component land) and redraws the galaxy in its canonical frame
(major axis horizontal), scored by the radially weighted squared error, the smallest over
the four flips (the code does not know which flip it saw). The weight has a floor
(``form.decoder_weight_floor``): falling to 1e-3 in the frame's corners, it left them untrained,
and every reconstruction and synthetic galaxy had coloured noise there.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from ..image.geometry import canonical_frame, radial_weight
from ..nets.batches import read_rows
from ..nets.loss_logs import loss_loggers
from ..nets.launched import ctrl_c_raised, fit_kwargs
from ..nets.shards import ShardedData
from ..nets.spawn import spawned_workers
from ..progress import quiet_lightning, with_bars
from ..run.pages import PageReleaser
from .form_model import flip_min_sq_error
from .networks import DefaultDecoder

__all__ = ["ImageDecoderModule", "CodesAndImages", "fit_image_decoder"]


class CodesAndImages:
    """Row i: ``(mu_i, log_var_i, image_i)`` (the cube may be a memmap)."""

    def __init__(self, mu: np.ndarray, log_var: np.ndarray, cube):
        if not len(mu) == len(log_var) == len(cube):
            raise ValueError("codes and images must have one row per galaxy")
        self.mu, self.log_var, self.cube = mu, log_var, cube
        self.pages = PageReleaser.scattered(cube)

    def __len__(self) -> int:
        return len(self.mu)

    def __getitem__(self, i: int):
        return (torch.from_numpy(np.asarray(self.mu[i], dtype=np.float32)),
                torch.from_numpy(np.asarray(self.log_var[i], dtype=np.float32)),
                torch.from_numpy(np.array(self.cube[i], dtype=np.float32)))

    def __getitems__(self, index: list[int]) -> list:
        """A batch's rows in one read, the images' pages released as they go (shuffled epochs)."""
        images = torch.from_numpy(read_rows(self.cube, index, pages=self.pages))
        mu, log_var = (torch.from_numpy(np.asarray(a[index], dtype=np.float32)) for a in (self.mu, self.log_var))
        return list(zip(mu, log_var, images))


class ImageDecoderModule(pl.LightningModule):
    """Trains a :class:`DefaultDecoder` on fixed codes (see the module docstring)."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, widths=(32, 64, 128, 256),
                 lr: float = 1e-3, epochs: int = 12, seed: int = 0, radial_inner: float = 0.5,
                 radial_width: float = 0.25, weight_floor: float = 0.0, upsample: str = "transposed"):
        super().__init__()
        self.decoder = DefaultDecoder(channels, image_size, latent_dim, tuple(widths), upsample)
        self.register_buffer("weight", radial_weight(image_size, radial_inner, radial_width, weight_floor))
        self.lr, self.epochs, self.seed = float(lr), int(epochs), int(seed)

    def training_step(self, batch, batch_idx):
        """Decode a ``z ~ q(z | x)`` drawn from a per-step generator; the loss is the radially weighted
        squared error to the canonical-frame image, smallest over the four flips, per pixel.
        """
        mu, log_var, x = batch
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.global_step, self.global_rank])
                                              .generate_state(1)[0]))
        z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=g).to(mu)
        target = canonical_frame(x)
        loss = flip_min_sq_error(target, self.decoder(z), self.weight).mean() / target[0].numel()
        self.log("decoder_mse", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        """Adam on the decoder, cosine-annealed per epoch over ``epochs`` to 5% of ``lr``."""
        opt = torch.optim.Adam(self.decoder.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.epochs), eta_min=self.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def fit_image_decoder(mu: np.ndarray, log_var: np.ndarray, cube, *, widths=(32, 64, 128, 256), epochs: int = 12,
                      batch_size: int = 128, lr: float = 1e-3, seed: int = 0, radial_inner: float = 0.5,
                      radial_width: float = 0.25, weight_floor: float = 0.0, upsample: str = "transposed",
                      out_dir=None, trainer_kwargs: dict | None = None, loader_workers: int = 0) -> DefaultDecoder:
    """Fit the image decoder to ``(mu, log_var)`` codes of the galaxies in ``cube``; returns it (eval mode).
    ``weight_floor``: the least pixel weight (:func:`~morphospace.image.geometry.radial_weight`);
    ``upsample``: how its stages double the map (:class:`~morphospace.vade.networks.DefaultDecoder`);
    ``loader_workers``: processes reading the cube (``train.loader_workers``)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    data = CodesAndImages(mu, log_var, cube)
    module = ImageDecoderModule(cube.shape[1], cube.shape[2], mu.shape[1], widths, lr=lr, epochs=epochs, seed=seed,
                                radial_inner=radial_inner, radial_width=radial_width, weight_floor=weight_floor,
                                upsample=upsample)
    kw = dict(max_epochs=epochs, logger=loss_loggers(out_dir, "decoder") if out_dir else False, enable_checkpointing=False,
              enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False, log_every_n_steps=1,
              default_root_dir=str(out_dir) if out_dir else None, deterministic=True)
    kw.update(trainer_kwargs or {})
    with quiet_lightning():
        trainer = pl.Trainer(**with_bars(fit_kwargs(kw)))
        with spawned_workers(trainer, Path(out_dir) / "spawn" if out_dir else None), ctrl_c_raised():
            trainer.fit(module, datamodule=ShardedData(data, batch_size, seed, workers=loader_workers))
    return module.decoder.eval()

