"""Hardening: nothing written outside the run, one writer at a time, one clear line (exit 2)
for every damaged file, out-of-range setting and file-system mistake (one test per point of
the hardening issue), and a seeded property test over random names, ids and settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fixtures import galaxy_rgb, save_image, tiny_folder_survey, write_csv
from morphospace.cli import main, printable
from morphospace.config import load_config
from morphospace.errors import UserError
from morphospace.run import RunDir, lock, safe_name


def one_line_error(capsys, code: int) -> str:
    """The stderr of a failed command: exactly one line, no traceback; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory):
    """A tiny finished pixel-PCA run of a folder survey (fast: no network to train)."""
    base = tmp_path_factory.mktemp("hard")
    data = tiny_folder_survey(base / "data", n=12)
    run = base / "run"
    assert main(["run", "--data", str(data), "--out", str(run), "--model", "pca", "--quiet",
                 "--set", "cluster.reductions=['pca']", "--set", "cluster.kmeans_k=[3]",
                 "--set", "cluster.methods=['kmeans']"]) == 0
    return run


# 1. nothing outside the run ----------------------------------------------------------------------

def _labelled_survey(data: Path, column: str, classes: list[str]) -> Path:
    """12 PNG galaxies and a catalogue whose ``column`` cycles through ``classes``."""
    rows = []
    for i in range(12):
        save_image(data / f"g{i}.png", galaxy_rgb(64, seed=i))
        rows.append([f"g{i}", f"g{i}.png", classes[i % len(classes)]])
    write_csv(data / "catalogue.csv", ["id", "file", column], rows)
    return data


def _pca_run(data: Path, run: Path) -> int:
    """The whole pipeline with the pixel-PCA model, one PCA map, K-Means(3)."""
    return main(["run", "--data", str(data), "--out", str(run), "--model", "pca", "--quiet",
                 "--set", "cluster.reductions=['pca']", "--set", "cluster.kmeans_k=[3]",
                 "--set", "cluster.methods=['kmeans']"])


@pytest.mark.slow
def test_a_column_name_cannot_write_outside_the_run(tmp_path, capsys):
    data = _labelled_survey(tmp_path / "data", "x/../../../../somewhere/pwn", ["a", "b", "c"])
    before = files_under(tmp_path)
    run = tmp_path / "deep" / "er" / "run"
    assert _pca_run(data, run) == 0, capsys.readouterr().err
    new = files_under(tmp_path) - before
    outside = [p for p in new if not p.resolve().is_relative_to(run.resolve())]
    assert not outside, outside
    assert any("pwn" in p.name for p in (run / "comparisons").glob("contingency_*.csv"))


@pytest.mark.slow
def test_dollar_signs_in_labels_reach_every_figure_as_text(tmp_path, capsys):
    """matplotlib reads text between two $ as mathematics: a class 'a$^$b' failed the compare
    stage's maps and the report's label figure (a traceback, no report)."""
    classes = ["a$^$b", "$x", "c $\\frac{$"]
    data = _labelled_survey(tmp_path / "data", "morphology", classes)
    run = tmp_path / "run"
    assert _pca_run(data, run) == 0, capsys.readouterr().err
    assert (run / "report.html").is_file() and "a$^$b" in (run / "report.html").read_text()
    import io

    import morphospace as ms

    fig = ms.plot.latent_map(np.random.default_rng(0).random((12, 2)), [classes[i % 3] for i in range(12)])
    fig.savefig(io.BytesIO(), format="png")  # the notebook's figure too
    assert "a$^$b (4)" in [t.get_text().replace("\\$", "$") for t in fig.axes[0].get_legend().get_texts()]


def test_safe_name_keeps_every_name_one_file_in_its_folder():
    rng = np.random.default_rng(0)
    for _ in range(500):
        raw = "".join(chr(int(c)) for c in rng.integers(0, 0x250, rng.integers(0, 40)))
        name = safe_name(raw)
        assert name and not name.startswith(".") and "/" not in name and "\\" not in name and len(name) <= 120
        assert (Path("/r") / f"{name}.npy").parent == Path("/r")
    assert safe_name("../../x") == "_.._x"


def test_reduce_of_an_unknown_embedding_is_one_line(pca_run, capsys):
    code = main(["reduce", str(pca_run), "--embedding", "../../x", "--quiet"])
    assert "no embedding '../../x'" in one_line_error(capsys, code)


# 2. one writer, and files that belong together -----------------------------------------------------

def test_a_second_writer_gets_one_line(pca_run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from morphospace.run import RunDir
        RunDir({str(pca_run)!r}).acquire_lock()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        log = (pca_run / "log.txt").read_text()
        code = main(["cluster", str(pca_run), "--quiet"])
        line = one_line_error(capsys, code)
        assert "in use by morphospace process" in line and str(holder.pid) in line
        assert (pca_run / "log.txt").read_text() == log  # the writer's log, not the refused command's
        code = main(["ingest", str(pca_run.parent / "data"), "--out", str(pca_run), "--quiet"])
        assert "in use by" in one_line_error(capsys, code) and (pca_run / "log.txt").read_text() == log
        assert main(["export", str(pca_run), "--out", str(pca_run.parent / "r.csv")]) == 0  # readers may
        # and log to the console alone: the run's log is the writer's record (export's lines went into it)
        assert (pca_run / "log.txt").read_text() == log
        assert f"is being written by morphospace process {holder.pid}" in capsys.readouterr().err
        import morphospace as ms  # the notebook's ingest: a ValueError, as its other refusals (was a RunInUse)

        with pytest.raises(ValueError, match=f"in use by morphospace process {holder.pid}"):
            ms.ingest(pca_run.parent / "data", run=pca_run)
    finally:
        holder.kill()
        holder.wait()
    assert main(["cluster", str(pca_run), "--quiet"]) == 0  # the lock dies with its holder


def test_a_reader_s_look_at_the_lock_does_not_refuse_a_writer(pca_run, monkeypatch):
    """A reader (export, generate) looks whether a writer holds the run's lock by taking a shared
    lock for an instant: a writer starting in that instant was refused as "in use"."""
    import fcntl
    import time

    from morphospace.run import RunDir, release_locks, writer_of

    assert writer_of(pca_run) is None
    look = open(pca_run / ".lock")
    fcntl.flock(look, fcntl.LOCK_SH)  # the reader's instant, drawn out until the writer has tried once
    waits, sleep = [], time.sleep

    def reader_done(seconds):  # (a timer thread closing it after 30 ms missed the writer's 100 ms on a
        waits.append(seconds)  # loaded machine: the look ends here, while the writer waits to try again)
        look.close()
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", reader_done)
    try:
        RunDir(pca_run).acquire_lock()
        assert waits == [0.05]  # refused once, then taken
        assert writer_of(pca_run) is not None  # and the writer is seen by the next reader
    finally:
        release_locks()


def test_a_file_system_without_locks_is_said_not_taken_for_a_writer(tmp_path, monkeypatch, caplog):
    """flock failing for want of locks (ENOLCK: some NFS, Lustre) read as "in use by" the last holder,
    for ever: the run could not be written at all. The command now goes on, saying one writer is not
    enforced there."""
    import errno
    import fcntl

    from morphospace.run import release_locks

    def no_locks(fh, how):
        raise OSError(errno.ENOLCK, "No locks available")

    run = RunDir(tmp_path / "run", create=True)
    monkeypatch.setattr(fcntl, "flock", no_locks)
    try:
        with caplog.at_level("WARNING", logger="morphospace"):
            run.acquire_lock()
        assert "one writer at a time is not enforced on this file system" in caplog.text
    finally:
        release_locks()


@pytest.mark.parametrize("env, rank", [
    ({}, "0"), ({"RANK": "0", "LOCAL_RANK": "0"}, "0"), ({"RANK": "3", "LOCAL_RANK": "1"}, "3"),  # torchrun
    ({"SLURM_PROCID": "5"}, "5"),  # srun
    ({"LOCAL_RANK": "1"}, "1"), ({"LOCAL_RANK": "1", "NODE_RANK": "2"}, "1 of node 2"),  # Lightning's children
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, "0 of node 1"),
    # Lightning's launcher in a batch script: its child keeps the script's SLURM_PROCID=0 (named "0", it
    # would have taken the first task's part in the job's stop notes)
    ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, "1"),
    # torchrun inside srun: its c10d rendezvous numbers by arrival, so RANK is the group's, not SLURM_PROCID
    ({"RANK": "0", "SLURM_PROCID": "2"}, "0"), ({"RANK": "2", "SLURM_PROCID": "0"}, "2")])
def test_the_rank_a_launcher_gave_is_read_one_way(monkeypatch, env, rank):
    """The run's lock (a later rank shares the first's) and the job's stop notes (which task stopped)
    read one function, so they agree on which process is the job's first."""
    from morphospace.run.lock import launch_rank, launched_as_later_rank

    for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_NPROCS",
                 "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "8")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launch_rank() == rank
    assert launched_as_later_rank() == (rank != "0")


def test_a_distributed_job_is_one_writer(tmp_path, monkeypatch):
    """Only the first process of a distributed job (train, embed) takes the lock: the others, started
    by srun, torchrun or Lightning's own launcher, share it; any other writer is still refused."""
    from morphospace.run import launched_as_later_rank, release_locks

    run = RunDir(tmp_path / "run", create=True)
    for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_NPROCS",
                 "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_as_later_rank()
    # a rank variable in a lone process (left in a shell, an interactive allocation) is no job: it
    # skipped the lock (two embeds wrote one run at once) and, alone, half of embed's work
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not launched_as_later_rank()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not launched_as_later_rank()
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("WORLD_SIZE", "2")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from morphospace.run import RunDir
        RunDir({str(run.path)!r}).acquire_lock(distributed=True)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for name, value in [("LOCAL_RANK", "1"), ("SLURM_PROCID", "3"), ("RANK", "7")]:
            monkeypatch.setenv(name, value)
            assert launched_as_later_rank()
            run.acquire_lock(distributed=True)  # rank 1 of the holder's job: no error, no lock taken
            assert run.path.resolve() not in lock._HELD_LOCKS
            with pytest.raises(UserError, match="in use by morphospace process"):
                run.acquire_lock()  # but not a second writer of another kind
            monkeypatch.delenv(name)
        monkeypatch.setenv("LOCAL_RANK", "0")  # the job's first process
        with pytest.raises(UserError, match="in use by morphospace process"):
            run.acquire_lock(distributed=True)
    finally:
        holder.kill()
        holder.wait()
        release_locks()


def test_a_stray_rank_variable_in_a_lone_process_does_its_whole_work(pca_run, tmp_path):
    """`SLURM_PROCID=1 morphospace embed RUN` alone (a variable left in a shell): Lightning read rank 1
    from it, and embed skipped the first process's work (the pixel PCA) and exited 0; it also
    went on without the run's lock."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    (run / "embeddings" / "pixels_pca.npy").unlink()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE",
                                                             "SLURM_NTASKS", "SLURM_NPROCS")}
    proc = subprocess.run([sys.executable, "-m", "morphospace", "embed", str(run), "--quiet"],
                          env={**env, "SLURM_PROCID": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (run / "embeddings" / "pixels_pca.npy").is_file()


def test_a_cube_and_catalogue_that_do_not_belong_together(pca_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "mixed"
    shutil.copytree(pca_run, run)
    cube = np.load(run / "cube.npy")
    np.save(run / "cube.npy", np.concatenate([cube, cube[:3]]))
    code = main(["embed", str(run), "--quiet"])
    assert "do not belong together" in one_line_error(capsys, code)


# 3. damaged run files ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,damage,stage", [
    ("cube.npy", "truncate", "embed"), ("cube.npy", "garbage", "embed"),
    ("catalogue.parquet", "garbage", "embed"), ("clusterings/kmeans3_pixels_pca_pca.parquet", "garbage", "compare"),
    ("embeddings/pixels_pca.npy", "truncate", "reduce"), ("cube.npy", "truncate", "report"),
    ("catalogue.parquet", "garbage", "report"),
])
def test_a_damaged_run_file_is_one_line_naming_it(pca_run, tmp_path, capsys, name, damage, stage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    path = run / name
    assert path.is_file(), sorted(p.name for p in path.parent.iterdir())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else os.urandom(len(data)))
    code = main([stage, str(run), "--quiet"])
    line = one_line_error(capsys, code)
    assert Path(name).name in line and "re-run" in line


def test_a_damaged_embedding_or_map_is_left_out_of_the_report_saying_so(pca_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    for name in ("embeddings/pixels_pca.npy", "reductions/pixels_pca_pca.npy"):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 3])
    assert main(["report", str(run), "--quiet"]) == 0
    log = (run / "log.txt").read_text()
    assert "pixels_pca.npy is damaged" in log and "pixels_pca_pca.npy is damaged" in log
    assert (run / "report.html").is_file()


def test_non_finite_embeddings_and_null_label_columns_do_not_stop_compare_or_the_report(pca_run, tmp_path):
    """An embedding holding an inf stopped the report with scikit-learn's words (no file named, no
    report); a label column stored as parquet's null type was a traceback (a read-only array)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    emb = np.load(run / "embeddings" / "pixels_pca.npy")
    emb[3, 1] = np.inf
    np.save(run / "embeddings" / "pixels_pca.npy", emb)
    cat = pd.read_parquet(run / "catalogue.parquet")
    cat["morphology"] = None
    cat.to_parquet(run / "catalogue.parquet")
    xy = np.load(run / "reductions" / "pixels_pca_pca.npy")
    xy[2, 0] = np.nan
    np.save(run / "reductions" / "pixels_pca_pca.npy", xy)
    # as if the map and the clusterings had been made from these files (else they are left out as made
    # from earlier ones, and compare has none: said in one line)
    assert main(["compare", str(run), "--quiet"]) == 2
    import json

    from morphospace.run import RunDir
    from morphospace.run.provenance import input_stamp

    r = RunDir(run)
    for record in [*(run / "clusterings").glob("*.json"), *(run / "reductions").glob("*.json")]:
        meta = json.loads(record.read_text())
        if "input_stamp" in meta:
            meta["input_stamp"] = input_stamp(r, meta.get("embedding") or meta["representation"])
            record.write_text(json.dumps(meta))
    for command in ("compare", "report"):
        assert main([command, str(run), "--quiet"]) == 0, command
    assert "embedding pixels_pca has 1 rows with NaN or infinite values: left out" in (run / "log.txt").read_text()
    # a map so damaged left the explorer without a word on the page
    assert "pixels_pca_pca: NaN or infinite coordinates, so left out of the explorer" in (run / "report.html").read_text()


