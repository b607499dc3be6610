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


def _cli_task(rank: int, folder: str, failing_rank: int):
    """One task of a job started from outside (as srun starts them): a command, then is it still in a group?"""
    import json

    import torch.distributed as dist

    from morphospace.cli import main

    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    if rank == failing_rank:
        code = main(["embed", f"{folder}/no-such-run"])
    else:
        code = main(["synth", "--n", "4", "--out", f"{folder}/mock{rank}", "--quiet"])
    with open(f"{folder}/task{rank}.json", "w") as fh:
        json.dump({"code": code, "in_group": dist.is_initialized()}, fh)


@pytest.mark.slow
@pytest.mark.parametrize("failing_rank", [-1, 0])
def test_the_command_line_leaves_the_group_of_a_job_started_from_outside(tmp_path, failing_rank):
    """Whether every task succeeds or one stops on an error (the other then waits for it in vain),
    each leaves the group before it exits, and none hangs."""
    import json

    import torch.multiprocessing as mp

    mp.spawn(_cli_task, args=(str(tmp_path), failing_rank), nprocs=2, join=True)
    tasks = [json.loads((tmp_path / f"task{r}.json").read_text()) for r in (0, 1)]
    assert [t["code"] for t in tasks] == [0 if r != failing_rank else 2 for r in (0, 1)]
    assert not any(t["in_group"] for t in tasks)


TINY_FORM = ["--set", "train.epochs=2", "--set", "train.pretrain_epochs=1", "--set", "train.batch_size=12",
             "--set", "form.decoder_widths=[8, 16, 16, 16]", "--set", "form.ssl_epochs=2", "--set", "form.aug_views=1",
             "--set", "form.decoder_epochs=1", "--set", "model.n_components=2", "--set", "model.latent_dim=4",
             "--quiet"]


def _train_task(rank: int, port: int, run: str):
    """One task of `srun morphospace train RUN --strategy ddp`: every task starts at once."""
    import time

    import morphospace.image.masking as masking
    from morphospace.cli import main

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    build = masking.map_chunks

    def counted(*args, **kwargs):  # a slow build: the other task asks for the masked cube meanwhile
        with open(f"{run}/../masked_by_{rank}", "a") as fh:
            fh.write("built\n")
        time.sleep(1.0)
        return build(*args, **kwargs)

    masking.map_chunks = counted
    if rank == 0:  # the second task comes first to the masked cube and builds it (waited for, not slept:
        # on a busy machine the second task's start lagged more than a fixed half second)
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{run}/../masked_by_1") and time.monotonic() < deadline:
            time.sleep(0.05)
    code = main(["train", run, "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", *TINY_FORM])
    with open(f"{run}/../code_{rank}", "w") as fh:
        fh.write(str(code))


