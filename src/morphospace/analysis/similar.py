""""More like this": the galaxies nearest to one galaxy in an embedding of a run.

The search goes through the run's :class:`~morphospace.analysis.neighbour_index.SimilarityIndex`
(exact below :data:`~morphospace.analysis.neighbour_index.EXACT_BELOW` galaxies, approximate
above), built once per embedding and kept in ``RUN/models/similar/`` beside a note of the
embedding file it was built from (a re-embedded run gets a fresh index). A query returns the
galaxy itself first, then its neighbours, as a table with the catalogue's label columns, and a
gallery PNG in ``RUN/similar/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..image.display import display_image, figure_text
from ..run import RunDir, atomic_path, file_stamp, read_stamped_pickle, safe_name, write_stamped_pickle, write_table
from ..run.cube_order import not_in_cube
from .labels import label_columns, missing_mask
from .neighbour_index import EXACT_BELOW, INDEX_KIND, SimilarityIndex, searches_exactly  # noqa: F401 - re-exported

log = logging.getLogger("morphospace")

__all__ = ["SimilarityIndex", "EXACT_BELOW", "searches_exactly", "precision_at_k", "similar_run", "similar_to_image", "pixel_pca_rows"]

def precision_at_k(X: np.ndarray, labels: Any, k: int = 10, random_state: int = 0) -> float:
    """Mean fraction of each labelled galaxy's k nearest others that share its label.

    Galaxies without a label (None, NaN, blank, "N/A"...: :func:`~morphospace.analysis.labels.missing_mask`)
    are neither scored nor counted as neighbours' labels (a neighbour without one counts as a miss).
    """
    y = pd.Series(np.asarray(labels, dtype=object))
    known = ~missing_mask(y.to_numpy())
    index = SimilarityIndex(random_state=random_state).fit(X)
    _, idx = index.kneighbors(np.asarray(X)[known], k=k + 1)
    yk = y.astype(str).to_numpy()
    rows = np.where(known)[0]
    hits = [(yk[nb[nb != r][:k]] == yk[r]) & known[nb[nb != r][:k]] for r, nb in zip(rows, idx)]
    return float(np.mean([h.mean() for h in hits]))


def _index_for(run: RunDir, embedding: str, X: np.ndarray) -> SimilarityIndex:
    """The run's index over ``embedding`` (rows ``X``): loaded when built from the same file, else built."""
    stamp = {"embedding": embedding, **file_stamp(run.embedding_path(embedding)), "index": INDEX_KIND}
    folder = run.model_dir("similar")
    path, note = folder / f"{safe_name(embedding)}.pkl", folder / f"{safe_name(embedding)}.json"
    index = read_stamped_pickle(path, note, stamp)
    if not isinstance(index, SimilarityIndex):
        index = SimilarityIndex(exact_below=EXACT_BELOW).fit(X)
        write_stamped_pickle(path, note, stamp, index)
    if not index.exact_:  # said on every search, not only when the index is built
        log.info("neighbours of %s: approximate search, about %.0f%% of the true nearest found (measured as its "
                 "index was built)", embedding, 100 * index.recall_)
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
        raise UserError(not_in_cube(run.read_catalogue(), [galaxy_id], str(run.path)))
    X = run.embedding_of_cube(embedding)  # an earlier cube's gave others' neighbours
    index = _index_for(run, embedding, X)
    q = int(where[0])
    if k > len(cat) - 1:  # said, not capped in silence
        log.warning("k = %d, but the cube holds %d other galaxies: all of them are listed", k, len(cat) - 1)
    dist, idx = index.kneighbors(np.asarray(X[q:q + 1]), k=k + 1)
    # the galaxy itself first, whatever order the search gave galaxies at its distance (a copy of
    # its image, an embedding that ties them), then the k nearest others
    others = idx[0] != q
    rows = np.concatenate([[q], idx[0][others]])[:k + 1]
    dists = np.concatenate([[0.0], dist[0][others]])[:k + 1]
    table = _table(cat, rows, dists)
    name = _output_name(str(galaxy_id), embedding)
    cube = run.read_cube()
    return table, _write(run, name, table, [cube[r] for r in _in_order(cube, rows)])


