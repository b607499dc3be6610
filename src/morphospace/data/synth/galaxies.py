"""The main galaxy of each morphology: GalSim profiles, and the spiral arms as an array.

Bulges, disks, bars, knots, merger partners and tidal tails are GalSim profiles drawn in
Fourier space on the :class:`~morphospace.data.synth.canvas.Canvas`. Spiral arms are not a
GalSim profile: the arm light (an exponential disk modulated by a logarithmic-spiral pattern,
plus star-forming knots along the arms) is computed in the disk plane, projected, and
convolved with the same PSF transform.
"""

from __future__ import annotations

import math

import numpy as np

from .canvas import Canvas, band_fluxes
from .params import projected_q


def galsim_angle(deg: float):
    """A screen angle as a GalSim angle.

    Parameters
    ----------
    deg : float
        Degrees counter-clockwise from +x as displayed (row 0 at the top).

    Returns
    -------
    galsim.Angle
    """
    import galsim

    # Rows go down on screen but up in GalSim, so a screen angle is minus a GalSim angle.
    return -deg * galsim.degrees


def spheroid(n: float, hlr: float, q: float, pa_deg: float):
    """A Sersic (exponential for ``n = 1``) of unit flux, flattened to axis ratio ``q``.

    Parameters
    ----------
    n : float
        Sersic index.
    hlr : float
        Half-light radius along the major axis, pixels.
    q : float
        Minor/major axis ratio.
    pa_deg : float
        Major-axis angle, degrees counter-clockwise from +x as displayed.

    Returns
    -------
    galsim.GSObject
    """
    import galsim

    prof = galsim.Sersic(n=n, half_light_radius=hlr) if n != 1.0 else galsim.Exponential(half_light_radius=hlr)
    if q < 0.999:
        # shear keeps the area; dilate by sqrt(q) so the major-axis radius stays ``hlr``
        prof = prof.shear(q=q, beta=galsim_angle(pa_deg)).dilate(math.sqrt(q))
    return prof


def _screen_grid(size: int, pa_deg: float, q: float):
    """Disk-plane coordinates (u along the major axis, v deprojected) of every pixel centre."""
    c = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    xs = cols - c
    ys = -(rows - c)  # screen y points up
    t = math.radians(pa_deg)
    u = xs * math.cos(t) + ys * math.sin(t)
    v = (-xs * math.sin(t) + ys * math.cos(t)) / q
    return u, v


def _arm_image(p: dict, q: float, rng: np.random.Generator) -> np.ndarray:
    """The arm light (disk x log-spiral pattern, plus knots on the arms), flux-normalised to 1."""
    size = p["size"]
    h = p["disk_hlr"] / 1.678  # exponential scale length
    u_all, v_all = _screen_grid(size, p["position_angle"], q)
    # only pixels within 7 scale lengths (disk plane) carry light worth computing
    inside = (u_all * u_all + v_all * v_all) < (7.0 * h) ** 2
    u, v = u_all[inside], v_all[inside]
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    r_in = max(p["bar_length"] * p["disk_hlr"], 0.6 * h)
    # winding +1: the arm's screen angle decreases outward (clockwise as displayed)
    tan_p = math.tan(math.radians(p["pitch_angle"]))
    arm_angle = p["arm_phase"] - p["winding"] * np.log(np.maximum(r, 1e-3) / r_in) / tan_p
    m = p["n_arms"]
    pattern = ((1.0 + np.cos(m * (theta - arm_angle))) / 2.0) ** p["arm_sharpness"]
    taper = 1.0 - np.exp(-((r / r_in) ** 4))  # no arms inside the bulge / bar
    light = np.exp(-r / h) * pattern * taper
    if p["n_knots"]:
        # star-forming knots sitting on the arm ridges, in the disk plane
        kr = r_in * np.exp(rng.uniform(0.0, 1.0, p["n_knots"]) * 1.6)
        arm = rng.integers(0, m, p["n_knots"])
        ka = p["arm_phase"] + 2 * np.pi * arm / m - p["winding"] * np.log(kr / r_in) / tan_p
        sig = 0.05 * p["disk_hlr"] + 0.5
        d2 = (u[:, None] - kr * np.cos(ka)) ** 2 + (v[:, None] - kr * np.sin(ka)) ** 2
        knots = (np.exp(-d2 / (2 * sig * sig)) * np.exp(-kr / h)).sum(axis=1)
        if knots.sum() > 0:
            light = light / light.sum() + 0.35 * knots / knots.sum()
    img = np.zeros((size, size))
    img[inside] = light
    return img / img.sum()


