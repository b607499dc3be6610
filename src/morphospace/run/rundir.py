"""The run directory: one folder per run, the contract between stages.

Layout (also documented in the README)::

    RUN/
      config.toml              resolved configuration of the run
      catalogue.parquet        one row per input galaxy: id, source, label columns,
                               flag_<reason> booleans, cube_index (-1: not in the cube)
      ingest_summary.json      counts and example ids per quality flag
      cube.npy                 preprocessed images, float16 N x C x H x W (memory-mapped);
                               row i is the galaxy whose cube_index == i
      cube_masked.npy          the cube with neighbours masked (morphospace.image.masking)
      models/<name>/           trained models (checkpoints, hyper-parameters)
      embeddings/<name>.npy    one row per cube row (float32)
      embeddings/<name>.json   what produced it
      reductions/<name>.npy    2-D or low-dimensional reductions of an embedding
      clusterings/<name>.parquet   id, label (and prob_<k> columns when soft)
      comparisons/*.csv        score matrices and contingency tables
      figures/*.png            every figure of the report
      report.html              the report
      log.txt                  the log of every stage run here
      superseded/<time>/       results of an earlier ingest of other galaxies

Every file is written atomically (:mod:`.writes`: to a temporary name, then renamed), so a
killed stage never leaves a file that looks complete.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import MissingFile, UserError, first_line
from .cube_order import in_cube_order
from .lock import hold_lock, job_size
from .writes import read_parquet, remove_partials, write_table


# text that means "no value" in a catalogue's cell, written by pandas, astropy, databases and people
# (compared in lower case): the ingest stores such a label as missing, the analyses read it so
MISSING_MARKERS = frozenset({"", "nan", "none", "null", "na", "n/a", "<na>", "nat"})

# files a run keeps at its top level (the layout above); export refuses to overwrite them
RUN_FILES = frozenset({"config.toml", "catalogue.parquet", "ingest_summary.json", "cube.npy", "cube_masked.npy",
                       "cube_masked.parquet", "cube_masked.json", "vade_galaxies.parquet", "nuisance.parquet",
                       "anomaly.parquet", "anomaly.json", "anomaly_tags.csv", "report.html", "log.txt"})
# the folders the stages write in a run (a folder of the user's own, e.g. generated galaxies, goes beside them)
RUN_FOLDERS = frozenset({"models", "embeddings", "reductions", "clusterings", "comparisons", "figures", "classes",
                         "similar", "report_files", "superseded"})
SUPERSEDED = "superseded"
# what the stages derive from the cube's galaxies: set aside (``superseded/<time>/``) when an ingest
# puts other galaxies in the cube; the user's own files (config.toml, anomaly_tags.csv) stay
DERIVED = tuple(sorted(RUN_FOLDERS - {"superseded"})) + ("vade_galaxies.parquet", "nuisance.parquet",
                                                           "anomaly.parquet", "anomaly.json", "report.html")

# the user's own tags of anomalies, by galaxy id: kept by every stage, but about the galaxies they name,
# so an ingest that leaves out some of them sets them aside with the results (ids recur:
# synth_000000, ...); one that keeps every earlier galaxy (a survey extended) keeps them
TAGS_FILE = "anomaly_tags.csv"

# beside an imported model (``RUN/models/vade/``, import-astrovader): made from no galaxies of the
# run, so an ingest of other galaxies keeps it (a training clears the folder, and so the marker)
IMPORTED_MARKER = "imported.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: Any) -> str:
    """A name that can only ever be one file name inside its folder: every character but
    letters, digits and ``. _ + -`` becomes ``_``, leading dots go (no ``..``, no hidden
    files), at most 120 characters. Every name that reaches a path passes through here
    (column names of a user's catalogue become clustering and comparison file names)."""
    text = _UNSAFE.sub("_", str(name)).lstrip(".")
    return text[:120] or "_"


class RunDir:
    """Paths and readers for one run directory.

    Parameters
    ----------
    path : str or Path
        The run directory. ``create=True`` makes it; otherwise it must exist.
    """

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise UserError(f"{self.path} is a file, not a run directory" if self.path.exists() else
                            f"run directory not found: {self.path}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # one writer -------------------------------------------------------------------------
    def acquire_lock(self, distributed: bool = False) -> None:
        """Hold ``RUN/.lock`` until this process ends (:func:`~morphospace.run.lock.hold_lock`: a second
        writer gets a one-line :class:`UserError`; ``distributed``: the later processes of one job
        share their first process's lock)."""
        # the one writer now, of a job of one process (a later rank, which takes no lock, may be building
        # the masked cube already): a partial file left is a killed command's, and nothing else removes it
        if hold_lock(self.path, distributed) and job_size() < 2:
            remove_partials(self.path, RUN_FILES, RUN_FOLDERS - {SUPERSEDED})

    # paths ----------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        """``RUN/config.toml``, the resolved configuration."""
        return self.path / "config.toml"

    @property
    def catalogue(self) -> Path:
        """``RUN/catalogue.parquet``, one row per input galaxy."""
        return self.path / "catalogue.parquet"

    @property
    def ingest_summary(self) -> Path:
        """``RUN/ingest_summary.json``."""
        return self.path / "ingest_summary.json"

    @property
    def cube(self) -> Path:
        """``RUN/cube.npy``, the preprocessed image cube."""
        return self.path / "cube.npy"

    @property
    def log(self) -> Path:
        """``RUN/log.txt``, the log of every stage run here."""
        return self.path / "log.txt"

    @property
    def report(self) -> Path:
        """``RUN/report.html``."""
        return self.path / "report.html"

    def sub(self, name: str) -> Path:
        """A sub-folder (models, embeddings, reductions, clusterings, comparisons, figures), created."""
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def model_path(self, name: str) -> Path:
        """``RUN/models/<name>/`` (``name`` through :func:`safe_name`), whether it is there or not: nothing
        is created to look for it (a stage that only reads a run)."""
        return self.path / "models" / safe_name(name)

    def new_superseded_folder(self) -> Path:
        """A new, empty ``superseded/<UTC time>/`` folder, where results no longer the run's are moved
        (not deleted: a trained model or labels filled in stay at hand)."""
        import time

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest, k = self.path / SUPERSEDED / stamp, 1
        while dest.exists():
            dest, k = self.path / SUPERSEDED / f"{stamp}-{k}", k + 1
        dest.mkdir(parents=True)
        return dest

    def imported_model(self) -> Path | None:
        """``RUN/models/vade/`` where it holds a model imported (import-astrovader), made from no
        galaxies of the run (:data:`IMPORTED_MARKER` beside ``model.pt``); None otherwise."""
        folder = self.model_path("vade")
        if (folder / IMPORTED_MARKER).is_file() and (folder / "model.pt").is_file() and not folder.is_symlink():
            return folder
        return None

    def model_dir(self, name: str) -> Path:
        """``RUN/models/<name>/`` (:meth:`model_path`), created."""
        p = self.model_path(name)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def embedding_path(self, name: str) -> Path:
        """``RUN/embeddings/<name>.npy`` (``name`` through :func:`safe_name`)."""
        return self.path / "embeddings" / f"{safe_name(name)}.npy"

    def reduction_path(self, name: str) -> Path:
        """``RUN/reductions/<name>.npy`` (``name`` through :func:`safe_name`)."""
        return self.path / "reductions" / f"{safe_name(name)}.npy"

    def clustering_path(self, name: str) -> Path:
        """``RUN/clusterings/<name>.parquet`` (``name`` through :func:`safe_name`)."""
        return self.path / "clusterings" / f"{safe_name(name)}.parquet"

    def figure_path(self, name: str) -> Path:
        """``RUN/figures/<name>.png`` (``name`` through :func:`safe_name`), the folder created."""
        return self.sub("figures") / f"{safe_name(name)}.png"

    # readers --------------------------------------------------------------------------
    def _require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise MissingFile(f"{path.name} not found in {self.path}: run `morphospace {stage}` first")
        return path

    def damaged(self, path: Path, stage: str, why: Any) -> UserError:
        """The one-line error for a run file that exists but cannot be read."""
        reason = first_line(why) if isinstance(why, BaseException) else str(why)
        return UserError(f"{path} is damaged ({reason[:160]}): re-run `morphospace {stage}` to rewrite it")

    def load_npy(self, path: Path, stage: str, mmap: bool = True) -> np.ndarray:
        """An ``.npy`` of the run, or a one-line error naming it and the stage that writes it."""
        self._require(path, stage)
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # truncated, garbage, not an npy
            raise self.damaged(path, stage, exc) from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise self.damaged(path, stage, "not a numeric array")
        return arr

    def read_table(self, path: Path, stage: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A parquet table of the run, or a one-line error naming it and the stage that writes it."""
        self._require(path, stage)
        try:
            return read_parquet(path, columns=columns)
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise self.damaged(path, stage, exc) from None

    def read_catalogue(self) -> pd.DataFrame:
        """The whole catalogue: every input galaxy, those left out of the cube too.

        Raises
        ------
        UserError
            It is missing, damaged, or has no ``id`` or ``cube_index`` column.
        """
        cat = self.read_table(self.catalogue, "ingest")
        missing = {"id", "cube_index"} - set(cat.columns)
        if missing:
            raise self.damaged(self.catalogue, "ingest", f"no column {', '.join(sorted(missing))}")
        return cat

    def read_cube(self, mmap: bool = True) -> np.ndarray:
        """The preprocessed image cube, N x C x H x W float16 or float32 (``ingest.cube_dtype``;
        memory-mapped by default). Every stage converts the rows it reads to float32.

        Checked against the catalogue: a cube and a catalogue of different runs (or of an ingest
        that another process interrupted) are a one-line error, not a failure deep in a stage.
        """
        cube = self.load_npy(self.cube, "ingest", mmap=mmap)
        if cube.ndim != 4:
            raise self.damaged(self.cube, "ingest", f"shape {cube.shape}, expected N x C x H x W")
        if self.catalogue.exists():
            n_cat = int((self.read_table(self.catalogue, "ingest", columns=["cube_index"])["cube_index"] >= 0).sum())
            if n_cat != len(cube):
                raise UserError(f"{self.catalogue.name} lists {n_cat} galaxies in the cube but {self.cube.name} has "
                                f"{len(cube)} rows: they do not belong together; re-run `morphospace ingest`")
        return cube

    def embedding_of_cube(self, name: str, remedy: str = "re-run `morphospace embed`") -> np.ndarray:
        """Embedding ``name`` (:meth:`read_embedding`), checked to hold one row per cube row.

        The cube and the catalogue are checked against each other first (:meth:`read_cube`), so
        that a catalogue trimmed or replaced by hand asks for ``ingest``, and only an embedding of
        an earlier cube for ``remedy``.

        Raises
        ------
        UserError
            Saying which of the three disagree and what to re-run.
        """
        # a run whose cube was deleted after embed (24 GB at 10^6 galaxies) is read against its catalogue
        n = len(self.read_cube()) if self.cube.is_file() else len(self.cube_ids())
        X = self.read_embedding(name)
        if len(X) != n:
            raise UserError(f"embedding '{name}' has {len(X)} rows but the cube {n}: {remedy}")
        return X

    def cube_catalogue(self) -> pd.DataFrame:
        """The catalogue rows of the cube's galaxies, in cube order (:func:`in_cube_order`)."""
        return in_cube_order(self.read_catalogue())

    def cube_ids(self) -> np.ndarray:
        """Galaxy ids in cube order (row i of the cube is ``cube_ids()[i]``)."""
        return self.cube_catalogue()["id"].to_numpy()

    def read_embedding(self, name: str) -> np.ndarray:
        """Embedding ``name``, in memory (one row per cube row).

        Raises
        ------
        UserError
            The run has no such embedding (the message lists those it has), or it is damaged.
        """
        known = self.embeddings()
        if name not in known:
            note = self.pixel_pca_note() if name in ("form", "vade") else ""
            raise UserError(f"no embedding '{name}' in {self.path} (it has: {', '.join(known) or 'none'}): "
                            + (f"{note}, or name one of those" if note else "run `morphospace embed` first, or name one of those"))
        X = self.load_npy(self.embedding_path(name), "embed", mmap=False)
        if X.dtype.kind == "f" and not np.isfinite(X).all():  # scikit-learn's "Input X contains NaN" named no file
            bad = int((~np.isfinite(X.reshape(len(X), -1))).any(axis=1).sum()) if X.ndim else 1
            raise self.damaged(self.embedding_path(name), "embed", f"{bad} row(s) hold NaN or infinite values")
        return X

    def pixel_pca_note(self) -> str:
        """For a pixel-PCA run (``model.kind = "pca"`` in its ``config.toml``) without a trained
        VaDE, the line that says so and how to train one; ``""`` otherwise. (`morphospace train`
        and `embed` alone would retrain the PCA: the advice they gave such a run was wrong.)"""
        import tomllib

        if (self.path / "models" / "vade" / "model.pt").is_file():
            return ""
        try:
            kind = tomllib.loads(self.config.read_text()).get("model", {}).get("kind")
        except (OSError, ValueError, AttributeError):
            return ""
        import shlex  # a path with a space, pasted from the advice, was two arguments

        return (f"{self.path} is a pixel-PCA run (model.kind = pca), which has no network: "
                f"`morphospace train {shlex.quote(str(self.path))} --set model.kind=vade` trains the form-first "
                f"model") if kind == "pca" else ""

    def embeddings(self) -> list[str]:
        """Names of the run's embeddings (``embeddings/*.npy``), sorted."""
        d = self.path / "embeddings"
        return sorted(p.stem for p in d.glob("*.npy")) if d.is_dir() else []

    def reductions(self) -> list[str]:
        """Names of the run's reductions (``reductions/*.npy``), sorted."""
        d = self.path / "reductions"
        return sorted(p.stem for p in d.glob("*.npy")) if d.is_dir() else []

    def read_reduction(self, name: str) -> np.ndarray:
        """Reduction ``name``, in memory; a one-line :class:`UserError` if missing or damaged."""
        return self.load_npy(self.reduction_path(name), "reduce", mmap=False)

    def clusterings(self) -> list[str]:
        """Names of the run's clusterings (``clusterings/*.parquet``), sorted."""
        d = self.path / "clusterings"
        return sorted(p.stem for p in d.glob("*.parquet")) if d.is_dir() else []

    def missing_clusterings(self) -> list[str]:
        """Clusterings whose table is gone while what made it is still there (a stage clustering's
        record ``clusterings/<name>.json``; the model's own, ``vade``, beside ``vade_galaxies.parquet``):
        a file deleted by hand, which the later stages would otherwise leave out without a word."""
        d = self.path / "clusterings"
        made = {p.stem for p in d.glob("*.json") if not p.name.startswith(".")} if d.is_dir() else set()
        if (self.path / "vade_galaxies.parquet").is_file():
            made.add("vade")
        return sorted(made - set(self.clusterings()))

    @staticmethod
    def stage_making_clustering(name: str) -> str:
        """The command that (re)makes clustering ``name``: ``embed`` the model's own (``vade``),
        ``cluster`` the rest."""
        return "embed" if name == "vade" else "cluster"

    def read_clustering(self, name: str) -> pd.DataFrame:
        """Clustering ``name``: columns id, label (-1 = noise) and, when soft, prob_<k>.

        Raises
        ------
        UserError
            It is missing, damaged, or has no id and label columns.
        """
        table = self.read_table(self.clustering_path(name), "cluster")
        if not {"id", "label"} <= set(table.columns):
            raise self.damaged(self.clustering_path(name), "cluster", "no id and label columns")
        return table

    def write_clustering(self, name: str, ids: np.ndarray, labels: np.ndarray,
                         probabilities: np.ndarray | None = None, extra: dict | None = None) -> Path:
        """Store a clustering keyed by galaxy id (label -1 = noise)."""
        table = pd.DataFrame({"id": np.asarray(ids), "label": np.asarray(labels, dtype=np.int64)})
        if probabilities is not None:
            for k in range(probabilities.shape[1]):
                table[f"prob_{k}"] = probabilities[:, k].astype(np.float32)
        for key, value in (extra or {}).items():
            table[key] = value
        path = self.clustering_path(name)
        write_table(path, table)
        return path
