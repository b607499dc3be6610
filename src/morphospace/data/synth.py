"""The built-in synthetic survey: labelled mock SDSS-like gri cutouts rendered with GalSim.

:func:`make_survey` writes a folder that reads like a real survey::

    OUT/
      images/synth_000000.png ...   8-bit RGB PNG (lossless, so the same seed gives the same bytes)
      catalogue.csv                 id, file, morphology, then truth columns (see ``TRUTH_COLUMNS``)
      morphospace_synth.json        marker: generator version, seed, n, size, column meanings

Six morphologies (column ``morphology``): ``elliptical``, ``lenticular``, ``spiral`` (bulge +
exponential disk + 2-4 logarithmic arms of either winding), ``barred_spiral`` (a bar whose ends
start two arms), ``edge_on`` (a thick inclined disk) and ``irregular`` (a clumpy knotty disk, or
a merger of two disturbed galaxies with tidal tails). The nuisances a morphology method should
ignore are drawn at random and recorded: orientation, inclination, handedness, size, flux, seeing,
sky noise and bright neighbours (0-2 companions, stars or galaxies, some cut by the frame edge),
plus unrecorded-position faint field sources (only their number is kept).

The look follows SDSS gri cutouts as shown to Galaxy Zoo: each component (bulge, disk, arms, bar,
knots, neighbours) has its own g-r and r-i colour and is convolved with one Moffat PSF; the three
bands get CCD noise (GalSim, seeded per galaxy), correlated over about a pixel as in the resampled
SDSS cutouts, and are mapped to RGB (R = i, G = r, B = g) with a Lupton et al. (2004) asinh
stretch whose colour is then smoothed like a JPEG's chroma. Frames are ``size`` pixels at the
Galaxy Zoo proportion: the galaxy's R90 is about 11 % of the frame side, so it sits well inside
the central half that the default preprocessing keeps. Sizes, radial profiles, sky level, noise
(per pixel and binned) and core/disk colours were tuned against ``sdss-gz1`` resized to 128 px
(see ``benchmarks/make_synth_comparison.py`` and ``docs/synth_vs_sdss.png``).

The main galaxy is drawn by GalSim in Fourier space (Sersic, Exponential, InclinedExponential,
RandomKnots, Gaussian profiles), multiplied by the PSF transform and summed per band. Spiral arms
are not a GalSim profile: the arm light (an exponential disk modulated by a logarithmic-spiral
pattern, plus star-forming knots along the arms) is computed as a numpy array in the disk plane,
projected, and convolved with the same GalSim PSF transform.

Every galaxy draws its parameters from its own random stream, seeded by ``(seed, index)``, so a
survey is the same bytes whatever the number of worker processes, and the first ``k`` galaxies of
a larger survey with the same seed are the same galaxies. Classes are balanced: each block of six
consecutive galaxies holds every morphology once, in a seeded random order.

Conventions (as displayed, i.e. row 0 of the PNG at the top): pixel positions ``x`` = column and
``y`` = row, 0-based; angles are degrees counter-clockwise from the +x axis; ``winding = +1``
means an arm, followed outward from the centre, turns clockwise on the screen.

Examples
--------
>>> from morphospace.data.synth import make_survey
>>> out = make_survey("/tmp/mock", n=60, seed=0, workers=1, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..progress import progress as _progress_bar
from ..run import atomic_path, write_json, write_table

log = logging.getLogger("morphospace")

GENERATOR_VERSION = "1.0"
MARKER_NAME = "morphospace_synth.json"
CATALOGUE_NAME = "catalogue.csv"
IMAGE_DIR = "images"
MORPHOLOGIES = ("elliptical", "lenticular", "spiral", "barred_spiral", "edge_on", "irregular")
MAX_COMPANIONS = 2
BANDS = ("g", "r", "i")

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
}

# --- the look: colours, noise and the stretch (tuned by eye against SDSS gri JPEGs) ---------

# (g-r, r-i) means and scatters of each stellar population, in magnitudes.
_COLOURS = {
    "old": ((0.78, 0.04), (0.40, 0.03)),  # ellipticals, bulges, bars
    "s0disk": ((0.68, 0.05), (0.36, 0.03)),  # lenticular disks: old but a touch bluer
    "disk": ((0.45, 0.07), (0.30, 0.04)),  # star-forming disks
    "young": ((0.20, 0.08), (0.15, 0.04)),  # arms, knots, tidal tails
}
_BAND_SCALE = np.array([1.25, 1.0, 0.85])  # g, r, i weights before the stretch (B, G, R)
_STRETCH_ALPHA = 0.012  # linear gain at faint levels: display units per ADU
_STRETCH_Q = 8.0  # asinh softening: how hard bright cores are compressed
_SKY_PEDESTAL = (0.9, 1.2, 1.2)  # g, r, i ADU added before the stretch so the sky noise is not clipped to black
_SKY_ELECTRONS = 200.0  # sky electrons per pixel: sets the Poisson noise of bright parts
_MOFFAT_BETA = 3.0
_NOISE_CORR_PX = 0.75  # sky-noise correlation length (Gaussian sigma, pixels of a 128 frame)
_CHROMA_BLUR_PX = 1.5  # JPEG-like smoothing of the colour (not the brightness) of the display
_R90_FRACTION = 0.115  # R90 / frame side: GZ cutouts are ~10 R90 wide; 0.115 matches their displayed profiles


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def morphology_of(seed: int, index: int, morphologies: Sequence[str] = MORPHOLOGIES) -> str:
    """The class of galaxy ``index``: each block of ``len(morphologies)`` holds each class once."""
    k = len(morphologies)
    block, pos = divmod(int(index), k)
    order = _rng(seed, block, 0xC1A55).permutation(k)
    return morphologies[int(order[pos])]


def _colour(rng: np.random.Generator, population: str) -> tuple[float, float]:
    (gr, sgr), (ri, sri) = _COLOURS[population]
    return float(rng.normal(gr, sgr)), float(rng.normal(ri, sri))


def _projected_q(inclination_deg: float, q0: float) -> float:
    """Axis ratio of an oblate body of intrinsic flattening ``q0`` seen at ``inclination``."""
    c = math.cos(math.radians(inclination_deg))
    return math.sqrt(c * c + q0 * q0 * (1.0 - c * c))


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
    before :func:`render_bands` (e.g. flip ``winding``) to render controlled variants.

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
    """
    if morphology is None:
        morphology = morphology_of(seed, index, morphologies)
    if morphology not in MORPHOLOGIES:
        raise UserError(f"unknown morphology '{morphology}' (known: {', '.join(MORPHOLOGIES)})")
    # Three independent streams: the frame (seeing, noise, size, flux, orientation), the galaxy's
    # structure, and its neighbours; forcing another class keeps the same frame and neighbours.
    rng = _rng(seed, index, 1)
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
    rng = _rng(seed, index, 2)
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
    rng = _rng(seed, index, 3)
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


