"""Backbones: packaged ImageNet weights offline, feature shapes, input handling, weights files."""

from __future__ import annotations

import builtins

import pytest
import torch

from morphospace.errors import NotAvailableError, UserError
from morphospace.nets.backbones import (BACKBONES, check_hub_hash, efficientnet_lite0_weights_path,
                                       efficientnet_lite_weights_path, make_backbone)


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return make_backbone("efficientnet-lite0", input_size=64)


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights(lite0):
    net, dim, spec = lite0
    assert dim == 1280 and spec.size == 64 and spec.native_size == 224
    assert spec.mean == (0.485, 0.456, 0.406)
    shipped = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    mine = net.trunk.net.state_dict()
    compared = [k for k in shipped if not k.startswith("_fc.")]
    assert len(compared) > 200
    for key in compared:
        assert torch.equal(mine[key], shipped[key]), key
    fresh, _, _ = make_backbone("efficientnet-lite0", pretrained=False, input_size=64)
    assert not torch.equal(fresh.trunk.net._conv_stem.weight, shipped["_conv_stem.weight"])
    assert "ImageNet" in net.weights_source


@pytest.mark.parametrize("variant, native, last_block", [(1, 240, 320), (2, 260, 352)])
def test_the_larger_efficientnet_lites_load_their_packaged_imagenet_weights(variant, native, last_block):
    name = f"efficientnet-lite{variant}"
    net, dim, spec = make_backbone(name, input_size=64)
    assert dim == 1280 and spec.native_size == native and "ImageNet" in net.weights_source
    path = efficientnet_lite_weights_path(variant)
    assert path.name.startswith(f"{name}-")
    check_hub_hash(path)  # the packaged file matches the hash in its name
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    mine = net.trunk.net.state_dict()
    compared = [k for k in shipped if not k.startswith("_fc.")]
    assert len(compared) > 200 and all(torch.equal(mine[k], shipped[k]) for k in compared)
    assert int(net.trunk.net._blocks[-1]._project_conv.out_channels) == last_block
    with torch.no_grad():
        out = net.eval()(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1280) and torch.isfinite(out).all()


def test_efficientnet_lite0_gives_1280_features_for_rgb_and_grey(lite0):
    net, _, _ = lite0
    net.eval()
    rgb = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = net(rgb)
        grey = net(rgb[:, :1])
        grey_as_rgb = net(rgb[:, :1].repeat(1, 3, 1, 1))
    assert out.shape == (3, 1280) and torch.isfinite(out).all()
    assert torch.allclose(grey, grey_as_rgb)  # C = 1 is the grey image on all three channels
    assert not torch.allclose(out[0], out[1])


def test_input_is_resized_inside_the_wrapper():
    net, _, spec = make_backbone("small", input_size=48)
    seen = []
    net.trunk.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    net.eval()(torch.rand(2, 3, 32, 32))
    net(torch.rand(2, 1, 96, 96))
    assert seen == [(2, 3, 48, 48), (2, 3, 48, 48)]
    assert make_backbone("efficientnet-lite0", pretrained=False)[2].size == BACKBONES["efficientnet-lite0"].default_size


def test_missing_torchvision_is_a_one_line_not_available_error(monkeypatch):
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(NotAvailableError) as err:
        make_backbone("resnet34")
    assert str(err.value) == "resnet34 needs torchvision: pip install 'morphospace[torchvision]'"
    assert isinstance(err.value, UserError)


def test_unknown_backbone_and_bad_sizes_are_user_errors():
    with pytest.raises(UserError, match="unknown backbone 'vgg16'"):
        make_backbone("vgg16")
    with pytest.raises(UserError, match="input_size"):
        make_backbone("small", input_size=8)
    net, _, _ = make_backbone("small", input_size=32)
    with pytest.raises(UserError, match="1- or 3-channel"):
        net(torch.rand(1, 5, 32, 32))


def test_weights_file_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(1)
    net, _, _ = make_backbone("small", input_size=32)
    path = tmp_path / "small.pt"
    torch.save(net.state_dict(), path)
    again, _, _ = make_backbone("small", weights=path, input_size=32)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), again.eval()(x))
    with pytest.raises(UserError, match="do not fit this backbone"):
        make_backbone("small", weights=efficientnet_lite0_weights_path())
    with pytest.raises(UserError, match="weights file not found"):
        make_backbone("small", weights=tmp_path / "nope.pt")
    with pytest.raises(UserError, match="is a folder: give the weights file itself"):  # it said "not found"
        make_backbone("small", weights=tmp_path)


def test_hub_hash_check_catches_a_corrupt_file(tmp_path):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(UserError, match="corrupt"):
        check_hub_hash(bad)
    check_hub_hash(efficientnet_lite0_weights_path())  # the packaged file passes
    other = tmp_path / "weights.pth"
    other.write_bytes(b"anything")
    check_hub_hash(other)  # no hash in the name: nothing to check


def test_a_shell_for_saved_weights_does_not_log_a_random_start(caplog):
    """Loading a saved model builds its trunk unpretrained; the log must not claim a random start."""
    import logging

    from morphospace.ssl.embedder import TrunkTaps

    with caplog.at_level(logging.INFO, logger="morphospace"):
        TrunkTaps("efficientnet-lite0", input_size=64, pretrained=False, announce=False)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "backbone" in r.getMessage()]
    with caplog.at_level(logging.INFO, logger="morphospace"):
        make_backbone("efficientnet-lite0", pretrained=False, input_size=64)
    assert any("random initialisation" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


@pytest.mark.parametrize("shape,size", [((3, 3, 64, 64), 112), ((2, 1, 48, 48), 112), ((2, 3, 150, 150), 112),
                                        ((2, 3, 112, 112), 112)])
def test_the_resize_is_interpolate_s_and_the_same_on_any_thread_count(shape, size):
    """The backbones' input resize: bilinear as ``interpolate`` (antialiased when shrinking), to
    float32 rounding, and the same bits with one thread or two (a bfloat16 trunk turned the
    interpolation's thread-dependent last bit into features 1e-2 apart)."""
    import torch.nn.functional as F

    from morphospace.nets.resize import resize_bilinear

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    want = F.interpolate(x.double(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shape[-1] > size)
    threads = torch.get_num_threads()
    try:
        got = []
        for n in (1, 2):
            torch.set_num_threads(n)
            got.append(resize_bilinear(x, size))
    finally:
        torch.set_num_threads(threads)
    assert got[0].shape == (*shape[:2], size, size) and got[0].dtype == torch.float32
    torch.testing.assert_close(got[0].double(), want, rtol=0, atol=1e-6)
    assert torch.equal(got[0], got[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as a bfloat16 trunk calls it: still in float32
        under = resize_bilinear(x, size)
    assert under.dtype == torch.float32 and torch.equal(under, got[0])


def test_the_configuration_knows_the_backbones_the_registry_builds():
    """form.backbone was any text until the training built the network: `embed --set
    form.backbone=bogus` saved it, and every later `train` refused it."""
    from morphospace.config import Config, ConfigError, apply_overrides
    from morphospace.config.base import BACKBONE_NAMES

    assert BACKBONE_NAMES == tuple(BACKBONES)
    for key in ("form.backbone", "study.backbone"):
        with pytest.raises(ConfigError, match=f"{key} must be one of 'efficientnet-lite0'"):
            apply_overrides(Config(), [f"{key}=bogus"])
    assert apply_overrides(Config(), ["study.backbone=ssl"]).study.backbone == "ssl"
