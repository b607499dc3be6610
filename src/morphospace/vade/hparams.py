"""Hyper-parameters of a VaDE training: resolved from the configuration, checked, scheduled.

:func:`resolve_hparams` flattens the ``model``, ``train`` (and ``form``) settings into the one
JSON-able dict that defines a training run (saved as ``hparams.json`` and inside ``model.pt``);
under ``model.preset = "astrovader"`` the published recipe (:data:`ASTROVADER_RECIPE`) gives the
network, loss and schedule, and the settings the configuration leaves to the preset.
:func:`check_against_cube` checks them against the cube; :func:`latent_weight` and
:func:`lr_factor` are the schedules of the KL weight and the learning rate (framework-free).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

from ..config import Config, with_presets_resolved
from ..config.learning import MODEL_PRESETS, PRESET_SETTABLE
from ..errors import UserError

log = logging.getLogger("morphospace")

__all__ = ["ASTROVADER_RECIPE", "ASTROVADER_FIXED", "AUGMENTATIONS", "resolve_hparams", "check_against_cube",
           "embedding_dim", "latent_weight", "lr_factor"]

AUGMENTATIONS = ("none", "flips", "dihedral", "rotate")

# the published AstroVaDEr recipe (Spindler et al. 2021, MNRAS 502, 985): the settings under
# model.preset = "astrovader" (MODEL_PRESETS, resolved by Config), its final rate and its KL cycles
ASTROVADER_RECIPE = {
    **MODEL_PRESETS["astrovader"]["model"],
    **MODEL_PRESETS["astrovader"]["train"],
    "final_lr": 1e-6,
    "cycle_ramp": 25,
    "cycle_hold": 25,
    "cycle_base": 0.3,
}
# the network, loss and schedule: always the published ones (the settable keys are PRESET_SETTABLE)
ASTROVADER_FIXED = tuple(k for k in ASTROVADER_RECIPE if k not in PRESET_SETTABLE)


# --- hyper-parameters ------------------------------------------------------------------------

def resolve_hparams(cfg: Config, channels: int, image_size: int, announce: bool = True) -> dict[str, Any]:
    """Everything that defines a training run, as a flat JSON-able dict.

    Under ``model.preset = "astrovader"`` the settings the configuration leaves to the preset hold
    the published values (:class:`~morphospace.config.Config` resolves them, a preset assigned in
    code too; one set, even to a default value, is kept: ``--epochs 2`` for a smoke test); the
    network, loss and schedule (:data:`ASTROVADER_FIXED`) are always the published ones, a setting
    that says otherwise is said in the log (when ``announce``: once, by the training itself, not by
    the checks before it).
    """
    cfg = with_presets_resolved(cfg)  # a preset assigned in code, to or from astrovader: what config.toml says
    m, t = cfg.model, cfg.train
    hp: dict[str, Any] = {
        "preset": m.preset, "channels": int(channels), "image_size": int(image_size),
        "latent_dim": m.latent_dim, "n_components": m.n_components, "k_min": m.k_min, "k_max": m.k_max,
        "min_weight": m.min_weight, "recon_sigma": m.recon_sigma, "radial_inner": m.radial_inner,
        "radial_width": m.radial_width, "canonicalise": m.canonicalise, "flip_invariant": m.flip_invariant,
        "widths": list(m.widths), "epochs": t.epochs, "pretrain_epochs": t.pretrain_epochs,
        "batch_size": t.batch_size, "lr": t.lr, "final_lr": t.lr * t.final_lr_fraction,
        "weight_decay": t.weight_decay, "grad_clip": t.grad_clip, "augment": t.augment, "seed": t.seed,
        "schedule": "default", "cycle_ramp": 0, "cycle_hold": 0, "cycle_base": 1.0,
        "align_latent": m.align_latent, "mask_neighbours": m.mask_neighbours,
        "colour_weight": m.colour_weight,
        "sample": t.sample,  # which galaxies train (check_against_cube: 0 for all): a resume must draw the same
        "processes": t.devices * t.num_nodes,  # a resume may change it (a requeued job), said in the log
    }
    if m.preset == "astrovader":
        # the settable keys are the configuration's (Config filled those it leaves to the preset);
        # the rest is the published network, loss and schedule, whatever a setting says
        section = {key: name for name, values in MODEL_PRESETS["astrovader"].items() for key in values}
        differ = [key for key in ASTROVADER_FIXED if key in section and hp[key] != ASTROVADER_RECIPE[key]]
        ignored = [f"{section[key]}.{key} = {hp[key]!r}" for key in differ]
        used = [f"{section[key]}.{key} = {ASTROVADER_RECIPE[key]!r}" for key in differ]
        # a saved config.toml names these at their defaults: only another value was chosen
        if (t.final_lr_fraction != type(t).model_fields["final_lr_fraction"].default
                and not math.isclose(hp["final_lr"], ASTROVADER_RECIPE["final_lr"])):
            ignored.append(f"train.final_lr_fraction = {t.final_lr_fraction!r}")
            used.append(f"final_lr = {ASTROVADER_RECIPE['final_lr']!r}")
        if list(m.widths) != list(type(m).model_fields["widths"].get_default(call_default_factory=True)):
            ignored.append(f"model.widths = {list(m.widths)!r}")
            used.append("the published network")
        if ignored and announce:
            log.warning("model.preset = astrovader trains the published network, loss and schedule: %s not used "
                        "(trained with %s)", ", ".join(ignored), ", ".join(used))
        if announce and (int(channels), int(image_size)) != (1, 128):  # the cube is the ingest's: said, not refused
            log.warning("model.preset = astrovader: the published network read 128 x 128 grey images, and this cube "
                        "holds %d x %d images of %d band(s) (`morphospace ingest DATA --out RUN --preset astrovader` "
                        "makes the published input)", image_size, image_size, channels)
        hp.update({key: ASTROVADER_RECIPE[key] for key in ASTROVADER_FIXED})
        hp["schedule"] = "astrovader"
        hp["widths"] = []
    elif m.preset == "form":
        # the core VaDE reads the form embedding (a vector): no image options apply to it
        hp.update({"recon_sigma": cfg.form.recon_sigma, "radial_inner": 0.0, "radial_width": 0.0,
                   "canonicalise": False, "flip_invariant": False, "augment": "none", "mask_neighbours": True,
                   "colour_weight": 1.0, "form": _form_hparams(cfg)})
        hp["widths"] = list(cfg.form.decoder_widths)  # the image decoder's: the core reads vectors
    elif m.preset != "default":
        raise UserError(f"unknown model.preset '{m.preset}' (known: form, default, astrovader)")
    _check_hparams(hp)
    return hp


def _check_hparams(hp: dict[str, Any]) -> None:
    linear_core = hp["preset"] == "form" and (hp.get("form") or {}).get("core") == "linear"  # no epochs
    if hp["epochs"] <= hp["pretrain_epochs"] and not linear_core:
        raise UserError(f"train.epochs ({hp['epochs']}) must exceed train.pretrain_epochs "
                        f"({hp['pretrain_epochs']}): the mixture is fitted after pretraining")
    if hp["pretrain_epochs"] < 0:
        raise UserError("train.pretrain_epochs must be >= 0")
    if hp["augment"] not in AUGMENTATIONS:
        raise UserError(f"train.augment must be one of {', '.join(AUGMENTATIONS)}, got '{hp['augment']}'")
    if hp["n_components"] < 0 or (hp["n_components"] == 0 and not 1 <= hp["k_min"] <= hp["k_max"]):
        raise UserError("model.n_components must be >= 0 (0: choose K in [model.k_min, model.k_max], k_min <= k_max)")
    if hp["latent_dim"] < 1:
        raise UserError("model.latent_dim must be >= 1")
    if hp["batch_size"] < 1:
        raise UserError("train.batch_size must be >= 1")
    if not (math.isfinite(hp["recon_sigma"]) and hp["recon_sigma"] > 0):
        raise UserError("model.recon_sigma (form.recon_sigma for the form preset) must be a positive number")
    if hp["colour_weight"] <= 0:
        raise UserError("model.colour_weight must be > 0")
    if hp["preset"] == "form":
        _check_form(hp["form"])
    side = 2 ** (len(hp["widths"]) if hp["preset"] in ("default", "form") else 3)
    if hp["image_size"] % side:
        raise UserError(f"the cube's images ({hp['image_size']} px) must be a multiple of {side} px "
                        f"for model.preset '{hp['preset']}'")


_WEIGHTS_THAT_FIT: set[tuple] = set()  # (backbone, file, size, modification time) already loaded once


def _check_form(f: dict[str, Any]) -> None:
    # ranges and allowed values are checked when the configuration loads (the pydantic models
    # of morphospace.config); the backbone registry lives with the backbones
    from ..nets.backbones import BACKBONES

    if f["backbone"] not in BACKBONES:
        raise UserError(f"form.backbone must be one of {', '.join(BACKBONES)}, got '{f['backbone']}'")
    if f.get("weights"):  # before hours of masking and views, and before the model's folder is cleared
        if not os.path.isfile(f["weights"]):
            raise UserError(f"form.weights: no such file: {f['weights']}")
        from ..nets.backbones import make_backbone

        st = os.stat(f["weights"])
        key = (f["backbone"], os.path.realpath(f["weights"]), st.st_size, st.st_mtime_ns)
        if key not in _WEIGHTS_THAT_FIT:  # the command line checks before it saves the settings, training again
            make_backbone(f["backbone"], weights=f["weights"], announce=False)  # unreadable or not fitting: one line
            _WEIGHTS_THAT_FIT.add(key)
    if f.get("heads", 1) > 1 and f["train_trunk"]:
        raise UserError(f"form.heads = {f['heads']} needs a frozen trunk: every head trains on the same view bank "
                        "(set form.heads = 1 with form.train_trunk = true)")


def check_form_settings(cfg: Config) -> None:
    """``form.backbone`` and ``form.weights`` (and heads against a trained trunk) as the training checks
    them, without the cube: ``morphospace run`` checks them before it writes anything.

    Parameters
    ----------
    cfg : Config
    """
    if cfg.model.kind == "vade" and cfg.model.preset == "form":
        _check_form(_form_hparams(cfg))


def _form_hparams(cfg: Config) -> dict[str, Any]:
    """The form-first model's own hyper-parameters (``hp["form"]``), from ``cfg.form``."""
    from ..ssl.embedder import resolve_precision

    f = cfg.form
    return {"backbone": f.backbone, "weights": os.path.abspath(f.weights) if f.weights else "",
            "input_size": f.input_size, "sharpen": f.sharpen, "dim": f.dim, "heads": f.heads,
            "precision": resolve_precision(f.precision),
            "aug_views": f.aug_views, "aug_scale": [float(v) for v in f.aug_scale], "aug_light": f.aug_light,
            "ssl_epochs": f.ssl_epochs, "loss": f.loss, "embed_views": f.embed_views,
            "temperature": f.temperature, "train_trunk": f.train_trunk,
            "trunk_lr_scale": (1.0 if f.backbone == "small" else 0.1) if f.trunk_lr_scale == "auto"
            else float(f.trunk_lr_scale),
            "core": f.core, "core_fits": f.core_fits,
            "decoder_epochs": f.decoder_epochs, "decoder_batch_size": f.decoder_batch_size,
            "decoder_lr": f.decoder_lr, "decoder_weight_floor": f.decoder_weight_floor,
            "decoder_upsample": f.decoder_upsample,
            "image_recon_sigma": cfg.model.recon_sigma,
            # the image decoder's reconstruction weight, and the merge that picks the core's EM fit: what
            # the model was trained with, recorded (a resume that changed them trained another decoder)
            "image_radial_inner": cfg.model.radial_inner, "image_radial_width": cfg.model.radial_width,
            "core_merge": cfg.model.merge_elbow_on if cfg.model.merge_components and f.core == "linear" else "none"}


