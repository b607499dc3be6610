"""Few-label classification on an embedding, and which galaxies to label next.

:class:`FewLabelClassifier` trains the project's linear probe
(:func:`morphospace.analysis.probe.probe_classifier`: standardised features, a class-balanced
logistic regression whose L2 strength is chosen by a cross-validation inside the training rows)
on the labelled rows of an embedding; rows whose label is missing (None, NaN, "") are the
unlabelled pool. From a handful to thousands of labels:

* **Cross-validated scores.** Stratified k-fold, k = min(``cv``, labels of the smallest class):
  balanced accuracy (the mean recall over classes) and the confusion matrix of the out-of-fold
  predictions. A class with fewer than 2 labels, or a single class, is a one-line error.
* **Calibrated probabilities** (:mod:`.calibration`). The logits are divided by one temperature T, fitted by
  minimising the log loss of out-of-fold logits (temperature scaling, Guo et al. 2017) made at
  the final model's L2 strength, so that they are on its scale: one parameter, and it never
  changes which class is predicted. T is used only where it lowers the log loss of held-out
  folds (each scaled by the T of the others); with a handful of labels it often does not, and
  the probabilities are then the model's own. The Brier score and the expected calibration
  error (ECE, 10 bins of the top probability) of the out-of-fold probabilities before and after
  (held-out folds again) are kept in ``calibration_``. The classes are weighted
  equally in training, so the probabilities are those of a sample with equal class priors; with
  known population fractions pi_k, p_k * pi_k (renormalised) converts them.
* **Active learning.** :meth:`FewLabelClassifier.suggest` picks the unlabelled rows whose labels
  should help most: the ``pool_factor * n`` most uncertain (smallest margin between the two most
  probable classes), clustered by k-means into ``n`` groups (standardised features, weighted by
  uncertainty), from each group the row nearest its centre. Uncertain, and not n copies of one
  ambiguous galaxy; typical of an uncertain region rather than its most extreme member (on
  sdss-gz1 taking each group's most uncertain row did worse than random choice: the most
  ambiguous galaxies are often ones whose Galaxy Zoo label is itself uncertain). With no label
  at all it gives diverse seeds: the rows nearest the centres of a k-means with ``n`` clusters
  of the whole pool.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InvalidArgument
from .calibration import fit_temperature, softmax
from .inputs import fit_input, new_input, whole_number
from .labels import labels_to_learn
from .probe import probe_classifier

__all__ = ["FewLabelClassifier", "check_labels", "margin_uncertainty"]

KMEANS_EXACT_MAX = 20_000  # above this many rows the seeds come from a mini-batch k-means


def check_labels(y_labelled) -> tuple[np.ndarray, np.ndarray]:
    """The classes of the labelled rows and their counts; a one-line error when they cannot train.

    Parameters
    ----------
    y_labelled : array (N,)
        Labels, none missing.

    Returns
    -------
    classes, counts : ndarray

    Raises
    ------
    InvalidArgument
        No labels, a single class, or a class with fewer than 2 labels.
    """
    classes, counts = np.unique(np.asarray(y_labelled), return_counts=True)
    if len(classes) == 0:
        raise InvalidArgument("no labels: label at least 2 galaxies of each of 2 classes")
    if len(classes) == 1:
        raise InvalidArgument(f"only one class ('{classes[0]}', {counts[0]} labels): "
                              "a classifier needs at least two classes")
    few = [f"'{c}'" for c, n in zip(classes, counts) if n < 2]
    if few:
        shown = ", ".join(few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
        hint = " (is the column of classes, not of names or ids?)" if len(few) > len(classes) / 2 else ""
        raise InvalidArgument(f"every class needs at least 2 labels; {len(few)} of the {len(classes)} classes have 1: "
                              f"{shown}{hint} (label more of them, or leave them out)")
    return classes, counts


def margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 minus the margin between the two most probable classes, per row (0: sure, 1: a tie)."""
    top = np.sort(np.asarray(proba), axis=1)
    return 1.0 - (top[:, -1] - top[:, -2])


