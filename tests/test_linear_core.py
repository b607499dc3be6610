"""The linear VaDE core: PCA encoder, full-covariance mixture prior, BIC, stability."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

from morphospace.vade.linear_core import FullMixturePrior, LinearCore, fit_linear_core


def _prior(seed=0, k=3, d=4):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, d, d))
    cov = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
    w = rng.dirichlet(np.ones(k))
    means = rng.normal(0, 3, (k, d))
    p = FullMixturePrior(k, d).double()
    p.set_parameters(w, means, cov)
    return p, w, means, cov


def test_full_mixture_density_matches_scipy():
    p, w, means, cov = _prior()
    z = np.random.default_rng(1).normal(0, 3, (50, 4))
    want = np.log(sum(w[c] * multivariate_normal(means[c], cov[c]).pdf(z) for c in range(3)))
    got = p.log_prob(torch.from_numpy(z)).numpy()
    assert np.allclose(got, want, atol=1e-8)
    post = p.posterior(torch.from_numpy(z)).numpy()
    comp = np.stack([w[c] * multivariate_normal(means[c], cov[c]).pdf(z) for c in range(3)], 1)
    assert np.allclose(post, comp / comp.sum(1, keepdims=True), atol=1e-8)


def test_responsibilities_add_the_vade_trace_term():
    p, w, means, cov = _prior()
    mu = torch.from_numpy(np.random.default_rng(2).normal(0, 3, (20, 4)))
    var = np.full((20, 4), 0.7)
    got = p.log_responsibilities(mu, torch.from_numpy(np.log(var))).exp().numpy()
    # E_q log N(z; m, S) = log N(mu; m, S) - 0.5 tr(S^-1 diag(var))
    logs = np.stack([np.log(w[c]) + multivariate_normal(means[c], cov[c]).logpdf(mu.numpy())
                     - 0.5 * var @ np.diag(np.linalg.inv(cov[c])) for c in range(3)], 1)
    want = np.exp(logs - logs.max(1, keepdims=True))
    assert np.allclose(got, want / want.sum(1, keepdims=True), atol=1e-8)


def test_samples_follow_the_component_covariance():
    p, _, means, cov = _prior()
    z = p.sample(1, 20000, temperature=0.5, generator=torch.Generator().manual_seed(0)).numpy()
    assert np.allclose(z.mean(0), means[1], atol=0.1)
    assert np.allclose(np.cov(z.T), 0.5 * cov[1], atol=0.15 * np.abs(cov[1]).max())
    with pytest.raises(ValueError):
        p.sample(3, 1)


def _blobs(seed, n=300, f=10):
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, f))
    centres[0, 0], centres[1, 1], centres[2, :2] = 8, 8, -8
    y = rng.integers(0, 3, n)
    return centres[y] + rng.normal(size=(n, f)), y


def test_fit_finds_the_groups_and_encodes_by_pca():
    from sklearn.decomposition import PCA

    x, y = _blobs(0)
    core, info = fit_linear_core(x, latent_dim=3, k_min=1, k_max=6, seed=0)
    assert info["n_components"] == 3 and set(info["bic"]) == set(range(1, 7))
    mu, log_var = core.encode(torch.from_numpy(x).float())
    proba = core.prior.log_responsibilities(mu, log_var).exp().numpy()
    assert adjusted_rand_score(y, proba.argmax(1)) > 0.95
    ref = PCA(3).fit_transform(x)
    # the same projection up to the sign of each axis
    assert np.allclose(np.abs(mu.numpy()), np.abs(ref), atol=1e-3)
    # decode(encode(x)) is the projection onto the principal subspace
    back = core.decode(mu).numpy()
    assert np.abs(back - x).mean() < np.abs(x - x.mean(0)).mean()
    assert torch.allclose(log_var, torch.full_like(log_var, np.log(info["noise_var"])))


def test_fit_is_deterministic_and_saves():
    x, _ = _blobs(1)
    a, _ = fit_linear_core(x, 3, 1, 4, seed=5)
    b, _ = fit_linear_core(x, 3, 1, 4, seed=5)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    c = LinearCore(10, 3, a.prior.n_components)
    c.load_state_dict(a.state_dict())
    z = torch.from_numpy(x[:5]).float()
    assert torch.equal(c.prior.log_prob(c.encode(z)[0]), a.prior.log_prob(a.encode(z)[0]))


def test_fit_rejects_a_latent_dim_above_the_rank():
    with pytest.raises(ValueError, match="latent_dim"):
        fit_linear_core(np.zeros((5, 3)), 4, 1, 2, seed=0)
    x = np.random.default_rng(0).normal(size=(6, 8))
    with pytest.raises(ValueError, match=r"min\(galaxies - 1, form.dim\) = 5"):
        fit_linear_core(x, 6, 1, 2, seed=0)  # six galaxies, centred, span five axes
    core, info = fit_linear_core(x, 5, 1, 1, seed=0)
    assert np.isfinite(info["noise_var"]) and torch.isfinite(torch.linalg.cholesky(core.prior.covariances)).all()


def test_a_latent_dim_above_the_galaxies_is_refused_before_training():
    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError
    from morphospace.vade.hparams import check_against_cube

    cfg = apply_overrides(load_config(None), {"model.latent_dim": 16})
    with pytest.raises(UserError, match=r"latent_dim .16. must not exceed min.galaxies trained on - 1, form.dim. = 9 .*--set model.latent_dim=9$"):
        check_against_cube(cfg, np.zeros((10, 3, 16, 16), np.float32))
    # ten galaxies centred span nine axes: a tenth had no variance, and the core's noise was NaN
    with pytest.raises(UserError, match="= 9"):
        check_against_cube(apply_overrides(cfg, {"model.latent_dim": 10}), np.zeros((10, 3, 16, 16), np.float32))
    assert check_against_cube(apply_overrides(cfg, {"model.latent_dim": 9}), np.zeros((10, 3, 16, 16)))["latent_dim"] == 9
    # the core is fitted on the training sample
    sampled = apply_overrides(cfg, {"model.latent_dim": 9, "train.sample": 8})
    with pytest.raises(UserError, match="= 7"):
        check_against_cube(sampled, np.zeros((10, 3, 16, 16), np.float32))


def test_the_linear_cores_axes_count_every_heads_numbers():
    """With form.heads the embedding is dim x heads numbers: the latent_dim limit is that width."""
    from morphospace.config import apply_overrides, load_config
    from morphospace.errors import UserError
    from morphospace.vade.hparams import check_against_cube

    cfg = apply_overrides(load_config(None), {"form.dim": 4, "form.heads": 3, "model.latent_dim": 13})
    cube = np.zeros((40, 3, 16, 16), np.float32)
    with pytest.raises(UserError, match=r"min\(galaxies trained on - 1, form.dim x form.heads\) = 12"):
        check_against_cube(cfg, cube)
    assert check_against_cube(apply_overrides(cfg, {"model.latent_dim": 12}), cube)["latent_dim"] == 12


def test_most_typical_is_the_medoid_by_ari():
    from morphospace.vade.linear_core import most_typical

    a = np.repeat([0, 1, 2], 20)
    relabelled = (a + 1) % 3  # the same partition under other names: ARI 1
    other = np.tile([0, 1, 2], 20)  # unrelated to a: ARI about 0
    near = a.copy()
    near[:5] = 1  # a with five rows moved
    idx, agreement = most_typical([other, near, relabelled, a])
    assert idx == 2  # relabelled and a tie; the first among equals
    assert agreement[2] == agreement[3] > agreement[1] > agreement[0]
    assert np.isclose(agreement[3], (1.0 + adjusted_rand_score(a, near) + adjusted_rand_score(a, other)) / 3)
    assert most_typical([a]) == (0, [1.0])


def _continuum(seed, n=600):
    """A curved band of points with no gaps: a mixture of many components has near-equal optima on it."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    x = np.stack([np.cos(t) * 5, np.sin(t) * 5, rng.normal(0, 0.4, n), rng.normal(0, 0.4, n)], 1)
    return x + rng.normal(0, 0.3, x.shape)


