"""The CNN feature study as one command (``morphospace study``): ingest, features of a fine-tuned
or frozen backbone (or of the run's own VaDE or form encoder), then the run's later stages."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config, apply_overrides, flat_settings, flat_table
from ..errors import UserError
from ..progress import Timer
from ..run import RunDir, in_cube_order
from ..run.provenance import survey_read
from .stages import (stage_anomaly, stage_cluster, stage_compare, stage_reduce, stage_report, stage_train,
                     trained_preset)
from .survey import check_data, ingest_checked, mask_if_asked, removed_on_failure, save_config, saved_config

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("morphospace")


def run_study(run: RunDir, cfg: Config, created: bool = False, resume: bool = False) -> Path:
    """The CNN feature study: ingest, fine-tune, features, reductions, clusterings, comparisons, report.

    ``study.backbone = "vade"`` puts the VaDE encoder's ``z_mean`` through the same study: the
    run's trained VaDE if it has one, otherwise one trained here from the ``model`` and
    ``train`` settings (no labels used); its own clusters are compared too.
    ``study.backbone = "ssl"`` does the same with the self-supervised form embedding (the
    form-first VaDE's input, trained here if the run has none).

    A study refused up to its first training (its labels, once the survey is in) takes away a
    folder it ``created``. ``resume``: an interrupted fine-tuning goes on from its last epoch.
    """
    from ..nets.backbones import BACKBONES, check_backbone
    from ..study.finetune import check_frozen_weights
    from ..vade.io import model_dir, model_file

    from ..analysis.labels import check_label_columns, check_label_settings
    from ..study.features import fine_tuning_labels, study_truth

    def study_labels(catalogue: pd.DataFrame, cfg: Config, announce: bool = True) -> Config:
        if cfg.study.mode != "frozen" and cfg.study.backbone not in ("vade", "ssl"):
            fine_tuning_labels(in_cube_order(catalogue), cfg)
        return study_truth(catalogue, cfg, announce)

    def check_catalogue(catalogue: pd.DataFrame, shape: tuple) -> None:  # the new survey's, before the run changes
        check_label_columns(catalogue, cfg)
        # the labels the study then scores against are checked as a truth label (an identifier refused)
        check_label_columns(catalogue, study_labels(catalogue, cfg, announce=False))

    def check(cfg: Config) -> Config:  # refused once the galaxies are in: one line before any training
        check_label_settings(run, cfg)
        return study_labels(run.read_catalogue(), cfg)

    with removed_on_failure(run, created):
        if cfg.study.backbone in BACKBONES:  # an optional package or weights file missing: before the ingest
            check_backbone(cfg.study.backbone, cfg.study.mode == "frozen" or BACKBONES[cfg.study.backbone].pretrained,
                           cfg.study.weights or None)
            check_frozen_weights(cfg.study.backbone, cfg.study.mode, cfg.study.weights)
        if resume:
            check_resumable_study(run, cfg)
        check_data(cfg)
        if resume and run.cube.is_file():
            # the interrupted fine-tuning's own cube: ingested again, a changed survey or setting set its
            # checkpoint aside with the rest of the run before the checkpoint could refuse it
            cfg = check(cfg)
            save_config(run, cfg)
        else:
            cfg = ingest_checked(run, cfg, check, check_catalogue)  # also before a finished run is replaced
        mask_if_asked(run, cfg)
    _say_study_settings_unused(cfg)
    if cfg.study.backbone in ("vade", "ssl"):
        if cfg.study.backbone == "ssl":  # the self-supervised encoder is the form-first VaDE's
            cfg = apply_overrides(cfg, {"model.preset": "form"})
        trained = model_file(run)
        if trained.is_file() and (cfg.study.backbone == "vade" or trained_preset(trained) == "form"):
            log.info("study of the %s encoder: using the trained model in %s", cfg.study.backbone, model_dir(run))
            cfg = _model_settings(run, cfg)
            save_config(run, cfg)
        else:
            stage_train(run, apply_overrides(cfg, {"model.kind": "vade"}))
        from ..vade.embed import embed_run

        embed_run(run, cfg)
        stage_anomaly(run, cfg)
        embedding = "vade" if cfg.study.backbone == "vade" else "form"
    else:
        from ..study.features import study_features_run

        with Timer(f"features of {cfg.study.backbone} ({cfg.study.mode})"):
            study_features_run(run, cfg, resume=resume)
        embedding = "features"
    stage_reduce(run, cfg, embedding=embedding)
    stage_cluster(run, cfg)
    stage_compare(run, cfg)
    return stage_report(run, cfg)


def _say_study_settings_unused(cfg: Config) -> None:
    """The study settings given (other than their defaults) that this study does not use, said, not
    dropped in silence: a frozen backbone trains nothing (epochs, lr, patience), and the vade and ssl
    backbones are the run's model, trained by its own settings."""
    from ..config.outputs import StudyConfig

    if cfg.study.backbone in ("vade", "ssl"):
        keys, why = ("mode", "epochs", "weights", "input_size", "batch_size", "lr", "patience"), \
            f"the {cfg.study.backbone} backbone, the run's own model, which the study fine-tunes nothing of"
    elif cfg.study.mode == "frozen":
        keys, why = ("epochs", "lr", "patience"), "a frozen backbone, which trains nothing"
    else:
        return
    unused = [f"study.{k} = {getattr(cfg.study, k)!r}" for k in keys if getattr(cfg.study, k) != getattr(StudyConfig(), k)]
    if unused:
        log.warning("%s: not used by %s", ", ".join(unused), why)


def _model_settings(run: RunDir, cfg: Config) -> Config:
    """Where the study uses the run's trained model: the model settings given (those other than the
    defaults a study starts from) that it was not trained with, said (`study --backbone vade --set
    model.latent_dim=8` used a 16-d model without a word), and ``cfg`` with the model's own values
    for them, which the run's ``config.toml`` then says (it said 8 of a 16-d model)."""
    import json

    from ..vade.fitting import comparable_hparams
    from ..vade.hparams import resolve_hparams, settings_of
    from ..vade.io import model_dir

    try:
        began = json.loads((model_dir(run) / "hparams.json").read_text())
        cube = run.read_cube()
        shape = (cube.shape[1], cube.shape[2])
        now = resolve_hparams(cfg, *shape, announce=False)
        usual = resolve_hparams(apply_overrides(Config(), {"model.preset": cfg.model.preset}), *shape, announce=False)
        model_says = settings_of(began)
    except (OSError, ValueError, AttributeError, KeyError, TypeError, UserError):
        return cfg  # an imported model, or a record that cannot be read: nothing to compare
    old, new, default = (flat_table(comparable_hparams(hp)) for hp in (began, now, usual))
    # the settings given otherwise than the model was trained, said; a preset other than the default too
    # (`usual` is the given preset's)
    given_preset = cfg.model.preset != Config().model.preset
    changes = [f"{k} {old[k]!r} -> {v!r}" for k, v in sorted(new.items())
               if k in old and (v != default.get(k) or (k == "preset" and given_preset)) and v != old[k]
               and k not in ("seed", "sample")]
    if changes:
        log.warning("the study uses the run's trained model, trained otherwise than these settings say (%s%s): "
                    "`morphospace train` first to study a model trained with them; the run's config.toml says the "
                    "model's", "; ".join(changes[:3]), "; ..." if len(changes) > 3 else "")
    # every setting of the model, given or not: a study starts from the defaults, not the run's settings
    given = settings_of(now)
    back = {k: v for k, v in model_says.items() if given.get(k) != v}
    if back.get("form.weights") and not Path(back["form.weights"]).is_file():  # gone since: refused, as given
        back.pop("form.weights")
    if not back:
        return cfg
    try:
        return apply_overrides(cfg, back)
    except UserError:  # a value the settings no longer accept (a model of an earlier version): as given
        return cfg


def check_resumable_study(run: RunDir, cfg: Config) -> None:
    """A one-line :class:`UserError` before anything is done where ``--resume`` has nothing to go on with."""
    from ..study.training import LAST_CHECKPOINT

    if cfg.study.mode != "finetune" or cfg.study.backbone in ("vade", "ssl"):
        raise UserError(f"--resume goes on with an interrupted fine-tuning: the {cfg.study.backbone} backbone "
                        f"({cfg.study.mode}) fine-tunes nothing")
    last = run.model_path(cfg.study.backbone) / LAST_CHECKPOINT
    if not last.is_file():
        raise UserError(f"nothing to resume: no {last} (a fine-tuning writes it after each epoch); run without --resume")
    earlier = saved_config(run)
    changed = _what_made_the_features_changed(earlier, cfg, survey_read(run)) if earlier is not None else []
    if changed:
        raise UserError(f"--resume goes on with the interrupted study's own survey and settings, and these differ "
                        f"from its: {'; '.join(changed[:6])}: give the same ones, or run without --resume to start "
                        f"afresh")


# what the fine-tuned features are made of; the truth label aside (the study makes its labels the truth);
# the seed draws the fine-tuning's split and order (a resume with another was refused by its checkpoint,
# after the new seed was saved as the run's); the precision its arithmetic (resumed in another, the
# features differed from an uninterrupted run's without a word)
_FEATURE_SECTIONS = ("data", "preprocess", "study")
_FEATURE_KEYS = ("train.seed", "train.precision")
_NOT_COMPARED = {"data.truth_label"}
# settings that name files, saved as typed: a relative one names another file from another folder
_PATHS = {"data.path", "data.catalogue", "study.weights"}


def _what_made_the_features_changed(earlier: Config, cfg: Config, survey: str = "") -> list[str]:
    """``key: before -> now`` for every setting of the survey, its preprocessing and the study that
    ``cfg`` changes from the run's ``earlier`` ones. The survey is compared with the one the ingest
    read (``survey``, resolved); other files by name where they were given relative to another
    folder than this one."""
    def flat(c: Config) -> dict:
        return {k: v for k, v in flat_settings(c).items()
                if k.partition(".")[0] in _FEATURE_SECTIONS or k in _FEATURE_KEYS}

    before, now = flat(earlier), flat(cfg)
    if survey and before.get("data.path"):  # none given (the built-in synthetic survey): nothing to resolve
        before["data.path"] = survey
    changed = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if key in _NOT_COMPARED or a == b:
            continue
        if key in _PATHS and a and b and _same_file(str(a), str(b)):
            continue
        changed.append(f"{key}: {a!r} -> {b!r}")
    return changed


def _same_file(saved: str, given: str) -> bool:
    """Whether ``given`` (from this folder) names the file ``saved`` names: the same resolved path,
    or, for a relative ``saved`` from an unknown folder, a file of the same name that exists."""
    here = Path(given).resolve()
    if Path(saved).is_absolute():
        return here == Path(saved).resolve()
    return here == Path(saved).resolve() or (here.exists() and here.parts[-len(Path(saved).parts):] == Path(saved).parts)
