"""A training that Lightning's own launcher spreads over two processes (`morphospace train RUN
--devices 2`: the command started again as rank 1) ends as a whole: on SIGTERM, when its first
process is killed outright, and when the process it started stops on an error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from morphospace.cli import main

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc and parent-death signal")]

# a form model whose SSL head trains for far longer than any test waits
_LONG = ["--set", "form.ssl_epochs=5000", "--set", "form.aug_views=1", "--set", "form.decoder_epochs=1",
         "--set", "form.decoder_widths=[8, 16, 16, 16]", "--set", "model.n_components=2"]
_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                       "SLURM_NTASKS", "MORPHOSPACE_LAUNCHER_PID")


@pytest.fixture(scope="module")
def survey_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("launched")
    survey, run = root / "survey", root / "run"
    assert main(["synth", "--n", "24", "--seed", "3", "--out", str(survey), "--size", "64", "--quiet"]) == 0
    assert main(["ingest", str(survey), "--out", str(run), "--mask-neighbours", "--quiet"]) == 0
    return run


def _start(run: Path, err: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """`morphospace train RUN --devices 2` as typed in a shell, in a session of its own."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARIABLES}
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-m", "morphospace", "train", str(run), "--devices", "2",
                             "--accelerator", "cpu", *_LONG], stdout=subprocess.DEVNULL, stderr=err.open("wb"),
                            env=env, start_new_session=True)


def _session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (zombies not counted)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(entry.name))
    return pids


def _children(pid: int) -> list[int]:
    return [p for p in _session(pid) if p != pid]


def _wait_for(what, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := what()):
            return value
        time.sleep(step)
    return None


def _stop_all(proc: subprocess.Popen) -> None:
    for pid in _session(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def test_sigterm_ends_both_processes_in_one_line(survey_run, tmp_path):
    """Lightning's handler broadcast from inside itself, a collective the other process never
    joined: both processes hung (still there ten minutes after a `kill`)."""
    err = tmp_path / "err.txt"
    proc = _start(survey_run, err)
    try:
        # the SSL head is training on both processes
        assert _wait_for(lambda: b"Epoch 4/" in err.read_bytes(), 300), err.read_bytes()[-2000:]
        assert len(_children(proc.pid)) == 1
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
        assert _wait_for(lambda: not _session(proc.pid), 30), "a process of the training is left"
        # one line: rank 1 is ended with the command, not left to say its own (it did in later trainers)
        said = re.findall(r"morphospace: [^\r\n]*", err.read_text(errors="replace"))  # after a progress bar's line too
        assert said == ["morphospace: terminated (SIGTERM)"]
        assert (survey_run / "log.txt").read_text().rstrip().endswith("terminated (SIGTERM)")
    finally:
        _stop_all(proc)


def test_sigterm_as_a_trainer_starts_its_stage_ends_both_processes(survey_run, tmp_path):
    """Lightning's handler is in place from the start of a trainer's stage, before its first hook: a
    SIGTERM there broadcast from inside it while rank 1 waited in the stage's barrier (both hung)."""
    mark = tmp_path / "in_the_window"
    hook = _hook(tmp_path, f"""
        import os
        if os.environ.get("LOCAL_RANK", "0") == "0":
            import time
            from lightning.pytorch.trainer.connectors import signal_connector

            registered = signal_connector._SignalConnector.register_signal_handlers
            calls = []

            def slowly(self):
                registered(self)
                calls.append(1)
                if len(calls) == 2:  # the SSL head's trainer, its handler in place, its stage not begun
                    open({str(mark)!r}, "w").close()
                    time.sleep(20)

            signal_connector._SignalConnector.register_signal_handlers = slowly
    """)
    err = tmp_path / "err.txt"
    proc = _start(survey_run, err, {"PYTHONPATH": hook})
    try:
        assert _wait_for(mark.exists, 300), err.read_bytes()[-2000:]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        assert _wait_for(lambda: not _session(proc.pid), 30), "a process of the training is left"
    finally:
        _stop_all(proc)


def _hook(tmp_path: Path, code: str) -> str:
    """A PYTHONPATH whose sitecustomize runs ``code`` in every process of the command."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(code))
    return os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def test_the_started_process_ends_when_the_command_is_killed(survey_run, tmp_path):
    """Killed outright before rank 1 had joined, the command left it retrying torch's rendezvous
    for half an hour."""
    proc = _start(survey_run, tmp_path / "err.txt")
    try:
        child = _wait_for(lambda: _children(proc.pid), 120, step=0.05)
        assert child, "Lightning started no second process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _wait_for(lambda: not _session(proc.pid), 30), "the started process outlived the command"
    finally:
        _stop_all(proc)


def test_the_started_process_stopping_on_an_error_stops_the_command_with_its_line(survey_run, tmp_path):
    """Rank 1 stopped on an error: the command was SIGKILLed by Lightning's watch of its children
    (status -9 and no line of its own), having not known it was a task of a job."""
    path = _hook(tmp_path, """
        import os
        if os.environ.get("LOCAL_RANK") == "1":
            import morphospace.ssl.training as training
            from morphospace.errors import UserError

            def fails(*args, **kwargs):
                raise UserError("a failure of rank 1 alone")

            training.fit_embedder = fails
    """)
    err = tmp_path / "err.txt"
    proc = _start(survey_run, err, {"PYTHONPATH": path})
    try:
        assert proc.wait(timeout=300) == 2, err.read_bytes()[-3000:]
        text = err.read_text(errors="replace")
        assert "morphospace: error: a failure of rank 1 alone" in text  # rank 1's own line
        assert "another process of this job (rank 1) stopped: a failure of rank 1 alone; this one stops too" in text
        assert "Traceback" not in text
        assert _wait_for(lambda: not _session(proc.pid), 30)
    finally:
        _stop_all(proc)
