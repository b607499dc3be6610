"""What each map and clustering of a run was made from, and whether that is still what the run holds.

A map (``reductions/<name>.json``) and a clustering (``clusterings/<name>.json``) record the content
stamp of the representation they were computed from (``input_stamp``: size, modification time and
sha256, :func:`~morphospace.run.writes.content_stamp`). After ``train`` + ``embed`` rewrite an
embedding, or ``reduce`` remakes a map with other settings, the maps and clusterings made from the
earlier one were compared and reported beside the new ones, without a word. :func:`stale_results`
names them, so that ``compare`` and the report leave them out and say so. Records written before
the stamp existed are taken as current (nothing to tell).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .rundir import RunDir
from .writes import content_stamp, stamp_is_current

__all__ = ["comparison_inputs", "comparison_inputs_changed", "input_stamp", "made_from", "read_record", "stale_results",
           "survey_read"]


def _representation_path(run: RunDir, rep: str) -> Path:
    """An embedding's file where the run has one by that name, else the map's."""
    return run.embedding_path(rep) if run.embedding_path(rep).is_file() else run.reduction_path(rep)


def input_stamp(run: RunDir, rep: str) -> dict | None:
    """The content stamp of representation ``rep`` (an embedding or a map), to record in what is made
    from it; None where it has no file."""
    path = _representation_path(run, rep)
    return content_stamp(path) if path.is_file() else None


def read_record(path: Path) -> dict:
    """A stage's JSON record of a map or clustering as a dict; empty where it is missing or damaged."""
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _made_from_earlier(run: RunDir, record: dict, rep: str, seen: dict) -> bool:
    """Whether ``record`` was made from another version of ``rep`` than the run's; ``seen`` holds the
    answers so far (one per representation and stamp: a study's 59 clusterings share a dozen, and a
    copied run's new modification times make each check hash the file)."""
    stamp = record.get("input_stamp")
    if not isinstance(stamp, dict) or not rep:
        return False  # recorded before stamps, or by hand: nothing to tell
    key = (rep, tuple(sorted(stamp.items())))
    if key not in seen:
        seen[key] = _differs(run, rep, stamp)
    return seen[key]


def _differs(run: RunDir, rep: str, stamp: dict) -> bool:
    path = _representation_path(run, rep)
    if not path.is_file():  # made from what the run no longer holds (a model replaced by another kind)
        return True
    try:
        np.load(path, mmap_mode="r")  # the header and the length only
    except Exception:  # noqa: BLE001 - damaged (cut short, not an array): the stages that read it say so
        return False
    return not stamp_is_current(stamp, path)


def stale_results(run: RunDir) -> dict[str, str]:
    """Maps and clusterings made from an earlier version of what they were made from.

    Returns
    -------
    dict of str to str
        ``"reductions/<name>"`` or ``"clusterings/<name>"`` -> what it was made from ("made from an
        earlier form embedding"; a clustering of a stale map is stale too).
    """
    out: dict[str, str] = {}
    stale_maps: dict[str, str] = {}
    seen: dict = {}
    for rid in run.reductions():
        record = read_record(run.reduction_path(rid).with_suffix(".json"))
        source = str(record.get("embedding", ""))
        if _made_from_earlier(run, record, source, seen):
            out[f"reductions/{rid}"] = (f"made from an earlier {source} embedding" if _held(run, source)
                                        else f"made from the {source} embedding, which the run no longer holds")
            stale_maps[rid] = source
    for name in run.clusterings():
        record = read_record(run.clustering_path(name).with_suffix(".json"))
        rep = str(record.get("representation", ""))
        if rep in stale_maps:
            out[f"clusterings/{name}"] = f"made from the map {rep} of an earlier {stale_maps[rep]} embedding"
        elif _made_from_earlier(run, record, rep, seen):
            out[f"clusterings/{name}"] = (f"made from an earlier {rep}" if _held(run, rep)
                                          else f"made from {rep}, which the run no longer holds")
    return out


def _held(run: RunDir, rep: str) -> bool:
    return _representation_path(run, rep).is_file()


def made_from(run: RunDir, embeddings) -> list[Path]:
    """The files of what was made from ``embeddings`` (names): their maps, the clusterings of them or of
    their maps (and those named after the model, ``vade*``, where ``vade`` is one of them), and the
    cluster stage's tables choosing k on them; the files that exist."""
    mine = set(embeddings)
    maps = {rid for rid in run.reductions()
            if read_record(run.reduction_path(rid).with_suffix(".json")).get("embedding") in mine}
    paths = [p for rid in sorted(maps) for p in run.path.glob(f"reductions/{rid}.*")]
    for name in run.clusterings() + run.missing_clusterings():
        rep = read_record(run.clustering_path(name).with_suffix(".json")).get("representation")
        if rep in mine | maps or ("vade" in mine and name.startswith("vade")):
            paths += list(run.path.glob(f"clusterings/{name}.*"))
    paths += [run.path / "comparisons" / f"k_selection_{rep}.csv" for rep in sorted(mine | maps)]
    return [p for p in dict.fromkeys(paths) if p.exists() or p.is_symlink()]


def comparison_inputs(run: RunDir) -> dict:
    """What the compare stage's results depend on: the :func:`~morphospace.run.writes.content_stamp`
    of each clustering, each embedding (the linear probes) and the catalogue (its labels). The
    stage writes it beside its results (``comparisons/inputs.json``); a report leaves out what
    the run no longer holds the same of (:func:`comparison_inputs_changed`).

    Parameters
    ----------
    run : RunDir

    Returns
    -------
    dict
    """
    def stamp(path: Path):
        try:
            return content_stamp(path)
        except OSError:
            return None

    return {"clusterings": {name: stamp(run.clustering_path(name)) for name in run.clusterings()},
            "embeddings": {name: stamp(run.embedding_path(name)) for name in run.embeddings()},
            "catalogue": stamp(run.catalogue)}


def comparison_inputs_changed(run: RunDir, was: dict) -> dict:
    """What differs between the run and a record of :func:`comparison_inputs`: a file is the same
    while :func:`~morphospace.run.writes.stamp_is_current` (a copied run's, with new modification
    times, is).

    Parameters
    ----------
    run : RunDir
    was : dict
        The record; its ``embeddings`` may be missing (written before they were recorded).

    Returns
    -------
    dict
        ``catalogue`` (bool) and the sorted names of the ``clusterings`` and ``embeddings``
        added, removed or rewritten since (``embeddings`` None where not recorded).
    """
    def changed(stamps: dict, names: list[str], path) -> list[str]:
        return sorted(set(stamps) ^ set(names)
                      | {n for n in set(stamps) & set(names) if not stamp_is_current(stamps[n], path(n))})

    embeddings = was.get("embeddings")
    return {"catalogue": not stamp_is_current(was["catalogue"], run.catalogue),
            "clusterings": changed(dict(was["clusterings"]), run.clusterings(), run.clustering_path),
            "embeddings": None if embeddings is None
            else changed(dict(embeddings), run.embeddings(), run.embedding_path)}


def survey_read(run: RunDir) -> str:
    """The survey the run's cube was read from, as its ingest resolved it (``ingest_summary.json``;
    ``""`` where it says none): its ``data.path`` is saved as typed, relative to where that was."""
    import json

    try:
        source = json.loads(run.ingest_summary.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return ""
    return source if isinstance(source, str) else ""
