"""The form-first VaDE: SSL losses against their definitions, augmentations, invariance of the
embedding, the view bank, training end to end on a tiny run, and the linear probe."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from morphospace.analysis.probe import linear_probe
from morphospace.image.geometry import dihedral
from morphospace.ssl.augment import NuisanceAugment
from morphospace.ssl.embedder import FormEmbedder, FormHead, build_trunk
from morphospace.ssl.losses import nt_xent, vicreg


# --- losses ------------------------------------------------------------------------------------

def _nt_xent_by_definition(z1, z2, t):
    """SimCLR eq. 1, one anchor at a time."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sims = [F.cosine_similarity(z[i], z[k], dim=0) / t for k in range(n2)]
        num = math.exp(sims[j])
        den = sum(math.exp(sims[k]) for k in range(n2) if k != i)
        total += -math.log(num / den)
    return total / n2


def test_nt_xent_equals_its_definition():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    for t in (0.2, 0.5, 1.0):
        assert float(nt_xent(z1, z2, temperature=t)) == pytest.approx(_nt_xent_by_definition(z1, z2, t), rel=1e-5)


def _global_batch_data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randn(4, 5, generator=g)


def _global_batch_loss(lin, x1, x2):
    from morphospace.ssl.losses import global_batch

    z1, z2 = global_batch(lin(x1)), global_batch(lin(x2))
    return nt_xent(z1, z2, temperature=0.2) + 0.01 * vicreg(z1, z2)


def _global_batch_worker(rank: int, world: int, store: str, out: str):
    import torch.distributed as dist

    # a file store: no free port to look for, and none another test could take meanwhile
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        x1, x2, w = _global_batch_data()
        lin = torch.nn.Linear(5, 4, bias=False)
        lin.weight.data.copy_(w)
        rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
        loss = _global_batch_loss(lin, x1[rows], x2[rows])
        loss.backward()
        dist.all_reduce(lin.weight.grad)  # what DDP does: the mean of the processes' gradients
        if rank == 0:
            torch.save({"loss": loss.detach(), "grad": lin.weight.grad / world}, out)
    finally:
        # neither tears the group down while the other is still in the last collective
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_take_the_one_process_step_on_the_whole_batch(tmp_path):
    """Under DDP the SSL losses see every process's galaxies (each view picks its twin among all
    8, not among its device's 4): two processes of 4 rows each give the loss and, once DDP has
    averaged their gradients, the gradient of one process on all 8."""
    import torch.multiprocessing as mp

    mp.spawn(_global_batch_worker, args=(2, str(tmp_path / "store"), str(tmp_path / "two.pt")), nprocs=2, join=True)
    two = torch.load(tmp_path / "two.pt")
    x1, x2, w = _global_batch_data()
    lin = torch.nn.Linear(5, 4, bias=False)
    lin.weight.data.copy_(w)
    loss = _global_batch_loss(lin, x1, x2)  # no process group: the batch as it is
    loss.backward()
    torch.testing.assert_close(two["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(two["grad"], lin.weight.grad, rtol=1e-4, atol=1e-6)


def test_batch_norms_are_synchronised_across_gpus_only(monkeypatch):
    """SimCLR normalises over the global batch; torch syncs batch norms on GPUs, not on CPUs."""
    from morphospace.ssl.training import global_batch_norm

    assert global_batch_norm({"accelerator": "gpu", "devices": 4})
    assert global_batch_norm({"accelerator": "cuda", "devices": 1, "num_nodes": 2})
    assert not global_batch_norm({"accelerator": "gpu", "devices": 1})
    assert not global_batch_norm({"accelerator": "cpu", "devices": 2})
    assert not global_batch_norm(None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert global_batch_norm({"accelerator": "auto", "devices": 2})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not global_batch_norm({"accelerator": "auto", "devices": 2})


def test_nt_xent_is_low_when_twins_match_and_high_when_shuffled():
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    matched = nt_xent(z, z + 0.01 * torch.randn_like(z))
    shuffled = nt_xent(z, z[torch.randperm(64)])
    assert matched < 0.3 * shuffled


def test_vicreg_terms_follow_the_paper():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
    inv = F.mse_loss(z1, z2)

    def var_cov(z):
        std = torch.sqrt(z.var(0) + 1e-4)
        c = torch.cov(z.T)
        return torch.relu(1 - std).mean(), (c - torch.diag(torch.diag(c))).pow(2).sum() / z.shape[1]

    v1, c1 = var_cov(z1)
    v2, c2 = var_cov(z2)
    expected = 25 * inv + 25 * (v1 + v2) + (c1 + c2)
    assert float(vicreg(z1, z2)) == pytest.approx(float(expected), rel=1e-5)
    # only the invariance term: unit-variance inputs, weights (1, 0, 0)
    assert float(vicreg(z1, z2, 1.0, 0.0, 0.0)) == pytest.approx(float(inv), rel=1e-6)
    # collapsed codes pay the variance hinge in full: std 0 -> 1 per dimension per branch
    flat = torch.zeros(8, 3)
    assert float(vicreg(flat, flat, 0.0, 1.0, 0.0)) == pytest.approx(2 * (1 - math.sqrt(1e-4)), rel=1e-6)


def test_losses_reject_mismatched_batches():
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError):
        vicreg(torch.zeros(4, 3), torch.zeros(4))


# --- augmentations -------------------------------------------------------------------------------

def _blob(n=4, side=32, q=0.4):
    yy, xx = torch.meshgrid(torch.arange(side) - (side - 1) / 2, torch.arange(side) - (side - 1) / 2, indexing="ij")
    img = torch.exp(-(xx**2 + (yy / q) ** 2) / (2 * (side / 10) ** 2))
    return img.expand(n, 3, side, side).clone()


def test_nuisance_augment_is_a_function_of_its_seed():
    x = _blob()
    aug = NuisanceAugment()
    assert torch.equal(aug(x, 7), aug(x, 7))
    assert not torch.allclose(aug(x, 7), aug(x, 8))
    assert aug(x, 7).shape == x.shape


def test_nuisance_augment_keeps_the_galaxy_and_moves_its_angle():
    """Rotation changes the position angle; flux stays within the brightness range."""
    x = _blob(n=64)
    augment = NuisanceAugment(noise=0.0, p_blur=0.0, light=False)  # the pixel views (tests/test_light_views.py)
    y = augment(x, 3)
    ratio = (y.sum((1, 2, 3)) / x.sum((1, 2, 3))).numpy()
    lo, hi = augment.scale  # the light scales with the area
    assert ratio.min() > 0.8 * lo**2 * 0.95 and ratio.max() < 1.2 * hi**2 * 1.05
    from morphospace.image.geometry import canonical_angle

    angles = canonical_angle(y).numpy()
    assert np.ptp(angles) > 2.0  # spread over most of (-pi/2, pi/2]


# --- the embedder ---------------------------------------------------------------------------------

def _embedder(views=8):
    torch.manual_seed(0)
    trunk = build_trunk("small", 32)
    return FormEmbedder(trunk, FormHead(trunk.dim, dim=8), views=views).eval()


def test_form_embedding_is_exactly_dihedral_invariant():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    emb = _embedder()
    with torch.no_grad():
        ref = emb(x)
        for k in range(8):
            assert torch.allclose(emb(dihedral(x, k)), ref, atol=1e-5)
        # the trunk alone is not: the invariance comes from the average
        f0, f1 = emb.trunk(x), emb.trunk(dihedral(x, 1))
        assert (f0 - f1).abs().max() > 1e-3 * f0.abs().max()


def test_efficientnet_trunk_taps_two_layers():
    trunk = build_trunk("efficientnet-lite0", 64)
    assert trunk.dim == 320 + 1280
    with torch.no_grad():
        assert trunk.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 1600)


def test_fit_embedder_frozen_trunk_is_deterministic(tmp_path):
    from morphospace.ssl.training import fit_embedder

    cube = _blob(n=24).numpy() + np.random.default_rng(0).normal(0, 0.05, (24, 3, 32, 32)).astype(np.float32)
    runs = []
    for i in range(2):
        trunk = build_trunk("small", 32)
        torch.manual_seed(0)
        trunk = build_trunk("small", 32)
        emb, e, info = fit_embedder(trunk, cube, tmp_path / f"r{i}", dim=8, aug_views=1, epochs=2, batch_size=8,
                                    seed=3, trainer_kwargs={"enable_progress_bar": False})
        runs.append(e)
        bank = np.load(tmp_path / f"r{i}" / "view_bank.npy")
        assert bank.shape == (9, 24, trunk.dim)
        # the embedding is the head's output averaged over the 8 dihedral views of the bank
        with torch.no_grad():
            direct = emb(torch.from_numpy(cube)).numpy()
        np.testing.assert_allclose(direct, e, atol=1e-4)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (24, 8) and np.isfinite(runs[0]).all()


def test_an_ensemble_of_heads_extends_the_single_head_and_resumes(tmp_path):
    """form.heads: the first head is the single-head run's, the others train on the same bank from
    seeds of their own; the embedding is their outputs side by side, the embedder gives it from
    images, and a resumed run takes each head back from its own checkpoint."""
    from morphospace.ssl.embedder import HeadEnsemble
    from morphospace.ssl.training import fit_embedder

    cube = _blob(n=24).numpy() + np.random.default_rng(2).normal(0, 0.05, (24, 3, 32, 32)).astype(np.float32)
    kw = dict(dim=8, aug_views=1, batch_size=8, seed=4, trainer_kwargs={"enable_progress_bar": False})

    def fit(name, heads, epochs, resume=False):
        torch.manual_seed(0)
        return fit_embedder(build_trunk("small", 32), cube, tmp_path / name, heads=heads, epochs=epochs,
                            resume=resume, **kw)

    _, one, _ = fit("one", 1, 2)
    embedder, two, info = fit("two", 2, 2)
    assert isinstance(embedder.head, HeadEnsemble) and embedder.head.dim == 16 and two.shape == (24, 16)
    np.testing.assert_array_equal(two[:, :8], one)  # the first head is the single head
    assert not np.allclose(two[:, 8:], two[:, :8], atol=1e-2)  # the second learned from its own draws
    assert (tmp_path / "two" / "head1" / "last.ckpt").is_file() and len(info["final_loss"]) == 2
    with torch.no_grad():
        np.testing.assert_allclose(embedder(torch.from_numpy(cube)).numpy(), two, atol=1e-4)
    _, again, resumed = fit("two", 2, 2, resume=True)  # each head back from its own checkpoint
    np.testing.assert_allclose(again, two, atol=1e-6)
    # no epoch ran, and each head's loss is still the one it ended at (it was None)
    np.testing.assert_allclose(resumed["final_loss"], info["final_loss"], rtol=1e-6)
    bank = tmp_path / "two" / "view_bank.npy"
    bank.write_bytes(bank.read_bytes()[:2000])  # cut short: "mmap length is greater than file size" on resume
    _, rebuilt, _ = fit("two", 2, 2, resume=True)  # the bank is made again; the heads come back as before
    np.testing.assert_allclose(rebuilt, two, atol=1e-5)
    _, more, _ = fit("two", 2, 3, resume=True)  # and each trains on from it
    assert not np.allclose(more[:, :8], two[:, :8], atol=1e-4) and not np.allclose(more[:, 8:], two[:, 8:], atol=1e-4)


def test_head_seeds_keep_the_first_and_share_none_between_runs():
    from morphospace.ssl.training import head_seed

    assert [head_seed(s, 0) for s in range(4)] == [0, 1, 2, 3]
    seeds = [head_seed(s, i) for s in range(50) for i in range(1, 4)]
    assert len(set(seeds)) == len(seeds) and not set(seeds) & set(range(1000))
    assert head_seed(3, 2) == head_seed(3, 2)


def test_a_checkpoint_of_the_single_cosine_scheduler_still_resumes(tmp_path):
    """SSL checkpoints written before the per-group schedule held a CosineAnnealingLR's state,
    which the LambdaLR now used cannot load (a KeyError mid-resume); the curve is the same, so
    the epoch count carries over: resuming from the old state ends exactly where resuming from
    the new one does."""
    import shutil

    from morphospace.ssl.training import fit_embedder

    cube = _blob(n=16).numpy() + np.random.default_rng(1).normal(0, 0.05, (16, 3, 32, 32)).astype(np.float32)
    kw = dict(dim=8, aug_views=1, batch_size=8, seed=2, trainer_kwargs={"enable_progress_bar": False})
    torch.manual_seed(0)
    fit_embedder(build_trunk("small", 32), cube, tmp_path / "new", epochs=2, **kw)
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    ckpt_path = tmp_path / "old" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    state = ckpt["lr_schedulers"][0]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2, eta_min=5e-5).state_dict()
    ckpt["lr_schedulers"][0] = {**old, **{k: state[k] for k in ("base_lrs", "last_epoch", "_step_count", "_last_lr")}}
    assert "lr_lambdas" not in ckpt["lr_schedulers"][0]
    torch.save(ckpt, ckpt_path)
    out = []
    for name in ("new", "old"):
        torch.manual_seed(0)
        out.append(fit_embedder(build_trunk("small", 32), cube, tmp_path / name, epochs=3, resume=True, **kw)[1])
    np.testing.assert_array_equal(out[1], out[0])


