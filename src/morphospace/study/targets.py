"""Labels as the fine-tuner's loss wants them, the seeded train / validation split, the scores.

:func:`encode_targets` turns class labels into class indices, or checks vote fractions;
:func:`split_rows` holds out a stratified validation share; :func:`balanced_class_weights`
weights the loss by inverse class frequency so that rare classes (spirals among
ellipticals) shape the features too; :func:`validation_scores` scores the held-out rows.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd
import torch

from ..errors import UserError

__all__ = ["TASKS", "resolve_task", "encode_targets", "split_rows", "balanced_class_weights", "rmse",
           "validation_scores"]

log = logging.getLogger("morphospace")

TASKS = ("auto", "classification", "regression")
MIN_LABELLED = 4  # the fewest the split into training and validation takes


def resolve_task(y: np.ndarray, task: str = "auto") -> str:
    """The learning task of labels ``y``.

    Parameters
    ----------
    y : ndarray (N,) or (N, K)
        Labels.
    task : {"auto", "classification", "regression"}
        ``auto``: a 2-D float ``y`` (or a 1-D float ``y`` with non-integer values) is
        regression on vote fractions, anything else classification.

    Returns
    -------
    {"classification", "regression"}
    """
    if task != "auto":
        return task
    if y.dtype.kind == "f" and (y.ndim == 2 or not np.allclose(y, np.round(y))):
        return "regression"
    return "classification"


def encode_targets(y, task: str = "auto") -> tuple[np.ndarray, np.ndarray | None, str]:
    """Targets of the loss: class indices, or float32 vote fractions.

    Parameters
    ----------
    y : array-like (N,) or (N, K)
        Class labels (any sortable values), or vote fractions in [0, 1].
    task : {"auto", "classification", "regression"}
        See :func:`resolve_task`.

    Returns
    -------
    targets : ndarray
        ``(N,)`` int64 class indices, or ``(N, K)`` float32 fractions.
    classes : ndarray or None
        The sorted class labels (classification).
    task : {"classification", "regression"}

    Raises
    ------
    UserError
        No labels, missing labels, a single class, or fractions outside [0, 1].
    """
    if y is None:
        raise UserError("fine-tuning needs labels: name a catalogue label column in study.labels "
                        "(or use study.mode = frozen)")
    y = np.asarray(y)
    if len(y) == 0:
        raise UserError("fine-tuning needs labelled images, got none")
    if len(y) < MIN_LABELLED:  # said here, before any work: at the split, a study had ingested and saved them
        raise UserError(f"fine-tuning needs at least {MIN_LABELLED} labelled images, got {len(y)}")
    task = resolve_task(y, task)
    if task == "classification":
        if y.ndim != 1:
            raise UserError(f"class labels must be one per image, got shape {y.shape}")
        if pd.isna(y).any():
            raise UserError("labels contain missing values: drop those rows before fitting")
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise UserError(f"fine-tuning on classes needs at least 2 classes, got {len(classes)}")
        return codes.astype(np.int64), classes, task
    y = y.astype(np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
        raise UserError("vote fractions must be finite numbers in [0, 1]")
    return y, None, task


def split_rows(targets: np.ndarray, task: str, val_fraction: float, seed: int,
               test_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded train / validation / test split of the rows, stratified by class where it can be.

    The validation rows choose the epoch kept (and stop the training early); the test rows take
    no part in the fine-tuning at all: scores against the labels made there are held out (those
    made on the validation rows are a little optimistic: they chose the model).

    Parameters
    ----------
    targets : ndarray
        From :func:`encode_targets`; regression is stratified by the largest fraction.
    task : {"classification", "regression"}
    val_fraction : float
        Share of the rows for validation, in (0, 1).
    seed : int
    test_fraction : float
        Share of the rows held out for testing, in [0, 1); 0: no test rows (the split as before).

    Returns
    -------
    train, val, test : ndarray of int
        Sorted row numbers.
    """
    n = len(targets)
    if n < MIN_LABELLED:
        raise UserError(f"fine-tuning needs at least {MIN_LABELLED} labelled images, got {n}")
    strata = targets if task == "classification" else (targets.argmax(1) if targets.shape[1] > 1 else None)
    rows, test = np.arange(n), np.zeros(0, dtype=int)
    if test_fraction > 0:
        rows, test = _hold_out(rows, strata, int(math.ceil(n * float(test_fraction))), seed, "test")
    rows, val = _hold_out(rows, strata, int(math.ceil(n * float(val_fraction))), seed, "validation")
    return rows, val, test


