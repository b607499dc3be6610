"""What the survey adds to a galaxy: the PSF, bright neighbours, faint field sources, CCD noise.

:func:`render_bands` is one galaxy as the survey sees it: the g, r, i images before the
display stretch (:mod:`~morphospace.data.synth.stretch`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .canvas import MOFFAT_BETA, Canvas, band_fluxes
from .galaxies import draw_galaxy, spheroid
from .params import seeded_rng

_SKY_ELECTRONS = 200.0  # sky electrons per pixel: sets the Poisson noise of bright parts
_NOISE_CORR_PX = 0.75  # sky-noise correlation length (Gaussian sigma, pixels of a 128 frame)


def render_bands(p: dict, noise: bool = True) -> np.ndarray:
    """Render the g, r, i images of parameters ``p``: galaxy, neighbours, PSF and noise.

    Parameters
    ----------
    p : dict
        Parameters from :func:`~morphospace.data.synth.params.sample_params` (edited or not).
    noise : bool
        Add the sky and source noise; False gives the noiseless, PSF-convolved light.

    Returns
    -------
    ndarray, shape (3, size, size), float64
        g, r, i in ADU, sky-subtracted.
    """
    import galsim

    psf = galsim.Moffat(beta=MOFFAT_BETA, fwhm=p["psf_fwhm_px"])
    cv = Canvas(p["size"], psf)
    draw_galaxy(cv, p, seeded_rng(p["knot_seed"]))
    _draw_neighbours(cv, p, psf)
    bands = cv.bands()
    if noise:
        _add_noise(bands, p)
    return bands


def _draw_neighbours(cv: Canvas, p: dict, psf) -> None:
    """The bright companions (stars and galaxies) and the faint field sources of ``p``."""
    import galsim

    fwhm = p["psf_fwhm_px"]
    for comp in p["companions"]:
        fluxes = band_fluxes(comp["flux"], comp["colour"])
        if comp["kind"] == "star":  # a point source is the PSF itself
            cv.add_moffat(fluxes, comp["x"], comp["y"], fwhm)
        else:
            obj = galsim.Convolve(spheroid(comp["sersic_n"], comp["hlr"], comp["q"], comp["angle"]), psf)
            cv.add_stamp(obj, fluxes, comp["x"], comp["y"], stamp=int(12 * comp["hlr"] + 6 * fwhm) + 9)
    for src in p["field"]:
        # Faint field galaxies are barely resolved: a PSF-shaped blob broadened by the galaxy's
        # size (widths add in quadrature) is indistinguishable at their signal-to-noise.
        if src["kind"] == "star":
            cv.add_moffat(band_fluxes(src["flux"], src["colour"]), src["x"], src["y"], fwhm)
        else:
            cv.add_moffat(band_fluxes(src["flux"], src["colour"]), src["x"], src["y"],
                          math.hypot(fwhm, 2.0 * src["hlr"]), src["q"], src["angle"])


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