def similar_to_image(run: RunDir, vector: np.ndarray, image: np.ndarray, embedding: str, k: int = 10,
                     query: str = "query", source: str | None = None) -> tuple[pd.DataFrame, Any]:
    """The ``k`` galaxies nearest to a new image, given its embedding ``vector``: a table and its gallery.

    Parameters
    ----------
    run : RunDir
    vector : ndarray, shape (D,)
        The image's embedding, computed like the run's galaxies' (same embedding, same model).
    image : ndarray, shape (C, S, S)
        The image as a cube row (shown first in the gallery, as "query").
    embedding : str
        The run's embedding searched.
    k : int
        Neighbours wanted.
    query : str
        What the query is called in the table (e.g. its file name) and in the output names.
    source : str, optional
        Where the image came from (e.g. its resolved path): two queries of different sources
        are written to different files even where ``query`` is the same (``a/g.jpg``, ``b/g.jpg``).

    Returns
    -------
    (DataFrame, Path)
        Rank 0 is the query (``id`` = ``query``, distance 0, no labels); ranks 1..k the nearest
        galaxies, with ``id``, ``distance`` and the catalogue's label columns; the gallery PNG
        in ``RUN/similar/``.
    """
    cat = run.cube_catalogue().reset_index(drop=True)
    X = run.embedding_of_cube(embedding)  # an earlier cube's gave others' neighbours
    v = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if v.shape[1] != X.shape[1]:
        raise UserError(f"the query has {v.shape[1]} values, the run's '{embedding}' embedding {X.shape[1]}")
    if not np.isfinite(v).all():
        raise UserError(f"the query's '{embedding}' embedding is not finite (NaN or inf)")
    if k > len(X):  # said, not capped in silence
        log.warning("k = %d, but the cube holds %d galaxies: all of them are listed", k, len(X))
    dist, idx = _index_for(run, embedding, X).kneighbors(v, k=k)
    table = _table(cat, idx[0], dist[0])
    head = pd.DataFrame({"rank": [0], "id": [str(query)], "distance": [0.0]})
    table = pd.concat([head, table.assign(rank=table["rank"] + 1)], ignore_index=True)
    cube = run.read_cube()
    name = _output_name(f"query_{query}", embedding, key=source)
    return table, _write(run, name, table, [np.asarray(image)] + [cube[r] for r in _in_order(cube, idx[0])])


def _output_name(label: str, embedding: str, key: str | None = None) -> str:
    """``<label>__<embedding>``, file-safe, with a short hash of ``key`` (else of ``label``) where
    the label lost characters to :func:`safe_name` or a key is given: two queries never share
    their files ("a b" and "a_b", or two images called alike in two folders)."""
    safe = safe_name(label)
    if key is not None or safe != label:
        safe += "-" + hashlib.sha1(str(label if key is None else key).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe}__{safe_name(embedding)}"


def _table(cat: pd.DataFrame, rows: np.ndarray, dist: np.ndarray) -> pd.DataFrame:
    """Rank, id, distance and label columns of cube rows ``rows``."""
    table = pd.DataFrame({"rank": np.arange(len(rows)), "id": cat["id"].astype(str).to_numpy()[rows],
                          "distance": np.asarray(dist, dtype=float).round(4)})
    for col in label_columns(cat):  # with their dtypes: an Int64 column with a gap became floats (2.0, NaN)
        table[col] = cat[col].iloc[rows].reset_index(drop=True)
    return table


def _in_order(cube: np.ndarray, rows: np.ndarray) -> list[int]:
    """``rows`` as they are (the gallery's order), after one sorted read to warm a memory map."""
    np.asarray(cube[np.sort(rows)])
    return [int(r) for r in rows]


