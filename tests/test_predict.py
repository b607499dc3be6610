"""A network over every row on several processes (Lightning predict, gloo): the same rows, in cube order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from morphospace.nets.batches import RowView
from morphospace.nets.predict import predict_rows, uses_trainer, world_size


class TwoHeads(nn.Module):
    """A tuple out, reading an extra input: like the VaDE's encoder."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x, e):
        h = self.conv(x).mean((2, 3))
        return h + e[:, :3], h.sum(1)


class OneHead(nn.Module):
    def forward(self, x):
        return x.flatten(1).sum(1, keepdim=True)


def test_world_size_counts_devices_and_nodes():
    assert world_size(None) == 1
    assert world_size({"devices": 2, "num_nodes": 3}) == 6
    assert world_size({"devices": [0, 1]}) == 2
    assert world_size({"devices": "auto"}) == 1


def test_one_process_is_the_batched_loop():
    x = np.random.default_rng(0).normal(size=(10, 2, 6, 6)).astype(np.float32)
    out = predict_rows(OneHead(), x, batch_size=3)
    np.testing.assert_allclose(out[:, 0], x.reshape(10, -1).sum(1), rtol=1e-5)


def test_several_processes_need_a_shared_folder():
    with pytest.raises(ValueError, match="work_dir"):
        predict_rows(OneHead(), np.zeros((4, 1)), trainer_kwargs={"devices": 2})


@pytest.mark.slow
def test_two_cpu_processes_give_the_one_process_result_in_order(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(23, 2, 8, 8)).astype(np.float32)  # 23: the two shares are unequal
    extra = rng.normal(size=(23, 4)).astype(np.float32)
    rows = rng.permutation(23)
    x, e = RowView(cube, rows), extra[rows]
    one = predict_rows(TwoHeads(), x, batch_size=5, extra=e)
    two = predict_rows(TwoHeads(), x, batch_size=5, extra=e, work_dir=tmp_path / "shares",
                       trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    assert isinstance(two, tuple) and len(two) == 2
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not (tmp_path / "shares").exists()  # the shares are cleaned up
    single = predict_rows(OneHead(), cube, batch_size=4, work_dir=tmp_path / "s2",
                          trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    np.testing.assert_allclose(single[:, 0], cube.reshape(23, -1).sum(1), rtol=1e-5)
    # fewer rows than processes: every process still gets one (Lightning's sampler requires it)
    lone = predict_rows(OneHead(), cube[:1], batch_size=4, work_dir=tmp_path / "s3",
                        trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    np.testing.assert_allclose(lone[:, 0], cube[:1].reshape(1, -1).sum(1), rtol=1e-5)


def test_into_receives_every_row_once_on_one_process():
    x = np.random.default_rng(2).normal(size=(11, 2, 4, 4)).astype(np.float32)
    got = np.full(11, np.nan, dtype=np.float32)
    chunks = []

    def into(index, out):
        chunks.append(len(index))
        assert np.isnan(got[index]).all()
        got[index] = out[:, 0]

    assert predict_rows(OneHead(), x, batch_size=4, into=into) is None
    assert chunks == [4, 4, 3]
    np.testing.assert_allclose(got, x.reshape(11, -1).sum(1), rtol=1e-5)


@pytest.mark.slow
def test_two_processes_hand_their_rows_over_a_chunk_at_a_time(tmp_path, monkeypatch, capfd):
    """The shares are read back from their files in chunks of GATHER_BYTES, never whole; the
    spawned processes keep Lightning's chatter to themselves, as the calling one does."""
    from morphospace.nets import predict

    rng = np.random.default_rng(3)
    x, e = rng.normal(size=(29, 2, 8, 8)).astype(np.float32), rng.normal(size=(29, 4)).astype(np.float32)
    one = predict_rows(TwoHeads(), x, batch_size=4, extra=e)
    monkeypatch.setattr(predict, "GATHER_BYTES", 5 * 16)  # 16 bytes a row (3 + 1 float32): 5 rows a chunk
    a, b = np.full((29, 3), np.nan, dtype=np.float32), np.full(29, np.nan, dtype=np.float32)
    chunks = []

    def into(index, h, total):
        chunks.append(len(index))
        a[index], b[index] = h, total

    assert predict_rows(TwoHeads(), x, batch_size=4, extra=e, work_dir=tmp_path / "shares", into=into,
                        trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}) is None
    err = capfd.readouterr().err
    assert "Initializing distributed" not in err and "GPU available" not in err and "distributed_backend" not in err
    assert max(chunks) == 5 and sum(chunks) == 29  # two shares of 15 and 14 rows, 5 at a time
    np.testing.assert_allclose(a, one[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b, one[1], rtol=1e-6, atol=1e-6)
    assert not (tmp_path / "shares").exists()


def _first_only_worker(rank: int, port: int, folder: str):
    """One task of a two-task job started from outside (as srun or torchrun start them)."""
    import json
    import os

    from morphospace.nets.predict import barrier
    from morphospace.nets.spawn import leave_process_group

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    x = np.arange(13 * 4, dtype=np.float32).reshape(13, 1, 2, 2)
    got = np.full(13, np.nan, dtype=np.float32)

    def into(index, out):
        got[index] = out[:, 0]

    result = predict_rows(OneHead(), x, batch_size=3, work_dir=f"{folder}/shares", into=into, first_only=True,
                          trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    if rank == 0:  # the one writer: its file is complete before the others pass the barrier
        np.save(f"{folder}/written.npy", got)
    barrier()
    seen = np.load(f"{folder}/written.npy")
    with open(f"{folder}/rank{rank}.json", "w") as f:
        json.dump({"result": result, "collected": int(np.isfinite(got).sum()), "seen": seen.tolist()}, f)
    leave_process_group()  # as the command line does before it exits


@pytest.mark.slow
def test_only_the_first_of_several_tasks_collects_the_rows(tmp_path):
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_first_only_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    expected = np.arange(13 * 4, dtype=np.float32).reshape(13, 4).sum(1)
    assert first["collected"] == 13 and second["collected"] == 0  # the second never read the shares
    assert first["result"] is None and second["result"] is None
    np.testing.assert_allclose(first["seen"], expected)
    np.testing.assert_allclose(second["seen"], expected)  # and found the first's file complete
    assert not (tmp_path / "shares").exists()


def test_an_accelerator_goes_through_lightning_even_on_one_device():
    # one GPU must not fall back to the plain loop, which would run the network on the CPU
    assert uses_trainer({"accelerator": "gpu", "devices": 1})
    assert uses_trainer({"accelerator": "cpu", "devices": 2})
    assert not uses_trainer({"accelerator": "cpu", "devices": 1})
    assert not uses_trainer(None)
    assert uses_trainer({"accelerator": "auto", "devices": 1}) == torch.cuda.is_available()
