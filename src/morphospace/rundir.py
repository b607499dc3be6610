"""The run directory: one folder per run, the contract between stages.

Layout (also documented in the README)::

    RUN/
      config.toml              resolved configuration of the run
      catalogue.parquet        one row per input galaxy: id, source, label columns,
                               flag_<reason> booleans, cube_index (-1: not in the cube)
      ingest_summary.json      counts and example ids per quality flag
      cube.npy                 preprocessed images, float32 N x C x H x W (memory-mapped);
                               row i is the galaxy whose cube_index == i
      cube_masked.npy          the cube with neighbours masked (morphospace.neighbours)
      models/<name>/           trained models (checkpoints, hyper-parameters)
      embeddings/<name>.npy    one row per cube row (float32)
      embeddings/<name>.json   what produced it
      reductions/<name>.npy    2-D or low-dimensional reductions of an embedding
      clusterings/<name>.parquet   id, label (and prob_<k> columns when soft)
      comparisons/*.csv        score matrices and contingency tables
      figures/*.png            every figure of the report
      report.html              the report
      log.txt                  the log of every stage run here

Every file is written atomically (to a temporary name, then renamed), so a killed
stage never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .errors import UserError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write a DataFrame by extension (.parquet or .csv), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unknown table extension: {path.suffix}")


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
            raise UserError(f"run directory not found: {self.path}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # paths ----------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def catalogue(self) -> Path:
        return self.path / "catalogue.parquet"

    @property
    def ingest_summary(self) -> Path:
        return self.path / "ingest_summary.json"

    @property
    def cube(self) -> Path:
        return self.path / "cube.npy"

    @property
    def log(self) -> Path:
        return self.path / "log.txt"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def sub(self, name: str) -> Path:
        """A sub-folder (models, embeddings, reductions, clusterings, comparisons, figures), created."""
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def model_dir(self, name: str) -> Path:
        p = self.sub("models") / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def embedding_path(self, name: str) -> Path:
        return self.path / "embeddings" / f"{name}.npy"

    def reduction_path(self, name: str) -> Path:
        return self.path / "reductions" / f"{name}.npy"

    def clustering_path(self, name: str) -> Path:
        return self.path / "clusterings" / f"{name}.parquet"

    def figure_path(self, name: str) -> Path:
        return self.sub("figures") / f"{name}.png"

    # readers --------------------------------------------------------------------------
    def _require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise UserError(f"{path.name} not found in {self.path}: run `morphospace {stage}` first")
        return path

    def read_catalogue(self) -> pd.DataFrame:
        return pd.read_parquet(self._require(self.catalogue, "ingest"))

    def read_cube(self, mmap: bool = True) -> np.ndarray:
        """The preprocessed image cube, N x C x H x W float32 (memory-mapped by default)."""
        return np.load(self._require(self.cube, "ingest"), mmap_mode="r" if mmap else None)

    def cube_ids(self) -> np.ndarray:
        """Galaxy ids in cube order (row i of the cube is ``cube_ids()[i]``)."""
        cat = self.read_catalogue()
        inside = cat[cat["cube_index"] >= 0].sort_values("cube_index")
        return inside["id"].to_numpy()

    def read_embedding(self, name: str) -> np.ndarray:
        return np.load(self._require(self.embedding_path(name), "embed"))

    def embeddings(self) -> list[str]:
        d = self.path / "embeddings"
        return sorted(p.stem for p in d.glob("*.npy")) if d.is_dir() else []

    def reductions(self) -> list[str]:
        d = self.path / "reductions"
        return sorted(p.stem for p in d.glob("*.npy")) if d.is_dir() else []

    def read_reduction(self, name: str) -> np.ndarray:
        return np.load(self._require(self.reduction_path(name), "reduce"))

    def clusterings(self) -> list[str]:
        d = self.path / "clusterings"
        return sorted(p.stem for p in d.glob("*.parquet")) if d.is_dir() else []

    def read_clustering(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self._require(self.clustering_path(name), "cluster"))

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
