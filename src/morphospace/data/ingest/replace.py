"""What a re-ingest replaces: the earlier cube's outputs and the results derived from it.

An ingest into a run that holds results keeps them where the new cube holds the same galaxies
made the same way (:data:`RECIPE`), and sets them aside in ``superseded/<UTC time>/`` where it
holds others or the same made otherwise. The earlier cube, catalogue and summary are set aside
under hidden names just before the new ones are renamed in, and put back, with the results,
where the renaming fails; what a kill left aside, the next ingest repairs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ...run import RunDir
from ...run.rundir import DERIVED, IMPORTED_MARKER, TAGS_FILE
from ...run.set_aside import move_into
from .cube import partial_path

log = logging.getLogger("morphospace")

__all__ = ["RECIPE", "SUPERSEDING", "earlier_cube", "earlier_galaxies_kept", "galaxies_of", "put_back", "recipe_of", "recover_left_aside",
           "restore_earlier_outputs", "results_present", "same_galaxies", "set_aside_results", "set_earlier_outputs_aside", "take_back_results"]

# what a cube's pixels are made with, beside its galaxies: results derived from a cube made
# otherwise (a model trained at 32 px, an embedding of grey images) do not describe the new one
RECIPE = ("crop", "framing", "galaxy_r90s", "size", "channels", "normalise", "softening", "resample", "fits_rows")
SUPERSEDING = ".superseding"  # names the folder an ingest sets results aside in until it publishes


def results_present(run: RunDir) -> list[Path]:
    """The results a run holds (:data:`DERIVED`): what an ingest keeps or sets aside."""
    return [run.path / name for name in DERIVED if os.path.lexists(run.path / name)]


def recipe_of(preprocess: dict) -> dict:
    """The :data:`RECIPE` entries of an ingest summary's ``preprocess`` section."""
    return {key: preprocess.get(key) for key in RECIPE}


def earlier_cube(run: RunDir) -> tuple[list, dict | None] | None:
    """The galaxies of the earlier cube and its recipe (:data:`RECIPE`; None where its summary does
    not say) where the run holds results derived from it (None otherwise, or unreadable); and
    partial files of a killed ingest removed. The earlier outputs themselves stay until the new ones
    are ready (:func:`set_earlier_outputs_aside`): a re-ingest that fails (nothing usable, ``--strict``,
    a full disk) leaves the run as it was."""
    earlier = None
    if results_present(run):
        try:
            galaxies = galaxies_of(run.cube_catalogue())
        except Exception:  # noqa: BLE001 - a damaged earlier run: its results are set aside below
            galaxies = None
        try:
            recipe = recipe_of(json.loads(run.ingest_summary.read_text())["preprocess"])
        except Exception:  # noqa: BLE001 - no summary, or one that does not say: the galaxies decide
            recipe = None
        earlier = None if galaxies is None else (galaxies, recipe)
    partial_path(run.cube).unlink(missing_ok=True)
    for name in (run.catalogue.name, run.ingest_summary.name):
        for stale in run.path.glob(f".{name}.*.partial"):
            stale.unlink(missing_ok=True)
    return earlier


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.earlier")


def _outputs(run: RunDir) -> tuple[Path, Path, Path]:
    """What an ingest publishes, in the order it sets the earlier ones aside (the catalogue first)."""
    return run.catalogue, run.ingest_summary, run.cube


def recover_left_aside(run: RunDir) -> None:
    """Earlier outputs an ingest killed outright left aside (SIGKILL between setting them aside and
    renaming the new ones in) put back, or removed: the catalogue is renamed last, so where it is in
    place the new outputs all are and the earlier ones go; where it is not, the earlier three come
    back over whatever of the new ones was renamed in (a new cube must not pair with an old catalogue)."""
    marker = run.path / SUPERSEDING
    if run.catalogue.exists():  # published: what was set aside stays set aside
        for p in _outputs(run):
            _aside(p).unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
        return
    left = [(p, _aside(p)) for p in _outputs(run) if _aside(p).exists()]
    if left:
        restore_earlier_outputs(run, left)
    if marker.is_file():  # the results the killed ingest had set aside go back with them
        try:
            dest = run.path / marker.read_text().strip()
        except OSError:
            dest = None
        take_back_results(run, dest if dest is not None and dest.is_dir() else None)  # removes the marker


