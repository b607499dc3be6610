"""Sections of the learning stages: ``[model]``, ``[form]``, ``[train]``."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .base import K, Backbone, BatchSize, Epochs, FilePath, Fraction, LearningRate, Scale, Section, Seed, Text


# The published AstroVaDEr recipe (Spindler et al. 2021, MNRAS 502, 985) as settings: under
# ``model.preset = "astrovader"`` the keys of [model] and [train] the configuration does not set take
# these values (Config resolves them, so the saved config.toml says what trains); the rest of the
# recipe (schedule, final rate) is in morphospace.vade.hparams. The first keys of each section may be
# set otherwise (a shorter run); the others are the network, loss and schedule, always the published.
MODEL_PRESETS = {
    "astrovader": {
        "model": {"latent_dim": 20, "n_components": 12,
                  "recon_sigma": 2 ** -0.5,  # per-image sum of squared errors
                  "radial_inner": 0.0, "radial_width": 0.0, "canonicalise": False, "flip_invariant": False,
                  "align_latent": False, "mask_neighbours": False, "colour_weight": 1.0},
        # Keras l2(0.01) adds 0.01 * w^2 to the loss: gradient 0.02 w, i.e. Adam weight_decay 0.02
        "train": {"epochs": 350, "pretrain_epochs": 100, "batch_size": 190, "lr": 3e-4,
                  "weight_decay": 0.02, "grad_clip": 1.0, "augment": "flips"},
    },
}
PRESET_SETTABLE = ("latent_dim", "n_components", "epochs", "pretrain_epochs", "batch_size", "lr")


class ModelConfig(Section):
    """The representation learner of ``morphospace train`` (``[model]``).

    The VaDE keys are described in ``morphospace.vade.model`` and ``morphospace.vade.train``.

    Attributes
    ----------
    kind : {'vade', 'pca'}
    preset : {'form', 'default', 'astrovader'}
        ``form``: the VaDE over the form embedding (``[form]``); ``default``: the pixel VaDE;
        ``astrovader``: the published pixel VaDE.
    latent_dim : int
        Dimensions of the latent space.
    n_components : int
        Mixture components; 0: chosen by the BIC of the latent mixture in [k_min, k_max].
    pca_components : int
        Components of ``kind = "pca"``.
    k_min, k_max : int
        The range of K searched by the BIC (k_min <= k_max).
    min_weight : float
        Mixture weight under which a component is re-seeded.
    recon_sigma : float
        Pixel noise of the Gaussian reconstruction likelihood.
    radial_inner, radial_width : float
        Reconstruction weight 1 inside ``radial_inner`` (1 = half the frame side), Gaussian
        fall-off of width ``radial_width`` outside it; width 0: uniform weight.
    canonicalise : bool
        Rotate each image to put its major axis horizontal before encoding.
    flip_invariant : bool
        Average the code over the 4 flips (exactly flip and handedness invariant).
    colour_weight : float
        Weight of colour (against grey) in the reconstruction error of rgb cubes.
    mask_neighbours : bool
        Hide every source but the central galaxy (``morphospace.image.masking``).
    widths : list of int
        Convolution widths of the ``default`` preset (one stride-2 layer each); the ``form``
        preset's image decoder has its own, ``form.decoder_widths``.
    align_latent : bool
        Turn the latent axes to their principal axes before fitting the mixture.
    merge_components : bool
        The clusters are the components merged by entropy (``morphospace.vade.merge``).
    merge_elbow_on : {"observations", "clusters"}
        Where the merge stops: the elbow of the entropy against the cumulated number of galaxies
        merged (Baudry et al.'s rescaled plot) or against the number of clusters.
    """

    kind: Literal["vade", "pca"] = "vade"
    preset: Literal["form", "default", "astrovader"] = "form"
    latent_dim: Annotated[int, Field(ge=1, le=1024)] = 16
    n_components: Annotated[int, Field(ge=0, le=1000)] = 0
    pca_components: Annotated[int, Field(ge=1, le=4096)] = 32
    k_min: K = 2
    k_max: K = 12
    min_weight: Fraction = 0.01
    recon_sigma: Scale = 0.1
    radial_inner: Annotated[float, Field(ge=0.0, le=10.0)] = 0.5
    radial_width: Annotated[float, Field(ge=0.0, le=10.0)] = 0.25
    canonicalise: bool = True
    flip_invariant: bool = True
    colour_weight: Scale = 1.0
    mask_neighbours: bool = True
    widths: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1)] = [32, 64, 128, 256]
    align_latent: bool = True
    merge_components: bool = True
    merge_elbow_on: Literal["observations", "clusters"] = "observations"

    @model_validator(mode="after")
    def _k_range(self) -> ModelConfig:
        if self.k_min > self.k_max:
            raise PydanticCustomError("config", "model.k_min ({k_min}) must not exceed model.k_max ({k_max})",
                                      {"k_min": self.k_min, "k_max": self.k_max})
        return self


class FormConfig(Section):
    """The form embedding and its mixture under ``model.preset = "form"`` (``[form]``, ``morphospace.ssl``).

    Attributes
    ----------
    backbone : str
        ``efficientnet-lite0`` (ImageNet start), ``efficientnet-lite1`` / ``efficientnet-lite2``
        (larger ImageNet trunks: K-Means(3) AMI higher, linear probe lower, ~1.3x the time on
        sdss-gz1; docs/measurements/form-first.md) or ``small`` (from scratch).
    weights : str
        A weights file for the trunk instead of the packaged ImageNet weights: a state dict of
        the backbone (e.g. one trained on galaxies) or a morphospace ``model.pt`` of the same
        backbone (a study's fine-tuned network); empty: ImageNet (``small``: random).
    input_size : int
        Side the cube is resized to for the trunk.
    sharpen : float
        Unsharp masking of the images before the trunk, ``x + a (x - G * x)`` (G a Gaussian of
        1.5 px); 0: off. On sdss-gz1, a = 4 raises the 10% probe by about 0.013 (0.801 against
        0.788 in the same run, seed 0) and moves K-Means(3) by -0.006 to +0.004, but its
        clusters follow the companion's quadrant more (docs/measurements/form-first.md): for runs meant for few-label
        classification.
    precision : {'auto', '32', 'bf16'}
        Of the frozen trunk's inference; ``auto``: bfloat16 where the CPU has it natively. Under
        ``bf16`` on a CPU the image decoder also trains in bfloat16 autocast (unless
        ``train.precision`` is set): 0.7x the time, the same held-out error.
    dim : int
        Length of each SSL head's output.
    heads : int
        SSL heads trained on the same view bank from different seeds; the form embedding is
        their outputs side by side (``dim`` x ``heads`` numbers). Each head costs one more
        training over the bank (about 40 s on sdss-gz1 on 2 cores), not one more trunk pass.
        Meant to make two trainings' clusters agree more; on sdss-gz1 three heads did not
        (docs/measurements/form-first.md), so the default is one. 1 with ``train_trunk``.
    aug_views : int
        Nuisance views per galaxy in the view bank (besides the 8 dihedral views).
    aug_scale : [float, float]
        The range of apparent-size factors those views draw from (uniformly, as kornia draws), low
        to high, holding 1. The default, a factor of 2 from end to end, was chosen over [0.9, 1.1] by
        the intervention test (label-free) and the synthetic survey's true nuisances: on sdss-gz1
        (seeds 0-2) a galaxy grown 1.4x changes cluster 0.07 more often than the control instead
        of 0.17; shrunk to 0.7, 0.23 instead of 0.25, so the clusters still follow apparent size
        (docs/measurements/invariance.md).
    aug_light : bool
        Make those views as a survey would show the galaxy otherwise, the way the intervention test
        changes a galaxy: on its light (the ingest's stretch undone), sky beyond the frame where a
        turn or a shrink uncovers it, the sky's noise kept with its grain, up to twice the noise
        added, the row normalised again. Chosen by the intervention test (label-free): on sdss-gz1
        a galaxy shrunk to 0.7 or made 2x fainter changes cluster far less often
        (docs/measurements/invariance.md). False: on the stretched pixels, zeros beyond the frame,
        weak white noise (before).
    ssl_epochs : int
        Epochs of the self-supervised head over the view bank.
    embed_views : int
        Dihedral views averaged into each galaxy's embedding: 8 (exact invariance to quarter
        turns and flips), 4 (the quarter turns), 2 or 1; 0 (auto): 8 when the head trains on
        every galaxy, 4 above ``train.sample`` galaxies, where embedding the galaxies outside
        the sample is most of a CPU run's training stage (README, *Large surveys*).
    loss : {'nt_xent', 'vicreg'}
    temperature : float
        NT-Xent temperature.
    train_trunk : bool
        Train the CNN too (needs a GPU for any real survey).
    trunk_lr_scale : float or 'auto'
        A trained trunk's learning rate as a fraction of the head's; ``auto``: 0.1 for the
        ImageNet start (in-domain adaptation must not erase what ImageNet taught it), 1 for a
        trunk from scratch.
    core : {'linear', 'mlp'}
        The mixture model over the embedding: ``linear``, the mixture prior fitted over a PCA
        projection of the (standardised) form embedding; ``mlp``, the VaDE with an MLP
        encoder and decoder.
    core_fits : int
        Linear core only: EM fits of the mixture (of the K the BIC chose, each from its own
        seed), of which the most typical is kept: the fit whose clusters agree best with the
        others' (the medoid by ARI). Two trainings of a survey then share their clusters more
        often (docs/measurements/form-first.md); 1: the BIC's own fit.
    recon_sigma : float
        Noise of the VaDE's Gaussian likelihood of the standardised embedding.
    decoder_epochs : int
        Epochs of the image decoder (reconstructions, synthetic galaxies).
    decoder_batch_size : int
        Galaxies per step of the image decoder. On a few thousand galaxies it is short of steps,
        not of epochs: at 128 a galaxy a step it drew each band shifted against the others
        (coloured rims) and blurred; at 32, in the same 8 epochs and about the same time, the
        held-out error is a quarter to a third lower on the synthetic survey, an eighth on sdss-gz1
        (docs/measurements/form-first.md).
    decoder_lr : float
        Adam's learning rate for the image decoder (cosine-annealed to 5% of it).
    decoder_widths : list of int
        Widths of the image decoder's stages, smallest map last (each doubles the map). With
        ``decoder_upsample = "nearest"``, [12, 24, 48, 96] reconstruct held-out galaxies as
        well as [16, 32, 64, 128] in less time, and a fifth better than [16, 32, 64, 128] of
        transposed convolutions, in 1.4-1.5x their time (docs/measurements/form-first.md,
        ``benchmarks/bench_form_decoder.py``).
    decoder_upsample : {"nearest", "transposed"}
        How each stage of the image decoder doubles its map: each pixel repeated 2 x 2, then a
        3 x 3 convolution (a resize-convolution), or a stride-2 transposed convolution (the
        models before it), which drew a checkerboard into the brightest galaxies.
    decoder_weight_floor : float
        The least weight of a pixel in the image decoder's loss. The model's radial weight
        (``model.radial_inner``, ``radial_width``) falls to about 1e-3 in the frame's corners,
        where the decoder then learned nothing and drew coloured noise into every
        reconstruction and synthetic galaxy; at 0.5 it draws the sky there, for a held-out
        error a few percent higher where the galaxy is (docs/measurements/form-first.md). 0: no
        floor (the models before it).
    """

    backbone: Backbone = "efficientnet-lite0"
    weights: FilePath = ""
    input_size: Annotated[int, Field(ge=32, le=1024)] = 112
    sharpen: Annotated[float, Field(ge=0.0, le=16.0)] = 0.0
    precision: Literal["auto", "32", "bf16"] = "auto"
    dim: Annotated[int, Field(ge=2, le=4096)] = 64
    heads: Annotated[int, Field(ge=1, le=16)] = 1
    aug_views: Annotated[int, Field(ge=0, le=64)] = 4
    aug_scale: Annotated[list[Annotated[float, Field(ge=0.25, le=4.0)]], Field(min_length=2, max_length=2)] = [0.7, 1.43]
    aug_light: bool = True
    ssl_epochs: Epochs = 60
    embed_views: Literal[0, 1, 2, 4, 8] = 0
    loss: Literal["nt_xent", "vicreg"] = "nt_xent"
    temperature: Annotated[float, Field(ge=1e-4, le=100.0)] = 0.2
    train_trunk: bool = False
    trunk_lr_scale: Annotated[float, Field(gt=0.0, le=10.0)] | Literal["auto"] = "auto"
    core: Literal["linear", "mlp"] = "linear"
    core_fits: Annotated[int, Field(ge=1, le=64)] = 8
    recon_sigma: Scale = 0.3
    decoder_epochs: Epochs = 8
    decoder_batch_size: BatchSize = 32
    decoder_lr: LearningRate = 2e-3
    decoder_widths: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1)] = [12, 24, 48, 96]
    decoder_weight_floor: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    decoder_upsample: Literal["transposed", "nearest"] = "nearest"

    @field_validator("aug_scale")
    @classmethod
    def _scale_range(cls, value: list[float]) -> list[float]:
        if not value[0] <= 1.0 <= value[1]:
            raise PydanticCustomError("config", f"form.aug_scale must be [low, high] with low <= 1 <= high, got {value}")
        return value

    @field_validator("embed_views", mode="before")
    @classmethod
    def _whole_views(cls, value):
        # a strict literal still matched true as 1 and 4.0 as 4: `true` made one view, no invariance
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticCustomError("config", "form.embed_views must be one of 0 (auto), 1, 2, 4 or 8, a whole "
                                      "number, got {value}", {"value": repr(value)})
        return value


class TrainConfig(Section):
    """Optimisation and hardware (``[train]``).

    Attributes
    ----------
    seed : int
    epochs : int
        All epochs (pretraining included); must exceed ``pretrain_epochs`` for a VaDE.
    pretrain_epochs : int
        Epochs as a plain autoencoder before the mixture is fitted.
    batch_size : int
    lr : float
        Learning rate; cosine decay to ``lr * final_lr_fraction``.
    accelerator, strategy, precision : str
        As Lightning takes them (``cpu``, ``gpu``, ``auto``; ``ddp``; ``32-true``, ``bf16-mixed``).
    devices, num_nodes : int
        Devices per node and nodes.
    num_threads : int
        Torch threads; 0: torch's default.
    final_lr_fraction : float
    weight_decay : float
    grad_clip : float
        Gradient-norm clipping; 0: off.
    augment : {'none', 'flips', 'dihedral', 'rotate'}
        ``rotate``: a random angle and flips.
    sample : int
        Galaxies the model trains on, drawn reproducibly (with ``seed``) when the cube has more;
        the trained model then embeds every galaxy. 0: train on all. The default keeps the
        training of a 10^6-galaxy run to the minutes of a 20,000-galaxy one.
    loader_workers : int or 'auto'
        Processes per device reading the memory-mapped cube for the networks (PyTorch
        ``DataLoader`` workers). 0: the main process reads, right on a CPU whose cores are
        computing; on a GPU a few keep it fed. ``auto`` (:meth:`loader_processes`): 0 on the CPU,
        up to 8 per device on an accelerator.
    keep_view_bank : bool
        Keep the form model's view bank (``models/vade/ssl/view_bank.npy``, the frozen trunk's
        features of every trained galaxy's views: 77 kB a galaxy, 1.5 GB at the default
        ``sample``) once the model is saved. It serves only a ``--resume`` of an interrupted
        training, which keeps it until the model is saved, and benchmarks that retrain heads on it;
        a finished training removes it.
    """

    seed: Seed = 0
    epochs: Annotated[int, Field(ge=1, le=1_000_000)] = 16
    pretrain_epochs: Annotated[int, Field(ge=0, le=1_000_000)] = 8
    batch_size: BatchSize = 128
    lr: LearningRate = 1e-3
    accelerator: Text = "cpu"
    devices: Annotated[int, Field(ge=1, le=4096)] = 1
    num_nodes: Annotated[int, Field(ge=1, le=100_000)] = 1
    strategy: Text = "auto"
    precision: Text = "32-true"
    num_threads: Annotated[int, Field(ge=0, le=4096)] = 0
    final_lr_fraction: Fraction = 0.05
    weight_decay: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    grad_clip: Annotated[float, Field(ge=0.0, le=1e9)] = 0.0
    augment: Literal["none", "flips", "dihedral", "rotate"] = "flips"
    sample: Annotated[int, Field(ge=0, le=10_000_000_000)] = 20_000
    loader_workers: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = "auto"
    keep_view_bank: bool = False

    def loader_processes(self) -> int:
        """``loader_workers`` resolved: ``auto`` is 0 on the CPU (its cores are computing) and, on an
        accelerator, the node's cores per device less one for the training process, 8 at most.
        On an H200 the frozen trunk embedded 3,028 images/s from a cube read by the main process
        and 11,064 with 8 loader processes (``benchmarks/bench_gpu.py``)."""
        if self.loader_workers != "auto":
            return int(self.loader_workers)
        if self.accelerator == "cpu":
            return 0
        if self.accelerator == "auto":
            import torch

            if not torch.cuda.is_available():  # Lightning's auto picks the CPU then (or an MPS/TPU device)
                return 0
        share = (os.cpu_count() or 1) // max(1, self.devices)
        return max(0, min(8, share - 1))

    @field_validator("accelerator", "strategy", "precision")
    @classmethod
    def _lightning_name(cls, value: str, info) -> str:
        # a typo here reached Lightning only once a training began: after the settings were saved
        # and the run's trained model cleared. Names as Lightning reads them (it lowercases these two);
        # the common ones without importing Lightning, which every load of a saved config would pay
        if info.field_name != "precision":
            value = value.lower()
        known = COMMON_LIGHTNING_NAMES[info.field_name]
        if value in known:
            return value
        if info.field_name != "precision":
            known = _lightning_names(info.field_name)
        if value not in known:
            raise PydanticCustomError("config", "train.{key} must be one of {known}, got '{value}'",
                                      {"key": info.field_name, "known": ", ".join(sorted(known)), "value": value})
        return value


# Lightning's precision inputs (its own list is private to lightning.fabric)
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "32-true", "64-true", "64", "32", "16", "bf16")


COMMON_LIGHTNING_NAMES = {
    "precision": set(PRECISIONS), "accelerator": {"auto", "cpu", "gpu", "cuda", "mps", "tpu"},
    "strategy": {"auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed", "single_device"},
}


def _lightning_names(field: str) -> set[str]:
    """The values Lightning takes for a Trainer's ``accelerator`` or ``strategy``: its registries, imported
    only for a value not in :data:`COMMON_LIGHTNING_NAMES`."""
    if field == "accelerator":
        from lightning.pytorch.accelerators import AcceleratorRegistry

        return {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    from lightning.pytorch.strategies import StrategyRegistry

    return {"auto", *StrategyRegistry.available_strategies()}
