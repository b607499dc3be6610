"""What a run directory holds, read once for the report.

Stages fill a run over time, so every reader here returns ``None`` (or an empty
list) when its input is absent, and the report shows only the sections whose
inputs exist. Everything is aligned to the cube order (row ``i`` of the cube is
galaxy ``ids[i]``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.labels import label_columns, labels_in_cube_order, truth_column  # one definition of "a label"
from ..errors import UserError
from ..run import RunDir, in_cube_order

log = logging.getLogger("morphospace")

MISSING = -2  # code of a galaxy a clustering does not cover (-1 is noise)
# representation preference for "the" latent space: the VaDE's own, then CNN features, then pixels
EMBEDDING_PREFERENCE = ("form", "vade", "features", "pixels_pca")


@dataclass
class Clustering:
    """One clustering aligned to the cube order."""

    name: str
    labels: np.ndarray  # int64, -1 noise, MISSING where the clustering has no row
    probs: np.ndarray | None  # N x K (columns prob_0..prob_K-1) or None
    meta: dict

    @property
    def clusters(self) -> list[int]:
        """Cluster labels in order, noise (-1) last when present."""
        present = sorted(int(v) for v in np.unique(self.labels) if v >= 0)
        return present + ([-1] if (self.labels == -1).any() else [])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("report: could not read %s (%s); left out", path, exc)
        return None


class RunContents:
    """Lazy, cached readers of everything the report can show.

    Parameters
    ----------
    run : RunDir
    truth_label : str
        The configured truth label column (``data.truth_label``; empty: guess).
    """

    def __init__(self, run: RunDir, truth_label: str = ""):
        self.run = run
        self.path = run.path
        self.truth_label_wanted = truth_label

    # catalogue and cube ---------------------------------------------------------------
    @cached_property
    def catalogue(self) -> pd.DataFrame | None:
        if not self.run.catalogue.exists():
            return None
        cat = pd.read_parquet(self.run.catalogue)
        cat["id"] = cat["id"].astype(str)
        return cat

    @cached_property
    def summary(self) -> dict | None:
        if not self.run.ingest_summary.exists():
            return None
        data = _read_json(self.run.ingest_summary)
        return data if isinstance(data, dict) else None

    @cached_property
    def cube(self) -> np.ndarray | None:
        if not self.run.cube.exists():
            return None
        cube = np.load(self.run.cube, mmap_mode="r")
        if cube.ndim == 3:
            cube = cube[:, None]
        if cube.ndim != 4:
            raise UserError(f"{self.run.cube} has shape {cube.shape}, expected N x C x H x W")
        return cube

    @cached_property
    def inside(self) -> pd.DataFrame:
        """Catalogue rows of the cube, in cube order (a bare table of ids when no catalogue)."""
        cat = self.catalogue
        n = 0 if self.cube is None else len(self.cube)
        if cat is None or "cube_index" not in cat.columns:
            return pd.DataFrame({"id": [str(i) for i in range(n)]})
        inside = in_cube_order(cat)
        if len(inside) != n:
            raise UserError(f"the catalogue lists {len(inside)} galaxies in the cube but cube.npy has {n} rows: "
                            "re-run `morphospace ingest`")
        return inside

    @cached_property
    def ids(self) -> np.ndarray:
        return self.inside["id"].astype(str).to_numpy()

    @property
    def n(self) -> int:
        return len(self.ids)

    @cached_property
    def _row_of_id(self) -> pd.Series:
        s = pd.Series(np.arange(self.n), index=pd.Index(self.ids))
        return s[~s.index.duplicated()]

    def rows_of(self, ids: Any) -> np.ndarray:
        """Cube rows of ``ids`` (-1 where an id is not in the cube)."""
        idx = pd.Index(np.asarray(ids).astype(str))
        return self._row_of_id.reindex(idx).fillna(-1).to_numpy(dtype=np.int64)

    # labels ---------------------------------------------------------------------------
    @cached_property
    def label_columns(self) -> list[str]:
        """Categorical label columns of the catalogue, the truth first (see ``analysis.labels.label_columns``)."""
        if self.catalogue is None:
            return []
        cfg = _TruthCfg(self.truth_label_wanted)
        try:
            return label_columns(self.catalogue, cfg)
        except UserError as exc:  # a configured truth that is not a column: report without it
            log.warning("report: %s", exc)
            return label_columns(self.catalogue, None)

    @cached_property
    def truth(self) -> str | None:
        cols = self.label_columns
        if not cols:
            return None
        try:
            t = truth_column(self.catalogue, _TruthCfg(self.truth_label_wanted), candidates=cols)
        except UserError:
            t = truth_column(self.catalogue, None, candidates=cols)
        return t if t in self.catalogue.columns else None

    def labels(self, column: str) -> np.ndarray:
        """A catalogue column in cube order as an object array (missing -> None)."""
        return labels_in_cube_order(self.run, column, self.catalogue)

    @cached_property
    def flag_columns(self) -> list[str]:
        cat = self.catalogue
        return [] if cat is None else [c for c in cat.columns if c.startswith("flag_")]

    # representations ------------------------------------------------------------------
    @cached_property
    def embeddings(self) -> list[str]:
        """Embeddings with one row per cube row (others are stale and skipped with a warning)."""
        out = []
        for name in self.run.embeddings():
            arr = np.load(self.run.embedding_path(name), mmap_mode="r")
            if arr.ndim == 2 and len(arr) == self.n:
                out.append(name)
            else:
                log.warning("report: embedding %s has shape %s, not %d rows: skipped", name, arr.shape, self.n)
        return out

    @cached_property
    def neighbour_embedding(self) -> str | None:
        """The latent space of "more like this": vade, then features, pixels_pca, any."""
        for name in EMBEDDING_PREFERENCE:
            if name in self.embeddings:
                return name
        return self.embeddings[0] if self.embeddings else None

    def embedding(self, name: str) -> np.ndarray:
        return np.asarray(np.load(self.run.embedding_path(name), mmap_mode="r"), dtype=np.float32)

    @cached_property
    def maps(self) -> list[tuple[str, np.ndarray]]:
        """2-D maps: reductions with two columns (or the first two of a PCA / LDA)."""
        out = []
        for name in self.run.reductions():
            arr = np.load(self.run.reduction_path(name), mmap_mode="r")
            if arr.ndim != 2 or len(arr) != self.n or arr.shape[1] < 2:
                continue
            if arr.shape[1] == 2:
                out.append((name, np.asarray(arr, dtype=np.float32)))
            elif re.search(r"(^|_)(pca|lda)$", name):
                out.append((f"{name} (1, 2)", np.asarray(arr[:, :2], dtype=np.float32)))
        # t-SNE and UMAP first: they are the maps people look at
        rank = {"tsne": 0, "umap": 1, "pca": 3, "lda": 4}
        out.sort(key=lambda t: (min((r for k, r in rank.items() if k in t[0]), default=2), t[0]))
        return out

    # clusterings ----------------------------------------------------------------------
    @cached_property
    def clusterings(self) -> list[Clustering]:
        out = []
        for name in self.run.clusterings():
            try:
                table = self.run.read_clustering(name)
            except Exception as exc:  # a half-written or foreign file must not sink the report
                log.warning("report: clustering %s unreadable (%s): skipped", name, exc)
                continue
            if "id" not in table.columns or "label" not in table.columns:
                continue
            rows = self.rows_of(table["id"])
            ok = rows >= 0
            labels = np.full(self.n, MISSING, dtype=np.int64)
            labels[rows[ok]] = pd.to_numeric(table["label"], errors="coerce").fillna(MISSING).to_numpy(np.int64)[ok]
            pcols = sorted((c for c in table.columns if re.fullmatch(r"prob_\d+", c)), key=lambda c: int(c[5:]))
            probs = None
            if pcols:
                probs = np.full((self.n, len(pcols)), np.nan, dtype=np.float32)
                probs[rows[ok]] = table[pcols].to_numpy(np.float32)[ok]
            meta_path = self.run.clustering_path(name).with_suffix(".json")
            meta = _read_json(meta_path) if meta_path.exists() else None
            out.append(Clustering(name, labels, probs, meta if isinstance(meta, dict) else {}))
        return out

    @cached_property
    def primary(self) -> Clustering | None:
        """The clustering the report is about: ``vade``, else the selected k-means."""
        by_name = {c.name: c for c in self.clusterings}
        if "vade" in by_name:
            return by_name["vade"]
        if not by_name:
            return None

        def rep_rank(c: Clustering) -> int:
            rep = c.meta.get("representation") or c.name.split("_", 1)[-1]
            order = ("features", "vade", "pixels_pca")
            return order.index(rep) if rep in order else len(order)

        kmeans = [c for c in self.clusterings if c.name.startswith("kmeans")]
        chosen = [c for c in kmeans if c.meta.get("best_k") is not None and c.meta.get("k") == c.meta.get("best_k")]
        if not chosen:
            chosen = self._kmeans_by_silhouette(kmeans)
        if chosen:
            return sorted(chosen, key=lambda c: (rep_rank(c), c.name))[0]
        for prefix in ("gmm", "kmeans", "hdbscan", "dbscan"):
            picks = [c for c in self.clusterings if c.name.startswith(prefix)]
            if picks:
                return sorted(picks, key=lambda c: (rep_rank(c), c.name))[0]
        return self.clusterings[0]

    def _kmeans_by_silhouette(self, kmeans: list[Clustering]) -> list[Clustering]:
        """K-means clusterings whose k is the silhouette-best of ``comparisons/k_selection_<rep>.csv``."""
        out = []
        for path in sorted((self.path / "comparisons").glob("k_selection_*.csv")):
            rep = path.stem[len("k_selection_"):]
            try:
                table = pd.read_csv(path)
                rows = table[table.get("method", "kmeans") == "kmeans"]
                best = int(rows.loc[rows["silhouette"].idxmax(), "k"])
            except Exception:
                continue
            out += [c for c in kmeans if c.name == f"kmeans{best}_{rep}"]
        return out

    # per-galaxy scores ----------------------------------------------------------------
    @cached_property
    def anomaly(self) -> tuple[str, np.ndarray] | None:
        """(what, score) with higher = stranger, from ``vade_galaxies.parquet``, or None."""
        candidates = [self.path / "vade_galaxies.parquet", *sorted(self.path.glob("models/*/vade_galaxies.parquet"))]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            return None
        try:
            table = pd.read_parquet(path)
        except Exception as exc:
            log.warning("report: %s unreadable (%s)", path, exc)
            return None
        if "anomaly" in table.columns:
            what, values = "anomaly score", table["anomaly"].to_numpy(np.float64)
        elif "log_likelihood" in table.columns:
            what, values = "anomaly score (negative log-likelihood)", -table["log_likelihood"].to_numpy(np.float64)
        else:
            return None
        score = np.full(self.n, np.nan)
        if "id" in table.columns:
            rows = self.rows_of(table["id"])
            ok = rows >= 0
            score[rows[ok]] = values[ok]
        elif len(table) == self.n:
            score = values
        else:
            log.warning("report: %s has %d rows and no id column; the cube has %d: anomaly left out",
                        path, len(table), self.n)
            return None
        return (what, score) if np.isfinite(score).any() else None

    # files ----------------------------------------------------------------------------
    def figures(self) -> list[Path]:
        d = self.path / "figures"
        return sorted(d.glob("*.png")) if d.is_dir() else []

    def comparison(self, name: str) -> Path | None:
        p = self.path / "comparisons" / name
        return p if p.exists() else None

    def metrics_files(self) -> dict[str, list[Path]]:
        """Lightning CSV logs per model: ``models/<model>/logs/**/metrics.csv``, newest version per run name."""
        out: dict[str, list[Path]] = {}
        models = self.path / "models"
        if not models.is_dir():
            return out
        for model in sorted(p for p in models.iterdir() if p.is_dir()):
            files = sorted(model.glob("logs/**/metrics.csv"))
            latest: dict[Path, Path] = {}
            for f in files:
                # .../logs/<name>/version_<k>/metrics.csv: keep the newest version of each <name>
                group = f.parent.parent if re.fullmatch(r"version_\d+", f.parent.name) else f.parent
                if group not in latest or f.stat().st_mtime >= latest[group].stat().st_mtime:
                    latest[group] = f
            if latest:
                out[model.name] = sorted(latest.values())
        return out


class _TruthCfg:
    """The part of a Config that ``compare.truth_column`` reads."""

    def __init__(self, truth_label: str):
        self.data = type("D", (), {"truth_label": truth_label})()
