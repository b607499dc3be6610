"""Clustering of representations: K-Means, DBSCAN, HDBSCAN and a Gaussian mixture.

The estimators here wrap scikit-learn with the model selection the study needs:

- :class:`KMeansSelect` fits K-Means for every k of a range and scores each
  (silhouette, Calinski-Harabasz, Davies-Bouldin, inertia);
- :class:`DBSCANAuto` chooses DBSCAN's ``eps`` at the knee of the sorted
  k-distance curve;
- :class:`HDBSCANClusterer` is density clustering without ``eps``;
- :class:`GMMSelect` fits a Gaussian mixture for every k and keeps the
  BIC-best one (soft labels through ``predict_proba``).

Noise is the label ``-1`` (DBSCAN and HDBSCAN only) and is never renumbered.
:func:`cluster_run` runs the configured methods on every representation of a
run and stores ``clusterings/<method><k?>_<representation>.parquet``.

Cost on 20,000 rows (see ``benchmarks/bench_analysis.py``): everything is fast on
2-D maps; on wide embeddings (1,280-d CNN features) DBSCAN and HDBSCAN are slow
and weak (distances concentrate) and a warning says so.

Above ``cluster.fit_sample`` rows, DBSCAN, HDBSCAN and the Gaussian mixture are fitted on a
reproducible random sample of that many rows (drawn from ``cluster.seed``, in a stream of its own:
:func:`fit_sample_seed`) and extended to
every row with their ``predict``; the sampled rows keep the labels of the fit. K-Means turns
to MiniBatchKMeans over all rows. The log and each clustering's ``.json`` (``fit_sample``:
rows fitted, or null) say which ran on a sample.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data.sample import sample_rows
from ..errors import UserError
from ..progress import Timer
from ..run import RunDir, write_json, write_table
from ..run.provenance import input_stamp
# the stage's estimators, re-exported for their users
from .clusterers import GMMSelect, KMeansSelect, internal_scores  # noqa: F401
from .density import DENSITY_MAX_DIMS, DBSCANAuto, HDBSCANClusterer, k_distances, knee_index  # noqa: F401

log = logging.getLogger("morphospace")

__all__ = [
    "clustering_interrupted",
    "KMeansSelect",
    "DBSCANAuto",
    "HDBSCANClusterer",
    "GMMSelect",
    "knee_index",
    "fit_sample_seed",
    "k_distances",
    "internal_scores",
    "METHODS",
    "resolve_representations",
    "read_representation",
    "cluster_run",
]

METHODS = ("kmeans", "dbscan", "hdbscan", "gmm")


# --- the run stage ----------------------------------------------------------------------

def resolve_representations(run: RunDir, wanted: Sequence[str], leave_out: Sequence[str] = ()) -> list[str]:
    """Representation ids to cluster: embeddings and reductions of the run, filtered.

    ``wanted`` holds ids and the keywords ``all``, ``embeddings`` (or
    ``embedding``: every embedding) and ``reductions`` (every reduction), which
    pass over the maps in ``leave_out``. An explicit id that the run does not have
    is an error.
    """
    embeddings = run.embeddings()
    reductions = [r for r in run.reductions() if r not in leave_out]
    available = embeddings + [r for r in reductions if r not in embeddings]
    out: list[str] = []
    for w in wanted:
        key = w.strip()
        if key == "all":
            picks = available
        elif key in ("embedding", "embeddings"):
            picks = embeddings
        elif key in ("reduction", "reductions"):
            picks = [r for r in reductions if r not in embeddings]
        elif key in available:
            picks = [key]
        else:
            raise UserError(f"representation '{key}' not in {run.path} "
                            f"(available: {', '.join(available) or 'none: run embed/reduce first'})")
        out.extend(p for p in picks if p not in out)
    return out


def fit_sample_seed(seed: int) -> int:
    """The seed of the rows a clustering is fitted on above ``cluster.fit_sample``: drawn from its own
    stream, not ``cluster.seed`` itself. With the same seed a smaller draw of ``choice`` is part of a
    larger one, so every sampled fit on a t-SNE or UMAP map took only galaxies that map optimised,
    never those placed among them (packed closer: DBSCAN called noise by which sample a galaxy was in)."""
    return int(np.random.SeedSequence([int(seed), 0x636C]).generate_state(1)[0])


def read_representation(run: RunDir, rid: str) -> np.ndarray:
    """An embedding (preferred) or reduction of the run by representation id."""
    if rid in run.embeddings():
        return run.read_embedding(rid)
    return run.read_reduction(rid)


# the names of the clusterings this stage makes, by method (``<method>_<representation>``)
STAGE_METHODS = r"kmeans\d+|dbscan|hdbscan|gmm\d+"


def _drop_stale(run: RunDir, pattern: str, keep: set[str], say: bool = False) -> None:
    """Remove clusterings of this representation and method that this run no longer makes (``say``:
    in the log)."""
    rx = re.compile(pattern)
    for name in run.clusterings() + run.missing_clusterings():  # a record whose table was deleted too
        if rx.fullmatch(name) and name not in keep:
            _remove_clustering(run, name)
            if say:
                log.info("removed clustering %s: the configured methods no longer make it", name)


def _underway(run: RunDir) -> None:
    """Mark the stage under way before its first change to the run's clusterings, until it finishes:
    killed on the way, it leaves some clusterings new and the rest the earlier run's, which the compare
    stage and the report would show as one set. Not before: a stage refused or killed before it
    changed anything leaves the run's clusterings all of one stage."""
    marker = run.sub("clusterings") / UNDERWAY
    if not marker.is_file():
        write_json(marker, {"pid": os.getpid(), "started": time.time()})