def test_the_agreement_table_says_what_it_shows(pca_run, tmp_path):
    """The agreement table said 'ranked by how well they recover the truth label': not by which
    score, not that it is a selection, nor, with one class of labels, why every score is 0."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    assert main(["report", str(run), "--quiet"]) == 0
    page = (run / "report.html").read_text()
    assert re.search(r"The \d+ clusterings, ranked by AMI \(1 = the same partition", page)
    cat = pd.read_parquet(run / "catalogue.parquet")
    cat["morphology"] = "spiral"
    cat.to_parquet(run / "catalogue.parquet")
    assert main(["compare", str(run), "--quiet"]) == 0 and main(["report", str(run), "--quiet"]) == 0
    assert "The truth label has 1 class among the galaxies: agreement with it is undefined" in (
        run / "report.html").read_text()


def test_the_agreement_table_says_which_clusterings_were_scored_on_held_out_galaxies(pca_run, tmp_path):
    """Clusterings of features fine-tuned on the labels are scored against them on the galaxies the
    fine-tuning held out: the page says so beside their scores."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    ids = RunDir(run).cube_ids()
    held = np.arange(len(ids)) % 4 == 0
    pd.DataFrame({"id": ids, "split": np.where(held, "val", "train")}).to_parquet(run / "split.parquet")
    meta = run / "embeddings" / "pixels_pca.json"  # as if a study had fine-tuned it
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "mode": "finetune", "model_dir": "."}))
    assert main(["compare", str(run), "--quiet"]) == 0 and main(["report", str(run), "--quiet"]) == 0
    page = (run / "report.html").read_text()
    assert re.search(rf"\d+ of them cluster features fine-tuned on labels or an LDA map \(names ending in _lda\), "
                     rf"fitted on labels: those are scored on the {held.sum()} labelled galaxies held out of that "
                     "fitting", page)


def test_a_deleted_clustering_file_is_said_by_compare_and_the_report(pca_run, tmp_path):
    """A clustering's table deleted by hand was left out of compare and the report without a word;
    its record (``clusterings/<name>.json``) says it was made, so both now name it and what makes it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    gone = sorted((run / "clusterings").glob("*.json"))[0].with_suffix(".parquet")
    gone.unlink()
    assert RunDir(run).missing_clusterings() == [gone.stem]
    for command in ("compare", "report"):
        assert main([command, str(run), "--quiet"]) == 0
    log = (run / "log.txt").read_text()
    assert f"clusterings/{gone.name} is missing: left out of the comparisons" in log
    assert "missing and left out of this page" in log
    assert f"clusterings/{gone.name} (`morphospace cluster RUN` makes it again)" in (run / "report.html").read_text()
    # once the settings no longer make it, its record goes too (it was said missing for ever)
    assert gone.stem.startswith("kmeans3_")
    assert main(["cluster", str(run), "--quiet", "--set", "cluster.kmeans_k=[4]"]) == 0
    assert RunDir(run).missing_clusterings() == []


def test_a_map_the_settings_no_longer_make_goes_with_its_clusterings(pca_run, tmp_path):
    """A study with cluster.reductions = ['pca'] after one that made t-SNE maps clustered, compared and
    reported the earlier network's t-SNE map as the new one's: maps the configured reductions no
    longer make are removed, and the clusterings of a representation the run no longer holds."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    both = ["--set", "cluster.reductions=['pca','tsne']"]
    assert main(["reduce", str(run), "--quiet", *both]) == 0 and main(["cluster", str(run), "--quiet", *both]) == 0
    assert (run / "reductions" / "pixels_pca_tsne.npy").is_file()
    assert any(n.endswith("_pixels_pca_tsne") for n in RunDir(run).clusterings())
    one = ["--set", "cluster.reductions=['pca']"]  # the settings are saved: given again
    assert main(["reduce", str(run), "--quiet", *one]) == 0 and main(["cluster", str(run), "--quiet"]) == 0
    assert not (run / "reductions" / "pixels_pca_tsne.npy").exists()
    assert not any("tsne" in n for n in RunDir(run).clusterings() + RunDir(run).missing_clusterings())


