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
from .learning import FormConfig, ModelConfig, TrainConfig
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

    @model_validator(mode="after")
    def _pretraining_before_training(self) -> Config:
        if self.model.kind == "vade" and not self.linear_core and self.train.pretrain_epochs >= self.train.epochs:
            raise PydanticCustomError("config", "train.epochs ({epochs}) must exceed train.pretrain_epochs ({pre})",
                                      {"epochs": self.train.epochs, "pre": self.train.pretrain_epochs})
        return self


register_prefixes(Config)

__all__ = [
    "ClusterConfig", "Config", "DataConfig", "FormConfig", "IngestConfig", "ModelConfig", "PreprocessConfig",
    "ReportConfig", "StudyConfig", "TrainConfig", "VoteThresholds",
]
