"""The linear VaDE core: a Gaussian-mixture prior over a principal-component projection.

A VaDE whose encoder and decoder are linear and Gaussian has a closed-form optimum: the
encoder is probabilistic PCA (Tipping & Bishop 1999; for the linear VAE, Lucas et al. 2019,
arXiv 1911.02469), and the mixture prior that maximises the ELBO for a fixed encoder is the
Gaussian mixture fitted by EM to the encoder's codes (with each code's posterior variance
added, so that the prior is the moment-matched density of q(z|x)). Over the self-supervised
form embedding this core clusters as well as the MLP core and is far more stable: measured on
sdss-gz1, the merged clusters of three seeds agree at ARI ~0.8 against ~0.5 for the MLP core,
because nothing in it depends on the order of stochastic-gradient steps. That agreement is
label-free, which is why it is the default (``form.core = "linear"``).

:class:`LinearCore` has the interface of a :class:`~morphospace.vade.model.VaDE` that the form
model uses (``encode``, ``decode``, ``prior``, ``latent_dim``); :class:`FullMixturePrior` has
that of :class:`~morphospace.vade.model.MixturePrior` (``log_responsibilities``, ``log_prob``,
``posterior``, ``sample``, ``means``, ``log_weights``, ``log_vars``), with full covariances.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArgument
from .mixture import MIN_PER_COMPONENT, REG_COVAR
from .prior import LOG_2PI, MixtureDensity, check_mixture_weights

__all__ = ["FullMixturePrior", "LinearCore", "core_clusters", "fit_linear_core", "most_typical"]



class FullMixturePrior(MixtureDensity):
    """A mixture of K full-covariance Gaussians in D dimensions (fixed after :meth:`set_parameters`).

    Parameters
    ----------
    n_components : int
        K.
    latent_dim : int
        D.
    """

    def __init__(self, n_components: int, latent_dim: int):
        super().__init__()
        if n_components < 1 or latent_dim < 1:
            raise ValueError("n_components and latent_dim must be positive")
        self.latent_dim = int(latent_dim)
        self.register_buffer("weights", torch.full((n_components,), 1.0 / n_components))
        self.register_buffer("means", torch.zeros(n_components, latent_dim))
        self.register_buffer("covariances", torch.eye(latent_dim).repeat(n_components, 1, 1))

    @property
    def n_components(self) -> int:
        """The number of components K."""
        return int(self.weights.shape[0])


    @property
    def log_weights(self) -> torch.Tensor:
        """``log pi``, shape (K,)."""
        return torch.log(self.weights.clamp_min(1e-30))

    @property
    def log_vars(self) -> torch.Tensor:
        """Log of the covariances' diagonals (K, D): the per-axis spread, e.g. for figures."""
        return torch.log(torch.diagonal(self.covariances, dim1=1, dim2=2))

    @torch.no_grad()
    def set_parameters(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> None:
        """Load a fitted mixture: ``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D, D)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_components,) or np.shape(covariances) != tuple(self.covariances.shape):
            raise ValueError(f"expected {self.n_components} components of dimension {self.latent_dim}")
        check_mixture_weights(w)
        self.weights.copy_(torch.as_tensor(w / w.sum()))
        self.means.copy_(torch.as_tensor(np.asarray(means)))
        self.covariances.copy_(torch.as_tensor(np.asarray(covariances)))

    def _chol(self) -> torch.Tensor:
        return torch.linalg.cholesky(self.covariances)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log pi_c + log N(z | mu_c, Sigma_c)`` at points ``z``, (N, K)."""
        chol = self._chol()
        diff = (z.unsqueeze(1) - self.means.unsqueeze(0)).unsqueeze(-1)  # N, K, D, 1
        sol = torch.linalg.solve_triangular(chol.unsqueeze(0), diff, upper=False).squeeze(-1)
        half_logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
        return self.log_weights - 0.5 * (self.latent_dim * LOG_2PI + (sol**2).sum(-1)) - half_logdet

    def expected_log_prob(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """``E_q[log N(z | mu_c, Sigma_c)]`` for q = N(mu, diag(exp(log_var))), (N, K)."""
        precision_diag = torch.diagonal(torch.cholesky_inverse(self._chol()), dim1=1, dim2=2)  # K, D
        trace = torch.exp(log_var) @ precision_diag.T
        return self.component_log_prob(mu) - self.log_weights - 0.5 * trace

    def sample(self, component: int, n: int, temperature: float = 0.5,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from ``N(mu_k, temperature * Sigma_k)``, (n, D)."""
        self.check_component(component)
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=self.means.dtype)
        return self.means[component] + math.sqrt(temperature) * eps @ self._chol()[component].T


class LinearCore(nn.Module):
    """Probabilistic-PCA encoder and decoder with a :class:`FullMixturePrior` over the codes.

    ``encode(x) = (U^T (x - m), log sigma^2)``: the principal-component projection of the
    (standardised) embedding and the PPCA noise variance (the mean discarded eigenvalue) as
    the posterior variance of every axis; ``decode(z) = m + U z``.

    Parameters
    ----------
    in_dim : int
        Length of the input vectors.
    latent_dim : int
        Number of principal components D.
    n_components : int
        Mixture components K.
    """

    def __init__(self, in_dim: int, latent_dim: int, n_components: int):
        super().__init__()
        if not 1 <= latent_dim <= in_dim:
            raise ValueError(f"latent_dim must be in 1..{in_dim}, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("components", torch.eye(in_dim)[:latent_dim].clone())  # D x F, orthonormal rows
        self.register_buffer("noise_log_var", torch.zeros(()))
        self.prior = FullMixturePrior(n_components, latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_var)`` of q(z | x), each (N, D)."""
        mu = (x - self.mean) @ self.components.T
        return mu, self.noise_log_var.expand_as(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The input vector a code stands for, (N, F)."""
        return self.mean + z @ self.components


def fit_linear_core(x: np.ndarray, latent_dim: int, k_min: int, k_max: int, seed: int,
                    n_components: int = 0, n_init: int = 3, fits: int = 1,
                    merger=None) -> tuple[LinearCore, dict]:
    """Fit a :class:`LinearCore` to the rows of ``x`` (N, F); no labels involved.

    The principal axes come from the SVD (signs fixed: largest loading positive); K is
    ``n_components`` or, when 0, the BIC minimum over ``k_min..k_max`` (at least
    ``MIN_PER_COMPONENT`` galaxies a component) of full-covariance mixtures, each the best of
    ``n_init`` EM starts seeded by ``seed``.

    With ``fits`` > 1 the mixture of that K is fitted ``fits`` times (the first with ``seed``, the
    others with seeds drawn from it), each fit's clusters are formed (``merger``'s merge of its
    components, or the components themselves), and the most typical fit is kept: the one whose
    clusters agree best with the others' (highest summed adjusted Rand index, the medoid).
    Near-equal EM optima of a mixture placed on a continuum of forms merge differently; the
    medoid is the one that two trainings of the same survey are likeliest to share
    (docs/measurements/form-first.md, *The most typical of several EM fits*).

    Parameters
    ----------
    fits : int
        EM fits of the chosen K among which the medoid is kept; 1: the BIC's fit.
    merger : ComponentMerger, optional
        An unfitted :class:`~morphospace.vade.merge.ComponentMerger` (cloned per fit) that turns
        a fit's responsibilities into its clusters; None compares the components.

    Returns
    -------
    (LinearCore, dict)
        The core and what was chosen: ``n_components``, ``bic`` by K, ``noise_var``,
        ``explained_variance``; with ``fits`` > 1 also ``fit_seeds``, ``fit_chosen`` (its index)
        and ``fit_agreement`` (the mean ARI of each fit's clusters with the other fits').
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    n, f = x.shape
    # the centred galaxies span at most n - 1 axes: a latent axis beyond them has no variance
    # (and with latent_dim = n the noise below was the mean of nothing, NaN)
    if latent_dim > min(n - 1, f):
        raise InvalidArgument(f"model.latent_dim ({latent_dim}) exceeds what the linear core can have here: "
                              f"min(galaxies - 1, form.dim) = {min(n - 1, f)}")
    if fits < 1:
        raise InvalidArgument(f"form.core_fits must be at least 1, got {fits}")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    vt = vt * np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
    eig = s**2 / max(n - 1, 1)
    noise = float(eig[latent_dim:].mean()) if f > latent_dim else float(eig[-1]) * 1e-3
    noise = max(noise, 1e-8)
    z = (x - mean) @ vt[:latent_dim].T

    def fit(k: int, random_state: int):
        # one BLAS thread: EM's products (N x d by d x d, d = latent_dim) are too small to share;
        # on two threads the core took 2.5x as long at 20,000 galaxies on 2 cores
        # (benchmarks/bench_linear_core.py), and on the 16-core H200 machine 2.7x as long at
        # 2,000 as on 2 cores
        with threadpool_limits(1, user_api="blas"):
            return GaussianMixture(k, covariance_type="full", n_init=n_init, random_state=random_state,
                                   reg_covar=REG_COVAR, max_iter=500).fit(z)

    def core_of(gmm) -> LinearCore:
        core = LinearCore(f, latent_dim, gmm.n_components)
        with torch.no_grad():
            core.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            core.components.copy_(torch.as_tensor(vt[:latent_dim], dtype=torch.float32))
            core.noise_log_var.fill_(math.log(noise))
        # the prior is the moment-matched density of q(z|x): every code's posterior variance added
        core.prior.set_parameters(gmm.weights_, gmm.means_, gmm.covariances_ + noise * np.eye(latent_dim))
        core.prior.float()
        return core

    bic: dict[int, float] = {}
    if n_components:
        best = fit(n_components, seed)
    else:
        hi = max(k_min, min(k_max, n // MIN_PER_COMPONENT))
        candidates = {k: fit(k, seed) for k in range(k_min, hi + 1)}
        bic = {k: float(g.bic(z)) for k, g in candidates.items()}
        best = candidates[min(bic, key=bic.get)]
    k = best.n_components
    core = core_of(best)
    info = {"n_components": int(k), "bic": bic, "noise_var": noise,
            "explained_variance": float(eig[:latent_dim].sum() / eig.sum())}
    if fits > 1:
        seeds = [int(seed)] + [int(v) for v in np.random.SeedSequence(seed).generate_state(fits - 1)]
        cores = [core] + [core_of(fit(k, s)) for s in seeds[1:]]
        xt = torch.as_tensor(x, dtype=torch.float32)
        labels = [core_clusters(c, xt, merger) for c in cores]
        chosen, agreement = most_typical(labels)
        core = cores[chosen]
        info.update({"fit_seeds": seeds, "fit_chosen": chosen, "fit_agreement": agreement})
    return core, info


def core_clusters(core: LinearCore, x: torch.Tensor, merger=None) -> np.ndarray:
    """The clusters a core gives the rows ``x`` (N, F): its components merged by a clone of
    ``merger`` (a :class:`~morphospace.vade.merge.ComponentMerger`), or the components themselves."""
    with torch.no_grad():
        proba = core.prior.log_responsibilities(*core.encode(x)).exp().double().numpy()
    if merger is None or proba.shape[1] <= 2:
        return proba.argmax(1)
    from sklearn.base import clone

    return clone(merger).fit_predict(proba)


def most_typical(labelings: list[np.ndarray]) -> tuple[int, list[float]]:
    """The medoid of several labelings of the same rows by the adjusted Rand index.

    Parameters
    ----------
    labelings : list of ndarray of shape (N,)

    Returns
    -------
    index : int
        The labeling with the highest mean ARI against the others (the first among equals).
    agreement : list of float
        Each labeling's mean ARI against the others.
    """
    from sklearn.metrics import adjusted_rand_score

    r = len(labelings)
    if r < 2:
        return 0, [1.0] * r
    ari = np.eye(r)
    for i in range(r):
        for j in range(i + 1, r):
            ari[i, j] = ari[j, i] = adjusted_rand_score(labelings[i], labelings[j])
    mean = (ari.sum(1) - 1.0) / (r - 1)
    return int(np.argmax(mean)), [float(v) for v in mean]