def _tail_objects(origin: tuple[float, float], tail: dict, hlr: float) -> list:
    """A tidal tail: a curved chain of fading Gaussians leaving ``origin`` (column, row offsets)."""
    import galsim

    pieces = []
    k = 14
    for j in range(1, k + 1):
        s = j / k
        ang = tail["angle"] + tail["curl"] * s
        rad = hlr * 0.5 + tail["length"] * s
        x = origin[0] + rad * math.cos(ang)
        y = origin[1] + rad * math.sin(ang)
        w = (1.0 - 0.6 * s) / k
        pieces.append(galsim.Gaussian(sigma=0.8 + 1.6 * s, flux=w).shift(x, y))  # GalSim y = row
    return pieces


def _bar(p: dict, qd: float):
    """A bar: an elongated flat Sersic in the disk plane, then projected like the disk."""
    import galsim

    length = p["bar_length"] * p["disk_hlr"]
    bar = galsim.Sersic(n=0.6, half_light_radius=0.55 * length)
    # elongate along the bar's disk-plane angle (bar_angle, radians, screen convention)
    bar = bar.shear(q=p["bar_q"], beta=-p["bar_angle"] * galsim.radians).dilate(math.sqrt(p["bar_q"]))
    # then the bar is rotated into the disk frame and compressed by the inclination
    rot = bar.rotate(galsim_angle(p["position_angle"]))
    return rot.shear(q=qd, beta=galsim_angle(p["position_angle"])).dilate(math.sqrt(qd))


def draw_galaxy(cv: Canvas, p: dict, knot_rng: np.random.Generator) -> None:
    """Add the main galaxy of parameters ``p`` (all its components) to the canvas.

    Parameters
    ----------
    cv : Canvas
        The frame to draw on.
    p : dict
        Parameters from :func:`~morphospace.data.synth.params.sample_params`.
    knot_rng : numpy.random.Generator
        The stream that places the knots along spiral arms.
    """
    import galsim

    morph = p["morphology"]
    flux = p["flux"]
    pa = p["position_angle"]
    inc = p["inclination"]
    if morph == "elliptical":
        q = projected_q(inc, p["bulge_q0"])
        cv.add(spheroid(p["sersic_n"], p["spheroid_hlr"], q, pa), band_fluxes(flux, p["colour_bulge"]))
    elif morph in ("lenticular", "spiral", "barred_spiral"):
        qd = projected_q(inc, p["disk_q0"])
        qb = projected_q(inc, p["bulge_q0"])
        fb, fbar, farm = p["bulge_fraction"], p["bar_fraction"], p["arm_fraction"]
        f_disk = 1.0 - fb - fbar
        bulge = spheroid(p["sersic_n"], p["bulge_size"] * p["disk_hlr"], qb, pa)
        disk = spheroid(1.0, p["disk_hlr"], qd, pa)
        old = galsim.Add([bulge.withFlux(fb / (fb + fbar))] + (
            [_bar(p, qd).withFlux(fbar / (fb + fbar))] if fbar > 0 else []))
        cv.add(old, band_fluxes(flux * (fb + fbar), p["colour_bulge"]))
        cv.add(disk, band_fluxes(flux * f_disk * (1.0 - farm), p["colour_disk"]))
        if farm > 0:
            cv.add_array(_arm_image(p, qd, knot_rng), band_fluxes(flux * f_disk * farm, p["colour_young"]))
    elif morph == "edge_on":
        fb = p["bulge_fraction"]
        disk = galsim.InclinedExponential(inc * galsim.degrees, half_light_radius=p["disk_hlr"],
                                          scale_h_over_r=p["scale_h_over_r"]).rotate(galsim_angle(pa))
        cv.add(disk, band_fluxes(flux * (1.0 - fb), p["colour_disk"]))
        if fb > 0:
            qb = projected_q(inc, p["bulge_q0"])
            cv.add(spheroid(p["sersic_n"], p["bulge_size"] * p["disk_hlr"], qb, pa), band_fluxes(flux * fb, p["colour_bulge"]))
    else:
        _draw_irregular(cv, p)


