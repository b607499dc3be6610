"""Anomalies on the form-first embedding, and their re-ranking from a user's tags (Astronomaly-style).

A galaxy is strange when its *form* is rare: the score is the mean Euclidean distance to its
k = 10 nearest other galaxies in the run's ``form`` embedding (self-supervised to give the same
code whatever the orientation, size, neighbours and seeing), so a bright neighbour or a frame
artefact alone does not make a galaxy strange the way it makes a pixel likelihood drop.
(``method="isolation_forest"`` is the option; on the synthetic survey, whose truth says which
galaxies are irregular or mergers, the k-NN distance puts more of them in its top 2%:
``benchmarks/bench_anomaly.py``.) The embedding is used as it is, as the similarity search uses
it: standardising or whitening its axes gives the weak, noisy ones the weight of the informative
ones. The neighbours are exact below :data:`~morphospace.analysis.neighbour_index.EXACT_BELOW` galaxies
(100,000) and come from an approximate index (faiss's inverted file) above, as for the similarity search.

Each score comes raw (a distance) and as a rank in [0, 1] (0 = the most ordinary, 1 = the
strangest). A user's tags re-rank it: every galaxy gets a *relevance* in [0, 1], a kernel
regression of the tags (interesting = 1, boring = 0) over the embedding, pulled to 0.5 where no
tag is near; a tagged galaxy's relevance is its tag. The current score is
``rank x 2 x relevance``: the rank unchanged far from every tag, up to twice it beside
interesting galaxies, down to zero beside boring ones (Astronomaly's "protege" multiplies the
anomaly score by a relevance regressed on the user's scores in the same way). A tag reaches its
galaxy's :data:`TAG_REACH` x ``k`` nearest galaxies, weighted by their rank among them (tricube:
1 beside it, 0 at the last), and no further, in sparse regions as in dense ones. A kernel of
distance could not do that: an anomaly's neighbours are far, and the width that reached them
reached the whole survey (a tagged merger moved the relevance of all 600 galaxies of a run of
sdss-gz1; one tag at the edge of a test cloud moved 95% of its relevances by over 0.05).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..errors import InvalidArgument
from .inputs import fit_input, new_input, whole_number
from .neighbour_index import SimilarityIndex, searches_exactly

__all__ = ["FormAnomaly", "TAG_REACH", "rank_normalise"]

METHODS = ("knn", "isolation_forest")
ALGORITHMS = ("auto", "exact", "approximate", "nndescent")  # "nndescent": the former name of "approximate"


def rank_normalise(scores) -> np.ndarray:
    """Ranks of ``scores`` scaled to [0, 1]: 0 for the lowest, 1 for the highest (ties share their mean rank).

    Parameters
    ----------
    scores : array-like of float
        Finite scores, higher = stranger.

    Returns
    -------
    ndarray of float64
        One value per score (0.5 for a single score).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size <= 1:
        return np.full(s.shape, 0.5)
    return (rankdata(s, method="average") - 1.0) / (s.size - 1.0)


def _drop_self(dist: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Each row's neighbour distances without the row itself (or without its farthest, if the search missed it)."""
    is_self = idx == np.arange(len(idx))[:, None]
    is_self[~is_self.any(1), -1] = True
    return dist[~is_self].reshape(len(idx), -1)[:, :k]


TAG_REACH = 2  # a tag reaches its galaxy's TAG_REACH x k nearest galaxies (the scorer's k)



def _checked_rows(n: int) -> np.ndarray:
    """The rows of a fit kept to recognise it again: 64 spread over it (a reorder moves some)."""
    return np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))

