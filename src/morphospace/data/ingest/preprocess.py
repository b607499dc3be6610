"""Preprocessing decoded frames into cube rows: the recipe, per frame and in batches.

Recipe, per galaxy: quality checks on the whole frame; the sky level per band
from the frame's outer ring; a centre crop (``crop`` of the shorter side, or with
``framing = "galaxy"`` a square of ``galaxy_r90s`` x the central galaxy's R90:
:mod:`~morphospace.data.ingest.framing`); a resize to ``size`` x ``size``; grey or 3-band colour; a normalisation.

Grey is the luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (Rec. 709, scikit-image's
``rgb2gray``): the weights of AstroVaDEr's published preprocessing. Frames with
other band counts (FITS cubes) are averaged.

The ``astrovader`` preset reproduces the published recipe: the central 192 of 256
pixels (crop 0.75), grey, 128 x 128 by bilinear interpolation, per-image min-max,
decoded at full resolution and resampled in float32. The default path resamples
8-bit images in 8 bits (Pillow, in C) before converting to float: several times
faster, and the rounding (at most half a grey level) is below the JPEG noise.

The steps live in their own modules: :mod:`~morphospace.data.ingest.spec` (the recipe as a
value), :mod:`~morphospace.data.ingest.quality` and :mod:`~morphospace.data.ingest.histograms`
(the quality checks), :mod:`~morphospace.data.ingest.pixels` (crop, resize, channels) and
:mod:`~morphospace.data.ingest.normalise` (the two normalisations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import BadImage, Frame
from .framing import galaxy_crop
from .histograms import STATS_SIDE, histograms_8bit, ring_medians, sample_8bit, stats_from_histograms
from .normalise import level_luts, normalise, normalise_levels
from .pixels import border_ring, centre_crop, crop_box, repair_nonfinite, resample_filter, resize, to_channels
from .quality import judge, stats_float
from .spec import PreprocessSpec

__all__ = ["PreprocessSpec", "RowBlock", "preprocess", "preprocess_many", "preprocess_block"]


@dataclass
class RowBlock:
    """The good rows of a batch, in input order, in the compact form a worker sends back.

    Rows of 8-bit frames (the common case) travel as their resized 8-bit levels and
    one normalisation lookup table per channel: 12 KB + 3 KB for a 64 x 64 colour row
    instead of 48 KB of float32, so less to copy between processes. The float32 row is
    ``luts[i, c][levels[i, c]]``, evaluated by :meth:`to_array` where the cube is
    written. Rows of other frames travel as float32.

    Attributes
    ----------
    shape : tuple
        (C, S, S) of a row.
    lookup : numpy.ndarray
        bool per row: True for a row held as levels + tables, False for a float32 row.
    levels : numpy.ndarray
        n_lookup x C x S x S uint8 (channel first, as the cube: each lookup reads one contiguous plane).
    luts : numpy.ndarray
        n_lookup x C x 256 float32.
    floats : numpy.ndarray
        n_float x C x S x S float32.
    crops : numpy.ndarray
        float32 per row: the crop it was cut with, as a fraction of its frame's shorter side
        (``spec.crop``, or its galaxy's own with ``framing = "galaxy"``).
    sides : numpy.ndarray
        int32 per row: its frame's shorter side in pixels, as stored (frames of several sizes are
        resampled to one: the catalogue keeps this as ``frame_px`` so that the audit can tell).
    """

    shape: tuple
    lookup: np.ndarray
    levels: np.ndarray
    luts: np.ndarray
    floats: np.ndarray
    crops: np.ndarray
    sides: np.ndarray

    @classmethod
    def empty(cls, shape: tuple) -> "RowBlock":
        """A block without rows.

        Parameters
        ----------
        shape : tuple
            (C, S, S) of a row.

        Returns
        -------
        RowBlock
        """
        c, s = shape[0], shape[1]
        return cls(tuple(shape), np.zeros(0, dtype=bool), np.empty((0, c, s, s), dtype=np.uint8),
                   np.empty((0, c, 256), dtype=np.float32), np.empty((0, *shape), dtype=np.float32),
                   np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.lookup)

    def to_array(self, out: np.ndarray | None = None) -> np.ndarray:
        """The rows as float arrays, the lookups evaluated.

        Parameters
        ----------
        out : ndarray, optional
            Where to write them (at least n rows of the row shape, float32 or float16, the
            cube's dtype); a new float32 array otherwise.

        Returns
        -------
        ndarray, shape (n, C, S, S), ``out``'s dtype
        """
        n, channels = len(self), self.shape[0]
        out = np.empty((n, *self.shape), dtype=np.float32) if out is None else out[:n]
        li = fi = 0
        # the tables in the output's dtype: a lookup that casts as it writes costs 4x one that copies
        levels, luts = self.levels, self.luts.astype(out.dtype, copy=False)
        for r in range(n):
            if self.lookup[r]:
                for c in range(channels):  # the method: no Python wrapper per call
                    luts[li, c].take(levels[li, c], out=out[r, c])
                li += 1
            else:
                out[r] = self.floats[fi]
                fi += 1
        return out

    @classmethod
    def concat(cls, blocks: list["RowBlock"], shape: tuple) -> "RowBlock":
        """The rows of ``blocks``, one after the other.

        Parameters
        ----------
        blocks : list of RowBlock
            Blocks of rows of the same shape.
        shape : tuple
            (C, S, S) of a row (for an empty list).

        Returns
        -------
        RowBlock
        """
        if not blocks:
            return cls.empty(shape)
        if len(blocks) == 1:
            return blocks[0]
        return cls(tuple(shape), *(np.concatenate([getattr(b, f) for b in blocks])
                                   for f in ("lookup", "levels", "luts", "floats", "crops", "sides")))


def preprocess(frame: Frame | np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, set[str]]:
    """A decoded frame -> its cube row, and the warning flags raised.

    Parameters
    ----------
    frame : Frame or ndarray
        A decoded frame, or a bare float H x W x B array (treated as flux data).
    spec : PreprocessSpec
        The recipe.

    Returns
    -------
    row : ndarray, shape (C, S, S), float32
    flags : set of str
        Warning flags (e.g. ``nonfinite``); the row is still good.

    Raises
    ------
    BadImage
        When the frame cannot be used (``blank``, ``not_galaxy``, ...).
    """
    result = preprocess_many([frame], spec)[0]
    if isinstance(result, BadImage):
        raise result
    return result


def preprocess_many(frames: list, spec: PreprocessSpec) -> list:
    """Preprocess a batch of frames, one result per frame.

    Parameters
    ----------
    frames : list
        Frames or bare float arrays, as for :func:`preprocess`.
    spec : PreprocessSpec
        The recipe.

    Returns
    -------
    list
        Per frame ``(row, flags)``, or the :class:`BadImage` raised.
    """
    block, results = preprocess_block(frames, spec)
    rows = block.to_array()
    out, r = [], 0
    for res in results:
        if isinstance(res, BadImage):
            out.append(res)
        else:
            out.append((rows[r], res))
            r += 1
    return out


def _keeping(exc: BadImage, flags: set) -> BadImage:
    """``exc`` with the warning flags the frame's decoding raised (``depth_reduced``, which may be
    why a frame reads blank) among its ``also``."""
    exc.also = tuple(dict.fromkeys((*exc.also, *sorted(flags - {exc.flag}))))
    return exc


def preprocess_block(frames, spec: PreprocessSpec) -> tuple[RowBlock, list]:
    """Preprocess a batch of frames into the compact rows a worker sends back.

    ``frames`` may be any iterable (a generator that decodes on demand): each frame is
    reduced to what the rest needs as soon as it comes and then let go, so a batch
    never holds more than one decoded frame (less memory, and the next frame is decoded
    into memory that is already mapped and in cache). 8-bit frames take the fast path:
    sampled C histograms, crop and resize in 8 bits by Pillow; then, for the whole batch
    at once, the statistics, the quality checks and the normalisation as lookup tables.

    Parameters
    ----------
    frames : iterable
        Frames or bare float arrays, as for :func:`preprocess`.
    spec : PreprocessSpec
        The recipe.

    Returns
    -------
    block : RowBlock
        The good rows, in input order.
    results : list
        Per frame its warning flags (a set: the frame has a row) or the :class:`BadImage` raised.
    """
    shape = (spec.channels, spec.size, spec.size)
    results: list = []
    decoded: list[set] = []  # per frame, the warning flags its decoding raised (kept by a BadImage)
    eight: list[int] = []  # indices of the 8-bit frames, and per 8-bit frame:
    greys, hists, sky_hists = [], [], []  # its grey sample, histograms and ring histogram per band
    fast: dict[int, bytes] = {}  # its resized 8-bit levels (fast path), or
    floats: dict[int, np.ndarray] = {}  # its float32 row (other paths, and frames that are not 8-bit)
    crops: list[float] = []  # per frame, the crop it was cut with
    sides: list[int] = []  # per frame, its shorter side as the file stores it
    for i, f in enumerate(frames):
        if isinstance(f, np.ndarray):
            f = Frame(f.astype(np.float32, copy=False), display=False)
        sides.append(f.native_side)  # as the file holds it: a JPEG is decoded at a draft scale
        results.append(set(f.flags))
        decoded.append(set(f.flags))
        if isinstance(f.pixels, Image.Image):
            img = f.pixels
            if len(img.getbands()) < spec.channels:
                results[i].add("fewer_bands")
            elif spec.grey_by_sample and len(img.getbands()) >= 3:
                results[i].add("colour_reduced")
            grey, h, sky_h = histograms_8bit(sample_8bit(img))
            eight.append(i)
            greys.append(grey)
            hists.append(h)
            sky_hists.append(sky_h)
            crop = _crop(grey, 1.0, spec, results[i])
            crops.append(crop)
            if _by_lookup(spec, len(img.getbands())):
                fast[i] = _resized_8bit(img, spec, crop).tobytes()
            else:
                floats[i] = _row_8bit(img, ring_medians([sky_h])[0][0], spec, crop)
        else:
            crops.append(spec.crop)
            try:
                floats[i], flags, crops[i] = _row_float(f.pixels, f.display, spec)
                results[i] |= flags
            except BadImage as exc:
                results[i] = _keeping(exc, decoded[i])
        f = img = None  # let the decoded frame go before the next one is decoded
    rows: list = []  # (resized levels, sky) of the good fast-path rows
    if eight:
        st = stats_from_histograms(greys, hists, sky_hists)
        suspect = st.suspects(spec)
        for k, i in enumerate(eight):
            if suspect[k]:  # the others pass every check (see Stats8.suspects)
                try:
                    judge(st.frame_stats(k), True, spec)
                except BadImage as exc:
                    results[i] = _keeping(exc, decoded[i])
                    fast.pop(i, None)
                    floats.pop(i, None)
                    continue
            if i in fast:
                rows.append((fast[i], st.skies[k]))
    good = [i for i, res in enumerate(results) if not isinstance(res, BadImage)]
    levels, luts = _level_rows(rows, spec)
    block = RowBlock(shape, np.array([i in fast for i in good], dtype=bool), levels, luts,
                     np.stack(list(floats.values())) if floats  # in frame order: filled in that order
                     else np.empty((0, *shape), dtype=np.float32),
                     np.array([crops[i] for i in good], dtype=np.float32),
                     np.array([sides[i] for i in good], dtype=np.int32))
    return block, results


def _level_rows(rows: list, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """(n x C x S x S uint8 levels, n x C x 256 float32 tables) of the fast-path rows
    ``(resized levels as bytes, sky)``."""
    s, channels, n = spec.size, spec.channels, len(rows)
    groups: dict[int, list[int]] = {}
    for m, (_, sky) in enumerate(rows):
        groups.setdefault(len(sky), []).append(m)
    levels = np.empty((n, channels, s, s), dtype=np.uint8)
    luts = np.empty((n, channels, 256), dtype=np.float32)
    for bands, sel in groups.items():
        lv = np.frombuffer(b"".join(rows[m][0] for m in sel), dtype=np.uint8).reshape(len(sel), s, s, bands)
        lt = level_luts(lv, np.stack([rows[m][1] for m in sel]), spec)
        planes = lv.transpose(0, 3, 1, 2)  # channel first, as the cube
        if len(sel) == n and bands == channels:
            return np.ascontiguousarray(planes), lt  # the usual case
        levels[sel] = planes  # a grey frame in a colour cube: its one band in every channel
        luts[sel] = lt
    return levels, luts


def _by_lookup(spec: PreprocessSpec, bands: int) -> bool:
    """Whether the row of an 8-bit frame with ``bands`` bands is its resized levels looked up
    in per-band tables (else float32 arithmetic: the exact recipe, or colour to grey)."""
    return not spec.exact and (spec.channels == 3 or bands == 1)


def _crop(grey, unit: float, spec: PreprocessSpec, flags: set) -> float:
    """The crop fraction of one frame: ``spec.crop``, or with ``framing = "galaxy"`` the one that
    frames its central galaxy (``grey``: the frame or a sample of it, ``unit``: one 8-bit level
    in its units); a frame without a central galaxy keeps ``spec.crop`` and is flagged ``unframed``."""
    if spec.framing != "galaxy":
        return spec.crop
    crop = galaxy_crop(np.asarray(grey), spec.galaxy_r90s, unit)
    if crop is None:
        flags.add("unframed")
        return spec.crop
    return crop


def _resized_8bit(img: Image.Image, spec: PreprocessSpec, crop: float | None = None) -> Image.Image:
    """Crop (``crop``, default ``spec.crop``) + resize in C on 8 bits: the rounding is below the JPEG's own."""
    w, h = img.size
    box = crop_box(h, w, spec.crop if crop is None else crop)
    return img.resize((spec.size, spec.size), resample_filter(spec, box[2] - box[0]), box=box)


