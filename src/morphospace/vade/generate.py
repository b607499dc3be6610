"""Synthetic galaxies: decoded samples of one mixture component.

A model with a mixture ``prior`` (:class:`~morphospace.vade.model.MixturePrior`) and a
``decode`` generates through :class:`Generative`: the pixel :class:`~morphospace.vade.model.VaDE`
and the form-first :class:`~morphospace.vade.form_model.FormVaDE` both inherit it, so
``model.generate(component, n)`` needs nothing but the prior's sampling and the decoder.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InvalidArgument, UserError

MAX_GENERATED = 100_000  # galaxies drawn in one call: all are returned as one array (5 GB at 64 px colour)
MAX_TEMPERATURE = 100.0  # beyond, the draws fall where the decoder has never been (NaN, inf images)
DECODE_BATCH = 1024

__all__ = ["Generative"]


class Generative:
    """Mixin for a torch module with ``prior``, ``encode`` and ``decode``: :meth:`predict_log_proba`
    and :meth:`generate`."""

    @torch.no_grad()
    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``log q(c | x)`` of images over the active mixture components, from the encoder's mean and
        variance (no sampling, no gradients).

        Parameters
        ----------
        x : Tensor (N, C, H, W)
            Raw images.

        Returns
        -------
        Tensor (N, K)
        """
        mu, log_var = self.encode(x)
        return self.prior.log_responsibilities(mu, log_var)

    def generate(self, component: int, n: int, temperature: float = 0.5, reject_below: float | None = None,
                 seed: int = 0, max_tries: int = 100) -> np.ndarray:
        """Synthetic galaxies of one mixture component.

        Draws ``z ~ N(mu_k, temperature * var_k)`` and decodes it. With ``reject_below``, only
        draws whose posterior ``p(k | z)`` under the mixture is at least that are kept (so the
        samples are typical of component k and not of a neighbour).

        Parameters
        ----------
        component : int
        n : int
        temperature : float
            Variance scale t (the paper used 0.5).
        reject_below : float, optional
        seed : int
        max_tries : int
            Give up after drawing ``max_tries * n`` candidates.

        Returns
        -------
        ndarray (n, C, H, W) float32
        """
        k = self.prior.n_components
        for name, value in (("component", component), ("n", n)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidArgument(f"{name} must be an integer, got {value!r}")
        if not 0 <= component < k:
            raise InvalidArgument(f"component must be in 0..{k - 1} (the model has {k}), got {component}")
        if not 1 <= n <= MAX_GENERATED:
            raise InvalidArgument(f"n must be in 1..{MAX_GENERATED:,} (every galaxy is held in memory), got {n}")
        for name, value, ok in (("temperature", temperature, lambda t: math.isfinite(t) and 0 < t <= MAX_TEMPERATURE),
                                ("reject_below", reject_below, lambda r: r is None or 0 <= r < 1)):
            number = value is None or (not isinstance(value, bool) and isinstance(value, (int, float, np.integer,
                                                                                         np.floating)))
            if not (number and ok(value)):  # a string was a TypeError from a comparison
                raise InvalidArgument(f"{name} must be a number in " + (
                    f"(0, {MAX_TEMPERATURE:g}] (a multiple of the component's variance)" if name == "temperature"
                    else "[0, 1)") + f", got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise InvalidArgument(f"seed must be an integer in 0..2**63-1, got {seed!r}")  # torch overflowed
        g = torch.Generator().manual_seed(int(seed))
        kept: list[torch.Tensor] = []
        have, drawn = 0, 0
        self.eval()
        with torch.no_grad():
            while have < n:
                if drawn >= max_tries * n:
                    raise UserError(f"only {have} of {max_tries * n} draws of component {component} have "
                                    f"p(k|z) >= {reject_below}: lower --reject-below or raise the temperature")
                # a batch at a time: the decoder's activations of a million draws at once fill the memory
                m = min(max(n - have, 16) if reject_below else n - have, DECODE_BATCH)
                z = self.prior.sample(component, m, temperature=temperature, generator=g)
                drawn += m
                if reject_below is not None:
                    z = z[self.prior.posterior(z)[:, component] >= reject_below]
                z = z[: n - have]
                if len(z):
                    kept.append(self.decode(z))
                    have += len(z)
        return torch.cat(kept).numpy().astype(np.float32)
