"""Sections of the input stages: ``[data]`` (with ``[data.vote_thresholds]``), ``[preprocess]``, ``[ingest]``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import FilePath, Fraction, Section, Seed, Text


class VoteThresholds(Section):
    """Cuts on Galaxy Zoo vote fractions (``[data.vote_thresholds]``: layout ``kaggle-gz2``, and a folder
    catalogue's Galaxy Zoo DECaLS / DESI fractions, each first multiplied by the share of volunteers
    who reached its question: ``morphospace.data.ingest.labels.derive_gz_decals_class``).

    The cuts apply to the fractions as the Kaggle file gives them (later answers already
    multiplied by the fraction of volunteers who reached the question). The first passing
    rule wins: ``artifact`` if Class1.3 > artifact, ``merger`` if Class8.6 > merger,
    ``smooth`` if Class1.1 > smooth, ``edge_on`` if Class2.1 > edge_on, ``barred_spiral`` if
    Class3.1 > barred, ``spiral`` if Class4.1 > spiral, else ``uncertain`` (see
    ``morphospace.data.ingest.layouts.derive_gz2_class``). Every cut defaults to 0.5.

    Attributes
    ----------
    smooth, edge_on, spiral, barred, artifact, merger : float
        The cut of each rule, a vote fraction.
    """

    smooth: Fraction = 0.5
    edge_on: Fraction = 0.5
    spiral: Fraction = 0.5
    barred: Fraction = 0.5
    artifact: Fraction = 0.5
    merger: Fraction = 0.5


class DataConfig(Section):
    """Where the survey is and how to read it (``[data]``).

    Attributes
    ----------
    path : str
        The survey; empty: the built-in synthetic survey.
    layout : {'auto', 'folder', 'sdss-gz1', 'kaggle-gz2', 'galaxy10', 'fits', 'synthetic'}
        How the survey is laid out; ``auto`` recognises it.
    catalogue, id_column, file_column : str
        Folder layout: a CSV with an id column, a file column and labels.
    label_columns : list of str
        Catalogue columns kept as labels; empty: all.
    truth_label : str
        The label column that comparisons treat as "the" truth; empty: guess.
    synth_n, synth_seed : int
        Size and seed of the built-in synthetic survey.
    vote_thresholds : VoteThresholds
        Cuts that turn Galaxy Zoo 2 votes into classes.
    """

    path: Text = ""
    layout: Literal["auto", "folder", "sdss-gz1", "kaggle-gz2", "galaxy10", "fits", "synthetic"] = "auto"
    catalogue: FilePath = ""
    id_column: Text = ""
    file_column: Text = ""
    label_columns: list[Text] = []
    truth_label: Text = ""
    synth_n: Annotated[int, Field(ge=1, le=10_000_000)] = 2000
    synth_seed: Seed = 0
    vote_thresholds: VoteThresholds = Field(default_factory=VoteThresholds)


# The published AstroVaDEr recipe (Spindler et al. 2021, section 2.1): what ``preprocess.preset =
# "astrovader"`` puts in the keys the configuration does not set itself
PREPROCESS_PRESETS = {
    "astrovader": {"crop": 0.75, "size": 128, "colour": "grey", "normalise": "minmax", "framing": "fixed"},
}


class PreprocessConfig(Section):
    """Image preprocessing (``[preprocess]``).

    Attributes
    ----------
    preset : {'default', 'astrovader'}
        ``astrovader`` reproduces the published recipe (crop 0.75, 128 px, grey, min-max,
        bilinear, full-resolution decode, fixed framing): it gives ``crop``, ``size``,
        ``colour``, ``normalise`` and ``framing`` their published values, except those the
        configuration sets itself (in its file, ``--set`` or an option such as ``--size``),
        even to their default values; the saved configuration holds the values used.
    crop : float or 'auto'
        Centre-crop fraction of the frame side, in [0.05, 1] (with ``framing = "galaxy"``: for
        the frames where no central galaxy is found). ``auto``: the crop that frames the
        median galaxy of a sample of the survey at ``galaxy_r90s`` R90s, on a ladder of
        steps of 2**(1/3) through 0.5 (sdss-gz1's and the synthetic survey's 0.5), so that a
        survey cut out tighter or wider about its galaxies shows them at the same share of the
        row; 0.5 when too few sampled frames hold a galaxy.
    framing : {'auto', 'fixed', 'galaxy'}
        ``fixed``: every frame cropped to ``crop``. ``galaxy``: each frame cropped to a square
        of ``galaxy_r90s`` times its central galaxy's R90, so that apparent size (distance)
        does not reach the model: for cutouts made at a fixed angular size. ``auto``: ``galaxy``
        when the apparent sizes of a sample of the survey spread widely (cutouts at a fixed
        angular size), else ``fixed`` (cutouts already scaled to each galaxy).
    galaxy_r90s : float
        The crop's side in units of the galaxy's R90 when ``framing = "galaxy"``.
    size : int
        Output side in pixels, 16 to 1024 (64; 128 under the astrovader preset).
    colour : {'rgb', 'grey'}
    normalise : {'asinh', 'minmax'}
    asinh_softening : float
        In units of the robust peak; smaller = harder stretch.
    """

    preset: Literal["default", "astrovader"] = "default"
    crop: Annotated[float, Field(ge=0.05, le=1.0)] | Literal["auto"] = "auto"
    framing: Literal["auto", "fixed", "galaxy"] = "auto"
    galaxy_r90s: Annotated[float, Field(ge=1.0, le=50.0)] = 4.3
    size: Annotated[int, Field(ge=16, le=1024)] = 64
    colour: Literal["rgb", "grey"] = "rgb"
    normalise: Literal["asinh", "minmax"] = "asinh"
    asinh_softening: Annotated[float, Field(ge=1e-6, le=100.0)] = 0.1

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        # keys the configuration does not set take the preset's values; set ones (even to a
        # default value) are kept. Resolved here, so the saved config.toml says what was used.
        if isinstance(data, dict) and data.get("preset") in PREPROCESS_PRESETS:
            data = {**PREPROCESS_PRESETS[data["preset"]], **data}
        return data


class IngestConfig(Section):
    """Reading and quality control (``[ingest]``).

    Attributes
    ----------
    workers : int
        Worker processes.
    strict : bool
        Turn every quality flag into an error.
    chunk_size : int
        Images per task of a worker.
    blank_std : float
        Flux data (FITS): a standard deviation below this fraction of the peak is blank.
    blank_contrast : float
        Rendered images: a 0.5-99.5 percentile span below this is blank.
    flat_fraction : float
        One exact non-black level over this fraction of a frame: not a galaxy.
    cube_dtype : {"float16", "float32"}
        How ``cube.npy`` stores pixels: float16 (half the disk, I/O and page cache of float32;
        finer than an 8-bit image's steps) or float32. Later stages read either as float32.
    mask_neighbours : bool
        Also build the cube's neighbour-masked copy, which the form model (and a pixel VaDE with
        ``model.mask_neighbours``) reads, here on the ingest's workers: before a distributed
        training, whose every task would otherwise build it.
    """

    workers: Annotated[int, Field(ge=1, le=256)] = 2
    strict: bool = False
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 64
    blank_std: Fraction = 1e-3
    blank_contrast: Fraction = 0.05
    flat_fraction: Fraction = 0.5
    cube_dtype: Literal["float16", "float32"] = "float16"
    mask_neighbours: bool = False
