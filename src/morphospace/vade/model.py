"""VaDE: a variational autoencoder with a Gaussian-mixture prior (Jiang et al. 2017).

Generative model: ``c ~ Cat(pi)``, ``z | c ~ N(mu_c, diag var_c)``, ``x | z ~ p_theta(x | z)``.
Inference: ``q(z, c | x) = q(z | x) q(c | x)`` with ``q(z | x) = N(mu(x), diag sigma^2(x))``
from the encoder and ``q(c | x)`` the responsibilities below. The negative ELBO of one image is

.. math::

    -\\mathcal{L}(x) = -E_q[\\log p(x|z)] + \\mathrm{KL}\\big(q(z,c|x) \\,\\|\\, p(z,c)\\big)

and the KL term, written out (every expectation in closed form, ``gamma_c = q(c|x)``):

.. math::

    \\mathrm{KL} = -\\sum_c \\gamma_c E_q[\\log N(z|\\mu_c, \\sigma^2_c)]
                   - \\sum_c \\gamma_c (\\log \\pi_c - \\log \\gamma_c)
                   + E_q[\\log q(z|x)]

    E_q[\\log N(z|\\mu_c,\\sigma^2_c)] = -\\tfrac12 \\sum_d [\\log 2\\pi + \\log \\sigma^2_{cd}
                   + (\\sigma^2_d + (\\mu_d - \\mu_{cd})^2) / \\sigma^2_{cd}]

    E_q[\\log q(z|x)] = -\\tfrac12 \\sum_d [\\log 2\\pi + 1 + \\log \\sigma^2_d]

The responsibilities are the ``q(c|x)`` that minimise that KL for the given ``q(z|x)``:
``log gamma_c = log_softmax_c(log pi_c + E_q[log N(z | mu_c, var_c)])``. They are computed from
the encoder's mean and variance (never from a sampled ``z``, no batch-dependent temperature), so a
galaxy's probabilities do not depend on the batch it is in or on random draws, and the loss is
defined for any batch size. With that choice the KL collapses to
``E_q[log q(z|x)] - logsumexp_c(log pi_c + E_q[log N(z|mu_c, var_c)])`` (tested).

This module is framework code (torch); it knows nothing about Lightning or run directories.
"""

from __future__ import annotations


import torch
from torch import nn

from ..image.geometry import FLIP_GROUP, best_flip, canonical_frame, dihedral, flip_errors, radial_weight
from .generate import Generative

# the prior and the loss's closed forms, re-exported: the model's users import them from here
from .prior import (ENCODER_LOG_VAR_RANGE, LOG_2PI, PRIOR_LOG_VAR_RANGE, LossTerms, MixturePrior,  # noqa: F401
                    gaussian_expected_log_prob, gaussian_neg_entropy, standard_normal_kl, vade_kl_terms)

__all__ = [
    "ENCODER_LOG_VAR_RANGE",
    "PRIOR_LOG_VAR_RANGE",
    "LOG_2PI",
    "MixturePrior",
    "VaDE",
    "LossTerms",
    "gaussian_expected_log_prob",
    "gaussian_neg_entropy",
    "standard_normal_kl",
    "vade_kl_terms",
]

