"""Linear-probe evaluation of an embedding: how much of the labels a straight line can read.

The field's standard measure of a learned representation (e.g. Hayat et al. 2021; Walmsley
et al. 2022): a logistic regression on a small labelled fraction of the galaxies, scored on
the rest by balanced accuracy (the mean recall over classes, so that a majority class - the
ellipticals of Galaxy Zoo - cannot carry the score). Each fraction is drawn ``repeats`` times
(stratified, seeded); 100% means 5-fold stratified cross-validation over every labelled
galaxy. The regression weights classes by inverse frequency and picks its penalty by a
cross-validation inside the training rows (never the scored ones): the usual protocol of a
probe, which on sdss-gz1 at 10% reads 0.79 of the form embedding where an unweighted C = 1
fit reads 0.72. The labels are used here to *score*, never to train or choose anything
upstream.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..run.writes import read_parquet
from .inputs import fraction, job_count
from .labels import labels_in_cube_order, missing_mask

__all__ = ["linear_probe", "probe_run", "probe_classifier", "FRACTIONS", "CS"]

log = logging.getLogger("morphospace")

FRACTIONS = (0.01, 0.1, 1.0)


CS = np.logspace(-3, 2, 11)  # inverse regularisation strengths tried by the inner cross-validation


def probe_classifier(y_train):
    """The probe's classifier for the training labels ``y_train``, unfitted.

    Standardised features, then a logistic regression weighting classes by their inverse
    frequency, whose L2 strength is chosen among :data:`CS` by a 3-fold cross-validation inside
    the training rows (balanced accuracy); where a class has fewer than 3 training galaxies,
    C = 1. The one definition of the probe, shared by :func:`linear_probe` and
    :class:`morphospace.analysis.classify.FewLabelClassifier`.

    Parameters
    ----------
    y_train : array (N,)
        The labels the pipeline will be fitted on (only their counts are read).

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``StandardScaler`` then ``LogisticRegressionCV`` (or ``LogisticRegression``).
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.unique(np.asarray(y_train), return_counts=True)[1].min())
    if smallest >= 3:
        lr = LogisticRegressionCV(Cs=CS, cv=3, class_weight="balanced", scoring="balanced_accuracy", max_iter=3000,
                                  **_quiet_cv_options(LogisticRegressionCV))
    else:
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
    return make_pipeline(StandardScaler(), lr)


def _quiet_cv_options(estimator) -> dict:
    """The settings that keep ``LogisticRegressionCV`` quiet where scikit-learn changes its defaults.

    scikit-learn 1.9 warns (FutureWarning, once per fit: 90 lines in a demo run) that
    ``l1_ratios`` and the fitted attributes change in 1.10 unless both are set; earlier
    versions know neither setting, or warn that ``l1_ratios`` is unused with an L2 penalty.
    The probe reads only ``predict``, so the new attributes change nothing here.
    """
    import inspect

    if "use_legacy_attributes" not in inspect.signature(estimator).parameters:
        return {}
    return {"l1_ratios": (0.0,), "use_legacy_attributes": False}


def _fit_score(x_train, y_train, x_test, y_test) -> float:
    """Balanced accuracy on the test rows of :func:`probe_classifier` fitted on the training rows.

    Classes are weighted by their inverse frequency since the score is balanced accuracy: with
    70% ellipticals an unweighted fit on 1% of the labels mostly learns the prior.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score

    # fitted on integer codes: scikit-learn's class-balanced LogisticRegressionCV fails on labels
    # that are strings of digits ("The classes, [0, 3], are not in class_weight"; 1.9)
    _, codes = np.unique(np.concatenate([np.asarray(y_train), np.asarray(y_test)]), return_inverse=True)
    train, test = codes[:len(y_train)], codes[len(y_train):]
    clf = probe_classifier(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, train)
    return float(balanced_accuracy_score(test, clf.predict(x_test)))


MAX_ROWS = 20_000  # labelled galaxies a probe uses at most: its cost grows faster than N


def _labelled(y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which rows of ``y`` carry a label (not missing: None, NaN, blank, or text such as "N/A" or
    "null", :func:`~morphospace.analysis.labels.missing_mask`), those labels as class codes, and
    the class of each code. Values equal in Python are one class (1 and 1.0), values that are not
    are two (1 and "1"), as :func:`morphospace.compare` counts them (as text, 1 and 1.0 were two
    classes and 1 and "1" one)."""
    s = pd.Series(np.asarray(y, dtype=object))
    keep = ~missing_mask(s.to_numpy())
    codes, classes = pd.factorize(s[keep], sort=False)
    return keep, codes.astype(np.int64), np.asarray(classes, dtype=object)


