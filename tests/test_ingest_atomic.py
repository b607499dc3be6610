"""Ingest atomicity and streaming: a killed ingest never leaves a cube that looks complete."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest
from fixtures import all_end, children, galaxy_rgb, ingest_to, many_jpegs, save_image

import morphospace.data.ingest.workers as ingest_workers
from morphospace.data.ingest.cube import CubeWriter
from morphospace.errors import UserError

KILLABLE = """
import sys
from morphospace.config import Config, apply_overrides
from morphospace.data.ingest import ingest
from morphospace.progress import set_quiet
from morphospace.run import RunDir
set_quiet(True)
cfg = apply_overrides(Config(), {"ingest.workers": 2, "ingest.chunk_size": 8})
ingest(sys.argv[1], RunDir(sys.argv[2], create=True), cfg)
"""


def test_sigkill_mid_ingest_leaves_only_a_partial_and_a_rerun_completes(tmp_path):
    n = 500
    data = many_jpegs(tmp_path / "data", n, size=96)
    run = tmp_path / "run"
    partial = run / "cube.npy.partial"
    row_bytes = 3 * 64 * 64 * 4
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(data), str(run)], start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size > 16 * row_bytes:  # some chunks written
                break
            if proc.poll() is not None:
                pytest.fail("the ingest finished before it could be killed")
            time.sleep(0.002)
        # the pool's processes, as /proc lists them (read again: on a loaded machine a first read of
        # /proc found none, once, though chunks had been written by them)
        for _ in range(100):
            workers = children(proc.pid)
            if workers:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        written = partial.stat().st_size
        assert 16 * row_bytes < written < n * row_bytes  # really killed mid-way
        for name in ("cube.npy", "catalogue.parquet", "ingest_summary.json"):
            assert not (run / name).exists(), name
        assert partial.exists()
        # the orphaned workers notice and exit by themselves (no stray processes)
        assert workers and all_end(workers, 10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    summary, cat, cube, _ = ingest_to(data, run, ingest__workers=2)
    assert summary["n_in_cube"] == n and cube.shape == (n, 3, 64, 64) and len(cat) == n
    assert not partial.exists()


def test_a_rerun_replaces_everything_and_stale_partials_go(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for i in range(4):
        save_image(first / f"x{i}.png", galaxy_rgb(48, seed=i))
    for i in range(2):
        save_image(second / f"y{i}.png", galaxy_rgb(48, seed=10 + i))
    _, _, cube, run = ingest_to(first, tmp_path / "run")
    assert cube.shape[0] == 4
    (run.path / "cube.npy.partial").write_bytes(b"left by a killed run")
    (run.path / ".catalogue.parquet.abc123.partial").write_bytes(b"left by a killed run")
    # results about the first galaxies by id, which no stage rewrites unasked (export refused the
    # run for them: "classification does not match the run's cube", with no way out but rm)
    for name in ("classes/morph.parquet", "classes/morph_suggest.csv", "similar/query_x0.png"):
        (run.path / name).parent.mkdir(exist_ok=True)
        (run.path / name).write_bytes(b"about x0..x3")
    (run.path / "anomaly_tags.csv").write_text("id,tag\nx0,interesting\n")  # the user's tags, about x0
    _, cat, cube, _ = ingest_to(second, tmp_path / "run")
    assert cube.shape[0] == 2 and list(cat["id"]) == ["y0", "y1"]
    assert not list(run.path.glob("*.partial")) and not list(run.path.glob(".*.partial"))
    assert not (run.path / "classes").exists() and not (run.path / "similar").exists()
    kept = list((run.path / "superseded").iterdir())  # moved aside, not deleted: labels filled in live there
    assert len(kept) == 1 and (kept[0] / "classes" / "morph_suggest.csv").read_bytes() == b"about x0..x3"
    assert not (run.path / "anomaly_tags.csv").exists() and (kept[0] / "anomaly_tags.csv").is_file()
    (run.path / "classes").mkdir()
    (run.path / "classes" / "morph.parquet").write_bytes(b"about y0, y1")
    ingest_to(second, tmp_path / "run")  # the same galaxies again: their classification stays
    assert (run.path / "classes" / "morph.parquet").read_bytes() == b"about y0, y1"


def _an_earlier_ingest(tmp_path):
    """A run of two galaxies with a models folder, and the bytes of its cube, catalogue and summary."""
    good = tmp_path / "good"
    for i in range(2):
        save_image(good / f"a{i}.png", galaxy_rgb(48, seed=i))
    _, _, _, run = ingest_to(good, tmp_path / "run")
    before = {n: (run.path / n).read_bytes() for n in ("cube.npy", "catalogue.parquet", "ingest_summary.json")}
    (run.path / "models").mkdir()
    return run, before


def test_a_failed_rerun_leaves_the_earlier_ingest_as_it_was(tmp_path):
    """A re-ingest refused after decoding (nothing usable, --strict) deleted the earlier cube,
    catalogue and summary first, leaving the run's models beside no cube: all or nothing now."""
    run, before = _an_earlier_ingest(tmp_path)
    bad = tmp_path / "bad"
    save_image(bad / "b.png", np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(Exception, match="no usable galaxy"):
        ingest_to(bad, tmp_path / "run")
    flagged = tmp_path / "flagged"
    save_image(flagged / "c.png", galaxy_rgb(48, seed=5))
    save_image(flagged / "d.png", np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(UserError, match="strict"):
        ingest_to(flagged, tmp_path / "run", strict=True)
    assert {n: (run.path / n).read_bytes() for n in before} == before
    assert not (run.path / "cube.npy.partial").exists() and not list(run.path.glob(".*.partial"))
    assert (run.path / "models").is_dir() and not (run.path / "superseded").exists()


def test_a_full_disk_at_the_last_writes_of_a_rerun_keeps_the_earlier_ingest(tmp_path, monkeypatch):
    """The earlier outputs were removed before the catalogue was written: a full disk there left
    the run's models beside no cube. They go only once everything new is written and synced."""
    import errno

    import pandas as pd

    run, before = _an_earlier_ingest(tmp_path)
    other = tmp_path / "other"
    save_image(other / "b.png", galaxy_rgb(48, seed=9))

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(UserError, match="No space left"):
        ingest_to(other, tmp_path / "run")
    assert {n: (run.path / n).read_bytes() for n in before} == before
    assert (run.path / "models").is_dir() and not (run.path / "superseded").exists()
    assert not (run.path / "cube.npy.partial").exists() and not list(run.path.glob(".*.partial"))


def test_cube_writer(tmp_path):
    path = tmp_path / "cube.npy"
    w = CubeWriter(path, max_rows=1000, row_shape=(2, 4, 4))
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 2, 4, 4)).astype(np.float32)
    assert w.append_rows(rows[:3]) == 0 and w.append(rows[3]) == 3 and w.append_rows(rows[4:]) == 4
    assert w.append_rows(rows[:0]) == 5
    assert not path.exists()
    w.finish()
    assert not path.exists()  # finished but not published
    w.publish()
    got = np.load(path, mmap_mode="r")
    assert got.shape == (5, 2, 4, 4)
    np.testing.assert_array_equal(got, rows)
    with pytest.raises(ValueError):
        CubeWriter(tmp_path / "c2.npy", 3, (1, 2, 2)).append(np.zeros((1, 3, 3), np.float32))
    w2 = CubeWriter(tmp_path / "c3.npy", 3, (1, 2, 2))
    w2.append(np.zeros((1, 2, 2), np.float32))
    w2.abort()
    assert not list(tmp_path.glob("c3*"))


