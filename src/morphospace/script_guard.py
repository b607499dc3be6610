"""Worker processes and the script that calls morphospace.

Neighbour masking, the nuisance audit and the synthetic survey run on pools of *spawned* processes
(a parent that has loaded torch and its threads cannot deadlock them, as forked ones can). A spawned
process first imports the calling script again, as ``__mp_main__``: every line outside
``if __name__ == "__main__":`` runs once more in each worker. A script that called morphospace at its
top level (an astronomer's first script often does) then had each worker train, ingest or mask
again from the top, until the worker tried to start a pool of its own: 185 lines of three
tracebacks, ending in ``BrokenProcessPool``, and a re-ingest of the run from inside a worker.

Two guards, neither needed in a notebook or on the command line:

- :func:`pool_size`: the process about to start the pool reads where the call came from. When the
  calling script runs it at its top level, outside the ``__main__`` guard (or ran an ``ms.ingest`` or
  a ``VaDE.fit`` there before), the work runs in this process (one line says why, and how to use
  every core): slower, but it works;
- :func:`leave_a_rerun`: a spawned worker that reaches a call that writes or computes at length
  (``ms.ingest``, ``VaDE.fit``, ``import_astrovader``, the synthetic survey, a pool's work) while it
  imports the script again leaves at once, quietly, and the pool's owner says in one line what
  happened (where :func:`pool_size` could not place a call: a thread's, or a script whose source
  it cannot read). Reads (``ms.Run``, a catalogue) stay allowed there.
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache

log = logging.getLogger("morphospace")

__all__ = ["in_a_rerun", "leave_a_rerun", "unguarded_caller", "pool_size", "RERUN_HINT"]

RERUN_HINT = ("in a script, put the morphospace calls under `if __name__ == \"__main__\":` (each worker "
              "process imports the script again)")


def in_a_rerun() -> bool:
    """True in a spawned worker while it imports the calling script again (multiprocessing's own flag
    for that phase, the one its "bootstrapping phase" error reads)."""
    mp = sys.modules.get("multiprocessing")  # not imported: this is no worker of a pool
    return mp is not None and bool(getattr(mp.current_process(), "_inheriting", False))


_UNGUARDED_WORK = False  # a call that writes or computes at length came from the script's unguarded top level


def leave_a_rerun() -> None:
    """End this process quietly if it is a spawned worker importing the calling script again: the
    script's morphospace calls must run in the script's own process, not once more in each worker.
    In the script's own process, note whether the call comes from outside the ``__main__`` guard: a
    worker spawned later would run it again, so :func:`pool_size` keeps later pools' work here."""
    global _UNGUARDED_WORK
    if in_a_rerun():
        raise SystemExit(3)
    if not _UNGUARDED_WORK and unguarded_caller():
        _UNGUARDED_WORK = True


def _is_main_guard(test) -> bool:
    """``__name__ == "__main__"`` (either way round), alone or in an ``and``."""
    import ast

    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_is_main_guard(v) for v in test.values)
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


@lru_cache(maxsize=8)
def _guarded_lines(path: str) -> tuple[tuple[int, int], ...] | None:
    """The line ranges of a script's top-level ``if __name__ == "__main__":`` bodies; None when its
    source cannot be read or parsed."""
    import ast

    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    return tuple((node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno)
                 for node in tree.body if isinstance(node, ast.If) and _is_main_guard(node.test))


def _rerun_by_spawn(main) -> bool:
    """Whether a spawned worker runs the ``__main__`` module again: multiprocessing's own rule
    (``spawn.get_preparation_data`` and ``prepare``), which skips a package's ``__main__.py``
    (``python -m morphospace``) and IPython, and has nothing to run without a file."""
    import os

    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return not (name == "__main__" or name.endswith(".__main__"))
    path = getattr(main, "__file__", None)
    return bool(path) and os.path.splitext(os.path.basename(path))[0] not in ("__main__", "ipython")


def unguarded_caller() -> bool:
    """True when this call comes from the top level of the calling script outside its
    ``if __name__ == "__main__":`` block (directly, or through functions or imports made there) and a
    spawned worker would run that script again. False in a notebook, a REPL, ``python -c``,
    ``python -m morphospace``, the command line, and wherever the script's source cannot be read."""
    main = sys.modules.get("__main__")
    if main is None or not _rerun_by_spawn(main):
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            guarded = _guarded_lines(str(main.__file__))
            if guarded is None:
                return False
            return not any(lo <= frame.f_lineno <= hi for lo, hi in guarded)
        frame = frame.f_back
    return False  # not under the script's top level (a thread, a callback): nothing to run again


def pool_size(workers: int, what: str) -> int:
    """The processes a pool of spawned workers for ``what`` may use: ``workers``, or 1 (this process)
    when the calling script runs this, or ran an earlier call that writes or computes at length
    (:func:`leave_a_rerun`), at its top level outside the ``__main__`` guard (one line says so)."""
    if workers > 1 and (_UNGUARDED_WORK or unguarded_caller()):
        log.warning("%s runs in this process only, not in %d: the calling script calls morphospace outside "
                    "`if __name__ == \"__main__\":`, and each worker process would run the script again; "
                    "put the calls under that guard to use them", what, workers)
        return 1
    return workers