def _hold_out(rows: np.ndarray, strata: np.ndarray | None, n_out: int, seed: int,
              what: str) -> tuple[np.ndarray, np.ndarray]:
    """``n_out`` of ``rows`` drawn out, stratified by ``strata`` (of every row) where it can be: the
    rest and those drawn, sorted."""
    from sklearn.model_selection import train_test_split

    if not 1 <= n_out < len(rows):
        raise UserError(f"{len(rows)} labelled images cannot give {n_out} to the {what} split and keep some to train "
                        f"on: label more galaxies")
    alone = np.zeros(0, dtype=int)
    strata = None if strata is None else strata[rows]
    if strata is not None:
        classes, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
        single = counts[inverse.ravel()] < 2
        # a class of one galaxy trains (it cannot be on both sides); the others stay stratified
        kept = int((counts >= 2).sum())
        if n_out < kept <= min(2 * n_out, len(rows) - int(single.sum()) - kept):
            # one of every class, up to twice the share asked: a small study's 10% validation (4 of 40
            # galaxies, 6 classes) was drawn at random, and the classes it missed chose no epoch
            n_out = kept
        if kept < 1 or n_out < kept or len(rows) - int(single.sum()) - n_out < kept:
            log.warning("too few rows per class for a stratified %s split: splitting at random", what)
            strata = None
        else:
            if single.any() and what == "validation":  # said once, by the last split drawn
                log.info("%d galaxies of classes too small to split kept for training", int(single.sum()))
            rows, alone, strata = rows[~single], rows[single], strata[~single]
    rest, out = train_test_split(rows, test_size=n_out, stratify=strata, random_state=int(seed), shuffle=True)
    if strata is not None and len(np.unique(strata[np.isin(rows, out)])) < min(n_out, len(np.unique(strata))):
        out = _one_of_each_first(rows, strata, n_out, seed)  # scikit-learn's rounding left a class out
        rest = np.setdiff1d(rows, out)
    return np.sort(np.concatenate([rest, alone])), np.sort(out)


def _one_of_each_first(rows: np.ndarray, strata: np.ndarray, n_out: int, seed: int) -> np.ndarray:
    """``n_out`` of ``rows`` (``n_out`` at least the classes of ``strata``, each of two rows or more):
    one of every class, the rest by each class's share, never all of a class (seeded)."""
    rng = np.random.default_rng(int(seed))
    classes, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    take = np.minimum(counts - 1, np.maximum(1, np.floor(n_out * counts / counts.sum()).astype(int)))
    for i in np.argsort(-(counts - take), kind="stable"):  # the rest to the classes with most left
        if take.sum() >= n_out:
            break
        take[i] += min(n_out - int(take.sum()), int(counts[i] - 1 - take[i]))
    for i in np.argsort(-take, kind="stable"):  # the ones of each went past n_out: the largest give back
        if take.sum() <= n_out:
            break
        take[i] -= min(int(take.sum()) - n_out, int(take[i]) - 1)
    return np.concatenate([rng.choice(rows[inverse == c], k, replace=False) for c, k in enumerate(take)])


def balanced_class_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency class weights, ``n / (K * count)`` (scikit-learn's "balanced").

    Parameters
    ----------
    codes : ndarray of int
        Class indices of the training rows.
    n_classes : int

    Returns
    -------
    ndarray (n_classes,) float32
        A class absent from ``codes`` is weighted as if it had one row.
    """
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return (len(codes) / (n_classes * np.maximum(counts, 1))).astype(np.float32)


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error of vote fractions (the Kaggle Galaxy Zoo score).

    Parameters
    ----------
    pred, truth : ndarray of the same shape

    Returns
    -------
    float
    """
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - truth) ** 2)))


def validation_scores(out: np.ndarray, truth: np.ndarray, task: str, classes: np.ndarray | None) -> dict:
    """Scores of head outputs on the validation split.

    Parameters
    ----------
    out : ndarray (n, K)
        Head outputs: logits (classification) or pre-sigmoid fractions (regression).
    truth : ndarray
        Targets from :func:`encode_targets`.
    task : {"classification", "regression"}
    classes : ndarray or None
        Class labels, in the order of the logits.

    Returns
    -------
    dict
        ``val_accuracy``, ``val_balanced_accuracy``, ``classification_report`` (scikit-learn's,
        as a dict), ``confusion_matrix`` (rows: true class, columns: predicted class) and
        ``val_rmse``; those of the other task are None.
    """
    from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix

    scores = dict.fromkeys(("val_accuracy", "val_balanced_accuracy", "classification_report", "confusion_matrix",
                            "val_rmse"))
    if task == "classification":
        pred = np.asarray(out).argmax(1)
        labels = np.arange(len(classes))
        scores["val_accuracy"] = float((pred == truth).mean())
        with warnings.catch_warnings():  # a class with no validation galaxy (one of a single galaxy) but predicted:
            # balanced over the classes validated, as said in the report; scikit-learn's warning went to the log
            warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
            scores["val_balanced_accuracy"] = float(balanced_accuracy_score(truth, pred))
        scores["classification_report"] = classification_report(
            truth, pred, labels=labels, target_names=[str(c) for c in classes], output_dict=True, zero_division=0)
        scores["confusion_matrix"] = confusion_matrix(truth, pred, labels=labels)
    else:
        scores["val_rmse"] = rmse(torch.sigmoid(torch.as_tensor(out)).numpy(), truth)  # as predict computes it
    return scores