# hp keys -> the setting that gives them, where one setting does (the rest are derived or fixed)
_MODEL_KEYS = ("latent_dim", "n_components", "k_min", "k_max", "min_weight", "canonicalise", "flip_invariant",
               "align_latent", "mask_neighbours", "colour_weight", "recon_sigma", "radial_inner", "radial_width",
               "widths")
_TRAIN_KEYS = ("epochs", "pretrain_epochs", "batch_size", "lr", "weight_decay", "grad_clip", "augment", "seed", "sample")
_FORM_KEYS = ("backbone", "weights", "input_size", "sharpen", "dim", "heads", "precision", "aug_views", "aug_scale",
              "aug_light", "ssl_epochs",
              "loss", "embed_views", "temperature", "train_trunk", "trunk_lr_scale", "core", "core_fits",
              "decoder_epochs", "decoder_batch_size", "decoder_lr", "decoder_weight_floor", "decoder_upsample")


# how a form model saved before a setting was recorded trained: the nuisance views' size range, views
# made on the stretched pixels (zeros beyond the frame) rather than on the galaxy's light, and an image
# decoder whose pixel weight had no floor, whose stages were transposed convolutions, and which took
# 128 galaxies a step at Adam's 1e-3
EARLIER_FORM = {"aug_scale": [0.9, 1.1], "aug_light": False, "decoder_weight_floor": 0.0,
                "decoder_upsample": "transposed", "decoder_batch_size": 128, "decoder_lr": 1e-3}


