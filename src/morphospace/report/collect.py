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
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.labels import label_columns, labels_in_cube_order, truth_column  # one definition of "a label"
from ..errors import UserError
from ..image.palettes import class_colours
from ..run import RunDir, in_cube_order
from ..run.provenance import stale_results
from .anomaly_scores import AnomalyScores
from .comparison_files import ComparisonFiles
from .clusterings import Clustering, aligned_clustering, primary_choice

log = logging.getLogger("morphospace")

# representation preference for "the" latent space: the VaDE's own, then CNN features, then pixels
EMBEDDING_PREFERENCE = ("form", "vade", "features", "pixels_pca")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("report: could not read %s (%s); left out", path, exc)
        return None


class RunContents(AnomalyScores, ComparisonFiles):
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
        """The run's catalogue (ids as text), or None before ingest."""
        if not self.run.catalogue.exists():
            return None
        cat = self.run.read_table(self.run.catalogue, "ingest")  # damaged: one line, as every stage says
        cat["id"] = cat["id"].astype(str)
        return cat

    @cached_property
    def centreless(self) -> np.ndarray:
        """The cube rows whose frame has no source at its centre (the neighbour masking's
        ``central_found``): a frame artefact, or a galaxy off centre; none where the run has no such list."""
        from ..image.masking import MASKED_TABLE

        try:
            table = pd.read_parquet(self.run.path / MASKED_TABLE, columns=["id", "central_found"])
        except (OSError, ValueError, KeyError, ImportError):
            return np.zeros(0, dtype=int)
        ids = self.run.cube_ids().astype(str)
        if len(table) != len(ids) or not (table["id"].astype(str).to_numpy() == ids).all():
            return np.zeros(0, dtype=int)  # of another cube: not these galaxies
        return np.flatnonzero(~table["central_found"].astype(bool).to_numpy())

    @cached_property
    def summary(self) -> dict | None:
        """``ingest_summary.json`` (counts, flags, layout), or None when absent or unreadable."""
        if not self.run.ingest_summary.exists():
            return None
        data = _read_json(self.run.ingest_summary)
        return data if isinstance(data, dict) else None

    @cached_property
    def cube(self) -> np.ndarray | None:
        """The cube, memory-mapped, as N x C x H x W (a 3-D cube gets C = 1), or None before ingest."""
        if not self.run.cube.exists():
            return None
        cube = self.run.load_npy(self.run.cube, "ingest")
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
        """Galaxy ids in cube order (text)."""
        return self.inside["id"].astype(str).to_numpy()

    @property
    def n(self) -> int:
        """Number of galaxies in the cube."""
        return len(self.ids)

    @cached_property
    def _row_of_id(self) -> pd.Series:
        s = pd.Series(np.arange(self.n), index=pd.Index(self.ids))
        return s[~s.index.duplicated()]

    def rows_of(self, ids: Any) -> np.ndarray:
        """Cube rows of galaxy ids.

        Parameters
        ----------
        ids : array-like
            Galaxy ids (compared as text).

        Returns
        -------
        ndarray of int64
            The cube row of each id (its first, for a repeated id); -1 where
            an id is not in the cube.
        """
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
        """The truth label column (``data.truth_label``, else the best guess), or None."""
        cols = self.label_columns
        if not cols:
            return None
        try:
            t = truth_column(self.catalogue, _TruthCfg(self.truth_label_wanted), candidates=cols)
        except UserError:
            t = truth_column(self.catalogue, None, candidates=cols)
        return t if t in self.catalogue.columns else None

    def labels(self, column: str) -> np.ndarray:
        """A catalogue column in cube order.

        Parameters
        ----------
        column : str
            A column of the catalogue.

        Returns
        -------
        ndarray of object
            One value per cube row; missing values are None.
        """
        return labels_in_cube_order(self.run, column, self.catalogue)

    @cached_property
    def class_colours(self) -> dict[str, str]:
        """The page's one colour per class, keyed by its value over every label column
        (:func:`~morphospace.image.palettes.class_colours`): the same in every chart, cluster card
        and explorer colouring, whichever column shows it."""
        return class_colours(self.labels(col) for col in self.label_columns)

    @cached_property
    def flag_columns(self) -> list[str]:
        """The catalogue's ``flag_<reason>`` columns."""
        cat = self.catalogue
        return [] if cat is None else [c for c in cat.columns if c.startswith("flag_")]

    # representations ------------------------------------------------------------------
    def _array(self, path: Path, stage: str) -> np.ndarray | None:
        """A run's array, or None (and a warning: left out of the report) when it is damaged."""
        try:
            return self.run.load_npy(path, stage)
        except UserError as exc:
            log.warning("report: %s; left out", exc)
            return None

    @cached_property
    def embeddings(self) -> list[str]:
        """Embeddings with one row per cube row (others are stale and skipped with a warning)."""
        out = []
        for name in self.run.embeddings():
            arr = self._array(self.run.embedding_path(name), "embed")
            if arr is None:
                continue
            if not (arr.ndim == 2 and len(arr) == self.n):
                log.warning("report: embedding %s has shape %s, not %d rows: skipped", name, arr.shape, self.n)
            elif not np.isfinite(arr).all():  # a damaged file: the neighbour search would stop the report
                log.warning("report: embedding %s has %d rows with NaN or infinite values: left out (re-run the stage "
                            "that made it)", name, int((~np.isfinite(arr)).any(axis=1).sum()))
            else:
                out.append(name)
        return out

    @cached_property
    def neighbour_embedding(self) -> str | None:
        """The latent space of "more like this": vade, then features, pixels_pca, any."""
        for name in EMBEDDING_PREFERENCE:
            if name in self.embeddings:
                return name
        return self.embeddings[0] if self.embeddings else None

    def embedding(self, name: str) -> np.ndarray:
        """An embedding of the run, read into memory.

        Parameters
        ----------
        name : str
            One of :attr:`embeddings`.

        Returns
        -------
        ndarray of float32
            One row per cube row.
        """
        return np.asarray(self.run.load_npy(self.run.embedding_path(name), "embed"), dtype=np.float32)

    @cached_property
    def maps(self) -> list[tuple[str, np.ndarray]]:
        """2-D maps: reductions with two columns (or the first two of a PCA / LDA); one with NaN or
        infinite coordinates is left out (:attr:`unusable_maps`)."""
        return self._maps[0]

    @property
    def unusable_maps(self) -> list[str]:
        """Reductions left out of :attr:`maps` for NaN or infinite coordinates (the page says so)."""
        return self._maps[1]

    @cached_property
    def stale_results(self) -> dict[str, str]:
        """Maps and clusterings made from an earlier version of their embedding or map (left out of
        the page, said at its top): :func:`~morphospace.run.provenance.stale_results`."""
        return stale_results(self.run)

    @cached_property
    def _maps(self) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
        out, unusable = [], []
        for name in self.run.reductions():
            if f"reductions/{name}" in self.stale_results:  # said at the page's top
                continue
            arr = self._array(self.run.reduction_path(name), "reduce")
            if arr is None or arr.ndim != 2 or len(arr) != self.n or arr.shape[1] < 2:
                continue
            if not np.isfinite(arr[:, :2]).all():
                log.warning("report: reduction %s has non-finite coordinates: left out of the explorer", name)
                unusable.append(name)
                continue
            if arr.shape[1] == 2:
                out.append((name, np.asarray(arr, dtype=np.float32)))
            elif re.search(r"(^|_)(pca|lda)$", name):
                out.append((f"{name} (1, 2)", np.asarray(arr[:, :2], dtype=np.float32)))
        # t-SNE and UMAP first: they are the maps people look at
        rank = {"tsne": 0, "umap": 1, "pca": 3, "lda": 4}
        out.sort(key=lambda t: (min((r for k, r in rank.items() if k in t[0]), default=2), t[0]))
        return out, unusable

    # clusterings ----------------------------------------------------------------------
    @cached_property
    def clusterings(self) -> list[Clustering]:
        """Every readable clustering of the run, aligned to the cube (unreadable ones skipped, logged)."""
        out = []
        for name in self.run.clusterings():
            if f"clusterings/{name}" in self.stale_results:  # said at the page's top
                continue
            try:
                table = self.run.read_clustering(name)
            except Exception as exc:  # a half-written or foreign file must not sink the report
                log.warning("report: clustering %s unreadable (%s): skipped", name, exc)
                continue
            if "id" not in table.columns or "label" not in table.columns:
                continue
            meta_path = self.run.clustering_path(name).with_suffix(".json")
            meta = _read_json(meta_path) if meta_path.exists() else None
            out.append(aligned_clustering(name, table, self.rows_of(table["id"]), self.n, meta))
        return out

    @cached_property
    def primary_choice(self) -> tuple[Clustering | None, str]:
        """The clustering the report is about and why (:func:`~morphospace.report.clusterings.primary_choice`)."""
        return primary_choice(self.clusterings, self.path / "comparisons")

    @property
    def primary(self) -> Clustering | None:
        """The clustering the report is about."""
        return self.primary_choice[0]

    # files ----------------------------------------------------------------------------
    def figures(self) -> list[Path]:
        """Every PNG of ``RUN/figures/``, sorted by name.

        Returns
        -------
        list of Path
        """
        d = self.path / "figures"
        return sorted(d.glob("*.png")) if d.is_dir() else []

    @property
    def model_not_embedded(self) -> bool:
        """Whether the run holds a trained VaDE (``train`` or ``import-astrovader``) that ``embed`` has
        not yet turned into embeddings, clusters and figures."""
        from ..vade.io import model_file

        return model_file(self.run).is_file() and not self.run.embedding_path("vade").exists()

    @cached_property
    def stale_model(self) -> str | None:
        """Why the results the model's ``embed`` wrote (its clusters, embeddings, figures) are not
        those of the run's model any more, or None: the model was trained again after them (the
        fingerprint of its weights that ``embeddings/vade.json`` records differs), or it is gone.
        Runs embedded before the fingerprint was recorded read as current."""
        from ..vade.io import embeddings_outdated

        return embeddings_outdated(self.run)

    def metrics_files(self) -> dict[str, list[Path]]:
        """Lightning CSV logs per model: ``models/<model>/logs/**/metrics.csv``, newest version per run name.

        Returns
        -------
        dict of str to list of Path
            Model name -> its logs (models without logs are left out).
        """
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