def test_several_fits_keep_the_medoid_fit():
    from morphospace.vade.merge import ComponentMerger

    x = _continuum(0)
    merger = ComponentMerger()
    core, info = fit_linear_core(x, 3, 2, 8, seed=3, n_components=6, fits=5, merger=merger)
    assert len(info["fit_seeds"]) == 5 and info["fit_seeds"][0] == 3
    assert info["fit_chosen"] == int(np.argmax(info["fit_agreement"]))
    # the kept core is the fit of its seed alone, parameter for parameter
    alone, single = fit_linear_core(x, 3, 2, 8, seed=info["fit_seeds"][info["fit_chosen"]], n_components=6)
    assert "fit_chosen" not in single
    for k, v in core.state_dict().items():
        assert torch.equal(v, alone.state_dict()[k]), k
    # deterministic: the same seed keeps the same fit
    again, info2 = fit_linear_core(x, 3, 2, 8, seed=3, n_components=6, fits=5, merger=merger)
    assert info2["fit_chosen"] == info["fit_chosen"] and info2["fit_agreement"] == info["fit_agreement"]
    with pytest.raises(ValueError, match="core_fits"):
        fit_linear_core(x, 3, 2, 8, seed=0, fits=0)


def test_the_medoid_fit_agrees_across_seeds_more_than_single_fits():
    """On a continuum, which EM optimum a seed lands in varies; the medoid of several fits varies less."""
    from itertools import combinations

    from morphospace.vade.linear_core import core_clusters
    from morphospace.vade.merge import ComponentMerger

    x = _continuum(1)
    xt = torch.from_numpy(x).float()

    def mean_ari(fits):
        labs = [core_clusters(fit_linear_core(x, 3, 2, 8, seed=s, n_components=8, n_init=1, fits=fits,
                                              merger=ComponentMerger())[0], xt, ComponentMerger()) for s in range(5)]
        return np.mean([adjusted_rand_score(a, b) for a, b in combinations(labs, 2)])

    single, medoid = mean_ari(1), mean_ari(8)
    assert medoid > single + 0.05, (single, medoid)


