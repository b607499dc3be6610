"""Batch normalisation folded into the convolution before it, for a frozen network's inference.

In eval mode a BatchNorm2d is an affine map per channel; folded into the weights and bias of
the convolution that feeds it, it costs nothing. On 2 CPU cores the EfficientNet-Lite0 trunk
at 112 px runs 1.2x faster so (0.91 s against 1.13 s for 256 images, features equal to
2e-6 of their largest value): the form embedding's view bank is 12 trunk passes a galaxy.

The pairs are found by name, in the layouts of the package's backbones: EfficientNet-Lite
(``_conv_stem``/``_bn0``, ``_conv_head``/``_bn1``, and in each block ``_expand_conv``/``_bn0``,
``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``), torchvision's ResNets
(``conv<i>``/``bn<i>``) and a convolution followed by a batch norm in an ``nn.Sequential``
(the small CNN, ResNet shortcuts). Each of these forwards applies the batch norm right after
its convolution and nowhere else.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm"]

_EFFICIENTNET_PAIRS = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"), ("_expand_conv", "_bn0"),
                       ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def _named_pairs(module: nn.Module):
    """(conv name, norm name) pairs among the direct children of ``module``."""
    children = dict(module.named_children())
    names = list(_EFFICIENTNET_PAIRS) + [(f"conv{i}", f"bn{i}") for i in range(1, 4)]
    if isinstance(module, nn.Sequential):
        keys = list(children)
        names += list(zip(keys[:-1], keys[1:]))
    return [(c, b) for c, b in dict.fromkeys(names)
            if isinstance(children.get(c), nn.Conv2d) and isinstance(children.get(b), nn.BatchNorm2d)]


def fold_batchnorm(net: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``net`` with every recognised batch norm folded into its convolution.

    Parameters
    ----------
    net : nn.Module
        Not changed.

    Returns
    -------
    (nn.Module, int)
        The copy (eval mode, its parameters without gradients) and the number of pairs folded.
    """
    folded = copy.deepcopy(net).eval()
    count = 0
    for module in list(folded.modules()):
        for conv, norm in _named_pairs(module):
            setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, norm)))
            setattr(module, norm, nn.Identity())
            count += 1
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded, count
