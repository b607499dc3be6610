"""Input checks shared by the reducers and clusterers: scikit-learn's, as one-line errors.

``fit`` records ``n_features_in_`` and refuses NaN, infinities, complex and sparse input, 1-d
arrays and too few samples; ``transform`` / ``predict`` also refuse a different number of
features and an unfitted estimator (``NotFittedError``). A refusal is a
:class:`~morphospace.errors.InvalidArgument` (a ``ValueError``) carrying the first line of
scikit-learn's message, so the command line prints it as one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import InvalidArgument

__all__ = ["fit_input", "new_input", "whole_number", "positive_number", "check_random_state_param"]


def _one_line(exc: Exception) -> InvalidArgument:
    # scikit-learn's message on one line (its advice, e.g. "Reshape your data ...", kept)
    return InvalidArgument(" ".join(str(exc).split())[:600])


def fit_input(estimator: Any, X: Any, min_samples: int = 2) -> np.ndarray:
    """``X`` as a finite float64 (n_samples, n_features) array; sets ``estimator.n_features_in_``.
    An estimator's ``random_state`` is checked first (:func:`check_random_state_param`)."""
    if "random_state" in getattr(estimator, "__dict__", {}):
        check_random_state_param(estimator.random_state)
    try:
        X = validate_data(estimator, X, reset=True, dtype=np.float64, ensure_min_samples=min_samples)
    except ValueError as exc:
        raise _one_line(exc) from None
    biggest = max(float(X.max()), -float(X.min())) if X.size else 0.0  # no copy of X
    if biggest > 1e150:  # their squares overflow: a scaler's variance was inf, and scikit-learn said "X contains NaN"
        raise InvalidArgument(f"X holds values up to {biggest:.3g}, too large to work with (squared, they overflow): "
                              "rescale it")
    return X


def check_random_state_param(value: Any, name: str = "random_state") -> None:
    """A one-line :class:`InvalidArgument` for a ``random_state`` that is not None, an integer from 0 to
    2**32 - 1 or a numpy ``RandomState`` (scikit-learn's three): -1 or "x" reached numpy, PCA, KMeans
    or train_test_split and were refused there, in a message naming a function the user did not call."""
    if value is None or isinstance(value, np.random.RandomState):
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 2**32 - 1:
        raise InvalidArgument(f"{name} must be None, an integer from 0 to 2**32 - 1 or a numpy RandomState, "
                              f"got {value!r}")


def new_input(estimator: Any, X: Any) -> np.ndarray:
    """``X`` for a fitted estimator: as :func:`fit_input`, with as many features as it was fitted on."""
    check_is_fitted(estimator)
    try:
        return validate_data(estimator, X, reset=False, dtype=np.float64)
    except ValueError as exc:
        raise _one_line(exc) from None


def whole_number(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int, or a one-line :class:`InvalidArgument` naming the parameter: not a
    whole number (2.5, "3", True), below ``minimum`` or above ``maximum``. An estimator checks its
    parameters in ``fit``, as scikit-learn's do, rather than quietly using another value."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum:,}"
        raise InvalidArgument(f"{name} must be a whole number {span}, got {value!r}")
    return int(value)


def job_count(value: Any, name: str = "n_jobs") -> int | None:
    """``n_jobs`` as joblib reads it (None, or a whole number other than 0: -1 for every core), or a
    one-line :class:`InvalidArgument` (0 failed deep inside joblib: "n_jobs == 0 in Parallel has no meaning")."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value == 0:
        raise InvalidArgument(f"{name} must be a whole number other than 0 (-1: every core) or None, got {value!r}")
    return int(value)


def positive_number(value: Any, name: str) -> float:
    """``value`` as a finite float > 0, or a one-line :class:`InvalidArgument` naming the parameter."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def fraction(value: Any, name: str, open_low: bool = False, optional: bool = False) -> float | None:
    """``value`` as a float in [0, 1] ((0, 1] with ``open_low``; None passes with ``optional``), or a
    one-line :class:`InvalidArgument` naming the parameter."""
    if optional and value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (0 < value <= 1 if open_low else 0 <= value <= 1):
        raise InvalidArgument(f"{name} must be {'None or ' if optional else ''}a number in "
                              f"{'(' if open_low else '['}0, 1], got {value!r}")
    return float(value)
