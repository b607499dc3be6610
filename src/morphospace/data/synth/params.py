"""Every random draw of a synthetic galaxy: its class, structure, frame and neighbours.

Each galaxy draws from its own streams, seeded by ``(seed, index)``, so a survey is the same
whatever the number of worker processes, and the first ``k`` galaxies of a larger survey with
the same seed are the same galaxies.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ...errors import UserError

MORPHOLOGIES = ("elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "irregular")
MAX_COMPANIONS = 2

# (g-r, r-i) means and scatters of each stellar population, in magnitudes (tuned by eye
# against SDSS gri JPEGs).
_COLOURS = {
    "old": ((0.78, 0.04), (0.40, 0.03)),  # ellipticals, bulges, bars
    "s0disk": ((0.68, 0.05), (0.36, 0.03)),  # lenticular disks: old but a touch bluer
    "disk": ((0.45, 0.07), (0.30, 0.04)),  # star-forming disks
    "young": ((0.20, 0.08), (0.15, 0.04)),  # arms, knots, tidal tails
}
_R90_FRACTION = 0.115  # R90 / frame side: GZ cutouts are ~10 R90 wide; 0.115 matches their displayed profiles


def seeded_rng(*key: int) -> np.random.Generator:
    """A numpy generator whose stream depends only on ``key``.

    Parameters
    ----------
    *key : int
        The integers that name the stream, e.g. ``(seed, index, 1)``.

    Returns
    -------
    numpy.random.Generator
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def morphology_of(seed: int, index: int, morphologies: Sequence[str] = MORPHOLOGIES) -> str:
    """The class of galaxy ``index``: each block of ``len(morphologies)`` holds each class once.

    Parameters
    ----------
    seed, index : int
        The survey seed and the galaxy's position in the survey.
    morphologies : sequence of str
        The classes drawn, balanced.

    Returns
    -------
    str
        One of ``morphologies``.
    """
    k = len(morphologies)
    block, pos = divmod(int(index), k)
    order = seeded_rng(seed, block, 0xC1A55).permutation(k)
    return morphologies[int(order[pos])]


def projected_q(inclination_deg: float, q0: float) -> float:
    """Axis ratio of an oblate body of intrinsic flattening ``q0`` seen at ``inclination``.

    Parameters
    ----------
    inclination_deg : float
        Viewing angle in degrees, 0 = face-on.
    q0 : float
        Intrinsic minor/major axis ratio.

    Returns
    -------
    float
        The projected minor/major axis ratio.
    """
    c = math.cos(math.radians(inclination_deg))
    return math.sqrt(c * c + q0 * q0 * (1.0 - c * c))


def _colour(rng: np.random.Generator, population: str) -> tuple[float, float]:
    (gr, sgr), (ri, sri) = _COLOURS[population]
    return float(rng.normal(gr, sgr)), float(rng.normal(ri, sri))


def _inclination(rng: np.random.Generator, cos_min: float, cos_max: float = 1.0) -> float:
    """An isotropic inclination (uniform in cos i) restricted to [cos_min, cos_max]."""
    return math.degrees(math.acos(rng.uniform(cos_min, cos_max)))


def _frame_position(rng: np.random.Generator, size: int, avoid: float) -> tuple[float, float]:
    """A uniform position in the frame at least ``avoid`` pixels from its centre."""
    c = (size - 1) / 2.0
    while True:
        x, y = rng.uniform(0.0, size - 1.0, size=2)
        if math.hypot(x - c, y - c) >= avoid:
            return float(x), float(y)