def _stratified_sample(y: np.ndarray, classes: np.ndarray, counts: np.ndarray, size: int,
                       random_state: int, leave: int = 0) -> np.ndarray:
    """Sorted rows: each class's share of ``size``, drawn with ``random_state``, and at least two
    rows of every class (all of a class of one): a class sampled down to one galaxy could be neither
    split nor scored, and left the probe with no fraction at all. ``leave``: rows of every class
    not drawn (a training draw leaves galaxies of each class to score on)."""
    rng = np.random.default_rng(random_state)
    order = np.argsort(y, kind="stable")  # rows grouped by class, classes in ``classes`` order
    take = np.minimum(counts - leave, np.maximum(2, np.round(size * counts / counts.sum()).astype(int)))
    for i in np.argsort(-take, kind="stable"):  # rounding and the two of each went past size: the largest give back
        excess = int(take.sum()) - size
        if excess <= 0:
            break
        take[i] -= min(excess, max(0, int(take[i]) - 2))
    groups = np.split(order, np.cumsum(counts)[:-1])
    return np.sort(np.concatenate([rng.choice(g, k, replace=False) for g, k in zip(groups, take)]))


def _too_few_of_a_class(y_train: np.ndarray, n_classes: int) -> bool:
    """Whether a training draw lacks one of the ``n_classes`` classes or holds one of them once."""
    present, counts = np.unique(y_train, return_counts=True)
    return len(present) < n_classes or counts.min() < 2


