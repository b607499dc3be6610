"""The truth catalogue of the synthetic survey: one row of true nuisances per galaxy.

The edge-on axis ratio is measured from unweighted second moments of the whole PSF-free
disk. We keep this rather than ``sep.extract``'s ``a``, ``b``: sep measures the moments of
the pixels above a detection threshold (an isophote), another quantity, and the
catalogue's bytes would change.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .params import MAX_COMPANIONS, MORPHOLOGIES, projected_q, seeded_rng

# Column -> meaning, written into the marker so the catalogue documents itself.
TRUTH_COLUMNS: dict[str, str] = {
    "id": "galaxy id (str)",
    "file": "image path relative to the survey folder",
    "morphology": "class: " + ", ".join(MORPHOLOGIES),
    "irregular_kind": "irregular only: merger (two overlapping disturbed galaxies) or clumpy (knotty disk); empty otherwise",
    "position_angle": "major-axis angle of the main galaxy, degrees counter-clockwise from +x as displayed, [0, 180)",
    "inclination": "degrees, 0 = face-on; for ellipticals the viewing angle of an oblate spheroid",
    "axis_ratio": "projected minor/major axis ratio of the main (disk or spheroid) component; edge_on: second moments of the PSF-free disk",
    "winding": "+1: arms turn clockwise as displayed when followed outward; -1: anticlockwise; 0: no arms",
    "n_arms": "number of spiral arms (0 when none)",
    "pitch_angle": "arm pitch angle in degrees (0 when no arms)",
    "bulge_fraction": "r-band fraction of the main galaxy's light in the bulge/spheroid (1 for ellipticals)",
    "bar_fraction": "r-band fraction of the main galaxy's light in the bar (0 when unbarred)",
    "size_px": "half-light radius of the dominant component along its major axis, pixels, before the PSF",
    "r90_px": "target R90 of the galaxy in pixels (the frame-scale draw that sets size_px)",
    "sersic_n": "Sersic index of the spheroid / bulge (1 for the clumpy irregulars' diffuse disk)",
    "flux": "total r-band flux of the main galaxy (with its merger partner and tails), ADU",
    "g_r": "g - r colour of the main galaxy in magnitudes (from the component fluxes)",
    "psf_fwhm_px": "FWHM of the Moffat PSF, pixels (the same in g, r, i)",
    "sky_noise": "r-band sky noise sigma per pixel, ADU",
    "n_companions": "bright neighbours in the frame (0-2), stars or galaxies, positions below",
    "comp{i}_x": "companion i column (0-based pixel, may be near or at the frame edge); empty if absent",
    "comp{i}_y": "companion i row (0-based pixel, row 0 at the top); empty if absent",
    "comp{i}_kind": "companion i: star or galaxy; empty if absent",
    "comp{i}_flux": "companion i r-band flux, ADU; empty if absent",
    "n_field": "faint field stars/galaxies scattered over the frame (positions not recorded)",
    "ra": "MOCK right ascension, degrees: a made-up position in a 2 x 2 degree patch round (150.1, +2.2), "
          "drawn from (seed, index); not a real sky position",
    "dec": "MOCK declination, degrees (see ra)",
}
MOCK_PATCH = (150.1, 2.2, 2.0)  # centre RA, centre Dec, side (degrees) of the mock positions


def truth_row(p: dict) -> dict[str, Any]:
    """The catalogue row (truth columns) of parameters ``p``.

    Parameters
    ----------
    p : dict
        Parameters from :func:`~morphospace.data.synth.params.sample_params`.

    Returns
    -------
    dict
        Column -> value for every column of :data:`TRUTH_COLUMNS` but ``id`` and ``file``
        (companion columns numbered 1 to :data:`MAX_COMPANIONS`).
    """
    morph = p["morphology"]
    inc = float(p["inclination"])
    if morph == "elliptical":
        q = projected_q(inc, p["bulge_q0"])
        size_px = p["spheroid_hlr"]
    elif morph == "irregular":
        # the main galaxy as drawn: the inclined body, then the distortion's shear
        q, pa = sheared_shape(projected_q(inc, p["bulge_q0"]), p["position_angle"], p["distortion"],
                              p["distortion_angle"])
        size_px = p["disk_hlr"] * (0.8 if p["irregular_kind"] == "merger" else 1.0)
    elif morph == "edge_on":
        q = _edge_on_axis_ratio(p)
        size_px = p["disk_hlr"]
    else:
        q = projected_q(inc, p["disk_q0"])
        size_px = p["disk_hlr"]
    if morph != "irregular":
        pa = p["position_angle"]
    row: dict[str, Any] = {
        "morphology": morph,
        "irregular_kind": p["irregular_kind"],
        "position_angle": round(pa, 3),
        "inclination": round(inc, 3),
        "axis_ratio": round(q, 4),
        "winding": int(p["winding"]),
        "n_arms": int(p["n_arms"]),
        "pitch_angle": round(p["pitch_angle"], 3),
        "bulge_fraction": round(p["bulge_fraction"], 4),
        "bar_fraction": round(p["bar_fraction"], 4),
        "size_px": round(size_px, 4),
        "r90_px": round(p["r90_px"], 4),
        "sersic_n": p["sersic_n"],
        "flux": round(p["flux"], 3),
        "g_r": round(_galaxy_colour(p), 4),
        "psf_fwhm_px": round(p["psf_fwhm_px"], 4),
        "sky_noise": round(p["sky_noise"], 4),
        "n_companions": len(p["companions"]),
    }
    for k in range(MAX_COMPANIONS):
        comp = p["companions"][k] if k < len(p["companions"]) else None
        row[f"comp{k + 1}_x"] = round(comp["x"], 3) if comp else np.nan
        row[f"comp{k + 1}_y"] = round(comp["y"], 3) if comp else np.nan
        row[f"comp{k + 1}_kind"] = comp["kind"] if comp else ""
        row[f"comp{k + 1}_flux"] = round(comp["flux"], 3) if comp else np.nan
    row["n_field"] = len(p["field"])
    row["ra"], row["dec"] = mock_position(p["seed"], p["index"])
    return row


def mock_position(seed: int, index: int) -> tuple[float, float]:
    """A made-up sky position for galaxy ``index`` of the survey with ``seed`` (degrees).

    Uniform over the :data:`MOCK_PATCH` square (equal area: RA spread by ``1 / cos(dec)``), from
    a stream of its own, so the images do not depend on it. It only lets the sky-position path
    (catalogue columns -> ``ra``/``dec`` -> export and sky map) run on the synthetic survey.

    Parameters
    ----------
    seed, index : int
        The survey seed and the galaxy's position in the survey.

    Returns
    -------
    (float, float)
        RA and Dec in degrees, rounded to 1e-6.
    """
    ra0, dec0, side = MOCK_PATCH
    u, v = seeded_rng(seed, index, 0x5C1E5).uniform(-0.5, 0.5, size=2)
    dec = dec0 + side * v
    return round(ra0 + side * u / math.cos(math.radians(dec)), 6), round(dec, 6)


def _edge_on_axis_ratio(p: dict) -> float:
    """Axis ratio of the thick inclined disk, from its second moments in closed form: GalSim's
    inclined exponential has a face-on variance of 3 r_s^2 along each axis and a sech^2 vertical
    profile of variance pi^2 h_s^2 / 12, so q^2 = cos^2 i + (pi^2 / 36) (h_s / r_s)^2 sin^2 i. (A
    render on the survey's pixels made a disk a tenth of a pixel thick fill one row or two
    depending on the frame's parity: 0.0 at 33 px, 0.32 at 32 px, for a true 0.066.)"""
    i = math.radians(p["inclination"])
    return math.sqrt(math.cos(i) ** 2 + (math.pi**2 / 36) * p["scale_h_over_r"] ** 2 * math.sin(i) ** 2)


def sheared_shape(q: float, pa_deg: float, g: float, angle_deg: float) -> tuple[float, float]:
    """Axis ratio and major-axis angle of a shape of axis ratio ``q`` at ``pa_deg`` sheared by ``g``
    along ``angle_deg`` afterwards (GalSim's ``.shear(q=...).shear(g=...)``; screen degrees,
    counter-clockwise from +x as displayed).

    Returns
    -------
    (float, float)
        The axis ratio, and the angle in [0, 180).
    """
    def shear(g_: float, beta: float) -> np.ndarray:
        c, s = math.cos(beta), math.sin(beta)
        rot = np.array([[c, -s], [s, c]])
        return rot @ np.diag([1 + g_, 1 - g_]) @ rot.T / math.sqrt(1 - g_ * g_)

    # GalSim's y points up, the screen's down: a screen angle is minus a GalSim one
    jac = shear(g, -math.radians(angle_deg)) @ shear((1 - q) / (1 + q), -math.radians(pa_deg))
    values, vectors = np.linalg.eigh(jac @ jac.T)
    major = vectors[:, 1]
    return float(math.sqrt(values[0] / values[1])), float(-math.degrees(math.atan2(major[1], major[0])) % 180.0)


def _galaxy_colour(p: dict) -> float:
    """g - r of the main galaxy from its component fractions and colours."""
    morph = p["morphology"]
    parts: list[tuple[float, tuple[float, float]]] = []
    if morph == "elliptical":
        parts = [(1.0, p["colour_bulge"])]
    elif morph in ("lenticular", "spiral", "barred_spiral"):
        fo = p["bulge_fraction"] + p["bar_fraction"]
        fd = 1.0 - fo
        parts = [(fo, p["colour_bulge"]), (fd * (1 - p["arm_fraction"]), p["colour_disk"]),
                 (fd * p["arm_fraction"], p["colour_young"])]
    elif morph == "edge_on":
        parts = [(p["bulge_fraction"], p["colour_bulge"]), (1 - p["bulge_fraction"], p["colour_disk"])]
    elif p["irregular_kind"] == "clumpy":
        parts = [(1 - p["knot_fraction"], p["colour_disk"]), (p["knot_fraction"], p["colour_young"])]
    else:
        part = p["partner"]
        f_young = p["knot_fraction"] + sum(t["fraction"] for t in p.get("tails", []))
        f_gal = 1.0 - f_young
        fm = f_gal / (1.0 + part["flux_ratio"])
        parts = [(fm * p["bulge_fraction"], p["colour_bulge"]), (fm * (1 - p["bulge_fraction"]), p["colour_disk"]),
                 (f_gal - fm, part["colour"]), (f_young, p["colour_young"])]
    g = sum(f * 10 ** (-0.4 * c[0]) for f, c in parts)
    r = sum(f for f, _ in parts)
    return -2.5 * math.log10(g / r)