def set_earlier_outputs_aside(run: RunDir) -> list[tuple[Path, Path]]:
    """The earlier ingest's cube, catalogue and summary renamed to hidden names just before the new
    ones are renamed into place (an old cube or catalogue must never pair with a new one), and put
    back by :func:`put_back` if the publishing fails: they were deleted, and a failure then (a cube
    that cannot be replaced) left the run with no cube or catalogue at all. Raises OSError, having
    put back what it moved, where one cannot be moved."""
    moved: list[tuple[Path, Path]] = []
    try:
        for path in _outputs(run):
            if path.exists():
                os.replace(path, _aside(path))
                moved.append((path, _aside(path)))
    except BaseException:
        put_back(moved)
        raise
    return moved


def restore_earlier_outputs(run: RunDir, moved: list[tuple[Path, Path]]) -> None:
    """The earlier outputs set aside (``moved``: place, hidden name) put back, and the new ones that
    have no earlier one to give way to removed: a new cube never pairs with an old catalogue. Never
    raises: what stopped the ingest is the error to say."""
    for path in _outputs(run):
        if not any(p == path for p, _ in moved):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
    put_back(moved)


def put_back(moved: list[tuple[Path, Path]]) -> None:
    for path, aside in reversed(moved):
        try:
            os.replace(aside, path)
        except Exception as exc:  # noqa: BLE001 - said: the earlier output is still there, under its hidden name
            log.warning("could not put %s back (%s): it is %s", path.name, exc, aside)


def take_back_results(run: RunDir, dest: Path | None) -> None:
    """Results an ingest that then failed set aside in ``dest``, moved back where they were (never
    raising: the failure that calls for it is the one to say)."""
    (run.path / SUPERSEDING).unlink(missing_ok=True)
    if dest is None:
        return
    try:
        _move_back(run, dest)
    except Exception as exc:  # noqa: BLE001 - said, and the ingest's own error goes on
        log.warning("some of the results set aside in %s could not be moved back (%s)", dest, exc)


def _move_back(run: RunDir, dest: Path) -> None:
    """Every entry of ``dest`` moved to its place in the run, where that place is free (a folder whose
    place holds one, as an imported model's, entry by entry); the folder removed once empty."""

    def back(moved: Path) -> bool:  # whether everything under it went home
        home = run.path / moved.relative_to(dest)
        if not os.path.lexists(home):
            home.parent.mkdir(parents=True, exist_ok=True)
            os.replace(moved, home)
            return True
        if moved.is_dir() and not moved.is_symlink() and home.is_dir():  # an imported model's folder
            return all([back(p) for p in sorted(moved.iterdir())])
        return False

    if all([back(p) for p in sorted(dest.iterdir())]):
        shutil.rmtree(dest, ignore_errors=True)
        try:
            dest.parent.rmdir()  # superseded/, where it was the only one
        except OSError:
            pass
    else:
        log.warning("some of the results set aside in %s could not be moved back", dest)


def galaxies_of(cube_catalogue) -> list[tuple[str, str]]:
    """What tells the galaxies of a cube, row by row: each one's id and the file it was read from
    (two synthetic surveys share their ids; another folder is another survey)."""
    sources = cube_catalogue["source"].astype(str).tolist() if "source" in cube_catalogue else [""] * len(cube_catalogue)
    return list(zip(cube_catalogue["id"].astype(str).tolist(), sources))


def same_galaxies(new: list[tuple[str, str]], earlier: list[tuple[str, str]]) -> bool:
    """Whether two cubes hold the same galaxies: the same ids from the same files, a file named by
    its resolved path (the survey through a link, or by the relative path an earlier version wrote,
    read from the folder it was ingested from), so that the same files by another path are not
    taken for other galaxies and their results set aside."""
    if new == earlier:
        return True
    if len(new) != len(earlier) or [i for i, _ in new] != [i for i, _ in earlier]:
        return False
    same = _same_file()
    return all(same(a, b) for (_, a), (_, b) in zip(new, earlier))


def earlier_galaxies_kept(new: list[tuple[str, str]], earlier: list[tuple[str, str]]) -> bool:
    """Whether every galaxy of the earlier cube is in the new one, by id and file (a survey extended):
    what names them by id (the user's anomaly tags) still does."""
    by_id: dict[str, list[str]] = {}
    for gid, source in new:
        by_id.setdefault(gid, []).append(source)
    if any(gid not in by_id for gid, _ in earlier):
        return False
    same = _same_file()
    return all(any(same(source, other) for other in by_id[gid]) for gid, source in earlier)


