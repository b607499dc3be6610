"""A script that calls morphospace outside ``if __name__ == "__main__":``: the spawned workers of a pool
import the script again. It got 185 lines of three tracebacks and ``BrokenProcessPool`` (each worker
trained again from the top until it tried to start a pool of its own); now the pool's work runs in the
script's own process, with one line saying why, and a worker that re-runs a call anyway leaves quietly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _run_script(tmp_path: Path, body: str, name: str = "script.py") -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)])}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)


def test_where_a_call_comes_from_in_a_script(tmp_path):
    """Top level outside the guard, through a function called there, and through an import made there:
    a worker would run it again. Inside the guard (either way round, or in an ``and``), or under a
    function called there: it would not. Top-level code after the guard runs in a worker again."""
    (tmp_path / "helper.py").write_text("from morphospace.script_guard import unguarded_caller\n"
                                        "AT_IMPORT = unguarded_caller()\n")
    done = _run_script(tmp_path, """
        from morphospace.script_guard import unguarded_caller

        def ask():
            return unguarded_caller()

        import helper
        print("top", unguarded_caller(), ask(), helper.AT_IMPORT)
        if __name__ == "__main__":
            print("guard", unguarded_caller(), ask())
        if "__main__" == __name__ and True:
            print("reversed", unguarded_caller())
        print("after", unguarded_caller())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["top True True True", "guard False False", "reversed False", "after True"]


def test_no_script_to_run_again_is_no_unguarded_call():
    """``python -c``, a package's ``__main__`` (``python -m morphospace``): spawn runs nothing of them again."""
    code = "from morphospace.script_guard import unguarded_caller; print(unguarded_caller())"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.strip() == "False", done.stderr
    from morphospace.script_guard import _rerun_by_spawn

    class Module:
        pass

    pkg_main, script, ipython = Module(), Module(), Module()
    pkg_main.__spec__ = type("Spec", (), {"name": "morphospace.__main__"})()
    script.__spec__, script.__file__ = None, "/somewhere/analyse.py"
    ipython.__spec__, ipython.__file__ = None, "/usr/bin/ipython"
    assert not _rerun_by_spawn(pkg_main) and _rerun_by_spawn(script) and not _rerun_by_spawn(ipython)


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_s_pool_works_with_and_without_the_guard(tmp_path, guarded):
    """The same chunks, the same results; outside the guard in the script's own process (one line says
    so), under it in two worker processes."""
    call = "print(work())" if not guarded else "if __name__ == '__main__':\n    print(work())"
    done = _run_script(tmp_path, textwrap.dedent("""
        import logging, os
        from morphospace.image.pool import map_chunks
        from fixtures import chunk_pid

        logging.basicConfig(level=logging.WARNING, format="%(message)s")

        def work():
            out = map_chunks(chunk_pid, 5, chunk=1, workers=2)
            return [s for s, _ in out], len({p for _, p in out} - {os.getpid()})
    """) + call + "\n")
    assert done.returncode == 0, done.stderr
    starts, worker_pids = eval(done.stdout.strip().splitlines()[-1])
    assert starts == [0, 1, 2, 3, 4]
    warned = [line for line in done.stderr.splitlines() if "runs in this process only" in line]
    if guarded:
        assert worker_pids >= 1 and not warned
    else:
        assert worker_pids == 0 and len(warned) == 1 and 'if __name__ == "__main__":' in warned[0]


def test_an_ingest_outside_the_guard_keeps_later_pools_in_the_script_s_process(tmp_path):
    """``ms.ingest`` at the top level, the pool's work under the guard: a spawned worker would ingest the run
    again (it now leaves instead, and the pool broke); the pool's work runs in the script's own process."""
    done = _run_script(tmp_path, """
        import logging, os
        from pathlib import Path
        import morphospace as ms
        from morphospace.image.pool import map_chunks
        from fixtures import chunk_pid, tiny_folder_survey

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        run = ms.ingest(tiny_folder_survey(Path("survey")), run="runs/x")
        if __name__ == "__main__":
            out = map_chunks(chunk_pid, 4, chunk=1, workers=2)
            print(len(run.catalogue), sorted({p for _, p in out} - {os.getpid()}))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "6 []"
    assert sum("runs in this process only" in line for line in done.stderr.splitlines()) == 1


def test_a_worker_importing_the_script_again_leaves_quietly(tmp_path):
    """Where the guard above cannot place a call, a worker reaching a morphospace call while it imports the
    script again ends at once, with no traceback, instead of ingesting or training in the worker."""
    done = _run_script(tmp_path, """
        import multiprocessing as mp
        mp.current_process()._inheriting = True  # what a spawned worker's bootstrapping sets
        import morphospace as ms
        ms.ingest("no-such-survey", run="runs/x")
        print("went on")
    """)
    assert done.returncode == 3 and done.stdout == "" and done.stderr == ""
    assert not (tmp_path / "runs").exists()


def test_a_worker_that_stops_is_one_line():
    """A pool whose worker dies (killed, out of memory, or re-running the script) is a UserError that says
    which, not concurrent.futures' BrokenProcessPool."""
    from fixtures import chunk_dies

    from morphospace.errors import UserError
    from morphospace.image.pool import map_chunks

    with pytest.raises(UserError, match=r"^masking: a worker process stopped .*if __name__ == \"__main__\":"):
        map_chunks(chunk_dies, 4, chunk=1, workers=2, desc="masking")