@pytest.mark.parametrize("n_components", [0, 3], ids=["bic", "given"])
def test_separate_groups_keep_a_cluster_each(n_components):
    """Three well-separated groups: the BIC takes 3 components (or the user asks for 3), and no merge
    lowers the entropy; the elbow, whose breakpoint is an inner point of the path, always joined two
    of them (2 clusters, ARI 0.57 against the groups). Components that share no galaxies stay apart."""
    from morphospace.vade.linear_core import core_clusters
    from morphospace.vade.merge import ComponentMerger

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 100)
    x = np.eye(6)[truth] * 20 + rng.normal(0, 1, (300, 6))
    core, info = fit_linear_core(x, 4, 2, 6, seed=0, n_components=n_components, fits=3, merger=ComponentMerger())
    assert info["n_components"] == 3
    labels = core_clusters(core, torch.from_numpy(x).float(), ComponentMerger())
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)


def test_the_merge_still_joins_overlapping_components_beside_a_separate_one():
    from morphospace.vade.merge import ComponentMerger

    t = np.random.default_rng(0).uniform(0, 1, 200)
    p = np.zeros((300, 3))
    p[:200, 0], p[:200, 1], p[200:, 2] = t, 1 - t, 1.0  # components 0 and 1 split the same galaxies
    assert ComponentMerger().fit(p).groups_ == [[0, 1], [2]]
    assert ComponentMerger().fit(np.repeat(np.eye(4), 20, 0)).n_clusters_ == 4
    assert ComponentMerger(tol=1e9).fit(p).n_clusters_ == 3  # nothing counts as overlap
    # a small component splitting its galaxies with a large one, in a large survey of separate groups:
    # an overlap, however small a part of the survey (the drop was weighed per galaxy of the survey)
    big = np.zeros((4 * 25000 + 100, 5))
    big[np.arange(100000), np.repeat(np.arange(4), 25000)] = 1.0
    big[100000:, 0], big[100000:, 4] = 0.5, 0.5
    merged = ComponentMerger().fit(big)
    assert merged.n_clusters_ == 4 and [0, 4] in merged.groups_
    # separate groups with a trace of every other component (6e-5): separate at any K (weighed on the
    # survey's galaxies, the other components' traces counted towards the first merge's drop at K = 12)
    for k in (3, 12):
        trace = np.full((200 * k, k), 6e-5)
        trace[np.arange(200 * k), np.repeat(np.arange(k), 200)] = 1.0
        assert ComponentMerger().fit(trace / trace.sum(1, keepdims=True)).n_clusters_ == k
    with pytest.raises(ValueError, match="tol must be"):
        ComponentMerger(tol=-1).fit(p)


def test_the_merger_is_a_clusterer_in_a_pipeline():
    """labels_ after fit and fit_predict(X, y=None), as scikit-learn's clusterers (a Pipeline's
    fit_predict passed y and failed; labels_ did not exist)."""
    from sklearn.pipeline import make_pipeline

    from morphospace.vade.merge import ComponentMerger

    p = np.random.default_rng(0).dirichlet(np.ones(5) * 0.3, 100)
    merger = ComponentMerger().fit(p)
    np.testing.assert_array_equal(merger.labels_, merger.predict(p))
    np.testing.assert_array_equal(make_pipeline(ComponentMerger()).fit_predict(p), merger.labels_)
    # and a transformer: fit_transform is fit then transform of the same rows, n_features_in_ the K seen
    probs = make_pipeline(ComponentMerger()).fit_transform(p)
    np.testing.assert_allclose(probs, merger.transform(p))
    assert probs.shape == (100, merger.n_clusters_) and merger.n_features_in_ == 5
