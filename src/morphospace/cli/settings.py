"""A command's settings: the run's saved configuration (or ``--config``), then ``--set``, then the
command's own options, each checked against the others; what a stage saves back to the run."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from ..config import Config, ConfigError, apply_overrides, flat_settings, flat_table, load_config, overrides_on_saved
from ..config.stage_keys import ANALYSIS_READERS, EMBED_KEYS, MACHINE_KEYS, MODEL_KEYS, STAGE_ORDER
from ..errors import UserError
from ..run import RunDir, launched_as_later_rank

log = logging.getLogger("morphospace")


def _run_s_own(run: RunDir) -> Config:
    """The run's saved settings; one it holds that is no longer allowed (saved before a check of it
    was added) is named with the file, which alone can mend it (a --set given is applied after)."""
    try:
        return load_config(run.config)
    except ConfigError as exc:
        raise ConfigError(f"{run.config}: {str(exc).removeprefix('config: ')}: mend it in that file") from None


def _config_for(args, run: RunDir | None, training: bool = False) -> Config:
    """Config of a stage: the run's saved config, then --config, then --set and options; with
    ``training``, --epochs and --seed too, validated with the rest (a check such as "epochs must
    exceed the pre-training epochs" reads the epochs given, not the run's saved ones)."""
    path = getattr(args, "config", None)
    saved = False
    if path:  # often another run's config.toml, which names every key: read as a run's own
        cfg, saved = load_config(path), True
        if not getattr(args, "data", None):  # DATA given names the survey itself
            cfg = _survey_of_a_run(Path(path), cfg)
    elif run is not None and run.config.exists():
        cfg, saved = _run_s_own(run), True
        if run.config.is_file() and not run.config.read_text(errors="replace").strip():
            # emptied by hand (or a failed copy): read as every default, and saved back so, without a word
            log.warning("%s is empty: this stage uses the built-in defaults, not the run's own settings (give "
                        "them with --config FILE)", run.config)
    else:
        if run is not None and run.catalogue.exists():  # an ingested run without its settings: said
            log.warning("%s is missing: this stage uses the built-in defaults, not the run's own settings (give "
                        "them with --config FILE)", run.config)
        cfg = Config()
    extra = {f"train.{key}": int(value) for key in ("epochs", "seed")
             if training and (value := getattr(args, key, None)) is not None}
    _given_once(args, extra)
    overrides = [*(getattr(args, "overrides", []) or []), *(f"{k}={v}" for k, v in extra.items())]
    return overrides_on_saved(cfg, overrides) if saved else apply_overrides(cfg, overrides)


def _survey_of_a_run(path: Path, cfg: Config) -> Config:
    """``cfg``, read from ``path``, with the survey its run read where ``path`` is a run's config.toml
    whose ``data.path`` is relative: saved as typed, relative to where that run was started, it named
    another folder (or none) from anywhere else (the run's ``ingest_summary.json`` says which it read)."""
    from ..run.provenance import survey_read

    typed = cfg.data.path
    if not typed or Path(typed).is_absolute():
        return cfg
    source = survey_read(RunDir(path.parent))
    if not source or not Path(source).is_absolute() or Path(typed).resolve() == Path(source):
        return cfg
    log.warning("data.path %r in %s is relative to where that run was started: read as the survey it read, %s",
                typed, path, source)
    return apply_overrides(cfg, {"data.path": source})


def _set(cfg: Config, args=None, **dotted) -> Config:
    """``cfg`` with a command's options (dotted keys spelt with ``__``; None: not given), each checked
    against a ``--set`` of the same key in ``args`` (:func:`_given_once`)."""
    values = {k.replace("__", "."): v for k, v in dotted.items() if v is not None}
    if args is not None:
        _given_once(args, values)
    return apply_overrides(cfg, values) if values else cfg


def _set_keys(args) -> dict[str, str]:
    """The keys the command's ``--set`` options give, each with its ``--set`` text."""
    given = {}
    for text in getattr(args, "overrides", None) or []:
        key, sep, _ = str(text).partition("=")
        if sep:
            given[key.strip()] = str(text)
    return given


def _given_keys(args) -> set[str]:
    """The dotted keys a command gives: its ``--set`` keys, and those its ``--config`` file sets (read
    as :func:`~morphospace.config.load_config` reads it, byte-order mark and all; a file it cannot
    parse gives none here: the command's own reading of it says so)."""
    import tomllib

    given = set(_set_keys(args))
    path = getattr(args, "config", None)
    if path:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            table = {}
        given |= set(flat_table(table))
    return given


def _given_once(args, options: dict) -> None:
    """A one-line error where an option and a ``--set`` give one setting different values (the
    option won without a word: ``--epochs 1 --set train.epochs=2`` trained 1 epoch)."""
    given = _set_keys(args)
    for key, value in options.items():
        if key not in given:
            continue
        by_set, by_option = (functools.reduce(getattr, key.split("."), apply_overrides(Config(), o))
                             for o in ([given[key]], {key: value}))
        if by_set != by_option:
            raise UserError(f"{key} is given twice, {by_option!r} by an option and {by_set!r} by --set {given[key]}: "
                            "give it once")


# what trains the pixel VaDE and the form model's MLP core; the linear core is fitted in closed form,
# and its SSL head and image decoder train by their own form.* settings
_CORE_TRAINING = ("epochs", "pretrain_epochs", "batch_size", "lr", "final_lr_fraction", "weight_decay", "grad_clip",
                  "augment")


def _say_unused_epochs(args, cfg: Config) -> None:
    """``--epochs`` sets ``train.epochs``, which the form model's linear core does not have; nor any of
    the training settings given (``--set train.lr=...``: recorded as the model's, used by nothing)."""
    if cfg.model.kind != "vade" or not cfg.linear_core:
        return
    if getattr(args, "epochs", None) is not None:
        log.warning("--epochs %d is not used by the form model's linear core (fitted in closed form): its SSL "
                    "head trains form.ssl_epochs (%d), its image decoder form.decoder_epochs (%d)", args.epochs,
                    cfg.form.ssl_epochs, cfg.form.decoder_epochs)
    given = _given_keys(args)
    unused = [f"train.{k} = {getattr(cfg.train, k)!r}" for k in _CORE_TRAINING
              if f"train.{k}" in given and not (k == "epochs" and getattr(args, "epochs", None) is not None)]
    if unused:
        log.warning("%s: not used by the form model's linear core (fitted in closed form); its SSL head and image "
                    "decoder train by form.ssl_epochs and form.decoder_epochs (model.preset = default, or "
                    "form.core = mlp, trains by them)", ", ".join(unused))


def _save_changed_config(run: RunDir, cfg: Config) -> bool:
    """A stage's settings (``--set``, ``--config``, its options) saved as the run's, where later stages and
    the report read them: a ``compare --set data.truth_label=...`` was reported under the old truth label.
    Only the first process of a distributed job writes; a run without its config (its stages say they
    use the defaults) is left so. Returns whether it wrote them."""
    from .. import pipeline
    from ..config import dumps_config

    if launched_as_later_rank() or not run.config.is_file():
        return False
    try:
        same = run.config.read_text() == dumps_config(cfg)
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        pipeline.save_config(run, cfg)
    return not same


# settings a stage after the ingest does not act on: the survey's reading and the cube's recipe
# (made by `ingest`), and the model's (made by `train`; its merge by `embed`), and the [cluster] and
# [study] settings that only earlier stages read (ANALYSIS_READERS: the maps' by `reduce`, the
# clusterings' by `cluster`); the machine's (devices, threads, loader processes) any stage may take
_INGEST_KEYS = ("data.path", "data.layout", "data.catalogue", "data.id_column", "data.file_column",
                "data.label_columns", "data.synth_n", "data.synth_seed", "data.vote_thresholds.", "preprocess.",
                "ingest.")


def _made_before(command: str, key: str) -> str | None:
    """The stage that acts on setting ``key`` where ``command``, a stage after the ingest, does not,
    and no stage after it does (``ingest``, ``train``, ``embed``, ``reduce``, ``cluster`` or ``compare``,
    each with ``run`` doing all; ``study`` for its own), else None."""
    def among(keys):
        return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)

    if among(MACHINE_KEYS):
        return None
    if among(_INGEST_KEYS):
        return "ingest"
    readers = next((stages for k, stages in ANALYSIS_READERS.items() if among((k,))), None)
    if readers is not None:  # [cluster] and [study]: refused where only stages before this one read them
        if command not in STAGE_ORDER:
            return None
        here = STAGE_ORDER.index(command)
        earlier = all(stage not in STAGE_ORDER or STAGE_ORDER.index(stage) < here for stage in readers)
        return readers[0] if earlier else None
    if command == "train" or (command == "embed" and among(EMBED_KEYS)):
        return None
    if among(EMBED_KEYS[:2]):  # the merge: its own stage; the PCA baseline's keys are train's too
        return "embed"
    return "train" if among(MODEL_KEYS) else None


