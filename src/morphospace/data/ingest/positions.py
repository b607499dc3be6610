"""Sky positions at ingest: RA/Dec from the catalogue's columns, or from the WCS of FITS cutouts.

Where the input says where a galaxy is, the run's catalogue carries it as two float64 columns,
``ra`` and ``dec``, in degrees (ICRS, as given):

catalogue columns
    The first pair of :data:`POSITION_COLUMNS` present (names compared case-insensitively:
    ``ra``/``dec``, ``RA``/``Dec``, ``ra_deg``/``dec_deg``, ``RAJ2000``/``DEJ2000``,
    ``ra_j2000``/``dec_j2000``, ``alpha``/``delta``, ...). A number is degrees; a string may also
    be sexagesimal (``"12:34:56.7"``, ``"12h34m56.7s"`` or ``"12 34 56.7"`` for RA, in hours;
    ``"+12:34:56"`` or ``"12d34m56s"`` for Dec, in degrees): these common forms are read by a
    regular expression, any other by :class:`astropy.coordinates.Angle`. The two columns read are
    replaced by ``ra`` and ``dec``.
FITS cutouts
    The world position of the frame's centre pixel through the file's celestial WCS
    (:mod:`astropy.wcs`), converted to ICRS when the WCS is in another frame (FK5, galactic...).
    A file without a celestial WCS has no position (not a problem); a catalogue position, when
    there is one, is kept over the WCS.

A value that cannot be a position (Dec beyond +-90 degrees; RA outside [-180, 360] degrees, which
are wrapped into [0, 360); not a number; non-finite; RA without Dec or Dec without RA; a WCS that
does not evaluate) is left empty and its galaxy flagged ``bad_position``, with what was wrong in
the ingest summary; the galaxy itself is kept. An empty cell is simply no position.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd

__all__ = ["POSITION_COLUMNS", "find_position_columns", "parse_positions", "check_position",
           "wcs_centre", "set_positions"]

# (RA, Dec) column names, lower case, in order of preference
POSITION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ra", "dec"), ("ra_deg", "dec_deg"), ("raj2000", "dej2000"), ("raj2000", "decj2000"),
    ("ra_j2000", "dec_j2000"), ("ra_icrs", "de_icrs"), ("ra_icrs", "dec_icrs"), ("alpha", "delta"),
)
RA_RANGE = (-180.0, 360.0)  # accepted, then wrapped into [0, 360)


def find_position_columns(columns) -> tuple[str, str] | None:
    """The catalogue's RA and Dec columns: the first pair of :data:`POSITION_COLUMNS` present.

    Parameters
    ----------
    columns : iterable of str
        The catalogue's column names (compared case-insensitively).

    Returns
    -------
    (str, str) or None
        The two names as the catalogue spells them; None when no pair is complete.
    """
    lower: dict[str, str] = {}
    for c in columns:
        lower.setdefault(str(c).lower(), str(c))
    for ra, dec in POSITION_COLUMNS:
        if ra in lower and dec in lower:
            return lower[ra], lower[dec]
    return None


def check_position(ra: float, dec: float) -> tuple[float, float]:
    """A position in degrees, checked and with RA wrapped into [0, 360).

    Parameters
    ----------
    ra, dec : float
        Degrees.

    Returns
    -------
    (float, float)

    Raises
    ------
    ValueError
        Saying what is wrong (non-finite, Dec beyond +-90, RA outside [-180, 360]).
    """
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise ValueError(f"not finite (ra {ra}, dec {dec})")
    if abs(dec) > 90:
        raise ValueError(f"dec {dec:g} deg is beyond +-90")
    if not RA_RANGE[0] <= ra <= RA_RANGE[1]:
        raise ValueError(f"ra {ra:g} deg is outside [{RA_RANGE[0]:g}, {RA_RANGE[1]:g}]")
    return float(ra % 360.0), float(dec)


def _degrees(values: pd.Series, hours: bool) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Per cell: degrees (NaN where absent or unreadable), whether it holds anything, and why the
    unreadable ones are."""
    out = np.full(len(values), np.nan)
    problems: dict[int, str] = {}
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out[:] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return out, ~np.isnan(out), problems  # a numeric column: NaN is an empty cell
    cells = pd.Series(values, dtype=object).to_numpy()
    present = np.array([not (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                             or (isinstance(v, str) and not v.strip())) for v in cells], dtype=bool)
    text = {int(i): str(cells[i]).strip() for i in np.flatnonzero(present)}
    numbers = pd.to_numeric(pd.Series(list(text.values()), dtype=object), errors="coerce").to_numpy(dtype=float)
    angles: dict[int, str] = {}
    for (i, t), x in zip(text.items(), numbers):
        if np.isnan(x) and t.lower().lstrip("+-") != "nan":
            angles[i] = t  # not a number: sexagesimal, or nothing
        else:
            out[i] = x  # "nan" and "inf" stay: present but not finite
    if angles:
        _parse_angles(angles, hours, out, problems)
    return out, present, problems