def _one_label_per_row(y, warn: bool = True) -> np.ndarray:
    """``y`` as a 1-D object array; a column (n, 1) is one label per row too. Two columns were
    read row after row as twice as many labels ("X has 60 rows but y has 120 labels")."""
    if y is None:  # read as one label, "X has 40 rows but y has 1 labels"
        raise InvalidArgument("y must hold one label per row (None where a row has none), got None; to ask "
                              "what to label first, give y with every label None")
    y = np.asarray(y, dtype=object)
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise InvalidArgument(f"y must hold one label per row (1-D), got shape {y.shape}")
    if y.ndim == 2 and warn:  # taken, and said as scikit-learn's fit says it (its score does not)
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn("a column-vector y was passed when a 1d array was expected: read as one label per row",
                      DataConversionWarning, stacklevel=3)
    return y.ravel()


class FewLabelClassifier(ClassifierMixin, BaseEstimator):
    """A calibrated linear classifier from a few labels, with suggestions of what to label next.

    Parameters
    ----------
    cv : int
        Most folds of the cross-validated scores (fewer when the smallest class has fewer labels).
    calibrate : bool
        Temperature-scale the probabilities on the out-of-fold logits (``False``: T = 1).
    pool_factor : int
        :meth:`suggest` clusters the ``pool_factor * n`` most uncertain unlabelled rows.
    random_state : int
        Seeds the folds and the k-means of :meth:`suggest`.

    Attributes
    ----------
    classes_ : ndarray
        The classes (empty when fitted without labels: only :meth:`suggest` works then).
    model_ : sklearn.pipeline.Pipeline or None
        The probe fitted on every labelled row.
    temperature_ : float
        What the logits are divided by (1: not calibrated, or the calibration did not help).
    cv_balanced_accuracy_ : float
        Of the out-of-fold predictions (NaN without labels).
    cv_confusion_matrix_ : ndarray (K, K)
        Rows: true class, columns: predicted, in the order of ``classes_``.
    cv_n_splits_ : int
    oof_proba_ : ndarray (N_labelled, K)
        Out-of-fold probabilities of the labelled rows (at the final model's L2 strength, divided
        by ``temperature_``).
    calibration_ : dict
        ``method`` (how, or why not), ``temperature``, ``before`` and (where calibrating)
        ``after``: :func:`~morphospace.analysis.calibration.calibration_scores` of the out-of-fold
        probabilities, each held-out fold scaled by the temperature fitted on the others.
    labelled_ : ndarray of bool (N,)
        Which rows of the fitted ``X`` had a label.
    X_ : ndarray (N, D)
        The fitted rows (the pool of :meth:`suggest`).
    n_features_in_ : int
    """

    def __init__(self, cv: int = 5, calibrate: bool = True, pool_factor: int = 5, random_state: int = 0):
        self.cv = cv
        self.calibrate = calibrate
        self.pool_factor = pool_factor
        self.random_state = random_state

    # --- fitting -------------------------------------------------------------------------------

    def fit(self, X, y) -> "FewLabelClassifier":
        """Cross-validate, calibrate and fit on the labelled rows of ``X``; keep every row as the pool.

        Parameters
        ----------
        X : array (N, D)
            The embedding of every galaxy, labelled or not.
        y : array (N,)
            Labels; missing ones (None, NaN, "", "N/A", ...) mark the unlabelled rows. With no
            label at all only :meth:`suggest` can be used.

        Returns
        -------
        self
        """
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix
        from sklearn.model_selection import StratifiedKFold

        if not (isinstance(self.cv, (int, np.integer)) and self.cv >= 2):
            raise InvalidArgument(f"cv must be an integer of at least 2, got {self.cv!r}")
        whole_number(self.pool_factor, "pool_factor")  # 0 or -1 were taken, and suggest() pooled n rows
        if not isinstance(self.calibrate, (bool, np.bool_)):  # "no" is truthy: it calibrated
            raise InvalidArgument(f"calibrate must be True or False, got {self.calibrate!r}")
        X = fit_input(self, X, min_samples=1)
        y = _one_label_per_row(y)
        if len(y) != len(X):
            raise InvalidArgument(f"X has {len(X)} rows but y has {len(y)} labels")
        self.labelled_, yl = labels_to_learn(y)  # "none" refused: its class vanished into the unlabelled pool
        self.X_ = X
        self.temperature_ = 1.0
        self.model_ = None
        self.cv_balanced_accuracy_ = float("nan")
        self.cv_n_splits_ = 0
        self.calibration_ = {}
        if not self.labelled_.any():
            self.classes_ = np.array([], dtype=object)
            self.cv_confusion_matrix_ = np.zeros((0, 0), dtype=int)
            self.oof_proba_ = np.zeros((0, 0))
            return self
        self.classes_, counts = check_labels(yl)
        codes = np.searchsorted(self.classes_, yl)
        xl = X[self.labelled_]
        k = int(min(self.cv, counts.min()))
        folds = StratifiedKFold(k, shuffle=True, random_state=self.random_state)
        self.model_ = _fit(xl, codes)
        penalty = _chosen_c(self.model_)
        split = list(folds.split(xl, codes))
        # the scores: each fold's model chooses its own penalty inside its training rows, as the final
        # one did on all of them (nothing of the held-out fold chooses anything)
        logits = np.zeros((len(yl), len(self.classes_)))
        for tr, te in split:
            logits[te] = _logits(_fit(xl[tr], codes[tr]), xl[te])
        pred = self.classes_[logits.argmax(axis=1)]
        self.cv_n_splits_ = k
        self.cv_balanced_accuracy_ = float(balanced_accuracy_score(yl, pred))
        self.cv_confusion_matrix_ = confusion_matrix(yl, pred, labels=self.classes_)
        # the calibration: out-of-fold logits of models with the final model's penalty, so that they
        # are as large as the final model's. A fold's own penalty, chosen on a handful of labels, was
        # often 30-300x stronger: logits a tenth of the final model's, a temperature of 0.05 fitted
        # to them, and the final model's probabilities 0.99+ for 96% of the galaxies, right for 72%
        scaled = np.zeros_like(logits)
        for tr, te in split:
            scaled[te] = _logits(_fit(xl[tr], codes[tr], penalty), xl[te])
        self.temperature_, self.calibration_ = fit_temperature(scaled, codes, split, self.calibrate)
        self.oof_proba_ = softmax(scaled / self.temperature_)
        return self

    # --- prediction ----------------------------------------------------------------------------

    def _check_model(self) -> None:
        check_is_fitted(self)
        if self.model_ is None:
            raise InvalidArgument("the classifier was fitted without labels: it can only suggest galaxies to label")

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities (N, K), columns in the order of ``classes_``."""
        self._check_model()
        return softmax(_logits(self.model_, new_input(self, X)) / self.temperature_)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row."""
        self._check_model()
        return self.classes_[_logits(self.model_, new_input(self, X)).argmax(axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy on the labelled rows of ``X`` (a missing label is the unlabelled pool, as in
        :meth:`fit`, and is not scored); labels of mixed types compared as text, as :meth:`fit` does.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels, missing ones (None, NaN, "") left out.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        self._check_model()
        X = new_input(self, X)
        y = _one_label_per_row(y, warn=False)
        if len(y) != len(X):
            raise InvalidArgument(f"X has {len(X)} rows but y has {len(y)} labels")
        known, truth = labels_to_learn(y)  # as fit reads labels
        if not known.any():
            raise InvalidArgument("no labelled row to score: every label is missing")
        pred = self.predict(X[known])
        if (truth.dtype.kind in "US") != (pred.dtype.kind in "US"):
            truth, pred = truth.astype(str), pred.astype(str)  # mixed types: compared as text, as fit does
        weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=float).ravel()
            if len(weight) != len(y) or not np.isfinite(weight).all() or (weight < 0).any() or weight[known].sum() <= 0:
                raise InvalidArgument("sample_weight must be one finite weight >= 0 per row, not all 0 on the labelled rows")
            weight = weight[known]
        return float(np.average(pred == truth, weights=weight))

    def uncertainty(self, X=None) -> np.ndarray:
        """Margin uncertainty (:func:`margin_uncertainty`) of the rows of ``X`` (default: the fitted rows)."""
        return margin_uncertainty(self.predict_proba(self.X_ if X is None else X))

    # --- active learning -----------------------------------------------------------------------

    def suggest(self, n: int) -> np.ndarray:
        """The ``n`` unlabelled rows (of the fitted ``X``) whose labels should help most.

        Parameters
        ----------
        n : int
            How many (fewer when fewer rows are unlabelled).

        Returns
        -------
        ndarray of int
            Row numbers of the fitted ``X``, never a labelled row, no repeats: the most uncertain
            first; without labels, seeds in the order of their k-means cluster's size.
        """
        from sklearn.preprocessing import StandardScaler

        check_is_fitted(self)
        if isinstance(n, bool) or not (isinstance(n, (int, np.integer)) and n >= 1):
            raise InvalidArgument(f"the number of suggestions must be a positive integer, got {n!r}")
        pool = np.flatnonzero(~self.labelled_)
        n = min(int(n), len(pool))
        if n == 0:
            return np.zeros(0, dtype=int)
        Z = StandardScaler().fit(self.X_).transform(self.X_)
        if self.model_ is None:
            return pool[_seeds(Z[pool], n, self.random_state)]
        u = self.uncertainty(self.X_[pool])
        m = min(len(pool), max(int(self.pool_factor) * n, n))
        cand = np.argsort(-u, kind="stable")[:m]
        if m > n:
            zc = Z[pool[cand]]
            groups = _kmeans(zc, n, self.random_state, weight=u[cand] + 1e-6)
            chosen = []
            for g in np.unique(groups):  # the member nearest its group's centre: typical of an uncertain region
                members = np.flatnonzero(groups == g)
                centre = zc[members].mean(axis=0)
                chosen.append(int(cand[members[np.argmin(((zc[members] - centre) ** 2).sum(axis=1))]]))
            for i in cand:  # fewer groups than n (duplicate rows): the next most uncertain
                if len(chosen) >= n:
                    break
                if i not in chosen:
                    chosen.append(int(i))
            cand = np.array(chosen[:n])
        cand = cand[np.argsort(-u[cand], kind="stable")]
        return pool[cand]


def _fit(x, y, penalty: float | None = None):
    """The probe fitted on ``y``, integer codes: scikit-learn's class-balanced LogisticRegressionCV
    fails on labels that are strings of digits (1.9: "The classes, [0, 3], are not in class_weight").
    With ``penalty``, the probe at that C instead of one chosen by its cross-validation."""
    from sklearn.exceptions import ConvergenceWarning

    clf = probe_classifier(y)
    if penalty is not None:
        from sklearn.linear_model import LogisticRegression

        clf.steps[-1] = (clf.steps[-1][0], LogisticRegression(C=penalty, class_weight="balanced", max_iter=3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def _chosen_c(clf) -> float:
    """The L2 strength C the fitted probe uses (chosen by its cross-validation, or its fixed one)."""
    lr = clf.steps[-1][1]
    return float(np.ravel(lr.C_)[0]) if hasattr(lr, "C_") else float(lr.C)


def _logits(clf, x) -> np.ndarray:
    """Per-class logits (N, K) of a fitted probe; a binary model's one score becomes (0, score)."""
    d = clf.decision_function(x)
    return np.column_stack([np.zeros(len(d)), d]) if d.ndim == 1 else d


def _kmeans(Z: np.ndarray, k: int, seed: int, weight=None) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct points than clusters" on duplicated rows
        if len(Z) > KMEANS_EXACT_MAX:
            km = MiniBatchKMeans(k, n_init=3, random_state=seed, batch_size=4096)
        else:
            km = KMeans(k, n_init=3, random_state=seed)
        return km.fit(Z, sample_weight=weight).labels_ if weight is not None else km.fit(Z).labels_


def _seeds(Z: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` distinct rows of ``Z``, each nearest to one k-means centre (biggest cluster first)."""
    labels = _kmeans(Z, n, seed)
    sizes = np.bincount(labels, minlength=n)
    chosen: list[int] = []
    for g in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(labels == g)
        if not len(members):
            continue
        centre = Z[members].mean(axis=0)
        order = members[np.argsort(((Z[members] - centre) ** 2).sum(axis=1), kind="stable")]
        pick = next((int(i) for i in order if i not in chosen), None)
        if pick is not None:
            chosen.append(pick)
    rest = (i for i in range(len(Z)) if i not in chosen)  # empty clusters (duplicate rows): fill up
    while len(chosen) < n:
        chosen.append(next(rest))
    return np.array(chosen, dtype=int)