_BY_KEY = ("cluster", "study")  # sections of which an earlier stage's keys are named one by one when kept


def _earlier_settings_kept(run: RunDir, cfg: Config, args) -> Config:
    """``cfg`` with the run's own settings of the stages before this one (the survey's reading and the
    cube's recipe; after ``train``, the model's; the maps' and clusterings' where no later stage reads
    them), which this stage does not remake: a one-line :class:`UserError` where a ``--set`` gives
    others (`compare --set preprocess.size=128` saved a size the 64 px cube does not have, `report
    --set form.backbone=...` a trunk the model never had, `compare --set cluster.kmeans_k=[3,4]` a K the
    clusterings on disk (3 to 8) were not made with, which a later `cluster` then dropped);
    those a ``--config`` file brings, named in it or not, give way to the run's, said."""
    try:
        saved = load_config(run.config) if run.config.is_file() else None
    except UserError:  # a damaged file: the stage's own reading of it says so
        return cfg
    if saved is None:
        return cfg
    before, now = flat_settings(saved), flat_settings(cfg)
    changed = {k: stage for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k) and (stage := _made_before(args.command, k))}
    # asked for: a --set of the key, or of its section's preset; a --config file is a bundle (often a
    # run's whole config.toml) of which the stage takes what it acts on, the rest kept as the run's, said
    given = set(_set_keys(args))
    presets = {k.rpartition(".")[0] for k in given if k.endswith(".preset")}
    asked = [k for k in changed if k in given or k.partition(".")[0] in presets
             or (k.split(".")[0] in ("model", "train") and "model" in presets)]
    if asked:
        stage = changed[asked[0]]
        asked = sorted((k for k in asked if changed[k] == stage), key=lambda k: k not in given)  # the given first
        shown = ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in asked[:3])
        does = {"ingest": "remake the cube", "train": "train the model", "embed": "merge the model's components",
                "reduce": "make the maps", "cluster": "cluster the galaxies", "compare": "compare the clusterings",
                "study": "make the CNN features"}[stage]
        raise UserError(f"`morphospace {args.command}` does not {does}, so it cannot take {shown}: give "
                        f"{'it' if len(asked) == 1 else 'them'} to `morphospace {stage}`"
                        f"{'' if stage == 'study' else ' (or `run`)'}, which does")
    if not changed:
        return cfg
    config = getattr(args, "config", None)
    in_file = _given_keys(args) if config else set()
    named = [k for k in changed if k in in_file]
    if named and Path(config).resolve() != run.config.resolve():  # a file that says otherwise: said
        shown = ", ".join(f"{k} {now.get(k)!r}" for k in named[:3]) + (", ..." if len(named) > 3 else "")
        log.warning("--config %s sets %s, which `morphospace %s` does not act on: the run's own kept", config, shown,
                    args.command)
    else:
        def listed(names):
            return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)

        # [cluster] and [study] key by key: the stage takes the rest of [cluster] from the file
        keys = [k for k in changed if k.partition(".")[0] in _BY_KEY]
        sections = [f"[{name}]" for name in sorted({k.partition(".")[0] for k in changed} - set(_BY_KEY))]
        named = listed(keys[:4]) + (", ..." if len(keys) > 4 else "")
        kept = (f"{listed(sections)} settings kept" + (f", and its {named}" if keys else "")) if sections \
            else f"{named} kept"
        log.info("the run's own %s, not those %s", kept,
                 f"of --config {config}" if config else "the settings given implied")
    # every key of the earlier stages set, not only those that differ: one left unset is filled by its
    # section's preset (a run's latent_dim = 16 became the astrovader preset's 20, "kept")
    return apply_overrides(cfg, {k: v for k, v in before.items() if _made_before(args.command, k)})


