"""A run directory as Python objects, and :func:`ingest`, which makes one.

Everything a command-line run wrote is readable from a notebook, lazily and read-only:

>>> import morphospace as ms
>>> run = ms.ingest("../shared/data/sdss-gz1", run="runs/gz1")   # doctest: +SKIP
>>> run.catalogue.head()                                          # doctest: +SKIP
>>> run.cube.shape                                                # memory-mapped # doctest: +SKIP
>>> ms.Run("runs/gz1").clusterings["kmeans8_pca"]                 # doctest: +SKIP

The catalogue is the contract between stages (as in Zoobot): ``Run.catalogue`` holds the
galaxies of the cube in cube order, so row ``i`` of the catalogue is row ``i`` of the cube
and of every embedding.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UserError, first_line, python_errors
from .run import mark_cube_order

__all__ = ["Run", "ingest"]


class _Lazy(Mapping):
    """A read-only mapping whose values are read from disk when asked for, and read again once
    their files have changed: a stage run meanwhile (from a terminal, or ``morphospace`` in a
    cell) may have rewritten or removed them."""

    def __init__(self, names: Callable[[], list[str]], read: Callable[[str], Any], what: str, where: Path,
                 files: Callable[[str], list[Path]]):
        self._names, self._read, self._what, self._where, self._files = names, read, what, where, files
        self._cache: dict[str, tuple[list, Any]] = {}

    def _stamp(self, name: str) -> list:
        """The files' versions: stages write by renaming a new file into place (a new inode), and
        two writes within the clock's tick can share an mtime."""
        stamps = []
        for p in self._files(name):
            try:
                st = p.stat()
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return stamps

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            self._cache.pop(name, None)
            raise KeyError(f"no {self._what} '{name}' in {self._where} (it has: {', '.join(self) or 'none'})")
        stamp = self._stamp(name)
        cached = self._cache.get(name)
        if cached is None or cached[0] != stamp:
            with python_errors():
                self._cache[name] = (stamp, self._read(name))
        return _handed(self._cache[name][1])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"<{self._what}s: {', '.join(self) or 'none'}>"


def _handed(value: Any) -> Any:
    """What a read hands out of the cache: arrays as read-only views (an edit raises, where it
    changed what every later read of the run returned), tables as copies (pandas has no read-only)."""
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base, np.ndarray):  # the cached array and what it views: the flag cannot be set back
            base.flags.writeable = False
            base = base.base
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, (pd.Series, pd.DataFrame)):
        return value.copy()
    return value


class Run:
    """The results of a run directory, read lazily.

    Parameters
    ----------
    path : str or Path
        A run directory written by ``morphospace`` (at least ``ingest``).

    Attributes
    ----------
    path : Path
    catalogue : DataFrame
        The cube's galaxies in cube order (id, file, labels, flags, ``cube_index``).
    cube : ndarray (N, C, H, W)
        The preprocessed images, memory-mapped.
    embeddings, reductions : Mapping[str, ndarray]
        Row ``i`` belongs to catalogue row ``i``; read-only (``.copy()`` to edit one).
    clusterings : Mapping[str, Series]
        Cluster label per galaxy, indexed by galaxy id in cube order (-1: noise); each read a copy.
    comparisons : Mapping[str, DataFrame]
        The compare stage's tables (``comparisons/*.csv``); each read a copy.
    model : VaDEModel
        The run's trained model, read when asked for.
    """

    def __init__(self, path: str | Path):
        from .run import RunDir

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is a file, not a run directory")
        if not self.path.is_dir():
            raise FileNotFoundError(f"run directory not found: {self.path}")
        self._dir = RunDir(self.path)
        if not (self._dir.catalogue.is_file() or self._dir.config.is_file()):  # a survey's folder, or another
            raise FileNotFoundError(f"{self.path} is not a run: it has neither {self._dir.catalogue.name} nor "
                                    f"{self._dir.config.name} (ms.ingest or `morphospace ingest` makes a run)")
        d = self._dir
        self.embeddings = _Lazy(d.embeddings, lambda n: self._rows("embedding", n, d.read_embedding(n), "embed"),
                                "embedding", self.path, lambda n: [d.embedding_path(n), d.catalogue])
        self.reductions = _Lazy(d.reductions, lambda n: self._rows("reduction", n, d.read_reduction(n), "reduce"),
                                "reduction", self.path, lambda n: [d.reduction_path(n), d.catalogue])
        # a clustering is indexed by the cube's ids: read again when the catalogue is rewritten too
        self.clusterings = _Lazy(d.clusterings, self._clustering, "clustering", self.path,
                                 lambda n: [d.clustering_path(n), d.catalogue])
        self.comparisons = _Lazy(self._comparison_names, self._comparison, "comparison", self.path,
                                 lambda n: [self.path / "comparisons" / f"{n}.csv"])

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}: {len(self.embeddings)} embeddings, {len(self.reductions)} reductions, "
                f"{len(self.clusterings)} clusterings)")

    @property
    def catalogue(self) -> pd.DataFrame:
        """The cube's galaxies, in cube order (read on each access: a stage may have rewritten it)."""
        with python_errors():
            return self._dir.cube_catalogue().reset_index(drop=True)

    @property
    def cube(self) -> np.ndarray:
        """The preprocessed images (N, C, H, W), memory-mapped."""
        with python_errors():
            return self._dir.read_cube(mmap=True)

    @property
    def model(self):
        """The run's trained model (:class:`morphospace.api.VaDEModel`)."""
        from .api import load_model

        return load_model(self._dir)

    def _rows(self, what: str, name: str, array: np.ndarray, stage: str) -> np.ndarray:
        """``array``, one row per cube galaxy as every stage checks it: an embedding or map of other
        galaxies (a cube ingested since) would pair its rows with the wrong galaxies."""
        n = len(self._dir.cube_ids())
        if len(array) != n:
            raise UserError(f"{what} '{name}' of {self.path} has {len(array)} rows but the cube {n}: "
                            f"it belongs to other galaxies; re-run `morphospace {stage}`")
        return array

    def _clustering(self, name: str) -> pd.Series:
        table = self._dir.read_clustering(name)
        labels = table.set_index("id")["label"] if "label" in table else table.set_index("id").iloc[:, 0]
        labels = labels.reindex(self._dir.cube_ids()).rename(name)
        mark_cube_order(labels)  # what pairs it with a catalogue column by position
        return labels

    def _comparison_names(self) -> list[str]:
        folder = self.path / "comparisons"
        return sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []

    def _comparison(self, name: str) -> pd.DataFrame:
        path = self.path / "comparisons" / f"{name}.csv"
        try:
            table = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            raise UserError(f"{path} is damaged ({first_line(exc)[:120]}): re-run `morphospace compare`") from None
        if (why := self._comparisons_outdated()) is not None:  # served as current while the report said otherwise
            import warnings

            warnings.warn(f"comparison '{name}' is out of date: {why} (run `morphospace compare` again)", stacklevel=3)
        return table

    def _comparisons_outdated(self) -> str | None:
        """Why the compare stage's tables are not this run's any more (its record of what it compared
        differs from the run), or None (current, or no record)."""
        import json

        from .run.provenance import comparison_inputs_changed

        try:
            was = json.loads((self.path / "comparisons" / "inputs.json").read_text())
            if was.get("incomplete"):
                return "the last `morphospace compare` did not finish"
            changed = comparison_inputs_changed(self._dir, was)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # no record (an earlier version's) or a damaged one: the report says which
        reasons = [f"the {what} changed since" for what in ("catalogue",) if changed["catalogue"]]
        reasons += [f"{what} changed since ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                    for what, names in (("clusterings", changed["clusterings"]), ("embeddings", changed["embeddings"]))
                    if names]
        return "; ".join(reasons) or None


