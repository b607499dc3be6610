"""Anomalies on the form-first embedding in a run, re-ranked from the user's tags: the stage
(``morphospace anomalies``, and the one ``embed`` and ``run`` end with) around
:class:`~morphospace.analysis.form_anomaly.FormAnomaly`, which says what the score is.

In a run: ``RUN/anomaly.parquet`` (``id``, ``form_anomaly``, ``form_anomaly_rank``,
``relevance``, ``score``, ``tag``; cube order), ``RUN/anomaly.json`` (what the score is),
``RUN/anomaly_tags.csv`` (``id``, ``tag``: the user's tags, merged call after call) and the
fitted scorer in ``RUN/models/anomaly/``.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd

from ..run import (RunDir, content_stamp, file_stamp, read_stamped_pickle, stamp_is_current, write_json,
                   write_stamped_pickle, write_table)
from .anomaly_tags import TAGS_FILE, read_tags
from .form_anomaly import TAG_REACH, FormAnomaly, rank_normalise
from .neighbour_index import EXACT_BELOW, INDEX_KIND

log = logging.getLogger("morphospace")

__all__ = ["FormAnomaly", "TAG_REACH", "rank_normalise", "anomaly_run", "read_anomaly", "saved_random_state",
           "tags_current", "tags_stamp", "ANOMALY_FILE", "META_FILE", "EXACT_BELOW"]

ANOMALY_FILE, META_FILE = "anomaly.parquet", "anomaly.json"
EMBEDDING = "form"


def _scorer_for(run: RunDir, X: np.ndarray, params: dict) -> FormAnomaly:
    """The run's fitted scorer over the form embedding: loaded when fitted on the same file and settings, else fitted."""
    stamp = {"embedding": EMBEDDING, **file_stamp(run.embedding_path(EMBEDDING)), **params, "index": INDEX_KIND}
    folder = run.model_dir("anomaly")
    path, note = folder / "scorer.pkl", folder / "scorer.json"
    scorer = read_stamped_pickle(path, note, stamp)
    if isinstance(scorer, FormAnomaly) and len(scorer.scores_) == len(X):
        return scorer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' notices
        scorer = FormAnomaly(**params).fit(X)
    write_stamped_pickle(path, note, stamp, scorer)
    return scorer


def anomaly_run(run: RunDir, method: str = "knn", n_neighbors: int = 10, random_state: int = 0) -> pd.DataFrame:
    """Score every galaxy of the run on its form embedding, re-rank by the run's tags, and write it.

    Parameters
    ----------
    run : RunDir
        A run with a ``form`` embedding.
    method, n_neighbors, random_state
        As :class:`FormAnomaly`.

    Returns
    -------
    DataFrame
        What ``RUN/anomaly.parquet`` now holds: ``id``, ``form_anomaly`` (raw), ``form_anomaly_rank``
        ([0, 1]), ``relevance`` (0.5: no tag near), ``score`` (the current score, rank x 2 x
        relevance) and ``tag`` ("" when untagged), in cube order.

    Raises
    ------
    UserError
        No form embedding, or one whose rows are not the cube's.
    """
    X = np.asarray(run.embedding_of_cube(EMBEDDING), dtype=np.float64)
    ids = run.cube_ids().astype(str)
    params = {"method": method, "n_neighbors": int(n_neighbors), "random_state": int(random_state)}
    scorer = _scorer_for(run, X, params)
    tags = read_tags(run)
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    row_of = row_of[~row_of.index.duplicated()]
    gone = tags[~tags["id"].isin(row_of.index)]
    if len(gone):
        log.warning("anomaly: %d tagged galaxies are not in the cube (kept in %s, not used): %s",
                    len(gone), TAGS_FILE, ", ".join(gone["id"].head(3)))
    tags = tags[tags["id"].isin(row_of.index)]
    interesting = row_of[tags.loc[tags["tag"] == "interesting", "id"]].to_numpy()
    boring = row_of[tags.loc[tags["tag"] == "boring", "id"]].to_numpy()
    relevance = scorer.relevance(X, interesting, boring)
    tag = np.full(len(ids), "", dtype=object)
    tag[interesting], tag[boring] = "interesting", "boring"
    table = pd.DataFrame({"id": ids, "form_anomaly": scorer.scores_.astype(np.float32),
                          "form_anomaly_rank": scorer.ranks_.astype(np.float32),
                          "relevance": relevance.astype(np.float32),
                          "score": (scorer.ranks_ * 2.0 * relevance).astype(np.float32), "tag": tag.astype(str)})
    how = (f"mean distance to the {scorer.k_} nearest galaxies" if method == "knn" else "isolation forest")
    description = f"the {how} in the form embedding"  # the report shows the raw score until there are tags
    if len(tags):
        description = (f"the rank of the {how} in the form embedding, x 2 x relevance to {len(interesting)} "
                       f"interesting and {len(boring)} boring tags")
    write_table(run.path / ANOMALY_FILE, table)
    write_json(run.path / META_FILE, {"what": "form anomaly" + (" (re-ranked by tags)" if len(tags) else ""),
                                      "description": description, "embedding": EMBEDDING, **params, "k": scorer.k_,
                                      "n_interesting": len(interesting), "n_boring": len(boring),
                                      "tags_stamp": tags_stamp(run)})
    return table


def tags_stamp(run: RunDir) -> dict | None:
    """The :func:`~morphospace.run.content_stamp` of the run's tags file (None without one): stored
    with the scores, so that a file edited since is said (:func:`anomaly_run` applies it)."""
    path = run.path / TAGS_FILE
    return content_stamp(path) if path.is_file() else None


def tags_current(run: RunDir, stamp: dict | None) -> bool:
    """Whether the run's tags file is the one :func:`tags_stamp` recorded (a copied run's is)."""
    return stamp_is_current(stamp, run.path / TAGS_FILE)


def _meta(run: RunDir) -> dict:
    """``RUN/anomaly.json``, or an empty dict where it is absent or cannot be read."""
    try:
        meta = json.loads((run.path / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def saved_random_state(run: RunDir) -> int:
    """The seed the run's anomaly score was computed with (``RUN/anomaly.json``), 0 where there is
    none or it cannot be read: a rerun keeps it, and a damaged table is no reason to stop that
    rerun, which rewrites it."""
    try:
        return int(_meta(run).get("random_state", 0))
    except (TypeError, ValueError):
        return 0


def read_anomaly(run: RunDir) -> tuple[pd.DataFrame, dict] | None:
    """``RUN/anomaly.parquet`` and what it is (``RUN/anomaly.json``), or None when absent.

    Returns
    -------
    (DataFrame, dict) or None
        The table as :func:`anomaly_run` wrote it and its description (``what``, ...).

    Raises
    ------
    UserError
        The file is damaged.
    """
    path = run.path / ANOMALY_FILE
    if not path.exists():
        return None
    table = run.read_table(path, "anomalies")
    if not {"id", "form_anomaly", "form_anomaly_rank", "score"} <= set(table.columns):
        raise run.damaged(path, "anomalies", "missing columns")
    return table, _meta(run)
