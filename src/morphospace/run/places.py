"""Where a new run may go: not inside another run's stage folders, which that run's next stage
rewrites (`train` clears ``models/``; a run made in ``RUN/models/vade`` was deleted without a word).
One check for the command line and the notebook."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .rundir import RUN_FOLDERS

__all__ = ["check_run_place", "is_run"]

# what makes a folder with a config.toml a run's (its cube and catalogue, or a model imported into it)
RUN_MARKS = ("catalogue.parquet", "cube.npy", "models/vade/imported.json")


def check_run_place(path: str | Path, what: str = "--out") -> None:
    """A one-line :class:`UserError` where ``path`` is empty or lies in another run's stage folders
    (``models/``, ``figures/``...); a folder of the user's own inside a run, or a project folder
    that merely holds a ``config.toml`` and a ``models/``, is theirs."""
    if not str(path).strip():
        raise UserError(f"{what} must name a folder, got an empty path")
    here = Path(path).resolve()
    for above in here.parents:
        folder = here.relative_to(above).parts[0]
        if folder in RUN_FOLDERS and is_run(above):
            raise UserError(f"{what} {path} is inside the folder {folder}/ of the run {above}, which its stages "
                            f"rewrite: choose a folder outside it")


def is_run(folder: str | Path) -> bool:
    """Whether ``folder`` is a run's root (a ``config.toml`` beside its cube, catalogue or imported model)."""
    folder = Path(folder)
    return (folder / "config.toml").is_file() and any((folder / name).exists() for name in RUN_MARKS)