def _write_clustering(run: RunDir, name: str, *args, **kwargs) -> None:
    _underway(run)
    run.write_clustering(name, *args, **kwargs)


def _remove_clustering(run: RunDir, name: str) -> None:
    """A clustering's table and its record."""
    _underway(run)
    run.clustering_path(name).unlink(missing_ok=True)
    run.clustering_path(name).with_suffix(".json").unlink(missing_ok=True)


def _fit_extend(estimator, X: np.ndarray, rows: np.ndarray | None, what: str):
    """Fit ``estimator`` on ``X[rows]`` (all of ``X`` when None) and return ``(estimator, labels,
    membership)`` of every row: the fit's own on the sample, ``predict`` (``predict_membership``
    where the estimator has memberships, HDBSCAN's ``probabilities_``) elsewhere; membership
    None for an estimator without one."""
    graded = hasattr(estimator, "predict_membership")
    if rows is None:
        estimator.fit(X)
        return estimator, estimator.labels_, estimator.probabilities_ if graded else None
    estimator.fit(X[rows])
    labels, member = estimator.predict_membership(X) if graded else (estimator.predict(X), None)
    labels[rows] = estimator.labels_
    if graded:
        member[rows] = estimator.probabilities_
    log.info("%s fitted on a sample of %d of %d rows, extended to the rest with predict", what, len(rows), len(X))
    return estimator, labels, member


def _meta(run: RunDir, name: str, meta: dict) -> None:
    write_json(run.clustering_path(name).with_suffix(".json"), meta)


