"""The VaDE ELBO: closed forms against Monte Carlo, responsibilities against Bayes' rule, stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.mixture import GaussianMixture

from morphospace.image.geometry import canonical_angle, dihedral, radial_weight, rotate
from morphospace.vade.model import (
    MixturePrior,
    gaussian_expected_log_prob,
    gaussian_neg_entropy,
    standard_normal_kl,
    vade_kl_terms,
)
from morphospace.vade.networks import build_vade

N_MC = 200_000


def _prior(k=3, d=4, seed=0) -> MixturePrior:
    g = torch.Generator().manual_seed(seed)
    p = MixturePrior(k, d).double()
    with torch.no_grad():
        p.logits.copy_(torch.randn(k, generator=g, dtype=torch.float64))
        p.means.copy_(2 * torch.randn(k, d, generator=g, dtype=torch.float64))
        p.raw_log_vars.copy_(0.5 * torch.randn(k, d, generator=g, dtype=torch.float64))
    return p


def _mc_check(samples: torch.Tensor, value: torch.Tensor, n_se: float = 5.0) -> None:
    """``value`` within ``n_se`` standard errors of the mean of ``samples`` (along dim 0)."""
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    assert torch.all((mean - value).abs() <= n_se * se + 1e-9), (mean, value, se)


def test_expected_log_prob_matches_monte_carlo():
    torch.manual_seed(1)
    p = _prior()
    mu = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    log_var = torch.tensor([[-0.5, 0.2, -1.5, 0.0]], dtype=torch.float64)
    _, means, log_vars = p.active()
    closed = gaussian_expected_log_prob(mu, log_var, means, log_vars)[0]       # K
    z = mu + torch.exp(0.5 * log_var) * torch.randn(N_MC, 4, dtype=torch.float64)
    log_n = torch.stack([torch.distributions.Normal(means[c], torch.exp(0.5 * log_vars[c])).log_prob(z).sum(1)
                         for c in range(3)], 1)                                   # N_MC, K
    _mc_check(log_n, closed)


def test_neg_entropy_and_standard_kl_match_monte_carlo():
    torch.manual_seed(2)
    mu = torch.tensor([[1.0, -0.5, 0.0]], dtype=torch.float64)
    log_var = torch.tensor([[0.3, -2.0, 1.0]], dtype=torch.float64)
    q = torch.distributions.Normal(mu[0], torch.exp(0.5 * log_var[0]))
    z = q.sample((N_MC,))
    log_q = q.log_prob(z).sum(1)
    _mc_check(log_q, gaussian_neg_entropy(log_var)[0])
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    _mc_check(log_q - log_p, standard_normal_kl(mu, log_var)[0])


def test_vade_kl_matches_monte_carlo_and_its_collapsed_form():
    torch.manual_seed(3)
    p = _prior(k=4, d=3, seed=5)
    mu = torch.tensor([[0.5, -0.2, 1.0], [3.0, 1.0, -2.0]], dtype=torch.float64)
    log_var = torch.tensor([[-1.0, 0.0, -0.5], [0.5, -2.0, 0.0]], dtype=torch.float64)
    t = vade_kl_terms(mu, log_var, p)
    log_pi, means, log_vars = p.active()
    for i in range(2):
        # KL(q(z)q(c) || p(z, c)) = E_{z ~ q} sum_c gamma_c [log q(z) + log gamma_c - log pi_c - log N(z|c)]
        q = torch.distributions.Normal(mu[i], torch.exp(0.5 * log_var[i]))
        z = q.sample((N_MC,))
        log_n = torch.stack([torch.distributions.Normal(means[c], torch.exp(0.5 * log_vars[c])).log_prob(z).sum(1)
                             for c in range(4)], 1)
        gamma = t["log_gamma"][i].exp()
        integrand = q.log_prob(z).sum(1) + (gamma * (t["log_gamma"][i] - log_pi - log_n)).sum(1)
        _mc_check(integrand, t["kl"][i])
        # and it bounds KL(q(z) || p(z)) from above (q(c|x) ignores z)
        kl_marginal = (q.log_prob(z).sum(1) - torch.logsumexp(log_pi + log_n, 1)).mean()
        assert t["kl"][i] >= kl_marginal - 0.05
    collapsed = t["neg_entropy_z"] - torch.logsumexp(log_pi + p.expected_log_prob(mu, log_var), 1)
    torch.testing.assert_close(t["kl"], collapsed)
    assert torch.all(t["kl"] > 0)


def test_responsibilities_sum_to_one_and_follow_bayes_rule():
    # hand-made 1-d case, two components
    weights, means, variances = np.array([0.3, 0.7]), np.array([0.0, 2.0]), np.array([1.0, 0.5])
    p = MixturePrior(3, 1).double()   # one spare slot: must get zero weight
    p.set_parameters(weights, means[:, None], variances[:, None])
    assert p.n_components == 2
    mu, s2 = 1.2, 0.04
    log_gamma = p.log_responsibilities(torch.tensor([[mu]], dtype=torch.float64),
                                       torch.tensor([[math.log(s2)]], dtype=torch.float64))[0].detach().numpy()
    # by hand: log pi_c + log N(mu | m_c, v_c) - s2 / (2 v_c), normalised
    score = np.log(weights) + stats.norm.logpdf(mu, means, np.sqrt(variances)) - s2 / (2 * variances)
    expected = np.exp(score - score.max())
    expected /= expected.sum()
    np.testing.assert_allclose(np.exp(log_gamma), expected, rtol=1e-10)
    assert np.exp(log_gamma).sum() == pytest.approx(1.0, abs=1e-12)
    # vanishing encoder variance: exactly Bayes' rule p(c | z = mu)
    tiny = p.log_responsibilities(torch.tensor([[mu]], dtype=torch.float64),
                                  torch.tensor([[-11.5]], dtype=torch.float64))[0].exp().detach().numpy()
    joint = weights * stats.norm.pdf(mu, means, np.sqrt(variances))
    np.testing.assert_allclose(tiny, joint / joint.sum(), rtol=1e-4)
    # many random points: rows sum to one
    p2 = _prior(k=5, d=6)
    mu2 = torch.randn(64, 6, dtype=torch.float64) * 3
    lg = p2.log_responsibilities(mu2, torch.randn(64, 6, dtype=torch.float64))
    torch.testing.assert_close(lg.exp().sum(1), torch.ones(64, dtype=torch.float64))


def test_responsibilities_do_not_depend_on_the_batch():
    p = _prior(k=4, d=3)
    mu = torch.randn(10, 3, dtype=torch.float64)
    lv = torch.randn(10, 3, dtype=torch.float64)
    whole = p.log_responsibilities(mu, lv)
    for i in range(10):
        torch.testing.assert_close(p.log_responsibilities(mu[i:i + 1], lv[i:i + 1])[0], whole[i])


def test_mixture_log_prob_equals_scikit_learn():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, (200, 3)), rng.normal(4, 0.5, (200, 3))]
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(x)
    p = MixturePrior(4, 3).double()
    p.set_parameters(gm.weights_, gm.means_, gm.covariances_)
    z = torch.as_tensor(x[:20])
    np.testing.assert_allclose(p.log_prob(z).detach().numpy(), gm.score_samples(x[:20]), rtol=1e-8)
    np.testing.assert_allclose(p.posterior(z).detach().numpy(), gm.predict_proba(x[:20]), atol=1e-8)
    assert torch.all(torch.isinf(p.log_weights[2:]))


def test_prior_samples_have_the_tempered_component_moments():
    p = _prior(k=2, d=3)
    g = torch.Generator().manual_seed(0)
    s = p.sample(1, 50_000, temperature=0.5, generator=g)
    torch.testing.assert_close(s.mean(0), p.means[1], atol=0.03, rtol=0)
    torch.testing.assert_close(s.var(0), 0.5 * p.log_vars[1].exp(), rtol=0.05, atol=0)
    with pytest.raises(ValueError):
        p.sample(2, 4)


def test_canonical_rotation_and_dihedral_group():
    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5, indexing="ij")
    a = math.radians(30)
    u, v = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
    img = torch.exp(-(u**2 / 40 + v**2 / 5))[None, None].repeat(1, 3, 1, 1)
    ang = canonical_angle(img)
    assert float(ang) == pytest.approx(a, abs=0.02)
    assert float(canonical_angle(rotate(img, -ang))) == pytest.approx(0.0, abs=0.02)
    x = torch.randn(2, 1, 5, 5)
    for k in range(8):   # each element is a bijection and 180-degree rotation squares to identity
        assert torch.equal(dihedral(x, k).flatten().sort().values, x.flatten().sort().values)
    assert torch.equal(dihedral(dihedral(x, 2), 2), x)
    assert torch.equal(dihedral(dihedral(x, 6), 6), x)
    w = radial_weight(16, 0.5, 0.2)
    assert w[8, 8] == 1.0 and w[0, 0] < 0.01 and torch.all(radial_weight(16, 0, 0) == 1)
    floored = radial_weight(16, 0.5, 0.2, floor=0.5)
    assert floored[8, 8] == 1.0 and floored[0, 0] == 0.5 and torch.equal(floored, torch.clamp(w, min=0.5))


def test_flip_invariant_model_code_is_exactly_invariant():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    # flip-averaged encoder alone: invariant to rounding
    m = build_vade("default", 2, 16, 3, 4, widths=(4, 8), flip_invariant=True).double()
    mu, _ = m.encode(x)
    for k in (2, 4, 6):
        torch.testing.assert_close(m.encode(dihedral(x, k))[0], mu, atol=1e-12, rtol=0)
    # with the canonical rotation first: invariant up to the interpolation's float32 angle
    m = build_vade("default", 2, 16, 3, 4, widths=(4, 8), canonicalise=True, flip_invariant=True).double()
    mu, _ = m.encode(x)
    for k in (1, 2, 3, 4, 5, 6, 7):   # all 8 dihedral transforms, 90-degree turns included
        torch.testing.assert_close(m.encode(dihedral(x, k))[0], mu, atol=2e-4, rtol=0)
    plain = build_vade("default", 2, 16, 3, 4, widths=(4, 8)).double()
    assert not torch.allclose(plain.encode(dihedral(x, 4))[0], plain.encode(x)[0], atol=1e-3)


def test_rotating_the_latent_space_keeps_the_decoded_images():
    torch.manual_seed(0)
    m = build_vade("default", 2, 16, 4, 3, widths=(4, 8)).double().eval()
    x = torch.rand(5, 2, 16, 16, dtype=torch.float64)
    mu, lv = m.encode(x)
    before = m.decode(mu)
    r, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    m.rotate_latent(r)
    mu2, lv2 = m.encode(x)
    torch.testing.assert_close(mu2, mu @ r.T)
    torch.testing.assert_close(m.decode(mu2), before)
    torch.testing.assert_close(lv2, lv)


@pytest.mark.slow
@pytest.mark.parametrize("kind,invariant,steps", [("random", False, 2000), ("constant", False, 2000),
                                                  ("constant", True, 400)])
def test_no_nan_over_2000_steps(kind, invariant, steps):
    """Random images, and constant ones (half zeros: a blank frame has no orientation)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_vade("default", 1, 8, 2, 3, widths=(4,), radial_inner=0.5, radial_width=0.3,
                       canonicalise=invariant, flip_invariant=invariant)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    constant = torch.cat([torch.full((4, 1, 8, 8), 0.7), torch.zeros(4, 1, 8, 8)])
    for step in range(steps):
        x = torch.rand(8, 1, 8, 8, generator=g) * 1.2 - 0.1 if kind == "random" else constant
        mode = "vae" if step < steps // 10 else "vade"
        t = model.loss_terms(x, mode=mode, generator=g)
        loss = (t.reconstruction + t.kl).mean()
        assert torch.isfinite(loss), f"step {step}: loss {loss}"
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    lg = model.predict_log_proba(x)
    assert torch.isfinite(lg).all()
    torch.testing.assert_close(lg.exp().sum(1), torch.ones(len(x)))


