"""Reading, overriding and writing the run configuration (TOML: ``tomllib`` in, ``tomli_w`` out)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from ..errors import UserError
from .messages import ConfigError, describe, not_a_table, unknown_key
from .learning import MODEL_PRESETS, PRESET_SETTABLE, ModelConfig, TrainConfig
from .sections import Config, pretraining_share
from .set_values import is_toml, list_advice, parse_value


def config_from_dict(table: Mapping[str, Any]) -> Config:
    """Validate a nested dict (as parsed from TOML) into a :class:`Config`.

    Parameters
    ----------
    table : mapping
        ``{section: {key: value}}``; a missing section or key takes its default.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        One line naming the first unknown key, or the first value of the wrong type, out of
        its range, not among its allowed values, not finite or with a control character.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"config: the configuration must be a table, got {type(table).__name__}")
    try:
        return Config.model_validate(dict(table))
    except ValidationError as exc:
        raise ConfigError(describe(exc, Config)) from None


def with_presets_resolved(cfg: Config) -> Config:
    """A new :class:`Config`: ``cfg`` validated again from the keys it sets, so that a preset
    assigned in code (``cfg.model.preset = "astrovader"``) or by ``model_copy(update=...)`` fills
    the keys it leaves to the preset, as ``Config(...)`` and a loaded file do. A
    :class:`ConfigError` says where the settings together are not allowed (``train.epochs`` not
    above ``train.pretrain_epochs``)."""
    table = {}
    for name in type(cfg).model_fields:
        section = getattr(cfg, name)
        values = section.model_dump(exclude_unset=True)
        published = {key: value for preset in MODEL_PRESETS.values() for key, value in preset.get(name, {}).items()}
        # a value changed in place (a list appended to) is not marked set: kept; one a preset filled is not
        for key, value in section.model_dump(exclude_defaults=True).items():
            if key not in values and not (key in published and value == published[key]):
                values[key] = value
        table[name] = values
    return config_from_dict(table)


def load_config(path: str | Path | None) -> Config:
    """Load and validate a TOML configuration file.

    Parameters
    ----------
    path : str, Path or None
        The file; ``None`` gives the defaults.

    Returns
    -------
    Config

    Raises
    ------
    UserError
        The file is missing, unreadable or not TOML (one line), or a key or value is not
        allowed (:class:`ConfigError`, see :func:`config_from_dict`).
    """
    if path is None:
        return Config()
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config: {path} is a folder: give a TOML file")
    if path.exists() and not path.is_file():  # read more than once (its keys, then its values): a file
        raise UserError(f"config: {path} is not a regular file (a pipe or a device such as /dev/stdin): save the "
                        "settings to a TOML file and give its path")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        # utf-8-sig: an editor's byte-order mark is not a TOML error
        table = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"config: {path} is not a text file (not UTF-8): give a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config: {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UserError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    return config_from_dict(_without_legacy_defaults(table))


def _without_legacy_defaults(data: dict) -> dict:
    """A ``config.toml`` written before the preset was resolved here names every key at its plain
    default, the preset's fixed network and loss keys among them: its keys at their defaults were
    left to the preset (as it trained then) and are taken out, so that the preset fills them and a
    ``--resume`` of that run trains what it trained."""
    model = data.get("model")
    name = model.get("preset") if isinstance(model, dict) else None
    if not isinstance(name, str) or name not in MODEL_PRESETS:
        return data
    data, preset = dict(data), MODEL_PRESETS[name]
    sections = {section: data.get(section) for section in preset}
    if not all(isinstance(table, dict) for table in sections.values()):
        return data
    fields = {"model": ModelConfig.model_fields, "train": TrainConfig.model_fields}
    # the fixed keys whose published value is not the plain default tell the two apart: a file of
    # this version holds the published values (a user may have set one or two otherwise)
    telling = [(section, key) for section, values in preset.items() for key, value in values.items()
               if key not in PRESET_SETTABLE and value != fields[section][key].default and key in sections[section]]
    at_default = sum(sections[section][key] == fields[section][key].default for section, key in telling)
    if len(telling) < 3 or 2 * at_default <= len(telling):
        return data
    for section, values in preset.items():
        data[section] = {key: value for key, value in sections[section].items()
                         if not (key in values and value == fields[section][key].default)}
    epochs = data["train"].get("epochs", preset["train"]["epochs"])
    if "pretrain_epochs" not in data["train"] and isinstance(epochs, int) and epochs > preset["train"]["pretrain_epochs"]:
        data["train"]["pretrain_epochs"] = preset["train"]["pretrain_epochs"]  # as it trained then, whatever the epochs
    return data