@pytest.mark.slow
def test_tasks_started_together_share_the_run(tmp_path):
    """`srun` starts every task of a training at once (Lightning's own launcher starts the later ones
    only once the first is training): the first alone clears and writes the model's folder, and the
    neighbour-masked cube, which the ingest did not build, is built once, not by every task."""
    import socket

    import torch.multiprocessing as mp

    from morphospace.cli import main

    survey, run = tmp_path / "survey", tmp_path / "run"
    assert main(["synth", "--n", "16", "--seed", "5", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    assert main(["ingest", str(survey), "--out", str(run), "--quiet"]) == 0
    (run / "models" / "vade").mkdir(parents=True)
    (run / "models" / "vade" / "old.txt").write_text("a previous training's file")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_train_task, args=(port, str(run)), nprocs=2, join=True)
    assert [(tmp_path / f"code_{r}").read_text() for r in (0, 1)] == ["0", "0"]
    assert sum(len(p.read_text().splitlines()) for p in tmp_path.glob("masked_by_*")) == 1
    assert (run / "models" / "vade" / "model.pt").is_file() and not (run / "models" / "vade" / "old.txt").exists()
    assert (tmp_path / "masked_by_1").is_file()
    # only the first task writes log.txt: it says that the other built the masked cube, and how many it masked
    log = (run / "log.txt").read_text()
    assert log.count("neighbours masked") == 1 and "neighbours masked by another process of this job in" in log


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no one has reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc and parent-death signal")
def test_a_spawned_worker_ends_with_the_process_that_spawned_it(tmp_path):
    """Killed, the parent of a ddp_spawn training freed the run's lock while its workers went on
    writing checkpoints into the run for half a minute; a worker now ends with its parent."""
    import subprocess
    import sys
    import time

    from morphospace.nets.spawn import PARENT_ENV

    worker = ("from morphospace.nets.spawn import die_with_parent; die_with_parent(); "
              "import time; time.sleep(120)")
    parent = ("import os, subprocess, sys, time; "
              f"os.environ[{PARENT_ENV!r}] = str(os.getpid()); "
              f"child = subprocess.Popen([sys.executable, '-c', {worker!r}]); "
              "print(child.pid, flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    time.sleep(3)  # the worker has asked for the signal
    assert _alive(child)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    # a worker whose parent is gone before it asks ends at once
    late = subprocess.run([sys.executable, "-c", worker], env={**os.environ, PARENT_ENV: "1"}, timeout=60)
    assert late.returncode == 1


def test_a_spawned_worker_killed_is_one_line_saying_what_to_do():
    """torch's ProcessExitedException reached the command line as a traceback, exit status 1."""
    from torch.multiprocessing.spawn import ProcessExitedException

    from morphospace.errors import UserError
    from morphospace.nets.spawn import _worker_lost

    import logging

    torch_log = logging.getLogger("torch.multiprocessing.spawn")
    before = torch_log.level
    with pytest.raises(UserError) as info:
        with _worker_lost():
            # torch's own "Terminating process ... via signal SIGTERM" would say it again, above the line
            assert not torch_log.isEnabledFor(logging.WARNING)
            raise ProcessExitedException("process 1 terminated with signal SIGKILL", error_index=1,
                                         error_pid=4242, exit_code=-9, signal_name="SIGKILL")
    message = str(info.value)
    assert "\n" not in message and "process 1 terminated with signal SIGKILL" in message
    assert "morphospace train RUN --resume" in message and info.value.exit_code == 2
    assert torch_log.level == before


def _failing_task(rank: int, port: int, run: str, when: str):
    """One task of `srun morphospace train RUN --strategy ddp` whose second task stops on a user error:
    ``early``, before it joins the job's process group; ``training``, in its first training step."""
    import sys

    from morphospace.errors import UserError

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    sys.stderr = open(f"{run}/../err_{rank}", "w", buffering=1)
    if rank == 1 and when == "early":
        from morphospace.run import RunDir

        def unreadable(*args, **kwargs):
            raise UserError("the cube of task 1 is unreadable")

        RunDir.read_cube = unreadable
    elif rank == 1:
        import morphospace.ssl.training as ssl_training

        def failing(*args, **kwargs):
            raise UserError("task 1 stopped in its training step")

        ssl_training.SSLModule.training_step = failing
    from morphospace.cli import main

    code = main(["train", run, "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", *TINY_FORM])
    with open(f"{run}/../code_{rank}", "w") as fh:
        fh.write(str(code))


@pytest.mark.slow
@pytest.mark.parametrize("when", ["early", "training"])
def test_a_task_that_stops_on_an_error_stops_the_job(tmp_path, when):
    """The other task waited for it in torch's rendezvous until the group's timeout, half an hour
    (``early``), or failed on the closed connection with torch's traceback (``training``): now it
    stops within seconds, with one line naming the task and its reason, and the same status."""
    import socket
    import time

    import torch.multiprocessing as mp

    from morphospace.cli import main

    survey, run = tmp_path / "survey", tmp_path / "run"
    assert main(["synth", "--n", "16", "--seed", "5", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    assert main(["ingest", str(survey), "--out", str(run), "--mask-neighbours", "--quiet"]) == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.start_processes(_failing_task, args=(port, str(run), when), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    try:
        while not all(p.exitcode is not None for p in context.processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        codes = [p.exitcode for p in context.processes]
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
    assert None not in codes, "a task still waited for the one that stopped"
    assert (tmp_path / "code_1").read_text() == "2"
    assert "task 1" in (tmp_path / "err_1").read_text()
    said = (tmp_path / "err_0").read_text()
    assert "another process of this job (rank 1) stopped:" in said and "task 1" in said, said
    assert "Traceback" not in said
    assert codes[0] == 2 or (tmp_path / "code_0").read_text() == "2"
    assert "another process of this job (rank 1) stopped" in (run / "log.txt").read_text()


def test_a_stop_note_counts_for_its_own_job_and_launch_only(tmp_path, monkeypatch):
    """An earlier job's note, or an earlier launch's of the same job (a requeue, the same port), or
    another command's, is not read as a stop of this one; a task does not stop on its own note; the
    first task to stop is the job's reason (a later one, stopped by the launcher, did not replace it)."""
    import json
    import time

    import morphospace.run.job as job

    for name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "RANK", "SLURM_PROCID", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's own launcher tells its children no RANK
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    task = job.JobTask.of_this_process(tmp_path, "train")
    assert task.rank == "1"  # it read NODE_RANK first and named every child rank 0
    note = task.note_path

    def written(**fields):
        base = {"job": task.key, "rank": "0", "task": "another", "time": time.time(), "message": "m", "code": 2}
        note.write_text(json.dumps({**base, **fields}))

    written()
    assert task.peer_stop()["message"] == "m"
    written(started=job._STARTED + 5)  # a peer of this launch started a little later
    assert task.peer_stop()["message"] == "m"
    written(started=job._STARTED - 600)  # ... or a minute earlier (another node), and stopped since this one started
    assert task.peer_stop()["message"] == "m"
    written(time=job._STARTED - 5, started=job._STARTED - 10)  # a peer that failed at once, before this one started
    assert task.peer_stop()["message"] == "m"
    for other in (dict(job=task.key.replace("29500", "29501")), dict(job=job.job_key("embed")),
                  dict(time=time.time() - 3600),
                  # a launch of the same ids that ran ten minutes and stopped just before this task started
                  dict(time=job._STARTED - 1, started=job._STARTED - 600)):
        written(**other)
        assert task.peer_stop() is None, other
    task.forget_earlier_stops()
    assert not note.exists()
    task.tell_peers("mine", 2)
    assert json.loads(note.read_text())["message"] == "mine" and task.peer_stop() is None
    written(message="the first")  # another task's, first: this one's stop does not replace it
    task.tell_peers("stopped by the launcher", 143)
    assert json.loads(note.read_text())["message"] == "the first"
    written(time=time.time() - 3600)  # an earlier launch's is replaced
    task.tell_peers("now", 2)
    assert json.loads(note.read_text())["message"] == "now"
    assert sorted(p.name for p in tmp_path.iterdir()) == [note.name]  # no partial file left
    # another job's note (a job refused the run while this one held it) is its own file: not over this one's
    other = job.JobTask(tmp_path, task.key.replace("29500", "29502"), "0")
    other.tell_peers("run in use", 2)
    assert json.loads(note.read_text())["message"] == "now" and other.note_path.is_file()
    # done: an earlier launch's note at another port goes (Lightning's own launcher picks a port afresh each
    # time: its stopped launches' notes piled up), another command's stays for a day
    embed = job.JobTask(tmp_path, job.job_key("embed"), "0")
    embed.tell_peers("another command", 2)
    task.forget_earlier_stops()
    assert not other.note_path.exists() and embed.note_path.is_file()
    task.forget_earlier_stops(older_than_s=-1)  # and other jobs' old notes
    assert not embed.note_path.exists()
    # a run that cannot be written to (read-only): best effort, no OSError (it turned the task's one-line
    # error into a traceback, status 1)
    import errno
    from pathlib import Path

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", read_only)
        m.setattr(Path, "unlink", read_only)
        task.tell_peers("cannot use .lock", 2)
    monkeypatch.delenv("WORLD_SIZE")
    assert job.JobTask.of_this_process(tmp_path) is None  # a lone process is no job


def test_a_task_s_own_error_is_said_at_once_and_a_peer_s_closed_connection_waits_for_its_note(tmp_path, monkeypatch):
    """Every task waited 10 s for a note after any error: the task whose bug stopped the job waited
    too, and took the note of a peer whose closed connection it had caused (its own traceback lost)."""
    import json
    import threading
    import time

    import morphospace.cli.peers as peers
    from morphospace.run.job import JobTask

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_PORT", "29511")
    task = JobTask.of_this_process(tmp_path, "train")
    monkeypatch.setattr(peers, "_TASK", task)  # as watch_peers sets it, without its watcher thread
    try:
        started = time.monotonic()
        assert peers.stopped_by_peer(RuntimeError("THE REAL BUG")) is None
        assert time.monotonic() - started < 1.0
        note = {"job": task.key, "rank": "0", "task": "the peer's", "time": time.time(),
                "message": "RuntimeError: THE REAL BUG", "code": 1}
        later = threading.Timer(0.5, lambda: task.note_path.write_text(json.dumps(note)))
        later.start()
        said = peers.stopped_by_peer(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:4999"))
        later.join()
        assert said is not None and "(rank 0) stopped: RuntimeError: THE REAL BUG" in said[0] and said[1] == 1
    finally:
        if peers._STOPPING.locked():
            peers._STOPPING.release()
