"""The reducers of the feature study, as scikit-learn transformers: the linear ones here, PCA and
LDA (shrunk), and the neighbour-graph maps of :mod:`~morphospace.analysis.maps`, t-SNE and
UMAP; :data:`REDUCERS` names all four. Each passes scikit-learn's ``check_estimator`` (the
maps except where a neighbour embedding cannot by design: tests/test_estimator_checks.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from ..errors import InvalidArgument
from .inputs import fit_input, new_input, whole_number
from .labels import labels_to_learn
from .maps import TSNEReducer, UMAPReducer

__all__ = ["PCAReducer", "LDAReducer", "TSNEReducer", "UMAPReducer", "REDUCERS"]


class PCAReducer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis to ``n_components`` dimensions.

    Parameters
    ----------
    n_components : int or float
        Output dimensions (clipped to the data's rank limit), or a fraction in (0, 1): as many
        axes as it takes to explain that fraction of the variance.
    random_state : int or None
        Seed of the randomised SVD solver (used on large inputs).

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
    explained_variance_ratio_ : ndarray of shape (n_components_,)
    n_components_ : int
        The axes kept.
    """

    def __init__(self, n_components: int | float = 2, random_state: Any = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit the PCA, ``n_components`` clipped to ``min(n_samples, n_features)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        fraction = isinstance(self.n_components, (float, np.floating)) and 0 < self.n_components < 1
        if not fraction:
            try:
                whole_number(self.n_components, "n_components")
            except InvalidArgument:
                raise InvalidArgument("n_components must be a whole number >= 1, or a fraction of the variance in "
                                      f"(0, 1), got {self.n_components!r}") from None
        X = fit_input(self, X)
        n_comp = float(self.n_components) if fraction else min(self.n_components, *X.shape)
        if not fraction and n_comp < self.n_components:  # said: the result had fewer columns without a word
            warnings.warn(f"PCA: {self.n_components} components asked of {X.shape[0]} rows of {X.shape[1]} "
                          f"features: {n_comp} kept (no more axes exist)", UserWarning, stacklevel=2)
        self.pca_ = PCA(n_components=n_comp, random_state=self.random_state).fit(X)
        self.n_components_ = int(self.pca_.n_components_)  # the axes kept (a fraction: as many as it takes)
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    @property
    def _n_features_out(self) -> int:  # get_feature_names_out: pcareducer0, pcareducer1, ...
        return self.n_components_

    def transform(self, X):
        """Coordinates of rows on the principal axes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components_)
        """
        X = new_input(self, X)  # NotFittedError before the fitted PCA is looked up
        return self.pca_.transform(X)


class LDAReducer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Linear discriminant analysis: the projection that best separates labelled classes.

    Rows whose label is missing (None, NaN, "") are ignored when fitting and
    transformed like every other row. LDA gives at most ``n_classes - 1``
    discriminant axes; when fewer than ``n_components`` exist (two classes give
    one), the remaining columns are the leading principal components of the
    class-centred data (the largest spread *within* classes), so a 2-D map is
    always 2-D. ``n_discriminants_`` says how many columns are discriminants.

    Parameters
    ----------
    n_components : int
    random_state : int or None
        Only used by the within-class PCA padding.

    Attributes
    ----------
    lda_ : sklearn.discriminant_analysis.LinearDiscriminantAnalysis
    classes_ : ndarray
    n_discriminants_ : int
    pad_pca_ : PCA or None
    """

    def __init__(self, n_components: int = 2, random_state: Any = 0):
        self.n_components = n_components
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    @property
    def _n_features_out(self) -> int:  # get_feature_names_out: ldareducer0, ...; NotFittedError before fit
        return self.n_discriminants_ + (0 if self.pad_pca_ is None else int(self.pad_pca_.n_components_))

    def fit(self, X, y=None):
        """Fit the shrunk LDA on the labelled rows, and the within-class PCA padding when needed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (compared as strings); missing ones are left out of the fit.

        Returns
        -------
        self

        Raises
        ------
        InvalidArgument
            ``y`` is None, of another length than ``X`` or with fewer than 2 classes, or the
            classes have too few galaxies for a within-class covariance.
        """
        if y is None:
            raise InvalidArgument("LDA requires y to be passed, but the target y is None: give it a label column")
        whole_number(self.n_components, "n_components")
        X = fit_input(self, X)
        y = np.asarray(y, dtype=object)
        if y.shape[0] != X.shape[0]:
            raise InvalidArgument(f"LDA: {y.shape[0]} labels for {X.shape[0]} rows")
        keep, yk = labels_to_learn(y)  # as a classifier reads them: "none" and infinite labels refused, 1 and 1.0 one class
        if yk.dtype.kind == "f" and np.all(np.mod(yk, 1) == 0):
            yk = yk.astype(np.int64)  # the classes named 1, 2, 3, not 1.0 ...
        yk = yk.astype(str)
        classes = np.unique(yk)
        if classes.size < 2:
            raise InvalidArgument(f"LDA needs at least 2 label classes, found {classes.size}")
        Xk = X[keep]
        n_disc = min(self.n_components, classes.size - 1, X.shape[1])
        # Ledoit-Wolf shrinkage of the within-class covariance: on 1,280 frozen ImageNet features
        # of 3,269 SDSS galaxies the unregularised (svd) LDA flung a few galaxies thousands of
        # units out and K-Means(3) on it scored AMI 0.00 against the classes; shrunk, 0.53
        try:
            with warnings.catch_warnings():
                # a class of one galaxy has no spread of its own to shrink; scikit-learn warns once per
                # such class (lines in every run log of a sample with rare classes) and counts it as none
                warnings.filterwarnings("ignore", message="Only one sample available", category=UserWarning)
                self.lda_ = LinearDiscriminantAnalysis(n_components=n_disc, solver="eigen", shrinkage="auto").fit(Xk, yk)
        except np.linalg.LinAlgError:  # scipy's is numpy's
            sizes = ", ".join(f"{c}: {int((yk == c).sum())}" for c in classes)
            raise InvalidArgument(f"LDA: the labelled galaxies barely spread within their classes ({sizes}): "
                                  "their within-class covariance is singular even shrunk; label more galaxies") from None
        self.classes_ = classes
        self.n_discriminants_ = n_disc
        n_pad = min(self.n_components, X.shape[1]) - n_disc
        self.pad_pca_ = None
        if n_pad > 0:
            means = {c: Xk[yk == c].mean(axis=0) for c in classes}
            centred = Xk - np.stack([means[c] for c in yk])
            self.pad_pca_ = PCA(n_components=n_pad, random_state=self.random_state).fit(centred)
            # centre the padding projection on the data mean, not the (zero) class-centred mean
            self._pad_mean = Xk.mean(axis=0)
        return self

    def transform(self, X):
        """Discriminant coordinates of rows, then the within-class padding columns.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, min(n_components, n_features_in_))
        """
        X = new_input(self, X)
        Z = self.lda_.transform(X)
        if self.pad_pca_ is not None:
            extra = (X - self._pad_mean) @ self.pad_pca_.components_.T
            Z = np.hstack([Z, extra])
        return Z


REDUCERS: dict[str, type] = {
    "pca": PCAReducer,
    "lda": LDAReducer,
    "tsne": TSNEReducer,
    "umap": UMAPReducer,
}
