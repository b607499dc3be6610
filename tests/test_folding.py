"""Batch norms folded into convolutions for a frozen trunk's inference (morphospace.nets.folding)."""

import pytest
import torch
from torch import nn

from morphospace.nets.folding import fold_batchnorm
from morphospace.ssl.embedder import TrunkTaps


def _randomise_norms(net: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters away from the identity, so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_folding_a_sequential_removes_every_norm_and_keeps_the_output():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    _randomise_norms(net)
    net.eval()
    folded, count = fold_batchnorm(net)
    x = torch.randn(5, 3, 16, 16)
    assert count == 2 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "small"])
def test_a_frozen_trunk_infers_through_its_folded_copy_with_the_same_features(backbone):
    trunk = TrunkTaps(backbone, input_size=48, pretrained=False)
    _randomise_norms(trunk.net)
    trunk.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        fast = trunk(x)
    folded = trunk.inference_net()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    plain = trunk(x)  # with gradients: the trunk's own modules, batch norms and all
    assert plain.requires_grad
    torch.testing.assert_close(fast, plain.detach(), rtol=1e-4, atol=1e-4)
    # the copy is no part of the module: not in its state, not among its parameters
    assert not any("_folded" in k for k in trunk.state_dict())
    assert not {id(p) for p in folded.parameters()} & {id(p) for p in trunk.parameters()}


def test_the_folded_copy_follows_the_trunks_weights():
    trunk = TrunkTaps("small", input_size=32, pretrained=False).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = trunk(x)
        first = trunk.inference_net()
        assert trunk.inference_net() is first  # unchanged weights: the same copy
        conv = next(m for m in trunk.net.modules() if isinstance(m, nn.Conv2d))
        conv.weight.mul_(2.0)  # an optimiser step or a loaded state changes them in place
        after = trunk(x)
    assert trunk.inference_net() is not first
    assert not torch.allclose(before, after)
    with torch.enable_grad():
        torch.testing.assert_close(after, trunk(x).detach(), rtol=1e-4, atol=1e-4)


class _BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock layout (conv1/bn1, conv2/bn2, a Sequential shortcut):
    torchvision does not import beside the CPU torch here, so the layout is rebuilt."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.downsample(x))


def test_folding_a_resnet_layout_folds_blocks_and_shortcuts():
    net = nn.Sequential(_BasicBlock(3, 8, 2), _BasicBlock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    _randomise_norms(net, seed=3)
    net.eval()
    folded, count = fold_batchnorm(net)
    assert count == 6 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)


def test_the_inference_copy_of_an_efficientnet_gives_the_folded_outputs():
    """ReLU6 in place and the 'SAME' padding moved into the convolutions (the asymmetric one of the
    stride-2 convolutions by a kernel one larger whose first row and column are zero) change no
    number beyond rounding; the trunk itself is untouched."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    from morphospace.nets.folding import inference_copy

    trunk = TrunkTaps("efficientnet-lite0", input_size=48, pretrained=False)
    _randomise_norms(trunk.net, seed=5)
    trunk.eval()
    folded, _ = fold_batchnorm(trunk.net)
    fast, counts = inference_copy(trunk.net)
    assert counts["folded"] > 0 and counts["in_place"] == 17 and counts["padding"] > 0
    relus = [m for m in fast.modules() if isinstance(m, nn.ReLU6)]
    assert relus and all(m.inplace for m in relus)
    assert not any(m.inplace for m in trunk.net.modules() if isinstance(m, nn.ReLU6))
    convs = [m for m in fast.modules() if isinstance(m, Conv2dStaticSamePadding)]
    assert not any(isinstance(m.static_padding, nn.ZeroPad2d) for m in convs)  # no padded copy left
    widened = [m for m in convs if m.kernel_size[0] % 2 == 0]
    assert widened and all(m.stride[0] == 2 and torch.all(m.weight[..., 0, :] == 0) for m in widened)
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(trunk._forward(fast, x), trunk._forward(folded, x), rtol=1e-5, atol=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(trunk._forward(fast, x), trunk._forward(folded, x), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(trunk(x), trunk._forward(folded, x), rtol=1e-5, atol=1e-6)


def test_widening_the_kernel_computes_the_asymmetric_same_padding():
    """Padded (l, l + 1) = a kernel with an extra zero first row and column, padded (l + 1, l + 1)."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    from morphospace.nets.folding import _pad_by_itself

    torch.manual_seed(0)
    for k, side, widened in ((3, 16, True), (5, 16, True), (3, 9, False)):
        conv = Conv2dStaticSamePadding(4, 4, k, stride=2, groups=4, image_size=side).eval()
        x = torch.randn(2, 4, side, side)
        with torch.no_grad():
            expected = conv(x)
            assert _pad_by_itself(conv) and isinstance(conv.static_padding, nn.Identity)
            assert conv.kernel_size == ((k + 1, k + 1) if widened else (k, k))
            torch.testing.assert_close(conv(x), expected, rtol=1e-6, atol=1e-6)


def test_inference_copy_leaves_other_layouts_as_folded():
    from morphospace.nets.folding import inference_copy

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
    copy_, counts = inference_copy(net.eval())
    assert counts == {"folded": 1, "in_place": 0, "padding": 0}
    assert not copy_[2].inplace