def _row_8bit(img: Image.Image, sky: np.ndarray, spec: PreprocessSpec, crop: float | None = None) -> np.ndarray:
    """Crop (``crop``, default ``spec.crop``), resize and normalise an 8-bit image into a C x S x S row."""
    bands = len(img.getbands())
    crop = spec.crop if crop is None else crop
    if spec.exact:  # float32 all the way (the published recipe, bit for bit)
        w, h = img.size
        box = crop_box(h, w, crop)
        side = box[2] - box[0]
        arr = np.asarray(img, dtype=np.float32)[box[1]:box[3], box[0]:box[2]].reshape(side, side, bands)
        arr = resize(to_channels(arr * np.float32(1 / 255), spec.channels), spec.size, resample_filter(spec, side))
    else:
        a = np.frombuffer(_resized_8bit(img, spec, crop).tobytes(), dtype=np.uint8).reshape(spec.size, spec.size, bands)
        if _by_lookup(spec, bands):
            return normalise_levels(a, spec, sky, spec.channels)
        arr = to_channels(a.astype(np.float32) * np.float32(1 / 255), spec.channels)
    sky = to_channels(sky[None, None, :], spec.channels)[0, 0]
    return np.ascontiguousarray(normalise(arr, spec, sky).transpose(2, 0, 1))


