"""The preprocessing recipe as one frozen, picklable value: what every worker applies.

A ``[preprocess]`` section (with its preset) and the ``[ingest]`` quality thresholds are
resolved and checked once, in the parent, and the result sent to the workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...config import IngestConfig, PreprocessConfig
from ...config.inputs import PREPROCESS_PRESETS as PRESETS
from ...errors import UserError

_PRESET_SPEC = {"astrovader": {"resample": "bilinear", "exact": True, "draft": False}}


@dataclass(frozen=True)
class PreprocessSpec:
    """The resolved, picklable preprocessing recipe (see :mod:`~morphospace.data.ingest.preprocess`).

    Parameters
    ----------
    crop : float
        Centre-crop fraction of the frame's shorter side, in (0, 1].
    framing : str
        ``"fixed"`` (``crop`` for every frame) or ``"galaxy"`` (a crop of ``galaxy_r90s`` x the
        central galaxy's R90 per frame, ``crop`` where none is found:
        :mod:`~morphospace.data.ingest.framing`); ``"auto"`` until the ingest has chosen one
        of them from a sample of the survey.
    galaxy_r90s : float
        The crop's side in R90s when ``framing`` is ``"galaxy"``.
    crop_auto : bool
        ``crop`` is to be measured on a sample of the survey (``crop = "auto"``;
        :func:`~morphospace.data.ingest.framing.survey_crop`); ``crop`` holds
        :data:`~morphospace.data.ingest.framing.CROP_ANCHOR` until the ingest has.
    size_spread : float or None
        With ``framing = "auto"``: the 10-90% spread of the sampled apparent sizes that chose
        the framing (recorded in the ingest summary).
    size : int
        Output side in pixels.
    channels : int
        1 (grey) or 3 (colour).
    normalise : str
        ``"asinh"`` or ``"minmax"``.
    softening : float
        asinh softening, in units of the galaxy's robust peak.
    resample : str
        ``"box"`` (area average when shrinking, bicubic when enlarging) or ``"bilinear"``.
    exact : bool
        Resample 8-bit images in float32 (bit-faithful) rather than in 8 bits (fast).
    draft : bool
        Decode JPEGs at reduced scale when the output allows it.
    blank_std, blank_contrast, flat_fraction : float
        Quality-check thresholds (``ingest`` section of the configuration).
    level_top : float
        The top of the survey's levels on its files' 0-1 scale, for frames beyond 8 bits (16-bit
        PNG or TIFF, integer HDF5 rows): a power of two, ``2**-4`` for 12-bit data in 16-bit
        files, 1 for the full scale. Such frames are judged (blank, flat) on that scale.
        Measured by the ingest on a sample of frames (:func:`level_top_of`).
    grey_by_sample : bool
        The cube is grey because the survey's sampled frames are, not because ``colour`` asked
        for grey: a frame with colour bands among them is read as grey and flagged
        ``colour_reduced``.
    """

    crop: float = 0.5
    framing: str = "fixed"
    galaxy_r90s: float = 4.3
    crop_auto: bool = False
    size_spread: float | None = None
    size: int = 64
    channels: int = 3
    normalise: str = "asinh"
    softening: float = 0.1
    resample: str = "box"
    exact: bool = False
    draft: bool = True
    blank_std: float = 1e-3
    blank_contrast: float = 0.05
    flat_fraction: float = 0.5
    level_top: float = 1.0
    grey_by_sample: bool = False

    @classmethod
    def from_config(cls, cfg: PreprocessConfig, n_bands: int = 3,
                    quality: IngestConfig | None = None) -> "PreprocessSpec":
        """Resolve a ``[preprocess]`` section (and the ``[ingest]`` quality thresholds).

        The section holds the preset's ``crop``, ``size``, ``colour``, ``normalise`` and
        ``framing`` where the configuration did not set them itself (resolved when it was
        validated); the preset adds its decoding and resampling here.

        Parameters
        ----------
        cfg : PreprocessConfig
            The ``[preprocess]`` section.
        n_bands : int
            Bands of the survey's frames: colour needs at least 3.
        quality : IngestConfig, optional
            Its ``blank_std``, ``blank_contrast`` and ``flat_fraction``; the defaults otherwise.

        Returns
        -------
        PreprocessSpec

        Raises
        ------
        UserError
            For an unknown preset or a value out of range.
        """
        values = dict(cfg)  # the preset's values are in it already (PreprocessConfig resolves them)
        extra: dict = {}
        if cfg.preset != "default":
            if cfg.preset not in PRESETS:
                raise UserError(f"unknown preprocess preset '{cfg.preset}' (known: default, {', '.join(PRESETS)})")
            extra = _PRESET_SPEC[cfg.preset]
        crop, size, colour, norm = values["crop"], values["size"], values["colour"], values["normalise"]
        crop_auto = crop == "auto"
        if crop_auto:
            from .framing import CROP_ANCHOR

            crop = CROP_ANCHOR
        if not 0 < crop <= 1:
            raise UserError(f"preprocess.crop must be in (0, 1], got {crop}")
        if size < 8:
            raise UserError(f"preprocess.size must be at least 8, got {size}")
        if colour not in ("rgb", "grey"):
            raise UserError(f"preprocess.colour must be 'rgb' or 'grey', got '{colour}'")
        if norm not in ("asinh", "minmax"):
            raise UserError(f"preprocess.normalise must be 'asinh' or 'minmax', got '{norm}'")
        if cfg.framing not in ("auto", "fixed", "galaxy"):
            raise UserError(f"preprocess.framing must be 'auto', 'fixed' or 'galaxy', got '{cfg.framing}'")
        if not cfg.asinh_softening > 0:
            raise UserError(f"preprocess.asinh_softening must be positive, got {cfg.asinh_softening}")
        q = {} if quality is None else {"blank_std": quality.blank_std, "blank_contrast": quality.blank_contrast,
                                         "flat_fraction": quality.flat_fraction}
        channels = 3 if (colour == "rgb" and n_bands >= 3) else 1
        return cls(crop=float(crop), crop_auto=crop_auto, framing=cfg.framing, galaxy_r90s=float(cfg.galaxy_r90s),
                   size=int(size), channels=channels, grey_by_sample=colour == "rgb" and n_bands == 1, normalise=norm,
                   softening=float(cfg.asinh_softening), **extra, **q)

    @classmethod
    def of_run(cls, summary_path, config_path=None) -> "PreprocessSpec":
        """The recipe a run's cube was made with: its ingest summary, and its config's quality thresholds.

        Parameters
        ----------
        summary_path : Path
            The run's ``ingest_summary.json`` (its ``preprocess`` entry).
        config_path : Path, optional
            The run's ``config.toml`` (``[ingest]`` thresholds); the defaults when absent.

        Returns
        -------
        PreprocessSpec

        Raises
        ------
        UserError
            When the summary is missing or does not describe a preprocessing.
        """
        import json
        from pathlib import Path

        from ...config import load_config

        summary_path = Path(summary_path)
        try:
            pre = json.loads(summary_path.read_text())["preprocess"]
            values = dict(crop=float(pre["crop"]), framing=str(pre.get("framing", "fixed")),
                          galaxy_r90s=float(pre.get("galaxy_r90s", 4.3)),
                          size=int(pre["size"]), channels=int(pre["channels"]),
                          normalise=str(pre["normalise"]), softening=float(pre["softening"]),
                          resample=str(pre["resample"]), exact=bool(pre["exact"]), draft=bool(pre["jpeg_draft"]),
                          level_top=float(pre.get("level_top", 1.0)))
        except FileNotFoundError:
            raise UserError(f"{summary_path.name} not found in {summary_path.parent}: run `morphospace ingest` "
                            "first") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{summary_path} does not say how the cube was made ({type(exc).__name__}: {exc}): "
                            "re-run `morphospace ingest`") from None
        q = {}
        if config_path is not None and Path(config_path).is_file():
            ing = load_config(config_path).ingest
            q = {"blank_std": ing.blank_std, "blank_contrast": ing.blank_contrast, "flat_fraction": ing.flat_fraction}
        return cls(**values, **q)

    def on_level_scale(self, arr, display: bool):
        """A frame's levels on the survey's own scale (:attr:`level_top`): display levels beyond 8
        bits divided by it (12-bit data in 16-bit files fill a sixteenth of the files' scale),
        anything else as it is. A power of two, so a row made from it is the same to the bit."""
        if not display or self.level_top >= 1:
            return arr
        return arr * np.float32(1 / self.level_top)

    def min_side(self) -> int:
        """The smallest decoded side that still gives ``size`` pixels after the crop (JPEG draft).

        With ``framing = "galaxy"`` the crop is known only once the frame is decoded: the
        side that a crop of :data:`~morphospace.data.ingest.framing.DECODE_CROP` needs (frames
        of up to about 4 x ``size`` / ``DECODE_CROP`` pixels are decoded whole).

        Returns
        -------
        int
            0 when JPEG draft decoding is off.
        """
        from .decode import draft_side
        from .framing import DECODE_CROP

        crop = min(self.crop, DECODE_CROP) if self.framing != "fixed" else self.crop
        return draft_side(crop, self.size) if self.draft else 0


# the lowest level scale: 8 bits of levels in an int64 HDF5 set are at 2**-55 of its type's
LOWEST_LEVEL_TOP = 2.0**-64


def level_top_of(tops: list[float]) -> float:
    """The :attr:`PreprocessSpec.level_top` of frames whose highest levels are ``tops`` (0-1).

    The highest of them rounded up to a power of two (at most 1): a camera's 12-bit data in
    16-bit files (at most 4095 / 65535) gives ``2**-4``, 14-bit data ``2**-2``, 8-bit levels
    stored as int64 ``2**-55``. One frame that reaches the file's full scale gives 1, as does
    an empty sample (the ingest leaves out frames of sky alone, whose noise would set a scale
    on which it passed).

    Parameters
    ----------
    tops : list of float

    Returns
    -------
    float
    """
    top = max(tops, default=0.0)
    if not top > 0:
        return 1.0
    return float(min(1.0, max(LOWEST_LEVEL_TOP, 2.0 ** math.ceil(math.log2(top)))))