def test_trained_trunk_learns_at_its_own_rate_and_embeds_as_saved(tmp_path):
    from morphospace.ssl.training import SSLModule, fit_embedder

    trunk = build_trunk("small", 32)
    head = FormHead(trunk.dim, dim=8)
    module = SSLModule(head, trunk, lr=1e-3, epochs=4, trunk_lr_scale=0.1)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-4])
    trunk_ids = {id(p) for p in trunk.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == trunk_ids
    assert not trunk_ids & {id(p) for p in opt.param_groups[0]["params"]}
    for _ in range(4):  # cosine to 5% of each group's own rate
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-5, 5e-6])

    cube = _blob(n=16).numpy() + np.random.default_rng(1).normal(0, 0.05, (16, 3, 32, 32)).astype(np.float32)
    torch.manual_seed(0)
    trunk = build_trunk("small", 32)
    before = [p.detach().clone() for p in trunk.parameters()]
    emb, e, info = fit_embedder(trunk, cube, tmp_path / "adapt", dim=8, epochs=1, batch_size=8, seed=0,
                                train_trunk=True, trunk_lr_scale=0.5, trainer_kwargs={"enable_progress_bar": False})
    assert info["trunk_lr_scale"] == 0.5 and info["train_trunk"]
    assert any(not torch.equal(a, b) for a, b in zip(before, trunk.parameters()))  # the trunk trained
    with torch.no_grad():
        np.testing.assert_allclose(emb(torch.from_numpy(cube)).numpy(), e, atol=1e-5)


def test_trunk_lr_scale_resolves_by_where_the_trunk_starts():
    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError
    from morphospace.vade.hparams import resolve_hparams

    def scale(*overrides):
        return resolve_hparams(apply_overrides(load_config(None), list(overrides)), 3, 64)["form"]["trunk_lr_scale"]

    assert scale() == 0.1  # ImageNet start: adapt gently
    assert scale("form.backbone=small") == 1.0  # from scratch
    assert scale("form.trunk_lr_scale=0.5") == 0.5
    with pytest.raises(UserError, match="trunk_lr_scale"):
        apply_overrides(load_config(None), ["form.trunk_lr_scale=0"])