def _write(run: RunDir, name: str, table: pd.DataFrame, images: list) -> Any:
    """Write ``RUN/similar/<name>.parquet`` and the gallery ``<name>.png``; return the gallery's path."""
    write_table(run.sub("similar") / f"{name}.parquet", table)
    gallery = run.sub("similar") / f"{name}.png"
    _gallery(images, table, gallery)
    return gallery


GALLERY_MAX = 100  # neighbours drawn in a gallery (the table holds all k)
GALLERY_COLUMNS = 10


def _gallery(images: list, table: pd.DataFrame, path) -> None:
    """The query and its neighbours in rows of :data:`GALLERY_COLUMNS`, the first
    :data:`GALLERY_MAX` neighbours at most (``--k 1000`` drew one row 130,000 px wide)."""
    from matplotlib.figure import Figure

    if len(images) > GALLERY_MAX + 1:
        log.info("the gallery shows the first %d of the %d neighbours (the table holds all)", GALLERY_MAX, len(images) - 1)
        images = images[:GALLERY_MAX + 1]
    cols = min(len(images), GALLERY_COLUMNS)
    rows = -(-len(images) // cols)
    fig = Figure(figsize=(1.3 * cols, 1.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[len(images):]:
        ax.set_axis_off()
    for ax, img, (_, row) in zip(axes, images, table.iterrows()):
        ax.imshow(display_image(np.asarray(img, dtype=np.float32)))
        ax.set_title("query" if row["rank"] == 0 else f"{row['rank']}: {row['distance']:.2f}", fontsize=7)
        ax.set_xlabel(figure_text(str(row["id"])[:14]), fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")


# --- the pixel baseline for a new image --------------------------------------------------------

def pixel_pca_rows(run: RunDir, rows: np.ndarray) -> np.ndarray:
    """The ``pixels_pca`` embedding of new cube rows, by the run's own pixel PCA.

    The run keeps the embedding, not the fitted PCA: it is refitted once on the run's cube (the
    incremental PCA is deterministic: same cube, same components), checked to reproduce the
    stored embedding, and kept in ``RUN/models/similar/`` beside a note of the files it came from.

    Parameters
    ----------
    run : RunDir
    rows : ndarray, shape (n, C, S, S)
        Preprocessed like the run's cube.

    Returns
    -------
    ndarray, shape (n, D), float32

    Raises
    ------
    UserError
        When the run has no ``pixels_pca`` embedding, or the refitted PCA does not reproduce it.
    """
    from .pixels import PixelPCA, pixel_pca_fit_rows

    stored = run.read_embedding("pixels_pca")
    cube = run.read_cube()
    if tuple(np.shape(rows)[1:]) != tuple(cube.shape[1:]):
        raise UserError(f"the run's cube holds {' x '.join(map(str, cube.shape[1:]))} images, "
                        f"got {tuple(np.shape(rows)[1:])}")
    stamp = {"embedding": file_stamp(run.embedding_path("pixels_pca")), "cube": file_stamp(run.cube)}
    folder = run.model_dir("similar")
    path, note = folder / "pixels_pca.model.pkl", folder / "pixels_pca.model.json"
    model = read_stamped_pickle(path, note, stamp)
    if not isinstance(model, PixelPCA):
        meta_path = run.embedding_path("pixels_pca").with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            fitted = pixel_pca_fit_rows(len(cube), meta)  # the embed stage's rows: a sample at scale
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # garbage, or not what embed writes
            raise run.damaged(meta_path, "embed", exc) from None
        model = PixelPCA(n_components=stored.shape[1]).fit(cube, rows=fitted)
        m = min(len(cube), 256)
        again = model.transform(cube[:m])
        if again.shape != stored[:m].shape or not np.allclose(again, stored[:m], rtol=1e-3,
                                                               atol=1e-4 * max(1.0, float(np.abs(stored).max()))):
            raise UserError(f"the pixel PCA refitted on {run.cube} does not reproduce embeddings/pixels_pca.npy: "
                            "re-run `morphospace embed`")
        write_stamped_pickle(path, note, stamp, model)
    return model.transform(np.asarray(rows, dtype=np.float32))


