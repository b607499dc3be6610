"""The VaDE's mixture prior and the closed-form Gaussian pieces of its loss.

:class:`MixturePrior`: K diagonal Gaussians with learned weights, means and variances;
:func:`vade_kl_terms`: the KL between q(z, c | x) and p(z, c), term by term (Jiang et al. 2017,
eq. 12), every expectation in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)

__all__ = ["LOG_2PI", "MixtureDensity", "ENCODER_LOG_VAR_RANGE", "PRIOR_LOG_VAR_RANGE", "gaussian_expected_log_prob",
           "gaussian_neg_entropy", "standard_normal_kl", "MixturePrior", "LossTerms", "vade_kl_terms"]

# log-variances are clamped so that exp() can neither overflow nor make a zero variance;
# the latent codes live at scale ~1, so these ranges are far from any useful value
ENCODER_LOG_VAR_RANGE = (-12.0, 8.0)
PRIOR_LOG_VAR_RANGE = (-10.0, 6.0)


# --- closed-form Gaussian terms -----------------------------------------------------------

def gaussian_expected_log_prob(mu: torch.Tensor, log_var: torch.Tensor,
                               means: torch.Tensor, log_vars: torch.Tensor) -> torch.Tensor:
    """``E_{z ~ N(mu, diag exp(log_var))}[log N(z | means_c, diag exp(log_vars_c))]``.

    Parameters
    ----------
    mu, log_var : Tensor (N, D)
        The encoder's Gaussian.
    means, log_vars : Tensor (K, D)
        The K diagonal Gaussians of the prior.

    Returns
    -------
    Tensor (N, K)
    """
    var = log_var.exp().unsqueeze(1)                      # N,1,D
    diff2 = (mu.unsqueeze(1) - means.unsqueeze(0)) ** 2   # N,K,D
    inv = torch.exp(-log_vars).unsqueeze(0)               # 1,K,D
    return -0.5 * (LOG_2PI + log_vars.unsqueeze(0) + (var + diff2) * inv).sum(-1)


def gaussian_neg_entropy(log_var: torch.Tensor) -> torch.Tensor:
    """``E_q[log q(z|x)] = -1/2 sum_d (log 2 pi + 1 + log sigma_d^2)``, shape (N,)."""
    return -0.5 * (LOG_2PI + 1.0 + log_var).sum(-1)


def standard_normal_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag sigma^2) || N(0, I))`` per row (the plain VAE warm-up term), shape (N,)."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


# --- the mixture prior ---------------------------------------------------------------------

class MixtureDensity(nn.Module):
    """What every mixture prior derives from its components (diagonal or full).

    A subclass gives ``n_components``, ``log_weights`` (at least K entries),
    ``component_log_prob(z)`` (``log pi_c + log N(z | c)``) and ``expected_log_prob(mu, log_var)``
    (``E_q[log N(z | c)]``); the density, the posterior and VaDE's responsibilities follow.
    """

    def log_responsibilities(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """``log q(c | x)`` (N, K): VaDE's closed form for the encoder's Gaussian."""
        log_pi = self.log_weights[: self.n_components]
        return torch.log_softmax(log_pi + self.expected_log_prob(mu, log_var), dim=1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` under the mixture, (N,)."""
        return torch.logsumexp(self.component_log_prob(z), dim=1)

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """``p(c | z)`` at points ``z`` (Bayes' rule), (N, K)."""
        return torch.softmax(self.component_log_prob(z), dim=1)

    def check_component(self, component: int) -> None:
        """A ``ValueError`` unless ``component`` is one of the K."""
        if not 0 <= component < self.n_components:
            raise ValueError(f"component must be in [0, {self.n_components}), got {component}")