def linear_probe(x: np.ndarray, y: np.ndarray, fractions=FRACTIONS, repeats: int = 5,
                 random_state: int = 0, max_rows: int | None = MAX_ROWS, n_jobs: int | None = None) -> pd.DataFrame:
    """Balanced accuracy of a logistic regression trained on fractions of the labelled rows.

    Parameters
    ----------
    x : ndarray (N, D)
    y : array (N,)
        Class labels; missing values (None, NaN, empty, "N/A", "null"...) are left out.
    fractions : sequence of float
        Fractions of the labelled rows to train on; 1.0 means a stratified cross-validation of 5
        folds (fewer where the smallest class has fewer than 5 rows).
    repeats : int
        Random stratified draws per fraction below 1.
    random_state : int
    max_rows : int or None
        Above this many labelled galaxies the probe runs on a stratified random sample of this
        many (drawn with ``random_state``; logged): the cross-validated logistic regression costs
        more than linearly in N (at 8,000 galaxies it was 80% of the compare stage), and its
        score has long settled by then. None: every labelled galaxy.
    n_jobs : int or None
        Processes that fit the draws and folds side by side (joblib's convention: None is 1,
        -1 every core); the scores do not depend on it.

    Returns
    -------
    DataFrame
        One row per fraction: ``fraction``, ``n_train`` (per draw), ``balanced_accuracy``
        (mean), ``std``, ``repeats``, ``chance`` (1 / classes), ``labelled`` (the labelled rows
        probed) and ``labelled_of`` (of how many: fewer above ``max_rows``). A fraction too small to
        hold two galaxies of every class (and one of each to score) is skipped, with a log line
        saying so.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    fractions = [fractions] if np.isscalar(fractions) else list(fractions)
    if not fractions:
        raise InvalidArgument("fractions must be one or more numbers in (0, 1], got none")
    fractions = [fraction(f, "fractions", open_low=True) for f in fractions]
    job_count(n_jobs)
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a whole number of at least 1, got {repeats!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or \
            not 0 <= random_state <= 2**32 - repeats:  # the last draw's seed, + repeats - 1, is numpy's last
        raise ValueError(f"random_state must be an integer from 0 to 2**32 - repeats (the probe's draws are "
                         f"random_state + repeat), got {random_state!r}")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer))
                                 or max_rows < 4):
        raise ValueError(f"max_rows must be None or a whole number of at least 4, got {max_rows!r}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or np.ndim(y) != 1 or len(x) != len(y):
        raise ValueError(f"a linear probe takes features N x F and one label per row, got shapes "
                         f"{x.shape} and {np.shape(y)}")
    keep, y, names = _labelled(y)
    x = x[keep]
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"the features of {int(bad.sum())} labelled rows are not finite (NaN or inf), e.g. row "
                         f"{int(np.flatnonzero(keep)[np.argmax(bad)])}")
    classes, counts = np.unique(y, return_counts=True)
    if (counts < 2).any():  # a class of one galaxy can be neither split nor scored: leave it out
        log.info("linear probe: %d classes of one galaxy left out (%s)", int((counts < 2).sum()),
                 ", ".join(repr(names[c]) for c in classes[counts < 2][:3]))
        kept = np.isin(y, classes[counts >= 2])
        x, y = x[kept], y[kept]
        classes, counts = classes[counts >= 2], counts[counts >= 2]
    if len(classes) < 2:
        raise ValueError("a linear probe needs at least two classes among the labelled rows")
    labelled_of = len(y)
    if max_rows is not None and max_rows < 2 * len(classes):  # two of every class: the sample would exceed it
        raise ValueError(f"max_rows ({max_rows}) must hold two galaxies of each of the {len(classes)} classes")
    if max_rows is not None and len(y) > max_rows:
        sample = _stratified_sample(y, classes, counts, max_rows, random_state)
        log.info("linear probe on a stratified sample of %d of the %d labelled galaxies", len(sample), len(y))
        x, y = x[sample], y[sample]
        classes, counts = np.unique(y, return_counts=True)
    splits: dict[float, list] = {}  # every draw and fold first, then all fitted side by side
    for frac in fractions:
        if frac >= 1.0:
            folds = min(5, int(counts.min()))
            if folds < 2:
                log.info("linear probe: a class has one galaxy; 100%% skipped")
                continue
            splits[frac] = list(StratifiedKFold(folds, shuffle=True, random_state=random_state).split(x, y))
        else:
            n_train = int(round(frac * len(y)))
            draws = []
            if n_train >= 2 * len(classes) and len(y) - n_train >= len(classes):
                # every class twice in every training draw, the rest by its share (a proportional split
                # gave a class of 5% one galaxy in a 1% draw of 2,000, and the fraction was skipped), and
                # one at least left to score: a class a draw lacks caps its balanced accuracy at
                # (K - 1) / K whatever the features
                every = np.arange(len(y))
                draws = [(tr, np.setdiff1d(every, tr)) for tr in
                         (_stratified_sample(y, classes, counts, n_train, random_state + r, leave=1)
                          for r in range(repeats))]
            if not draws or any(_too_few_of_a_class(y[tr], len(classes)) for tr, _ in draws):
                log.info("linear probe: %.0f%% of %d labelled galaxies is too few to train on two of each of "
                         "%d classes; skipped", 100 * frac, len(y), len(classes))
                continue
            splits[frac] = draws
    jobs = [(frac, tr, te) for frac, pairs in splits.items() for tr, te in pairs]
    scores = Parallel(n_jobs=n_jobs)(delayed(_fit_score)(x[tr], y[tr], x[te], y[te]) for _, tr, te in jobs)
    rows = []
    for frac, pairs in splits.items():
        got = [sc for (f, _, _), sc in zip(jobs, scores) if f == frac]
        rows.append({"fraction": frac, "n_train": len(pairs[-1][0]), "balanced_accuracy": float(np.mean(got)),
                     "std": float(np.std(got)), "repeats": len(got), "chance": 1.0 / len(classes),
                     # the labelled galaxies probed, and of how many (a sample above max_rows: said in the report)
                     "labelled": len(y), "labelled_of": labelled_of})
    # every fraction skipped: still the table's columns, for code that reads them
    return pd.DataFrame(rows, columns=["fraction", "n_train", "balanced_accuracy", "std", "repeats", "chance",
                                       "labelled", "labelled_of"])


def _chose_the_model(split: pd.Series, who: str, name: str) -> np.ndarray:
    """Which rows of a fine-tuning's split trained it or chose it: all but its test rows (and the
    unlabelled, named ""); a split without test rows (made before there were) has only its training
    rows counted, its validation rows, which chose the epoch kept, then scoring it, as said."""
    split = split.astype(str).to_numpy()
    if (split == "test").any():
        return (split != "test") & (split != "")
    if ((split != "train") & (split != "")).any():
        log.info("%s: %s's fine-tuning kept no test rows: scored on its validation rows, which chose the epoch kept "
                 "(a little optimistic; `morphospace study` again holds 20%% out)", who, name)
    return split == "train"


def fine_tuning_rows(run, name: str, who: str = "linear probe") -> np.ndarray | None:
    """The cube rows whose labels may have trained embedding ``name`` (a study's fine-tuned
    features: every galaxy but those its split, kept in its model folder, held out for testing), as a boolean
    mask; None for an embedding no label trained. ``who`` begins the warnings (the stage asking)."""
    import json

    meta_path = run.embedding_path(name).with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict):
        return None
    ids = run.cube_ids().astype(str)
    if meta.get("mode") != "finetune" or not meta.get("model_dir"):
        # features from a weights file: a study's fine-tuned model.pt names the galaxies it trained on beside it
        beside = Path(str(meta.get("weights_file") or "")).parent / "split.parquet"
        if not meta.get("weights_file") or not beside.is_file():
            return None
        try:
            split = read_parquet(beside)
            train = split[_chose_the_model(split["split"], who, name)]
        except (OSError, ValueError, KeyError):
            log.warning("%s: %s comes from fine-tuned weights whose split (%s) is unreadable: every galaxy counted "
                        "as trained on", who, name, beside)
            return np.ones(len(ids), dtype=bool)
        by_id = np.isin(ids, train["id"].astype(str).to_numpy())
        cat = run.cube_catalogue()
        if "source" not in train or "source" not in cat:  # a split of an earlier version: by id alone
            return by_id
        # ids recur across surveys (synth_000000): a galaxy is the one trained on where its file is too
        # (resolved: the same survey through a link); where no file matches, the survey may be the same
        # one moved, and its galaxies count as trained on, as by id alone (scores held out or none)
        trained = set(zip(train["id"].astype(str), (os.path.realpath(p) for p in train["source"].astype(str))))
        mask = np.array([(i, os.path.realpath(p)) in trained for i, p in zip(ids, cat["source"].astype(str))])
        if by_id.sum() > mask.sum():
            log.warning("%s: %d galaxies have the ids of galaxies %s was trained on (%s) but other files: %s",
                        who, int(by_id.sum() - mask.sum()), name, beside,
                        "another survey, or the same moved: counted as trained on, their scores left out" if not
                        mask.any() else "another survey's, counted as not trained on")
        return mask if mask.any() else by_id
    split_path = run.path / str(meta["model_dir"]) / "split.parquet"
    try:
        split = read_parquet(split_path)
        listed = split["id"].astype(str)
        held_out = set(listed[~_chose_the_model(split["split"], who, name)])
        unlisted = int((~np.isin(ids, listed.to_numpy())).sum())
    except (OSError, ValueError, KeyError):  # no split kept: every labelled galaxy may have trained it
        log.warning("%s: %s was fine-tuned, but its split (%s) is unreadable: every galaxy counted as "
                    "trained on", who, name, split_path)
        return np.ones(len(ids), dtype=bool)
    if unlisted:  # a galaxy the split does not name may have trained it: counted as trained on
        log.warning("%s: %d galaxies of the cube are not in %s's split: counted as trained on", who, unlisted, name)
    return ~np.isin(ids, list(held_out))


def probe_run(run, truth: str, catalogue: pd.DataFrame | None = None, repeats: int = 5,
              random_state: int = 0, n_jobs: int | None = None) -> pd.DataFrame:
    """:func:`linear_probe` of every embedding of a run against the label column ``truth``
    (``n_jobs`` processes fitting side by side)."""
    y = labels_in_cube_order(run, truth, catalogue)
    _, codes, names = _labelled(y)
    classes, counts = np.unique(codes, return_counts=True)
    if int((counts >= 2).sum()) < 2:  # what linear_probe needs; a stage goes on without the probe
        log.warning("linear probe skipped: '%s' has fewer than two classes of two or more galaxies (%s)", truth,
                    ", ".join(f"{names[c]}: {n}" for c, n in zip(classes[:4], counts[:4])) or "no labels")
        return pd.DataFrame()
    tables = []
    said: set[str] = set()

    def once(record: logging.LogRecord) -> bool:  # "10% ... is too few; skipped" was said once per embedding
        text = record.getMessage()
        if text in said:
            return False
        said.add(text)
        return True

    log.addFilter(once)
    try:
        for name in run.embeddings():
            t = _probe_embedding(run, name, y, truth, repeats, random_state, n_jobs)
            if t is not None:
                tables.append(t)
    finally:
        log.removeFilter(once)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _probe_embedding(run, name: str, y: np.ndarray, truth: str, repeats: int, random_state: int,
                     n_jobs: int | None) -> pd.DataFrame | None:
    """:func:`probe_run`'s probe of one embedding, or None where it is skipped (said)."""
    x = run.read_embedding(name)
    if len(x) != len(y):
        log.warning("linear probe: embedding %s has %d rows, the cube %d; skipped", name, len(x), len(y))
        return None
    trained = fine_tuning_rows(run, name)
    y_name = y
    if trained is not None:  # its labels trained the features: scored on the galaxies it held out
        y_name = y.copy()
        y_name[trained] = None
        log.info("linear probe: %s was fine-tuned on labels; probed on the %d labelled galaxies its "
                 "fine-tuning held out", name, int(_labelled(y_name)[0].sum()))
    try:
        t = linear_probe(x, y_name, repeats=repeats, random_state=random_state, n_jobs=n_jobs)
    except ValueError as exc:
        if trained is None:
            raise
        log.warning("linear probe of %s skipped: its held-out galaxies are too few (%s)", name, exc)
        return None
    t.insert(0, "embedding", name)
    t.insert(1, "label", truth)
    t["rows"] = "all labelled" if trained is None else "held out from fine-tuning"
    return t