def _row_float(arr: np.ndarray, display: bool, spec: PreprocessSpec) -> tuple[np.ndarray, set[str], float]:
    """Checks, NaN repair, sky, crop, resize and normalisation of a float frame: (row, flags, crop)."""
    arr = spec.on_level_scale(arr, display)
    flags: set[str] = {"fewer_bands"} if arr.shape[-1] < spec.channels else set()
    if spec.grey_by_sample and arr.shape[-1] >= 2:  # two bands averaged lose their colour too
        flags.add("colour_reduced")
    bad = ~np.isfinite(arr)
    if bad.any():
        flags.add("nonfinite")
        # pixels without a finite value in any band: a band missing whole (a survey's coverage edge
        # in one filter) leaves the others, and is filled as repair_nonfinite fills it
        fraction = float(bad.all(axis=-1).mean())
        if fraction > 0.5:
            raise BadImage("blank", f"{fraction:.0%} of the pixels are NaN or inf in every band", also=("nonfinite",))
    try:
        judge(stats_float(arr), display, spec)
    except BadImage as exc:
        exc.also = tuple(flags)
        raise
    arr = repair_nonfinite(arr)
    sky = np.median(border_ring(arr), axis=0).astype(np.float32)  # whole frame: more sky than the crop
    fraction = spec.crop
    if spec.framing == "galaxy":  # framed on a sample of ~100 px a side, as 8-bit frames are
        step = max(1, min(arr.shape[:2]) // STATS_SIDE)
        fraction = _crop(arr[::step, ::step].mean(axis=-1), 1 / 255 if display else 0.0, spec, flags)
    arr = to_channels(arr, spec.channels)
    sky = to_channels(sky[None, None, :], spec.channels)[0, 0]
    crop = centre_crop(arr, fraction)
    arr = resize(crop, spec.size, resample_filter(spec, crop.shape[0]))
    return np.ascontiguousarray(normalise(arr, spec, sky).transpose(2, 0, 1)), flags, fraction