def test_cube_writer_stores_float16_rows_in_half_the_bytes(tmp_path):
    rows = np.random.default_rng(1).normal(size=(7, 3, 8, 8)).astype(np.float32)
    sizes = {}
    for dtype in ("float32", "float16"):
        w = CubeWriter(tmp_path / f"{dtype}.npy", max_rows=100, row_shape=(3, 8, 8), dtype=dtype)
        w.append_rows(rows[:4])
        w.append_rows(rows[4:])
        w.publish()
        got = np.load(tmp_path / f"{dtype}.npy")
        assert got.dtype == np.dtype(dtype) and got.shape == rows.shape
        np.testing.assert_array_equal(got, rows.astype(dtype))  # the header was rewritten for 7 rows
        sizes[dtype] = (tmp_path / f"{dtype}.npy").stat().st_size
    assert sizes["float16"] - 128 == (sizes["float32"] - 128) // 2  # 128-byte headers (.npy, padded)
    with pytest.raises(ValueError, match="cube dtype"):
        CubeWriter(tmp_path / "c.npy", 3, (1, 2, 2), dtype="uint8")


def test_pool_keeps_only_a_few_chunks_in_flight(tmp_path, monkeypatch):
    """Streaming: however many galaxies, at most 2 x workers chunks are submitted and not yet consumed."""
    data = many_jpegs(tmp_path / "data", 120, size=32)
    state = {"outstanding": 0, "peak": 0}

    class Counting(ingest_workers.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            state["outstanding"] += 1
            state["peak"] = max(state["peak"], state["outstanding"])
            fut = super().submit(*args, **kwargs)
            original = fut.result

            def result(*a, **k):
                state["outstanding"] -= 1
                return original(*a, **k)

            fut.result = result
            return fut

    monkeypatch.setattr(ingest_workers, "ProcessPoolExecutor", Counting)
    summary, _, cube, _ = ingest_to(data, tmp_path / "run", ingest__workers=2, ingest__chunk_size=4)
    assert cube.shape[0] == 120 and summary["n_in_cube"] == 120
    assert state["peak"] == 4  # 30 chunks, never more than 2 x 2 in flight


def test_workers_give_the_same_cube_as_one_process(tmp_path):
    data = many_jpegs(tmp_path / "data", 40, size=64)
    _, cat1, one, _ = ingest_to(data, tmp_path / "r1", ingest__workers=1)
    _, cat2, two, _ = ingest_to(data, tmp_path / "r2", ingest__workers=2, ingest__chunk_size=3)
    np.testing.assert_array_equal(one, two)
    assert list(cat1["id"]) == list(cat2["id"])


_ORIGINAL_CHUNK = ingest_workers._process_chunk


def _dying_chunk(start, items, spec):
    """A worker that dies mid-ingest, as on a decoder crash or the OOM killer (module level: picklable)."""
    if start >= 40:
        os.kill(os.getpid(), signal.SIGKILL)
    return _ORIGINAL_CHUNK(start, items, spec)


def test_a_dying_worker_is_one_clear_error_and_nothing_is_written(tmp_path, monkeypatch):
    data = many_jpegs(tmp_path / "data", 120, size=48)
    monkeypatch.setattr(ingest_workers, "_process_chunk", _dying_chunk)
    with pytest.raises(UserError, match="worker process died"):
        ingest_to(data, tmp_path / "run", ingest__workers=2, ingest__chunk_size=8)
    assert not list((tmp_path / "run").iterdir())


def _two_surveys(tmp_path):
    """Two folders of three galaxies each, x0..x2 and y0..y2."""
    first, second = tmp_path / "first", tmp_path / "second"
    for i in range(3):
        save_image(first / f"x{i}.png", galaxy_rgb(48, seed=i))
        save_image(second / f"y{i}.png", galaxy_rgb(48, seed=10 + i))
    return first, second


def _files(run):
    """Every file of a run but its log, by path, with its bytes."""
    return {p.relative_to(run.path): p.read_bytes() for p in run.path.rglob("*") if p.is_file() and p.name != "log.txt"}


def test_an_extended_survey_keeps_the_users_anomaly_tags(tmp_path):
    """The earlier galaxies all in the new cube (a few added): the results go (they describe the
    earlier cube), the tags stay, still naming the same galaxies; one galaxy left out, they go too
    (they were set aside whole even when every tagged galaxy was still there)."""
    first, _ = _two_surveys(tmp_path)
    _, _, _, run = ingest_to(first, tmp_path / "run")
    (run.path / "report.html").write_text("about x0..x2")
    (run.path / "anomaly_tags.csv").write_text("id,tag\nx1,interesting\n")
    save_image(first / "x3.png", galaxy_rgb(48, seed=3))  # the survey extended
    ingest_to(first, tmp_path / "run")
    assert not (run.path / "report.html").exists() and len(list((run.path / "superseded").iterdir())) == 1
    assert (run.path / "anomaly_tags.csv").read_text() == "id,tag\nx1,interesting\n"
    (run.path / "report.html").write_text("about x0..x3")
    (first / "x0.png").unlink()  # one earlier galaxy gone: the tags are set aside with the results
    ingest_to(first, tmp_path / "run")
    assert not (run.path / "anomaly_tags.csv").exists()
    assert any((p / "anomaly_tags.csv").is_file() for p in (run.path / "superseded").iterdir())


def test_an_ingest_of_other_galaxies_sets_the_earlier_results_aside(tmp_path):
    """Every result derived from the earlier cube (model, embeddings, maps, clusterings,
    comparisons, report) leaves the run when an ingest puts other galaxies in it, even as many
    (before, ms.Run served the earlier survey's embedding as this one's, row for row); moved to
    superseded/<time>/, not deleted. The same galaxies again keep them."""
    import morphospace as ms
    from morphospace.run import write_npy

    first, second = _two_surveys(tmp_path)
    _, _, _, run = ingest_to(first, tmp_path / "run")
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    (run.path / "models" / "vade").mkdir(parents=True)
    (run.path / "models" / "vade" / "model.pt").write_bytes(b"trained on x0..x2")
    (run.path / "report.html").write_text("about x0..x2")
    (run.path / "my_galaxies").mkdir()  # the user's own folder stays
    (run.path / "anomaly_tags.csv").write_text("id,tag\nx1,interesting\n")  # the user's, about x1
    ingest_to(first, tmp_path / "run")  # the same galaxies: nothing moves
    assert "form" in ms.Run(run.path).embeddings and not (run.path / "superseded").exists()
    # the same galaxies made otherwise (another size): the model trained on the earlier cube no longer
    # fits the new one (embed refused it, the report showed the earlier embedding): set aside too
    ingest_to(first, tmp_path / "run", preprocess__size=32)
    assert len(ms.Run(run.path).embeddings) == 0 and len(list((run.path / "superseded").iterdir())) == 1
    assert (run.path / "anomaly_tags.csv").is_file()  # still about these galaxies
    shutil.rmtree(run.path / "superseded")
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    (run.path / "models" / "vade").mkdir(parents=True)
    (run.path / "models" / "vade" / "model.pt").write_bytes(b"trained on x0..x2")
    (run.path / "report.html").write_text("about x0..x2")
    third = tmp_path / "third"  # the same ids (x0..x2) in another folder: another survey (synthetic
    for i in range(3):           # surveys all name their galaxies synth_000000, ...)
        save_image(third / f"x{i}.png", galaxy_rgb(48, seed=20 + i))
    ingest_to(third, tmp_path / "run")
    assert len(ms.Run(run.path).embeddings) == 0 and len(list((run.path / "superseded").iterdir())) == 1
    # the tags named the earlier x1, not this survey's: set aside with the results (they were applied
    # to the new galaxy of the same id)
    assert not (run.path / "anomaly_tags.csv").exists()
    assert (next((run.path / "superseded").iterdir()) / "anomaly_tags.csv").read_text() == "id,tag\nx1,interesting\n"
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    ingest_to(second, tmp_path / "run")
    assert len(ms.Run(run.path).embeddings) == 0
    assert not any((run.path / n).exists() for n in ("embeddings", "models", "report.html"))
    moved = min((run.path / "superseded").iterdir())  # the first set aside: the survey of x0..x2
    assert (moved / "models" / "vade" / "model.pt").read_bytes() == b"trained on x0..x2"
    assert np.load(moved / "embeddings" / "form.npy").shape == (3, 4) and (run.path / "my_galaxies").is_dir()
    assert not (run.path / ".superseding").exists()  # published: nothing left for a next ingest to take back
    # a trained model alone (ingest, train, nothing else yet) is set aside too: it stayed, and `embed`
    # then coded the new galaxies with a model of the earlier ones
    shutil.rmtree(run.path / "superseded")
    (run.path / "models" / "vade").mkdir(parents=True)
    (run.path / "models" / "vade" / "model.pt").write_bytes(b"trained on the second survey")
    ingest_to(first, tmp_path / "run")
    assert not (run.path / "models").exists()
    assert (next((run.path / "superseded").iterdir()) / "models" / "vade" / "model.pt").is_file()


def test_the_galaxies_are_told_by_their_files_not_by_the_path_as_typed(tmp_path, monkeypatch):
    """The catalogue's sources were the paths as typed: `ingest synth` from another folder (another
    survey, the same relative paths and ids) kept the earlier survey's model and embeddings for the
    new galaxies, and the same survey by its absolute path set everything aside."""
    import morphospace as ms
    from morphospace.run import write_npy

    for folder, seed in (("a", 0), ("b", 10)):
        for i in range(3):
            save_image(tmp_path / folder / "survey" / f"x{i}.png", galaxy_rgb(48, seed=seed + i))
    monkeypatch.chdir(tmp_path / "a")
    _, _, _, run = ingest_to(Path("survey"), tmp_path / "run")
    assert ms.Run(run.path).catalogue["source"].iloc[0] == str(tmp_path / "a" / "survey" / "x0.png")
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    ingest_to(tmp_path / "a" / "survey", tmp_path / "run")  # the same files by another path: kept
    assert "form" in ms.Run(run.path).embeddings and not (run.path / "superseded").exists()
    (tmp_path / "link").symlink_to(tmp_path / "a" / "survey")
    ingest_to(tmp_path / "link", tmp_path / "run")  # through a link: the same files, kept
    assert "form" in ms.Run(run.path).embeddings and not (run.path / "superseded").exists()
    import pandas as pd  # a catalogue an earlier version wrote: its sources as typed, relative to where it ran

    cat = pd.read_parquet(run.catalogue)
    cat["source"] = [os.path.relpath(p) for p in cat["source"]]
    cat.to_parquet(run.catalogue)
    ingest_to(tmp_path / "a" / "survey", tmp_path / "run")
    assert "form" in ms.Run(run.path).embeddings and not (run.path / "superseded").exists()
    monkeypatch.chdir(tmp_path / "b")
    ingest_to(Path("survey"), tmp_path / "run")  # the same path as typed, other galaxies: set aside
    assert len(ms.Run(run.path).embeddings) == 0 and len(list((run.path / "superseded").iterdir())) == 1


def test_a_re_ingest_that_fails_while_publishing_leaves_the_run_as_it_was(tmp_path, monkeypatch, caplog):
    """The earlier cube, catalogue and summary were deleted, and the results set aside, before the
    new cube was renamed into place: a cube that could not be replaced (an immutable file, a
    permission) left a run with no cube or catalogue, its results in superseded/. They are now
    set aside under hidden names and put back, with the results, where publishing fails; one left
    aside by an ingest killed outright is put back by the next."""
    import morphospace as ms
    from morphospace.data.ingest.cube import CubeWriter
    from morphospace.run import write_npy

    first, second = _two_surveys(tmp_path)
    _, _, _, run = ingest_to(first, tmp_path / "run")
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    before = _files(run)

    def refused(self):
        raise PermissionError(1, "Operation not permitted", str(self.path))

    monkeypatch.setattr(CubeWriter, "publish", refused)
    with pytest.raises(Exception, match="Operation not permitted"):
        ingest_to(second, tmp_path / "run")
    after = _files(run)
    assert after == before and not (run.path / "superseded").exists()
    assert list(ms.Run(run.path).catalogue["id"]) == ["x0", "x1", "x2"] and "form" in ms.Run(run.path).embeddings
    monkeypatch.undo()
    # a move of the results failing half way (or Ctrl-C there): what was moved goes back, and no
    # line says they were moved
    from pathlib import Path

    real_rename = Path.rename

    def stopped(self, target):
        if self.name == "embeddings":
            raise KeyboardInterrupt
        return real_rename(self, target)

    (run.path / "report.html").write_text("about x0..x2")  # moved before embeddings/
    before[Path("report.html")] = b"about x0..x2"
    monkeypatch.setattr(Path, "rename", stopped)
    with caplog.at_level("INFO", logger="morphospace"), pytest.raises(KeyboardInterrupt):
        ingest_to(second, tmp_path / "run")
    monkeypatch.undo()
    after = _files(run)
    assert after == before and not (run.path / "superseded").exists()
    assert "moved to superseded" not in caplog.text
    # killed outright after the new cube was renamed in, before the catalogue: the next ingest, even
    # one that fails at once, puts the earlier three back (a new cube never pairs with the old catalogue)
    for name in ("catalogue.parquet", "ingest_summary.json", "cube.npy"):
        (run.path / name).rename(run.path / f".{name}.earlier")
    (run.path / "cube.npy").write_bytes(b"the new cube")
    with pytest.raises(Exception):
        ingest_to(tmp_path / "no such survey", tmp_path / "run")
    after = _files(run)
    assert after == before
    # killed outright after the results were set aside, before the new outputs: they come back too
    for name in ("catalogue.parquet", "ingest_summary.json", "cube.npy"):
        (run.path / name).rename(run.path / f".{name}.earlier")
    (run.path / "superseded" / "t" / "embeddings").parent.mkdir(parents=True)
    (run.path / "embeddings").rename(run.path / "superseded" / "t" / "embeddings")
    (run.path / ".superseding").write_text("superseded/t")
    with pytest.raises(Exception):
        ingest_to(tmp_path / "no such survey", tmp_path / "run")
    assert _files(run) == before and not (run.path / "superseded").exists()
    assert not (run.path / ".superseding").exists()
    (run.path / "cube.npy").rename(run.path / ".cube.npy.earlier")  # killed before the cube was renamed
    ingest_to(first, tmp_path / "run")  # the same galaxies: the results stay, the cube is back
    assert "form" in ms.Run(run.path).embeddings and not (run.path / ".cube.npy.earlier").exists()


def test_results_set_aside_keep_their_links_and_a_failed_move_publishes_no_cube(tmp_path, monkeypatch):
    """A models/ folder linked to a larger disk still points there once set aside (a relative
    link moved two folders deeper broke); a move that fails stops the ingest before the new cube
    is published, so the earlier results are never served beside it, and the next ingest moves them."""
    import os
    from pathlib import Path

    import morphospace as ms
    from morphospace.run import write_npy

    first, second = _two_surveys(tmp_path)
    _, _, _, run = ingest_to(first, tmp_path / "run")
    big = tmp_path / "big" / "models"
    big.mkdir(parents=True)
    (big / "model.pt").write_bytes(b"trained on x0..x2")
    os.symlink("../big/models", run.path / "models")  # relative, as `ln -s` makes it
    (run.path / "embeddings").mkdir()
    os.symlink("../../big/models/model.pt", run.path / "embeddings" / "link.pt")  # a relative link inside
    (run.path / "reductions").mkdir()
    os.symlink("../embeddings/link.pt", run.path / "reductions" / "among.pt")  # between two moved folders
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    real_rename = Path.rename

    def refuse(self, target):
        if self.name == "embeddings":
            raise OSError(18, "Invalid cross-device link")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(Exception, match="Invalid cross-device link"):
        ingest_to(second, tmp_path / "run")
    # the earlier cube stays, with whatever of its results was not moved yet
    assert list(ms.Run(run.path).catalogue["id"]) == ["x0", "x1", "x2"] and (run.path / "cube.npy").is_file()
    monkeypatch.setattr(Path, "rename", real_rename)
    ingest_to(second, tmp_path / "run")
    assert len(ms.Run(run.path).embeddings) == 0 and list(ms.Run(run.path).catalogue["id"]) == ["y0", "y1", "y2"]
    moved = sorted((run.path / "superseded").iterdir())
    assert len(moved) == 1  # the failed ingest moved nothing (embeddings come first) and left no folder
    models = next(m / "models" for m in moved if (m / "models").is_symlink())
    assert (models / "model.pt").read_bytes() == b"trained on x0..x2"
    link = next(m / "embeddings" / "link.pt" for m in moved if (m / "embeddings").is_dir())
    assert link.read_bytes() == b"trained on x0..x2"
    among = next(m / "reductions" / "among.pt" for m in moved if (m / "reductions").is_dir())
    assert os.readlink(among) == "../embeddings/link.pt" and among.read_bytes() == b"trained on x0..x2"


def test_a_fits_survey_ingested_mirrored_before_has_its_results_set_aside(tmp_path):
    """FITS frames are now read top row first; a cube an earlier version made of them was mirrored.
    Its re-ingest sets the results made from the mirrored cube aside; a JPEG survey's keeps them."""
    import json

    from astropy.io import fits

    from morphospace.run import write_npy

    data = tmp_path / "fits"
    data.mkdir()
    for i in range(3):
        fits.PrimaryHDU(galaxy_rgb(48, seed=i).astype(np.float32).mean(axis=2)).writeto(data / f"x{i}.fits")
    _, _, _, run = ingest_to(data, tmp_path / "run")
    summary = json.loads(run.ingest_summary.read_text())
    assert summary["preprocess"]["fits_rows"].startswith("top row first")
    summary["preprocess"].pop("fits_rows")  # as an earlier version wrote it
    run.ingest_summary.write_text(json.dumps(summary))
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    ingest_to(data, tmp_path / "run")
    assert not run.embedding_path("form").exists() and len(list((run.path / "superseded").iterdir())) == 1
    write_npy(run.embedding_path("form"), np.ones((3, 4), np.float32))
    ingest_to(data, tmp_path / "run")  # made the same way now: kept
    assert run.embedding_path("form").is_file()
    jpegs = tmp_path / "jpegs"
    for i in range(3):
        save_image(jpegs / f"x{i}.png", galaxy_rgb(48, seed=i))
    _, _, _, other = ingest_to(jpegs, tmp_path / "other")
    assert "fits_rows" not in json.loads(other.ingest_summary.read_text())["preprocess"]