def test_the_form_image_decoder_takes_its_own_widths():
    """``form.decoder_widths`` shapes the form preset's image decoder; ``model.widths`` stays the
    pixel VaDE's, so neither setting changes the other model."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.vade.form_model import build_form_vade
    from morphospace.vade.hparams import resolve_hparams
    from morphospace.vade.networks import DefaultDecoder, RepeatPixels

    def hp(*overrides):
        return resolve_hparams(apply_overrides(load_config(None), list(overrides)), 3, 64)

    assert hp()["widths"] == [12, 24, 48, 96]
    assert hp("model.widths=[8, 16]")["widths"] == [12, 24, 48, 96]
    assert hp("model.preset=default")["widths"] == [32, 64, 128, 256]
    small = hp("form.decoder_widths=[4, 8]", "form.backbone=small", "form.input_size=32", "model.n_components=2")
    small["form"]["n_components"] = 2
    decoder = build_form_vade(small).image_decoder
    # resize-convolutions: each stage repeats each pixel 2 x 2, then a 3 x 3 convolution
    assert sum(isinstance(m, RepeatPixels) for m in decoder.body) == 2
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(RepeatPixels()(x), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    assert [m.out_channels for m in decoder.body if isinstance(m, torch.nn.Conv2d)] == [4, 4, 3]
    assert decoder.top == 8 and decoder.side == 16
    assert decoder(torch.zeros(2, small["latent_dim"])).shape == (2, 3, 64, 64)
    # a model saved before form.decoder_upsample was recorded is rebuilt with its transposed convolutions
    old = {**small, "form": {k: v for k, v in small["form"].items() if k != "decoder_upsample"}}
    old_decoder = build_form_vade(old).image_decoder
    assert [m.out_channels for m in old_decoder.body if isinstance(m, torch.nn.ConvTranspose2d)] == [4, 4]
    assert not any(isinstance(m, RepeatPixels) for m in old_decoder.body)
    with pytest.raises(ValueError, match="upsample must be one of"):
        DefaultDecoder(1, 16, 2, (4, 8), upsample="bicubic")


def test_form_trunk_starts_from_a_weights_file(tmp_path, monkeypatch):
    """``form.weights``: the trunk a user trained elsewhere (e.g. on galaxies) replaces ImageNet's,
    and a file that is not there is refused before any work, in one line."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError
    from morphospace.vade.hparams import resolve_hparams

    torch.manual_seed(123)
    theirs = build_trunk("small", 32)
    path = tmp_path / "galaxy_trunk.pt"
    torch.save(theirs.net.state_dict(), path)
    torch.manual_seed(0)
    ours = build_trunk("small", 32, weights=str(path))
    fresh = build_trunk("small", 32)
    for key, value in theirs.net.state_dict().items():
        assert torch.equal(ours.net.state_dict()[key], value), key
    assert any(not torch.equal(fresh.net.state_dict()[k], v) for k, v in theirs.net.state_dict().items())

    cfg = apply_overrides(load_config(None), [f"form.weights={path}", "form.backbone=small"])
    assert resolve_hparams(cfg, 3, 64)["form"]["weights"] == str(path)
    with pytest.raises(UserError, match=r"^form.weights: no such file: .*missing\.pt$"):
        resolve_hparams(apply_overrides(load_config(None), [f"form.weights={tmp_path / 'missing.pt'}"]), 3, 64)
    # a file that does not fit the trunk, or is no weights file, is refused before any work too
    with pytest.raises(UserError, match="do not fit this backbone"):
        resolve_hparams(apply_overrides(load_config(None), [f"form.weights={path}"]), 3, 64)
    (tmp_path / "garbage.pth").write_text("garbage")
    with pytest.raises(UserError, match="cannot read weights file"):
        resolve_hparams(apply_overrides(load_config(None), [f"form.weights={tmp_path / 'garbage.pth'}"]), 3, 64)
    # a file checked once is not loaded again for the same check (the command line, then training),
    # but one rewritten since is
    import morphospace.nets.backbones as backbones

    loads = []
    real = backbones.make_backbone
    monkeypatch.setattr(backbones, "make_backbone", lambda *a, **k: loads.append(a) or real(*a, **k))
    resolve_hparams(cfg, 3, 64)
    assert loads == []
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read weights file"):
        resolve_hparams(cfg, 3, 64)


