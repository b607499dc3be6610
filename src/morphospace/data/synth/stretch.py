"""The display of a synthetic galaxy: g, r, i -> 8-bit RGB with the Lupton et al. (2004) stretch.

We keep our own stretch rather than ``astropy.visualization.make_lupton_rgb``: astropy's
normalises the asinh differently (slope ``0.1 / asinh(0.1 Q)``), truncates to 8 bits instead
of rounding and has no step for the JPEG-like chroma smoothing, so 40 % of the pixels of a
test frame came out different and the survey would lose its bytes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# The look, tuned by eye against SDSS gri JPEGs.
_BAND_SCALE = np.array([1.25, 1.0, 0.85])  # g, r, i weights before the stretch (B, G, R)
_STRETCH_ALPHA = 0.012  # linear gain at faint levels: display units per ADU
_STRETCH_Q = 8.0  # asinh softening: how hard bright cores are compressed
_SKY_PEDESTAL = (0.9, 1.2, 1.2)  # g, r, i ADU added before the stretch so the sky noise is not clipped to black
CHROMA_BLUR_PX = 1.5  # JPEG-like smoothing of the colour (not the brightness), pixels of a 128 frame


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

