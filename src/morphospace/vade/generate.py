"""Synthetic galaxies: decoded samples of one mixture component, or of one cluster of merged components.

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
    """Mixin for a torch module with ``prior``, ``encode`` and ``decode``: :meth:`predict_log_proba`,
    :meth:`generate` and :meth:`generate_cluster`."""

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
        self._check_draw(component, n, temperature, reject_below, seed)
        return self._draws(component, n, temperature, reject_below, int(seed), max_tries, [component])

    def generate_cluster(self, components: list[int], n: int, temperature: float = 0.5,
                         reject_below: float | None = None, seed: int = 0, max_tries: int = 100) -> np.ndarray:
        """Synthetic galaxies of one cluster of merged mixture components (``ComponentMerger.groups_``).

        Each galaxy's component is drawn in proportion to the components' weights (the cluster's
        part of the mixture), then as :meth:`generate`; with ``reject_below``, a draw is kept where
        its posterior of the *cluster*, ``sum over its components of p(k | z)``, is at least that
        (a draw between two of its own components is a member, not a reject).

        Returns
        -------
        ndarray (n, C, H, W) float32, the components' draws shuffled together
        """
        k = self.prior.n_components
        if not (isinstance(components, (list, tuple)) and components and all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < k for c in components)
                and len(set(components)) == len(components)):
            raise InvalidArgument(f"a cluster is a list of distinct components in 0..{k - 1}, got {components!r}")
        self._check_draw(int(components[0]), n, temperature, reject_below, seed)
        weights = self.prior.log_weights.detach().exp().numpy()[list(components)].astype(np.float64)
        streams = np.random.SeedSequence([int(seed), 1_000_003])  # apart from generate's streams of the seed
        rng = np.random.default_rng(streams)
        counts = rng.multinomial(n, weights / weights.sum())
        places = rng.permutation(n)  # the components' draws shuffled together, filled in place (one copy)
        images, start = None, 0
        for c, m, child in zip(components, counts, streams.spawn(len(components))):
            if m == 0:
                continue
            part = self._draws(int(c), int(m), temperature, reject_below, int(child.generate_state(1, np.uint64)[0] >> 1),
                               max_tries, list(components))
            if images is None:
                images = np.empty((n, *part.shape[1:]), dtype=np.float32)
            images[places[start:start + m]] = part
            start += m
        return images

    def _check_draw(self, component, n, temperature, reject_below, seed) -> None:
        """One-line :class:`InvalidArgument` for a setting :meth:`generate` cannot draw with."""
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
            number = (value is None and name == "reject_below") or (not isinstance(value, bool) and isinstance(value, (int, float, np.integer,
                                                                                         np.floating)))
            if not (number and ok(value)):  # a string was a TypeError from a comparison
                raise InvalidArgument(f"{name} must be a number in " + (
                    f"(0, {MAX_TEMPERATURE:g}] (a multiple of the component's variance)" if name == "temperature"
                    else "[0, 1)") + f", got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise InvalidArgument(f"seed must be an integer in 0..2**63-1, got {seed!r}")  # torch overflowed

    def _draws(self, component: int, n: int, temperature: float, reject_below: float | None, seed: int,
               max_tries: int, accept_on: list[int]) -> np.ndarray:
        """``n`` decoded draws of ``component``, kept (with ``reject_below``) where the posterior summed
        over ``accept_on`` is at least that."""
        g = torch.Generator().manual_seed(int(seed))
        kept: list[torch.Tensor] = []
        have, drawn = 0, 0
        what = f"component {component}" if accept_on == [component] else f"the cluster of components {accept_on}"
        self.eval()
        with torch.no_grad():
            while have < n:
                if drawn >= max_tries * n:
                    raise UserError(f"only {have} of {max_tries * n} draws of {what} have p(k|z) >= {reject_below}: "
                                    "lower --reject-below or raise the temperature")
                # a batch at a time: the decoder's activations of a million draws at once fill the memory
                m = min(max(n - have, 16) if reject_below else n - have, DECODE_BATCH)
                z = self.prior.sample(component, m, temperature=temperature, generator=g)
                drawn += m
                if reject_below is not None:
                    z = z[self.prior.posterior(z)[:, accept_on].sum(1) >= reject_below]
                z = z[: n - have]
                if len(z):
                    kept.append(self.decode(z))
                    have += len(z)
        return torch.cat(kept).numpy().astype(np.float32)
