"""Mixture initialisation of a VaDE after pretraining (framework-free: numpy and scikit-learn).

The encoder means of every galaxy are fitted by a diagonal Gaussian mixture: K chosen by BIC
(:func:`select_k`) unless it is set, K-Means then a ``GaussianMixture`` (:func:`fit_mixture`),
optionally in the principal axes of the latent codes (:func:`principal_axes`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["select_k", "principal_axes", "fit_mixture", "MIN_PER_COMPONENT", "REG_COVAR"]

MIN_PER_COMPONENT = 10  # the BIC search never tries K > N / this
REG_COVAR = 1e-3  # variance floor of the initial mixture (latent codes are at scale ~1)


def select_k(z: np.ndarray, k_min: int, k_max: int, seed: int) -> tuple[int, dict[int, float]]:
    """K minimising the BIC of a diagonal Gaussian mixture on ``z`` (no labels involved)."""
    from sklearn.mixture import GaussianMixture

    # at least MIN_PER_COMPONENT galaxies per component: tiny components are noise, not morphology
    k_max = max(k_min, min(k_max, len(z) // MIN_PER_COMPONENT))
    bic: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        gm = GaussianMixture(k, covariance_type="diag", n_init=2, random_state=seed, reg_covar=REG_COVAR).fit(z)
        bic[k] = float(gm.bic(z))
    best = min(bic, key=bic.get)
    return best, bic


def principal_axes(z: np.ndarray) -> np.ndarray:
    """Orthogonal D x D matrix whose rows are the principal axes of ``z`` (largest variance first).

    Signs are fixed (largest loading positive) so the result is deterministic.
    """
    cov = np.cov(np.asarray(z, dtype=np.float64).T)
    vals, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, np.argsort(-vals)].T
    signs = np.sign(vecs[np.arange(len(vecs)), np.abs(vecs).argmax(1)])
    return vecs * signs[:, None]


def fit_mixture(z: np.ndarray, k: int, seed: int, posterior_var: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """K-Means(K) then a diagonal GaussianMixture started at its centres: weights, means, variances.

    Parameters
    ----------
    z : ndarray (N, D)
        The encoder means.
    k, seed : int
    posterior_var : ndarray (N, D), optional
        The encoder variances. Added, responsibility-weighted, to each component's variance,
        so that the component is the moment-matched Gaussian of its members' q(z|x), not only of
        their means. Without it, a latent dimension the VAE left unused (every z_mean ~ 0,
        every variance ~ 1) gets a component variance ~ 0, the closed-form responsibilities
        (which divide the encoder variance by the component variance) explode there, and every
        galaxy is assigned to the widest component: the collapse seen without it.
    """
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    km = KMeans(k, n_init=10, random_state=seed).fit(z)
    gm = GaussianMixture(k, covariance_type="diag", means_init=km.cluster_centers_, random_state=seed,
                         reg_covar=REG_COVAR, max_iter=500).fit(z)
    variances = gm.covariances_.copy()
    if posterior_var is not None:
        resp = gm.predict_proba(z)
        variances += (resp.T @ posterior_var) / np.clip(resp.sum(0), 1e-12, None)[:, None]
    return {"weights": gm.weights_, "means": gm.means_, "variances": variances}