def with_earlier_form(form: dict[str, Any]) -> dict[str, Any]:
    """A form model's settings (``hp["form"]``) with what it trained with where a setting was not yet
    recorded when it was saved (:data:`EARLIER_FORM`)."""
    return {**EARLIER_FORM, **form, "aug_scale": [float(v) for v in form.get("aug_scale", EARLIER_FORM["aug_scale"])]}


def settings_of(hp: dict[str, Any]) -> dict[str, Any]:
    """The settings (dotted keys) that :func:`resolve_hparams` turns into ``hp``, where one setting gives
    a value: what a run's ``config.toml`` says of a model trained with ``hp`` (a study that uses the
    run's trained model saves these, not the settings it was given and did not train with)."""
    preset = hp.get("preset", "form")
    out: dict[str, Any] = {"model.preset": preset}
    # a form model's augment is the preset's ("none": the core reads vectors), not the setting's
    out.update({f"train.{k}": hp[k] for k in _TRAIN_KEYS if k in hp and not (preset == "form" and k == "augment")})
    if hp.get("lr") and "final_lr" in hp:  # keys a model saved by an earlier version may lack: left out
        out["train.final_lr_fraction"] = hp["final_lr"] / hp["lr"]
    if preset == "form":  # the core's own sigma and decoder; the image decoder's weight from the model section
        form = hp.get("form") or {}
        out.update({f"model.{k}": hp[k] for k in ("latent_dim", "n_components", "k_min", "k_max", "min_weight",
                                                  "align_latent") if k in hp})
        out.update({f"form.{k}": form[k] for k in _FORM_KEYS if k in form})
        if form:
            out.update({f"form.{k}": with_earlier_form(form)[k] for k in EARLIER_FORM})
        out.update({"form.recon_sigma": hp["recon_sigma"]} if "recon_sigma" in hp else {})
        out.update({"form.decoder_widths": list(hp["widths"])} if "widths" in hp else {})
        out.update({f"model.{k}": form[f"image_{k}"] for k in ("recon_sigma", "radial_inner", "radial_width")
                    if f"image_{k}" in form})
        if form.get("core") == "linear" and "core_merge" in form:  # the merge that picked the core's EM fit
            merge = form["core_merge"]
            out.update({"model.merge_components": merge != "none"} | ({} if merge == "none" else
                                                                      {"model.merge_elbow_on": merge}))
    else:
        out.update({f"model.{k}": hp[k] for k in _MODEL_KEYS if k in hp})
    if preset == "astrovader":  # the published network, loss and schedule, whatever a setting said
        fixed = set(ASTROVADER_FIXED) | {"widths", "final_lr"}
        out = {k: v for k, v in out.items() if k.split(".")[1] not in fixed and k != "train.final_lr_fraction"}
    return out


