"""A set of files in a shared folder replaced as one: every new file staged beside them, the old
set moved aside into a journal folder, the new set moved in, the journal removed.

A rename is atomic, a set of renames is not. Ctrl-C and SIGTERM are held back while the set is
swapped (they act once it is done), and a process killed outright in the middle leaves the
journal, from which the next swap into the folder (:func:`restore_unfinished`) puts the old set
back whole before it starts: a folder never shows half of one set beside half of another.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["replace_file_set", "restore_unfinished", "signals_held"]

_NAMES = ".names"  # inside the journal: the old set's names, written before any of them moves


def _journal(folder: Path, prefix: str) -> Path:
    return folder / f".{prefix}.previous"


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends, then act as they would have. A handler, not a
    signal mask: a signal sent to the process goes to any thread that does not block it (torch's
    among them), and Python acts on it in the main thread all the same."""
    if threading.current_thread() is not threading.main_thread():  # handlers are the main thread's
        yield
        return
    caught: list[int] = []
    before = {}
    try:  # installed inside the try: a handler that raises while they are set still gets them restored
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not None:  # None: a handler not set from Python, left alone
                before[signum] = signal.signal(signum, lambda got, _frame: caught.append(got))
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        # each signal that came, SIGTERM first: a SIGTERM after a Ctrl-C is not lost to it
        for signum in sorted(set(caught), key=lambda s: s != signal.SIGTERM):
            signal.raise_signal(signum)


def restore_unfinished(folder: Path, prefix: str, is_member: Callable[[str], bool]) -> bool:
    """Put back the set a swap killed half way moved aside (its journal in ``folder``), and remove the
    new set's files it had moved in. Returns whether there was one. Call with the folder's writers
    taking turns."""
    journal = _journal(folder, prefix)
    names_file = journal / _NAMES
    if not journal.is_dir():
        return False
    if not names_file.is_file():  # killed before a single old file moved: the folder is as it was
        shutil.rmtree(journal, ignore_errors=True)
        return True
    old = set(names_file.read_text().split("\n")) - {""}
    for path in list(folder.iterdir()):  # the new set's files moved in (none unless every old one left)
        if is_member(path.name) and path.name not in old and path.is_file():
            path.unlink()
    for name in old:
        if (journal / name).exists():
            os.replace(journal / name, folder / name)
    shutil.rmtree(journal, ignore_errors=True)
    return True


def replace_file_set(stage: Path, names: list[str], folder: Path, prefix: str,
                     is_member: Callable[[str], bool]) -> list[Path]:
    """Replace the files of ``folder`` for which ``is_member(name)`` holds by ``stage``'s ``names``
    (``stage`` a folder inside ``folder``: renames, no copies). Returns the new paths. Call with the
    folder's writers taking turns (:func:`~morphospace.run.lock.folder_turns`)."""
    restore_unfinished(folder, prefix, is_member)
    journal, done = _journal(folder, prefix), folder / f".{prefix}.replaced"
    shutil.rmtree(done, ignore_errors=True)  # of a swap killed after it was complete
    with signals_held():
        try:
            old = sorted(p.name for p in folder.iterdir() if is_member(p.name) and p.is_file())
            journal.mkdir()
            tmp = journal / f"{_NAMES}.partial"
            tmp.write_text("".join(f"{name}\n" for name in old))
            os.replace(tmp, journal / _NAMES)  # from here on, a kill is undone by the next swap
            for name in old:
                os.replace(folder / name, journal / name)
            paths = []
            for name in names:
                os.replace(stage / name, folder / name)
                paths.append(folder / name)
        except BaseException:  # a full disk, a file another process holds: the old set, as it was
            restore_unfinished(folder, prefix, is_member)
            raise
        os.replace(journal, done)  # the swap is complete: the old set is no longer to be put back
        shutil.rmtree(done, ignore_errors=True)
    return paths