class FormAnomaly(BaseEstimator):
    """Anomaly score on an embedding: higher = rarer form.

    Parameters
    ----------
    method : {"knn", "isolation_forest"}
        ``"knn"``: mean Euclidean distance to the ``n_neighbors`` nearest other rows (the
        default); ``"isolation_forest"``: scikit-learn's isolation forest (its negated
        ``score_samples``).
    n_neighbors : int
        k of the k-NN distance, and of the neighbour distance that sets a tag's reach.
    algorithm : {"auto", "exact", "approximate"}
        How neighbours are found: exact (scikit-learn), an approximate index (faiss's inverted file;
        ``"nndescent"``, its former name, is read as it), or exact below :data:`EXACT_BELOW` rows
        and approximate from there on.
    n_estimators : int
        Trees of the isolation forest.
    random_state : int
        Seed of the approximate index's k-means and of the forest.

    Attributes
    ----------
    scores_ : ndarray (n_samples,)
        Raw score of each row of the fit (a row is not its own neighbour).
    ranks_ : ndarray (n_samples,)
        ``scores_`` as ranks in [0, 1] (:func:`rank_normalise`).
    neighbour_distance_ : ndarray (n_samples,)
        Mean distance of each row to its ``k_`` nearest others (``scores_`` for ``"knn"``).
    k_ : int
        The k used (``n_neighbors``, at most n_samples - 1).
    neighbours_ : SimilarityIndex
        The fitted neighbour search (:class:`~morphospace.analysis.neighbour_index.SimilarityIndex`,
        exact or approximate).
    search_ : object
        What scores new rows: ``neighbours_``, or the isolation forest.
    """

    def __init__(self, method: str = "knn", n_neighbors: int = 10, algorithm: str = "auto",
                 n_estimators: int = 200, random_state: int = 0):
        self.method = method
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.n_estimators = n_estimators
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgument(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.algorithm not in ALGORITHMS:
            raise InvalidArgument(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        for name in ("n_neighbors", "n_estimators"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")

    def fit(self, X, y=None) -> "FormAnomaly":
        """Score the rows of ``X`` (n_samples >= 2, n_features); ``y`` is ignored.

        Returns
        -------
        FormAnomaly
            ``self``, fitted.
        """
        self._check_params()
        X = fit_input(self, X, min_samples=2)
        n = len(X)
        self.k_ = int(min(self.n_neighbors, n - 1))
        exact = self.algorithm == "exact" or (self.algorithm == "auto" and searches_exactly(n))
        self.neighbours_ = SimilarityIndex(random_state=self.random_state, exact_below=n + 1 if exact else 0).fit(X)
        dist, idx = self.neighbours_.kneighbors(X, k=self.k_ + 1)  # each row's own first, or missed
        self.neighbour_distance_ = _drop_self(np.asarray(dist, np.float64), np.asarray(idx), self.k_).mean(1)
        if self.method == "knn":
            self.search_ = self.neighbours_
            self.scores_ = self.neighbour_distance_
        else:
            from sklearn.ensemble import IsolationForest

            self.search_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state).fit(X)
            self.scores_ = -self.search_.score_samples(X)
        self.ranks_ = rank_normalise(self.scores_)
        self.sorted_scores_ = np.sort(self.scores_)
        self.fit_rows_ = X[_checked_rows(len(X))]  # relevance() checks it is given the fit's rows, in order
        return self

    def anomaly_score(self, X) -> np.ndarray:
        """Raw scores of new rows against the rows of the fit (for the fit's own rows use ``scores_``).

        Parameters
        ----------
        X : array-like (n_queries, n_features)

        Returns
        -------
        ndarray (n_queries,)
            Higher = stranger (the opposite of scikit-learn's ``score_samples``).
        """
        X = new_input(self, X)
        if self.method == "isolation_forest":
            return -self.search_.score_samples(X)
        dist, _ = self.search_.kneighbors(X, k=self.k_)
        return np.asarray(dist, np.float64).mean(1)

    def rank(self, X) -> np.ndarray:
        """Ranks of new rows' scores among the fit's, in [0, 1] (the fraction of the fit's rows scoring lower).

        Parameters
        ----------
        X : array-like (n_queries, n_features)

        Returns
        -------
        ndarray (n_queries,)
        """
        s = self.anomaly_score(X)
        return np.searchsorted(self.sorted_scores_, s, side="left") / len(self.sorted_scores_)

    def relevance(self, X, interesting=(), boring=(), prior_weight: float = 1.0) -> np.ndarray:
        """How much each row of the fit resembles galaxies tagged interesting rather than boring.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
            The rows of the fit, in the same order.
        interesting, boring : sequence of int
            Rows tagged so.
        prior_weight : float
            Weight of the neutral 0.5 against the tags' weights (at most 1, the tag's nearest galaxy's).

        Returns
        -------
        ndarray (n_samples,)
            ``(prior_weight x 0.5 + sum_j w_j u_j) / (prior_weight + sum_j w_j)``, with u_j = 1
            for interesting, 0 for boring and w_j = (1 - (r / (R + 1))^3)^3 for a row that is the
            r-th nearest of tag j's R = ``TAG_REACH x k_`` nearest, 0 beyond; a tagged row's
            relevance is its tag.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        kept = getattr(self, "fit_rows_", None)  # none in a scorer cached by an earlier version
        if len(X) != len(self.scores_) or X.ndim != 2 or (kept is not None and (
                X.shape[1] != kept.shape[1] or not np.allclose(X[_checked_rows(len(X))], kept))):
            # other rows, or the fit's reordered: each tag's neighbours were looked up among the wrong rows
            raise InvalidArgument(f"relevance needs the {len(self.scores_)} rows of the fit, in its order")
        # a row tagged twice is one tag (it weighed twice, moving its neighbours' relevance)
        good, bad = (np.unique(_row_numbers(t, w)) for t, w in ((interesting, "interesting"), (boring, "boring")))
        rows = np.r_[good, bad]
        if rows.size and (rows.min() < 0 or rows.max() >= len(X)):
            raise InvalidArgument(f"tagged rows must lie in 0..{len(X) - 1}")
        both = np.intersect1d(good, bad)
        if both.size:  # the later tag silently won
            raise InvalidArgument(f"rows tagged both interesting and boring: {both[:5].tolist()}")
        out = np.full(len(X), 0.5)
        if not rows.size:
            return out
        u = np.r_[np.ones(len(good)), np.zeros(len(bad))]  # one row number (3) is one row
        reach = min(TAG_REACH * self.k_, len(X) - 1)
        _, idx = self.neighbours_.kneighbors(X[rows], k=reach + 1)
        weights = (1 - (np.arange(1, reach + 1) / (reach + 1)) ** 3) ** 3
        num, den = np.full(len(X), prior_weight * 0.5), np.full(len(X), float(prior_weight))
        for tag, value, near in zip(rows, u, np.asarray(idx)):
            near = near[near != tag][:reach]  # the tagged galaxy itself is not its own neighbour
            np.add.at(num, near, weights[:len(near)] * value)
            np.add.at(den, near, weights[:len(near)])
        out = num / den
        out[rows] = u
        return out

    def rerank(self, X, interesting=(), boring=()) -> np.ndarray:
        """The current score of every row of the fit: ``ranks_ x 2 x relevance`` (in [0, 2]).

        Parameters
        ----------
        X : array-like (n_samples, n_features)
            The rows of the fit.
        interesting, boring : sequence of int
            Rows tagged so.

        Returns
        -------
        ndarray (n_samples,)
            ``ranks_`` itself without tags.
        """
        return self.ranks_ * 2.0 * self.relevance(X, interesting, boring)


# the run --------------------------------------------------------------------------------------


def _row_numbers(rows, name: str) -> np.ndarray:
    """Tagged rows as int64 row numbers; a one-line :class:`InvalidArgument` for anything that is not
    a whole number (0.7 was quietly row 0)."""
    values = np.asarray(rows, dtype=object).ravel()
    for v in values:
        whole_number(v, f"{name} rows", minimum=0)
    return values.astype(np.int64)