def sample_params(seed: int, index: int, size: int = 128, morphology: str | None = None,
                  morphologies: Sequence[str] = MORPHOLOGIES) -> dict[str, Any]:
    """Draw every parameter of galaxy ``index`` of the survey with ``seed``.

    The result is a plain dict (numbers, strings and lists of dicts). Callers may edit it
    before :func:`~morphospace.data.synth.observe.render_bands` (e.g. flip ``winding``) to
    render controlled variants.

    Parameters
    ----------
    seed, index : int
        The survey seed and the galaxy's position in the survey.
    size : int
        Frame side in pixels.
    morphology : str, optional
        Force the class; by default the balanced draw of :func:`morphology_of`.
    morphologies : sequence of str
        The classes of the balanced draw.

    Returns
    -------
    dict
        The galaxy's parameters: frame (``psf_fwhm_px``, ``sky_noise``, ``flux``, ``r90_px``,
        ``position_angle``, seeds), structure (per class), ``companions`` and ``field``.
    """
    if morphology is None:
        morphology = morphology_of(seed, index, morphologies)
    if morphology not in MORPHOLOGIES:
        raise UserError(f"unknown morphology '{morphology}' (known: {', '.join(MORPHOLOGIES)})")
    # Three independent streams: the frame (seeing, noise, size, flux, orientation), the galaxy's
    # structure, and its neighbours; forcing another class keeps the same frame and neighbours.
    rng = seeded_rng(seed, index, 1)
    p: dict[str, Any] = {"seed": int(seed), "index": int(index), "size": int(size), "morphology": morphology}
    # on a 0.05 px grid (of a 128 frame) so that each worker computes each PSF transform once
    p["psf_fwhm_px"] = float(round(rng.uniform(2.0, 4.5) / 0.05) * 0.05 * size / 128.0)
    p["sky_noise"] = float(np.exp(rng.normal(math.log(1.35), 0.2)))
    p["flux"] = float(10 ** rng.uniform(4.3, 5.0) * (size / 128.0) ** 2)
    p["r90_px"] = float(np.clip(np.exp(rng.normal(math.log(_R90_FRACTION), 0.18)), 0.08, 0.2) * size)
    p["position_angle"] = float(rng.uniform(0.0, 180.0))
    p["noise_seed"] = int(rng.integers(1, 2**31 - 1))
    p["knot_seed"] = int(rng.integers(1, 2**31 - 1))

    # Class-specific structure. Defaults describe "no such feature".
    rng = seeded_rng(seed, index, 2)
    p.update(winding=0, n_arms=0, pitch_angle=0.0, arm_fraction=0.0, arm_phase=0.0, arm_sharpness=0.0,
             n_knots=0, bar_fraction=0.0, bar_length=0.0, bar_q=1.0, bar_angle=0.0,
             irregular_kind="", bulge_q0=1.0, disk_q0=1.0, scale_h_over_r=0.0, bulge_size=0.0)
    p["colour_bulge"] = _colour(rng, "old")
    p["colour_disk"] = _colour(rng, "disk")
    p["colour_young"] = _colour(rng, "young")

    if morphology == "elliptical":
        p["sersic_n"] = float(rng.choice([2.5, 3.0, 3.5, 4.0]))
        p["bulge_q0"] = float(rng.uniform(0.35, 0.95))
        p["inclination"] = _inclination(rng, 0.0)
        p["bulge_fraction"] = 1.0
    elif morphology == "lenticular":
        p["sersic_n"] = float(rng.choice([2.5, 3.0, 3.5, 4.0]))
        p["bulge_q0"] = float(rng.uniform(0.6, 0.9))
        p["disk_q0"] = float(rng.uniform(0.12, 0.2))
        p["inclination"] = _inclination(rng, 0.25)
        p["bulge_fraction"] = float(rng.uniform(0.35, 0.7))
        p["bulge_size"] = float(rng.uniform(0.25, 0.45))
        p["colour_disk"] = _colour(rng, "s0disk")
    elif morphology in ("spiral", "barred_spiral"):
        barred = morphology == "barred_spiral"
        p["sersic_n"] = float(rng.choice([1.5, 2.0, 2.5, 3.0, 4.0]))
        p["bulge_q0"] = float(rng.uniform(0.6, 0.9))
        p["disk_q0"] = float(rng.uniform(0.12, 0.2))
        p["inclination"] = _inclination(rng, 0.4)
        p["bulge_fraction"] = float(rng.uniform(0.05, 0.35))
        p["bulge_size"] = float(rng.uniform(0.2, 0.4))
        p["winding"] = int(rng.choice([-1, 1]))
        p["n_arms"] = 2 if barred else int(rng.choice([2, 2, 3, 4]))
        p["pitch_angle"] = float(rng.uniform(12.0, 28.0))
        p["arm_fraction"] = float(rng.uniform(0.25, 0.55))
        p["arm_phase"] = float(rng.uniform(0.0, 2 * math.pi))
        p["arm_sharpness"] = float(rng.uniform(2.0, 5.0))
        p["n_knots"] = int(rng.integers(4, 14))
        if barred:
            p["bar_fraction"] = float(rng.uniform(0.12, 0.25))
            p["bar_length"] = float(rng.uniform(0.7, 1.1))  # bar half-length / disk half-light radius
            p["bar_q"] = float(rng.uniform(0.2, 0.3))
            p["bar_angle"] = p["arm_phase"]  # the arms start at the bar's ends
    elif morphology == "edge_on":
        p["sersic_n"] = float(rng.choice([1.5, 2.0, 3.0, 4.0]))
        p["bulge_q0"] = float(rng.uniform(0.6, 0.9))
        p["inclination"] = float(rng.uniform(80.0, 90.0))
        p["scale_h_over_r"] = float(rng.uniform(0.06, 0.14))
        p["bulge_fraction"] = float(rng.uniform(0.0, 0.3))
        p["bulge_size"] = float(rng.uniform(0.2, 0.4))
    else:  # irregular
        kind = "merger" if rng.random() < 0.5 else "clumpy"
        p["irregular_kind"] = kind
        p["sersic_n"] = float(rng.choice([1.0, 2.0, 4.0])) if kind == "merger" else 1.0
        p["bulge_q0"] = float(rng.uniform(0.4, 0.9))
        p["inclination"] = _inclination(rng, 0.3)
        p["bulge_fraction"] = 0.0 if kind == "clumpy" else float(rng.uniform(0.3, 1.0))
        p["n_knots"] = int(rng.integers(12, 40)) if kind == "clumpy" else int(rng.integers(3, 10))
        p["knot_fraction"] = float(rng.uniform(0.3, 0.55)) if kind == "clumpy" else float(rng.uniform(0.05, 0.2))
        if kind == "merger":
            sep = rng.uniform(0.6, 1.3) * p["r90_px"]
            ang = rng.uniform(0.0, 2 * math.pi)
            p["partner"] = {
                "dx": float(sep * math.cos(ang)), "dy": float(sep * math.sin(ang)),
                "flux_ratio": float(rng.uniform(0.35, 1.0)),
                "size_ratio": float(rng.uniform(0.6, 1.1)),
                "sersic_n": float(rng.choice([1.0, 1.5, 2.5, 4.0])),
                "q": float(rng.uniform(0.4, 0.95)), "angle": float(rng.uniform(0.0, 180.0)),
                "distortion": float(rng.uniform(0.1, 0.35)), "distortion_angle": float(rng.uniform(0.0, 180.0)),
                "colour": _colour(rng, "old" if rng.random() < 0.5 else "disk"),
            }
            p["distortion"] = float(rng.uniform(0.1, 0.35))
            p["distortion_angle"] = float(rng.uniform(0.0, 180.0))
            p["tails"] = [
                {"start": s, "angle": float(rng.uniform(0.0, 2 * math.pi)), "curl": float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.6)),
                 "length": float(rng.uniform(0.9, 2.0) * p["r90_px"]), "fraction": float(rng.uniform(0.04, 0.1))}
                for s in ("main", "partner") if rng.random() < 0.75
            ]
        else:
            p["lopsided"] = [float(v) for v in rng.normal(0.0, 0.15 * p["r90_px"], size=2)]
            p["distortion"] = float(rng.uniform(0.0, 0.3))
            p["distortion_angle"] = float(rng.uniform(0.0, 180.0))

    # Bright neighbours (recorded) and faint field sources (counted).
    rng = seeded_rng(seed, index, 3)
    n_comp = int(rng.choice([0, 1, 2], p=[0.35, 0.40, 0.25]))
    comps = []
    for _ in range(n_comp):
        x, y = _frame_position(rng, size, avoid=1.6 * p["r90_px"])
        if rng.random() < 0.5:
            gr = float(rng.uniform(0.3, 1.5))
            comps.append({"kind": "star", "x": x, "y": y, "flux": float(p["flux"] * 10 ** rng.uniform(-1.6, -0.3)),
                          "colour": (gr, 0.1 + 0.45 * gr)})
        else:
            comps.append({"kind": "galaxy", "x": x, "y": y, "flux": float(p["flux"] * 10 ** rng.uniform(-1.3, -0.4)),
                          "hlr": float(p["r90_px"] * rng.uniform(0.1, 0.3)), "sersic_n": float(rng.choice([1.0, 2.0, 4.0])),
                          "q": float(rng.uniform(0.3, 1.0)), "angle": float(rng.uniform(0.0, 180.0)),
                          "colour": _colour(rng, "old" if rng.random() < 0.5 else "disk")})
    p["companions"] = comps
    field = []
    for _ in range(int(rng.poisson(8.0 * (size / 128.0) ** 2))):
        x, y = (float(v) for v in rng.uniform(0.0, size - 1.0, size=2))
        flux = float(10 ** rng.uniform(1.3, 3.0) * p["sky_noise"])
        if rng.random() < 0.5:
            gr = float(rng.uniform(0.4, 1.6))
            field.append({"kind": "star", "x": x, "y": y, "flux": flux, "colour": (gr, 0.1 + 0.45 * gr)})
        else:
            gr = float(rng.uniform(0.7, 1.4))
            field.append({"kind": "galaxy", "x": x, "y": y, "flux": flux, "hlr": float(rng.uniform(0.6, 2.0) * size / 128.0),
                          "sersic_n": 1.0, "q": float(rng.uniform(0.3, 1.0)), "angle": float(rng.uniform(0.0, 180.0)),
                          "colour": (gr, 0.5 * gr)})
    p["field"] = field
    p["disk_hlr"] = p["r90_px"] / 2.3  # exponential: R90 / R50 ~ 2.3 (Petrosian concentration)
    p["spheroid_hlr"] = p["r90_px"] / 3.0  # de Vaucouleurs-like: R90 / R50 ~ 3.0-3.3
    return p

