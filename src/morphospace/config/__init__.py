"""Run configuration: a TOML file validated on load.

The configuration is a tree of pydantic models, one per TOML table (``[data]``,
``[preprocess]``, ``[ingest]``, ``[model]``, ``[form]``, ``[train]``, ``[cluster]``,
``[study]``, ``[report]``); :mod:`~morphospace.config.inputs`, :mod:`~morphospace.config.learning`
and :mod:`~morphospace.config.outputs` list every key with its default, type and allowed
values. Loading a file, constructing a section or assigning to a
key checks it: an unknown key, a value of the wrong type, out of its range, not among its
allowed values, not finite or holding a control character is a one-line
:class:`ConfigError` (a :class:`~morphospace.errors.UserError`) naming the key, the value
and what is allowed. Command-line options are applied on top with :func:`apply_overrides`
(``section.key=value`` strings), and the resolved configuration is written into the run
directory with :func:`dumps_config` / :func:`dump_config`, so any stage can be re-run from it.

Examples
--------
>>> cfg = load_config(None)                 # all defaults
>>> cfg = apply_overrides(cfg, ["preprocess.size=128"])
>>> cfg.preprocess.size
128
>>> cfg.train.epochs = 20                   # checked like a value in a file
"""

from .loading import (apply_overrides, config_from_dict, dump_config, dumps_config, flat_settings, flat_table,
                      load_config, overrides_on_saved, settings_mapping, to_dict, with_presets_resolved)
from .messages import ConfigError
from .sections import (
    ClusterConfig,
    Config,
    DataConfig,
    FormConfig,
    IngestConfig,
    ModelConfig,
    PreprocessConfig,
    ReportConfig,
    StudyConfig,
    TrainConfig,
    VoteThresholds,
)

__all__ = [
    "ClusterConfig", "Config", "ConfigError", "DataConfig", "FormConfig", "IngestConfig", "ModelConfig",
    "PreprocessConfig", "ReportConfig", "StudyConfig", "TrainConfig", "VoteThresholds",
    "apply_overrides", "config_from_dict", "dump_config", "dumps_config", "flat_settings", "flat_table", "load_config",
    "overrides_on_saved",
    "settings_mapping", "to_dict", "with_presets_resolved",
]