def cluster_run(run: RunDir, cfg: Any, representations: Sequence[str] | None = None,
                methods: Sequence[str] | None = None) -> list[str]:
    """Cluster every selected representation of a run with every configured method.

    Parameters
    ----------
    run : RunDir
    cfg : Config
        Uses ``cluster.methods``, ``cluster.representations``, ``cluster.kmeans_k``,
        ``cluster.gmm_k``, ``cluster.gmm_covariance``, ``cluster.dbscan_min_samples``,
        ``cluster.hdbscan_min_cluster_size``, ``cluster.density_max_dims`` (DBSCAN
        and HDBSCAN skip wider representations), ``cluster.silhouette_sample``,
        ``cluster.fit_sample`` and ``cluster.seed``.
    representations, methods : sequence of str or None
        Override the configuration's lists.

    Returns
    -------
    list of str
        Names of the clusterings written: ``kmeans<k>_<rep>`` for every k of
        ``kmeans_k``, ``dbscan_<rep>``, ``hdbscan_<rep>`` and ``gmm<k>_<rep>`` at
        the BIC-best k. Each has a ``.json`` beside it (method, representation,
        parameters, seconds) and each representation a
        ``comparisons/k_selection_<rep>.csv`` with the internal scores of every
        fitted k (and of the density clusterings, k = clusters found).
    """
    c = cfg.cluster
    methods_asked = methods
    methods = [m.lower() for m in (methods if methods is not None else c.methods)]
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown clustering method '{m}' (known: {', '.join(METHODS)})")
    if not methods:
        raise UserError(f"no clustering method asked for (cluster.methods is empty; known: {', '.join(METHODS)})")
    wanted = representations if representations is not None else c.representations
    if not wanted:
        raise UserError("no representation asked for (cluster.representations is empty; 'all': every "
                        "embedding and reduction of the run)")
    from ..run.provenance import stale_results

    # a map made from an earlier embedding, or one the run no longer holds: its clusterings would be
    # left out of every comparison, the report and the export, so it is not clustered (said at the end)
    why = stale_results(run)
    stale = {r: why[f"reductions/{r}"] for r in run.reductions() if f"reductions/{r}" in why}
    reps = resolve_representations(run, wanted, leave_out=list(stale))
    passed_over = [r for r in stale if r not in reps and any(w.strip() in ("all", "reduction", "reductions")
                                                              for w in wanted)]
    if not reps:
        raise UserError(f"nothing to cluster in {run.path}: run `morphospace embed` or `reduce` first")
    ids = run.cube_ids()
    # K must be below the galaxies: said once for the stage, the rest of it still runs (DBSCAN and
    # HDBSCAN need no K), where each fit said it once per representation or stopped the stage
    asked_k = {"kmeans": list(c.kmeans_k), "gmm": list(c.gmm_k) or list(c.kmeans_k)}
    kmeans_k, gmm_k = ([k for k in asked_k[m] if k < len(ids)] for m in ("kmeans", "gmm"))
    for method, what in (("kmeans", "K-Means"), ("gmm", "the GMM")):
        left_out = [k for k in asked_k[method] if k >= len(ids)]
        if method in methods and left_out:
            log.warning("%d galaxies are too few for %s clusters: %s leaves them out, on every representation",
                        len(ids), ", ".join(map(str, left_out)), what)
    if not ({"dbscan", "hdbscan"} & set(methods) or ("kmeans" in methods and kmeans_k)
            or ("gmm" in methods and gmm_k)):
        # nothing would be made: refused before the run's clusterings change (the stage went on, removed
        # every earlier clustering as no longer made, and exited 0 with none)
        raise UserError(f"{len(ids)} galaxies are too few for every K asked (cluster.kmeans_k "
                        f"{list(c.kmeans_k)}" + (f", cluster.gmm_k {list(c.gmm_k)}" if "gmm" in methods else "")
                        + f"): give K below {len(ids)}, or a density method (dbscan, hdbscan)")
    written: list[str] = []
    bic_at_top: list[tuple[str, int]] = []  # (representation, k) where the BIC fell to the last k tried
    for rep in reps:
        X = np.asarray(read_representation(run, rep), dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(ids):
            raise UserError(f"representation '{rep}' has {X.shape[0]} rows but the cube has {len(ids)}: "
                            "re-run the stage that made it")
        spread = float(np.ptp(X, axis=0).max()) if X.size else 0.0
        scale = float(np.abs(X).max()) if X.size else 0.0
        if spread <= 1e-6 * max(scale, 1.0):
            # a cube of one image repeated: any split is of rounding noise, however perfect its scores
            log.warning("the galaxies are identical in %s (spread %.1g): its clusterings split them by rounding "
                        "noise alone", rep, spread)
        elif spread <= 1e-3 * scale:
            # a model that collapsed (every galaxy encoded to one point, give or take): its clusters say nothing
            log.warning("the galaxies barely differ in %s (spread %.1g against values up to %.3g): its clusterings "
                        "split what the model hardly tells apart (a model that collapsed? see its training log)",
                        rep, spread, scale)
        sample = sample_rows(X.shape[0], getattr(c, "fit_sample", 0), fit_sample_seed(c.seed))
        fitted = None if sample is None else len(sample)
        most = max([*(kmeans_k if "kmeans" in methods else []), *(gmm_k if "gmm" in methods else []), 2])
        if fitted is not None and fitted <= most:  # sklearn's "Found array with 1 sample(s)", or a split of 3 rows
            raise UserError(f"cluster.fit_sample = {fitted} galaxies is too few to fit up to {most} clusters on: "
                            "give 0 (fit on every galaxy) or a sample of thousands")
        base = {"representation": rep, "input_stamp": input_stamp(run, rep), "shape": list(X.shape),
                "fit_sample": fitted}  # the stamp: compare and the report know a clustering of an earlier rep
        selection: list[pd.DataFrame] = []
        max_dims = getattr(c, "density_max_dims", DENSITY_MAX_DIMS)
        density = not max_dims or X.shape[1] <= max_dims
        if not density and {"dbscan", "hdbscan"} & set(methods):
            log.info("DBSCAN/HDBSCAN skipped on %s: %d dimensions > cluster.density_max_dims = %d "
                     "(they are slow and unreliable there; cluster its 2-D maps)", rep, X.shape[1], max_dims)
        if "kmeans" in methods and kmeans_k:
            minibatch = f" (MiniBatch K-Means: {X.shape[0]:,} rows > cluster.fit_sample)" if fitted else ""
            with Timer(f"K-Means k={kmeans_k} on {rep}{minibatch}") as t:
                km = KMeansSelect(kmeans_k, random_state=c.seed, silhouette_sample=c.silhouette_sample,
                                  minibatch_above=getattr(c, "fit_sample", 0) or None).fit(X)
            base_km = {**base, "fit_sample": None, "minibatch": bool(fitted)}
            names = set()
            for k, labels in km.labels_by_k_.items():
                name = f"kmeans{k}_{rep}"
                _write_clustering(run, name, ids, labels)
                _meta(run, name, {**base_km, "method": "kmeans", "k": k, "best_k": km.best_k_,
                                  "seconds_all_k": round(t.elapsed, 3)})
                names.add(name)
            _drop_stale(run, rf"kmeans\d+_{re.escape(rep)}", names)
            written += sorted(names, key=lambda s: int(re.match(r"kmeans(\d+)", s).group(1)))
            selection.append(km.scores_.assign(method="kmeans", selected=km.scores_["k"] == km.best_k_))
        fitted_rows = X.shape[0] if sample is None else len(sample)
        if "dbscan" in methods and density and (c.dbscan_min_samples or 0) > fitted_rows:
            log.warning("DBSCAN on %s skipped: cluster.dbscan_min_samples (%d) exceeds its %d rows, so no row could "
                        "be a core row", rep, c.dbscan_min_samples, fitted_rows)
        elif "dbscan" in methods and density:
            with Timer(f"DBSCAN on {rep}") as t:
                db, labels, _ = _fit_extend(DBSCANAuto(min_samples=c.dbscan_min_samples or None, n_jobs=c.n_jobs),
                                            X, sample, f"DBSCAN on {rep}")
            name = f"dbscan_{rep}"
            noise = float(np.mean(labels < 0))
            _write_clustering(run, name, ids, labels)
            _meta(run, name, {**base, "method": "dbscan", "eps": db.eps_, "min_samples": db.min_samples_,
                              "n_clusters": db.n_clusters_, "noise_fraction": noise,
                              "seconds": round(t.elapsed, 3)})
            written.append(name)
            selection.append(pd.DataFrame([{
                "method": "dbscan", "k": db.n_clusters_, "eps": db.eps_, "min_samples": db.min_samples_,
                "noise_fraction": noise, "selected": True,
                **internal_scores(X, labels, c.silhouette_sample, c.seed)}]))
        if "hdbscan" in methods and density and (c.hdbscan_min_cluster_size or 0) > fitted_rows:
            log.warning("HDBSCAN on %s skipped: cluster.hdbscan_min_cluster_size (%d) exceeds its %d rows, so no "
                        "cluster could form", rep, c.hdbscan_min_cluster_size, fitted_rows)
        elif "hdbscan" in methods and density:
            with Timer(f"HDBSCAN on {rep}") as t:
                clusterer = HDBSCANClusterer(min_cluster_size=c.hdbscan_min_cluster_size or None, n_jobs=c.n_jobs)
                hd, labels, member = _fit_extend(clusterer, X, sample, f"HDBSCAN on {rep}")
            name = f"hdbscan_{rep}"
            noise = float(np.mean(labels < 0))
            _write_clustering(run, name, ids, labels, extra={"membership": member.astype(np.float32)})
            _meta(run, name, {**base, "method": "hdbscan", "min_cluster_size": hd.min_cluster_size_,
                              "n_clusters": hd.n_clusters_, "noise_fraction": noise,
                              "seconds": round(t.elapsed, 3)})
            written.append(name)
            selection.append(pd.DataFrame([{
                "method": "hdbscan", "k": hd.n_clusters_, "min_cluster_size": hd.min_cluster_size_,
                "noise_fraction": noise, "selected": True,
                **internal_scores(X, labels, c.silhouette_sample, c.seed)}]))
        if "gmm" in methods and gmm_k:
            with Timer(f"GMM ({c.gmm_covariance}) k={gmm_k} on {rep}") as t:
                gm = GMMSelect(gmm_k, covariance_type=c.gmm_covariance, random_state=c.seed)
                gm.fit(X if sample is None else X[sample])
                probs = gm.probabilities_ if sample is None else gm.predict_proba(X)
                if sample is not None:
                    log.info("GMM on %s fitted on a sample of %d of %d rows, extended to the rest with "
                             "predict_proba", rep, len(sample), len(X))
            name = f"gmm{gm.best_k_}_{rep}"
            _write_clustering(run, name, ids, np.argmax(probs, axis=1).astype(np.int64), probs)
            _meta(run, name, {**base, "method": "gmm", "k": gm.best_k_, "bic_at_range_top": gm.at_range_top_,
                              "covariance_type": c.gmm_covariance, "seconds_all_k": round(t.elapsed, 3)})
            if gm.at_range_top_:
                bic_at_top.append((rep, gm.best_k_))
            _drop_stale(run, rf"gmm\d+_{re.escape(rep)}", {name})
            written.append(name)
            selection.append(gm.scores_.assign(method="gmm", selected=gm.scores_["k"] == gm.best_k_))
        if selection:
            table = pd.concat(selection, ignore_index=True)
            first = ["method", "k", "selected"]
            table = table[first + [col for col in table.columns if col not in first]]
            write_table(run.sub("comparisons") / f"k_selection_{rep}.csv", table)
        if methods_asked is None:
            # the configured stage: what it no longer makes of this representation (a method taken out
            # of cluster.methods, DBSCAN now over cluster.density_max_dims) would be compared and
            # reported beside what it makes
            _drop_stale(run, rf"(?:{STAGE_METHODS})_{re.escape(rep)}", set(written), say=True)
    if passed_over:
        from ..run.provenance import read_record

        # `reduce RUN` maps the run's primary embedding alone: the advice names each embedding they came from
        made_of = sorted({str(read_record(run.reduction_path(r).with_suffix(".json")).get("embedding") or "")
                          for r in passed_over} & set(run.embeddings()))  # those gone: any reduce takes their maps away
        remake = " and ".join(f"`morphospace reduce RUN --embedding {e}`" for e in made_of) or "`morphospace reduce RUN`"
        log.warning("not clustered: %s (%s); %s makes them again, or takes them away with an embedding the run no "
                    "longer holds", ", ".join(passed_over), stale[passed_over[0]], remake)
    if bic_at_top:  # said once: on a wide embedding the BIC falls to the largest k nearly everywhere
        reps = [r for r, _ in bic_at_top]
        log.warning("GMM: the BIC chose the largest k tried (%d) on %s: the range chose k there, not the data; "
                    "widen cluster.gmm_k to search further", max(k for _, k in bic_at_top),
                    ", ".join(reps) if len(reps) <= 4 else f"{len(reps)} representations ({', '.join(reps[:3])}, ...)")
    if methods_asked is None and representations is None:
        # clusterings of a map or embedding the run no longer holds (a reduction taken out of
        # cluster.reductions): they would be compared and reported as this run's
        held = set(run.embeddings()) | set(run.reductions())
        for name in run.clusterings() + run.missing_clusterings():
            rep = re.fullmatch(rf"(?:{STAGE_METHODS})_(.+)", name)
            if rep and rep.group(1) not in held:
                _remove_clustering(run, name)
                log.info("removed clustering %s: its representation %s is no longer in the run", name, rep.group(1))
    (run.sub("clusterings") / UNDERWAY).unlink(missing_ok=True)
    return written


UNDERWAY = ".underway.json"  # in clusterings/: a cluster stage began and has not finished


def clustering_interrupted(run: RunDir) -> bool:
    """Whether the last cluster stage of ``run`` began and did not finish (killed, or stopped on an
    error after its first clustering): its clusterings are then partly its, partly the run's before."""
    return (run.path / "clusterings" / UNDERWAY).is_file()
