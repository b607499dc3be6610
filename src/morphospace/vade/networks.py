"""Encoder and decoder networks, and the presets that assemble a :class:`~.model.VaDE`.

``default``: a small convolutional VAE for a CPU laptop (64 x 64 input, C channels). Four
stride-2 convolutions (widths 32-64-128-256 by default) with GroupNorm and SiLU down to a
4 x 4 x 256 map, linear heads for the mean and log-variance; the decoder mirrors it with
transposed convolutions. About 0.4 GFLOP per training image: ~200 images/s on two cores.

* GroupNorm rather than BatchNorm: its output does not depend on the batch, so any batch size
  works (including a last batch of one), inference equals training, and DDP needs no
  synchronised statistics.
* Linear output, not sigmoid: the cube is sky-subtracted, so the background - most of the
  pixels - is noise scattered around zero with negative values, and bright cores exceed 1
  slightly. A sigmoid cannot reach either and its gradient vanishes exactly where most pixels
  are; a linear output is the natural mean of the Gaussian likelihood used for the
  reconstruction term (figures clip to [0, 1] for display).

``form``: the VaDE over a galaxy's *form embedding* (:mod:`morphospace.ssl`) rather than its
pixels: a two-layer MLP from the standardised embedding (N, F) to ``(mu, log_var)`` and its
mirror back to the embedding. The mixture prior then groups galaxies by what the embedding
holds (form, invariant to orientation, handedness, seeing and brightness by construction), and
a separate image decoder (:mod:`morphospace.vade.form_decoder`) turns latent codes into images.

``astrovader``: the published network (:mod:`morphospace.vade.astrovader_net`), imported
lazily so that the default preset never depends on it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .model import VaDE

__all__ = ["DefaultEncoder", "DefaultDecoder", "RepeatPixels", "MLPEncoder", "MLPDecoder", "build_vade", "build_model",
           "max_components", "PRESETS"]

PRESETS = ("default", "astrovader", "form")


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class DefaultEncoder(nn.Module):
    """Image (N, C, S, S) -> ``(mu, log_var)`` (N, D), S a multiple of 2**len(widths).

    Parameters
    ----------
    channels : int
        Input channels C.
    image_size : int
        S.
    latent_dim : int
        D.
    widths : sequence of int
        Output channels of the stride-2 stages.
    """

    def __init__(self, channels: int, image_size: int, latent_dim: int,
                 widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        n_down = len(widths)
        if image_size % (2**n_down) or image_size < 2**n_down:
            raise ValueError(f"image_size must be a multiple of {2**n_down}, got {image_size}")
        layers: list[nn.Module] = []
        c = channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.GroupNorm(_groups(w), w), nn.SiLU()]
            c = w
        self.body = nn.Sequential(*layers)
        side = image_size // 2**n_down
        self.flat = c * side * side
        self.mean = nn.Linear(self.flat, latent_dim)
        self.log_var = nn.Linear(self.flat, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_var)`` (N, D) of images (N, C, S, S): the stride-2 stages, then the linear heads."""
        h = self.body(x).flatten(1)
        return self.mean(h), self.log_var(h)


UPSAMPLING = ("transposed", "nearest")


class RepeatPixels(nn.Module):
    """Maps (N, C, H, W) -> (N, C, 2H, 2W), each pixel repeated 2 x 2: ``nn.Upsample``'s nearest mode, as
    a view and a copy, whose gradient (a sum over each 2 x 2 block) is deterministic on a GPU; the
    resizing kernels' gradients there add atomically, in an order that varies between runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class DefaultDecoder(nn.Module):
    """Latent (N, D) -> image (N, C, S, S), mirror of :class:`DefaultEncoder`, linear output.

    ``upsample``: each stage doubles the map by a stride-2 transposed convolution (``transposed``),
    or by repeating each pixel 2 x 2 before a 3 x 3 convolution (``nearest``, a resize-convolution,
    Odena et al. 2016, which draws no checkerboard; :class:`RepeatPixels`).
    """

    def __init__(self, channels: int, image_size: int, latent_dim: int,
                 widths: tuple[int, ...] = (32, 64, 128, 256), upsample: str = "transposed"):
        super().__init__()
        n_up = len(widths)
        if image_size % (2**n_up) or image_size < 2**n_up:
            raise ValueError(f"image_size must be a multiple of {2**n_up}, got {image_size}")
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {UPSAMPLING}, got {upsample!r}")
        self.side = image_size // 2**n_up
        self.top = widths[-1]
        self.fc = nn.Linear(latent_dim, self.top * self.side * self.side)
        layers: list[nn.Module] = [nn.SiLU()]
        c = self.top
        for w in list(widths[::-1][1:]) + [widths[0]]:
            step = ([nn.ConvTranspose2d(c, w, 4, 2, 1)] if upsample == "transposed"
                    else [RepeatPixels(), nn.Conv2d(c, w, 3, 1, 1)])
            layers += step + [nn.GroupNorm(_groups(w), w), nn.SiLU()]
            c = w
        layers += [nn.Conv2d(c, channels, 3, 1, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, C, S, S) from codes ``z`` (N, D): linear to the smallest map, then the stages that
        double it (linear output).
        """
        h = self.fc(z).reshape(z.shape[0], self.top, self.side, self.side)
        return self.body(h)