def test_colour_weight_scales_only_the_colour_part_of_the_error():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16)
    grey = torch.full((2, 1, 16, 16), 0.1).expand(2, 3, 16, 16)  # the same error in every band
    colour = torch.tensor([0.1, -0.1, 0.0]).view(1, 3, 1, 1).expand(2, 3, 16, 16)  # sums to zero
    plain = build_vade("default", 3, 16, 3, 2, widths=(4, 8), recon_sigma=2 ** -0.5)
    heavy = build_vade("default", 3, 16, 3, 2, widths=(4, 8), recon_sigma=2 ** -0.5, colour_weight=2.0)
    for d in (grey, colour):
        torch.testing.assert_close(plain.reconstruction_error(target, target - d), (d**2).sum((1, 2, 3)))
    torch.testing.assert_close(heavy.reconstruction_error(target, target - grey), (grey**2).sum((1, 2, 3)))
    torch.testing.assert_close(heavy.reconstruction_error(target, target - colour), 4 * (colour**2).sum((1, 2, 3)))
    # one band: nothing to weight
    one = build_vade("default", 1, 16, 3, 2, widths=(4, 8), recon_sigma=2 ** -0.5, colour_weight=2.0)
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(one.reconstruction_error(x, x - 0.1), torch.full((2,), 0.01 * 256))


@pytest.mark.parametrize("weights", [[0.0, 1.0], [-0.5, 1.5], [np.nan, 1.0], [np.inf, 1.0]])
def test_a_mixture_of_a_weight_not_positive_is_refused_by_both_priors(weights):
    """A weight of 0 was clipped to 1e-12: a narrow component then took 99.99% of the responsibility
    of galaxies it should never have had (and a negative weight was loaded as 1e-12 unsaid)."""
    from morphospace.vade.linear_core import FullMixturePrior

    means, variances = np.zeros((2, 8)), np.array([[1e-4] * 8, [1.0] * 8])
    with pytest.raises(ValueError, match="finite and positive"):
        MixturePrior(2, 8).set_parameters(np.array(weights), means, variances)
    with pytest.raises(ValueError, match="finite and positive"):
        FullMixturePrior(2, 8).set_parameters(np.array(weights), means, np.stack([np.diag(v) for v in variances]))
    p = MixturePrior(2, 8)  # positive weights: loaded, normalised
    p.set_parameters(np.array([1.0, 3.0]), means, variances)
    assert torch.allclose(p.log_weights[:2].exp(), torch.tensor([0.25, 0.75]))
