"""Calibration of a classifier's probabilities: one temperature fitted on out-of-fold logits
(temperature scaling, Guo et al. 2017), kept only where it lowers the log loss of held-out folds,
and the scores that judge it (the Brier score and the expected calibration error)."""

from __future__ import annotations

import numpy as np

__all__ = ["calibration_scores", "fit_temperature", "softmax"]


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, K), shifted by each row's largest for stability."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibration_scores(proba: np.ndarray, codes: np.ndarray, bins: int = 10) -> dict:
    """Brier score (multi-class: mean squared distance to the one-hot truth) and expected
    calibration error of probabilities ``proba`` (N, K) for true class indices ``codes``.

    Returns
    -------
    dict
        ``brier``, ``ece`` (|accuracy - confidence| averaged over ``bins`` equal-width bins of
        the top probability, weighted by the rows in each).
    """
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.eye(proba.shape[1])[codes]
    brier = float(((proba - onehot) ** 2).sum(axis=1).mean())
    conf, hit = proba.max(axis=1), (proba.argmax(axis=1) == codes).astype(float)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece = sum(abs(hit[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    return {"brier": brier, "ece": float(ece)}


def _temperature(logits: np.ndarray, codes: np.ndarray) -> float:
    """The temperature T minimising the log loss of softmax(logits / T) (T in [0.05, 20])."""
    from scipy.optimize import minimize_scalar

    def nll(log_t):
        p = softmax(logits / np.exp(log_t))
        return -np.log(np.clip(p[np.arange(len(codes)), codes], 1e-12, None)).mean()

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def _log_loss(proba: np.ndarray, codes: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, codes: np.ndarray, split, enabled: bool = True) -> tuple[float, dict]:
    """The temperature to use and the calibration's record, from out-of-fold ``logits``.

    Judged on held-out folds: each fold's probabilities are scaled by the temperature fitted on
    the other folds, so the "after" figures are of labels the temperature did not see. The
    temperature (fitted on all folds) is used only where that lowers the held-out log loss: on a
    handful of labels it is noise, and scaled by it the probabilities were worse than without.
    """
    before = softmax(logits)
    record = {"temperature": 1.0, "before": calibration_scores(before, codes)}
    if not enabled:
        return 1.0, {**record, "method": "none"}
    after = np.zeros_like(before)
    for tr, te in split:
        after[te] = softmax(logits[te] / _temperature(logits[tr], codes[tr]))
    record["after"] = calibration_scores(after, codes)
    if _log_loss(after, codes) >= _log_loss(before, codes):
        return 1.0, {**record, "method": "none: temperature scaling did not lower the log loss of held-out folds"}
    t = _temperature(logits, codes)
    return t, {**record, "temperature": t, "method": "temperature scaling on out-of-fold logits"}
