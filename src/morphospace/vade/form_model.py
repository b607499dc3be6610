"""The form-first VaDE: a Gaussian-mixture VAE over the form embedding, with an image decoder.

:class:`FormVaDE` chains three trained parts and behaves like a
:class:`~morphospace.vade.model.VaDE` on images:

``embedder``  images -> form embedding (:mod:`morphospace.ssl.embedder`), standardised;
``core``      a VaDE over the embedding whose mixture prior clusters it (``form.core``: the linear
              core of :mod:`morphospace.vade.linear_core` by default, or an MLP VaDE); its
              per-galaxy ``(mu, log_var)``, cluster probabilities and log-likelihood are the
              model's;
``image_decoder``  latent code -> image in the canonical frame (major axis horizontal),
              trained after the core on its codes (:mod:`morphospace.vade.form_decoder`), so
              that reconstructions and synthetic galaxies exist without the pixels ever
              pulling the latent space back towards size, brightness and orientation.
"""

from __future__ import annotations

import torch
from torch import nn

from ..image.geometry import best_flip, canonical_frame, flip_errors, radial_weight
from ..ssl.embedder import FormEmbedder
from .generate import Generative
from .hparams import embedding_dim, with_earlier_form
from .model import VaDE
from .networks import DefaultDecoder

__all__ = ["FormVaDE", "flip_min_sq_error"]


def flip_min_sq_error(target: torch.Tensor, x_hat: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-image ``sum w (x - x_hat)^2``, the smallest over the four flips of the target."""
    return flip_errors(target, x_hat, lambda t, xh: (weight * (t - xh) ** 2).sum((1, 2, 3))).min(1).values


class FormVaDE(Generative, nn.Module):
    """Images -> embedding -> mixture latent; latent -> image. See the module docstring.

    Parameters
    ----------
    embedder : FormEmbedder
    core : LinearCore or VaDE
        Over the standardised embedding (``emb_mean``, ``emb_std`` buffers).
    image_decoder : DefaultDecoder
    image_size : int
    recon_sigma : float
        Pixel noise of the image decoder's Gaussian likelihood (for the reconstruction error).
    radial_inner, radial_width : float
        Weight of the image reconstruction error towards the frame edge.
    """

    canonicalise = True
    flip_invariant = True

    def __init__(self, embedder: FormEmbedder, core: VaDE, image_decoder: DefaultDecoder, image_size: int,
                 recon_sigma: float = 0.1, radial_inner: float = 0.5, radial_width: float = 0.25):
        super().__init__()
        self.embedder, self.core, self.image_decoder = embedder, core, image_decoder
        self.register_buffer("emb_mean", torch.zeros(embedder.head.dim))
        self.register_buffer("emb_std", torch.ones(embedder.head.dim))
        self.register_buffer("pixel_weight", radial_weight(image_size, radial_inner, radial_width))
        self.image_size = int(image_size)
        self.recon_sigma = float(recon_sigma)

    @property
    def prior(self):
        """The core's mixture prior."""
        return self.core.prior

    @property
    def latent_dim(self) -> int:
        """Dimension D of the core's latent space."""
        return self.core.latent_dim

    # images <-> codes ---------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The image in the frame the image decoder draws (major axis horizontal)."""
        return canonical_frame(x)

    def standardise(self, embedding: torch.Tensor) -> torch.Tensor:
        """The raw form embedding standardised with the ``emb_mean`` and ``emb_std`` buffers (the core's input).

        Parameters
        ----------
        embedding : Tensor (N, F)

        Returns
        -------
        Tensor (N, F)
        """
        return (embedding - self.emb_mean) / self.emb_std

    def encode_embedding(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_var)`` from a precomputed (raw) form embedding."""
        return self.core.encode(self.standardise(embedding))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_var)`` of q(z | x) for images."""
        return self.encode_embedding(self.embedder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in the canonical frame from latent codes, by the image decoder.

        Parameters
        ----------
        z : Tensor (N, D)

        Returns
        -------
        Tensor (N, C, S, S)
        """
        return self.image_decoder(z)

    def encode_with_target(self, x: torch.Tensor, embedding: torch.Tensor | None = None):
        """``(target, mu, log_var)``: what the decoder should redraw, and the code."""
        mu, log_var = self.encode_embedding(embedding) if embedding is not None else self.encode(x)
        return self.prepare(x), mu, log_var

    def reconstruction_error(self, target: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Per-image ``sum w (x - x_hat)^2 / (2 recon_sigma^2)``, the smallest over the four flips of the target.

        Parameters
        ----------
        target : Tensor (N, C, S, S)
            Images in the canonical frame (:meth:`prepare`).
        x_hat : Tensor (N, C, S, S)
            The image decoder's output.

        Returns
        -------
        Tensor (N,)
        """
        return 0.5 / self.recon_sigma**2 * flip_min_sq_error(target, x_hat, self.pixel_weight)

    def aligned_target(self, target: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The flip of each target that ``x_hat`` matches best: what a reconstruction is compared with.

        Parameters
        ----------
        target : Tensor (N, C, S, S)
            Images in the canonical frame.
        x_hat : Tensor (N, C, S, S)

        Returns
        -------
        Tensor (N, C, S, S)
        """
        w = self.pixel_weight
        return best_flip(target, flip_errors(target, x_hat, lambda t, xh: (w * (t - xh) ** 2).sum((1, 2, 3))))


def core_hparams(hp: dict) -> dict:
    """The hyper-parameters of the core VaDE of a ``form`` model: it reads the form embedding."""
    return {**hp, "channels": embedding_dim(hp["form"]), "image_size": 0}



def build_form_vade(hp: dict) -> FormVaDE:
    """An untrained :class:`FormVaDE` shaped by ``hp`` (to load a saved state into)."""
    from ..ssl.embedder import TrunkTaps, make_head
    from .linear_core import LinearCore
    from .networks import build_model

    f = hp["form"]
    trunk = TrunkTaps(f["backbone"], input_size=f["input_size"], pretrained=False, precision=f.get("precision", "32"),
                      sharpen=f.get("sharpen", 0.0), announce=False)  # models saved before form.sharpen: none
    # models saved before form.embed_views averaged all 8 views
    head = make_head(trunk.dim, f["dim"], f.get("heads", 1))
    embedder = FormEmbedder(trunk, head, views=f.get("embed_views") or 8)
    if f.get("core", "mlp") == "linear":
        core = LinearCore(embedding_dim(f), hp["latent_dim"], f["n_components"])
    else:
        core = build_model(core_hparams(hp))
    decoder = DefaultDecoder(hp["channels"], hp["image_size"], hp["latent_dim"], tuple(hp["widths"]),
                             with_earlier_form(f)["decoder_upsample"])  # as a model saved before it trained
    return FormVaDE(embedder, core, decoder, hp["image_size"], recon_sigma=f["image_recon_sigma"])