class MLPEncoder(nn.Module):
    """Vector (N, F) -> ``(mu, log_var)`` (N, D): Linear-LayerNorm-SiLU, twice, then linear heads."""

    def __init__(self, in_dim: int, latent_dim: int, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU())
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_var)`` (N, D) of vectors ``x`` (N, F)."""
        h = self.body(x)
        return self.mean(h), self.log_var(h)


class MLPDecoder(nn.Module):
    """Latent (N, D) -> vector (N, F), the mirror of :class:`MLPEncoder` (``fc`` first, for
    :meth:`VaDE.rotate_latent`)."""

    def __init__(self, out_dim: int, latent_dim: int, hidden: int = 256):
        super().__init__()
        self.fc = nn.Linear(latent_dim, hidden)
        self.body = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.LayerNorm(hidden),
                                  nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Vectors (N, F) from codes ``z`` (N, D)."""
        return self.body(self.fc(z))


def build_vade(preset: str, channels: int, image_size: int, latent_dim: int, n_components: int,
               **options: Any) -> VaDE:
    """Assemble a :class:`VaDE` for a preset.

    Parameters
    ----------
    preset : {"default", "astrovader", "form"}
    channels, image_size, latent_dim, n_components : int
        For ``form``, ``channels`` is the embedding's length F and ``image_size`` is 0.
    **options
        Passed to :class:`VaDE` (``recon_sigma``, ``radial_inner``, ``radial_width``,
        ``canonicalise``, ``flip_invariant``) and, for ``default``, ``widths``.
    """
    widths = tuple(options.pop("widths", (32, 64, 128, 256)))
    if preset == "default":
        enc = DefaultEncoder(channels, image_size, latent_dim, widths)
        dec = DefaultDecoder(channels, image_size, latent_dim, widths)
    elif preset == "astrovader":
        enc, dec = _astrovader_networks(channels, image_size, latent_dim)
    elif preset == "form":
        enc, dec = MLPEncoder(channels, latent_dim), MLPDecoder(channels, latent_dim)
    else:
        raise ValueError(f"unknown model preset {preset!r} (known: {', '.join(PRESETS)})")
    return VaDE(enc, dec, n_components=n_components, latent_dim=latent_dim, image_size=image_size, **options)


def max_components(hp: dict[str, Any]) -> int:
    """Mixture slots to allocate: K, or the largest K the BIC may pick (``n_components = 0``)."""
    return hp["n_components"] if hp["n_components"] > 0 else hp["k_max"]


def build_model(hp: dict[str, Any]) -> VaDE:
    """The :class:`VaDE` described by a hyper-parameter dict (``morphospace.vade.hparams.resolve_hparams``)."""
    opts = dict(recon_sigma=hp["recon_sigma"], radial_inner=hp["radial_inner"], radial_width=hp["radial_width"],
                canonicalise=hp["canonicalise"], flip_invariant=hp["flip_invariant"],
                colour_weight=hp.get("colour_weight", 1.0))
    if hp["preset"] == "default":
        opts["widths"] = tuple(hp["widths"])
    return build_vade(hp["preset"], hp["channels"], hp["image_size"], hp["latent_dim"], max_components(hp), **opts)


# --- the published network (lives in astrovader_net.py, written separately) ----------------

def _astrovader_networks(channels: int, image_size: int, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    from .astrovader_net import AstroVaDErDecoder, AstroVaDErEncoder  # lazy: only this preset needs it

    return (AstroVaDErEncoder(latent_dim=latent_dim, image_size=image_size, channels=channels),
            AstroVaDErDecoder(latent_dim=latent_dim, image_size=image_size, channels=channels))
