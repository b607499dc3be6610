"""Sky positions in the explorer: RA/Dec in the tooltip and the selection CSV, and a sky map.

When the run's catalogue has ``ra`` and ``dec`` columns (degrees, as the ingest writes them),
the explorer gets each galaxy's position (float64, so a position survives
the round trip to the CSV to well under a milliarcsecond) and :func:`sky_map` one more map
beside the latent ones: a small field in a plain RA/Dec projection (RA scaled by the cosine of
the field's declination), a large one in the equal-area Hammer-Aitoff projection; RA increases
to the left, as on the sky seen from the ground. Graticule lines travel with the map so the
page can draw and label them. Galaxies without a valid position (missing, not finite, Dec
outside [-90, 90]) are drawn in a row below the sky, and the map's name says how many.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .collect import RunContents

__all__ = ["SKY_COLUMNS", "sky_positions", "project", "sky_map"]

SKY_COLUMNS = ("ra", "dec")
_SMALL_FIELD_DEG = 60.0  # wider than this (in RA or Dec): Hammer-Aitoff


def sky_positions(contents: RunContents, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """RA and Dec (degrees, float64) of the galaxies on the map, or None without both columns.

    Parameters
    ----------
    contents : RunContents
    points : ndarray of int
        The cube rows on the map.

    Returns
    -------
    (ra, dec) or None
        RA wrapped into [0, 360); NaN for both where a position is missing, not
        finite or has Dec outside [-90, 90]. None when the catalogue lacks
        ``ra`` or ``dec`` or no galaxy has a valid position.
    """
    inside = contents.inside
    if not all(c in inside.columns for c in SKY_COLUMNS):
        return None
    rows = inside.iloc[points]
    ra = pd.to_numeric(rows["ra"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    dec = pd.to_numeric(rows["dec"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if bad.all():
        return None
    ra, dec = np.mod(ra, 360.0), dec.copy()
    ra[bad] = dec[bad] = np.nan
    return ra, dec


def _centre_ra(ra: np.ndarray) -> tuple[float, float]:
    """The middle of the RA arc the galaxies cover (across 0h when they do) and the arc's width."""
    s = np.sort(ra)
    gaps = np.diff(np.r_[s, s[0] + 360.0])
    g = int(np.argmax(gaps))  # the largest empty arc; the galaxies cover the rest
    width = 360.0 - float(gaps[g])
    start = s[(g + 1) % len(s)]
    return float(np.mod(start + width / 2, 360.0)), width


def project(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float, wide: bool) -> np.ndarray:
    """Map coordinates of sky positions, RA increasing to the left.

    Parameters
    ----------
    ra, dec : ndarray
        Degrees.
    ra0, dec0 : float
        The field's centre (degrees).
    wide : bool
        True: Hammer-Aitoff centred on ``ra0`` (equal-area, the whole sky);
        False: RA offsets scaled by cos(``dec0``) against Dec (a small field).

    Returns
    -------
    ndarray of float64, shape (n, 2)
    """
    dra = np.mod(np.asarray(ra, dtype=np.float64) - ra0 + 180.0, 360.0) - 180.0
    dec = np.asarray(dec, dtype=np.float64)
    if not wide:
        return np.c_[-dra * np.cos(np.radians(dec0)), dec]
    lon, lat = np.radians(dra), np.radians(dec)
    z = np.sqrt(1 + np.cos(lat) * np.cos(lon / 2))
    return np.degrees(np.c_[-2 * np.sqrt(2) * np.cos(lat) * np.sin(lon / 2) / z, np.sqrt(2) * np.sin(lat) / z])


def _steps(width: float, candidates: tuple) -> float:
    return next((c for c in candidates if width / c <= 8), candidates[-1])