def _same_file():
    """``same(a, b)``: whether two sources name one file (or one HDF5 row), each folder and HDF5 file
    resolved once (10^6 realpaths took half a minute)."""
    folders: dict[str, str] = {}
    files: dict[str, str] = {}

    def split(source: str) -> tuple[str, str]:
        path, hash_, row = source.rpartition("#")  # an HDF5 row: file#row
        if hash_ and row.isdigit():
            if path not in files:
                files[path] = os.path.realpath(path) if os.path.isfile(path) else ""
            if files[path]:
                return files[path], f"#{row}"
        return source, ""

    def resolved(source: str) -> str:
        path, row = split(source)
        head, tail = os.path.split(path)
        if head not in folders:
            folders[head] = os.path.realpath(head or ".")
        return os.path.join(folders[head], tail) + row

    def same(a: str, b: str) -> bool:  # the folders first; a file that is itself a link, last
        return a == b or resolved(a) == resolved(b) or os.path.realpath(split(a)[0]) + split(a)[1] == \
            os.path.realpath(split(b)[0]) + split(b)[1]

    return same


def set_aside_results(run: RunDir, earlier: tuple | None, ids: list,
                                         recipe: dict) -> tuple[Path, str] | None:
    """Before a new cube of galaxies ``ids`` made with ``recipe`` is published: what the stages derived
    from the earlier cube (models, embeddings, maps, clusterings, classes, the report...) is moved to
    ``superseded/<UTC time>/`` (with the user's anomaly tags where some earlier galaxy is not in the
    new cube: they name galaxies by id, and ids recur; a survey extended keeps them), unless the
    earlier cube held the same galaxies made the same way (a re-run of the same survey keeps them,
    and its stages remake them; the same galaxies at another size or in grey are another cube,
    which a model trained on the earlier one does not fit; an imported model, made from no
    galaxies of the run, stays). Moved, not deleted: a trained model or labels
    filled in are not lost; a link among them is kept pointing where it pointed. Where a move fails
    (or Ctrl-C comes) what was moved goes back, and the error is raised: the new cube is then not
    published. Returns the folder and the line to log once the new cube is published."""
    present = results_present(run)
    imported = run.imported_model()
    if imported is not None:  # made from no galaxies of the run, it stays; what embed wrote beside it goes
        present = ([p for p in present if p.name != "models"]
                   + [p for p in sorted(imported.parent.iterdir()) if p != imported]
                   + [p for p in sorted(imported.iterdir()) if p.name not in ("model.pt", IMPORTED_MARKER)])
    same = earlier is not None and same_galaxies(ids, earlier[0])
    if earlier is not None and not same and (run.path / TAGS_FILE).is_file() \
            and not earlier_galaxies_kept(ids, earlier[0]):
        present.append(run.path / TAGS_FILE)  # the user's, but about the earlier galaxies by id
    if not present or (same and earlier[1] in (None, recipe)):
        return None
    # a model imported into a new run before imports were marked: made from no galaxies (the earlier
    # cube and catalogue, set aside under hidden names by now, count as there: a model trained on them
    # stayed, and embedded the new galaxies without a word)
    if [p.name for p in present] == ["models"] and not any(
            path.exists() or _aside(path).exists() for path in (run.cube, run.catalogue)):
        return None
    dest = run.new_superseded_folder()
    # where they go, for the next ingest to take them back should this one be killed before it publishes
    (run.path / SUPERSEDING).write_text(str(dest.relative_to(run.path)))
    try:
        move_into(run.path, present, dest)
    except BaseException:
        (run.path / SUPERSEDING).unlink(missing_ok=True)  # what moved is back
        raise
    changed = [f"{k} {earlier[1][k]} -> {recipe[k]}" for k in RECIPE if same and earlier[1] and earlier[1][k] != recipe[k]]
    return dest, (f"the run's results ({', '.join(str(p.relative_to(run.path)) for p in present)}) were made from "
                  + (f"the same galaxies made otherwise ({', '.join(changed)})" if changed else
                     "the galaxies of the earlier ingest")
                  + f": moved to {dest.relative_to(run.path)} (delete it when you no longer need them)")
