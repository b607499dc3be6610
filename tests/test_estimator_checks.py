"""scikit-learn's own estimator checks on every reducer and clusterer of the package."""

import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from morphospace.analysis.cluster import DBSCANAuto, GMMSelect, HDBSCANClusterer, KMeansSelect
from morphospace.analysis.reduce import LDAReducer, PCAReducer, TSNEReducer, UMAPReducer

# What a neighbour-embedding method cannot promise, by design (not by accident):
TSNE_EXPECTED = {
    # the t-SNE map of the training rows is the optimised layout; transform places rows into a
    # fixed map by a short optimisation of their own (openTSNE), so the two differ
    "check_transformer_general": "t-SNE's fit_transform is the map, transform places new rows in it",
    "check_transformer_data_not_an_array": "same as check_transformer_general",
}
UMAP_EXPECTED = {
    # umap-learn's transform optimises the new rows jointly (a stochastic layout step): a row's
    # place depends on the others in the batch
    "check_methods_sample_order_invariance": "UMAP places a batch of new rows jointly",
    "check_methods_subset_invariance": "UMAP places a batch of new rows jointly",
}


def _expected(estimator):
    return {TSNEReducer: TSNE_EXPECTED, UMAPReducer: UMAP_EXPECTED}.get(type(estimator), {})


