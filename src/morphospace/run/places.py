"""Where a new run may go: not inside another run's stage folders, which that run's next stage
rewrites (`train` clears ``models/``; a run made in ``RUN/models/vade`` was deleted without a word).
One check for the command line and the notebook."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .rundir import RUN_FILES, RUN_FOLDERS

__all__ = ["check_not_a_folder_of_results", "check_run_place", "is_run", "run_owning"]

# what makes a folder with a config.toml a run's (its cube and catalogue, or a model imported into it)
RUN_MARKS = ("catalogue.parquet", "cube.npy", "models/vade/imported.json")


def check_run_place(path: str | Path, what: str = "--out") -> None:
    """A one-line :class:`UserError` where ``path`` is empty or lies in another run's stage folders
    (``models/``, ``figures/``...); a folder of the user's own inside a run, or a project folder
    that merely holds a ``config.toml`` and a ``models/``, is theirs."""
    if not str(path).strip():
        raise UserError(f"{what} must name a folder, got an empty path")
    here = Path(path).resolve()
    if here == Path(here.anchor) or here == Path.home().resolve():
        # a run's files and folders (config.toml, cube.npy, figures/, models/...) among the system's or
        # the home folder's own, which a later ingest would set aside as an earlier run's
        raise UserError(f"{what} {path} is {'the file system root' if here == Path(here.anchor) else 'your home folder'}"
                        ": choose a folder of its own inside it")
    for above in here.parents:
        folder = here.relative_to(above).parts[0]
        if folder in RUN_FOLDERS and is_run(above):
            raise UserError(f"{what} {path} is inside the folder {folder}/ of the run {above}, which its stages "
                            f"rewrite: choose a folder outside it")


def check_not_a_folder_of_results(path: str | Path, what: str = "--out") -> None:
    """A one-line :class:`UserError` where ``path`` is a folder that is no run (no ``config.toml``)
    yet holds what a run's stages write (``figures/``, ``models/``, ``report.html``...): a first
    ingest there set the user's files aside into ``superseded/`` as "the earlier ingest's" results.
    A folder holding other files only is fine (the run is written beside them)."""
    from ..errors import RunInUse
    from .lock import writer_of

    folder = Path(path)
    if not folder.is_dir() or (folder / "config.toml").is_file():
        return  # new, or a run (one whose first ingest did not finish too)
    holder = writer_of(folder)
    if holder:  # a run being made, before its config.toml: it was called "not a run" holding log.txt
        raise RunInUse(f"run {path} is in use by {holder}: wait for it to finish (one morphospace process "
                       f"writes a run at a time)")
    clash = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.name in RUN_FOLDERS | RUN_FILES)
    if clash:
        more = ", ..." if len(clash) > 4 else ""
        raise UserError(f"{what} {path} is not a run, but holds {', '.join(clash[:4])}{more}, which a run's stages "
                        f"write and would set aside: choose a new or empty folder for the run")


def is_run(folder: str | Path) -> bool:
    """Whether ``folder`` is a run's root (a ``config.toml`` beside its cube, catalogue or imported model)."""
    folder = Path(folder)
    return (folder / "config.toml").is_file() and any((folder / name).exists() for name in RUN_MARKS)


def run_owning(path: str | Path, also: str | Path | None = None) -> Path | None:
    """The run (its root) whose own file ``path`` is or would be: one of the files it keeps at its top
    level (``RUN_FILES``), a hidden file there (its lock, a write under way), or anything in its stage
    folders (``RUN_FOLDERS``); None for any other path, a folder of the user's own inside a run
    included. Links are followed: a link into a run is the run's file. ``also``: a folder taken for a
    run whatever it holds (the run at hand, whose ``config.toml`` may be missing)."""
    target = Path(path).resolve()
    extra = Path(also).resolve() if also is not None else None
    for above in target.parents:
        if above != extra and not is_run(above):
            continue
        parts = target.relative_to(above).parts
        if (len(parts) == 1 and (parts[0] in RUN_FILES or parts[0].startswith("."))) or \
                (len(parts) > 1 and parts[0] in RUN_FOLDERS):
            return above
    return None
