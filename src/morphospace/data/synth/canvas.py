"""The frame a synthetic galaxy is drawn on: three PSF-convolved band images (g, r, i)."""

from __future__ import annotations

import functools
import math

import numpy as np

MOFFAT_BETA = 3.0  # the Moffat PSF's wing index, the same in every band and frame


def band_fluxes(flux_r: float, colour: tuple[float, float]) -> np.ndarray:
    """(g, r, i) fluxes of a component with r flux ``flux_r`` and colours (g-r, r-i).

    Parameters
    ----------
    flux_r : float
        r-band flux, ADU.
    colour : tuple of float
        (g - r, r - i) in magnitudes.

    Returns
    -------
    ndarray, shape (3,)
        g, r, i fluxes.
    """
    gr, ri = colour
    return flux_r * np.array([10 ** (-0.4 * gr), 1.0, 10 ** (0.4 * ri)])


@functools.lru_cache(maxsize=256)
def _psf_kimage(size: int, fwhm: float) -> np.ndarray:
    """The Moffat PSF x pixel transform on the frame's FFT grid (cached: FWHMs are on a grid)."""
    import galsim

    obj = galsim.Convolve(galsim.Moffat(beta=MOFFAT_BETA, fwhm=fwhm), galsim.Pixel(1.0))
    kim = obj.drawKImage(nx=size, ny=size, scale=2 * math.pi / size).array
    out = np.fft.ifftshift(kim)[:, : size // 2 + 1]
    out.flags.writeable = False
    return out


class Canvas:
    """Three band images built from components that are each drawn once.

    The main galaxy's components are drawn by GalSim in Fourier space (``drawKImage``),
    multiplied by the PSF x pixel transform (drawn once per galaxy) and summed per band with
    the component's g, r, i fluxes, so a galaxy costs one inverse FFT per band however many
    components it has. Its light is centred and falls to noise well inside the frame, so the
    periodic FFT frame needs no padding. Neighbours near the edge are drawn in real space on
    small stamps instead, so their light is cut by the edge rather than wrapped around.

    Parameters
    ----------
    size : int
        Frame side in pixels.
    psf : galsim.Moffat
        The frame's PSF (only its FWHM is used: the transform is cached per size and FWHM).
    """

    def __init__(self, size: int, psf):
        import galsim

        self.galsim = galsim
        self.size = size
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
        """Add a flux-1 GalSim profile, PSF-convolved.

        Parameters
        ----------
        obj : galsim.GSObject
            The profile, centred on the origin, of unit flux.
        fluxes : ndarray, shape (3,)
            Its g, r, i fluxes.
        x, y : float, optional
            Column and row of its centre; the frame centre by default.
        """
        x = self.centre if x is None else x
        y = self.centre if y is None else y
        k = self._kimage(obj.shift(x, y))  # GalSim x = column, y = row of the array
        self.k_bands += fluxes[:, None, None] * (k * self.psf_k)[None]

    def add_array(self, arr: np.ndarray, fluxes: np.ndarray) -> None:
        """Add a surface-brightness array sampled on the frame's pixels, PSF-convolved.

        Parameters
        ----------
        arr : ndarray, shape (size, size)
            The light (normalised here to unit flux).
        fluxes : ndarray, shape (3,)
            Its g, r, i fluxes.
        """
        k = np.fft.rfft2(arr / arr.sum())
        self.k_bands += fluxes[:, None, None] * (k * self.psf_k)[None]

    def add_stamp(self, obj, fluxes: np.ndarray, x: float, y: float, stamp: int) -> None:
        """Draw ``obj`` (already including the PSF) on a stamp clipped to the frame.

        Parameters
        ----------
        obj : galsim.GSObject
            The PSF-convolved profile, of unit flux.
        fluxes : ndarray, shape (3,)
            Its g, r, i fluxes.
        x, y : float
            Column and row of its centre (may be near or beyond the edge).
        stamp : int
            Stamp side in pixels.
        """
        galsim = self.galsim
        ix, iy = int(round(x)), int(round(y))
        half = stamp // 2
        x0, x1 = max(ix - half, 0), min(ix + half, self.size - 1)
        y0, y1 = max(iy - half, 0), min(iy + half, self.size - 1)
        if x0 > x1 or y0 > y1:
            return
        img = galsim.ImageD(galsim.BoundsI(x0 + 1, x1 + 1, y0 + 1, y1 + 1), scale=1.0)
        obj.drawImage(image=img, method="auto", center=galsim.PositionD(x + 1.0, y + 1.0))
        self.real[:, y0:y1 + 1, x0:x1 + 1] += fluxes[:, None, None] * img.array[None]

    def add_moffat(self, fluxes: np.ndarray, x: float, y: float, fwhm: float, q: float = 1.0,
                   angle: float = 0.0) -> None:
        """Add a Moffat blob (a star: the PSF; or a sheared, broadened one) sampled on a stamp.

        Evaluated directly (it is the GalSim Moffat profile of the PSF, sampled at pixel
        centres like ``method="no_pixel"``) because a frame has a dozen of them and GalSim's
        per-call overhead would dominate the rendering time.

        Parameters
        ----------
        fluxes : ndarray, shape (3,)
            g, r, i fluxes.
        x, y : float
            Column and row of its centre.
        fwhm : float
            Full width at half maximum, pixels.
        q : float
            Minor/major axis ratio (1: round).
        angle : float
            Major-axis angle, degrees counter-clockwise from +x as displayed.
        """
        beta = MOFFAT_BETA
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
        """The g, r, i images drawn so far.

        Returns
        -------
        ndarray, shape (3, size, size), float64
        """
        return np.fft.irfft2(self.k_bands, s=(self.size, self.size)) + self.real