def _draw_irregular(cv: Canvas, p: dict) -> None:
    """A clumpy knotty disk, or a merger of two disturbed galaxies with tidal tails."""
    import galsim

    flux = p["flux"]
    hlr = p["disk_hlr"]
    q = projected_q(p["inclination"], p["bulge_q0"])
    pa = p["position_angle"]
    gs_rng = galsim.BaseDeviate(p["knot_seed"])
    knot_size = galsim.Gaussian(sigma=0.8 + 0.08 * hlr)
    if p["irregular_kind"] == "clumpy":
        fk = p["knot_fraction"]
        dx, dy = p["lopsided"]
        diffuse = spheroid(1.0, hlr, q, pa).shear(g=p["distortion"], beta=galsim_angle(p["distortion_angle"]))
        cv.add(diffuse, band_fluxes(flux * (1 - fk), p["colour_disk"]))
        knots = galsim.RandomKnots(p["n_knots"], half_light_radius=hlr, flux=1.0, rng=gs_rng)
        knots = galsim.Convolve(knots, knot_size).shear(q=max(q, 0.4), beta=galsim_angle(pa))
        cv.add(knots, band_fluxes(flux * fk, p["colour_young"]), cv.centre + dx, cv.centre + dy)
        return
    # merger: the main galaxy at the centre, a partner overlapping it, tidal tails, a few knots
    part = p["partner"]
    total_main = 1.0 / (1.0 + part["flux_ratio"])
    main = spheroid(p["sersic_n"], hlr * 0.8, q, pa).shear(g=p["distortion"], beta=galsim_angle(p["distortion_angle"]))
    partner = spheroid(part["sersic_n"], hlr * 0.8 * part["size_ratio"], part["q"], part["angle"]).shear(
        g=part["distortion"], beta=galsim_angle(part["distortion_angle"]))
    tails = p.get("tails", [])
    f_tail = sum(t["fraction"] for t in tails)
    f_knot = p["knot_fraction"]
    f_gal = 1.0 - f_tail - f_knot
    fb = p["bulge_fraction"]
    # the main galaxy mixes an old and a disk population in one shape
    cv.add(main, band_fluxes(flux * f_gal * total_main * fb, p["colour_bulge"])
           + band_fluxes(flux * f_gal * total_main * (1 - fb), p["colour_disk"]))
    cv.add(partner, band_fluxes(flux * f_gal * (1 - total_main), part["colour"]),
           cv.centre + part["dx"], cv.centre + part["dy"])
    young = []
    for t in tails:
        origin = (0.0, 0.0) if t["start"] == "main" else (part["dx"], part["dy"])
        pieces = _tail_objects(origin, t, hlr)
        wsum = sum(pc.flux for pc in pieces)
        young += [pc.withFlux(pc.flux / wsum * t["fraction"]) for pc in pieces]
    knots = galsim.RandomKnots(p["n_knots"], half_light_radius=hlr * 1.3, flux=f_knot, rng=gs_rng)
    young.append(galsim.Convolve(knots, knot_size).shift(part["dx"] / 2, part["dy"] / 2))
    total = sum(y.flux for y in young)
    cv.add(galsim.Add(young).withFlux(1.0), band_fluxes(flux * total, p["colour_young"]))