def test_a_run_without_its_config_says_the_defaults_are_used(pca_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    (run / "config.toml").unlink()
    assert main(["compare", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "config.toml is missing: this stage uses the built-in defaults" in err
    assert "config.toml is missing" in (run / "log.txt").read_text()


def test_a_weights_file_that_cannot_serve_is_refused_before_the_run_changes(pca_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    (tmp_path / "g.pth").write_text("garbage")
    saved, files = (run / "config.toml").read_text(), sorted(run.rglob("*"))
    code = main(["train", str(run), "--quiet", "--set", "model.kind=vade", "--set", f"form.weights={tmp_path / 'g.pth'}"])
    line = one_line_error(capsys, code)
    assert "cannot read weights file" in line and "weights_only" not in line  # not torch's page of advice
    assert (run / "config.toml").read_text() == saved and sorted(run.rglob("*")) == files
    # a frozen study read the file only once its survey was in, and left the new run's folder behind
    code = main(["study", "--data", str(pca_run.parent / "data"), "--out", str(tmp_path / "new"), "--mode", "frozen",
                 "--quiet", "--set", f"study.weights={tmp_path / 'g.pth'}"])
    line = one_line_error(capsys, code)
    assert "cannot read weights file" in line and "weights_only" not in line and not (tmp_path / "new").exists()


@pytest.mark.parametrize("options, message", [
    (["train", "--precision", "bogus"], "train.precision must be one of"),
    (["train", "--strategy", "dpp"], "train.strategy must be one of"),
    (["train", "--accelerator", "gpu"], "train.accelerator = 'gpu', but this machine has no such device"),
    (["embed", "--accelerator", "gpu"], "train.accelerator = 'gpu', but this machine has no such device"),
    # Lightning took them, then failed once the fit began (a traceback, the earlier model set aside)
    (["train", "--strategy", "fsdp"], "train.strategy = 'fsdp' needs GPUs"),
    (["train", "--precision", "16-true"], "train.precision = '16-true' is not one the models take"),
    (["train", "--precision", "64-true"], "train.precision = '64-true' is not one the models take"),
    (["train", "--precision", "bf16-true"], "train.precision = 'bf16-true' is not one the models take"),
    (["train", "--strategy", "deepspeed"], "needs the deepspeed package"),
    # it waited for ever for nodes no launcher started, and the saved setting hung every later embed
    (["embed", "--num-nodes", "2"], "no launcher started this process on several nodes"),
    (["train", "--num-nodes", "2"], "no launcher started this process on several nodes"),
    (["train", "--set", "train.sample=1"], "train.sample = 1 galaxies is too few to train on"),  # numpy's LinAlgError
])
def test_a_trainer_setting_lightning_would_refuse_is_refused_before_the_run_changes(pca_run, tmp_path, capsys,
                                                                                   monkeypatch, options, message):
    """It was Lightning's traceback, after the setting was saved and the run's trained model cleared."""
    import shutil

    import torch

    if ("gpu" in options or "fsdp" in options) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if "deepspeed" in options:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is not None:
            pytest.skip("deepspeed is installed")
    for name in ("SLURM_PROCID", "MASTER_ADDR", "TORCHELASTIC_RUN_ID", "NODE_RANK", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE",
                 "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    saved, files = (run / "config.toml").read_text(), sorted(run.rglob("*"))
    code = main([options[0], str(run), *options[1:], "--quiet", "--set", "model.kind=vade"])
    assert message in one_line_error(capsys, code)
    assert (run / "config.toml").read_text() == saved and sorted(run.rglob("*")) == files
    if "gpu" in options:  # a run that would train on it: refused before its folder is made
        code = main(["run", "--out", str(tmp_path / "new"), "--quiet", "--set", "train.accelerator=gpu"])
        assert message in one_line_error(capsys, code)
        assert not (tmp_path / "new").exists()
        # a pixel-PCA run trains no network: a saved "gpu" does not stop it
        assert main([options[0], str(run), *options[1:], "--quiet"]) == 0


def test_a_later_stage_s_settings_are_saved_and_a_misspelt_label_is_refused_before_any_work(pca_run, tmp_path,
                                                                                            capsys):
    """`reduce --set data.truth_label=typo` rewrote the maps, then stopped at LDA; `compare --set ...` was
    not saved, so the report named the old truth label above the new one's tables."""
    import shutil

    from morphospace.config import load_config

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name not in ("log.txt", ".lock")}
    for stage in ("train", "reduce", "cluster", "compare", "report"):
        code = main([stage, str(run), "--quiet", "--set", "data.truth_label=nosuch"])
        assert "data.truth_label: 'nosuch' is not a catalogue column" in one_line_error(capsys, code)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name not in ("log.txt", ".lock")} == before
    code = main(["compare", str(run), "--quiet", "--set", "data.truth_label=redshift"])  # continuous: no classes
    assert "data.truth_label: 'redshift' holds continuous values" in one_line_error(capsys, code)
    assert main(["compare", str(run), "--quiet", "--set", "data.truth_label=morphology"]) == 0
    assert load_config(run / "config.toml").data.truth_label == "morphology"
    saved = (run / "config.toml").read_text()
    assert main(["report", str(run), "--quiet"]) == 0  # nothing changed: nothing rewritten
    assert (run / "config.toml").read_text() == saved


def test_a_truth_label_that_is_no_column_is_refused_before_training(tmp_path, capsys):
    data = tiny_folder_survey(tmp_path / "data", n=6)
    code = main(["run", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet", "--set", "data.truth_label=nosuch"])
    line = one_line_error(capsys, code)  # the columns it could name, not the ingest's 20 flags
    assert "data.truth_label: 'nosuch' is not a catalogue column (columns: morphology, redshift)" in line, line
    assert not (tmp_path / "run" / "models").exists() and not (tmp_path / "run" / "embeddings").exists()


def test_a_continuous_truth_label_is_refused_and_the_guessed_one_is_said(tmp_path, capsys):
    """A vote fraction as data.truth_label was scored as 59 classes of one galaxy each; an SDSS
    catalogue's imaging run number (`run`) was guessed as the truth before its class column."""
    data = tiny_folder_survey(tmp_path / "data", n=6)
    cat = pd.read_csv(data / "catalogue.csv")
    cat["p_smooth"] = np.linspace(0.05, 0.95, len(cat))
    cat["ttype"] = [1.0, 2.0, 1.0, 2.0, np.nan, 1.0]  # whole numbers stored as floats: classes
    cat["run"], cat["camcol"] = [752, 756] * 3, [1, 2, 3] * 2
    cat = cat.drop(columns=["morphology"]).assign(gz1_class=["E", "S"] * 3)
    cat.to_csv(data / "catalogue.csv", index=False)
    code = main(["ingest", str(data), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 0
    for column in ("p_smooth",):
        code = main(["cluster", str(tmp_path / "r"), "--set", f"data.truth_label={column}", "--quiet"])
        assert "data.truth_label: 'p_smooth' holds continuous values (e.g. 0.05), not classes" in one_line_error(
            capsys, code)
        # what ended the command is in the run's log too, not only on the console
        assert "ERROR error: data.truth_label: 'p_smooth' holds continuous values" in (tmp_path / "r" / "log.txt").read_text()
    from morphospace.analysis.labels import check_label_settings, label_columns
    from morphospace.config import Config, apply_overrides
    from morphospace.run import RunDir

    run = RunDir(tmp_path / "r")
    labels = label_columns(run.read_catalogue())
    assert labels[0] == "gz1_class" and "run" not in labels and "camcol" not in labels
    check_label_settings(run, apply_overrides(Config(), {"data.truth_label": "ttype"}))  # taken
    with pytest.raises(UserError, match=r"holds continuous values \(e.g. 0.05\)"):
        check_label_settings(run, apply_overrides(Config(), {"data.truth_label": "p_smooth"}))


def test_what_ends_a_command_is_in_its_own_run_s_log_only(tmp_path, monkeypatch, capsys):
    """An error or Ctrl-C is written to the run's log.txt; a later command of the same process that
    fails before it has a run wrote its error into the earlier run's log; Lightning's Ctrl-C in a
    fit (sys.exit(1)) was not written at all."""
    import sys

    from morphospace import pipeline

    data = tiny_folder_survey(tmp_path / "data", n=3)
    run = tmp_path / "run"
    assert main(["ingest", str(data), "--out", str(run), "--quiet"]) == 0
    assert main(["ingest", str(tmp_path / "nosuch"), "--out", str(tmp_path / "other"), "--quiet"]) == 2
    assert "nosuch" not in (run / "log.txt").read_text()

    def stopped_in_a_fit(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)  # what Lightning does with Ctrl-C during a fit

    monkeypatch.setattr(pipeline, "stage_train", stopped_in_a_fit)
    assert main(["train", str(run), "--set", "model.latent_dim=2", "--quiet"]) == 130
    assert (run / "log.txt").read_text().rstrip().endswith("ERROR interrupted")
    capsys.readouterr()


def test_a_cut_short_model_is_one_line(tmp_path, capsys):
    from morphospace.errors import UserError
    from morphospace.vade.io import load_vade

    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04 not really a model")
    with pytest.raises(UserError, match="model.pt is damaged"):
        load_vade(path)


# 4. out-of-range settings ----------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["preprocess.size=100000", "train.lr=nan", "train.lr=-1",
                                     "model.recon_sigma=nan", "form.temperature=inf", "model.kind=vadee",
                                     "cluster.kmeans_k=[0]", 'data.path="a\\nb"'])
def test_an_out_of_range_setting_is_rejected_before_it_is_saved(pca_run, capsys, setting):
    saved = (pca_run / "config.toml").read_text()
    code = main(["cluster", str(pca_run), "--quiet", "--set", setting])
    line = one_line_error(capsys, code)
    assert setting.split("=")[0] in line
    assert (pca_run / "config.toml").read_text() == saved


def test_a_later_stage_refuses_a_cube_recipe_it_would_not_make(pca_run, capsys, tmp_path):
    """`compare --set preprocess.size=128` on a 64 px cube saved size = 128: config.toml then
    described a cube the run does not have (and `generate` took it without a word)."""
    saved = (pca_run / "config.toml").read_text()
    for cmd in ("compare", "cluster", "train"):
        line = one_line_error(capsys, main([cmd, str(pca_run), "--quiet", "--set", "preprocess.size=128"]))
        assert f"`morphospace {cmd}` does not remake the cube" in line and "preprocess.size" in line
        assert "-> 128" in line and "`morphospace ingest`" in line
    # generate acts on no setting (`--set train.seed=7` drew what --seed 0 draws, without a word)
    for setting in (["--set", "preprocess.size=128"], ["--set", "train.seed=7"], ["--config", str(pca_run / "config.toml")]):
        line = one_line_error(capsys, main(["generate", str(pca_run), "--component", "0", "--out", str(tmp_path / "g"),
                                            "--quiet", *setting]))
        assert "`morphospace generate` takes no settings (--set, --config)" in line
    assert (pca_run / "config.toml").read_text() == saved
    with pytest.raises(SystemExit):  # nor are they offered in its help
        main(["generate", "--help"])
    shown = capsys.readouterr().out
    assert "--component" in shown and "--set" not in shown and "--config" not in shown


@pytest.mark.parametrize("cmd, setting, stage", [
    ("report", "data.layout=fits", "ingest"), ("compare", "data.path=elsewhere", "ingest"),
    ("train", "data.synth_n=50", "ingest"), ("compare", "form.backbone=efficientnet-lite2", "train"),
    ("cluster", "model.latent_dim=3", "train"), ("reduce", "train.lr=0.5", "train"),
    ("report", "model.preset=astrovader", "train"), ("cluster", "model.merge_components=false", "embed")])
def test_a_later_stage_refuses_the_settings_of_an_earlier_one(pca_run, capsys, cmd, setting, stage):
    """`report --set data.layout=fits` and `compare --set form.backbone=...` were saved as the run's
    settings, which then described a survey reading and a model the run never had."""
    saved = (pca_run / "config.toml").read_text()
    line = one_line_error(capsys, main([cmd, str(pca_run), "--quiet", "--set", setting]))
    assert f"`morphospace {cmd}` does not" in line and setting.split("=")[0] in line
    assert f"`morphospace {stage}` (or `run`)" in line
    assert (pca_run / "config.toml").read_text() == saved


@pytest.mark.parametrize("cmd, setting, stage", [
    ("compare", "cluster.kmeans_k=[3,4]", "cluster"), ("compare", "cluster.methods=['gmm']", "cluster"),
    ("report", "cluster.seed=1", "cluster"), ("report", "cluster.kmeans_k=[3,4]", "cluster"),
    ("compare", "cluster.n_jobs=1", "cluster"), ("cluster", "cluster.tsne_perplexity=50", "reduce"),
    ("compare", "cluster.reductions=['pca', 'lda']", "reduce"), ("report", "cluster.map_sample=50", "reduce"),
    ("report", "cluster.invariance_sample=10", "compare"),
    ("report", "cluster.nuisance_columns=['redshift']", "compare")])
def test_a_later_stage_refuses_the_maps_and_clusterings_settings(pca_run, capsys, cmd, setting, stage):
    """`compare --set cluster.kmeans_k=[3,4]` exited 0, "settings saved": config.toml then said K 3 and 4
    beside clusterings of K 3 to 8, which a later `cluster` dropped without a word; `report --set
    cluster.seed=1` described clusterings the seed never made. Refused in one line, config.toml as it was."""
    saved = (pca_run / "config.toml").read_text()
    line = one_line_error(capsys, main([cmd, str(pca_run), "--quiet", "--set", setting]))
    assert f"`morphospace {cmd}` does not" in line and setting.split("=")[0] in line, line
    assert f"give it to `morphospace {stage}` (or `run`), which does" in line, line
    assert (pca_run / "config.toml").read_text() == saved


@pytest.mark.parametrize("cmd", ["train", "embed", "reduce", "cluster", "compare", "report"])
def test_a_stage_refuses_the_study_s_settings(pca_run, capsys, cmd):
    """No stage but `study` reads [study]: `reduce --set study.epochs=3` was saved as the run's, and a
    `study --resume` then found its settings changed."""
    saved = (pca_run / "config.toml").read_text()
    line = one_line_error(capsys, main([cmd, str(pca_run), "--quiet", "--set", "study.epochs=3"]))
    assert f"`morphospace {cmd}` does not make the CNN features" in line and "study.epochs 5 -> 3" in line, line
    assert line.endswith("give it to `morphospace study`, which does")
    assert (pca_run / "config.toml").read_text() == saved


def test_a_later_stage_takes_the_machine_s_settings_and_its_own(pca_run, tmp_path, capsys):
    import shutil
    import tomllib

    run = tmp_path / "run"
    shutil.copytree(pca_run, run, ignore=shutil.ignore_patterns(".lock"))
    assert main(["reduce", str(run), "--quiet", "--set", "train.num_threads=1", "--set", "cluster.reductions=['pca']",
                 "--set", "cluster.kmeans_k=[3, 4]"]) == 0  # and a later stage's: `cluster` makes them next
    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["train"]["num_threads"] == 1 and saved["cluster"]["reductions"] == ["pca"]
    assert saved["cluster"]["kmeans_k"] == [3, 4]
    # the worker processes (the probe's, the audit's) and the pixel-PCA baseline `embed` fits; compare's
    # own [cluster] keys (the probe's seed, the intervention test's sample)
    assert main(["compare", str(run), "--quiet", "--set", "ingest.workers=1", "--set", "cluster.seed=2",
                 "--set", "cluster.invariance_sample=0"]) == 0
    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["cluster"]["seed"] == 2 and saved["cluster"]["invariance_sample"] == 0
    assert main(["embed", str(run), "--quiet", "--set", "model.pca_components=5", "--set", "train.sample=10"]) == 0
    assert np.load(run / "embeddings" / "pixels_pca.npy").shape[1] == 5
    # a run's whole config.toml as --config: its own, or another run's (its survey, its workers): the
    # stage takes what it acts on, and keeps the run's earlier settings, said (both were refused)
    assert main(["cluster", str(run), "--config", str(run / "config.toml"), "--quiet"]) == 0
    other = tmp_path / "other.toml"
    other.write_text((run / "config.toml").read_text().replace("workers = 1", "workers = 8")
                     .replace('crop = "auto"', "crop = 0.6"))
    before = tomllib.loads((run / "config.toml").read_text())
    assert main(["report", str(run), "--config", str(other)]) == 0
    assert "preprocess.crop 0.6, which `morphospace report` does not act on: the run's own kept" in capsys.readouterr().err
    after = tomllib.loads((run / "config.toml").read_text())
    assert after["preprocess"] == before["preprocess"] and after["ingest"]["workers"] == 8


def test_a_vade_run_made_a_pixel_pca_run_sets_the_model_s_results_aside(pca_run, tmp_path):
    """`run --model pca` on a run holding a trained VaDE reduced, clustered and reported the VaDE's
    results as the run's, its config.toml saying pca."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run, ignore=shutil.ignore_patterns(".lock"))
    (run / "models" / "vade").mkdir(parents=True)
    (run / "models" / "vade" / "model.pt").write_bytes(b"a trained VaDE")
    (run / "models" / "small").mkdir()
    (run / "models" / "small" / "model.pt").write_bytes(b"a study's fine-tuned CNN")
    np.save(run / "embeddings" / "vade.npy", np.zeros((12, 4), np.float32))
    (run / "clusterings" / "vade.parquet").write_bytes(b"the model's clusters")
    (run / "comparisons" / "k_selection_form.csv").write_text("method,k\n")  # drawn as current before
    (run / "anomaly_tags.csv").write_text("id,tag\n")
    assert main(["train", str(run), "--quiet"]) == 0
    aside = list((run / "superseded").glob("*/models/vade/model.pt"))
    assert len(aside) == 1 and (aside[0].parents[2] / "embeddings" / "vade.npy").is_file()
    assert (aside[0].parents[2] / "clusterings" / "vade.parquet").is_file()
    assert (aside[0].parents[2] / "comparisons" / "k_selection_form.csv").is_file()
    assert not (run / "models" / "vade").exists() and not (run / "embeddings" / "vade.npy").exists()
    # what was not made with it stays: the pixel PCA's results, a study's CNN, the user's tags
    assert (run / "embeddings" / "pixels_pca.npy").is_file() and (run / "models" / "small" / "model.pt").is_file()
    assert (run / "anomaly_tags.csv").is_file() and any((run / "clusterings").glob("kmeans3_pixels_pca*"))
    assert main(["train", str(run), "--quiet"]) == 0 and len(list((run / "superseded").iterdir())) == 1  # nothing more


def test_a_linked_model_folder_set_aside_still_points_where_it_did(pca_run, tmp_path):
    """A model folder linked by a relative path (to a larger disk, say) was moved two folders
    deeper into superseded/ by `run --model pca`, its link then pointing nowhere (a re-ingest
    made such links absolute; this set-aside did not)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run, ignore=shutil.ignore_patterns(".lock"))
    (tmp_path / "disk" / "vade").mkdir(parents=True)
    (tmp_path / "disk" / "vade" / "model.pt").write_bytes(b"a trained VaDE")
    (run / "models").mkdir()
    (run / "models" / "vade").symlink_to(Path("..") / ".." / "disk" / "vade")
    assert main(["train", str(run), "--quiet"]) == 0
    aside = list((run / "superseded").glob("*/models/vade"))
    assert len(aside) == 1 and aside[0].is_symlink() and (aside[0] / "model.pt").read_bytes() == b"a trained VaDE"


def test_a_failed_move_puts_back_what_moved(tmp_path):
    from morphospace.run.set_aside import move_into

    root = tmp_path / "run"
    (root / "embeddings").mkdir(parents=True)
    (root / "embeddings" / "vade.npy").write_bytes(b"e")
    (root / "anomaly.json").write_text("{}")
    dest = root / "superseded" / "t"
    dest.mkdir(parents=True)
    with pytest.raises(FileNotFoundError):  # the second is not there: the first goes back
        move_into(root, [root / "embeddings" / "vade.npy", root / "gone.parquet", root / "anomaly.json"], dest)
    assert (root / "embeddings" / "vade.npy").read_bytes() == b"e" and (root / "anomaly.json").is_file()
    assert not (root / "superseded").exists()  # nothing left set aside: no empty folders either
    dest.mkdir(parents=True)
    move_into(root, [root / "embeddings" / "vade.npy", root / "anomaly.json"], dest)
    assert (dest / "embeddings" / "vade.npy").is_file() and (dest / "anomaly.json").is_file()


def test_settings_kept_under_a_preset_are_the_run_s_exactly(pca_run, tmp_path):
    """A run's `latent_dim = 16` and `epochs = 16` under the astrovader preset became the preset's 20
    and 350 when a `--config` naming only [cluster] was given, while the log said they were kept."""
    import tomllib

    run = tmp_path / "run"
    assert main(["run", "--data", str(pca_run.parent / "data"), "--out", str(run), "--model", "pca", "--quiet",
                 "--set", "model.preset=astrovader", "--set", "model.latent_dim=16", "--epochs", "16",
                 "--set", "cluster.reductions=['pca']", "--set", "cluster.kmeans_k=[3]",
                 "--set", "cluster.methods=['kmeans']"]) == 0
    before = tomllib.loads((run / "config.toml").read_text())
    assert (before["model"]["preset"], before["model"]["latent_dim"], before["train"]["epochs"]) == ("astrovader", 16, 16)
    mini = tmp_path / "mini.toml"
    mini.write_text("[cluster]\nseed = 3\nmethods = ['kmeans']\n")
    assert main(["cluster", str(run), "--config", str(mini), "--quiet"]) == 0
    after = tomllib.loads((run / "config.toml").read_text())
    for section in ("data", "preprocess", "ingest", "model", "form", "train"):
        assert after[section] == before[section], section
    assert after["cluster"]["seed"] == 3

def test_the_file_system_root_or_the_home_folder_is_no_run_s_folder(pca_run, tmp_path, monkeypatch, capsys):
    """`ingest DATA --out /` wrote config.toml, cube.npy, log.txt... into the file system's root."""
    import stat

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    root = sorted(p.name for p in Path("/").iterdir())
    for out, said in (("/", "is the file system root"), (str(home), "is your home folder"),
                      ("~", "is your home folder")):
        out = str(Path(out).expanduser())
        line = one_line_error(capsys, main(["ingest", str(pca_run.parent / "data"), "--out", out, "--quiet"]))
        assert said in line
    line = one_line_error(capsys, main(["generate", str(pca_run), "--component", "0", "--out", "/", "--quiet"]))
    assert "is the file system root" in line
    assert sorted(p.name for p in Path("/").iterdir()) == root and list(home.iterdir()) == []
    # a settings file that is a pipe is read twice (its keys, then its values): said, not "not found"
    fifo = tmp_path / "settings"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    line = one_line_error(capsys, main(["cluster", str(pca_run), "--config", str(fifo), "--quiet"]))
    assert "is not a regular file (a pipe or a device" in line


def test_an_embedding_holding_nan_is_said_damaged_naming_its_file(pca_run, tmp_path, capsys):
    """A NaN in embeddings/*.npy was scikit-learn's "Input X contains NaN ... HistGradientBoostingClassifier"."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run, ignore=shutil.ignore_patterns(".lock"))
    path = run / "embeddings" / "pixels_pca.npy"
    x = np.load(path)
    x[5, 3], x[7, 0] = np.nan, np.inf
    np.save(path, x)
    ids = pd.read_parquet(run / "catalogue.parquet")["id"]
    for argv in (["cluster", str(run)], ["similar", str(run), "--id", str(ids.iloc[0]), "--embedding", "pixels_pca"]):
        line = one_line_error(capsys, main([*argv, "--quiet"]))
        assert f"{path} is damaged (2 row(s) hold NaN or infinite values): re-run `morphospace embed`" in line


def test_a_fit_sample_too_small_for_the_clusters_is_one_line(pca_run, capsys):
    """`cluster --set cluster.fit_sample=1` was scikit-learn's "Found array with 1 sample(s) ... GMMSelect"."""
    for sample in (1, 3):
        line = one_line_error(capsys, main(["cluster", str(pca_run), "--quiet", "--set", f"cluster.fit_sample={sample}",
                                            "--set", "cluster.methods=['gmm', 'kmeans']"]))
        assert f"cluster.fit_sample = {sample} galaxies is too few to fit up to 3 clusters" in line
    # the K of a method not asked for does not count (HDBSCAN alone, K-Means' default K up to 8 aside)
    assert main(["cluster", str(pca_run), "--quiet", "--set", "cluster.fit_sample=8", "--set", "cluster.kmeans_k=[3, 8]",
                 "--set", "cluster.methods=['hdbscan']"]) == 0


def test_a_run_s_config_reads_its_relative_survey_path_from_anywhere(tmp_path, monkeypatch, capsys):
    """`ingest data --out run` saves data.path = "data" as typed; `--config run/config.toml` given
    from another folder read that folder's own `data` (here another survey) without a word."""
    import json

    first, second = tmp_path / "a", tmp_path / "b"
    tiny_folder_survey(first / "data", n=12)
    tiny_folder_survey(second / "data", n=5)  # a survey of the same name beside the second command
    monkeypatch.chdir(first)
    assert main(["ingest", "data", "--out", "run", "--quiet"]) == 0
    monkeypatch.chdir(second)
    # said as the command reads its settings, before it sets up its console: in a shell, logging's last
    # resort prints it on stderr. The root logger as a fresh process has it (no handler: pytest's capture
    # took it; before, the console an earlier main() left on printed it)
    import logging

    root = logging.getLogger()
    handlers, root.handlers[:] = root.handlers[:], []
    try:
        assert main(["run", "--config", str(first / "run" / "config.toml"), "--out", "run2", "--model", "pca",
                     "--set", "cluster.reductions=['pca']", "--set", "cluster.kmeans_k=[3]",
                     "--set", "cluster.methods=['kmeans']"]) == 0
    finally:
        root.handlers[:] = handlers
    assert "relative to where that run was started" in capsys.readouterr().err
    summary = json.loads((second / "run2" / "ingest_summary.json").read_text())
    assert summary["n_in_cube"] == 12 and summary["source"] == str((first / "data").resolve())


def test_an_ingest_over_a_damaged_config_says_it_replaced_it(pca_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    (run / "config.toml").write_text("[cluster\nseed = 3\n")  # a hand edit gone wrong
    assert main(["ingest", str(pca_run.parent / "data"), "--out", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"`morphospace ingest` replaced {run / 'config.toml'}, which could not be read" in err


def test_a_saved_setting_no_longer_allowed_is_named_with_its_file(pca_run, tmp_path, capsys):
    """A run saved with a value a later check refuses (cluster.map_sample = 3 passed before) failed every
    command with 'config: cluster.map_sample must be ...', which a --set could not mend, the file unnamed."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    text = (run / "config.toml").read_text()
    assert "map_sample = 100000" in text
    (run / "config.toml").write_text(text.replace("map_sample = 100000", "map_sample = 3"))
    assert main(["report", str(run), "--quiet", "--set", "cluster.map_sample=100"]) == 2
    assert capsys.readouterr().err.strip() == (f"morphospace: error: {run / 'config.toml'}: cluster.map_sample must be 0 "
                                               "(every galaxy) or at least 5, got 3: mend it in that file")


def test_a_partial_config_keeps_the_run_s_cube_recipe(pca_run, tmp_path, capsys):
    """A --config that names no [preprocess] (or another run's) brings the defaults: a later stage
    keeps the run's own recipe (said) instead of refusing values the user never gave."""
    import shutil
    import tomllib

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    text = (run / "config.toml").read_text().replace('crop = "auto"', "crop = 0.6")
    (run / "config.toml").write_text(text)
    mini = tmp_path / "mini.toml"
    mini.write_bytes("\ufeff[cluster]\nseed = 3\n".encode("utf-8"))  # a byte-order mark, as load_config allows
    assert main(["cluster", str(run), "--config", str(mini), "--quiet"]) == 0
    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["preprocess"]["crop"] == 0.6 and saved["cluster"]["seed"] == 3
    log_text = (run / "log.txt").read_text()
    # the settings of the stages before it, which the file set back to their defaults (the cube's
    # recipe, the model's kind), stay the run's; before, the model's kind was saved as 'vade' in a
    # run whose model is a pixel PCA
    assert "the run's own [data], [model] and [preprocess] settings kept" in log_text and saved["model"]["kind"] == "pca"
    # the run's other settings the file set back to its defaults (the clusterings) are named
    assert "`morphospace cluster` started from --config" in log_text and "cluster.kmeans_k" in log_text
    assert "without --config it reads them" in log_text
    # an emptied config.toml is read as every default: said, as a missing one is
    (run / "config.toml").write_text("")
    assert main(["cluster", str(run), "--quiet"]) in (0, 2)
    assert "config.toml is empty: this stage uses the built-in defaults" in (run / "log.txt").read_text()
    # the same file given to a command that starts a run reads it too (a byte-order mark was a traceback)
    assert main(["ingest", str(pca_run.parent / "data"), "--out", str(run), "--config", str(mini), "--quiet"]) == 0
    assert "started from --config" in (run / "log.txt").read_text()


def test_more_components_than_galaxies_is_rejected_before_it_is_saved(pca_run, capsys):
    saved = (pca_run / "config.toml").read_text()
    code = main(["train", str(pca_run), "--quiet", "--set", "model.kind=vade", "--set", "model.n_components=500",
                 "--set", "model.preset=default"])
    assert "exceeds the number of galaxies" in one_line_error(capsys, code)
    assert (pca_run / "config.toml").read_text() == saved


def test_generate_rejects_a_nan_temperature(pca_run, tmp_path, capsys):
    code = main(["generate", str(pca_run), "--component", "0", "--temperature", "nan", "--out",
                 str(tmp_path / "g"), "--quiet"])
    assert "--temperature" in one_line_error(capsys, code)


def test_generate_on_a_pixel_pca_run_says_what_would_generate(pca_run, tmp_path, capsys):
    """It said "run `morphospace train` first", which trains nothing on a pca run: a circle."""
    line = one_line_error(capsys, main(["generate", str(pca_run), "--cluster", "0", "--out", str(tmp_path / "g"),
                                        "--quiet"]))
    assert "pixel-PCA run (model.kind = pca)" in line and "--set model.kind=vade" in line
    # the same advice wherever a pca run is asked for its network: similar, classify, anomalies, the notebook
    for cmd in (["similar", str(pca_run), "--id", "g0", "--embedding", "form"],
                ["classify", str(pca_run), "--column", "kind", "--embedding", "vade", "--suggest", "3"],
                ["anomalies", str(pca_run)]):
        line = one_line_error(capsys, main([*cmd, "--quiet"]))
        assert "pixel-PCA run (model.kind = pca)" in line and "--set model.kind=vade" in line, cmd
        assert "run `morphospace embed` first" not in line and "then `morphospace train`" not in line, cmd
    import morphospace as ms

    with pytest.raises(FileNotFoundError, match=r"pixel-PCA run \(model.kind = pca\)"):
        ms.load_model(pca_run)


def test_generate_keeps_out_of_the_run_s_own_files(pca_run, tmp_path, capsys):
    """`generate --out RUN` wrote its PNG and FITS files into the run's root beside the cube."""
    for out in (pca_run, pca_run / "models" / "g", pca_run / "cube.npy" / ".." / "embeddings"):
        line = one_line_error(capsys, main(["generate", str(pca_run), "--component", "0", "--out", str(out), "--quiet"]))
        assert "is among the run's own files: write the galaxies to a folder of their own" in line
    before = sorted(p.name for p in pca_run.iterdir())
    code = main(["generate", str(pca_run), "--component", "0", "--out", str(pca_run / "generated"), "--quiet"])
    assert "among the run's own files" not in capsys.readouterr().err  # a folder of its own passes this check
    assert sorted(p.name for p in pca_run.iterdir() if p.name != "generated") == before and code in (0, 2)
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = one_line_error(capsys, main(["generate", str(pca_run), "--component", "0", "--out", str(afile), "--quiet"]))
    assert "is a file, not a folder: choose a folder for the galaxies" in line
    # the run's survey took the galaxies in at its next ingest; another run's root or stage folders took them
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(pca_run, other, ignore=shutil.ignore_patterns("*.npy", "figures", "report*"))
    (other / "cube.npy").write_bytes(b"")
    for out, said in ((pca_run.parent / "data", "is where the run's survey keeps its images"),
                      (pca_run.parent / "data" / "images", "is where the run's survey keeps its images"),
                      (other, "is another run's folder"), (other / "models" / "x", "inside the folder models/ of the run")):
        line = one_line_error(capsys, main(["generate", str(pca_run), "--component", "0", "--out", str(out), "--quiet"]))
        assert said in line, (out, line)
    assert not (pca_run.parent / "data" / "images").exists() and not (other / "models" / "x").exists()
    # a folder of its own beside the survey's images (which no ingest reads) passes these checks, whatever
    # its name begins with
    for name in ("fakes", "images2"):
        main(["generate", str(pca_run), "--component", "0", "--out", str(pca_run.parent / "data" / name), "--quiet"])
        assert "survey keeps its images" not in capsys.readouterr().err
    # a survey inside its run's folder: its images folder is refused there too, not taken for a folder of
    # the user's own inside the run
    inside = tmp_path / "inside"
    shutil.copytree(pca_run, inside)
    (inside / "mydata" / "images").mkdir(parents=True)
    summary = json.loads((inside / "ingest_summary.json").read_text())
    (inside / "ingest_summary.json").write_text(json.dumps({**summary, "source": str(inside / "mydata")}))
    for out in (inside / "mydata", inside / "mydata" / "images"):
        line = one_line_error(capsys, main(["generate", str(inside), "--component", "0", "--out", str(out), "--quiet"]))
        assert "is where the run's survey keeps its images" in line, line


# 5. file-system mistakes -----------------------------------------------------------------------------

def test_a_folder_of_someone_s_results_is_no_new_run(tmp_path, capsys):
    """A first ingest into a project folder holding figures/ and models/ of the user's own set them
    aside into superseded/ as 'made from the galaxies of the earlier ingest'. Refused; a folder of
    other files is fine, and so is a run (one whose first ingest did not finish too)."""
    import morphospace as ms

    data = tiny_folder_survey(tmp_path / "data", n=3)
    proj = tmp_path / "proj"
    (proj / "figures").mkdir(parents=True)
    (proj / "figures" / "mine.png").write_bytes(b"x")
    (proj / "report.html").write_text("mine")
    line = one_line_error(capsys, main(["ingest", str(data), "--out", str(proj), "--size", "16", "--quiet"]))
    assert "is not a run, but holds figures/, report.html, which a run's stages write and would set aside" in line
    with pytest.raises(ValueError, match="is not a run, but holds figures/"):
        ms.ingest(data, run=proj)
    assert sorted(p.name for p in proj.iterdir()) == ["figures", "report.html"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    assert main(["ingest", str(data), "--out", str(notes), "--size", "16", "--quiet"]) == 0
    (proj / "config.toml").write_text("")  # a run whose first ingest stopped: its own files, not someone's
    assert main(["ingest", str(data), "--out", str(proj), "--size", "16", "--quiet"]) == 0
    # a run still being made by another process (its log.txt written, its config.toml not yet): in use, not
    # "not a run, but holds log.txt"
    import fcntl

    capsys.readouterr()
    making = tmp_path / "making"
    making.mkdir()
    (making / "log.txt").write_text("")
    with open(making / ".lock", "a+") as held:
        held.write("morphospace process 4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = one_line_error(capsys, main(["ingest", str(data), "--out", str(making), "--size", "16", "--quiet"]))
    assert f"run {making} is in use by morphospace process 4242: wait for it to finish" in line


def test_out_naming_a_file_or_nothing(tmp_path, capsys):
    data = tiny_folder_survey(tmp_path / "data", n=3)
    afile = tmp_path / "afile"
    afile.write_text("x")
    code = main(["ingest", str(data), "--out", str(afile), "--quiet"])
    assert "is a file" in one_line_error(capsys, code)
    with pytest.raises(SystemExit) as refused:  # a usage error: the parser's one line
        main(["ingest", str(data), "--out", "", "--quiet"])
    assert refused.value.code == 2 and "--out must not be empty" in one_line_error(capsys, 2)
    code = main(["ingest", str(data), "--out", str(afile / "sub"), "--quiet"])  # a folder inside a file
    assert "cannot use" in one_line_error(capsys, code)
    # a run inside another run's folders: that run's next stage would delete it (train clears models/)
    assert main(["ingest", str(data), "--out", str(tmp_path / "r"), "--size", "16", "--quiet"]) == 0
    capsys.readouterr()  # its warnings
    for inside in (tmp_path / "r" / "models" / "vade", tmp_path / "r" / "figures" / "x"):
        code = main(["ingest", str(data), "--out", str(inside), "--quiet"])
        assert "of the run" in one_line_error(capsys, code) and not inside.exists()
    # a folder of the user's own inside a run, and a project folder with a config.toml and models/: theirs
    (tmp_path / "proj" / "models").mkdir(parents=True)
    (tmp_path / "proj" / "config.toml").write_text("x = 1\n")
    for mine in (tmp_path / "r" / "variants" / "v1", tmp_path / "proj" / "runs" / "gz1"):
        assert main(["ingest", str(data), "--out", str(mine), "--size", "16", "--quiet"]) == 0, mine
    capsys.readouterr()  # their warnings
    # an empty DATA rendered and ingested the built-in synthetic survey (37 s, exit 0)
    for cmd in (["ingest", ""], ["run", "--data", " "], ["study", "--data", ""]):
        with pytest.raises(SystemExit) as refused:  # a usage error now: the parser's one line
            main([*cmd, "--out", str(tmp_path / "new"), "--quiet"])
        assert refused.value.code == 2 and "must not be empty" in one_line_error(capsys, 2), cmd
        assert not (tmp_path / "new").exists()


def test_a_refused_start_writes_nothing_and_a_run_keeps_its_configuration(tmp_path, capsys):
    """A setting out of range or data that is not there: no new run folder, and a re-ingest into an
    existing run that fails so leaves its config.toml describing its cube."""
    data = tiny_folder_survey(tmp_path / "data", n=3)
    for cmd in (["ingest", str(data), "--set", "preprocess.size=7"], ["ingest", str(tmp_path / "nope")],
                ["run", "--data", str(tmp_path / "nope")], ["study", "--data", str(tmp_path / "nope")],
                ["import-astrovader", str(tmp_path / "none.h5")],
                ["run", "--data", str(data), "--set", "train.num_nodes=2"],  # left the folder with its log
                ["run", "--data", str(data), "--set", "train.devices=2", "--set", "train.strategy=ddp"]):
        code = main([*cmd, "--out", str(tmp_path / "new"), "--quiet"])
        one_line_error(capsys, code)
        assert not (tmp_path / "new").exists(), cmd
    # refused once the survey is read (a label the study or the comparisons cannot use), or the weights
    # once they are read: the folder the command made goes too (it kept a whole ingest)
    (tmp_path / "junk.h5").write_text("not HDF5")
    for cmd, message in ((["study", "--data", str(data), "--labels", "nosuch"], "nosuch"),
                         (["run", "--data", str(data), "--set", "data.truth_label=nosuch"], "nosuch"),
                         (["import-astrovader", str(tmp_path / "junk.h5")], "junk.h5")):
        assert message in one_line_error(capsys, main([*cmd, "--out", str(tmp_path / "new"), "--quiet"]))
        assert not (tmp_path / "new").exists(), cmd
    before = sorted(p.name for p in data.iterdir())
    assert "is the data folder" in one_line_error(capsys, main(["ingest", str(data), "--out", str(data), "--quiet"]))
    assert sorted(p.name for p in data.iterdir()) == before
    # nor its images/ folder: the run's own files were read as galaxies at the next ingest
    nested = tiny_folder_survey(tmp_path / "nested", n=3, images_subdir=True)
    for cmd in (["ingest", str(nested)], ["run", "--data", str(nested)]):
        line = one_line_error(capsys, main([*cmd, "--out", str(nested / "images"), "--quiet"]))
        assert "is the survey images folder" in line, line
    assert sorted(p.name for p in (nested / "images").iterdir()) == ["g0.png", "g1.jpg", "g2.tif"]
    assert main(["ingest", str(data), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    saved = (tmp_path / "run" / "config.toml").read_text()
    code = main(["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--size", "128", "--quiet"])
    assert "data not found" in one_line_error(capsys, code)
    assert (tmp_path / "run" / "config.toml").read_text() == saved
    # a study of the run refused for its labels once the galaxies are in: the run keeps its settings
    code = main(["study", "--data", str(data), "--labels", "nosuch", "--out", str(tmp_path / "run"), "--quiet"])
    assert "nosuch" in one_line_error(capsys, code)
    assert (tmp_path / "run" / "config.toml").read_text() == saved


@pytest.mark.parametrize("command", ["run", "study"])
def test_a_run_stopped_after_its_new_cube_keeps_that_cube_s_settings(tmp_path, monkeypatch, command):
    """Ctrl-C between the ingest of other galaxies and the saving of the settings left the run's
    config.toml describing its earlier cube."""
    from morphospace.analysis import labels
    from morphospace.config import load_config

    first, second = tiny_folder_survey(tmp_path / "a", n=3), tiny_folder_survey(tmp_path / "b", n=4)
    run = tmp_path / "run"
    assert main(["ingest", str(first), "--out", str(run), "--quiet"]) == 0

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(labels, "check_label_settings", stopped)
    small = ["--model", "pca"] if command == "run" else []  # 4 galaxies: too few for the VaDE (refused earlier)
    assert main([command, "--data", str(second), "--out", str(run), *small, "--quiet"]) == 130  # Ctrl-C's status
    assert load_config(run / "config.toml").data.path == str(second)
    assert len(pd.read_parquet(run / "catalogue.parquet")) == 4


@pytest.mark.parametrize("command, said", [(["study", "--labels", "nosuch"], "nosuch"),
                                           (["run", "--set", "data.truth_label=nosuch"], "nosuch"),
                                           (["run", "--set", "model.n_components=500"], "exceeds the number")])
def test_a_label_the_new_survey_lacks_leaves_a_finished_run_as_it_was(pca_run, tmp_path, capsys, command, said):
    """``study --out RUN --data OTHER --labels TYPO`` on a finished run ingested OTHER, setting the
    run's results aside in superseded/, before it refused the label (and `run` more components than
    the new survey's galaxies): both are now checked against the new catalogue and cube shape before
    the ingest replaces anything."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    other = tiny_folder_survey(tmp_path / "other", n=5)
    before = {p.relative_to(run): p.read_bytes() for p in files_under(run) if p.name != "log.txt"}
    code = main([command[0], "--data", str(other), "--out", str(run), *command[1:], "--quiet"])
    assert said in one_line_error(capsys, code)
    assert not (run / "superseded").exists()
    after = {p.relative_to(run): p.read_bytes() for p in files_under(run) if p.name != "log.txt"}
    assert after.keys() == before.keys() and all(after[k] == before[k] for k in before)


def test_an_option_and_a_set_that_disagree_are_refused(tmp_path, capsys):
    """`--epochs 1 --set study.epochs=2` trained 1 epoch, `--seed 3 --set cluster.seed=7` clustered with
    3, without a word: the option won. Now one line, before anything is made; the same value twice is
    no conflict."""
    data = tiny_folder_survey(tmp_path / "data", n=3)
    out = tmp_path / "new"
    for cmd in (["study", "--data", str(data), "--epochs", "1", "--set", "study.epochs=2"],
                ["run", "--data", str(data), "--seed", "3", "--set", "cluster.seed=7"],
                ["run", "--data", str(data), "--model", "pca", "--set", "model.kind=vade"],
                ["ingest", str(data), "--size", "32", "--set", "preprocess.size=16"]):
        line = one_line_error(capsys, main([*cmd, "--out", str(out), "--quiet"]))
        assert "is given twice" in line and "give it once" in line and not out.exists(), (cmd, line)
    assert main(["ingest", str(data), "--size", "16", "--set", "preprocess.size=16", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()  # the ingest's own warnings (its frames are of two sizes)
    code = main(["train", str(out), "--epochs", "2", "--set", "train.epochs=3", "--quiet"])
    assert "train.epochs is given twice" in one_line_error(capsys, code)


def test_a_command_that_starts_a_run_says_which_saved_settings_it_replaces(tmp_path):
    """`study` (as `run` and `ingest`) on an existing run starts from the defaults and what is given:
    a finished run's form settings were reset without a word."""
    data = tiny_folder_survey(tmp_path / "data", n=3)
    run = tmp_path / "run"
    assert main(["ingest", str(data), "--out", str(run), "--size", "16", "--set", "form.ssl_epochs=2", "--quiet"]) == 0
    assert main(["ingest", str(data), "--out", str(run), "--size", "16", "--quiet"]) == 0
    log = (run / "log.txt").read_text()
    assert "it replaced 1 (form.ssl_epochs 2 -> 60)" in log and f"--config {run / 'config.toml'} would have" in log
    assert main(["ingest", str(data), "--out", str(run), "--size", "16", "--quiet"]) == 0  # the same: nothing said
    assert (run / "log.txt").read_text().count("it replaced") == 1
    # with --config the settings its file does not give are replaced as well: said too (they went silently)
    fast = tmp_path / "fast.toml"
    fast.write_text("[preprocess]\nsize = 16\n")
    assert main(["ingest", str(data), "--out", str(run), "--config", str(fast), "--set", "cluster.seed=5", "--quiet"]) == 0
    assert main(["ingest", str(data), "--out", str(run), "--config", str(fast), "--quiet"]) == 0
    assert "it replaced 1 (cluster.seed 5 -> 0)" in (run / "log.txt").read_text()
    assert main(["ingest", str(data), "--out", str(run), "--config", str(run / "config.toml"), "--quiet"]) == 0
    assert (run / "log.txt").read_text().count("it replaced") == 2  # its own saved settings: nothing replaced



def test_a_reingest_that_keeps_the_run_s_results_keeps_the_settings_that_made_them(tmp_path):
    """A re-ingest of the same galaxies keeps the model and results, but config.toml took the defaults:
    it said `ssl_epochs = 60` beside a model trained for 4, for every later stage to read. Their
    settings are now kept with them (those the command sets itself aside); an ingest of other galaxies,
    which sets the results aside, starts from the defaults and says which it replaced."""
    from morphospace.config import load_config

    data = tiny_folder_survey(tmp_path / "data", n=12)
    run = tmp_path / "run"
    assert main(["run", "--data", str(data), "--out", str(run), "--model", "pca", "--set", "preprocess.size=16",
                 "--set", "cluster.seed=5", "--set", "cluster.kmeans_k=[2, 3]", "--quiet"]) == 0
    made = load_config(run / "config.toml")
    assert main(["ingest", str(data), "--out", str(run), "--size", "16", "--set", "cluster.kmeans_k=[3]",
                 "--set", "data.truth_label=morphology", "--quiet"]) == 0
    kept = load_config(run / "config.toml")
    assert (kept.model.kind, kept.cluster.seed, kept.cluster.kmeans_k) == (made.model.kind, 5, [3])  # given: taken
    assert kept.data.truth_label == "morphology" != made.data.truth_label
    assert (run / "clusterings").is_dir() and "it replaced" not in (run / "log.txt").read_text()
    other = tiny_folder_survey(tmp_path / "other", n=8)
    assert main(["ingest", str(other), "--out", str(run), "--size", "16", "--quiet"]) == 0
    fresh = load_config(run / "config.toml")
    assert (fresh.model.kind, fresh.cluster.seed) == (load_config(None).model.kind, 0)
    assert "(cluster.kmeans_k [3] -> " in (run / "log.txt").read_text()


def test_a_study_with_nothing_to_resume_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    data = tiny_folder_survey(tmp_path / "data", n=6)
    out = tmp_path / "new"
    line = one_line_error(capsys, main(["study", "--data", str(data), "--out", str(out), "--labels", "morphology",
                                        "--resume", "--quiet"]))
    assert "nothing to resume" in line and "last.ckpt" in line and not out.exists()
    line = one_line_error(capsys, main(["study", "--data", str(data), "--out", str(out), "--mode", "frozen",
                                        "--resume", "--quiet"]))
    assert "fine-tunes nothing" in line and not out.exists()


@pytest.mark.slow
def test_the_same_study_again_replaces_no_setting(tmp_path):
    """A study makes its labels the truth in the run's config.toml; the same command again said it had
    replaced that (data.truth_label 'morphology' -> '') while it set it again."""
    data = tiny_folder_survey(tmp_path / "data", n=12)
    run = tmp_path / "run"
    cmd = ["study", "--data", str(data), "--out", str(run), "--mode", "frozen", "--labels", "morphology",
           "--set", "study.input_size=32", "--set", "cluster.reductions=['pca']", "--set", "cluster.methods=['kmeans']",
           "--set", "cluster.kmeans_k=[3]", "--quiet"]
    assert main(cmd) == 0 and main(cmd) == 0
    assert "it replaced" not in (run / "log.txt").read_text()
    assert 'truth_label = "morphology"' in (run / "config.toml").read_text()


def test_a_binary_config_file(tmp_path, capsys):
    data = tiny_folder_survey(tmp_path / "data", n=3)
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(os.urandom(200) + b"\xff\xfe")
    code = main(["ingest", str(data), "--out", str(tmp_path / "run"), "--config", str(cfg), "--quiet"])
    assert "not a text file" in one_line_error(capsys, code)


def test_export_refuses_the_runs_own_files(pca_run, capsys):
    import shutil

    before = (pca_run / "catalogue.parquet").read_bytes()
    for target in ("catalogue.parquet", "report.html", "clusterings/x.csv", "models/m.csv", ".lock",
                   "anomaly.parquet", "anomaly_tags.csv", "nuisance.parquet", "classes/x.parquet"):
        code = main(["export", str(pca_run), "--out", str(pca_run / target), "--quiet"])
        assert "run's own files" in one_line_error(capsys, code)
    assert (pca_run / "catalogue.parquet").read_bytes() == before
    assert main(["export", str(pca_run), "--out", str(pca_run / "results.csv"), "--quiet"]) == 0
    # another run's files: its catalogue was replaced by this run's results, the run unusable after
    other = pca_run.parent / "other"
    shutil.copytree(pca_run, other, ignore=shutil.ignore_patterns(".lock"))
    theirs = (other / "catalogue.parquet").read_bytes()
    for target in ("catalogue.parquet", "clusterings/vade.parquet"):
        line = one_line_error(capsys, main(["export", str(pca_run), "--out", str(other / target), "--quiet"]))
        assert f"would overwrite the files of the run {other.resolve()}" in line
    link = pca_run.parent / "link.parquet"
    link.symlink_to(other / "catalogue.parquet")  # through a link too
    assert "files of the run" in one_line_error(capsys, main(["export", str(pca_run), "--out", str(link), "--quiet"]))
    assert (other / "catalogue.parquet").read_bytes() == theirs
    assert main(["export", str(pca_run), "--out", str(other / "mine" / "r.csv"), "--quiet"]) == 0  # a folder of one's own
    # this run without its config.toml (a stage goes on with the defaults): still its own files
    (other / "config.toml").unlink()
    line = one_line_error(capsys, main(["export", str(other), "--out", str(other / "catalogue.parquet"), "--quiet"]))
    assert "would overwrite the run's own files" in line and (other / "catalogue.parquet").read_bytes() == theirs
    shutil.rmtree(other)
    link.unlink()
    with pytest.raises(SystemExit) as refused:  # a usage error: the parser's one line
        main(["export", str(pca_run), "--out", "", "--quiet"])
    assert refused.value.code == 2 and "--out must not be empty" in one_line_error(capsys, 2)


# 6. control characters ---------------------------------------------------------------------------------

def test_user_strings_are_printed_escaped(tmp_path, capsys):
    code = main(["embed", str(tmp_path / "no\x1b[31mred\nrun"), "--quiet"])
    line = one_line_error(capsys, code)
    assert "\x1b" not in line and "\\x1b" in line and "\\n" in line
    assert printable("a\tb\x07") == "a\\tb\\x07"
    # a success line names the run as escaped as an error line does (it printed the escape code raw)
    data = tiny_folder_survey(tmp_path / "data", n=3)
    assert main(["ingest", str(data), "--out", str(tmp_path / "bad\x1b[31mname"), "--size", "16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "bad\\x1b[31mname" in out


# 7. label columns -------------------------------------------------------------------------------------

def test_free_text_is_no_truth_label_and_missing_markers_are_missing():
    from morphospace.analysis.labels import label_columns, missing_mask, truth_column

    cat = pd.DataFrame({"id": [f"g{i}" for i in range(8)], "cube_index": range(8),
                        "comment": [f"looks odd {i}" for i in range(8)],
                        "kind": ["a", "b", "NaN", "null", "None", "a", "b", ""]})
    assert truth_column(cat, None, candidates=label_columns(cat)) == "kind"
    assert "comment" not in label_columns(cat)
    assert missing_mask(cat["kind"]).tolist() == [False, False, True, True, True, False, False, True]


def test_the_study_names_every_backbone_and_only_labels(tmp_path, capsys):
    from morphospace.study.features import _label_like

    assert main(["study", "--out", str(tmp_path / "s"), "--backbone", "vgg16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "efficientnet-lite0" in err and "'vade', 'ssl'" in err
    assert not (tmp_path / "s").exists()  # refused before the ingest; the folder it made taken away
    cat = pd.DataFrame({"id": ["a"], "source": ["a.png"], "cube_index": [0], "crop": [0.5], "morph3": ["spiral"],
                        "flag_blank": [False]})
    assert _label_like(cat) == ["morph3"]


def test_a_study_on_a_backbone_it_cannot_build_is_refused_before_the_ingest(tmp_path, capsys, monkeypatch):
    """resnet18 without torchvision (or without its weights) was refused only after the survey was
    ingested into the new folder, which stayed behind holding a cube."""
    from morphospace.errors import NotAvailableError
    from morphospace.nets import backbones

    def no_torchvision(name):
        raise NotAvailableError(f"{name} needs torchvision: pip install 'morphospace[torchvision]'")

    monkeypatch.setattr(backbones, "_import_torchvision_models", no_torchvision)
    data = tiny_folder_survey(tmp_path / "data", n=6)
    out = tmp_path / "s"
    code = main(["study", "--data", str(data), "--out", str(out), "--backbone", "resnet18", "--mode", "frozen",
                 "--quiet"])
    assert "needs torchvision" in one_line_error(capsys, code) and not out.exists()
    monkeypatch.setattr(backbones, "_import_torchvision_models", lambda name: None)  # installed, no weights
    monkeypatch.setattr(backbones, "hub_checkpoint", lambda name: None)
    code = main(["study", "--data", str(data), "--out", str(out), "--backbone", "resnet18", "--mode", "frozen",
                 "--quiet"])
    assert "ImageNet weights not found" in one_line_error(capsys, code) and not out.exists()
    # a frozen network with no trained weights at all: refused after the ingest, which left the new
    # folder, or replaced an existing run's cube (and its settings) with the study's
    code = main(["study", "--data", str(data), "--out", str(out), "--backbone", "small", "--mode", "frozen", "--quiet"])
    assert "frozen mode needs trained weights" in one_line_error(capsys, code) and not out.exists()


def test_a_frozen_study_refuses_labels_it_does_not_have(tmp_path, capsys):
    """In a frozen study --labels only names the truth, so a typo scored everything against another
    column without a word; it is one line now, and the folder the study made is taken away."""
    data = tiny_folder_survey(tmp_path / "data", n=6)
    out = tmp_path / "s"
    for how in (["--mode", "frozen"], ["--backbone", "vade"]):  # a VaDE study fine-tunes nothing either
        code = main(["study", "--data", str(data), "--out", str(out), *how, "--labels", "morpholgy", "--quiet"])
        assert "morpholgy" in one_line_error(capsys, code) and not out.exists()


def test_a_fine_tuning_study_refuses_labels_it_cannot_train_on_before_any_work(tmp_path, capsys):
    """A label column with one class, or with no label at all, was refused once the training had
    begun: the folder the study made stayed, with an empty model folder and the column saved as
    the run's truth."""
    data = tiny_folder_survey(tmp_path / "data", n=6)
    cat = pd.read_csv(data / "catalogue.csv")
    cat["one"], cat["blank"] = "spiral", np.nan
    cat["few"] = ["p", "q", "q"] + [np.nan] * (len(cat) - 3)  # refused only at the split, once ingested and saved
    cat.to_csv(data / "catalogue.csv", index=False)
    out = tmp_path / "s"
    for column, message in (("one", "at least 2 classes, got 1"), ("blank", "labelled images, got none"),
                            ("few", "at least 4 labelled images, got 3")):
        code = main(["study", "--data", str(data), "--out", str(out), "--backbone", "small", "--epochs", "1",
                     "--labels", column, "--quiet"])
        line = one_line_error(capsys, code)
        assert f"study.labels = '{column}'" in line and message in line and not out.exists(), line


def test_an_identifier_is_refused_as_classes(tmp_path, capsys):
    """`study --labels id` fine-tuned on one class per galaxy and `data.truth_label=id` scored against
    them, with warnings only: a column with a value of its own for every galaxy is an identifier."""
    data = tiny_folder_survey(tmp_path / "data", n=12)
    out = tmp_path / "s"
    for cmd in (["study", "--backbone", "small", "--epochs", "1", "--labels", "id"],
                ["study", "--backbone", "efficientnet-lite0", "--mode", "frozen", "--labels", "id"],  # the truth only
                ["run", "--model", "pca", "--set", "data.truth_label=id"]):
        line = one_line_error(capsys, main([*cmd, "--data", str(data), "--out", str(out), "--quiet"]))
        # the study now refuses the catalogue's own id column before it counts its values
        said = "bookkeeping column" if cmd[0] == "study" else "a value of its own (an identifier)"
        assert said in line and not out.exists(), line


def test_lda_is_skipped_saying_why_when_it_cannot_be_fitted(pca_run, caplog, tmp_path):
    import shutil

    from morphospace.analysis.reduce import reduce_run
    from morphospace.config import Config, apply_overrides

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    one_each = np.array([f"c{i}" for i in range(12)], dtype=object)
    with caplog.at_level("WARNING", logger="morphospace"):
        out = reduce_run(RunDir(run), apply_overrides(Config(), ["cluster.reductions=['lda']"]),
                         embedding="pixels_pca", labels=one_each)
    assert out == {} and "LDA skipped" in caplog.text
    # two galaxies a class at most: the checks on the counts pass, but the within-class covariance
    # is singular even shrunk; it was a traceback out of scipy that ended `morphospace run`
    caplog.clear()
    few = np.array(list("aabbccdefghi"), dtype=object)
    with caplog.at_level("WARNING", logger="morphospace"):
        out = reduce_run(RunDir(run), apply_overrides(Config(), ["cluster.reductions=['lda', 'pca']"]),
                         embedding="pixels_pca", labels=few)
    assert list(out) == ["pixels_pca_pca"] and "within their classes" in caplog.text


# 8. the smaller points -----------------------------------------------------------------------------

def test_non_utf8_names_that_become_one_id_are_flagged(tmp_path):
    from fixtures import ingest_to

    data = tmp_path / "data"
    data.mkdir()
    for i, raw in enumerate((b"g\xff.png", b"g\xfe.png", b"ok.png")):
        save_image(data / "tmp.png", galaxy_rgb(64, seed=i))
        os.rename(os.fsencode(data / "tmp.png"), os.fsencode(data) + b"/" + raw)
    summary, cat, cube, _ = ingest_to(data, tmp_path / "run")
    assert int(cat["flag_duplicate_id"].sum()) == 1 and len(cube) == 2


def test_exif_orientation_is_applied(tmp_path):
    from fixtures import ingest_to

    data = tmp_path / "data"
    data.mkdir()
    img = np.zeros((64, 96, 3), np.uint8)
    img[20:44, 10:40] = 255  # a bright block on the left of a landscape frame
    plain = Image.fromarray(img)
    plain.save(data / "a.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    plain.save(data / "b.jpg", quality=95, exif=exif)
    _, cat, cube, _ = ingest_to(data, tmp_path / "run", preprocess__crop=1.0, preprocess__normalise="minmax")
    a, b = (np.asarray(cube[int(cat.loc[cat["id"] == i, "cube_index"].iloc[0])]).mean(0) for i in ("a", "b"))
    # the tagged copy is the plain one turned by 90 degrees (the frames differ in shape, so not equal)
    assert np.abs(np.rot90(a, -1) - b).mean() < np.abs(a - b).mean()


def test_written_files_follow_the_umask(pca_run):
    mask = os.umask(0)
    os.umask(mask)
    for p in (pca_run / "catalogue.parquet", pca_run / "cube.npy", pca_run / "config.toml"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p


# the property test ------------------------------------------------------------------------------------

def _random_text(rng, alphabet: str, n: int) -> str:
    return "".join(rng.choice(list(alphabet)) for _ in range(n))


def test_random_names_ids_and_settings_stay_inside_the_run(tmp_path, capsys):
    """Seeded random column names, ids and settings through ingest -> export: every file written is
    under RUN (or is the export), and every failure is exit 2 with one line."""
    rng = np.random.default_rng(12345)
    alphabet = "abcXYZ019 ./\\<>\"'$;:*?|-_~\u00e9\u2028"
    settings = ["preprocess.size=32", "preprocess.size=0", "preprocess.crop=2", "preprocess.crop=0.5",
                "preprocess.colour=grey", "preprocess.colour=purple", "ingest.workers=1", "ingest.workers=-3",
                "data.truth_label=\"nope\"", "train.lr=1e-3"]
    for trial in range(6):
        root = tmp_path / f"t{trial}"
        data = root / "data"
        cols = ["id", "file"] + [_random_text(rng, alphabet, int(rng.integers(1, 12))) for _ in range(2)]
        if len(set(cols)) < len(cols):
            continue
        rows = []
        for i in range(6):
            gid = _random_text(rng, alphabet.replace("/", "").replace("\\", ""), int(rng.integers(1, 10))) + str(i)
            name = f"f{i}.png"
            save_image(data / name, galaxy_rgb(48, seed=i))
            rows.append([gid, name, ["x", "y"][i % 2], _random_text(rng, alphabet, 4)])
        write_csv(data / "catalogue.csv", cols, rows)
        before = files_under(tmp_path)
        run = root / "runs" / "r"
        chosen = list(rng.choice(settings, size=2, replace=False))
        args = ["ingest", str(data), "--out", str(run), "--quiet", "--workers", "1"]
        for s in chosen:
            args += ["--set", s]
        code = main(args)
        if code != 0:
            one_line_error(capsys, code)
        else:
            out = root / "export.csv"
            code = main(["export", str(run), "--out", str(out), "--quiet"])
            assert code == 0, capsys.readouterr().err
            assert len(pd.read_csv(out)) == 6
        capsys.readouterr()
        new = files_under(tmp_path) - before
        allowed = (run.resolve(), (root / "export.csv").resolve())
        stray = [p for p in new if not (p.resolve().is_relative_to(allowed[0]) or p.resolve() == allowed[1])]
        assert not stray, (chosen, stray)


def test_quiet_keeps_library_warnings_off_the_console(tmp_path, capsys, monkeypatch):
    """Pillow's DecompressionBombWarning (and any library warning) is not printed under --quiet."""
    import warnings

    from morphospace import cli

    from morphospace.run import RunDir

    def noisy(args):
        cli._setup_logging(True, RunDir(tmp_path))  # as a stage does, once it knows its run
        warnings.warn("Image size (1 pixels) exceeds limit", Image.DecompressionBombWarning)
        return 0

    monkeypatch.setattr(cli, "_dispatch", noisy)
    assert main(["embed", str(tmp_path), "--quiet"]) == 0
    assert "exceeds limit" not in capsys.readouterr().err
    assert "exceeds limit" in (tmp_path / "log.txt").read_text()  # kept in the run's log, as promised
    with pytest.warns(Image.DecompressionBombWarning):  # without --quiet it is a warning as usual
        assert main(["embed", str(tmp_path)]) == 0


def test_an_error_is_one_line_even_without_quiet(tmp_path):
    """The stage's start line goes to the run's log, not above the error on the console."""
    (tmp_path / "empty").mkdir()  # there, but without images: the ingest's own error
    (tmp_path / "run").mkdir()  # a folder the command did not make is kept, with its log
    r = subprocess.run([sys.executable, "-m", "morphospace", "run", "--data", str(tmp_path / "empty"), "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "no known survey layout" in lines[0]
    assert "===> ingest" in (tmp_path / "run" / "log.txt").read_text()


def test_a_damaged_checkpoint_to_resume_is_one_line(pca_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    ckpt = run / "models" / "vade" / "last.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"PK\x03\x04" + os.urandom(300))  # a zip header, then nothing that follows
    code = main(["train", str(run), "--resume", "--quiet", "--set", "model.kind=vade", "--set", "model.preset=default"])
    line = one_line_error(capsys, code)
    assert "last.ckpt is damaged" in line and "without --resume" in line
    # a whole checkpoint, but the settings the training began with damaged: a JSONDecodeError traceback
    import torch

    torch.save({"epoch": 0}, ckpt)
    for text in ("{", "[1, 2]"):
        (ckpt.parent / "hparams.json").write_text(text)
        code = main(["train", str(run), "--resume", "--quiet", "--set", "model.kind=vade",
                     "--set", "model.preset=default"])
        line = one_line_error(capsys, code)
        assert "hparams.json is damaged" in line and "without --resume" in line


def test_a_refused_ingest_keeps_the_run_s_settings_and_makes_no_folder(tmp_path, capsys):
    """An ingest refused after the checks that come first (an empty folder: no known layout; an
    id column that is not there) leaves an existing run's config.toml as it was (later stages
    read it) and takes away a folder it made itself; the notebook's ms.ingest too, as a ValueError."""
    import morphospace as ms
    from fixtures import tiny_folder_survey

    data = tiny_folder_survey(tmp_path / "data", n=6, formats=("png",))
    run = tmp_path / "run"
    assert main(["ingest", str(data), "--out", str(run), "--size", "32", "--quiet"]) == 0
    before = (run / "config.toml").read_text()
    (tmp_path / "empty").mkdir()
    for extra in (["--size", "64", "--colour", "grey"], ["--layout", "folder", "--id-column", "nope"]):
        source = tmp_path / ("empty" if "--colour" in extra else "data")
        line = one_line_error(capsys, main(["ingest", str(source), "--out", str(run), *extra, "--quiet"]))
        assert "layout" in line or "nope" in line
        assert (run / "config.toml").read_text() == before
    fresh = tmp_path / "fresh"
    one_line_error(capsys, main(["ingest", str(tmp_path / "empty"), "--out", str(fresh), "--quiet"]))
    assert not fresh.exists()
    with pytest.raises(ValueError, match="layout"):
        ms.ingest(tmp_path / "empty", run=tmp_path / "nb")
    assert not (tmp_path / "nb").exists()
    with pytest.raises(ValueError, match="layout"):
        ms.ingest(tmp_path / "empty", run=run)
    assert (run / "config.toml").read_text() == before


def test_a_masking_that_fails_keeps_the_ingest_it_follows(tmp_path, capsys, monkeypatch):
    """--mask-neighbours: the masking runs once the survey is in and its settings saved; a failure
    there (a worker killed for memory) keeps the ingest, new folder or not, with its settings."""
    import morphospace.image.masking as masking
    from fixtures import tiny_folder_survey

    def dies(*args, **kwargs):
        raise UserError("a masking worker died")

    monkeypatch.setattr(masking, "masked_cube", dies)
    data = tiny_folder_survey(tmp_path / "data", n=4, formats=("png",))
    line = one_line_error(capsys, main(["ingest", str(data), "--out", str(tmp_path / "run"), "--size", "32",
                                        "--mask-neighbours", "--quiet"]))
    assert "masking worker died" in line
    run = RunDir(tmp_path / "run")
    assert run.read_cube().shape[0] == 4 and "size = 32" in run.config.read_text()


@pytest.mark.parametrize("command", [["generate", "--component", "0", "--n", "1", "--out", "OUT"], ["anomalies"],
                                     ["export", "--out", "OUT/x.csv"], ["report"], ["reduce"], ["similar", "--id", "a"]])
def test_a_folder_that_is_not_a_run_is_refused_before_anything_is_written(tmp_path, capsys, command):
    """Pointed at a survey's own folder by mistake, a stage leaves no log, lock or model folder in it."""
    from fixtures import tiny_folder_survey

    data = tiny_folder_survey(tmp_path / "data", n=3, formats=("png",))
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    args = [str(tmp_path / "out") if a == "OUT" else a.replace("OUT", str(tmp_path / "out")) for a in command]
    line = one_line_error(capsys, main([args[0], str(data), *args[1:], "--quiet"]))
    assert "is not a morphospace run" in line
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before and not (tmp_path / "out").exists()


def test_the_advice_s_command_quotes_a_path_with_a_space(tmp_path, capsys):
    """The command a message suggests can be pasted: a run folder with a space was two arguments."""
    import shlex

    folder = tmp_path / "my runs" / "gz1"
    folder.mkdir(parents=True)
    line = one_line_error(capsys, main(["report", str(folder), "--quiet"]))
    assert f"--out {shlex.quote(str(folder))})" in line and shlex.quote(str(folder)).startswith("'")
    (folder / "config.toml").write_text('[model]\nkind = "pca"\n')
    assert f"`morphospace train {shlex.quote(str(folder))} --set" in RunDir(folder).pixel_pca_note()


def test_generate_reads_a_run_without_making_its_model_folder(tmp_path, capsys):
    from fixtures import tiny_folder_survey

    run = tmp_path / "run"
    assert main(["ingest", str(tiny_folder_survey(tmp_path / "data", n=3, formats=("png",))), "--out", str(run),
                 "--size", "32", "--quiet"]) == 0
    line = one_line_error(capsys, main(["generate", str(run), "--component", "0", "--out", str(tmp_path / "g"),
                                        "--quiet"]))
    assert "model" in line and not (run / "models").exists()


def test_a_full_disk_is_an_error_naming_the_file_not_a_bus_error(tmp_path, monkeypatch):
    """A map of a sparse file written on a full disk killed the process with SIGBUS (no message, the
    partial file left filling the disk); the bytes are now reserved first."""
    import errno
    import os

    import numpy as np

    from morphospace.run import new_npy_map

    mm = new_npy_map(tmp_path / "ok.npy", np.float32, (4, 3))
    mm[:] = 2
    mm.flush()
    del mm
    assert np.load(tmp_path / "ok.npy").sum() == 24

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left on device") as exc:
        new_npy_map(tmp_path / "big.npy", np.float32, (1000, 3))
    assert exc.value.filename == str(tmp_path / "big.npy") and exc.value.errno == errno.ENOSPC

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)  # a file system that cannot reserve: sparse, as before
    assert new_npy_map(tmp_path / "sparse.npy", np.float32, (5, 2)).shape == (5, 2)


def test_a_missing_form_embedding_is_said_when_a_stage_falls_back(tmp_path, caplog):
    """A deleted form.npy (or a killed embed) made reduce and similar use 'vade' without a word."""
    import json

    import numpy as np

    from morphospace.pipeline import primary_embedding
    from morphospace.run import write_npy

    run = RunDir(tmp_path / "run", create=True)
    write_npy(run.embedding_path("vade"), np.zeros((3, 2), np.float32))
    with caplog.at_level("WARNING", logger="morphospace"):
        assert primary_embedding(run, None) == "vade"  # no model: nothing expected, nothing said
    assert "form.npy is missing" not in caplog.text
    mdir = run.model_dir("vade")
    (mdir / "model.pt").write_bytes(b"x")
    (mdir / "hparams.json").write_text(json.dumps({"preset": "form"}))
    with caplog.at_level("WARNING", logger="morphospace"):
        assert primary_embedding(run, None) == "vade"
    assert "embeddings/form.npy is missing" in caplog.text and "morphospace embed" in caplog.text


def test_training_bars_go_to_stderr_not_stdout(capsys):
    """A model's training bars are on stderr, where progress goes; stdout is for a command's data
    (Lightning's own bars write to stdout). Under --quiet there are none."""
    from morphospace.progress import set_quiet
    from morphospace.vade.form_decoder import fit_image_decoder

    g = np.random.default_rng(0)
    cube = g.random((16, 3, 16, 16), dtype=np.float32)
    mu, log_var = g.standard_normal((16, 4)).astype(np.float32), np.full((16, 4), -2.0, np.float32)

    def fit():
        fit_image_decoder(mu, log_var, cube, widths=(4, 8), epochs=1, batch_size=8,
                          trainer_kwargs={"accelerator": "cpu"})
        return capsys.readouterr()

    set_quiet(False)
    shown = fit()
    assert shown.out == ""
    assert "Epoch 1/1" in shown.err and "decoder_mse" in shown.err  # the epoch out of how many, counted from 1
    assert "Training" not in shown.err and "0/?" not in shown.err  # opened with its epoch and its batches
    set_quiet(True)
    try:
        quiet = fit()
    finally:
        set_quiet(False)
    assert quiet.out == "" and "Epoch" not in quiet.err


def test_the_stderr_bar_goes_to_spawned_processes():
    """A spawning strategy (ddp_spawn: several devices from one process) pickles the trainer's
    callbacks; the bar's class, built on first use, is found by name in a fresh process."""
    import pickle

    from morphospace.progress import set_quiet, with_bars

    set_quiet(False)
    (bar,) = with_bars({"callbacks": []})["callbacks"]
    code = "import pickle, sys; bar = pickle.loads(sys.stdin.buffer.read()); print(type(bar).__module__, type(bar).__name__)"
    r = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(bar), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-400:]
    assert r.stdout.decode().split() == ["morphospace.progress", "StderrProgressBar"]
    assert with_bars({"enable_progress_bar": False}) == {"enable_progress_bar": False}


def test_the_libraries_caches_go_to_morphospace_s_cache_not_the_installed_packages(tmp_path):
    """`reduce` (umap, pynndescent) wrote numba's compiled functions into site-packages, and torch's
    inductor left a folder in the temporary directory: both go to ~/.cache/morphospace (or
    $XDG_CACHE_HOME/morphospace, $MORPHOSPACE_CACHE) unless the user set where they go."""
    import subprocess
    import sys

    module = tmp_path / "pkg" / "jitted.py"
    module.parent.mkdir()
    module.write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR",
                                                             "MORPHOSPACE_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=os.pathsep.join([str(module.parent), *sys.path]))
    code = ("import morphospace, jitted, lightning.pytorch\n"
            "assert jitted.twice(21) == 42\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert not (module.parent / "__pycache__").exists() or not list((module.parent / "__pycache__").glob("*.nb*"))
    assert list((home / ".cache" / "morphospace" / "numba").rglob("*.nbi"))
    assert not list(tmp.iterdir())  # no torchinductor_<user> folder
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")  # the user's own choice stands
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert list((tmp_path / "mine").rglob("*.nbi"))


def test_a_setting_refused_after_the_ingest_or_by_a_stage_never_stays_in_the_run(pca_run, tmp_path, capsys):
    """`run` saved its settings and ingested before the training refused a weights file, more
    components than galaxies or a truth label; a stage saved `--set` before it found the
    representation missing. The run's config.toml stayed changed and every later stage refused it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    data = pca_run.parent / "data"  # the run's own galaxies: a re-ingest keeps its results
    before = (run / "config.toml").read_bytes()
    fresh = tmp_path / "fresh"
    for sets in (["form.weights=/no/such/weights.pt"], ["model.n_components=500"], ["data.truth_label=nosuch"]):
        for out in (fresh, run):
            args = ["run", "--data", str(data), "--out", str(out), "--quiet"]
            code = main([*args, *[x for s in sets for x in ("--set", s)]])
            line = one_line_error(capsys, code)
            assert any(w in line for w in ("no such file", "exceeds the number of galaxies", "'nosuch'")), line
            assert not fresh.exists() and (run / "config.toml").read_bytes() == before
    code = main(["cluster", str(run), "--quiet", "--set", "cluster.representations=['nosuch']"])
    assert "nosuch" in one_line_error(capsys, code) and (run / "config.toml").read_bytes() == before
    assert main(["cluster", str(run), "--quiet"]) == 0  # the run goes on with its own settings
    code = main(["study", "--data", str(data), "--out", str(fresh), "--backbone", "small", "--mode", "frozen",
                 "--set", "study.weights=/no/such/weights.pt", "--quiet"])
    assert "weights file not found" in one_line_error(capsys, code) and not fresh.exists()
    # galaxies of another folder with a truth label they lack: refused before the new cube replaces
    # the run's (it was ingested, the earlier results set aside, then refused): the run is as it was
    other = tiny_folder_survey(tmp_path / "other", n=12)
    code = main(["run", "--data", str(other), "--out", str(run), "--quiet", "--set", "data.truth_label=nosuch"])
    assert "'nosuch'" in one_line_error(capsys, code)
    assert (run / "config.toml").read_bytes() == before and not (run / "superseded").exists()


def test_a_command_with_its_output_closed_ends_without_a_traceback(tmp_path, capsys):
    """`morphospace synth ... >&-` did its work, then raised AttributeError on sys.stdout.flush()
    (stdout is None then); `synth --size 0` was taken as the default size."""
    import subprocess
    import sys

    out = tmp_path / "s"
    done = subprocess.run(["bash", "-c", f"'{sys.executable}' -m morphospace synth --n 2 --out '{out}' --quiet >&-"],
                          capture_output=False, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr and (out / "catalogue.csv").is_file()
    assert "size must be" in one_line_error(capsys, main(["synth", "--n", "2", "--size", "0", "--out",
                                                               str(tmp_path / "z"), "--quiet"]))


def test_the_configuration_is_put_back_whatever_stops_the_stage_and_by_the_first_process_only(tmp_path, monkeypatch):
    """Only a UserError put it back (Ctrl-C during a re-ingest left the new settings beside the
    earlier cube); and every process of a distributed job wrote it back, a later one after the first."""
    from morphospace import pipeline
    from morphospace.pipeline import survey

    run = RunDir(tmp_path / "run", create=True)
    run.config.write_text("[train]\nepochs = 3\n")
    for stop in (KeyboardInterrupt, OSError, UserError):
        with pytest.raises(stop):
            with pipeline.config_restored_on_failure(run):
                run.config.write_text("[train]\nepochs = 99\n")
                raise stop("stopped")
        assert run.config.read_text() == "[train]\nepochs = 3\n"
    monkeypatch.setattr(survey, "launched_as_later_rank", lambda: True)
    with pytest.raises(UserError):
        with pipeline.config_restored_on_failure(run):
            run.config.write_text("[train]\nepochs = 5\n")  # (what the first process wrote meanwhile)
            raise UserError("refused")
    assert run.config.read_text() == "[train]\nepochs = 5\n"  # a later process writes nothing


def test_run_saves_the_settings_of_the_cube_it_made_before_masking_and_keeps_only_labels_it_has(
        pca_run, tmp_path, capsys, monkeypatch):
    """The masking after a re-ingest failing (a full disk, Ctrl-C) put the earlier config.toml
    back beside the new cube; a refusal after the ingest kept an earlier truth label that the new
    catalogue lacks, which every later stage then refused."""
    import errno
    import shutil

    from morphospace.config import Config, apply_overrides
    from morphospace.pipeline import stages
    from morphospace.pipeline.survey import cube_settings

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    other = tiny_folder_survey(tmp_path / "other", n=12)

    def full(run_dir, cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir.path / "cube_masked.npy"))

    monkeypatch.setattr(stages, "mask_if_asked", full)
    code = main(["run", "--data", str(other), "--out", str(run), "--model", "pca", "--quiet"])
    assert code == 2 and "No space left" in capsys.readouterr().err.splitlines()[-1]
    assert load_config(run / "config.toml").data.path == str(other)  # the settings of the cube in place

    earlier = apply_overrides(Config(), ["data.truth_label=morphology", "cluster.nuisance_columns=['seeing']"])
    kept = cube_settings(earlier, apply_overrides(Config(), ["data.path=new"]), ["id", "seeing"])
    assert kept.data.path == "new" and kept.data.truth_label == "" and kept.cluster.nuisance_columns == ["seeing"]


def test_a_trimmed_catalogue_asks_for_ingest_not_embed(tmp_path, capsys):
    """A catalogue trimmed by hand: similar, anomalies, classify and reduce said to re-run
    `embed`, which could not help (the embedding has the cube's rows); they now say the cube and
    the catalogue do not belong together and to re-run `ingest`."""
    from report_fakerun import make_fake_run

    from morphospace.config import Config
    from morphospace.pipeline import save_config

    run = make_fake_run(tmp_path / "run", n=40, size=16)
    save_config(run, Config())
    np.save(run.embedding_path("form"), np.load(run.embedding_path("vade")))
    cat = pd.read_parquet(run.catalogue)
    cat.iloc[:-5].to_parquet(run.catalogue)
    cat.iloc[:10][["id"]].assign(kind=["a", "b"] * 5).to_csv(tmp_path / "labels.csv", index=False)
    for cmd in (["similar", str(run.path), "--id", "G000001", "--embedding", "form"],
                ["anomalies", str(run.path)],
                ["classify", str(run.path), "--labels", str(tmp_path / "labels.csv"), "--column", "kind",
                 "--embedding", "form"],
                ["reduce", str(run.path), "--embedding", "form"]):
        line = one_line_error(capsys, main([*cmd, "--quiet"]))
        assert "re-run `morphospace ingest`" in line and "embed" not in line, (cmd, line)
    # a run whose cube was deleted after embed (it is the largest file) is read against its catalogue
    whole = make_fake_run(tmp_path / "whole", n=40, size=16)
    whole.cube.unlink()
    assert len(whole.embedding_of_cube("vade")) == len(whole.cube_ids())


def test_reduce_and_compare_refuse_rows_that_disagree_before_writing_anything(tmp_path):
    """An embedding of fewer rows than the cube: reduce wrote its PCA, t-SNE and UMAP maps of the
    wrong rows, then failed at LDA. A catalogue trimmed by hand: compare rewrote its score tables,
    deleted the probes and the nuisance audit, then failed. Both now refuse first, in one line."""
    from morphospace.config import Config
    from morphospace.errors import UserError
    from morphospace.pipeline import stage_compare
    from morphospace.analysis.reduce import reduce_run

    from report_fakerun import make_fake_run

    run = make_fake_run(tmp_path / "run", n=40, size=16)
    np.save(run.embedding_path("vade"), np.load(run.embedding_path("vade"))[:30])
    before = {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="embedding 'vade' has 30 rows but the cube 40"):
        reduce_run(run, Config(), embedding="vade", reductions=["pca", "tsne", "lda"])
    run2 = make_fake_run(tmp_path / "run2", n=40, size=16)
    cat = pd.read_parquet(run2.catalogue)
    cat.iloc[:-5].to_parquet(run2.catalogue)
    kept = {p: p.read_bytes() for p in (run2.path / "comparisons").rglob("*") if p.is_file()}
    assert kept  # the fake run has its comparisons
    with pytest.raises(UserError, match="re-run `morphospace ingest`"):
        stage_compare(run2, Config())
    assert {p: p.read_bytes() for p in (run2.path / "comparisons").rglob("*") if p.is_file()} == kept
    after = {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()}
    assert after == {**before, run.embedding_path("vade"): after[run.embedding_path("vade")]}


@pytest.mark.skipif(sys.platform != "linux", reason="a file name that is not UTF-8 needs a byte-named file system")
def test_a_run_in_a_folder_whose_name_is_not_utf8_reads_and_writes_its_tables(tmp_path):
    """pyarrow cannot encode such a path: every command on a run in a folder named in Latin-1 said
    its catalogue was damaged and to re-ingest it, and an export to such a name was a traceback."""
    from morphospace.cli import main
    from morphospace.config import Config
    from morphospace.report import build_report

    from report_fakerun import make_fake_run

    folder = tmp_path / os.fsdecode(b"r\xe9run")
    run = make_fake_run(folder, n=30, size=16)
    assert len(run.read_catalogue()) >= 30
    assert build_report(run, Config()).is_file()
    out = tmp_path / os.fsdecode(b"r\xe9s.parquet")
    assert main(["export", str(folder), "--out", str(out), "--quiet"]) == 0
    with out.open("rb") as fh:
        assert len(pd.read_parquet(fh)) == 33  # every galaxy of the catalogue, the 3 left out of the cube too


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(pca_run, tmp_path, capsys):
    """`RUN/.lock` as a link to a file elsewhere: taking the lock truncated that file and wrote the
    holder's pid into it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    assert main(["cluster", str(run), "--quiet"]) == 2
    assert "is a link, not a lock file" in capsys.readouterr().err
    assert victim.read_text() == "precious\n"


def test_the_run_s_writer_removes_the_partial_files_a_killed_command_left(pca_run, tmp_path, capsys):
    """A kill -9 mid-write left `.cube_masked.npy.<random>.partial` (the cube's size) and
    `figures/.report_labels.png.<random>.partial`; no later command removed them."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run)
    from morphospace.run import atomic_path

    with pytest.raises(KeyError):  # the shape of the names atomic_path gives, as a killed writer leaves them
        with atomic_path(run / "figures" / "x.png") as tmp:
            shape = tmp.name.replace("x.png", "{}")
            raise KeyError
    from morphospace.run.writes import partial_path

    stale = [run / shape.format("cube_masked.npy"), run / "figures" / shape.format("report_labels.png"),
             run / "embeddings" / shape.format("pixels_pca.npy"),
             # a training killed while it filled its view bank (it stayed: 14 GB at 3 x 10^5 galaxies), and the
             # shares of a killed distributed prediction
             partial_path(run / "models" / "vade" / "ssl" / "view_bank.npy"),
             run / "models" / "vade" / "ssl" / "bank_shares" / "rank0.out0",
             run / "models" / "vade" / "predict_shares" / "rank1.index"]
    # not the run's to remove: an export's beside the run's files, the user's own folder's
    mine = [run / shape.format("results.csv"), run / shape.format("catalogue.parquet.csv"),
            run / "my_galaxies" / shape.format("g.png")]
    for p in stale + mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    assert main(["compare", str(run), "--quiet"]) == 0
    assert not any(p.exists() for p in stale) and all(p.exists() for p in mine)
    assert not (run / "models" / "vade" / "ssl" / "bank_shares").exists()


def test_two_runs_of_the_built_in_survey_render_it_once(tmp_path, monkeypatch):
    """Two `morphospace run` without data at once: the second took the first's half-rendered survey
    for an interrupted one and rendered it again, deleting images the first then read as missing
    (105 of 300 galaxies ingested). They now take turns, and the survey is rendered once."""
    import threading

    from morphospace.config import apply_overrides, load_config
    from morphospace.pipeline import survey

    monkeypatch.setenv("MORPHOSPACE_CACHE", str(tmp_path / "cache"))
    cfg = apply_overrides(load_config(None), ["data.synth_n=6", "ingest.workers=1"])
    real, calls = survey.stage_synth, []

    def slow_synth(*args, **kwargs):
        calls.append(1)
        threading.Event().wait(1.0)  # the other run arrives while this one renders
        return real(*args, **kwargs)

    monkeypatch.setattr(survey, "stage_synth", slow_synth)
    got = []
    threads = [threading.Thread(target=lambda: got.append(survey.ensure_survey(cfg))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(got)) == 1
    assert len(list((got[0] / "images").iterdir())) == 6 and (got[0] / "catalogue.csv").is_file()
    # an image deleted by hand: the cached survey was used as is, a galaxy short; it is rendered again
    image = next((got[0] / "images").iterdir())
    made = image.read_bytes()
    image.unlink()
    assert survey.ensure_survey(cfg) == got[0] and image.read_bytes() == made and len(calls) == 2
    assert survey.ensure_survey(cfg) == got[0] and len(calls) == 2  # whole: reused


def test_a_pixel_pca_fitted_on_one_image_is_refused(pca_run, tmp_path, capsys):
    """`embed --set train.sample=1` on a pixel-PCA run fitted a PCA on one image: NaN explained
    variance written into its record (not JSON), library warnings; a VaDE run refused it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pca_run, run, ignore=shutil.ignore_patterns(".lock"))
    before = (run / "embeddings" / "pixels_pca.json").read_bytes()
    line = one_line_error(capsys, main(["embed", str(run), "--quiet", "--set", "train.sample=1"]))
    assert "train.sample = 1 image is too few to fit the pixel PCA on" in line
    assert (run / "embeddings" / "pixels_pca.json").read_bytes() == before


def test_a_later_task_of_a_training_job_leaves_the_run_s_settings_to_the_first(pca_run, tmp_path, monkeypatch):
    """`train` saved config.toml on every task of a job: a second job's later task, refused the run,
    had already written its settings over those of the job training."""
    import shutil

    import morphospace.cli.settings as settings
    import morphospace.pipeline.survey as survey
    from morphospace import pipeline

    run = tmp_path / "run"
    shutil.copytree(pca_run, run, ignore=shutil.ignore_patterns(".lock"))
    before = (run / "config.toml").read_bytes()
    for module in (survey, settings):
        monkeypatch.setattr(module, "launched_as_later_rank", lambda: True)
    monkeypatch.setattr(pipeline, "stage_train", lambda *args, **kwargs: None)
    assert main(["train", str(run), "--quiet", "--set", "model.n_components=5"]) == 0
    assert (run / "config.toml").read_bytes() == before


def test_synth_refuses_an_empty_out(tmp_path, monkeypatch, capsys):
    """`synth --out ""` wrote the survey into the current folder (Path("") is ".")."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:  # a usage error: the parser's one line
        main(["synth", "--n", "2", "--out", "", "--quiet"])
    assert refused.value.code == 2 and "--out must not be empty" in one_line_error(capsys, 2) and not any(tmp_path.iterdir())


def test_a_full_disk_under_the_log_and_the_model_file_is_one_line(tmp_path, capsys, monkeypatch):
    """log.txt that cannot grow printed a '--- Logging error ---' traceback for every line and failed
    the command at its close (exit 1); torch.save on a full disk raised its own RuntimeError, a
    traceback. Now one warning, the console goes on; the model file's write is an OSError naming it."""
    import errno
    import logging

    import torch

    import morphospace.cli as cli
    from morphospace.nets.saving import written_by_torch
    from morphospace.vade.io import save_model

    run = RunDir(tmp_path / "run", create=True)

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    with cli._logging_as_found():  # as main() sets it up, and takes it off again
        cli._setup_logging(False, run)
        handler = next(h for h in logging.getLogger("morphospace").handlers if isinstance(h, logging.FileHandler))
        handler.stream = Full()
        logging.getLogger("morphospace").info("one line")
        logging.getLogger("morphospace").info("another line")
        cli._close_run_log()
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.count("cannot write") == 1 and "No space left on device" in err and "another line" in err

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4304")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="a full disk") as exc:
        save_model(torch.nn.Linear(2, 2), {"preset": "default"}, tmp_path / "model.pt")
    assert exc.value.filename == str(tmp_path / "model.pt") and not (tmp_path / "model.pt").exists()
    with pytest.raises(RuntimeError, match="other"), written_by_torch(tmp_path / "x"):
        raise RuntimeError("other")  # torch's other errors pass


def test_a_failed_stage_s_own_error_is_the_one_said(tmp_path, monkeypatch, caplog):
    """A stage stopped by the file system (a read-only run): putting config.toml back, unchanged,
    failed in turn, and the command said 'cannot use RUN/.config.toml.xxx.partial' instead of what
    stopped it. The settings are now put back only where they changed, and a failure to do so is a
    warning beside the stage's own error."""
    from morphospace.pipeline import survey

    run = RunDir(tmp_path / "run", create=True)
    run.config.write_text("[model]\n")

    def unwritable(path):
        raise PermissionError(13, "Operation not permitted", str(path) + ".partial")

    monkeypatch.setattr(survey, "atomic_path", unwritable)
    with pytest.raises(OSError, match="report.html"):
        with survey.config_restored_on_failure(run):
            raise OSError(28, "No space left on device", str(run.path / "report.html"))
    with caplog.at_level("WARNING", logger="morphospace"), pytest.raises(OSError, match="report.html"):
        with survey.config_restored_on_failure(run):
            run.config.write_text("[model]\npreset = 'form'\n")  # a stage saved its settings, then failed
            raise OSError(28, "No space left on device", str(run.path / "report.html"))
    assert "could not put" in caplog.text


def test_a_refused_rename_names_the_file_not_its_temporary_name(tmp_path, monkeypatch):
    """A file that could not be put in place (an immutable folder or file) was said as
    'cannot use RUN/.report.html.vc8v2q0i.partial', a name already gone."""
    import os

    from morphospace.run import atomic_path

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError) as error:
        with atomic_path(tmp_path / "report.html") as tmp:
            tmp.write_text("page")
    assert error.value.filename == str(tmp_path / "report.html") and error.value.strerror == "Operation not permitted"
    assert list(tmp_path.iterdir()) == []  # the temporary file went


def test_another_user_s_lock_file_in_a_shared_folder_is_no_dead_end(tmp_path, monkeypatch, caplog):
    """Draws into a group's shared folder: the lock file another user made (mode 0644) could not be
    opened for writing, and `generate` failed on it. The draw goes on without the turn, saying so."""
    from morphospace.run import lock

    def not_yours(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(lock, "_open_lock_file", not_yours)
    ran = []
    with caplog.at_level("WARNING", logger="morphospace"), lock.folder_turns(tmp_path):
        ran.append(True)
    assert ran and "going on without it" in caplog.text


def test_a_run_s_clusters_are_its_components_only_once_its_model_is_embedded(tmp_path):
    """Without a merge on file, cluster g is component g where the model was embedded without one (or
    before fingerprints were kept, or has no cube to embed); a model trained but not embedded is refused."""
    import json

    from morphospace.run import RunDir
    from morphospace.vade.io import cluster_groups

    run = RunDir(tmp_path / "run", create=True)
    (run.path / "models" / "vade").mkdir(parents=True)
    assert cluster_groups(run, 3, made_by="m1") == [[0], [1], [2]]  # an imported model: no cube to embed
    (run.path / "cube.npy").write_bytes(b"")
    with pytest.raises(UserError, match="has not been embedded"):
        cluster_groups(run, 3, made_by="m1")
    note = run.path / "embeddings" / "vade.json"
    note.parent.mkdir()
    note.write_text(json.dumps({"n_components": 3}))  # embedded before fingerprints were kept
    assert cluster_groups(run, 3, made_by="m1") == [[0], [1], [2]]
    note.write_text(json.dumps({"n_components": 3, "model_fingerprint": "m1"}))  # embedded, no merge
    assert cluster_groups(run, 3, made_by="m1") == [[0], [1], [2]]
    with pytest.raises(UserError, match="has not been embedded"):
        cluster_groups(run, 3, made_by="m2")  # trained again since


def test_a_write_the_file_system_refuses_names_the_file(tmp_path):
    """A full disk (or a quota, a file-size limit) refuses the write() itself, whose OSError names no
    file: every stage said 'cannot use: No space left on device', not which file, nor so which disk.
    A real refusal here: a file-size limit (RLIMIT_FSIZE: EFBIG, as ENOSPC, from write())."""
    code = textwrap.dedent(f"""
        import resource, sys
        from morphospace.run import write_text
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            write_text({str(tmp_path / 'report.html')!r}, "x" * 100000)
        except OSError as exc:
            print(exc.filename)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == str(tmp_path / "report.html"), out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the temporary file went