# --- rendering -----------------------------------------------------------------------------

def _band_fluxes(flux_r: float, colour: tuple[float, float]) -> np.ndarray:
    """(g, r, i) fluxes of a component with r flux ``flux_r`` and colours (g-r, r-i)."""
    gr, ri = colour
    return flux_r * np.array([10 ** (-0.4 * gr), 1.0, 10 ** (0.4 * ri)])


@functools.lru_cache(maxsize=256)
def _psf_kimage(size: int, fwhm: float) -> np.ndarray:
    """The Moffat PSF x pixel transform on the frame's FFT grid (cached: FWHMs are on a grid)."""
    import galsim

    obj = galsim.Convolve(galsim.Moffat(beta=_MOFFAT_BETA, fwhm=fwhm), galsim.Pixel(1.0))
    kim = obj.drawKImage(nx=size, ny=size, scale=2 * math.pi / size).array
    out = np.fft.ifftshift(kim)[:, : size // 2 + 1]
    out.flags.writeable = False
    return out


class _Canvas:
    """Three band images built from components that are each drawn once.

    The main galaxy's components are drawn by GalSim in Fourier space (``drawKImage``),
    multiplied by the PSF x pixel transform (drawn once per galaxy) and summed per band with
    the component's g, r, i fluxes, so a galaxy costs one inverse FFT per band however many
    components it has. Its light is centred and falls to noise well inside the frame, so the
    periodic FFT frame needs no padding. Neighbours near the edge are drawn in real space on
    small stamps instead, so their light is cut by the edge rather than wrapped around.
    """

    def __init__(self, size: int, psf):
        import galsim

        self.galsim = galsim
        self.size = size
        self.psf = psf
        self.centre = (size - 1) / 2.0
        self._dk = 2 * math.pi / size
        self._half = size // 2 + 1
        self.psf_k = _psf_kimage(size, psf.fwhm)
        self.k_bands = np.zeros((3, size, self._half), dtype=np.complex128)
        self.real = np.zeros((3, size, size), dtype=np.float64)

    def _kimage(self, obj) -> np.ndarray:
        """The half-plane Fourier image of ``obj`` in numpy's FFT order (k = 0 at index 0)."""
        kim = obj.drawKImage(nx=self.size, ny=self.size, scale=self._dk).array
        return np.fft.ifftshift(kim)[:, : self._half]

    def add(self, obj, fluxes: np.ndarray, x: float | None = None, y: float | None = None) -> None:
        """Add a flux-1 GalSim profile centred at (x, y) (default: the frame centre), PSF-convolved."""
        x = self.centre if x is None else x
        y = self.centre if y is None else y
        k = self._kimage(obj.shift(x, y))  # GalSim x = column, y = row of the array
        self.k_bands += fluxes[:, None, None] * (k * self.psf_k)[None]

    def add_array(self, arr: np.ndarray, fluxes: np.ndarray) -> None:
        """Add a flux-1 surface-brightness array sampled on the frame's pixels, PSF-convolved."""
        k = np.fft.rfft2(arr / arr.sum())
        self.k_bands += fluxes[:, None, None] * (k * self.psf_k)[None]

    def add_stamp(self, obj, fluxes: np.ndarray, x: float, y: float, stamp: int, method: str = "auto") -> None:
        """Draw ``obj`` (already including the PSF) at (x, y) on a stamp clipped to the frame."""
        galsim = self.galsim
        ix, iy = int(round(x)), int(round(y))
        half = stamp // 2
        x0, x1 = max(ix - half, 0), min(ix + half, self.size - 1)
        y0, y1 = max(iy - half, 0), min(iy + half, self.size - 1)
        if x0 > x1 or y0 > y1:
            return
        img = galsim.ImageD(galsim.BoundsI(x0 + 1, x1 + 1, y0 + 1, y1 + 1), scale=1.0)
        obj.drawImage(image=img, method=method, center=galsim.PositionD(x + 1.0, y + 1.0))
        self.real[:, y0:y1 + 1, x0:x1 + 1] += fluxes[:, None, None] * img.array[None]

    def add_moffat(self, fluxes: np.ndarray, x: float, y: float, fwhm: float, q: float = 1.0,
                   angle: float = 0.0) -> None:
        """Add a Moffat blob (a star: the PSF; or a sheared, broadened one) sampled on a stamp.

        Evaluated directly (it is the GalSim Moffat profile of the PSF, sampled at pixel
        centres like ``method="no_pixel"``) because a frame has a dozen of them and GalSim's
        per-call overhead would dominate the rendering time.
        """
        beta = _MOFFAT_BETA
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        half = int(5 * fwhm) + 3
        ix, iy = int(round(x)), int(round(y))
        x0, x1 = max(ix - half, 0), min(ix + half, self.size - 1)
        y0, y1 = max(iy - half, 0), min(iy + half, self.size - 1)
        if x0 > x1 or y0 > y1:
            return
        dx = np.arange(x0, x1 + 1) - x
        dy = -(np.arange(y0, y1 + 1) - y)  # screen y points up
        t = math.radians(angle)
        u = dx[None, :] * math.cos(t) + dy[:, None] * math.sin(t)
        v = -dx[None, :] * math.sin(t) + dy[:, None] * math.cos(t)
        r2 = u * u * q + v * v / q  # area-preserving shear: major axis along ``angle``
        prof = (beta - 1.0) / (math.pi * alpha * alpha) * (1.0 + r2 / (alpha * alpha)) ** (-beta)
        self.real[:, y0:y1 + 1, x0:x1 + 1] += fluxes[:, None, None] * prof[None]

    def bands(self) -> np.ndarray:
        return np.fft.irfft2(self.k_bands, s=(self.size, self.size)) + self.real


def _galsim_angle(deg: float):
    import galsim

    # Rows go down on screen but up in GalSim, so a screen angle is minus a GalSim angle.
    return -deg * galsim.degrees


def _spheroid(n: float, hlr: float, q: float, pa_deg: float):
    import galsim

    prof = galsim.Sersic(n=n, half_light_radius=hlr) if n != 1.0 else galsim.Exponential(half_light_radius=hlr)
    if q < 0.999:
        # shear keeps the area; dilate by sqrt(q) so the major-axis radius stays ``hlr``
        prof = prof.shear(q=q, beta=_galsim_angle(pa_deg)).dilate(math.sqrt(q))
    return prof


def _screen_grid(size: int, pa_deg: float, q: float, dx: float = 0.0, dy: float = 0.0):
    """Disk-plane coordinates (u along the major axis, v deprojected) of every pixel centre."""
    c = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    xs = cols - c - dx
    ys = -(rows - c - dy)  # screen y points up
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


def render_bands(p: dict, noise: bool = True) -> np.ndarray:
    """Render the g, r, i images (3 x size x size float, ADU, sky-subtracted) of parameters ``p``."""
    import galsim

    size = p["size"]
    psf = galsim.Moffat(beta=_MOFFAT_BETA, fwhm=p["psf_fwhm_px"])
    cv = _Canvas(size, psf)
    morph = p["morphology"]
    flux = p["flux"]
    pa = p["position_angle"]
    knot_rng = _rng(p["knot_seed"])
    inc = p["inclination"]

    if morph == "elliptical":
        q = _projected_q(inc, p["bulge_q0"])
        cv.add(_spheroid(p["sersic_n"], p["spheroid_hlr"], q, pa), _band_fluxes(flux, p["colour_bulge"]))
    elif morph in ("lenticular", "spiral", "barred_spiral"):
        qd = _projected_q(inc, p["disk_q0"])
        qb = _projected_q(inc, p["bulge_q0"])
        fb, fbar, farm = p["bulge_fraction"], p["bar_fraction"], p["arm_fraction"]
        f_disk = 1.0 - fb - fbar
        bulge = _spheroid(p["sersic_n"], p["bulge_size"] * p["disk_hlr"], qb, pa)
        disk = _spheroid(1.0, p["disk_hlr"], qd, pa)
        old = galsim.Add([bulge.withFlux(fb / (fb + fbar))] + (
            [_bar(p, qd).withFlux(fbar / (fb + fbar))] if fbar > 0 else []))
        cv.add(old, _band_fluxes(flux * (fb + fbar), p["colour_bulge"]))
        cv.add(disk, _band_fluxes(flux * f_disk * (1.0 - farm), p["colour_disk"]))
        if farm > 0:
            cv.add_array(_arm_image(p, qd, knot_rng), _band_fluxes(flux * f_disk * farm, p["colour_young"]))
    elif morph == "edge_on":
        fb = p["bulge_fraction"]
        disk = galsim.InclinedExponential(inc * galsim.degrees, half_light_radius=p["disk_hlr"],
                                          scale_h_over_r=p["scale_h_over_r"]).rotate(_galsim_angle(pa))
        cv.add(disk, _band_fluxes(flux * (1.0 - fb), p["colour_disk"]))
        if fb > 0:
            qb = _projected_q(inc, p["bulge_q0"])
            cv.add(_spheroid(p["sersic_n"], p["bulge_size"] * p["disk_hlr"], qb, pa), _band_fluxes(flux * fb, p["colour_bulge"]))
    else:
        _render_irregular(cv, p, knot_rng)

    fwhm = p["psf_fwhm_px"]
    for comp in p["companions"]:
        fluxes = _band_fluxes(comp["flux"], comp["colour"])
        if comp["kind"] == "star":  # a point source is the PSF itself
            cv.add_moffat(fluxes, comp["x"], comp["y"], fwhm)
        else:
            obj = galsim.Convolve(_spheroid(comp["sersic_n"], comp["hlr"], comp["q"], comp["angle"]), psf)
            cv.add_stamp(obj, fluxes, comp["x"], comp["y"], stamp=int(12 * comp["hlr"] + 6 * fwhm) + 9)
    for src in p["field"]:
        # Faint field galaxies are barely resolved: a PSF-shaped blob broadened by the galaxy's
        # size (widths add in quadrature) is indistinguishable at their signal-to-noise.
        if src["kind"] == "star":
            cv.add_moffat(_band_fluxes(src["flux"], src["colour"]), src["x"], src["y"], fwhm)
        else:
            cv.add_moffat(_band_fluxes(src["flux"], src["colour"]), src["x"], src["y"],
                          math.hypot(fwhm, 2.0 * src["hlr"]), src["q"], src["angle"])

    bands = cv.bands()
    if noise:
        _add_noise(bands, p)
    return bands


@functools.lru_cache(maxsize=8)
def _noise_filter(size: int) -> np.ndarray:
    """Half-plane transfer function that correlates white noise over ~1 pixel, unit variance kept.

    SDSS cutouts were resampled from the survey frames and JPEG-compressed, so their sky
    noise is correlated over a pixel or two; a Gaussian kernel of sigma ``_NOISE_CORR_PX``
    reproduces how its scatter falls when pixels are binned 2x2 and 4x4.
    """
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    t = np.exp(-2.0 * (math.pi * _NOISE_CORR_PX) ** 2 * (kx * kx + ky * ky))
    full = np.exp(-2.0 * (math.pi * _NOISE_CORR_PX) ** 2 * (np.fft.fftfreq(size)[None, :] ** 2 + ky * ky))
    out = t / math.sqrt(np.mean(full**2))
    out.flags.writeable = False
    return out


def _add_noise(bands: np.ndarray, p: dict) -> None:
    """CCD noise (Poisson noise of sky + sources, via GalSim), then correlated like SDSS cutouts."""
    import galsim

    size = bands.shape[-1]
    rel = np.array([1.0, 1.0, 1.3])  # g, r, i sky sigma relative to r (the i sky is brightest)
    rng = galsim.BaseDeviate(p["noise_seed"])
    filt = _noise_filter(size)
    for b in range(3):
        sigma = p["sky_noise"] * rel[b]
        gain = math.sqrt(_SKY_ELECTRONS) / sigma  # electrons per ADU, so that the sky gives sigma
        img = galsim.ImageD(bands[b].copy(), scale=1.0)  # a copy: GalSim would share the memory
        img.addNoise(galsim.CCDNoise(rng, sky_level=sigma * math.sqrt(_SKY_ELECTRONS), gain=gain))
        white = img.array - bands[b]
        bands[b] += np.fft.irfft2(np.fft.rfft2(white) * filt, s=(size, size))


def _bar(p: dict, qd: float):
    """A bar: an elongated flat Sersic in the disk plane, then projected like the disk."""
    import galsim

    length = p["bar_length"] * p["disk_hlr"]
    bar = galsim.Sersic(n=0.6, half_light_radius=0.55 * length)
    # elongate along the bar's disk-plane angle (bar_angle, radians, screen convention)
    bar = bar.shear(q=p["bar_q"], beta=-p["bar_angle"] * galsim.radians).dilate(math.sqrt(p["bar_q"]))
    # then the bar is rotated into the disk frame and compressed by the inclination
    rot = bar.rotate(_galsim_angle(p["position_angle"]))
    return rot.shear(q=qd, beta=_galsim_angle(p["position_angle"])).dilate(math.sqrt(qd))


def _render_irregular(cv: _Canvas, p: dict, knot_rng: np.random.Generator) -> None:
    import galsim

    flux = p["flux"]
    hlr = p["disk_hlr"]
    q = _projected_q(p["inclination"], p["bulge_q0"])
    pa = p["position_angle"]
    gs_rng = galsim.BaseDeviate(p["knot_seed"])
    knot_size = galsim.Gaussian(sigma=0.8 + 0.08 * hlr)
    if p["irregular_kind"] == "clumpy":
        fk = p["knot_fraction"]
        dx, dy = p["lopsided"]
        diffuse = _spheroid(1.0, hlr, q, pa).shear(g=p["distortion"], beta=_galsim_angle(p["distortion_angle"]))
        cv.add(diffuse, _band_fluxes(flux * (1 - fk), p["colour_disk"]))
        knots = galsim.RandomKnots(p["n_knots"], half_light_radius=hlr, flux=1.0, rng=gs_rng)
        knots = galsim.Convolve(knots, knot_size).shear(q=max(q, 0.4), beta=_galsim_angle(pa))
        cv.add(knots, _band_fluxes(flux * fk, p["colour_young"]), cv.centre + dx, cv.centre + dy)
        return
    # merger: the main galaxy at the centre, a partner overlapping it, tidal tails, a few knots
    part = p["partner"]
    total_main = 1.0 / (1.0 + part["flux_ratio"])
    main = _spheroid(p["sersic_n"], hlr * 0.8, q, pa).shear(g=p["distortion"], beta=_galsim_angle(p["distortion_angle"]))
    partner = _spheroid(part["sersic_n"], hlr * 0.8 * part["size_ratio"], part["q"], part["angle"]).shear(
        g=part["distortion"], beta=_galsim_angle(part["distortion_angle"]))
    tails = p.get("tails", [])
    f_tail = sum(t["fraction"] for t in tails)
    f_knot = p["knot_fraction"]
    f_gal = 1.0 - f_tail - f_knot
    fb = p["bulge_fraction"]
    # the main galaxy mixes an old and a disk population in one shape
    cv.add(main, _band_fluxes(flux * f_gal * total_main * fb, p["colour_bulge"])
           + _band_fluxes(flux * f_gal * total_main * (1 - fb), p["colour_disk"]))
    cv.add(partner, _band_fluxes(flux * f_gal * (1 - total_main), part["colour"]),
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
    cv.add(galsim.Add(young).withFlux(1.0), _band_fluxes(flux * total, p["colour_young"]))


# --- the RGB stretch ---------------------------------------------------------------------------

def lupton_rgb(bands: np.ndarray, scales: Sequence[float] = tuple(_BAND_SCALE), alpha: float = _STRETCH_ALPHA,
               q: float = _STRETCH_Q, pedestal: Sequence[float] = _SKY_PEDESTAL, chroma_blur: float = 0.0) -> np.ndarray:
    """Map g, r, i images to an 8-bit RGB image with the Lupton et al. (2004) asinh stretch.

    Colour is kept by stretching the mean intensity and scaling the three channels
    (R = i, G = r, B = g, each times ``scales``) by the same factor; a pixel whose
    brightest channel exceeds 1 is scaled down as a whole rather than clipped channel by
    channel, so saturated cores keep their hue.

    Parameters
    ----------
    bands : ndarray, shape (3, H, W)
        g, r, i images (sky-subtracted).
    scales : sequence of 3 floats
        Weights of g, r, i.
    alpha : float
        Linear gain at faint levels (display units per input unit).
    q : float
        Softening: larger compresses bright parts harder.
    pedestal : sequence of 3 floats
        Added to g, r, i before the stretch so the sky noise is not clipped at black.
    chroma_blur : float
        Gaussian sigma (pixels) by which the colour, not the brightness, is smoothed, as the
        chroma subsampling of a JPEG does; 0 leaves the colours alone.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    g, r, i = (np.asarray(bands[k], dtype=np.float64) * scales[k] + pedestal[k] for k in range(3))
    rgb = np.stack([i, r, g], axis=-1)
    total = rgb.mean(axis=-1)
    safe = np.where(total > 1e-12, total, 1e-12)
    factor = np.where(total > 1e-12, np.arcsinh(alpha * q * safe) / (q * safe), 0.0)
    rgb = rgb * factor[..., None]
    peak = rgb.max(axis=-1, keepdims=True)
    rgb = np.where(peak > 1.0, rgb / np.maximum(peak, 1e-12), rgb)
    rgb = np.clip(rgb, 0.0, 1.0)
    if chroma_blur > 0:
        rgb = _smooth_chroma(rgb, chroma_blur)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _smooth_chroma(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the Cb, Cr planes (JPEG's YCbCr) of an RGB float image, keeping its luma."""
    from scipy.ndimage import gaussian_filter

    ycc = rgb @ _YCC.T
    for c in (1, 2):
        ycc[..., c] = gaussian_filter(ycc[..., c], sigma, mode="nearest")
    return ycc @ np.linalg.inv(_YCC).T


# --- truth catalogue ---------------------------------------------------------------------------

def truth_row(p: dict) -> dict[str, Any]:
    """The catalogue row (truth columns) of parameters ``p``."""
    morph = p["morphology"]
    inc = float(p["inclination"])
    if morph == "elliptical":
        q = _projected_q(inc, p["bulge_q0"])
        size_px = p["spheroid_hlr"]
    elif morph == "irregular":
        q = _projected_q(inc, p["bulge_q0"])
        size_px = p["disk_hlr"] * (0.8 if p["irregular_kind"] == "merger" else 1.0)
    elif morph == "edge_on":
        q = _edge_on_axis_ratio(p)
        size_px = p["disk_hlr"]
    else:
        q = _projected_q(inc, p["disk_q0"])
        size_px = p["disk_hlr"]
    row: dict[str, Any] = {
        "morphology": morph,
        "irregular_kind": p["irregular_kind"],
        "position_angle": round(p["position_angle"], 3),
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
    return row


def _edge_on_axis_ratio(p: dict) -> float:
    """Axis ratio of the thick inclined disk, from second moments of a PSF-free render."""
    import galsim

    disk = galsim.InclinedExponential(p["inclination"] * galsim.degrees, half_light_radius=p["disk_hlr"],
                                      scale_h_over_r=p["scale_h_over_r"])
    img = disk.drawImage(nx=p["size"], ny=p["size"], scale=1.0).array
    c = (p["size"] - 1) / 2.0
    rows, cols = np.mgrid[0:p["size"], 0:p["size"]]
    w = img / img.sum()
    x, y = cols - c, rows - c
    cov = [[(w * x * x).sum(), (w * x * y).sum()], [(w * x * y).sum(), (w * y * y).sum()]]
    low, high = np.linalg.eigvalsh(cov)
    return float(math.sqrt(max(low, 0.0) / high))


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


# --- one galaxy, and the survey ------------------------------------------------------------------

def render_galaxy(seed: int, index: int, size: int = 128, morphology: str | None = None,
                  morphologies: Sequence[str] = MORPHOLOGIES, **overrides: Any) -> tuple[np.ndarray, dict]:
    """Render one galaxy of the survey as an RGB uint8 array and its truth row.

    ``overrides`` replace drawn parameters (keys of :func:`sample_params`) before rendering,
    e.g. ``winding=-1`` or ``companions=[]``, to make controlled variants.
    """
    p = sample_params(seed, index, size, morphology, morphologies)
    unknown = set(overrides) - set(p)
    if unknown:
        raise UserError(f"unknown galaxy parameter(s): {', '.join(sorted(unknown))}")
    p.update(overrides)
    rgb = lupton_rgb(render_bands(p), chroma_blur=_CHROMA_BLUR_PX * p["size"] / 128.0)
    return rgb, truth_row(p)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", compress_level=1)  # fast; still lossless


def _image_id(index: int, n: int) -> str:
    return f"synth_{index:0{max(6, len(str(n - 1)))}d}"


def _work(job: tuple[int, int, int, int, tuple[str, ...], str]) -> dict[str, Any]:
    """Render galaxy ``index`` to its PNG and return its catalogue row (runs in a worker)."""
    seed, index, n, size, morphologies, out_dir = job
    rgb, row = render_galaxy(seed, index, size, morphologies=morphologies)
    gid = _image_id(index, n)
    rel = f"{IMAGE_DIR}/{gid}.png"
    _write_png(Path(out_dir) / rel, rgb)
    return {"id": gid, "file": rel, **row}


def _marker(seed: int, n: int, size: int, morphologies: Sequence[str]) -> dict[str, Any]:
    columns = {}
    for name, meaning in TRUTH_COLUMNS.items():
        if "{i}" in name:
            for k in range(1, MAX_COMPANIONS + 1):
                columns[name.format(i=k)] = meaning.replace("companion i", f"companion {k}")
        else:
            columns[name] = meaning
    return {
        "generator": "morphospace.synth",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "size": int(size),
        "morphologies": list(morphologies),
        "catalogue": CATALOGUE_NAME,
        "images": IMAGE_DIR,
        "image_format": "png (8-bit RGB: R = i, G = r, B = g, Lupton asinh stretch)",
        "id_column": "id",
        "file_column": "file",
        "truth_label": "morphology",
        "columns": columns,
        "conventions": "x = column, y = row (0-based, row 0 at the top as displayed); angles in degrees "
                       "counter-clockwise from +x as displayed; winding +1 = arms turn clockwise outward",
    }


def read_marker(path: str | Path) -> dict[str, Any]:
    """The marker of the synthetic survey in folder ``path`` (a UserError if there is none)."""
    marker = Path(path) / MARKER_NAME
    if not marker.is_file():
        raise UserError(f"{path} is not a synthetic survey (no {MARKER_NAME})")
    return json.loads(marker.read_text())


def is_synth_survey(path: str | Path) -> bool:
    """Whether ``path`` holds a complete synthetic survey (its marker is written last)."""
    return (Path(path) / MARKER_NAME).is_file()


def _check_args(n: Any, seed: Any, size: Any, workers: Any, morphologies: Sequence[str]) -> None:
    for name, value, low in (("n", n, 1), ("seed", seed, 0), ("size", size, 32), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserError(f"synth: {name} must be an integer >= {low}, got {value!r}")
    bad = [m for m in morphologies if m not in MORPHOLOGIES]
    if bad or not morphologies or len(set(morphologies)) != len(morphologies):
        raise UserError(f"synth: morphologies must be distinct names among {', '.join(MORPHOLOGIES)}, got {list(morphologies)}")


def make_survey(out_dir: str | Path, n: int = 2000, seed: int = 0, size: int = 128, workers: int = 2,
                progress: bool = True, morphologies: Sequence[str] | None = None, overwrite: bool = False) -> Path:
    """Render a labelled mock survey into ``out_dir`` and return its path.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write (created). It must be empty or absent, or already hold a synthetic
        survey: one with the same parameters is reused as is; a different one needs
        ``overwrite=True``; an interrupted one (images but no marker) is rendered again.
    n : int
        Number of galaxies.
    seed : int
        Survey seed; the same seed gives byte-identical files.
    size : int
        Frame side in pixels (the galaxy's R90 is about 10 % of it).
    workers : int
        Processes rendering in parallel (1: in this process). The output does not depend on it.
    progress : bool
        Show a progress bar (also silenced by ``morphospace.progress.set_quiet``).
    morphologies : sequence of str, optional
        Classes to draw, balanced; default all six of ``MORPHOLOGIES``.
    overwrite : bool
        Replace a synthetic survey with different parameters.

    Returns
    -------
    Path
        ``out_dir``.
    """
    morphologies = tuple(morphologies) if morphologies is not None else MORPHOLOGIES
    _check_args(n, seed, size, workers, morphologies)
    n, seed, size, workers = int(n), int(seed), int(size), int(workers)
    out = Path(out_dir)
    want = _marker(seed, n, size, morphologies)
    if out.exists() and not out.is_dir():
        raise UserError(f"synth: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if is_synth_survey(out):
            have = read_marker(out)
            if have == want and not overwrite:
                log.info("synthetic survey already in %s (n=%d, seed=%d): reused", out, n, seed)
                return out
            if not overwrite:
                raise UserError(f"synth: {out} holds a different synthetic survey (n={have.get('n')}, "
                                f"seed={have.get('seed')}): choose another folder or overwrite it")
            _remove_survey(out)
        elif _looks_like_partial_survey(out):
            log.info("%s holds an interrupted synthetic survey (no marker): rendering it again", out)
            _remove_survey(out)
        else:
            raise UserError(f"synth: {out} is not empty and is not a synthetic survey: choose an empty folder")
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    jobs = [(seed, i, n, size, morphologies, str(out)) for i in range(n)]
    show = bool(progress)
    if workers == 1 or n < 2 * workers:
        results = map(_work, jobs)
        rows = list(_progress_bar(results, total=n, desc="synth", unit="gal") if show else results)
    else:
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        chunk = max(1, min(32, n // (8 * workers)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = pool.map(_work, jobs, chunksize=chunk)
            rows = list(_progress_bar(results, total=n, desc="synth", unit="gal") if show else results)
    table = pd.DataFrame(rows)
    write_table(out / CATALOGUE_NAME, table)
    write_json(out / MARKER_NAME, want)  # last: its presence means the survey is complete
    return out


def _looks_like_partial_survey(out: Path) -> bool:
    """An interrupted run: only images/ (with synth_* PNGs) and possibly a catalogue."""
    names = {p.name for p in out.iterdir()}
    if not names <= {IMAGE_DIR, CATALOGUE_NAME}:
        return False
    imgs = out / IMAGE_DIR
    return not imgs.exists() or all(f.name.startswith(("synth_", ".synth_")) for f in imgs.iterdir())


def _remove_survey(out: Path) -> None:
    """Delete the files a synthetic survey writes (and nothing else)."""
    (out / MARKER_NAME).unlink(missing_ok=True)  # first, so a half-deleted survey is not "complete"
    (out / CATALOGUE_NAME).unlink(missing_ok=True)
    imgs = out / IMAGE_DIR
    if imgs.is_dir():
        for f in imgs.iterdir():
            if f.is_file() and f.name.startswith(("synth_", ".synth_")):
                f.unlink()


def survey_digest(path: str | Path) -> str:
    """SHA-256 over the catalogue, marker and every image of a survey (for reproducibility checks)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path / CATALOGUE_NAME, path / MARKER_NAME] + sorted((path / IMAGE_DIR).glob("*.png"))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
