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