def test_sharpened_trunk_sees_the_unsharp_masked_image():
    """``form.sharpen`` = a: the trunk reads x + a (x - G * x); a flat image is left as it is."""
    import kornia

    from morphospace.ssl.embedder import SHARPEN_SIGMA

    torch.manual_seed(0)
    plain = build_trunk("small", 32).eval()
    sharp = build_trunk("small", 32, sharpen=3.0).eval()
    sharp.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 32, 32)
    blurred = kornia.filters.gaussian_blur2d(x, (11, 11), (SHARPEN_SIGMA, SHARPEN_SIGMA), border_type="reflect")
    flat = torch.full((2, 3, 32, 32), 0.3)
    with torch.no_grad():
        torch.testing.assert_close(sharp(x), plain(x + 3.0 * (x - blurred)))
        assert not torch.allclose(sharp(x), plain(x), atol=1e-4)
        torch.testing.assert_close(sharp(flat), plain(flat), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sharpen"):
        build_trunk("small", 32, sharpen=-1.0)


def test_auto_precision_takes_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    """oneDNN calls bfloat16 supported on any AVX512 CPU (emulated there: no faster, less exact);
    ``auto`` asks for the AVX512-BF16 or AMX instructions themselves."""
    from morphospace.ssl.embedder import resolve_precision

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    for bf16, amx, expected in [(False, False, "32"), (True, False, "bf16"), (False, True, "bf16")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert resolve_precision("auto") == expected
    assert resolve_precision("32") == "32" and resolve_precision("bf16") == "bf16"


# --- the whole model on a tiny run ----------------------------------------------------------------

FORM_TINY = ["model.preset=form", "form.backbone=small", "form.input_size=32", "form.dim=8", "form.aug_views=1",
             "form.ssl_epochs=2", "form.decoder_epochs=1", "form.decoder_widths=[4, 8]", "model.latent_dim=3",
             "model.n_components=2", "train.epochs=3", "train.pretrain_epochs=1", "train.batch_size=16",
             "train.num_threads=1"]


@pytest.fixture(scope="module")
def form_run(tmp_path_factory):
    from test_train import make_run

    from morphospace.config import apply_overrides, load_config
    from morphospace.progress import set_quiet
    from morphospace.vade.embed import embed_run
    from morphospace.vade.train import train_run

    set_quiet(True)
    root = tmp_path_factory.mktemp("form")
    run = make_run(root / "run", n=40, side=32, channels=3)
    torch.manual_seed(7)  # a trunk "trained elsewhere": the model must start from it (form.weights)
    torch.save(build_trunk("small", 32).net.state_dict(), root / "trunk.pt")
    # form.sharpen too: the saved model must embed new images through the same filter; and two
    # heads: it must save, load, embed and resume an ensemble
    cfg = apply_overrides(load_config(None), FORM_TINY + [f"form.weights={root / 'trunk.pt'}", "form.sharpen=2",
                                                          "form.heads=2"])
    result = train_run(run, cfg)
    table = embed_run(run, cfg)
    return run, cfg, result, table


def test_damaged_caches_of_a_run_are_made_again_not_a_traceback(form_run, tmp_path):
    """A masked cube or a training's form embedding cut short raised "mmap length is greater than
    file size" (exit 1, a traceback) from embed and train: they are caches, and are made again."""
    import shutil

    from morphospace.run import RunDir, read_cached_npy
    from morphospace.vade.embed import embed_run

    from morphospace.report.collect import RunContents

    run, cfg, _, _ = form_run
    assert RunContents(run).stale_model is None  # the fingerprint embed records is the model file's
    copy = RunDir(shutil.copytree(run.path, tmp_path / "run"))
    want = np.load(copy.model_dir("vade") / "form_embedding.npy")
    for name, keep in (("cube_masked.npy", 5000), ("models/vade/form_embedding.npy", 300)):
        path = copy.path / name
        path.write_bytes(path.read_bytes()[:keep])
        assert read_cached_npy(path) is None
    embed_run(copy, cfg)
    np.testing.assert_allclose(copy.read_embedding("form"), want, rtol=1e-3, atol=1e-3)
    (copy.model_dir("vade") / "form_embedding.json").write_text("{damaged")
    embed_run(copy, cfg)
    np.testing.assert_allclose(copy.read_embedding("form"), want, rtol=1e-3, atol=1e-3)
    masked = read_cached_npy(copy.path / "cube_masked.npy", copy.read_cube().shape)
    assert masked is not None and read_cached_npy(copy.path / "cube_masked.npy", (1, 2)) is None


def test_a_new_cube_is_embedded_afresh_not_from_the_training_cache(form_run, tmp_path):
    """embed reuses the form embedding training computed only for the cube it was computed from:
    after a new ingest into the run, the galaxies are new and so must their embedding be."""
    import shutil

    from morphospace.run import RunDir, write_npy
    from morphospace.vade.embed import embed_run

    run, cfg, _, _ = form_run
    copy = RunDir(shutil.copytree(run.path, tmp_path / "run"))  # modification times kept
    cached = np.load(copy.model_dir("vade") / "form_embedding.npy")
    embed_run(copy, cfg)
    np.testing.assert_array_equal(copy.read_embedding("form"), cached)  # the training's cube: reused
    write_npy(copy.cube, copy.read_cube(mmap=False)[::-1].copy())  # a new ingest: here the galaxies reversed
    table = embed_run(copy, cfg)
    np.testing.assert_allclose(copy.read_embedding("form"), cached[::-1], rtol=1e-4, atol=1e-4)
    original = pd.read_parquet(run.path / "vade_galaxies.parquet")
    np.testing.assert_allclose(table["z_mean_0"].to_numpy(), original["z_mean_0"].to_numpy()[::-1], atol=1e-3)
    # the embedding of another training (one killed after writing it, the model before it put back):
    # the model was embedded with it without a word; now only its own training's is reused
    import json

    other = RunDir(shutil.copytree(run.path, tmp_path / "other"))
    record = json.loads((other.model_dir("vade") / "form_embedding.json").read_text())
    assert record["training"] and "cube" in record
    write_npy(other.model_dir("vade") / "form_embedding.npy", np.full_like(cached, 7.0))
    (other.model_dir("vade") / "form_embedding.json").write_text(json.dumps({**record, "training": "another"}))
    embed_run(other, cfg)
    np.testing.assert_allclose(other.read_embedding("form"), cached, rtol=1e-4, atol=1e-4)


def test_form_model_trains_embeds_and_generates(form_run):
    from morphospace.api import load_model

    run, cfg, result, table = form_run
    assert result.n_components == 2
    assert len(table) == 40 and set(table["label"]) <= {0, 1}
    assert np.allclose(table[["prob_0", "prob_1"]].sum(axis=1), 1, atol=1e-5)
    form = run.read_embedding("form")
    assert form.shape == (40, 16)  # two heads of 8
    model = load_model(run)
    assert len(model.vade.embedder.head.heads) == 2
    import morphospace as ms

    assert load_model(ms.Run(run.path)).hparams == model.hparams  # a notebook's Run too (it raised TypeError)
    assert model.vade.embedder.views == 8  # trained on every galaxy: the whole dihedral group
    note = json.loads(run.embedding_path("form").with_suffix(".json").read_text())
    assert note["embed_views"] == 8 and "averaged over 8 dihedral views" in note["what"]  # the views used, said
    assert model.vade.embedder.trunk.sharpen == 2.0
    start = torch.load(cfg.form.weights)  # the frozen trunk is the file's, and the saved model keeps it
    saved = model.vade.embedder.trunk.net.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in start.items())
    cube = np.load(run.path / "cube_masked.npy")
    mu, _ = model.encode(run.read_cube()[:5])  # the API masks neighbours itself
    np.testing.assert_allclose(mu, table[[f"z_mean_{i}" for i in range(3)]].to_numpy()[:5], atol=1e-4)
    fakes = model.sample(component=1, n=3)
    assert fakes.shape == (3, 3, 32, 32) and np.isfinite(fakes).all()
    assert cube.shape == run.read_cube().shape
    # the cluster probabilities are invariant to the dihedral views of the input
    p = model.predict_proba(run.read_cube()[:4])
    p_rot = model.predict_proba(np.rot90(run.read_cube()[:4], 1, axes=(2, 3)).copy())
    np.testing.assert_allclose(p, p_rot, atol=1e-3)


def test_form_core_keeps_the_most_typical_em_fit(form_run):
    """form.core_fits (default 8): the saved core is the medoid of 8 EM fits, recorded in training.json."""
    from morphospace.api import load_model
    from morphospace.vade.linear_core import fit_linear_core

    run, cfg, _, _ = form_run
    summary = json.loads((run.path / "models/vade/training.json").read_text())
    # epochs it trained, not train.epochs (which trains nothing in a linear core)
    assert summary["epochs"] is None and summary["ssl_epochs"] == cfg.form.ssl_epochs
    assert summary["decoder_epochs"] == cfg.form.decoder_epochs
    linear = summary["init"]["linear"]
    assert cfg.form.core_fits == 8 and len(linear["fit_seeds"]) == 8 and linear["fit_seeds"][0] == cfg.train.seed
    assert linear["fit_chosen"] == int(np.argmax(linear["fit_agreement"]))
    x = np.load(run.path / "models/vade/form_input.npy")
    alone, _ = fit_linear_core(x, cfg.model.latent_dim, cfg.model.k_min, cfg.model.k_max,
                               linear["fit_seeds"][linear["fit_chosen"]], n_components=cfg.model.n_components)
    saved = load_model(run).vade.core.prior
    torch.testing.assert_close(saved.means, alone.prior.means)
    torch.testing.assert_close(saved.weights, alone.prior.weights)


def test_form_training_resumes(form_run, tmp_path):
    import shutil

    from morphospace.vade.train import train_run

    run, cfg, _, _ = form_run
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    from morphospace.config import apply_overrides
    from morphospace.run import RunDir

    (copy / "models/vade/model.pt").unlink()  # as at a kill while the image decoder trained
    result = train_run(RunDir(copy), apply_overrides(cfg, ["train.epochs=4"]), resume=True)
    assert result.epochs == 4 and result.seconds > 0 and (copy / "models/vade/model.pt").is_file()


def test_a_finished_training_resumed_says_so_and_does_nothing(form_run, tmp_path, caplog, capsys):
    """A requeued `train --resume` of a training that finished said "60 of 60 epochs done", then made
    the form embedding again and retrained the image decoder (~85 s on sdss-gz1) to end with the same
    model. Complete is read from the model's record of the files it was trained from: a copy with
    new file times is still complete; a model of another training (other settings, put back by hand)
    or a head's checkpoint not the one the model came from goes on (more epochs: test_train)."""
    import hashlib
    import logging
    import shutil

    from morphospace.cli import main
    from morphospace.pipeline import save_config
    from morphospace.run import RunDir
    from morphospace.vade.train import train_run

    run, cfg, result, _ = form_run
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy, copy_function=shutil.copy)  # `cp -r`: every file a new time
    mdir = copy / "models/vade"
    model = mdir / "model.pt"
    before = model.read_bytes()

    def resumed(settings=cfg):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="morphospace"):
            return train_run(RunDir(copy), settings, resume=True), "the training is complete" in caplog.text

    again, complete = resumed()
    assert complete and "train again without --resume to train anew" in caplog.text  # a linear core: no epochs to add
    assert model.read_bytes() == before and again.seconds == 0.0
    assert again.n_components == result.n_components and again.model_path == model
    assert not (mdir / "ssl/view_bank.npy").exists()  # not made again
    np.save(mdir / "ssl/view_bank.npy", np.zeros(3))  # as at a kill between the model's save and the bank's removal
    assert resumed()[1] and not (mdir / "ssl/view_bank.npy").exists()
    save_config(RunDir(copy), cfg)  # the fixture trained with settings it did not save
    assert main(["train", str(copy), "--resume", "--quiet"]) == 0
    assert model.read_bytes() == before

    # another training's model put back (its SSL head alike, the core's latent_dim not): the settings it
    # began with, which its record names, are not those beside the checkpoints
    blob = torch.load(model, map_location="cpu", weights_only=True)
    other = json.loads((mdir / "training_began.json").read_text())
    other["latent_dim"] += 1
    blob["extra"]["checkpoints"]["training_began.json"] = hashlib.sha256(json.dumps(other).encode()).hexdigest()
    torch.save(blob, model)
    redone, complete = resumed()
    assert not complete and redone.seconds > 0
    assert torch.load(model, map_location="cpu", weights_only=True)["extra"]["checkpoints"]["training_began.json"] \
        == hashlib.sha256((mdir / "training_began.json").read_bytes()).hexdigest()  # the model made again
    assert resumed()[1]

    # the ensemble's second head: its checkpoint another than the model came from
    head = mdir / "ssl/head1/last.ckpt"
    state = torch.load(head, map_location="cpu", weights_only=False)
    torch.save({**state, "note": "another"}, head)
    assert not resumed()[1] and resumed()[1]


def test_a_saved_model_keeps_no_view_bank_unless_asked(form_run, tmp_path, caplog):
    """The view bank (77 kB a galaxy; 1.5 GB at train.sample's 20,000) is removed once the model is
    saved, and said; a resume (killed while the image decoder trained) makes it again and removes it
    again; train.keep_view_bank keeps it."""
    import logging
    import shutil

    from morphospace.config import apply_overrides
    from morphospace.run import RunDir
    from morphospace.vade.train import train_run

    run, cfg, _, _ = form_run
    bank = "models/vade/ssl/view_bank.npy"
    assert (run.path / "models/vade/model.pt").is_file() and not (run.path / bank).exists()
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    (copy / "models/vade/model.pt").unlink()  # a finished training's resume does nothing
    with caplog.at_level(logging.INFO, logger="morphospace"):
        train_run(RunDir(copy), cfg, resume=True)
    assert not (copy / bank).exists() and "view bank removed" in caplog.text
    kept = apply_overrides(cfg, ["train.keep_view_bank=true"])
    (copy / "models/vade/model.pt").unlink()
    train_run(RunDir(copy), kept, resume=True)
    assert np.load(copy / bank, mmap_mode="r").shape[:2] == (8 + cfg.form.aug_views, 40)


