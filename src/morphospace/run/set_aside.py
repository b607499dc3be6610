"""Results no longer a run's, moved into ``superseded/<UTC time>/``: all of them or, where a move
fails or Ctrl-C comes half way, none (what moved is put back and the error raised).

Moved, not deleted: a trained model or labels filled in stay at hand. A re-ingest of other
galaxies, a new training and a run made a pixel-PCA run each set results aside this way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["move_into", "set_aside"]


def set_aside(run, paths: list[Path], what: str, log) -> Path | None:
    """Move ``paths`` (inside ``run``'s folder) to a new ``superseded/<time>/`` and warn on ``log``
    what moved, ``what`` saying whose results they were. Nothing present: nothing moved, None.
    Returns the folder they went to. The one policy for results no longer a run's: set aside,
    never deleted (an embedding deleted by mistake, or a model replaced, took them with it)."""
    present = list(dict.fromkeys(p for p in paths if p.exists() or p.is_symlink()))
    if not present:
        return None
    dest = run.new_superseded_folder()
    move_into(run.path, present, dest)
    names = [str(p.relative_to(run.path)) for p in present]
    log.warning("%s moved to %s: %s (delete it when you no longer need it)", what, dest.relative_to(run.path),
                ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
    return dest


def move_into(root: Path, paths: list[Path], dest: Path) -> None:
    """Move each of ``paths`` (inside the run folder ``root``) to its place under ``dest``.

    Relative links among them that point outside what moves are made absolute first, so that
    they still point where they did two folders deeper (a ``models/`` folder linked to a larger
    disk, say). On any failure or interrupt what moved goes back, ``dest`` is removed where it is
    left empty, and the exception is raised again.
    """
    moved: list[tuple[Path, Path]] = []
    try:
        for path in paths:
            _absolute_links(path, paths)
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            moved.append((path, target))
    except BaseException:
        for path, target in reversed(moved):
            target.rename(path)
        _remove_if_empty(dest)
        raise


def _remove_if_empty(dest: Path) -> None:
    """``dest`` and its parent (``superseded/``) removed where they hold nothing but empty folders."""
    if dest.is_dir() and not any(p.is_file() or p.is_symlink() for p in dest.rglob("*")):
        shutil.rmtree(dest, ignore_errors=True)
        try:
            dest.parent.rmdir()
        except OSError:  # other results set aside earlier: kept
            pass


def _absolute_links(path: Path, moved: list[Path]) -> None:
    """Make ``path`` (a link) and the links under it absolute where they point outside what is
    ``moved`` with it; links among the moved entries move with them."""
    links = [path] if path.is_symlink() else [Path(root) / name for root, dirs, files in os.walk(path)
                                              for name in dirs + files if (Path(root) / name).is_symlink()]
    for link in links:
        target = os.readlink(link)
        if os.path.isabs(target):
            continue
        where = os.path.normpath(os.path.join(link.parent, target))
        if any(Path(where).is_relative_to(m) and Path(where) != link for m in moved):
            continue
        tmp = link.with_name(f".{link.name}.relink")
        os.symlink(where, tmp)
        os.replace(tmp, link)