def embedding_dim(form: dict[str, Any]) -> int:
    """Length of the form embedding: ``dim`` numbers from each of ``heads`` SSL heads."""
    return int(form["dim"]) * int(form.get("heads", 1))  # models saved before form.heads had one


# --- schedules (framework-free) --------------------------------------------------------------

def latent_weight(hp: dict[str, Any], epoch: float) -> float:
    """Weight w of the KL term at (fractional) ``epoch`` of the joint phase (0 = its start).

    ``astrovader``: ``w = base * (a^3 + 1)``, ``a`` ramping 0 -> 1 over ``cycle_ramp`` epochs,
    then held ``cycle_hold`` epochs, repeating; ``default``: 1.
    """
    if hp["schedule"] != "astrovader":
        return 1.0
    period = hp["cycle_ramp"] + hp["cycle_hold"]
    pos = epoch % period
    a = min(1.0, pos / hp["cycle_ramp"]) if hp["cycle_ramp"] > 0 else 1.0
    return hp["cycle_base"] * (a**3 + 1.0)


def lr_factor(hp: dict[str, Any], epoch: int) -> float:
    """Learning rate at ``epoch`` divided by ``lr``.

    ``astrovader``: exponential decay to ``final_lr`` at the last epoch (3e-4 -> 1e-6 over
    350 epochs); ``default``: cosine from ``lr`` to ``final_lr`` over the run.
    """
    total = max(1, hp["epochs"])
    ratio = hp["final_lr"] / hp["lr"]
    frac = min(1.0, epoch / total)
    if hp["schedule"] == "astrovader":
        return ratio**frac
    return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


