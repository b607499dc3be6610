"""Quality statistics of 8-bit frames from Pillow histograms, a batch at a time.

Pillow computes the histograms in C on a regular sample of each frame; numpy then works on
k x 256 arrays once for the whole batch. :meth:`Stats8.suspects` names the few frames that
:func:`~morphospace.data.ingest.quality.judge` might flag; the others are plainly galaxies
and skip the per-frame statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .pixels import ring_image
from .quality import FLAT_WITH_EDGES, FrameStats, centre_box
from .spec import PreprocessSpec

STATS_SIDE = 100  # 8-bit frames are sampled down to about this side for the statistics


def sample_8bit(img: Image.Image, target: int = STATS_SIDE) -> Image.Image:
    """Every k-th pixel of a large frame, k = shorter side // ``target`` (exact values, no averaging).

    The quality statistics and the sky need the distribution of pixel values, not
    every pixel: a regular sample keeps exact levels (flat backgrounds stay flat,
    noise stays noise) at a fraction of the cost.

    Parameters
    ----------
    img : PIL.Image.Image
        An 8-bit frame.
    target : int
        The sample's approximate shorter side.

    Returns
    -------
    PIL.Image.Image
        ``img`` itself when it is already small.
    """
    w, h = img.size
    step = max(1, min(w, h) // target)
    if step == 1:
        return img
    return img.resize((w // step, h // step), Image.Resampling.NEAREST)


def _first_at_least(cum: np.ndarray, fraction: float) -> np.ndarray:
    """Per row of cumulative histograms (k x 256), the first level holding ``fraction`` of the pixels."""
    return (cum < fraction * cum[:, -1:]).sum(axis=1)


def ring_noise(counts: np.ndarray, median: int) -> float:
    """The sky's noise (grey levels) from the histogram ``counts`` of the border ring: 1.4826 x the
    MAD; where most of the ring sits on its median level (a noise under a level, rounded), the standard
    deviation of the levels within 3 of it; 0 where nothing varies.

    A faint galaxy on a quiet sky (15 levels above a sky of 1 level's noise) spans too few levels
    for the frame's contrast, yet stands 15 sigma out: this lets :func:`judge` see it.
    """
    levels = np.arange(len(counts))
    dev = np.abs(levels - median)
    order = np.argsort(dev, kind="stable")
    within = np.cumsum(counts[order])
    total = within[-1]
    if total == 0:
        return 0.0
    mad = float(dev[order][np.searchsorted(within, 0.5 * total)])
    if mad > 0:
        return 1.4826 * mad
    near = dev <= 3
    w = counts[near].astype(np.float64)
    mean = float((w * levels[near]).sum() / w.sum())
    return float(np.sqrt((w * (levels[near] - mean) ** 2).sum() / w.sum()))


@dataclass
class Stats8:
    """Statistics of a batch of 8-bit frames, as arrays (levels 0-255), and the per-band sky (0-1).

    Everything :func:`judge` needs, except that the ring and centre medians of the grey
    levels are first known only as bounds (``ring_max`` >= the ring median, ``centre_min``
    <= the centre median), from the histograms every frame needs anyway: enough to clear
    a real galaxy (sky ring, bright centre). :meth:`frame_stats` computes them exactly for
    the few frames :meth:`suspects` names.

    Attributes
    ----------
    lo, hi, vmin, vmax, mode : ndarray of int
        Per frame, grey levels: 0.5th and 99.5th percentiles, extremes, commonest value.
    mode_fraction : ndarray of float
        Per frame, the fraction of pixels at the commonest value.
    ring_max, centre_min : ndarray of int
        Per frame, bounds on the ring median (above) and centre median (below).
    greys : list of PIL.Image.Image
        The grey samples.
    skies : list of ndarray
        Per frame, the per-band sky (median of the ring), 0-1, float32.
    """

    lo: np.ndarray
    hi: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    mode: np.ndarray
    mode_fraction: np.ndarray
    ring_max: np.ndarray
    centre_min: np.ndarray
    greys: list
    skies: list

    def frame_stats(self, i: int) -> FrameStats:
        """The exact :class:`FrameStats` of frame ``i``.

        Parameters
        ----------
        i : int
            Position of the frame in the batch.

        Returns
        -------
        FrameStats
        """
        g = self.greys[i]
        w, h = g.size
        cum = np.cumsum(np.array([g.histogram(ring_image(w, h)), g.crop(centre_box(h, w)).histogram()],
                                 dtype=np.int64), axis=1)
        medians = _first_at_least(cum, 0.5)
        # the centre's second-brightest sampled pixel (one hot pixel is not a galaxy): a galaxy a
        # twentieth of the frame's side keeps only a few pixels in the sample, too few for a percentile
        centre_hi = int((cum[1] < cum[1, -1] - 1).sum())
        # at least a level: the rounding to levels is noise too, and a sky on one level (no noise
        # measured) must not make a smudge of a few levels a 10-sigma detection
        noise = max(ring_noise(np.diff(cum[0], prepend=0), int(medians[0])), 1.0)
        return FrameStats(lo=self.lo[i] / 255, hi=self.hi[i] / 255, vmin=self.vmin[i] / 255,
                          vmax=self.vmax[i] / 255, std=float("nan"),
                          mode_fraction=float(self.mode_fraction[i]), mode_level=self.mode[i] / 255,
                          ring_median=medians[0] / 255, centre_median=medians[1] / 255,
                          grey=g, unit=1 / 255, centre_hi=centre_hi / 255,
                          signal_sigmas=(centre_hi - medians[0]) / noise)

    def suspects(self, spec: PreprocessSpec) -> np.ndarray:
        """Frames that :func:`judge` might flag (a superset, with a margin): the others pass it.

        Lets a batch skip the per-frame :class:`FrameStats` and :func:`judge` calls (and
        the ring and centre histograms of the grey levels) for the frames that are plainly
        galaxies.

        Parameters
        ----------
        spec : PreprocessSpec
            The thresholds.

        Returns
        -------
        ndarray of bool
            Per frame, whether it needs :func:`judge`.
        """
        eps = 1e-9
        rng = (self.vmax - self.vmin) / 255
        return ((rng < spec.blank_contrast + eps)
                | (self.mode_fraction >= min(spec.flat_fraction, FLAT_WITH_EDGES) - eps)
                | ((self.hi - self.lo) / 255 < spec.blank_contrast + eps)
                | ((self.ring_max - self.centre_min) / 255 > 0.5 * rng - eps))


def histograms_8bit(sample: Image.Image) -> tuple[Image.Image, list, list]:
    """The C histograms every 8-bit frame needs, of its sample (:func:`sample_8bit`).

    Parameters
    ----------
    sample : PIL.Image.Image
        The sampled frame (mode ``L`` or ``RGB``).

    Returns
    -------
    grey : PIL.Image.Image
        Its grey levels.
    hist : list of int
        Their histogram (256 counts).
    ring_hist : list of int
        The per-band histogram of the ring (256 x bands counts, bands concatenated).
    """
    grey = sample if sample.mode == "L" else sample.convert("L")
    return grey, grey.histogram(), sample.histogram(ring_image(*sample.size))


def ring_medians(sky_hists: list) -> tuple[list, np.ndarray]:
    """The sky of a batch of frames, and a bound on the median of their rings' grey levels.

    The bound holds because no grey level exceeds its pixel's brightest band (Pillow's
    grey weights sum to one), so at most sum_b #(band b > t) grey levels exceed t.

    Parameters
    ----------
    sky_hists : list of list of int
        Per frame, its ring histogram (256 x bands counts, :func:`histograms_8bit`).

    Returns
    -------
    skies : list of ndarray
        Per frame, the per-band medians of the ring (0-1, float32).
    ring_max : ndarray of int
        Per frame, a level at or above the median of the ring's grey levels.
    """
    skies: list = [None] * len(sky_hists)
    ring_max = np.zeros(len(sky_hists), dtype=np.int64)
    by_bands: dict[int, list[int]] = {}
    for i, h in enumerate(sky_hists):
        by_bands.setdefault(len(h) // 256, []).append(i)
    for bands, idx in by_bands.items():  # batched by band count
        cum = np.cumsum(np.array([sky_hists[i] for i in idx], dtype=np.int64).reshape(len(idx), bands, 256), axis=2)
        med = _first_at_least(cum.reshape(len(idx) * bands, 256), 0.5)
        sky = (med / 255).astype(np.float32).reshape(len(idx), bands)
        for j, i in enumerate(idx):
            skies[i] = sky[j]
        n = cum[:, 0, -1:]
        at_most = cum.sum(axis=1) - (bands - 1) * n  # <= #(grey <= t) in the ring
        ring_max[idx] = (at_most < 0.5 * n).sum(axis=1)
    return skies, ring_max


def stats_from_histograms(greys: list, hists: list, sky_hists: list) -> Stats8:
    """:class:`Stats8` of a batch from the outputs of :func:`histograms_8bit`.

    Parameters
    ----------
    greys, hists, sky_hists : list
        Per frame, the three outputs of :func:`histograms_8bit`.

    Returns
    -------
    Stats8
    """
    hist = np.array(hists, dtype=np.int64).reshape(len(greys), 256)
    full = np.cumsum(hist, axis=1)
    skies, ring_max = ring_medians(sky_hists)
    centre_pixels = np.array([(r - l) * (b - t) for l, t, r, b in (centre_box(g.size[1], g.size[0]) for g in greys)])
    return Stats8(lo=_first_at_least(full, 0.005), hi=_first_at_least(full, 0.995),
                  vmin=(full == 0).sum(axis=1), vmax=255 - (np.cumsum(hist[:, ::-1], axis=1) == 0).sum(axis=1),
                  mode=hist.argmax(axis=1), mode_fraction=hist.max(axis=1) / full[:, -1],
                  ring_max=ring_max,
                  # the centre is part of the frame: its median is at least the level below which
                  # the whole frame has fewer than half the centre's pixel count
                  centre_min=(full < 0.5 * centre_pixels[:, None]).sum(axis=1),
                  greys=greys, skies=skies)


def stats_8bit_arrays(samples: list[Image.Image]) -> Stats8:
    """:class:`Stats8` of 8-bit Pillow images (see :func:`stats_8bit_many`).

    Parameters
    ----------
    samples : list of PIL.Image.Image
        The (sampled) frames.

    Returns
    -------
    Stats8
    """
    greys, hists, sky_hists = [], [], []
    for sample in samples:
        grey, h, sky = histograms_8bit(sample)
        greys.append(grey)
        hists.append(h)
        sky_hists.append(sky)
    return stats_from_histograms(greys, hists, sky_hists)


def stats_8bit_many(samples: list[Image.Image]) -> tuple[list[FrameStats], list[np.ndarray]]:
    """Frame statistics and the per-band sky (0-1) of 8-bit Pillow images.

    Pillow computes the histograms in C; numpy then works on k x 256 arrays, once for
    the whole batch (per-image numpy calls on 256-bin arrays cost more than the maths).

    Parameters
    ----------
    samples : list of PIL.Image.Image
        The (sampled) frames.

    Returns
    -------
    stats : list of FrameStats
    skies : list of ndarray
        Per frame, the per-band sky, float32.
    """
    st = stats_8bit_arrays(samples)
    return [st.frame_stats(i) for i in range(len(samples))], st.skies


def stats_8bit(img: Image.Image) -> FrameStats:
    """Frame statistics of one 8-bit Pillow image (see :func:`stats_8bit_many`).

    Parameters
    ----------
    img : PIL.Image.Image
        The (sampled) frame.

    Returns
    -------
    FrameStats
    """
    return stats_8bit_many([img])[0][0]