def test_a_training_stopped_while_it_filled_its_view_bank_resumes_the_bank(form_run, tmp_path, monkeypatch, caplog):
    """The view bank is most of a form training's time; a training stopped while it filled it (a Ctrl-C,
    a requeued job's SIGTERM, a kill) left a temporary file the next writer removed, and `train --resume`
    said "nothing to resume". The blocks done are now kept with a note, and a resume computes only the
    rest: the same bank and head as an uninterrupted training. A plain train, or a note of other
    settings, starts the bank afresh."""
    import logging
    import shutil

    from morphospace.config import apply_overrides
    from morphospace.run import RunDir
    from morphospace.ssl import bank as bank_module
    from morphospace.ssl import bank_file
    from morphospace.vade.train import train_run

    run, cfg, _, _ = form_run
    cfg = apply_overrides(cfg, ["train.keep_view_bank=true"])
    monkeypatch.setattr(bank_file, "NOTE_EVERY", 0.0)  # a note after every block (else every 10 s)
    real, computed = bank_module._block_views, []

    def views(trunk, x, start, *args, **kwargs):
        if stop_at is not None and start == stop_at:
            raise KeyboardInterrupt
        computed.append(start)
        return real(trunk, x, start, *args, **kwargs)

    monkeypatch.setattr(bank_module, "_block_views", views)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    for path in (whole, stopped):
        shutil.copytree(run.path, path)
    stop_at = None
    train_run(RunDir(whole), cfg)
    ssl = "models/vade/ssl"
    reference = np.load(whole / ssl / "view_bank.npy")
    assert computed == [0, 32] and not (whole / ssl / bank_file.FILLING).exists()

    stop_at, computed[:] = 32, []
    with caplog.at_level(logging.INFO, logger="morphospace"), pytest.raises(KeyboardInterrupt):
        train_run(RunDir(stopped), cfg)
    assert "view bank kept: 1 of 2 blocks done" in caplog.text
    assert json.loads((stopped / ssl / bank_file.FILLING_NOTE).read_text())["blocks"] == 1
    assert not (stopped / ssl / "last.ckpt").exists()
    left = [p.read_bytes() for p in (stopped / ssl / bank_file.FILLING, stopped / ssl / bank_file.FILLING_NOTE)]

    stop_at, computed[:] = None, []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="morphospace"):
        train_run(RunDir(stopped), cfg, resume=True)
    assert "resuming the view bank: 1 of 2 blocks done" in caplog.text and computed == [32]
    assert np.array_equal(np.load(stopped / ssl / "view_bank.npy"), reference)
    heads = [torch.load(p / ssl / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"] for p in (whole, stopped)]
    assert heads[0].keys() == heads[1].keys() and all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert not (stopped / ssl / bank_file.FILLING).exists() and not (stopped / ssl / bank_file.FILLING_NOTE).exists()

    # the bank of another training's settings is not gone on with; a plain train removes a bank left
    (stopped / "models/vade/model.pt").unlink()
    for path, data in zip((stopped / ssl / bank_file.FILLING, stopped / ssl / bank_file.FILLING_NOTE), left):
        path.write_bytes(data)
    note = json.loads(data)
    note["key"]["began"] = "another"
    (stopped / ssl / bank_file.FILLING_NOTE).write_text(json.dumps(note))
    (stopped / ssl / "last.ckpt").unlink()
    (stopped / ssl / "view_bank.npy").unlink()  # kept by train.keep_view_bank: a resume would read it
    computed[:] = []
    train_run(RunDir(stopped), cfg, resume=True)
    assert computed == [0, 32] and np.array_equal(np.load(stopped / ssl / "view_bank.npy"), reference)
    # a resume that reads the whole bank kept (or makes it through Lightning) leaves no leftover behind
    (stopped / "models/vade/model.pt").unlink()
    for path, data in zip((stopped / ssl / bank_file.FILLING, stopped / ssl / bank_file.FILLING_NOTE), left):
        path.write_bytes(data)
    computed[:] = []
    train_run(RunDir(stopped), cfg, resume=True)
    assert computed == [] and not (stopped / ssl / bank_file.FILLING).exists()
    assert not (stopped / ssl / bank_file.FILLING_NOTE).exists()
    (stopped / ssl / bank_file.FILLING_NOTE).write_bytes(left[1])
    computed[:] = []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="morphospace"):
        train_run(RunDir(stopped), cfg)
    assert computed == [0, 32] and not (stopped / ssl / bank_file.FILLING_NOTE).exists()
    assert "the view bank a stopped training left is removed" in caplog.text  # said, not lost without a word


def test_a_view_bank_stopped_by_a_closed_pipe_or_killed_at_once_is_resumed(form_run, tmp_path, monkeypatch):
    """Only a full disk removes the blocks done: a closed output pipe (a `| tee` a scheduler killed: the
    progress bar's BrokenPipeError, an OSError) removed them as if the disk were full, and `--resume`
    said "nothing to resume". A kill before the first timed note (10 s) left a file as large as the
    bank with no note: `--resume` said "nothing to resume" and nothing removed the file."""
    import shutil

    from morphospace.run import RunDir
    from morphospace.ssl import bank as bank_module
    from morphospace.ssl import bank_file
    from morphospace.vade.train import train_run

    run, cfg, _, _ = form_run
    ssl = "models/vade/ssl"
    real, stop = bank_module._block_views, {}

    def views(trunk, x, start, *args, **kwargs):
        if start == stop.get("at"):
            raise stop["error"]
        return real(trunk, x, start, *args, **kwargs)

    monkeypatch.setattr(bank_module, "_block_views", views)
    monkeypatch.setattr(bank_file, "NOTE_EVERY", 0.0)
    piped = tmp_path / "piped"
    shutil.copytree(run.path, piped)
    stop.update(at=32, error=BrokenPipeError(32, "Broken pipe"))
    with pytest.raises(BrokenPipeError):
        train_run(RunDir(piped), cfg)
    assert json.loads((piped / ssl / bank_file.FILLING_NOTE).read_text())["blocks"] == 1
    assert (piped / ssl / bank_file.FILLING).is_file()

    # killed (SIGKILL: no keep) before the first timed note
    monkeypatch.setattr(bank_file, "NOTE_EVERY", 3600.0)
    monkeypatch.setattr(bank_file.FillingBank, "keep", lambda self, blocks: None)
    killed = tmp_path / "killed"
    shutil.copytree(run.path, killed)
    stop.update(at=0, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train_run(RunDir(killed), cfg)
    assert (killed / ssl / bank_file.FILLING).is_file()
    stop.clear()
    train_run(RunDir(killed), cfg, resume=True)  # was: "nothing to resume"
    assert not (killed / ssl / bank_file.FILLING).exists() and not (killed / ssl / bank_file.FILLING_NOTE).exists()
    assert (killed / "models/vade/model.pt").is_file()


def test_an_mlp_core_killed_before_it_started_resumes_from_the_head(tmp_path, caplog):
    """form.core = "mlp": a run killed once the SSL head was trained, before the core wrote its
    first checkpoint, resumes (it was refused: the core's checkpoint was the one looked for) and
    ends as an uninterrupted run; a changed train.sample is refused, a damaged core checkpoint
    is named. The small trunk, random and frozen here, is drawn from the seed (it was drawn from
    whatever the global random state was: the resumed run embedded with another trunk), and the
    log says that it is random."""
    import shutil

    from test_train import make_run

    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError
    from morphospace.run import RunDir
    from morphospace.vade.train import train_run

    run = make_run(tmp_path / "run", n=24, side=32, channels=3)
    cfg = apply_overrides(load_config(None), FORM_TINY + ["form.core=mlp"])
    with caplog.at_level("WARNING", logger="morphospace"):
        train_run(run, cfg)
    assert "the embedding is a random CNN's features" in caplog.text
    torch.manual_seed(123)  # the global state must not decide the trunk
    mdir = run.path / "models" / "vade"
    killed = RunDir(shutil.copytree(run.path, tmp_path / "killed", symlinks=True))
    kdir = killed.path / "models" / "vade"
    for p in [kdir / "model.pt", kdir / "training.json", *kdir.glob("*.ckpt")]:
        p.unlink()  # as at a kill between the head's last epoch and the core's first
    assert (kdir / "ssl" / "last.ckpt").is_file()
    with pytest.raises(UserError, match="settings changed since the training began .*sample"):
        train_run(killed, apply_overrides(cfg, ["train.sample=10"]), resume=True)
    # the form model's settings named one by one, with their values (it said "(form)")
    with pytest.raises(UserError, match=r"\(form\.ssl_epochs \d+ -> 99\): set them back to resume"):
        train_run(killed, apply_overrides(cfg, ["form.ssl_epochs=99"]), resume=True)
    # the image decoder's reconstruction weight: resumed with another, it trained another decoder while
    # the model recorded the first (0.0: the form preset did not record it)
    with pytest.raises(UserError, match=r"form\.image_radial_inner [\d.]+ -> 0\.1"):
        train_run(killed, apply_overrides(cfg, ["model.radial_inner=0.1"]), resume=True)
    # a key a training recorded before this version did not: not a change
    import json

    began = json.loads((kdir / "hparams.json").read_text())
    began["form"].pop("core_merge")
    (kdir / "hparams.json").write_text(json.dumps(began))
    # 0 (every galaxy) and the default 20,000 draw the same 24 galaxies: not a change
    train_run(killed, apply_overrides(cfg, ["train.sample=0"]), resume=True)
    a = torch.load(mdir / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(kdir / "model.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    assert not [(k, float((a[k] - b[k]).abs().max())) for k in a if not torch.equal(a[k], b[k])]
    # finished, an MLP core's resume does nothing, unless given more epochs, which its core goes on with
    caplog.clear()
    with caplog.at_level("INFO", logger="morphospace"):
        train_run(killed, cfg, resume=True)
    assert "the training is complete" in caplog.text and "give more epochs (train.epochs)" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="morphospace"):
        train_run(killed, apply_overrides(cfg, [f"train.epochs={cfg.train.epochs + 1}"]), resume=True)
    assert "the training is complete" not in caplog.text
    assert torch.load(kdir / "last.ckpt", weights_only=False)["epoch"] + 1 == cfg.train.epochs + 1
    core = kdir / "last.ckpt"
    core.unlink()
    core.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(UserError, match="last.ckpt is damaged"):
        train_run(killed, cfg, resume=True)


def test_form_model_trains_on_a_sample_and_embeds_every_galaxy(tmp_path):
    """Above train.sample galaxies the model learns from a reproducible sample; every galaxy is embedded."""

    from test_train import make_run

    from morphospace.api import load_model
    from morphospace.config import apply_overrides, load_config
    from morphospace.data.sample import sample_rows
    from morphospace.vade.train import train_run

    run = make_run(tmp_path / "run", n=40, side=32, channels=3)
    cfg = apply_overrides(load_config(None), FORM_TINY + ["train.sample=24", "train.keep_view_bank=true"])
    train_run(run, cfg)
    summary = json.loads((run.path / "models/vade/training.json").read_text())
    assert summary["train_sample"] == 24 and summary["n_images"] == 24
    assert np.load(run.path / "models/vade/ssl/view_bank.npy", mmap_mode="r").shape[:2] == (9, 24)
    form = np.load(run.path / "models/vade/form_embedding.npy")
    assert form.shape == (40, 8) and np.isfinite(form).all()
    # sampled rows (from the view bank) and the rest (from the embedder) are the same function
    embedder = load_model(run).vade.embedder
    # form.embed_views = 0 (auto): a sampled run averages the 4 quarter turns, for every galaxy
    assert embedder.views == 4 and summary["form"]["embed_views"] == 4
    with torch.no_grad():
        direct = embedder(torch.from_numpy(np.load(run.path / "cube_masked.npy"))).numpy()
    np.testing.assert_allclose(direct, form, atol=1e-4)
    rows = sample_rows(40, 24, cfg.train.seed)
    assert len(rows) == 24 and np.array_equal(rows, sample_rows(40, 24, cfg.train.seed))


def test_embed_views_takes_the_group_sizes_only():
    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError

    assert apply_overrides(load_config(None), ["form.embed_views=2"]).form.embed_views == 2
    with pytest.raises(UserError, match="embed_views"):
        apply_overrides(load_config(None), ["form.embed_views=3"])


def test_form_preset_rejects_a_bad_loss(tmp_path):
    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError
    from morphospace.vade.hparams import resolve_hparams

    with pytest.raises(UserError, match="form.loss"):
        resolve_hparams(apply_overrides(load_config(None), ["form.loss=triplet"]), 3, 64)
    with pytest.raises(UserError, match="form.heads = 2 needs a frozen trunk"):
        resolve_hparams(apply_overrides(load_config(None), ["form.heads=2", "form.train_trunk=true"]), 3, 64)
    with pytest.raises(UserError, match="form.heads"):
        apply_overrides(load_config(None), ["form.heads=0"])


# --- the linear probe ------------------------------------------------------------------------------

def test_linear_probe_reads_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 200)
    centres = {"a": (0, 0), "b": (6, 0), "c": (0, 6)}
    x = np.array([centres[v] for v in y]) + rng.normal(0, 1, (600, 2))
    t = linear_probe(x, y, repeats=3)
    assert list(t["fraction"]) == [0.01, 0.1, 1.0]
    assert (t["balanced_accuracy"] > 0.9).all()
    noise = linear_probe(rng.normal(size=(600, 2)), y, fractions=(0.1, 1.0), repeats=3)
    assert (noise["balanced_accuracy"] < 0.5).all()
    assert np.allclose(noise["chance"], 1 / 3)


def test_linear_probe_scores_do_not_depend_on_the_processes():
    rng = np.random.default_rng(2)
    y = np.repeat(["a", "b", "c"], [300, 120, 80])
    x = (y == "a")[:, None] * 1.5 + (y == "b")[:, None] * np.array([0.0, 1.5]) + rng.normal(size=(500, 2))
    one = linear_probe(x, y, fractions=(0.1, 1.0), repeats=3)
    two = linear_probe(x, y, fractions=(0.1, 1.0), repeats=3, n_jobs=2)
    pd.testing.assert_frame_equal(one, two)
    assert list(one["n_train"]) == [50, 400] and list(one["repeats"]) == [3, 5]
    assert 0.5 < one["balanced_accuracy"].min() < 0.99  # a real score, not a trivial one


def test_linear_probe_drops_missing_labels_and_skips_tiny_fractions():
    rng = np.random.default_rng(1)
    y = np.array(["a", "b"] * 50, dtype=object)
    y[:10] = None
    x = rng.normal(size=(100, 3))
    t = linear_probe(x, y, fractions=(0.01, 1.0))
    assert list(t["fraction"]) == [1.0]  # 1% of 90 is too few for two classes
    with pytest.raises(ValueError):
        linear_probe(x, np.array(["a"] * 100))


def test_linear_probe_keeps_two_of_a_small_class_when_sampling_and_skips_draws_that_lack_one(caplog):
    """max_rows sampled a class of 4 down to one galaxy and emptied the whole probe; a 1% draw that
    trained on none of a class of 6 was scored (its balanced accuracy capped at 2/3)."""
    import logging

    rng = np.random.default_rng(0)
    y = np.repeat(["S", "E", "Edge"], [1996, 1000, 4])
    x = rng.normal(size=(3000, 3)) + np.select([y == "S", y == "E"], [0.0, 3.0], 6.0)[:, None]
    t = linear_probe(x, y, fractions=(0.1, 1.0), repeats=2, max_rows=600)
    assert list(t["fraction"]) == [1.0] and t["chance"].item() == 1 / 3  # Edge kept, twice: 10% lacks it
    y2 = np.repeat([1, 0, 2], [660, 334, 6])
    x2 = rng.normal(size=(1000, 3)) + np.select([y2 == 1, y2 == 0], [0.0, 3.0], 6.0)[:, None]
    with caplog.at_level(logging.INFO, logger="morphospace"):
        t2 = linear_probe(x2, y2, fractions=(0.01, 0.5, 1.0), repeats=3)
    # every 1% draw now holds two of the class of 6 (a proportional split gave it none or one, and the
    # fraction was skipped): scored, as high as the others
    assert list(t2["fraction"]) == [0.01, 0.5, 1.0] and (t2["balanced_accuracy"] > 0.9).all()
    assert t2["n_train"].iloc[0] == 10 and "1% of 1000 labelled galaxies is too few" not in caplog.text


def test_linear_probe_reads_text_missing_markers_as_missing():
    rng = np.random.default_rng(2)
    y = np.array(["E", "S", "Edge", "S"] * 100, dtype=object)
    y[::4] = "N/A"
    y[1::8] = "null"
    x = rng.normal(size=(400, 3))
    t = linear_probe(x, y, fractions=(1.0,))
    assert t["chance"].item() == 0.5  # "S" and "Edge": "N/A" and "null" are no class


def test_head_scaling_streams_a_memory_mapped_bank(tmp_path):
    """The head's standardisation from a (V, N, F) bank read in chunks equals numpy's on the whole."""
    rng = np.random.default_rng(0)
    bank = (rng.normal(size=(3, 500, 16)) * 4 + 2).astype(np.float32)
    np.save(tmp_path / "bank.npy", bank)
    head = FormHead(16, dim=4)
    head.set_scaling(np.load(tmp_path / "bank.npy", mmap_mode="r"), chunk=64)
    flat = bank.astype(np.float64).reshape(-1, 16)
    np.testing.assert_allclose(head.mean.numpy(), flat.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(head.std.numpy(), flat.std(0) + 1e-6, rtol=1e-6)


def test_a_feature_dead_in_training_cannot_throw_a_new_image_far(tmp_path):
    """A trunk feature constant over every training view (a ReLU that never fired) counts as 0:
    a new image that lights it lands where its other features put it, not 1e6 away."""
    rng = np.random.default_rng(0)
    bank = np.abs(rng.normal(size=(2, 200, 8))).astype(np.float32)
    bank[..., 3] = 0.0  # dead in training
    head = FormHead(8, dim=4)
    head.set_scaling(bank)
    probe = torch.from_numpy(bank[0, :5].copy())
    lit = probe.clone()
    lit[:, 3] = 0.5  # a new image lights it
    with torch.no_grad():
        torch.testing.assert_close(head(lit), head(probe))
        assert torch.isfinite(head(lit)).all()
    live = np.delete(bank.reshape(-1, 8).astype(np.float64), 3, axis=1)
    np.testing.assert_allclose(np.delete(head.std.numpy(), 3), live.std(0) + 1e-6, rtol=1e-5)


def test_a_feature_that_barely_moved_in_training_cannot_throw_a_new_image_far():
    """A trunk feature that fired weakly on one training view (std 1e-5) would multiply a new
    image's value by 1e5; held within the training range, the new image moves no further than the
    most extreme training view could move it. Training views are not changed by the range."""
    rng = np.random.default_rng(0)
    bank = np.abs(rng.normal(size=(2, 200, 8))).astype(np.float32)
    bank[..., 3] = 0.0
    bank[0, 7, 3] = 1e-4  # barely alive: fired once, faintly
    head = FormHead(8, dim=4).eval()
    head.set_scaling(bank)
    assert 0 < head.std[3] < 1e-5
    probe = torch.from_numpy(bank[0, :5].copy())
    lit, extreme = probe.clone(), probe.clone()
    lit[:, 3] = 0.5  # a new image lights it 5,000 times more than any training view did
    extreme[:, 3] = 1e-4  # the most any training view lit it
    with torch.no_grad():
        torch.testing.assert_close(head(lit), head(extreme))
        assert float((head(lit) - head(probe)).norm(dim=1).max()) < 1e3
        train = torch.from_numpy(bank.reshape(-1, 8))
        unbounded = head.net((train - head.mean) / head.std)
        torch.testing.assert_close(head(train), unbounded)  # the training views lie within the range
    free = FormHead(8, dim=4).eval()
    free.load_state_dict({k: v for k, v in head.state_dict().items() if k not in ("low", "high")})
    assert torch.isinf(free.low).all() and torch.isinf(free.high).all()  # a head saved before the range
    with torch.no_grad():
        assert float((free(lit) - free(probe)).norm(dim=1).max()) > 1e3  # what the range prevents


def test_linear_probe_runs_on_a_stratified_sample_above_max_rows(caplog):
    import logging

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], [300, 100])
    x = (y == "a")[:, None] * 3.0 + rng.normal(size=(400, 2))
    with caplog.at_level(logging.INFO, logger="morphospace"):
        t = linear_probe(x, y, fractions=(0.1, 1.0), repeats=2, max_rows=200)
    assert "sample of 200 of the 400" in caplog.text
    assert t.loc[t["fraction"] == 0.1, "n_train"].item() == 20  # 10% of the 200 sampled
    assert (t["balanced_accuracy"] > 0.9).all()
    full = linear_probe(x, y, fractions=(0.1,), repeats=2, max_rows=None)
    assert full["n_train"].item() == 40
    # what was probed is in the table and the report's headings (the report said "all labels")
    assert (t["labelled"] == 200).all() and (t["labelled_of"] == 400).all() and (full["labelled"] == 400).all()
    import tempfile
    from pathlib import Path

    from morphospace.report.sections.comparisons import probe_view

    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "linear_probe.csv"
        t.assign(embedding="form", label="morph").to_csv(csv, index=False)
        head = probe_view(csv)["table"].head
        assert "10% of labels (a sample of 200 of 400) (20)" in head
        assert any(h.startswith("a sample of 200 of 400 labels (5-fold CV") for h in head)
        full.assign(embedding="form", label="morph").to_csv(csv, index=False)
        assert "10% of labels (40)" in probe_view(csv)["table"].head


def test_the_probe_s_sample_holds_no_more_rows_than_asked():
    """Each class's share rounded, and two of every class, went past the size: 20,005 rows for
    20,000 with six classes of three beside one of 50,000."""
    from morphospace.analysis.probe import _stratified_sample

    for counts, size in (([50000, 3, 3, 3, 3, 3, 3], 20000), ([50000, 3, 3, 3, 3, 3, 3], 100),
                         ([6000, 4000, 15, 15, 15, 15], 100)):
        counts = np.array(counts)
        y = np.repeat(np.arange(len(counts)), counts)
        rows = _stratified_sample(y, np.arange(len(counts)), counts, size, 0)
        assert len(rows) == size and len(np.unique(rows)) == size
        assert (np.bincount(y[rows], minlength=len(counts)) >= 2).all()  # two of every class still
    with pytest.raises(ValueError, match="must hold two galaxies of each of the 3 classes"):  # it returned 6 for 4
        linear_probe(np.random.default_rng(0).normal(size=(30, 2)), np.repeat(list("abc"), 10), max_rows=4)


def test_image_decoder_trains_in_bfloat16_only_on_a_bfloat16_cpu_unless_told(monkeypatch):
    """Where the trunk runs in bfloat16 on a CPU, the image decoder trains in bfloat16 autocast
    (Lightning's ``bf16-mixed``); a precision the user set, a GPU, or a float32 trunk keep the
    run's. The decoder it returns keeps float32 weights and gives float32 images."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.vade.form_decoder import fit_image_decoder
    from morphospace.vade.form_train import decoder_trainer_kwargs

    def precision(trunk, *overrides):
        return decoder_trainer_kwargs(apply_overrides(load_config(None), list(overrides)), trunk)["precision"]

    assert precision("bf16") == "bf16-mixed"
    assert precision("32") == "32-true"
    assert precision("bf16", "train.precision=16-mixed") == "16-mixed"
    assert precision("bf16", "train.accelerator=gpu") == "32-true"

    seen = []
    import lightning.pytorch as pl
    real = pl.Trainer.__init__
    def spy(self, *a, **kw):
        seen.append(kw.get("precision"))
        real(self, *a, **kw)

    monkeypatch.setattr(pl.Trainer, "__init__", spy)
    g = np.random.default_rng(0)
    cube = g.random((16, 3, 16, 16), dtype=np.float32)
    mu, log_var = g.standard_normal((16, 4)).astype(np.float32), np.full((16, 4), -2.0, np.float32)
    decoder = fit_image_decoder(mu, log_var, cube, widths=(4, 8), epochs=1, batch_size=8,
                                trainer_kwargs={"accelerator": "cpu", "precision": "bf16-mixed"})
    assert seen == ["bf16-mixed"]
    assert all(p.dtype == torch.float32 for p in decoder.parameters())
    with torch.no_grad():
        out = decoder(torch.from_numpy(mu))
    assert out.dtype == torch.float32 and out.shape == (16, 3, 16, 16) and torch.isfinite(out).all()


def test_each_process_fits_the_image_decoder_on_its_own_shard():
    """Under DDP the decoder's galaxies are split among the processes (before, every process went
    through all of them: no faster on four GPUs than on one); on one process, all of them."""
    from types import SimpleNamespace

    from morphospace.nets.shards import ShardedData
    from morphospace.vade.form_decoder import CodesAndImages

    n = 21
    codes = np.arange(n, dtype=np.float32)[:, None]
    data = CodesAndImages(codes, codes, np.zeros((n, 1, 4, 4), np.float32))
    for world in (1, 2):
        seen = []
        for rank in range(world):
            shards = ShardedData(data, batch_size=4, seed=0)  # as fit_image_decoder builds it
            shards.trainer = SimpleNamespace(world_size=world, global_rank=rank)
            seen.append(sorted(int(v) for mu, _, _ in shards.train_dataloader() for v in mu[:, 0]))
        if world == 1:
            assert seen == [list(range(n))]
        else:  # 11 and 11: DistributedSampler pads the odd one out with a repeat
            assert set(seen[0]) | set(seen[1]) == set(range(n)) and len(seen[0]) == len(seen[1]) == 11


def test_the_form_model_logs_its_losses_per_epoch(form_run):
    """The README's "loss terms per epoch go to RUN/models/vade/logs/" held for the pixel VaDE alone:
    the form model's SSL heads and image decoder trained with no logger."""
    run, cfg, _, _ = form_run
    logs = run.path / "models" / "vade" / "logs"
    for part, column, epochs in (("ssl", "ssl_loss", cfg.form.ssl_epochs), ("ssl_head1", "ssl_loss", cfg.form.ssl_epochs),
                                 ("decoder", "decoder_mse", cfg.form.decoder_epochs)):
        metrics = pd.read_csv(logs / "csv" / f"{part}_v0" / "metrics.csv")
        assert metrics.dropna(subset=[column])["epoch"].tolist() == list(range(epochs)), part
        assert np.isfinite(metrics[column].dropna()).all()
        assert list((logs / "tensorboard" / f"{part}_v0").glob("events.out.tfevents*")), part
    # the image decoder takes form.decoder_batch_size galaxies a step (at 128 a few thousand galaxies gave it
    # too few steps: coloured rims), each epoch ceil(40 / 32) = 2 steps
    decoder = pd.read_csv(logs / "csv" / "decoder_v0" / "metrics.csv").dropna(subset=["decoder_mse"])
    per_epoch = -(-len(run.read_cube()) // cfg.form.decoder_batch_size)
    assert cfg.form.decoder_batch_size == 32 and per_epoch == 2
    assert decoder["step"].tolist() == [per_epoch * (e + 1) - 1 for e in range(cfg.form.decoder_epochs)]
    # and the model's figure of its training draws them (it drew nothing for a linear core)
    from morphospace.vade.figures import fig_training_curves
    from morphospace.vade.io import load_vade, model_file

    fig = fig_training_curves(run, load_vade(model_file(run))[0])
    assert [ax.get_title() for ax in fig.axes] == ["SSL head: contrastive loss (NT-Xent)",
                                                   "image decoder: mean squared error"]
    assert len(fig.axes[0].lines[0].get_xdata()) == cfg.form.ssl_epochs


def test_the_size_range_of_the_nuisance_views_reaches_the_view_bank(tmp_path, monkeypatch, caplog):
    """form.aug_scale is the apparent-size range the view bank's nuisance views draw from, and
    form.aug_light whether they are made on the galaxy's light, with the cube's own stretch; both are in
    the model's settings (a resume with another is refused like any other change). A cube no ingest
    made (no summary says how it was stretched) gets the pixel views, and its model says so."""
    import json

    from test_train import make_run

    import morphospace.ssl.bank_file as bank_file
    import morphospace.ssl.training as training
    from morphospace.config import ConfigError, apply_overrides, load_config
    from morphospace.vade.hparams import settings_of
    from morphospace.vade.io import load_vade, model_file
    from morphospace.vade.train import train_run

    seen = []
    real = training.view_bank

    def spy(*args, **kwargs):
        a = kwargs["augment"]
        seen.append((a.scale, a.light, a.normalise, a.softening))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "view_bank", spy)  # through Lightning
    monkeypatch.setattr(bank_file, "view_bank", spy)  # on one CPU process (kept across a kill: bank_file)
    cfg = apply_overrides(load_config(None), FORM_TINY + ["form.aug_scale=[0.8, 1.25]"])  # not the default
    run = make_run(tmp_path / "run", n=16, side=32, channels=3)
    with caplog.at_level("INFO", logger="morphospace"):
        train_run(run, cfg)
    assert seen == [((0.8, 1.25), False, "asinh", 0.1)]
    assert "no ingest summary that says how its cube was stretched" in caplog.text
    assert "1 nuisance views (made on the stretched pixels)" in caplog.text
    _, hp, _ = load_vade(model_file(run))
    assert settings_of(hp)["form.aug_scale"] == [0.8, 1.25]
    # the settings stay as given (the log says what the views were), so its training resumes
    from morphospace.vade.fitting import check_resumable
    from morphospace.vade.hparams import check_against_cube

    check_resumable(run, check_against_cube(cfg, run.read_cube(), announce=False), say=False)
    # a cube the ingest made: the views on its light, undone with its own softening
    ingested = make_run(tmp_path / "ingested", n=16, side=32, channels=3)
    ingested.ingest_summary.write_text(json.dumps({"preprocess": {
        "crop": 0.5, "size": 32, "channels": 3, "normalise": "asinh", "softening": 0.25, "resample": "box",
        "exact": False, "jpeg_draft": True}}))
    with caplog.at_level("INFO", logger="morphospace"):
        train_run(ingested, cfg)
    assert seen[1] == ((0.8, 1.25), True, "asinh", 0.25)
    assert "1 nuisance views (made on the galaxy's light)" in caplog.text
    # and the trained trunk's views (drawn for every batch, by its loader) are the same light views
    stepped = []

    class Spy(training.ViewBankDataModule):
        def __init__(self, *args, **kwargs):
            stepped.append(kwargs["augment"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training, "ViewBankDataModule", Spy)
    train_run(make_run(tmp_path / "trunk", n=16, side=32, channels=3), apply_overrides(cfg, ["form.train_trunk=true"]))
    assert not stepped[0].light  # no summary: the pixel views
    trunk = make_run(tmp_path / "trunk_ingested", n=16, side=32, channels=3)
    trunk.ingest_summary.write_text(ingested.ingest_summary.read_text())
    train_run(trunk, apply_overrides(cfg, ["form.train_trunk=true"]))
    assert stepped[1].light and stepped[1].softening == 0.25
    _, hp, _ = load_vade(model_file(ingested))
    assert settings_of(hp)["form.aug_light"] is True
    # a model saved before the settings existed was trained with 0.9-1.1 on the pixels, and says so
    old = {**hp, "form": {k: v for k, v in hp["form"].items() if k not in ("aug_scale", "aug_light")}}
    assert settings_of(old)["form.aug_scale"] == [0.9, 1.1] and settings_of(old)["form.aug_light"] is False
    # and a resume of its training with today's defaults is a change of settings (its views were drawn otherwise)
    from morphospace.vade.fitting import comparable_hparams, hparam_changes

    now = {**hp, "form": {**hp["form"], "aug_scale": [0.7, 1.43]}}
    assert sorted(hparam_changes("settings", comparable_hparams(old), comparable_hparams(now))) == [
        "settings.form.aug_light False -> True", "settings.form.aug_scale [0.9, 1.1] -> [0.7, 1.43]"]
    with pytest.raises(ConfigError, match="low <= 1 <= high"):
        apply_overrides(load_config(None), ["form.aug_scale=[1.1, 1.3]"])


def test_the_image_decoder_draws_the_sky_in_the_frame_s_corners():
    """The radial weight falls to about 1e-3 in the frame's corners: the decoder learned nothing there and
    drew coloured noise into every reconstruction and synthetic galaxy. With the weight's floor
    (``form.decoder_weight_floor``) it draws the sky there. A model saved before the floor trained without one."""
    from morphospace.vade.form_decoder import fit_image_decoder
    from morphospace.vade.hparams import with_earlier_form

    g = np.random.default_rng(0)
    n, side, sky = 64, 16, np.array([0.3, 0.2, 0.4], np.float32)
    mu = g.standard_normal((n, 2)).astype(np.float32)
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    # galaxies elongated along x (the canonical frame turns them by nothing), their light set by the code
    light = np.exp(-xx**2 / 18 - yy**2 / 4)[None] * (0.5 + 0.2 * np.tanh(mu[:, :1, None]))
    cube = (sky[None, :, None, None] + light[:, None]).astype(np.float32)
    corners = np.hypot(yy, xx) > side / 2

    def corner_error(floor: float) -> float:
        decoder = fit_image_decoder(mu, np.full_like(mu, -4.0), cube, widths=(8, 16), epochs=25, batch_size=16,
                                    seed=0, weight_floor=floor, trainer_kwargs={"accelerator": "cpu"})
        with torch.no_grad():
            out = decoder(torch.from_numpy(mu)).numpy()
        return float(np.abs(out - cube)[:, :, corners].mean())

    without, with_floor = corner_error(0.0), corner_error(0.5)
    assert with_floor < 0.75 * without, (without, with_floor)  # 0.63 here; 0.29 on sdss-gz1 (the measurements)
    assert with_earlier_form({"dim": 64})["decoder_weight_floor"] == 0.0
