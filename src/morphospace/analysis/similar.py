""""More like this": the galaxies nearest to one galaxy in an embedding of a run.

The search goes through an approximate nearest-neighbour index (pynndescent's NNDescent, as
umap-learn uses) over the embedding as it is (Euclidean; no per-axis standardisation, which
would give a noise axis the weight of an informative one), built once per embedding and kept in
``RUN/models/similar/`` beside a note of the embedding file it was built from (a re-embedded
run gets a fresh index). A query returns the galaxy itself first, then its neighbours, as a
table with the catalogue's label columns, and a gallery PNG in ``RUN/similar/``.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..errors import UserError
from ..image.display import display_image
from ..run import RunDir, atomic_path, safe_name, write_json, write_table
from .inputs import fit_input, new_input
from .labels import label_columns

__all__ = ["SimilarityIndex", "precision_at_k", "similar_run"]


class SimilarityIndex(BaseEstimator):
    """Approximate k-nearest-neighbour search over an embedding (Euclidean).

    Parameters
    ----------
    n_neighbors : int
        Degree of the index's graph (more: slower to build, more accurate).
    random_state : int
        Seed of the index's random projections.

    Attributes
    ----------
    index_ : pynndescent.NNDescent
    n_samples_ : int
    """

    def __init__(self, n_neighbors: int = 30, random_state: int = 0):
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X, y=None) -> "SimilarityIndex":
        """Build the index over the rows of ``X`` (N, D); ``y`` is ignored."""
        import warnings

        X = fit_input(self, X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's and pynndescent's own notices
            from pynndescent import NNDescent

            self.index_ = NNDescent(X, n_neighbors=min(self.n_neighbors, len(X) - 1),
                                    random_state=self.random_state, n_jobs=1)
            self.index_.prepare()
        self.n_samples_ = len(X)
        return self

    def kneighbors(self, X, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)``, each (n_queries, k'), nearest first; k' = min(k, N)."""
        X = new_input(self, X)
        k = min(int(k), self.n_samples_)
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}")
        idx, dist = self.index_.query(X, k=k)
        return dist, idx


def precision_at_k(X: np.ndarray, labels: Any, k: int = 10, random_state: int = 0) -> float:
    """Mean fraction of each labelled galaxy's k nearest others that share its label.

    Galaxies without a label are neither scored nor counted as neighbours' labels (a
    neighbour without one counts as a miss).
    """
    y = pd.Series(np.asarray(labels, dtype=object))
    known = (~y.isna() & (y.astype(str).str.strip() != "")).to_numpy()
    index = SimilarityIndex(random_state=random_state).fit(X)
    _, idx = index.kneighbors(np.asarray(X)[known], k=k + 1)
    yk = y.astype(str).to_numpy()
    rows = np.where(known)[0]
    hits = [(yk[nb[nb != r][:k]] == yk[r]) & known[nb[nb != r][:k]] for r, nb in zip(rows, idx)]
    return float(np.mean([h.mean() for h in hits]))


def _index_for(run: RunDir, embedding: str, X: np.ndarray) -> SimilarityIndex:
    """The run's index over ``embedding`` (rows ``X``): loaded when built from the same file, else built."""
    src = run.embedding_path(embedding)
    stat = src.stat()
    stamp = {"embedding": embedding, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    folder = run.model_dir("similar")
    path, note = folder / f"{safe_name(embedding)}.pkl", folder / f"{safe_name(embedding)}.json"
    if path.is_file() and note.is_file():
        try:
            if json.loads(note.read_text()) == stamp:
                with open(path, "rb") as fh:
                    return pickle.load(fh)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            pass  # damaged: rebuilt below
    index = SimilarityIndex().fit(X)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(index, fh)
    write_json(note, stamp)
    return index


def similar_run(run: RunDir, galaxy_id: str, embedding: str, k: int = 10) -> tuple[pd.DataFrame, Any]:
    """The ``k`` galaxies most like ``galaxy_id`` in ``embedding``: a table and its gallery file.

    Returns
    -------
    (DataFrame, Path)
        ``rank`` (0 = the galaxy itself), ``id``, ``distance`` (embedding units) and the
        catalogue's label columns; the gallery PNG in ``RUN/similar/``.
    """
    cat = run.cube_catalogue().reset_index(drop=True)
    ids = cat["id"].astype(str).to_numpy()
    where = np.where(ids == str(galaxy_id))[0]
    if not len(where):
        raise UserError(f"no galaxy with id '{galaxy_id}' in the cube of {run.path}")
    X = run.read_embedding(embedding)
    index = _index_for(run, embedding, X)
    dist, idx = index.kneighbors(np.asarray(X[where[:1]]), k=k + 1)
    rows = idx[0]
    table = pd.DataFrame({"rank": np.arange(len(rows)), "id": ids[rows], "distance": dist[0].round(4)})
    for col in label_columns(cat):
        table[col] = cat[col].to_numpy()[rows]
    name = f"{safe_name(galaxy_id)}_{safe_name(embedding)}"
    write_table(run.sub("similar") / f"{name}.parquet", table)
    gallery = run.sub("similar") / f"{name}.png"
    _gallery(run.read_cube()[np.sort(rows)], rows, table, gallery)
    return table, gallery


def _gallery(images: np.ndarray, rows: np.ndarray, table: pd.DataFrame, path) -> None:
    from matplotlib.figure import Figure

    order = {r: i for i, r in enumerate(np.sort(rows))}
    fig = Figure(figsize=(1.3 * len(rows), 1.6))
    axes = np.atleast_1d(fig.subplots(1, len(rows)))
    for ax, r, (_, row) in zip(axes, rows, table.iterrows()):
        ax.imshow(display_image(images[order[r]]))
        ax.set_title("query" if row["rank"] == 0 else f"{row['rank']}: {row['distance']:.2f}", fontsize=7)
        ax.set_xlabel(str(row["id"])[:14], fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