def _say(replaced: str) -> None:
    if replaced:
        log.warning("%s", replaced)


def _settings_replaced(args, run: RunDir, cfg: Config, options: dict, saved: Config | None = None) -> str:
    """``run``, ``study`` and ``ingest`` start from the defaults and what is given, not from the run's
    saved settings, which they replace: the line that names those they set back to another value
    than the run's, not given in this command (a study on a finished run reset its form settings
    without a word); "" when none. ``saved``: the run's settings as they were, read before the
    command (else its ``config.toml`` now)."""
    from ..pipeline.survey import with_imported_model

    if not run.catalogue.is_file():  # settings that made no cube yet (an imported model's run)
        return ""
    try:
        if saved is None:
            saved = load_config(run.config) if run.config.is_file() else None
    except UserError as exc:  # a damaged file: the stage replaces it, said (its settings are lost)
        return (f"`morphospace {args.command}` replaced {run.config}, which could not be read ({exc}), with "
                "the defaults and the settings given")
    if saved is None:
        return ""
    given = _given_keys(args) | {k.replace("__", ".") for k, v in options.items() if v is not None}
    # a preset given fills its section's keys: those changes are what was asked for
    sections = {key.partition(".")[0] for key in given if key.endswith(".preset")}
    sections |= {"model", "train"} if "model.preset" in given else set()

    # what the command will save: an imported model keeps the [model] settings that describe it
    # as config.toml says them (presets resolved)
    before, now = (flat_settings(c) for c in (saved, with_imported_model(run, cfg)))
    if args.command == "study" and not now.get("data.truth_label") and now.get("study.labels") \
            and before.get("data.truth_label") == now.get("study.labels"):
        now["data.truth_label"] = before["data.truth_label"]  # the study makes its labels the truth again
    changed = [k for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k) and k not in given and k.partition(".")[0] not in sections]
    if not changed:
        return ""
    shown = ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
    start = (f"--config {args.config}" if getattr(args, "config", None) else "the defaults")
    return (f"`morphospace {args.command}` started from {start} and the settings given, not from the run's "
            f"saved ones, of which it replaced {len(changed)} ({shown}{', ...' if len(changed) > 6 else ''}); "
            + (f"--config {run.config} would have kept them" if args.command in ("run", "study", "ingest")
               else "without --config it reads them"))
