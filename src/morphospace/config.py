"""Run configuration: a TOML file validated on load.

The configuration is a tree of dataclasses. Loading a TOML file checks every
key against it: an unknown key or a value of the wrong type is a one-line
:class:`~morphospace.errors.UserError` naming the key. Command-line options are
applied on top with :func:`apply_overrides` (``section.key=value`` strings), and
the resolved configuration is written into the run directory with
:func:`dump_config`, so any stage can be re-run from it.

Examples
--------
>>> cfg = load_config(None)                 # all defaults
>>> cfg = apply_overrides(cfg, ["preprocess.size=128"])
>>> cfg.preprocess.size
128
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError


@dataclass
class VoteThresholds:
    """Cuts on Kaggle Galaxy Zoo 2 vote fractions (layout ``kaggle-gz2``).

    The cuts apply to the fractions as the Kaggle file gives them (later answers
    already multiplied by the fraction of volunteers who reached the question). The
    first passing rule wins: ``artifact`` if Class1.3 > artifact, ``merger`` if
    Class8.6 > merger, ``smooth`` if Class1.1 > smooth, ``edge_on`` if Class2.1 >
    edge_on, ``barred_spiral`` if Class3.1 > barred, ``spiral`` if Class4.1 > spiral,
    else ``uncertain`` (see ``morphospace.data.ingest.layouts.derive_gz2_class``).
    """

    smooth: float = 0.5
    edge_on: float = 0.5
    spiral: float = 0.5
    barred: float = 0.5
    artifact: float = 0.5
    merger: float = 0.5


@dataclass
class DataConfig:
    """Where the survey is and how to read it."""

    path: str = ""  # empty: the built-in synthetic survey
    layout: str = "auto"  # auto | folder | sdss-gz1 | kaggle-gz2 | galaxy10 | fits | synthetic
    catalogue: str = ""  # folder layout: CSV with an id column, a file column and labels
    id_column: str = ""
    file_column: str = ""
    label_columns: list[str] = field(default_factory=list)
    truth_label: str = ""  # the label column comparisons treat as "the" truth; empty: guess
    synth_n: int = 2000
    synth_seed: int = 0
    vote_thresholds: VoteThresholds = field(default_factory=VoteThresholds)


@dataclass
class PreprocessConfig:
    """Image preprocessing; ``preset = "astrovader"`` reproduces the published recipe."""

    # default | astrovader (crop 0.75, 128 px, grey, min-max, bilinear, full-resolution decode;
    # it replaces the *default* values of crop/size/colour/normalise, other values are kept)
    preset: str = "default"
    crop: float = 0.5  # centre-crop fraction of the frame side
    size: int = 64  # output side in pixels (64 or 128)
    colour: str = "rgb"  # rgb | grey
    normalise: str = "asinh"  # asinh | minmax
    asinh_softening: float = 0.1  # in units of the robust peak; smaller = harder stretch


@dataclass
class IngestConfig:
    """Reading and quality control."""

    workers: int = 2
    strict: bool = False
    chunk_size: int = 64
    blank_std: float = 1e-3  # flux data (FITS): std below this fraction of the peak -> blank
    blank_contrast: float = 0.05  # rendered images: 0.5-99.5 percentile span below this -> blank
    flat_fraction: float = 0.5  # one exact non-black level over this fraction of a frame -> not_galaxy


@dataclass
class ModelConfig:
    """The representation learner of ``morphospace train``."""

    kind: str = "vade"  # vade | pca
    preset: str = "form"  # form (VaDE over the form embedding) | default (pixel VaDE) | astrovader
    latent_dim: int = 16
    n_components: int = 0  # 0: choose from the data (BIC of the latent mixture)
    pca_components: int = 32
    # VaDE (morphospace.vade.model / train): see the docstrings there
    k_min: int = 2  # K range searched by the BIC when n_components = 0
    k_max: int = 12
    min_weight: float = 0.01  # mixture weight under which a component is re-seeded
    recon_sigma: float = 0.1  # pixel noise of the Gaussian reconstruction likelihood
    radial_inner: float = 0.5  # reconstruction weight 1 inside this radius (1 = frame half-side) ...
    radial_width: float = 0.25  # ... Gaussian fall-off outside; 0 = uniform weight
    canonicalise: bool = True  # rotate each image to put its major axis horizontal before encoding
    flip_invariant: bool = True  # code averaged over the 4 flips (exactly flip/handedness invariant)
    colour_weight: float = 1.0  # weight of colour (vs grey) in the reconstruction error of rgb cubes
    mask_neighbours: bool = True  # hide every source but the central galaxy (morphospace.image.masking)
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # default preset conv widths
    align_latent: bool = True  # turn the latent axes to the principal axes before fitting the mixture
    merge_components: bool = True  # the VaDE's clusters: components merged by entropy (morphospace.vade.merge)


@dataclass
class FormConfig:
    """The form embedding under ``model.preset = "form"`` (morphospace.ssl)."""

    backbone: str = "efficientnet-lite0"  # efficientnet-lite0 (ImageNet start) | small (from scratch)
    input_size: int = 112  # side the cube is resized to for the trunk
    precision: str = "auto"  # of the frozen trunk's inference: auto (bf16 where the CPU has it natively) | 32 | bf16
    dim: int = 64  # length of the form embedding
    aug_views: int = 4  # nuisance views per galaxy in the view bank (besides the 8 dihedral views)
    ssl_epochs: int = 60  # epochs of the self-supervised head over the view bank
    loss: str = "nt_xent"  # nt_xent | vicreg
    temperature: float = 0.2  # NT-Xent temperature
    train_trunk: bool = False  # train the CNN too (needs a GPU for any real survey)
    recon_sigma: float = 0.3  # noise of the VaDE's Gaussian likelihood of the standardised embedding
    decoder_epochs: int = 8  # epochs of the image decoder (reconstructions, synthetic galaxies)


@dataclass
class TrainConfig:
    """Optimisation and hardware."""

    seed: int = 0
    epochs: int = 16  # 8 pretraining + 8 joint: minutes on a 2-core laptop for a few thousand galaxies
    pretrain_epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_threads: int = 0  # 0: torch default
    final_lr_fraction: float = 0.05  # cosine decay of the learning rate to lr * this
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # gradient-norm clipping; 0 = off
    augment: str = "flips"  # none | flips | dihedral | rotate (random angle + flips)


@dataclass
class ClusterConfig:
    """Clusterings run by ``morphospace cluster``."""

    kmeans_k: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7, 8])
    methods: list[str] = field(default_factory=lambda: ["kmeans", "dbscan", "hdbscan", "gmm"])
    representations: list[str] = field(default_factory=lambda: ["all"])
    seed: int = 0
    # --- analysis layer (reduce.py / cluster.py / compare.py / nuisance.py) ---
    # methods: kmeans | dbscan | hdbscan | gmm; representations: ids, or all | embeddings | reductions
    reductions: list[str] = field(default_factory=lambda: ["pca", "tsne", "umap", "lda"])
    n_jobs: int = 1  # threads of t-SNE / UMAP (UMAP with a seed is single-threaded)
    tsne_perplexity: float = 30.0
    umap_n_neighbors: int = 15
    gmm_k: list[int] = field(default_factory=list)  # empty: same as kmeans_k; BIC picks one
    gmm_covariance: str = "diag"  # diag | full | spherical | tied
    dbscan_min_samples: int = 0  # 0: 2 x dimensions, within [4, 100]; eps from the k-distance knee
    hdbscan_min_cluster_size: int = 0  # 0: 1% of the rows, at least 5
    density_max_dims: int = 10  # DBSCAN/HDBSCAN skip wider representations (slow, unreliable); 0: no limit
    silhouette_sample: int = 5000  # rows used to estimate the (O(n^2)) silhouette
    nuisance_columns: list[str] = field(default_factory=list)  # catalogue columns to audit; empty: auto


@dataclass
class StudyConfig:
    """The CNN feature study."""

    backbone: str = "efficientnet-lite0"
    labels: str = ""
    mode: str = "finetune"  # finetune | frozen
    epochs: int = 5
    weights: str = ""  # a weights file for backbones without packaged weights
    # --- fine-tuning (morphospace.study.finetune / features) ---
    input_size: int = 0  # side images are resized to; 0: the backbone's default (112 for ImageNet nets)
    batch_size: int = 64
    lr: float = 1e-3  # head; a pretrained backbone gets 0.3 x this
    patience: int = 2  # early stopping: epochs without a lower validation loss; 0 = off


@dataclass
class ReportConfig:
    """The HTML report."""

    thumb_size: int = 48
    max_points: int = 20000
    gallery_size: int = 16
    thumb_format: str = "webp"  # webp | jpeg: the sprite sheets of thumbnails
    thumb_quality: int = 80
    inline_limit_mb: float = 8.0  # sprite sheets up to this size go inside report.html, larger ones beside it
    neighbours: int = 8  # "more like this": nearest neighbours in the latent space
    seed: int = 0  # random mosaic, subsample of the map (when over max_points)


@dataclass
class Config:
    """The whole run configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    form: FormConfig = field(default_factory=FormConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# --- validation ---------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"config: {key} must be a list of {_type_name(item_tp)}, got {type(value).__name__}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for alt in typing.get_args(tp):
            try:
                return _coerce(value, alt, key)
            except UserError:
                continue
        raise UserError(f"config: {key} has the wrong type ({type(value).__name__})")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise UserError(f"config: {key} must be true or false, got {value!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise UserError(f"config: {key} must be {_type_name(tp)}, got a boolean")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"config: {key} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, table: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise UserError(f"config: unknown key '{full}' (known here: {', '.join(sorted(known))})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise UserError(f"config: '{full}' must be a table")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    return cls(**kwargs)


# Allowed ranges (inclusive; None = open) of numeric settings and allowed values of string
# settings, checked when a configuration is loaded, before any stage runs or writes it.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.synth_n": (1, 10_000_000), "preprocess.crop": (0.05, 1.0), "preprocess.size": (16, 1024),
    "preprocess.asinh_softening": (1e-6, 100.0), "ingest.workers": (1, 256), "ingest.chunk_size": (1, 100_000),
    "ingest.blank_std": (0.0, 1.0), "ingest.blank_contrast": (0.0, 1.0), "ingest.flat_fraction": (0.0, 1.0),
    "model.latent_dim": (1, 1024), "model.n_components": (0, 1000), "model.pca_components": (1, 4096),
    "model.k_min": (1, 1000), "model.k_max": (1, 1000), "model.min_weight": (0.0, 1.0),
    "model.recon_sigma": (1e-6, 1e6), "model.radial_inner": (0.0, 10.0), "model.radial_width": (0.0, 10.0),
    "model.colour_weight": (1e-6, 1e6), "form.input_size": (32, 1024), "form.dim": (2, 4096),
    "form.aug_views": (0, 64), "form.ssl_epochs": (1, 100_000), "form.temperature": (1e-4, 100.0),
    "form.recon_sigma": (1e-6, 1e6), "form.decoder_epochs": (1, 100_000), "train.epochs": (1, 1_000_000),
    "train.pretrain_epochs": (0, 1_000_000), "train.batch_size": (1, 1_000_000), "train.lr": (1e-12, 10.0),
    "train.devices": (1, 4096), "train.num_nodes": (1, 100_000), "train.num_threads": (0, 4096),
    "train.final_lr_fraction": (0.0, 1.0), "train.weight_decay": (0.0, 100.0), "train.grad_clip": (0.0, 1e9),
    "cluster.n_jobs": (-1, 4096), "cluster.tsne_perplexity": (1.0, 10_000.0), "cluster.umap_n_neighbors": (2, 10_000),
    "cluster.dbscan_min_samples": (0, 100_000), "cluster.hdbscan_min_cluster_size": (0, 10_000_000),
    "cluster.density_max_dims": (0, 100_000), "cluster.silhouette_sample": (10, 10_000_000),
    "study.epochs": (1, 100_000), "study.input_size": (0, 1024), "study.batch_size": (1, 1_000_000),
    "study.lr": (1e-12, 10.0), "study.patience": (0, 100_000), "report.thumb_size": (8, 512),
    "report.max_points": (1, 100_000_000), "report.gallery_size": (1, 1000), "report.thumb_quality": (1, 100),
    "report.inline_limit_mb": (0.0, 10_000.0), "report.neighbours": (1, 1000),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "data.layout": ("auto", "folder", "sdss-gz1", "kaggle-gz2", "galaxy10", "fits", "synthetic"),
    "preprocess.preset": ("default", "astrovader"), "preprocess.colour": ("rgb", "grey"),
    "preprocess.normalise": ("asinh", "minmax"), "model.kind": ("vade", "pca"),
    "model.preset": ("form", "default", "astrovader"), "form.loss": ("nt_xent", "vicreg"),
    "form.precision": ("auto", "32", "bf16"), "train.augment": ("none", "flips", "dihedral", "rotate"),
    "cluster.gmm_covariance": ("diag", "full", "spherical", "tied"), "study.mode": ("finetune", "frozen"),
    "report.thumb_format": ("webp", "jpeg"),
}


def _walk(obj: Any, prefix: str = ""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def _validate(cfg: Config) -> Config:
    """Every value in range, finite, free of control characters; one line naming the key if not."""
    for key, value in _walk(cfg):
        items = value if isinstance(value, list) else [value]
        for v in items:
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"config: {key} must be a finite number, got {v!r}")
            if isinstance(v, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in v):
                raise UserError(f"config: {key} must not contain control characters (newline, tab, escape), "
                                f"got {v!r}")
        if key in RANGES and not isinstance(value, (list, bool)):
            lo, hi = RANGES[key]
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise UserError(f"config: {key} must be in [{lo}, {hi}], got {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise UserError(f"config: {key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if cfg.model.k_min > cfg.model.k_max:
        raise UserError(f"config: model.k_min ({cfg.model.k_min}) must not exceed model.k_max ({cfg.model.k_max})")
    if cfg.train.pretrain_epochs >= cfg.train.epochs and cfg.model.kind == "vade":
        raise UserError(f"config: train.epochs ({cfg.train.epochs}) must exceed train.pretrain_epochs "
                        f"({cfg.train.pretrain_epochs})")
    for key in ("cluster.kmeans_k", "cluster.gmm_k"):
        section, name = key.split(".")
        if any(not 1 <= k <= 1000 for k in getattr(getattr(cfg, section), name)):
            raise UserError(f"config: {key} values must be in [1, 1000]")
    if any(not 1 <= w <= 4096 for w in cfg.model.widths) or not cfg.model.widths:
        raise UserError("config: model.widths must be a non-empty list of integers in [1, 4096]")
    return cfg


def config_from_dict(table: dict) -> Config:
    """Validate a plain nested dict (as parsed from TOML) into a :class:`Config`: types, ranges
    (:data:`RANGES`), allowed values (:data:`CHOICES`), finiteness and control characters."""
    return _validate(_build(Config, table, ""))


def load_config(path: str | Path | None) -> Config:
    """Load and validate a TOML configuration; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"config: {path} is not a text file (not UTF-8): give a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config: {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UserError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    return config_from_dict(table)


def _parse_scalar(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` as a TOML value, else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with dotted-key overrides applied and validated.

    ``overrides`` is a list of ``"section.key=value"`` strings (values parsed as
    TOML, falling back to a plain string) or a dict of dotted keys to values.
    """
    table = to_dict(cfg)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for dotted, value in items:
        if isinstance(value, str) and not isinstance(overrides, dict):
            value = _parse_scalar(value)
        parts = dotted.split(".")
        node = table
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise UserError(f"config: unknown key '{dotted}'")
            node = node[part]
        if parts[-1] not in node:
            raise UserError(f"config: unknown key '{dotted}'")
        node[parts[-1]] = value
    return config_from_dict(table)


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise UserError(f"--set expects section.key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def to_dict(cfg: Any) -> dict:
    """The configuration as a plain nested dict."""
    return dataclasses.asdict(cfg)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_config(cfg: Config) -> str:
    """Serialise a configuration to TOML text (round-trips through :func:`load_config`)."""
    lines: list[str] = []

    def emit(table: dict, name: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if name:
            lines.append(f"[{name}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
        for k, v in tables.items():
            emit(v, f"{name}.{k}" if name else k)

    emit(to_dict(cfg), "")
    return "\n".join(lines).strip() + "\n"