def apply_overrides(cfg: Config, overrides: Sequence[str] | Mapping[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted-key overrides applied, validated as a whole.

    Parameters
    ----------
    cfg : Config
        Left unchanged.
    overrides : list of str or mapping
        ``"section.key=value"`` strings, as given to ``--set``: the value is read as a TOML
        value (``128``, ``1e-3``, ``true``, ``[3, 4]``, ``'text'``), else taken as plain text;
        a key that holds text always gets the text as written (``form.precision=32`` is
        ``"32"``). Or a mapping of dotted keys to Python values, used as they are. Later
        overrides of the same key win; the result is validated once, after all of them.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        An unknown key, a string without ``=``, or a value that is not allowed.

    Examples
    --------
    >>> apply_overrides(Config(), ["train.epochs=4", "cluster.kmeans_k=[3, 4]"]).train.epochs
    4
    """
    known = to_dict(cfg)
    # only what was set (in the file, by earlier overrides) and what is set now: what a preset
    # must not replace (PreprocessConfig) is told from the keys left to their defaults
    table = cfg.model_dump(exclude_unset=True)
    parse = not isinstance(overrides, Mapping)
    items = [_split(o) for o in overrides] if parse else list(overrides.items())
    unread: dict[str, str] = {}  # key -> a list or table as typed that is not TOML (`[kmeans]`), taken as text
    for dotted, value in items:
        parts = str(dotted).split(".")
        node: dict[str, Any] = table
        full: dict[str, Any] = known
        model: type[BaseModel] = Config
        for i, part in enumerate(parts[:-1]):
            if part in full and not isinstance(full[part], dict):  # train.epochs.x: a setting is no table
                raise ConfigError(not_a_table(str(dotted), ".".join(parts[: i + 1])))
            if not isinstance(full.get(part), dict):
                raise ConfigError(unknown_key(".".join(parts[: i + 1]), model))
            node, full = node.setdefault(part, {}), full[part]
            model = model.model_fields[part].annotation  # type: ignore[assignment]
        if parts[-1] not in full:
            raise ConfigError(unknown_key(dotted, model))
        if parse and isinstance(full[parts[-1]], dict):
            # an inline table (--set "train={epochs=3}") replaced the whole table: its other keys went back
            # to their defaults without a word
            raise ConfigError(f"--set {dotted}=... sets the whole table {dotted}, which would set its other keys back "
                              f"to their defaults: give its keys one by one (--set {dotted}.KEY=VALUE)")
        node[parts[-1]] = parse_value(value, model.model_fields[parts[-1]]) if parse else _plain(value)
        if parse and isinstance(value, str) and value.lstrip()[:1] in ("[", "{") and not is_toml(value):
            unread[str(dotted)] = value
        else:
            unread.pop(str(dotted), None)
    try:
        return config_from_dict(table)
    except ConfigError as exc:
        # `--set cluster.methods=[kmeans]` said "must be a list; got str '[kmeans]'", which looks like a
        # list: the strings in it need TOML's quotes
        key = next((k for k in unread if str(exc).startswith((f"config: {k} ", f"config: {k}["))), None)
        if key is None:
            raise
        advice = list_advice(key, unread[key])
        if advice is None:
            raise
        raise ConfigError(f"{exc}: {advice}") from None


def overrides_on_saved(saved: Config, overrides: Sequence[str] | Mapping[str, Any]) -> Config:
    """:func:`apply_overrides` on a run's saved configuration (``config.toml``, which writes every key).

    The saved file names every ``[model]`` and ``[train]`` key, so it does not say which of them a
    model preset filled (the command line reads a ``--config`` file so too: often another run's).
    Under a preset (``model.preset = "astrovader"``) a key that holds the preset's value (for
    ``train.pretrain_epochs``, its share of the saved epochs) is taken as left to it: a preset
    given now (``--set model.preset=form``) does not inherit it, and a shorter run given now
    (``--set train.epochs=16``) pretrains its share of it; the saved pretraining otherwise stays
    (a ``--resume`` with more epochs continues what it started). A preset given now that the run did
    not have fills the keys saved at their defaults (they were not chosen for it). What is set
    now is kept, even at a default value.

    Parameters
    ----------
    saved : Config
        The run's saved configuration.
    overrides : list of str or mapping
        As for :func:`apply_overrides`.

    Returns
    -------
    Config
    """
    before, now = saved.model.preset, _preset_given(overrides, saved.model.preset)
    if before not in MODEL_PRESETS and (now == before or now not in MODEL_PRESETS):
        return apply_overrides(saved, overrides)
    filled = {section: dict(values) for section, values in MODEL_PRESETS.get(before, {}).items()}
    share = pretraining_share(saved.train.epochs, MODEL_PRESETS[before]["train"]) if filled else None
    if filled:
        # the preset pretrains its share of the epochs (16: 5), not its own 100; on the same preset
        # the saved number stays (a --resume with more epochs continues it) while it fits
        filled["train"]["pretrain_epochs"] = share
        if now == before:
            del filled["train"]["pretrain_epochs"]

    def chosen(left: dict) -> Config:
        table = saved.model_dump(exclude_unset=True)
        for section in ("model", "train"):
            values, fields = getattr(saved, section).model_dump(), type(getattr(saved, section)).model_fields
            table[section] = {key: value for key, value in values.items()
                              if not (key in left.get(section, {}) and value == left[section][key])
                              and not (now != before and now in MODEL_PRESETS and value == fields[key].default)}
        return Config(**table)

    try:
        return apply_overrides(chosen(filled), overrides)
    except ConfigError:
        if not filled or now != before or saved.train.pretrain_epochs != share:
            raise
        # fewer epochs given now than the saved pretraining (a run saved at 16 / 5, --epochs 4):
        # that number was the preset's share, which follows the epochs given
        return apply_overrides(chosen({**filled, "train": {**filled["train"], "pretrain_epochs": share}}), overrides)


def _preset_given(overrides: Sequence[str] | Mapping[str, Any], saved: str) -> str:
    """The ``model.preset`` the overrides give (the last one; checked), else the ``saved`` one."""
    items = [_split(o) for o in overrides] if not isinstance(overrides, Mapping) else list(overrides.items())
    given = [(key, value) for key, value in items if str(key).strip() == "model.preset"
             or (str(key).strip() == "model" and isinstance(value, Mapping) and "preset" in value)]
    if not given:
        return saved
    key, value = given[-1]
    if isinstance(value, Mapping):  # a whole table, {"model": {"preset": ...}}
        key, value = "model.preset", value["preset"]
    one = {key: value} if isinstance(overrides, Mapping) else [f"{key}={value}"]
    return apply_overrides(Config(), one).model.preset


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    """The configuration (or one section) as a plain nested dict of TOML-ready values."""
    return cfg.model_dump()


def dumps_config(cfg: Config) -> str:
    """The configuration as TOML text (written by ``tomli_w``; :func:`load_config` reads it back equal)."""
    return tomli_w.dumps(to_dict(with_presets_resolved(cfg)))  # a preset assigned in code: what trains


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the configuration to a TOML file (e.g. ``RUN/config.toml``); returns its path."""
    path = Path(path)
    path.write_text(dumps_config(cfg), encoding="utf-8")
    return path


def _split(text: str) -> tuple[str, str]:
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _plain(value: Any) -> Any:
    """A notebook's value as plain Python: numpy numbers, booleans and text (``np.int64(8)``,
    ``np.bool_``) and arrays of them become ints, floats, bools, strings and lists, which the strict
    configuration takes, inside lists and tables too; every other value (dates, times, objects) is
    left as it is, to be judged by the configuration."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUO":
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic) and value.dtype.kind in "biufU":
        return value.item()
    return value


def settings_mapping(config: Any, example: str) -> dict:
    """``config`` (a notebook's ``{"section.key": value}`` settings, or None) as a dict of dotted
    keys (a nested ``{"train": {"epochs": 2}}`` as ``{"train.epochs": 2}``, so that the checks of a
    key read it either way: nested, it trained 2 epochs beside ``epochs=1``); a ``TypeError`` saying
    so for anything else (a string or a list made dict() fail obscurely)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict of settings, e.g. {example}, got {type(config).__name__}")
    return flat_table({str(k): (dict(v) if isinstance(v, Mapping) else v) for k, v in config.items()})


def flat_table(table: dict, prefix: str = "") -> dict[str, Any]:
    """A TOML table as dotted key -> value."""
    out: dict = {}
    for key, value in table.items():
        out.update(flat_table(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def flat_settings(cfg: Config) -> dict[str, Any]:
    """``cfg`` as dotted key -> value, as ``config.toml`` saves it (to compare two configurations)."""
    return flat_table(tomllib.loads(dumps_config(cfg)))