# "12:34:56.7", "-00 30 00", "12h34m56.7s", "+12d34m56s": the common forms, read without astropy
_SEXAGESIMAL = re.compile(r"^([+-]?)(\d{1,3})(?::|\s+|[hd]\s*)(\d{1,2})(?::|\s+|m\s*)(\d{1,2}(?:\.\d*)?)s?$")


def _parse_angles(texts: dict[int, str], hours: bool, out: np.ndarray, problems: dict[int, str]) -> None:
    """Sexagesimal strings -> degrees in ``out``: the common forms by a regular expression (fast),
    the rest by :class:`astropy.coordinates.Angle` (all at once, else one by one to name the bad ones)."""
    parts = pd.Series(list(texts.values()), dtype=object).str.extract(_SEXAGESIMAL)
    whole, minutes, seconds = (pd.to_numeric(parts[k]).to_numpy(dtype=float) for k in (1, 2, 3))
    fine = (minutes < 60) & (seconds < 60) & ((whole < 24) if hours else True)  # others: astropy says why
    rows = np.fromiter(texts, dtype=np.int64, count=len(texts))
    sign = np.where(parts[0].to_numpy() == "-", -1.0, 1.0)
    value = sign * (whole + minutes / 60 + seconds / 3600) * (15.0 if hours else 1.0)
    out[rows[fine]] = value[fine]
    rest = {int(i): texts[int(i)] for i in rows[~fine]}
    if rest:
        _parse_with_astropy(rest, hours, out, problems)


def _parse_with_astropy(texts: dict[int, str], hours: bool, out: np.ndarray, problems: dict[int, str]) -> None:
    """Angle strings -> degrees in ``out`` by astropy (all at once, else one by one to name the bad ones)."""
    import astropy.units as u
    from astropy.coordinates import Angle

    unit = u.hourangle if hours else u.deg
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy only warns of a minute of 60 in a list: a bad value
        try:
            out[list(texts)] = Angle(list(texts.values()), unit=unit).deg
            return
        except Exception:  # noqa: BLE001 - astropy raises several types; find the bad cells below
            pass
        for i, t in texts.items():
            try:
                out[i] = float(Angle(t, unit=unit).deg)
            except Exception as exc:  # noqa: BLE001
                why = _why(exc)
                problems[i] = f"'{t[:40]}' is not {'an RA (hours)' if hours else 'a Dec (degrees)'}: {why}"


def parse_positions(ra_values, dec_values, names: tuple[str, str] = ("ra", "dec")
                    ) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """RA and Dec cells -> degrees, with the rows whose position is unusable and why.

    Parameters
    ----------
    ra_values, dec_values : array-like
        One cell per galaxy: numbers (degrees), strings (degrees, or sexagesimal: RA in hours,
        Dec in degrees), or missing (both missing: no position, not a problem).
    names : (str, str)
        The columns' names, for the messages.

    Returns
    -------
    ra, dec : ndarray of float64
        Degrees (RA wrapped into [0, 360)); NaN where there is no usable position.
    problems : dict
        Row -> what was wrong, for the rows to flag ``bad_position``.
    """
    ra_s, dec_s = pd.Series(ra_values).reset_index(drop=True), pd.Series(dec_values).reset_index(drop=True)
    if len(ra_s) != len(dec_s):
        raise ValueError(f"{len(ra_s)} RA values but {len(dec_s)} Dec values")
    ra, has_ra, p_ra = _degrees(ra_s, hours=True)
    dec, has_dec, p_dec = _degrees(dec_s, hours=False)
    problems = {i: f"{names[0]} {m}" for i, m in p_ra.items()}
    for i, m in p_dec.items():
        problems[i] = f"{problems[i]}; {names[1]} {m}" if i in problems else f"{names[1]} {m}"
    for i in np.flatnonzero(has_ra ^ has_dec):
        given, absent = (names[0], names[1]) if has_ra[i] else (names[1], names[0])
        problems.setdefault(int(i), f"{given} given without {absent}")
    with np.errstate(invalid="ignore"):
        ok = has_ra & has_dec & np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90) \
            & (ra >= RA_RANGE[0]) & (ra <= RA_RANGE[1])
    for i in np.flatnonzero(has_ra & has_dec & ~ok):
        if int(i) not in problems:
            try:
                check_position(float(ra[i]), float(dec[i]))
            except ValueError as exc:
                problems[int(i)] = str(exc)
    ok[list(problems)] = False
    out_ra, out_dec = np.full(len(ra), np.nan), np.full(len(ra), np.nan)
    out_ra[ok], out_dec[ok] = np.mod(ra[ok], 360.0), dec[ok]
    out_ra[out_ra >= 360.0] = 0.0  # a tiny negative RA wraps to 360.0 in floating point
    return out_ra, out_dec, problems