@parametrize_with_checks(
    [PCAReducer(), LDAReducer(), TSNEReducer(n_iter=50), UMAPReducer(), KMeansSelect(k_range=(2, 3)), GMMSelect(k_range=(2, 3)),
     DBSCANAuto(), HDBSCANClusterer()],
    expected_failed_checks=_expected,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def test_transform_before_fit_is_not_fitted_for_every_reducer():
    import numpy as np
    import pytest
    from sklearn.exceptions import NotFittedError

    X = np.random.default_rng(0).random((20, 4))
    for est in (PCAReducer(), LDAReducer(), TSNEReducer(), UMAPReducer()):
        with pytest.raises(NotFittedError):
            est.transform(X)


def test_a_parameter_out_of_range_is_a_value_error_naming_it_not_another_value_used():
    """0, negative, fractional or NaN settings were replaced by a default or truncated without a word."""
    import numpy as np
    import pytest

    X = np.random.default_rng(0).random((60, 3))
    cases = [(DBSCANAuto(min_samples=0), "min_samples"), (DBSCANAuto(min_samples=2.5), "min_samples"),
             (DBSCANAuto(eps=-1.0), "eps"), (DBSCANAuto(eps=float("nan")), "eps"),
             (HDBSCANClusterer(min_cluster_size=0), "min_cluster_size"),
             (HDBSCANClusterer(min_cluster_size=2.7), "min_cluster_size"),
             (HDBSCANClusterer(min_samples=-1), "min_samples"), (KMeansSelect(k_range=[2.5]), "k_range"),
             (PCAReducer(n_components=0), "n_components"), (PCAReducer(n_components=1.5), "n_components"),
             (TSNEReducer(perplexity=0), "perplexity"), (UMAPReducer(n_neighbors=1), "n_neighbors"),
             # an IndexError from openTSNE; a map never optimised (n_iter 0); no PCA (pca_dims -1);
             # a used-up generator (the second fit saw no k); rows left out of the silhouette
             (TSNEReducer(n_components=0), "n_components"), (TSNEReducer(n_iter=0), "n_iter"),
             (TSNEReducer(pca_dims=-1), "pca_dims"), (UMAPReducer(min_dist="x"), "min_dist"),
             (UMAPReducer(n_components=2.5), "n_components"),
             (KMeansSelect(k_range=(k for k in (2, 3))), "k_range"),
             (KMeansSelect(silhouette_sample=-3), "silhouette_sample")]
    y = np.repeat(["a", "b", "c"], 20)
    for n in (2.5, 3.5, "2", 0):  # LDA used 2.5 (a PCA padding of "0.5 of the variance"), failed deep on 3.5
        with pytest.raises(ValueError, match="n_components must be a whole number"):
            LDAReducer(n_components=n).fit(X, y)
    for est, name in cases:
        with pytest.raises(ValueError, match=name):
            est.fit(X)
    km = KMeansSelect(k_range=[3, 4]).fit(X)
    assert km.predict(X, k=4).dtype == km.labels_.dtype == np.int64
    for k in (9, 3.0, "3"):  # a k not fitted was a KeyError
        with pytest.raises(ValueError, match="k must be one of the fitted k_range"):
            km.predict(X, k=k)
    assert KMeansSelect(k_range=4).fit(X).labels_.max() == 3  # one k, as a number
    assert TSNEReducer().fit_transform(X[:, :1]).shape == (60, 2)  # one feature: openTSNE's PCA start refused it
    pca = PCAReducer(n_components=0.9).fit(X)  # a fraction of the variance: the axes it took
    assert pca.n_components_ == pca.transform(X).shape[1] == pca.pca_.n_components_


def test_a_small_umap_does_not_keep_its_pairwise_distances():
    """Below umap-learn's exact line the map is fitted on all pairwise distances (N x N); umap-learn
    kept them (36 MB pickled at 3,000 rows) though its transform reads only their count."""
    import pickle

    import numpy as np

    X = np.random.default_rng(0).random((600, 5)).astype(np.float32)
    u = UMAPReducer(random_state=0).fit(X)
    assert len(pickle.dumps(u)) < 600 * 600 * 4 / 4
    assert u.transform(X[:7]).shape == (7, 2) and np.isfinite(u.transform(X[:7])).all()


def test_settings_that_were_taken_for_others_are_refused():
    """A truthy string calibrated (calibrate="no"), min_clusters 0 was taken, fractions [True] was
    scored as a fraction 'True' (and np.float32 refused), a Generator random_state failed deep in the
    probe, and names="km" titled a comparison 'k vs m'."""
    import numpy as np
    import pytest

    import morphospace as ms

    rng = np.random.default_rng(0)
    X, y = rng.random((40, 3)), np.repeat(["a", "b"], 20)
    with pytest.raises(ValueError, match="calibrate must be True or False"):
        ms.FewLabelClassifier(calibrate="no").fit(X, y)
    with pytest.raises(ValueError, match="min_clusters"):
        ms.ComponentMerger(min_clusters=0).fit(rng.dirichlet(np.ones(4), 30))
    with pytest.raises(ValueError, match="fractions"):
        ms.linear_probe(X, y, fractions=[True])
    with pytest.raises(ValueError, match="random_state must be an integer"):
        ms.linear_probe(X, y, fractions=[0.5], random_state=np.random.default_rng(0))
    assert len(ms.linear_probe(X, y, fractions=[np.float32(0.5)], repeats=1)) == 1
    with pytest.raises(ValueError, match="names must be two names"):
        ms.compare(y, y, names="km")
    with pytest.raises(ValueError, match="both interesting and boring"):
        ms.FormAnomaly().fit(X).relevance(X, interesting=[3], boring=[3])
    with pytest.raises(ValueError, match="positive integer"):
        ms.FewLabelClassifier().fit(X, y).suggest(True)
    # a seed numpy cannot take was refused deep inside numpy, PCA, KMeans or train_test_split, in a
    # message naming a function the user did not call: now by the estimator, naming its parameter
    for make in (lambda r: ms.UMAP(random_state=r), lambda r: ms.TSNE(random_state=r),
                 lambda r: ms.KMeansSelect(random_state=r), lambda r: ms.FewLabelClassifier(random_state=r),
                 lambda r: ms.SimilarityIndex(random_state=r, exact_below=0)):
        for bad in (-1, "x", 2**33, True):
            with pytest.raises(ValueError, match=r"^random_state must be None, an integer from 0 to 2\*\*32 - 1 or a "
                                                 r"numpy RandomState, got"):
                make(bad).fit(X, y) if isinstance(make(0), ms.FewLabelClassifier) else make(bad).fit(X)
    with pytest.raises(ValueError, match="random_state must be an integer from 0"):
        ms.linear_probe(X, y, fractions=[0.5], random_state=-1)
    assert len(ms.linear_probe(X, y, fractions=[0.5], repeats=2, random_state=2**32 - 2)) == 1  # the last seeds
    assert ms.KMeansSelect(k_range=[2], random_state=np.random.RandomState(0)).fit(X).best_k_ == 2
    # more than the data holds: DBSCAN's min_samples was clipped to the rows (every row a core row, all one
    # cluster), PCA's components to the features (fewer columns without a word)
    with pytest.raises(ValueError, match=r"min_samples \(1000000\) exceeds the 40 rows"):
        ms.DBSCAN(min_samples=10**6).fit(X)
    with pytest.warns(UserWarning, match="PCA: 10 components asked of 40 rows of 3 features: 3 kept"):
        assert ms.PCA(n_components=10).fit(X).n_components_ == 3


def test_every_reducer_names_its_output_columns_and_can_give_pandas():
    """scikit-learn's get_feature_names_out / set_output, so a reducer's output keeps column names
    in a pandas workflow (a ColumnTransformer, a DataFrame with the galaxies' ids)."""
    import numpy as np
    import pandas as pd

    X = np.random.default_rng(0).random((60, 5))
    y = np.repeat(["a", "b", "c"], 20)
    for reducer, width in ((PCAReducer(3), 3), (LDAReducer(2), 2), (TSNEReducer(n_iter=50), 2), (UMAPReducer(), 2)):
        name = type(reducer).__name__.lower()
        reducer.set_output(transform="pandas")
        out = reducer.fit_transform(X, y) if isinstance(reducer, LDAReducer) else reducer.fit_transform(X)
        assert isinstance(out, pd.DataFrame) and list(out.columns) == [f"{name}{i}" for i in range(width)]
        new = reducer.transform(X[:7])
        assert isinstance(new, pd.DataFrame) and new.shape == (7, width)
        assert list(reducer.get_feature_names_out()) == list(out.columns)


def test_output_names_count_the_columns_made_and_need_a_fit():
    """LDA of one feature makes one column: two names broke set_output's DataFrame; before fit the
    names were given as if fitted."""
    import numpy as np
    import pytest
    from sklearn.exceptions import NotFittedError

    lda = LDAReducer(2).set_output(transform="pandas")
    out = lda.fit_transform(np.random.default_rng(0).random((60, 1)), np.repeat(["a", "b", "c"], 20))
    assert list(out.columns) == ["ldareducer0"]
    for reducer in (PCAReducer(), LDAReducer(), TSNEReducer(), UMAPReducer()):
        with pytest.raises(NotFittedError):
            reducer.get_feature_names_out()