def check_mixture_weights(weights: np.ndarray) -> None:
    """A :class:`ValueError` unless every weight is finite and positive: a weight of 0 was clipped to
    1e-12 (log -27.6), which a narrow component outweighs, and it took nearly all the responsibility
    of galaxies it should never have (leave such a component out instead)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError(f"mixture weights must be finite and positive (leave a component of weight 0 out), "
                         f"got {np.array2string(w, precision=3, threshold=8)}")


class MixturePrior(MixtureDensity):
    """A mixture of K diagonal Gaussians in D dimensions with learned weights.

    The weights are ``softmax(logits)`` (always normalised, unlike the published code), the
    variances are stored as log-variances clamped to :data:`PRIOR_LOG_VAR_RANGE`.

    ``max_components`` slots are allocated; only the first ``n_active`` take part (the
    others have weight exactly zero). This lets the number of components be chosen from the
    data after pretraining (BIC) without changing parameter shapes mid-training, which
    optimisers, checkpoints and DDP all rely on.

    Parameters
    ----------
    n_components : int
        Number of slots (the largest K that can be used).
    latent_dim : int
        Dimension D of the latent space.
    """

    def __init__(self, n_components: int, latent_dim: int):
        super().__init__()
        if n_components < 1 or latent_dim < 1:
            raise ValueError("n_components and latent_dim must be positive")
        self.max_components = int(n_components)
        self.latent_dim = int(latent_dim)
        self.logits = nn.Parameter(torch.zeros(n_components))
        # spread the initial means so that an un-initialised prior is still well defined
        g = torch.Generator().manual_seed(0)
        self.means = nn.Parameter(torch.randn(n_components, latent_dim, generator=g))
        self.raw_log_vars = nn.Parameter(torch.zeros(n_components, latent_dim))
        self.register_buffer("n_active", torch.tensor(n_components, dtype=torch.long))

    # parameters ----------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """The number of active components K."""
        return int(self.n_active)

    def _mask(self) -> torch.Tensor:
        return torch.arange(self.max_components, device=self.logits.device) < self.n_active

    @property
    def log_weights(self) -> torch.Tensor:
        """``log pi`` over all slots (``-inf`` on inactive ones), shape (max_components,)."""
        logits = self.logits.masked_fill(~self._mask(), float("-inf"))
        return torch.log_softmax(logits, dim=0)

    @property
    def log_vars(self) -> torch.Tensor:
        """Log-variances of every slot, clamped to :data:`PRIOR_LOG_VAR_RANGE`, shape (max_components, D)."""
        lo, hi = PRIOR_LOG_VAR_RANGE
        return self.raw_log_vars.clamp(lo, hi)

    def active(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_weights, means, log_vars)`` of the K active components."""
        k = self.n_components
        return self.log_weights[:k], self.means[:k], self.log_vars[:k]

    @torch.no_grad()
    def set_parameters(self, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> None:
        """Load a fitted mixture (e.g. scikit-learn's diagonal ``GaussianMixture``).

        ``weights`` (K,), ``means`` (K, D), ``variances`` (K, D) with ``K <= max_components``;
        the remaining slots are deactivated.
        """
        weights = np.asarray(weights, dtype=np.float64)
        k = len(weights)
        if not 1 <= k <= self.max_components:
            raise ValueError(f"{k} components do not fit in {self.max_components} slots")
        check_mixture_weights(weights)
        dev = self.logits.device
        self.n_active.fill_(k)
        self.logits.zero_()
        self.logits[:k] = torch.as_tensor(np.log(weights / weights.sum()), dtype=self.logits.dtype, device=dev)
        self.means.zero_()
        self.means[:k] = torch.as_tensor(means, dtype=self.means.dtype, device=dev)
        lo, hi = PRIOR_LOG_VAR_RANGE
        lv = np.clip(np.log(np.clip(np.asarray(variances, dtype=np.float64), 1e-300, None)), lo, hi)
        self.raw_log_vars.zero_()
        self.raw_log_vars[:k] = torch.as_tensor(lv, dtype=self.raw_log_vars.dtype, device=dev)

    # densities -----------------------------------------------------------------------
    def expected_log_prob(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """``E_q[log N(z | mu_c, var_c)]`` for each active component, (N, K)."""
        _, means, log_vars = self.active()
        return gaussian_expected_log_prob(mu, log_var, means, log_vars)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log pi_c + log N(z | mu_c, var_c)`` at points ``z``, (N, K)."""
        log_pi, means, log_vars = self.active()
        diff2 = (z.unsqueeze(1) - means.unsqueeze(0)) ** 2
        log_n = -0.5 * (LOG_2PI + log_vars.unsqueeze(0) + diff2 * torch.exp(-log_vars).unsqueeze(0)).sum(-1)
        return log_pi + log_n

    def sample(self, component: int, n: int, temperature: float = 0.5,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from ``N(mu_k, temperature * var_k)``, (n, D)."""
        self.check_component(component)
        mean = self.means[component]
        std = torch.exp(0.5 * self.log_vars[component]) * math.sqrt(temperature)
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=mean.dtype).to(mean.device)
        return mean + std * eps


@dataclass
class LossTerms:
    """Per-image terms of one loss evaluation (each a Tensor of shape (N,))."""

    reconstruction: torch.Tensor
    kl: torch.Tensor
    expected_log_pz_c: torch.Tensor | None = None
    expected_log_pc: torch.Tensor | None = None
    entropy_c: torch.Tensor | None = None
    neg_entropy_z: torch.Tensor | None = None
    log_gamma: torch.Tensor | None = None


def vade_kl_terms(mu: torch.Tensor, log_var: torch.Tensor, prior: MixturePrior) -> dict[str, torch.Tensor]:
    """The pieces of ``KL(q(z, c | x) || p(z, c))`` for each image.

    Returns
    -------
    dict
        ``log_gamma`` (N, K); per image (N,): ``expected_log_pz_c`` =
        ``sum_c gamma_c E_q[log p(z|c)]``, ``expected_log_pc`` = ``sum_c gamma_c log pi_c``,
        ``entropy_c`` = ``-sum_c gamma_c log gamma_c``, ``neg_entropy_z`` = ``E_q[log q(z|x)]``
        and ``kl`` = ``neg_entropy_z - expected_log_pz_c - expected_log_pc - entropy_c``.
    """
    log_pi, _, _ = prior.active()
    e_log_n = prior.expected_log_prob(mu, log_var)                # N,K
    log_gamma = torch.log_softmax(log_pi + e_log_n, dim=1)
    gamma = log_gamma.exp()
    expected_log_pz_c = (gamma * e_log_n).sum(1)
    # 0 * -inf never happens: log_pi and log_gamma are finite on active components
    expected_log_pc = (gamma * log_pi).sum(1)
    entropy_c = -(gamma * log_gamma).sum(1)
    neg_entropy_z = gaussian_neg_entropy(log_var)
    kl = neg_entropy_z - expected_log_pz_c - expected_log_pc - entropy_c
    return {
        "log_gamma": log_gamma,
        "expected_log_pz_c": expected_log_pz_c,
        "expected_log_pc": expected_log_pc,
        "entropy_c": entropy_c,
        "neg_entropy_z": neg_entropy_z,
        "kl": kl,
    }


# --- the model ------------------------------------------------------------------------------
