"""The base of the configuration sections, and the value types their keys share.

Each section is a pydantic model that is closed (an unknown key is an error), strict (no
silent conversion: ``"10"`` is not an int, ``true`` is not a number; an int is accepted
where a float is expected) and validated on construction and on every assignment. Allowed
values are in the types: ``Literal`` for choices, ``Field(ge=..., le=...)`` for ranges
(inclusive), finite floats only, strings without control characters. A bad value raises
:class:`~morphospace.config.messages.ConfigError`, one line naming the key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from .messages import ConfigError, describe, unknown_key

# dotted path of each section class in the configuration (TrainConfig -> "train."), for messages;
# filled by register_prefixes once the whole tree is defined (morphospace.config.sections)
_PREFIX: dict[type, str] = {}


def _no_control_characters(text: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise PydanticCustomError("control_characters", "must not contain control characters (newline, tab, escape)")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):  # bytes of a name that are not UTF-8, as Python keeps them
        raise PydanticCustomError("not_utf8", "must be UTF-8 text (a name of bytes that are not UTF-8: rename it, or "
                                  "link to it under a UTF-8 name); the run's config.toml could not hold it")
    return text


def _absolute(text: str) -> str:
    """A file named relative to the folder the command runs in, as an absolute path: saved relative
    in a run's config.toml, a later command run from another folder read another file, or none."""
    import os

    return os.path.abspath(os.path.expanduser(text)) if text.strip() else text


# value types shared by several keys
Text = Annotated[str, AfterValidator(_no_control_characters)]
# a file a setting names (not the survey, data.path, saved as typed and read as the survey the run read)
FilePath = Annotated[str, AfterValidator(_no_control_characters), AfterValidator(_absolute)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Scale = Annotated[float, Field(ge=1e-6, le=1e6)]  # a positive noise level or weight
Epochs = Annotated[int, Field(ge=1, le=100_000)]
LearningRate = Annotated[float, Field(ge=1e-12, le=10.0)]
BatchSize = Annotated[int, Field(ge=1, le=1_000_000)]
K = Annotated[int, Field(ge=1, le=1000)]
# what numpy, scikit-learn and Lightning take as a seed, with room for the seeds derived from it
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
# the backbone registry's names (morphospace.nets.backbones.BACKBONES, a layer above: a test keeps
# the two the same), checked when the configuration loads, so a name no network has never reaches
# RUN/config.toml; a study also takes the run's own encoders
BACKBONE_NAMES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "resnet18", "resnet34", "small")
Backbone = Literal[BACKBONE_NAMES]
StudyBackbone = Literal[(*BACKBONE_NAMES, "vade", "ssl")]


class Section(BaseModel):
    """Base of the configuration sections: closed, strict, finite, validated on construction and assignment.

    A validation error is re-raised as a one-line :class:`ConfigError` naming the key as it
    is written in the TOML file (``train.epochs``). pydantic validates a section given as a
    dict inside another one through this ``__init__`` as well, so the error of an inner
    section leaves as that section's one line (``ConfigError`` is not a ``ValueError``, which
    pydantic would wrap).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe(exc, type(self), _PREFIX.get(type(self), ""))) from None

    def __setattr__(self, name: str, value: Any) -> None:
        prefix = _PREFIX.get(type(self), "")
        if name not in type(self).model_fields and not name.startswith("_"):
            raise ConfigError(unknown_key(prefix + name, type(self)))
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(describe(exc, type(self), prefix)) from None


def register_prefixes(model: type[BaseModel], prefix: str = "") -> None:
    """Record the dotted path of ``model`` and of every section under it, for error messages."""
    _PREFIX[model] = prefix
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
            register_prefixes(info.annotation, f"{prefix}{name}.")
