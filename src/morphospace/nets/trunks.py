"""The networks behind the backbones (:mod:`.backbones`): an ImageNet EfficientNet or a
torchvision ResNet cut before its classifier, and the project's own small CNN; each maps
normalised images (N, 3, H, W) to globally pooled features (N, D)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN"]


class _EfficientNetTrunk(nn.Module):
    """EfficientNet up to the pooled output of its head convolution (before dropout + fc)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


class _ResNetTrunk(nn.Module):
    """A torchvision ResNet with its classifier replaced by the identity."""

    def __init__(self, net: nn.Module):
        super().__init__()
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """The project's own small CNN: 4 x (conv 3x3, BN, ReLU, conv 3x3, BN, ReLU, max-pool 2).

    Widths 32, 64, 128, 256, then global average pooling: 256 features, about 1.2 M
    parameters. Sized for 64 px cubes, where it trains in seconds per epoch on a CPU.
    """

    widths = (32, 64, 128, 256)

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in self.widths:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled features of normalised images.

        Parameters
        ----------
        x : Tensor (N, 3, H, W)

        Returns
        -------
        Tensor (N, 256)
        """
        return self.body(x).mean(dim=(2, 3))
