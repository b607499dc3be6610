"""The view bank is the same on one process and shared among several (Lightning, gloo), and its
nuisance views draw the same numbers on any device (ssl/bank.py, ssl/augment.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphospace.image.geometry import dihedral
from morphospace.ssl.augment import NuisanceAugment
from morphospace.ssl.bank import BLOCK, N_DIHEDRAL, view_bank, view_seed
from morphospace.ssl.embedder import build_trunk


def _cube(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.normal(0, 1, (n, 3, 16, 16)).astype(np.float32)


def _trunk():
    torch.manual_seed(0)
    return build_trunk("small", 32)


def test_one_process_bank_holds_every_view_of_every_row():
    n = BLOCK + 7  # a short last block
    cube, trunk = _cube(n), _trunk()
    bank = view_bank(trunk, cube, aug_views=2, seed=5)
    assert bank.shape == (N_DIHEDRAL + 2, n, trunk.dim)
    with torch.no_grad():
        x = torch.from_numpy(cube[BLOCK:])  # the last block, by hand
        np.testing.assert_allclose(bank[3, BLOCK:], trunk.eval()(dihedral(x, 3)).numpy(), atol=1e-5)
        aug = NuisanceAugment()(x, seed=view_seed(5, N_DIHEDRAL + 1, BLOCK))
        np.testing.assert_allclose(bank[N_DIHEDRAL + 1, BLOCK:], trunk(aug).numpy(), atol=1e-5)
    assert not np.allclose(bank[N_DIHEDRAL], bank[N_DIHEDRAL + 1])  # two different nuisance draws


def test_two_cpu_processes_build_the_one_process_bank(tmp_path):
    n = 2 * BLOCK + 5  # three blocks, the last short: an odd block per process
    cube = _cube(n)
    one = view_bank(_trunk(), cube, aug_views=1, seed=2)
    out = np.lib.format.open_memmap(tmp_path / "bank.npy", mode="w+", dtype=np.float32, shape=one.shape)
    two = view_bank(_trunk(), cube, aug_views=1, seed=2, out=out, work_dir=tmp_path / "shares",
                    trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    assert two is out
    np.testing.assert_allclose(np.asarray(two), one, atol=1e-5)
    assert not (tmp_path / "shares").exists()  # the shares are cleaned up

    def create():  # only once both processes' shares are on disk (the model folder is cleared by then)
        assert sorted(p.name for p in (tmp_path / "again").glob("rank*.json")) == ["rank0.json", "rank1.json"]
        opened.append(tmp_path / "lazy.npy")
        return np.lib.format.open_memmap(opened[0], mode="w+", dtype=np.float32, shape=one.shape)

    opened: list = []
    lazy = view_bank(_trunk(), cube, aug_views=1, seed=2, out=create, work_dir=tmp_path / "again",
                     trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    assert len(opened) == 1 and str(lazy.filename) == str(opened[0])
    np.testing.assert_allclose(np.asarray(lazy), one, atol=1e-5)


def test_the_loader_makes_each_blocks_nuisance_views_as_one_process_does():
    """Through Lightning a block is read with its nuisance views made (by the loader's processes, not
    the step that runs the trunk on the GPU): the same views as the one-process bank draws."""
    from morphospace.ssl.bank import _Blocks

    n = BLOCK + 5
    cube = _cube(n)
    for augment in (NuisanceAugment(), NuisanceAugment(light=True)):
        blocks = _Blocks(cube, BLOCK, 2, 7, augment)
        assert len(blocks) == 2 and blocks.shape == (2, 3, BLOCK, 3, 16, 16)
        last = blocks[1]
        x = torch.from_numpy(cube[BLOCK:])
        np.testing.assert_array_equal(last[0, :5], cube[BLOCK:])
        for v in (1, 2):
            made = augment(x, seed=view_seed(7, N_DIHEDRAL + v - 1, BLOCK)).numpy()
            np.testing.assert_allclose(last[v, :5], made, atol=1e-6)
        assert not last[:, 5:].any()  # the padding stays zero
        np.testing.assert_array_equal(blocks[np.array([1, 0])][0], last)  # a batched fetch


def test_two_processes_with_loader_workers_build_the_one_process_bank_of_light_views(tmp_path):
    n = BLOCK + 5
    cube = _cube(n)
    augment = NuisanceAugment(light=True)
    one = view_bank(_trunk(), cube, aug_views=2, seed=3, augment=augment)
    two = view_bank(_trunk(), cube, aug_views=2, seed=3, augment=augment, work_dir=tmp_path / "shares",
                    loader_workers=1, trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    np.testing.assert_allclose(two, one, atol=1e-5)
    assert not np.allclose(one[N_DIHEDRAL], one[N_DIHEDRAL + 1])


def test_a_bank_made_by_two_processes_and_stopped_goes_on_from_its_last_round(tmp_path, monkeypatch, caplog):
    """Through Lightning (GPUs, several processes) a training stopped while it made its view bank left
    nothing to go on with: a requeued job on 10^6 galaxies made the whole bank again. The blocks now go
    in rounds, each gathered into the bank's file and noted, and a resume goes on after the last."""
    import json

    from morphospace.ssl import bank as bank_module
    from morphospace.ssl import bank_file

    n = 3 * BLOCK + 5  # four blocks: four rounds
    cube = _cube(n)
    one = view_bank(_trunk(), cube, aug_views=1, seed=2)
    spawn = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}
    real, firsts, stop = bank_module.predict_rows, [], {}

    def rounds(net, blocks, *args, **kwargs):
        firsts.append(blocks.first)
        if blocks.first == stop.get("at"):
            raise KeyboardInterrupt  # a requeued job's SIGTERM, mid-bank
        return real(net, blocks, *args, **kwargs)

    monkeypatch.setattr(bank_module, "predict_rows", rounds)
    monkeypatch.setattr(bank_module, "ROUNDS", 4)
    monkeypatch.setattr(bank_module, "ROUND_BLOCKS", 1)  # (128 blocks at least: 32,768 galaxies)
    key, shape = {"began": "now"}, one.shape
    stop["at"] = 2
    with caplog.at_level("WARNING", logger="morphospace"), pytest.raises(KeyboardInterrupt):
        bank_file.filled_bank(_trunk(), cube, tmp_path, shape, key, 1, 2, NuisanceAugment(), resume=False,
                              trainer_kwargs=spawn)
    assert firsts == [0, 1, 2] and json.loads((tmp_path / bank_file.FILLING_NOTE).read_text())["blocks"] == 2
    assert "view bank kept: 2 of 4 blocks done" in caplog.text
    # stopped again before the first resumed round opened the bank: kept as it was, and said so
    firsts[:] = []
    caplog.clear()
    with caplog.at_level("WARNING", logger="morphospace"), pytest.raises(KeyboardInterrupt):
        bank_file.filled_bank(_trunk(), cube, tmp_path, shape, key, 1, 2, NuisanceAugment(), resume=True,
                              trainer_kwargs=spawn)
    assert firsts == [2] and "view bank kept: 2 of 4 blocks done" in caplog.text
    assert json.loads((tmp_path / bank_file.FILLING_NOTE).read_text())["blocks"] == 2
    firsts[:], stop["at"] = [], None
    bank = bank_file.filled_bank(_trunk(), cube, tmp_path, shape, key, 1, 2, NuisanceAugment(), resume=True,
                                 trainer_kwargs=spawn)
    assert firsts == [2, 3]  # only the rounds left
    np.testing.assert_allclose(np.asarray(bank), one, atol=1e-5)
    assert not (tmp_path / bank_file.FILLING).exists() and not (tmp_path / bank_file.FILLING_NOTE).exists()
    # (a note of other settings is not gone on with: the one-process path's test, test_form.py, checks
    # that, and the note is read by the one process that calls this through Lightning too)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nuisance_views_are_the_same_on_a_gpu():
    x = torch.from_numpy(_cube(8))
    aug = NuisanceAugment()
    torch.testing.assert_close(aug(x.cuda(), 11).cpu(), aug(x, 11), atol=1e-4, rtol=1e-4)