def wcs_centre(header, height: int, width: int) -> tuple[float, float] | None:
    """RA and Dec (degrees, ICRS) of a frame's centre pixel through a FITS header's celestial WCS.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header of the image HDU.
    height, width : int
        The frame's size in pixels (its centre is pixel ((width - 1) / 2, (height - 1) / 2), 0-based).

    Returns
    -------
    (float, float) or None
        None when the header has no celestial WCS.

    Raises
    ------
    ValueError
        When the WCS is there but does not evaluate to a position on the sky.
    """
    from astropy.wcs import WCS

    if not any(str(k).startswith("CTYPE") for k in header.keys()):
        return None  # no WCS at all: spare astropy the header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning and friends: the header is what it is
        try:
            wcs = WCS(header)
        except Exception as exc:  # noqa: BLE001 - malformed WCS keywords
            if any(str(k).startswith(("CTYPE1", "CTYPE2")) for k in header.keys()):
                raise ValueError(f"unreadable WCS: {_why(exc)}") from None
            return None
        if not wcs.has_celestial:
            return None
        cel = wcs.celestial
        x, y = (width - 1) / 2.0, (height - 1) / 2.0
        try:
            ra, dec = _icrs(cel, x, y)
        except Exception as exc:  # noqa: BLE001 - singular matrices, unknown frames...
            raise ValueError(f"WCS does not evaluate at the centre: {_why(exc)}") from None
    return check_position(ra, dec)


def _why(exc: BaseException) -> str:
    """The telling line of an exception (wcslib puts where it failed first, and why last)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:120] if lines else type(exc).__name__


def _icrs(cel, x: float, y: float) -> tuple[float, float]:
    """World position of pixel (x, y) of a celestial WCS, in ICRS degrees."""
    from astropy.wcs.utils import wcs_to_celestial_frame

    frame = wcs_to_celestial_frame(cel)
    if frame.name == "icrs":  # the common case: no coordinate transformation needed
        world = cel.wcs_pix2world(np.array([[x, y]]), 0)[0]
        return float(world[cel.wcs.lng]), float(world[cel.wcs.lat])
    from astropy.wcs.utils import pixel_to_skycoord

    sky = pixel_to_skycoord(x, y, cel, origin=0).icrs
    return float(sky.ra.deg), float(sky.dec.deg)


def set_positions(labels: pd.DataFrame, ra: np.ndarray, dec: np.ndarray, replace: tuple[str, ...] = ()) -> pd.DataFrame:
    """The label table with ``ra`` and ``dec`` (float64 degrees) as its first columns.

    Parameters
    ----------
    labels : pandas.DataFrame
        One row per record.
    ra, dec : ndarray
        Degrees, NaN where there is no position.
    replace : tuple of str
        Columns the positions were read from: dropped. Any other column whose name is ``ra`` or
        ``dec`` in any case is kept as ``catalogue_<name>``.

    Returns
    -------
    pandas.DataFrame
    """
    rest = labels.drop(columns=[c for c in replace if c in labels.columns])
    rest = rest.rename(columns={c: f"catalogue_{c}" for c in rest.columns if str(c).lower() in ("ra", "dec")})
    out = pd.DataFrame({"ra": np.asarray(ra, dtype=np.float64), "dec": np.asarray(dec, dtype=np.float64)},
                       index=rest.index)
    return pd.concat([out, rest], axis=1)