class VaDE(Generative, nn.Module):
    """Encoder + decoder + Gaussian-mixture prior, with the VaDE loss.

    Parameters
    ----------
    encoder : nn.Module
        Maps images (N, C, H, W) to ``(mu, log_var)``, each (N, D).
    decoder : nn.Module
        Maps latent codes (N, D) to images (N, C, H, W).
    n_components : int
        Number of mixture slots (see :class:`MixturePrior`).
    latent_dim : int
        D.
    image_size : int
        H = W (for the radial weight).
    recon_sigma : float
        Reconstruction likelihood ``N(x | decoder(z), recon_sigma^2 / w)`` per pixel, with ``w``
        the radial weight; the reconstruction term is ``sum w (x - x_hat)^2 / (2 sigma^2)``
        (constants dropped). ``sigma = 1/sqrt(2)`` is the plain per-image sum of squares.
    radial_inner, radial_width : float
        The radial weight (:func:`~morphospace.image.geometry.radial_weight`); ``radial_inner = 0`` switches it off.
    canonicalise : bool
        Rotate every input so its major axis is horizontal (:func:`~morphospace.image.geometry.canonical_angle`) before
        encoding; the decoder then works in that frame and the reconstruction target is the
        rotated image. Makes the code blind to position angle by construction.
    colour_weight : float
        Weight of colour in the reconstruction error of 3-band images: the error is split into
        its grey part (the same in every band) and the rest (colour), and the colour part's
        squared error is multiplied by ``colour_weight ** 2``. 1 is the plain error.
    flip_invariant : bool
        Average the encoder's ``(mu, log_var)`` over the four flips of :data:`FLIP_GROUP`, so
        that the code is exactly invariant to them (handedness, and the 180-degree ambiguity of
        the canonical frame); the reconstruction error is then the smallest over the four flips
        of the target (the decoder cannot know which flip it was shown).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, n_components: int, latent_dim: int,
                 image_size: int, recon_sigma: float = 2 ** -0.5, radial_inner: float = 0.0,
                 radial_width: float = 0.0, canonicalise: bool = False, flip_invariant: bool = False,
                 colour_weight: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = MixturePrior(n_components, latent_dim)
        self.latent_dim = int(latent_dim)
        self.image_size = int(image_size)
        self.recon_sigma = float(recon_sigma)
        self.canonicalise = bool(canonicalise)
        self.flip_invariant = bool(flip_invariant)
        self.colour_weight = float(colour_weight)
        # image_size 0: the input is a vector (the ``form`` preset), weighted uniformly
        weight = radial_weight(image_size, radial_inner, radial_width) if image_size else torch.ones(())
        self.register_buffer("pixel_weight", weight)

    # encoding ------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The image as the encoder sees it and the decoder should reproduce it."""
        return canonical_frame(x) if self.canonicalise else x

    def _encode_prepared(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip_invariant:
            n = x.shape[0]
            stacked = torch.cat([dihedral(x, k) for k in FLIP_GROUP], 0)
            mu, log_var = self.encoder(stacked)
            mu = mu.reshape(len(FLIP_GROUP), n, -1).mean(0)
            log_var = log_var.reshape(len(FLIP_GROUP), n, -1).mean(0)
        else:
            mu, log_var = self.encoder(x)
        lo, hi = ENCODER_LOG_VAR_RANGE
        return mu, log_var.clamp(lo, hi)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_var)`` of q(z | x) for raw (un-canonicalised) images."""
        return self._encode_prepared(self.prepare(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in the prepared frame (:meth:`prepare`) from latent codes.

        Parameters
        ----------
        z : Tensor (N, D)

        Returns
        -------
        Tensor (N, C, H, W)
        """
        return self.decoder(z)

    def encode_with_target(self, x: torch.Tensor, embedding: torch.Tensor | None = None):
        """``(target, mu, log_var)``: the image as the decoder should redraw it, and its code.
        (``embedding`` is for models that encode a precomputed vector; unused here.)"""
        target = self.prepare(x)
        mu, log_var = self._encode_prepared(target)
        return target, mu, log_var

    @staticmethod
    def reparameterise(mu: torch.Tensor, log_var: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw ``z = mu + exp(log_var / 2) * eps`` of q(z | x), with ``eps ~ N(0, I)``.

        Parameters
        ----------
        mu, log_var : Tensor (N, D)
        generator : torch.Generator, optional
            CPU generator of ``eps`` (reproducible training); the draw is moved to ``mu``'s device.

        Returns
        -------
        Tensor (N, D)
        """
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return mu + torch.exp(0.5 * log_var) * eps

    # loss ----------------------------------------------------------------------------
    def _weighted_sq_error(self, target: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Per-image ``sum w |x - x_hat|^2`` with the colour part weighted (see ``colour_weight``)."""
        d = target - x_hat
        sq = d**2
        if self.colour_weight != 1.0 and d.shape[1] == 3:
            grey = d.mean(1, keepdim=True)
            # per pixel, |d|^2 = 3 grey^2 + |d - grey|^2 (an orthogonal split): the grey term is
            # broadcast over the 3 bands, the colour part is up-weighted
            sq = grey**2 + self.colour_weight**2 * (d - grey) ** 2
        return (self.pixel_weight * sq).sum(tuple(range(1, d.dim())))

    def reconstruction_error(self, target: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Per-image ``sum w (x - x_hat)^2 / (2 sigma^2)``, the smallest over flips if flip-invariant."""
        scale = 0.5 / self.recon_sigma**2
        if not self.flip_invariant:
            return scale * self._weighted_sq_error(target, x_hat)
        return scale * flip_errors(target, x_hat, self._weighted_sq_error).min(1).values

    def loss_terms(self, x: torch.Tensor, mode: str = "vade",
                   generator: torch.Generator | None = None) -> LossTerms:
        """Per-image loss terms.

        Parameters
        ----------
        x : Tensor (N, C, H, W)
            Raw images (any batch size).
        mode : {"vade", "vae", "ae"}
            ``vade``: KL to the mixture prior; ``vae``: KL to N(0, I) (warm-up);
            ``ae``: deterministic autoencoder (``z = mu``, no KL).
        generator : torch.Generator, optional
            For the reparameterisation noise (reproducible training).
        """
        target = self.prepare(x)
        mu, log_var = self._encode_prepared(target)
        z = mu if mode == "ae" else self.reparameterise(mu, log_var, generator)
        recon = self.reconstruction_error(target, self.decode(z))
        if mode == "ae":
            return LossTerms(reconstruction=recon, kl=torch.zeros_like(recon))
        if mode == "vae":
            return LossTerms(reconstruction=recon, kl=standard_normal_kl(mu, log_var))
        if mode != "vade":
            raise ValueError(f"unknown loss mode {mode!r}")
        t = vade_kl_terms(mu, log_var, self.prior)
        return LossTerms(reconstruction=recon, kl=t["kl"], expected_log_pz_c=t["expected_log_pz_c"],
                         expected_log_pc=t["expected_log_pc"], entropy_c=t["entropy_c"],
                         neg_entropy_z=t["neg_entropy_z"], log_gamma=t["log_gamma"])

    @torch.no_grad()
    def rotate_latent(self, rotation: torch.Tensor) -> None:
        """Re-express the latent space in rotated axes ``z' = R z`` (R orthogonal, D x D).

        The encoder's mean head becomes ``R W, R b`` and the decoder's first layer ``W R^T``, so
        the decoded image of every galaxy is unchanged, as is the KL to N(0, I) (isotropic). A
        VAE's latent axes are arbitrary (that KL is rotation-invariant) and come out strongly
        correlated; turning them to the principal axes of the data before fitting a *diagonal*
        mixture lets each component describe a group with D variances instead of needing many
        components per correlated group. The log-variance head is kept (the encoder variances
        are small and nearly isotropic after warm-up; training adapts them).
        Needs ``encoder.mean`` and ``decoder.fc`` to be ``nn.Linear`` (true of both presets).
        """
        mean, fc = getattr(self.encoder, "mean", None), getattr(self.decoder, "fc", None)
        if not isinstance(mean, nn.Linear) or not isinstance(fc, nn.Linear):
            raise TypeError("rotate_latent needs encoder.mean and decoder.fc to be nn.Linear")
        r = rotation.to(mean.weight)
        if r.shape != (self.latent_dim, self.latent_dim):
            raise ValueError(f"rotation must be {self.latent_dim} x {self.latent_dim}, got {tuple(r.shape)}")
        mean.weight.copy_(r @ mean.weight)
        mean.bias.copy_(r @ mean.bias)
        fc.weight.copy_(fc.weight @ r.T)

    def aligned_target(self, target: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The flip of each (prepared) target that the reconstruction matches best (identity
        unless flip-invariant): what the reconstruction should be compared with."""
        if not self.flip_invariant:
            return target
        return best_flip(target, flip_errors(target, x_hat, self._weighted_sq_error))

    # inference -----------------------------------------------------------------------
