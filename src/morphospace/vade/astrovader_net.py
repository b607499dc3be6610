"""The published AstroVaDEr encoder and decoder (Spindler, Geach & Smith 2021, MNRAS 502, 985) in PyTorch.

The layers follow the released Keras model exactly (the paper's architecture, checked layer by
layer against the released weights ``saved_weights.h5``: 871,381 parameters), so that
the published weights can be loaded with :mod:`morphospace.vade.keras_import` and
reproduce the Keras outputs. Two Keras conventions are kept on purpose:

* Flatten and the decoder's first Reshape use (H, W, C) order: the encoder permutes
  NCHW -> NHWC before flattening and the decoder reshapes to (16, 16, 16) as HWC then
  permutes back, so Keras dense kernels load by a plain transpose.
* UpSampling2D(interpolation="bilinear") under TF1 is the legacy ``resize_bilinear``
  (``align_corners=False``, no half-pixel centres): the source coordinate of output
  pixel ``i`` is ``i * in / out``. That is not ``torch.nn.functional.interpolate``'s
  convention; :class:`LegacyBilinearUpsample` implements it.

The Keras model's training-only GaussianNoise layer on the input is not reproduced: it is
the identity at inference and the published recipe as reproduced here
(:data:`morphospace.vade.hparams.ASTROVADER_RECIPE`) does not use it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AstroVaDErDecoder",
    "AstroVaDErEncoder",
    "LegacyBilinearUpsample",
    "legacy_bilinear_matrix",
    "legacy_bilinear_resize",
]

LEAKY_SLOPE = 0.1  # Keras LeakyReLU(alpha=0.1) after every hidden layer
N_POOL = 3  # three 2x poolings in the encoder, three 2x up-samplings in the decoder
BOTTLENECK_CHANNELS = 16


def legacy_bilinear_matrix(
    n_in: int,
    n_out: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Interpolation matrix of TF1's legacy ``resize_bilinear`` along one axis.

    Output index ``i`` samples source coordinate ``s = i * n_in / n_out``
    (``align_corners=False``, ``half_pixel_centers=False``): with ``lo = floor(s)``,
    ``hi = min(lo + 1, n_in - 1)`` and ``t = s - lo`` the output is
    ``(1 - t) * x[lo] + t * x[hi]``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths of the axis.
    dtype, device
        Of the returned matrix.

    Returns
    -------
    torch.Tensor
        ``(n_out, n_in)`` matrix ``A`` with ``y = A @ x``.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"axis lengths must be positive, got {n_in} -> {n_out}")
    # float64 for the coordinates so that i * n_in / n_out matches TF's float scale exactly
    # for the power-of-two sizes used here
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = torch.floor(src).long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    t = src - lo.to(torch.float64)
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    mat.index_put_((rows, lo), 1.0 - t, accumulate=True)
    mat.index_put_((rows, hi), t, accumulate=True)
    return mat.to(dtype=dtype, device=device)


def legacy_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``x`` (N, C, H, W) to ``size`` with TF1's legacy bilinear sampling.

    Separable: rows then columns, each a matrix product with
    :func:`legacy_bilinear_matrix`.
    """
    if x.ndim != 4:
        raise ValueError(f"expected an N x C x H x W tensor, got shape {tuple(x.shape)}")
    h_out, w_out = size
    a_h = legacy_bilinear_matrix(x.shape[2], h_out, dtype=x.dtype, device=x.device)
    a_w = legacy_bilinear_matrix(x.shape[3], w_out, dtype=x.dtype, device=x.device)
    return torch.einsum("oh,nchw,pw->ncop", a_h, x, a_w)


class LegacyBilinearUpsample(nn.Module):
    """Keras ``UpSampling2D(size, interpolation="bilinear")`` as it behaved under TF1.

    Parameters
    ----------
    scale_factor : int, default 2
        Integer up-sampling factor on both spatial axes.
    """

    def __init__(self, scale_factor: int = 2) -> None:
        super().__init__()
        if int(scale_factor) != scale_factor or scale_factor < 1:
            raise ValueError(f"scale_factor must be a positive integer, got {scale_factor}")
        self.scale_factor = int(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Up-sample (N, C, H, W) by ``scale_factor`` on both axes (:func:`legacy_bilinear_resize`)."""
        s = self.scale_factor
        return legacy_bilinear_resize(x, (x.shape[2] * s, x.shape[3] * s))

    def extra_repr(self) -> str:
        """The scale factor and TF1's sampling convention, shown by ``print(module)``."""
        return f"scale_factor={self.scale_factor}, align_corners=False, half_pixel_centers=False"


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    # Keras 'same' with stride 1 and an odd kernel pads k // 2 on every side
    return nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2)