def test_bank_written_to_a_memory_map_survives_its_pages_being_released(tmp_path, monkeypatch):
    from morphospace.run import pages

    monkeypatch.setattr(pages, "RELEASE_BYTES", 1)  # release after every block
    n = 2 * BLOCK + 3
    np.save(tmp_path / "cube.npy", _cube(n))
    cube = np.load(tmp_path / "cube.npy", mmap_mode="r")
    expected = view_bank(_trunk(), _cube(n), aug_views=1, seed=4)
    out = np.lib.format.open_memmap(tmp_path / "bank.npy", mode="w+", dtype=np.float32, shape=expected.shape)
    view_bank(_trunk(), cube, aug_views=1, seed=4, out=out)
    out.flush()
    del out
    np.testing.assert_array_equal(np.load(tmp_path / "bank.npy"), expected)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_process_trains_on_its_shard_even_when_the_shard_is_under_a_batch(world):
    """300 galaxies, batches of 256: one process drops the short last batch; two or three
    processes each get a shard of 100-150, which must be one batch, not none (no training)."""
    from types import SimpleNamespace

    from morphospace.ssl.training import ViewBankDataModule

    n, batch = 300, 256
    bank = np.arange(N_DIHEDRAL * n, dtype=np.float32).reshape(N_DIHEDRAL, n, 1)
    seen = []
    for rank in range(world):
        data = ViewBankDataModule(bank, batch, seed=0)
        data.trainer = SimpleNamespace(world_size=world, global_rank=rank)
        batches = list(data.train_dataloader())
        assert len(batches) == 1
        seen.append(len(batches[0]))  # galaxies in the batch
    assert seen == ([batch] if world == 1 else [n // world] * world)


def test_the_head_reads_two_different_views_of_each_galaxy_drawn_per_epoch_and_rank():
    """Batches of a bank are (B, 2, F): views a != b of the galaxy the shuffle chose, uniform over
    the ordered pairs, the same for the same (seed, epoch, rank) and new for another epoch."""
    from types import SimpleNamespace

    from morphospace.ssl.training import ViewBankDataModule

    n, views = 64, 5
    bank = np.zeros((views, n, 2), dtype=np.float32)
    bank[..., 0] = np.arange(views)[:, None]  # feature 0: the view, feature 1: the galaxy
    bank[..., 1] = np.arange(n)[None, :]

    def epoch_pairs(epoch: int, rank: int = 0, world: int = 1):
        data = ViewBankDataModule(bank, 16, seed=3)
        data.trainer = SimpleNamespace(world_size=world, global_rank=rank)
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat(list(loader)).numpy()  # (galaxies, 2, 2)

    first = epoch_pairs(0)
    assert first.shape == (n, 2, 2)
    assert sorted(first[:, 0, 1]) == list(range(n)) and np.array_equal(first[:, 0, 1], first[:, 1, 1])
    assert np.all(first[:, 0, 0] != first[:, 1, 0])  # two different views of the same galaxy
    assert np.array_equal(epoch_pairs(0), first)  # reproducible (a resumed fit draws the same)
    assert not np.array_equal(epoch_pairs(1)[:, :, 0], first[:, :, 0])
    halves = [epoch_pairs(0, rank, 2) for rank in (0, 1)]  # two processes: disjoint shards
    assert sorted(np.concatenate([h[:, 0, 1] for h in halves])) == list(range(n))
    drawn = np.concatenate([epoch_pairs(e)[:, :, 0] for e in range(40)]).astype(int)
    counts = np.bincount(drawn[:, 0] * views + drawn[:, 1], minlength=views * views).reshape(views, views)
    assert np.all(np.diag(counts) == 0) and counts[~np.eye(views, dtype=bool)].min() > 0.5 * len(drawn) / 20


def test_a_head_fit_resumed_at_an_epoch_end_equals_the_uninterrupted_fit(tmp_path):
    """Lightning sets the sampler's epoch, so a fit stopped after 2 of 3 epochs and resumed from
    its checkpoint draws the view pairs (and the shuffle) the whole fit drew: the same weights."""
    from morphospace.ssl.embedder import FormHead
    from morphospace.ssl.training import SSLModule, ViewBankDataModule, _fit_head

    bank = np.random.default_rng(0).normal(size=(5, 48, 12)).astype(np.float32)
    quiet = {"enable_progress_bar": False}

    def fit(name: str, max_epochs: int, resume: bool = False) -> dict:
        torch.manual_seed(0)
        head = FormHead(12, dim=4, hidden=16)
        head.set_scaling(bank)
        module = SSLModule(head, epochs=3, proj_dim=8)  # the schedule of a 3-epoch fit
        _fit_head(module, ViewBankDataModule(bank, 16, seed=7), tmp_path / name, max_epochs, resume, quiet)
        return {k: v.clone() for k, v in module.state_dict().items()}

    whole = fit("whole", 3)
    fit("stopped", 2)
    resumed = fit("stopped", 3, resume=True)
    first_two = fit("two", 2)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not all(torch.equal(whole[k], first_two[k]) for k in whole)  # the third epoch did train