def ingest(data: str | Path | None = None, run: str | Path = "runs/notebook", config: dict | None = None,
           **settings: Any) -> Run:
    """Read a survey into a run directory (cube + catalogue) and return the :class:`Run`.

    Parameters
    ----------
    data : str, Path or None
        A folder of images (JPEG, PNG, FITS) with or without a catalogue, or an HDF5 file;
        ``None`` uses the built-in synthetic survey.
    run : str or Path
        The run directory to write (created; an existing run is re-ingested).
    config : dict, optional
        Settings as ``{"section.key": value}``, e.g. ``{"preprocess.size": 96}``.
    **settings
        The same with ``__`` for the dot, e.g. ``preprocess__size=96``.

    Returns
    -------
    Run

    Raises
    ------
    ValueError
        A setting that does not exist or is out of range.
    FileNotFoundError
        ``data`` does not exist.
    """
    from .config import apply_overrides, load_config, settings_mapping
    from .pipeline import check_data, ingest_run
    from .run import RunDir, release_locks
    from .run.runlog import logged_to_run
    from .script_guard import leave_a_rerun

    leave_a_rerun()  # a spawned worker importing the calling script again must not ingest the run once more
    if Path(run).exists() and not Path(run).is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder: choose a folder for the run", str(run))
    from .run.places import check_not_a_folder_of_results, check_run_place

    with python_errors():  # "" (the notebook's own folder) or another run's models/: as the command line refuses
        check_run_place(run, "run")
        check_not_a_folder_of_results(run, "run")
    overrides = settings_mapping(config, "{'preprocess.size': 64}")
    given = {k.replace("__", "."): v for k, v in settings.items()}
    if data is not None:
        if not str(data).strip():  # as the command line: an empty path is no survey, not the synthetic one
            raise ValueError("data must name a survey (a folder or a file), got an empty path; leave it out "
                             "(None) for the built-in synthetic survey")
        given = {**given, "data.path": str(data)} if "data.path" not in given else given
        if Path(str(given["data.path"])).resolve() != Path(str(data)).resolve():  # "sv/" and Path("sv") are one
            raise ValueError(f"the survey is given twice, {str(data)!r} as data and {given['data.path']!r} as "
                             "data__path: give it once")
    # one setting given two ways, as the command line refuses an option and a --set that disagree (one
    # won without a word: config={'preprocess.size': 32} with preprocess__size=48 made 48 px)
    for key in sorted(set(overrides) & set(given)):
        if overrides[key] != given[key]:
            raise ValueError(f"{key} is given twice, {overrides[key]!r} in config and {given[key]!r} as "
                             f"{key.replace('.', '__')}: give it once")
    overrides.update(given)
    with python_errors():  # the command line's checks, as the exceptions a Python user catches
        cfg = apply_overrides(load_config(None), overrides)
        check_data(cfg, run)
    created = not Path(run).exists()
    rd = RunDir(run, create=True)
    with python_errors():  # one writer: a run another process writes is a ValueError naming it, not a RunInUse
        rd.acquire_lock()  # (and a command on this run is refused until the ingest is done)
    try:
        # the run's log.txt, as `morphospace ingest` writes it (its lines, and the error that stops it)
        with logged_to_run(rd.log), python_errors():  # a layout or column refused: a ValueError, as above
            ingest_run(rd, cfg, created)
    finally:
        release_locks()
    return Run(rd.path)