def sky_map(ra: np.ndarray, dec: np.ndarray) -> dict:
    """The explorer's sky map: projected positions, normalised like the latent maps, and a graticule.

    Parameters
    ----------
    ra, dec : ndarray
        Degrees (:func:`sky_positions`; NaN: no position).

    Returns
    -------
    dict
        ``name``, ``xy`` (float32, n x 2, in [-1, 1]) and ``grid``: a list of
        ``{"label", "xy"}`` graticule lines (float32 polylines, m x 2, in the
        same coordinates; ``at``, when present: the vertex to label).
    """
    ok = np.isfinite(ra) & np.isfinite(dec)
    ra0, width = _centre_ra(ra[ok])
    lo, hi = float(np.min(dec[ok])), float(np.max(dec[ok]))
    wide = width > _SMALL_FIELD_DEG or hi - lo > _SMALL_FIELD_DEG
    dec0 = (lo + hi) / 2
    xy = np.zeros((len(ra), 2))
    xy[ok] = project(ra[ok], dec[ok], ra0, dec0, wide)
    p0, p1 = xy[ok].min(axis=0), xy[ok].max(axis=0)
    span = float(max(p1 - p0)) or 1.0
    n_bad = int((~ok).sum())
    if n_bad:  # a row below the sky, not silently left out
        xy[~ok, 0] = np.linspace(p0[0], p0[0] + span, n_bad) if n_bad > 1 else p0[0]
        xy[~ok, 1] = p0[1] - 0.08 * span
        p0 = xy.min(axis=0)
    centre, half = (xy.min(axis=0) + xy.max(axis=0)) / 2, float(max(xy.max(axis=0) - xy.min(axis=0))) / 2 or 1.0

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a - centre) / half).astype(np.float32)

    grid = []
    if wide:
        ra_lines, dec_lines = np.arange(0, 360, 60.0), np.arange(-60, 61, 30.0)
        ra_range, dec_range = (-179.999, 179.999), (-90, 90)
        edge = np.linspace(-90, 90, 48)
        for side in ra_range:  # the rim of the sky
            grid.append({"label": "", "xy": norm(project(np.full_like(edge, ra0 + side), edge, ra0, dec0, wide))})
    else:
        pad = 0.02 * max(width, hi - lo, 1e-3)
        rstep = _steps(width / 15, (1 / 60, 1 / 12, 0.25, 1, 2, 4, 6)) * 15  # whole minutes / hours of RA
        dstep = _steps(hi - lo, (1 / 60, 5 / 60, 0.25, 0.5, 1, 2, 5, 10, 15, 30))
        ra_range, dec_range = (-width / 2 - pad, width / 2 + pad), (max(-90, lo - pad), min(90, hi + pad))
        first = np.ceil((ra0 + ra_range[0]) / rstep) * rstep
        ra_lines = np.mod(np.arange(first, ra0 + ra_range[1] + 1e-9, rstep), 360)
        dec_lines = np.arange(np.ceil(dec_range[0] / dstep) * dstep, dec_range[1] + 1e-9, dstep)
    t = np.linspace(0, 1, 48)
    for r in ra_lines:
        d = dec_range[0] + t * (dec_range[1] - dec_range[0])
        line = {"label": _hours(r), "xy": norm(project(np.full_like(d, r), d, ra0, dec0, wide))}
        if wide:  # meridians meet at the poles: label them on the equator
            line["at"] = int(np.argmin(np.abs(d)))
        grid.append(line)
    for d in dec_lines:
        r = ra0 + ra_range[0] + t * (ra_range[1] - ra_range[0])
        grid.append({"label": _degrees(d), "xy": norm(project(r, np.full_like(r, d), ra0, dec0, wide))})
    how = "Hammer-Aitoff" if wide else "RA scaled by cos Dec"
    name = f"sky: RA/Dec ({how}; RA increases to the left)"
    if n_bad:
        name += f"; {n_bad:,} without a position in the row below"
    return {"name": name, "xy": norm(xy), "grid": grid}


def _degrees(dec: float) -> str:
    """Dec for a graticule label: ``+30°``, ``-2.5°``."""
    d = round(float(dec), 2) + 0.0  # no "-0"
    if d == 0:
        return "0\u00b0"
    return f"{d:+.0f}\u00b0" if d == int(d) else f"{d:+.2f}".rstrip("0") + "\u00b0"


def _hours(ra_deg: float) -> str:
    """RA in hours for a graticule label: ``10h``, ``10h30m``, ``10h30.5m``."""
    minutes = round(float(ra_deg) / 15 * 60, 1) % (24 * 60)
    h, m = divmod(minutes, 60)
    if abs(m) < 1e-6:
        return f"{int(h)}h"
    return f"{int(h)}h{m:g}m"