def check_against_cube(cfg: Config, cube: np.ndarray, announce: bool = True) -> dict[str, Any]:
    """The hyper-parameters for ``cube``, checked against its size (the CLI calls this before it
    saves the configuration, so a rejected value never reaches ``RUN/config.toml``; with
    ``announce=False``, as the training that follows says what it does not use)."""
    if cube.ndim != 4 or cube.shape[2] != cube.shape[3]:
        raise UserError(f"cube.npy must be N x C x S x S, got shape {cube.shape}")
    if len(cube) < 2:
        raise UserError("the cube holds fewer than two galaxies: nothing to train on")
    hp = resolve_hparams(cfg, cube.shape[1], cube.shape[2], announce=announce)
    if hp["n_components"] > len(cube):
        raise UserError(f"model.n_components ({hp['n_components']}) exceeds the number of galaxies ({len(cube)})")
    form = hp.get("form") or {}
    width = embedding_dim(form) if form.get("core") == "linear" else 0
    sample = cfg.train.sample
    hp["sample"] = sample if 0 < sample < len(cube) else 0  # what is drawn: 0 and 20,000 of 5,000 are alike
    trained_on = hp["sample"] or len(cube)
    fewest = max(2, hp["n_components"] or hp["k_min"])
    if hp["sample"] and trained_on < fewest:
        # fewer galaxies than the mixture's components (one galaxy: numpy's "Eigenvalues did not
        # converge", after the earlier model was set aside)
        raise UserError(f"train.sample = {trained_on} galaxies is too few to train on (the mixture needs at least "
                        f"{fewest}): give 0 (every galaxy) or a larger sample")
    if width and hp["latent_dim"] > min(trained_on - 1, width):
        # the linear core projects on principal axes: no more of them than the centred training
        # galaxies span (one fewer than they are) or than the embedding has numbers
        what = "form.dim x form.heads" if form.get("heads", 1) > 1 else "form.dim"
        raise UserError(f"model.latent_dim ({hp['latent_dim']}) must not exceed min(galaxies trained on - 1, {what}) "
                        f"= {min(trained_on - 1, width)} with form.core = 'linear': "
                        f"--set model.latent_dim={min(trained_on - 1, width)}")
    return hp
