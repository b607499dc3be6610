"""Spawned workers leave their process group themselves, and pass their weights through the run."""

from __future__ import annotations

import os
import tempfile

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from morphospace.nets.spawn import LeaveProcessGroup, spawned_workers


class Toy(pl.LightningModule):
    """Writes, at its own teardown (after every callback's), whether its process is still in a group."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder
        self.lin = torch.nn.Linear(4, 1)

    def training_step(self, batch, index):
        return self.lin(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def teardown(self, stage):
        import torch.distributed as dist

        with open(os.path.join(self.folder, f"rank{self.global_rank}.txt"), "w") as fh:
            fh.write(str(dist.is_initialized()))


def _trainer(**kw):
    return pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kw)


def test_one_process_is_left_as_it_is(tmp_path):
    trainer = _trainer(devices=1)
    before = list(trainer.callbacks)
    with spawned_workers(trainer, tmp_path / "spawn"):
        assert os.environ.get("TMPDIR") != str(tmp_path / "spawn")
    assert trainer.callbacks == before
    assert not (tmp_path / "spawn").exists()


def test_a_spawning_trainer_gets_one_leaver_and_its_weights_folder(tmp_path):
    trainer = _trainer(devices=2, strategy="ddp_spawn")
    saved = tempfile.tempdir
    with spawned_workers(trainer, tmp_path / "spawn"):
        assert tempfile.gettempdir() == str(tmp_path / "spawn")
        with spawned_workers(trainer):  # predict after fit on the same trainer: still one
            pass
    assert sum(isinstance(c, LeaveProcessGroup) for c in trainer.callbacks) == 1
    assert tempfile.tempdir == saved and not (tmp_path / "spawn").exists()


@pytest.mark.slow
def test_spawned_workers_have_left_their_group_before_they_exit(tmp_path):
    trainer = _trainer(devices=2, strategy="ddp_spawn")
    data = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=4)
    with spawned_workers(trainer, tmp_path / "spawn"):
        trainer.fit(Toy(str(tmp_path)), data)
    assert sorted(p.name for p in tmp_path.glob("rank*.txt")) == ["rank0.txt", "rank1.txt"]
    assert {p.read_text() for p in tmp_path.glob("rank*.txt")} == {"False"}
