"""Merging mixture components into clusters by entropy (Baudry et al. 2010): the path, both elbows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from morphospace.vade.merge import ComponentMerger, elbow, entropy


def _split_blobs(seed: int = 0):
    """Three well-separated elongated groups, each described by two Gaussian components."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    sizes = (400, 250, 150)
    x = np.concatenate([c + rng.normal(size=(n, 2)) * [6.0, 1.0] for c, n in zip(centres, sizes)])
    truth = np.repeat(np.arange(3), sizes)
    gm = GaussianMixture(6, covariance_type="diag", random_state=seed, n_init=3).fit(x)
    return gm.predict_proba(x), truth


@pytest.mark.parametrize("elbow_on", ["observations", "clusters"])
def test_merging_the_split_components_recovers_the_groups(elbow_on):
    proba, truth = _split_blobs()
    assert len(np.unique(proba.argmax(1))) == 6  # the mixture did split the groups
    m = ComponentMerger(elbow_on=elbow_on).fit(proba)
    assert m.n_clusters_ == 3
    assert adjusted_rand_score(truth, m.predict(proba)) > 0.99
    assert sorted(sum(m.groups_, [])) == list(range(6))
    cp = m.transform(proba)
    assert cp.shape == (len(proba), 3) and np.allclose(cp.sum(1), 1.0)
    # merging never raises the entropy; 1 cluster has none
    path = [m.entropy_path_[k] for k in range(6, 0, -1)]
    assert all(b <= a + 1e-9 for a, b in zip(path, path[1:])) and path[-1] == pytest.approx(0.0, abs=1e-9)
    assert m.entropy_path_[6] == pytest.approx(entropy(proba))


def test_merged_path_counts_the_galaxies_each_merge_involves():
    proba, _ = _split_blobs(1)
    m = ComponentMerger().fit(proba)
    k = proba.shape[1]
    assert m.merged_path_[k] == 0
    # the first merge: the pair whose union lowers the entropy most, counted by the galaxies assigned to it
    best = max(((entropy(proba) - entropy(np.column_stack([np.delete(proba, [a, b], 1), proba[:, a] + proba[:, b]])), a, b)
                for a in range(k) for b in range(a + 1, k)))
    _, a, b = best
    assigned = proba.argmax(1)
    assert m.merged_path_[k - 1] == np.count_nonzero((assigned == a) | (assigned == b))
    steps = np.diff([m.merged_path_[kk] for kk in range(k, 0, -1)])
    assert (steps >= 0).all() and m.merged_path_[1] <= (k - 1) * len(proba)


def test_the_rescaled_elbow_weighs_each_merge_by_the_galaxies_it_involves():
    """Entropy drops of 20, 20, 5, 5, 5: against the number of clusters the break is at 4; but the
    5-unit drop to 3 clusters involved 2.5 galaxies against 10 for the first two (the same drop per
    galaxy: overlapping components), and the later ones 100 each: against galaxies merged, at 3."""
    ks = np.array([6, 5, 4, 3, 2, 1])
    ent = np.array([100.0, 80.0, 60.0, 55.0, 50.0, 45.0])
    merged = np.array([0.0, 10.0, 20.0, 22.5, 122.5, 222.5])
    assert elbow(ks, ent) == 4
    assert elbow(ks, ent, x=merged) == 3
    assert elbow(ks, ent, min_k=5, x=merged) == 5  # never below min_k


def test_a_merge_of_no_galaxy_ties_in_x_without_a_warning():
    ks = np.array([5, 4, 3, 2, 1])
    ent = np.array([50.0, 30.0, 30.0, 10.0, 0.0])
    merged = np.array([0.0, 10.0, 10.0, 20.0, 30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert elbow(ks, ent, x=merged) in (2, 3, 4)


def test_fixed_number_of_clusters_and_bad_input():
    proba, _ = _split_blobs()
    assert ComponentMerger(n_clusters=2).fit(proba).n_clusters_ == 2
    with pytest.raises(ValueError, match="n_clusters"):
        ComponentMerger(n_clusters=7).fit(proba)
    with pytest.raises(ValueError, match="elbow_on"):
        ComponentMerger(elbow_on="galaxies").fit(proba)
    with pytest.raises(ValueError, match="finite"):
        ComponentMerger().fit(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match=r"must sum to 1: 4 of 4 do not \(row 0 sums to 3\)"):
        ComponentMerger().fit(np.ones((4, 3)))  # scores, not probabilities: merged as if they were
    with pytest.raises(NotFittedError):
        ComponentMerger().predict(proba)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        ComponentMerger().fit(proba).transform(proba[:, :5])
    two = ComponentMerger().fit(proba[:, :2] / proba[:, :2].sum(1, keepdims=True))
    assert two.n_clusters_ == 2  # two components or fewer: each its own cluster
    # scikit-learn's fit(X, y=None), so it goes in a pipeline
    from sklearn.pipeline import make_pipeline

    assert make_pipeline(ComponentMerger(n_clusters=2)).fit(proba).transform(proba).shape == (len(proba), 2)
