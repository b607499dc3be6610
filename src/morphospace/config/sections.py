"""The whole configuration tree: :class:`Config`, one attribute per TOML table.

The keys of each table, with their defaults, types and allowed values, are in
:mod:`~morphospace.config.inputs` (``[data]``, ``[preprocess]``, ``[ingest]``),
:mod:`~morphospace.config.learning` (``[model]``, ``[form]``, ``[train]``) and
:mod:`~morphospace.config.outputs` (``[cluster]``, ``[study]``, ``[report]``).
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .base import Section, register_prefixes
from .inputs import DataConfig, IngestConfig, PreprocessConfig, VoteThresholds
from .learning import MODEL_PRESETS, FormConfig, ModelConfig, TrainConfig
from .outputs import ClusterConfig, ReportConfig, StudyConfig


class Config(Section):
    """The whole run configuration: one attribute per TOML table.

    ``Config()`` holds the defaults; keyword arguments take sections or plain dicts
    (``Config(train={"epochs": 20})``). Besides each key's own type and range, a VaDE needs
    ``train.epochs > train.pretrain_epochs``.

    Attributes
    ----------
    data : DataConfig
    preprocess : PreprocessConfig
    ingest : IngestConfig
    model : ModelConfig
    form : FormConfig
    train : TrainConfig
    cluster : ClusterConfig
    study : StudyConfig
    report : ReportConfig
    """

    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    form: FormConfig = Field(default_factory=FormConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @property
    def linear_core(self) -> bool:
        """Whether the model is the form model with its linear core, fitted in closed form: it has no
        ``train.epochs`` (``form.ssl_epochs`` and ``form.decoder_epochs`` are what train)."""
        return self.model.preset == "form" and self.form.core == "linear"

    @model_validator(mode="wrap")
    @classmethod
    def _model_preset(cls, data, handler):
        # under a model preset the [model] and [train] keys the configuration does not set take the
        # preset's values; set ones (even to a default value) are kept. Resolved here, so the saved
        # config.toml says what trains (as PreprocessConfig does for its preset); the values filled
        # in stay unset, so that another preset given later does not inherit them
        model = _set_keys(data.get("model")) if isinstance(data, dict) else None
        name = model.get("preset") if isinstance(model, dict) else None
        preset = MODEL_PRESETS.get(name) if isinstance(name, str) else None
        if preset is None:
            return handler(data)
        data, filled = dict(data), {}
        for section, values in preset.items():
            given = _set_keys(data.get(section))
            if isinstance(given, dict):  # else not a table: the section's own validation says so
                data[section] = {**values, **given}
                filled[section] = set(values) - set(given)
        left = filled.get("train", set())
        if "pretrain_epochs" in left and "epochs" not in left:
            # a shorter run given (--set train.epochs=16) pretrains the published share of it
            data["train"]["pretrain_epochs"] = pretraining_share(data["train"]["epochs"], preset["train"])
        cfg = handler(data)
        for section, keys in filled.items():
            getattr(cfg, section).__pydantic_fields_set__.difference_update(keys)
        return cfg

    @model_validator(mode="after")
    def _pretraining_before_training(self) -> Config:
        if self.model.kind == "vade" and not self.linear_core and self.train.pretrain_epochs >= self.train.epochs:
            raise PydanticCustomError("config", "train.epochs ({epochs}) must exceed train.pretrain_epochs ({pre})",
                                      {"epochs": self.train.epochs, "pre": self.train.pretrain_epochs})
        return self


def _set_keys(section):
    """A section as given to :class:`Config`: a dict, an instance (the keys it was given), or nothing."""
    if section is None:
        return {}
    if isinstance(section, Section):
        return section.model_dump(exclude_unset=True)
    return section


def pretraining_share(epochs, train_preset: dict):
    """Pretraining epochs of a run of ``epochs`` under a preset that pretrains
    ``pretrain_epochs`` of ``epochs`` (100 of 350): the same share, at least one epoch fewer."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return train_preset["pretrain_epochs"]  # the section's own validation refuses it
    share = round(epochs * train_preset["pretrain_epochs"] / train_preset["epochs"])
    return max(0, min(train_preset["pretrain_epochs"], share, epochs - 1))


register_prefixes(Config)

__all__ = [
    "ClusterConfig", "Config", "DataConfig", "FormConfig", "IngestConfig", "ModelConfig", "PreprocessConfig",
    "ReportConfig", "StudyConfig", "TrainConfig", "VoteThresholds",
]