def _check_size(image_size: int) -> int:
    factor = 2**N_POOL
    if image_size < factor or image_size % factor:
        raise ValueError(f"image_size must be a positive multiple of {factor}, got {image_size}")
    return image_size // factor


class AstroVaDErEncoder(nn.Module):
    """AstroVaDEr encoder: image -> (mean, log-variance) of q(z | x).

    Parameters
    ----------
    latent_dim : int, default 20
        Dimension of the latent space.
    image_size : int, default 128
        Height and width of the (square) input; a multiple of 8.
    channels : int, default 1
        Input channels (1: grey, as published).

    Notes
    -----
    The layer attribute names (``conv1`` ... ``conv6``, ``mean``, ``log_var``) are the
    keys the Keras importer fills; the flatten is in (H, W, C) order like Keras.
    """

    def __init__(self, latent_dim: int = 20, image_size: int = 128, channels: int = 1) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.bottleneck_size = _check_size(self.image_size)
        self.conv1 = _conv(self.channels, 64, 3)
        self.conv2 = _conv(64, 64, 3)
        self.conv3 = _conv(64, 64, 5)
        self.conv4 = _conv(64, 64, 5)
        self.conv5 = _conv(64, BOTTLENECK_CHANNELS, 5)
        self.conv6 = _conv(BOTTLENECK_CHANNELS, BOTTLENECK_CHANNELS, 5)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.pool = nn.MaxPool2d(2)
        n_flat = BOTTLENECK_CHANNELS * self.bottleneck_size**2
        self.mean = nn.Linear(n_flat, self.latent_dim)
        self.log_var = nn.Linear(n_flat, self.latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened 4096-d (for 128 px) activation before the two dense heads."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input N x {expected}, got {tuple(x.shape)}")
        h = self.act(self.conv1(x))
        h = self.pool(self.act(self.conv2(h)))
        h = self.act(self.conv3(h))
        h = self.pool(self.act(self.conv4(h)))
        h = self.act(self.conv5(h))
        h = self.pool(self.act(self.conv6(h)))
        # Keras Flatten runs over (H, W, C)
        return h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, log_var)``, each ``(N, latent_dim)``."""
        h = self.features(x)
        return self.mean(h), self.log_var(h)


class AstroVaDErDecoder(nn.Module):
    """AstroVaDEr decoder: latent vector -> image (non-negative, ReLU output).

    Parameters
    ----------
    latent_dim : int, default 20
        Dimension of the latent space.
    image_size : int, default 128
        Height and width of the output; a multiple of 8.
    channels : int, default 1
        Output channels.
    """

    def __init__(self, latent_dim: int = 20, image_size: int = 128, channels: int = 1) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.bottleneck_size = _check_size(self.image_size)
        self.fc = nn.Linear(self.latent_dim, BOTTLENECK_CHANNELS * self.bottleneck_size**2)
        self.conv7 = _conv(BOTTLENECK_CHANNELS, BOTTLENECK_CHANNELS, 5)
        self.conv8 = _conv(BOTTLENECK_CHANNELS, BOTTLENECK_CHANNELS, 5)
        self.conv9 = _conv(BOTTLENECK_CHANNELS, 64, 5)
        self.conv10 = _conv(64, 64, 5)
        self.conv11 = _conv(64, 64, 5)
        self.conv12 = _conv(64, 64, 5)
        self.output_conv = _conv(64, self.channels, 3)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.up = LegacyBilinearUpsample(2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return images ``(N, channels, image_size, image_size)``."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected z of shape N x {self.latent_dim}, got {tuple(z.shape)}")
        s = self.bottleneck_size
        h = self.act(self.fc(z))
        # Keras Reshape((s, s, 16)) fills (H, W, C)
        h = h.reshape(z.shape[0], s, s, BOTTLENECK_CHANNELS).permute(0, 3, 1, 2)
        h = self.act(self.conv7(h))
        h = self.up(self.act(self.conv8(h)))
        h = self.act(self.conv9(h))
        h = self.up(self.act(self.conv10(h)))
        h = self.act(self.conv11(h))
        h = self.up(self.act(self.conv12(h)))
        return torch.relu(self.output_conv(h))
