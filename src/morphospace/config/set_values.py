"""What a ``--set key=value`` value is read as (a TOML value, else the text itself), and how to write
one that was not read: a list typed without TOML's quotes or brackets said "must be a list; got str
'[kmeans]'", which looks like one."""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic.fields import FieldInfo

from ..errors import UserError
from .sections import Config

__all__ = ["list_advice", "parse_value", "is_toml", "said_as_arguments"]


def list_advice(key: str, text: str) -> str | None:
    """How to write ``text``, typed after ``--set key=`` as a list or table but not TOML, so that ``key``
    reads it; None where no advice would mend it (a key that takes no list)."""
    field = _field_of(key)
    if _takes_texts(field):
        return _toml_fix(key, text)
    if _takes_list(field) and text.lstrip().startswith("["):
        return _not_toml(key, text)
    return None


def _takes_texts(annotation: Any) -> bool:
    """Whether a key takes a list of strings (``list[str]``, ``list[Literal["kmeans", ...]]``, also
    inside ``Annotated``)."""
    def bare(a: Any) -> Any:
        return typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a

    annotation = bare(annotation)
    return typing.get_origin(annotation) is list and _holds_text(bare(typing.get_args(annotation)[0]))


def is_toml(text: str) -> bool:
    """Whether ``text`` is one TOML value."""
    try:
        return set(tomllib.loads(f"v = {text}")) == {"v"}
    except tomllib.TOMLDecodeError:
        return False


def _is_toml_string(text: str) -> bool:
    """Whether ``text`` is one TOML string (quoted)."""
    try:
        return isinstance(tomllib.loads(f"v = {text}").get("v"), str)
    except tomllib.TOMLDecodeError:
        return False


def _field_of(dotted: str) -> Any:
    """The annotation of a dotted configuration key (``cluster.kmeans_k``); None where it has none."""
    annotation: Any = Config
    try:
        for part in dotted.split("."):
            annotation = annotation.model_fields[part].annotation
    except (AttributeError, KeyError):
        return None
    return annotation


def _takes_list(annotation: Any) -> bool:
    """Whether a key takes a list (``list[int]``, also inside ``Annotated``)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) is list


def _not_toml(key: str, text: str) -> str:
    """Said of a list typed after ``--set key=`` that is not TOML, for a key that takes a list of numbers:
    it read as the text itself ("must be a list; got str '[3,x]'", which looks like one). The example is
    the key's default, which its checks take (form.aug_scale: two numbers about 1)."""
    default: Any = Config()
    for part in key.split("."):
        default = getattr(default, part)
    example = "[" + ", ".join(map(str, default)) + "]" if isinstance(default, (list, tuple)) else "[3, 4, 5]"
    return f"{text!r} is not read as a TOML list: write it as one, its numbers bare (e.g. --set '{key}={example}')"


def _toml_fix(key: str, text: str) -> str:
    """How to write ``text``, a list or table typed after ``--set key=`` that is not TOML, so that it
    is: its bare words in quotes (``[kmeans, gmm]``: ``["kmeans", "gmm"]``), where that is enough."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        items = [item.strip() for item in inner[1:-1].split(",") if item.strip()]
        # every item a string (the keys this is said for take lists of strings): 2 as "2" too
        fixed = "[" + ", ".join(item if _is_toml_string(item) else '"' + item.strip("'\"") + '"' for item in items) + "]"
        if is_toml(fixed) and "'" not in fixed:
            return f"write it as --set '{key}={fixed}' (TOML: strings in quotes)"
    return f"not read as TOML: write strings in quotes, e.g. --set '{key}=[\"a\", \"b\"]'"


def parse_value(text: Any, field: FieldInfo) -> Any:
    """The right-hand side of ``key=value``: a TOML value, else the text itself."""
    if not isinstance(text, str):
        return text
    try:
        document = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    if set(document) != {"v"}:  # "3\nstudy.epochs = 4": more than a value, whose rest was dropped; the
        return text             # text then fails the key's check, in one line
    value = document["v"]
    return text if not isinstance(value, str) and _holds_text(field.annotation) else value


def _holds_text(annotation: Any) -> bool:
    """Whether a key takes a string (``str`` or a ``Literal`` of strings)."""
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return annotation is str


# a plain value (a number, true/false, a word): a list or quoted text is left as the command line says it
_SET_ADVICE = re.compile(r"--set ([A-Za-z_]\w*(?:\.\w+)+)=([\w.+-]+?)(?=$|[\s,;)]|\.(?:\s|$))")


def _as_argument(match: re.Match, named: Mapping[str, str], estimator: str) -> str:
    key, text = match.group(1), match.group(2)
    try:
        value = repr(int(text))
    except ValueError:
        try:
            value = repr(float(text))
        except ValueError:
            value = {"true": "True", "false": "False"}.get(text.lower(), repr(text))
    param = named.get(key)
    return f"{estimator}({param}={value})" if param else f"{estimator}(config={{{key!r}: {value}}})"


def as_arguments(text: str, named: Mapping[str, str], estimator: str) -> str:
    """``text`` with each ``--set key=value`` advice (a command's option, which means nothing in a
    notebook) said as the estimator's arguments: ``VaDE(latent_dim=4)`` for a key one of its
    parameters holds (``named``: key -> parameter), else ``VaDE(config={'form.dim': 64})``; and a key one
    of its parameters holds named as that parameter ("config: train.seed must be in [0, ...]" said
    "VaDE: random_state must be ...", where the user never wrote train.seed)."""
    text = _SET_ADVICE.sub(lambda m: _as_argument(m, named, estimator), text)
    if not named:
        return text
    keys = re.compile(r"(?<![\w.'])(" + "|".join(map(re.escape, sorted(named, key=len, reverse=True))) + r")(?![\w'])")
    if text.startswith("config: ") and keys.match(text, len("config: ")):
        text = f"{estimator}: " + text[len("config: "):]
    return keys.sub(lambda m: named[m.group(1)], text)


@contextmanager
def said_as_arguments(named: Mapping[str, str], estimator: str) -> Iterator[None]:
    """Around a notebook estimator's work: a :class:`UserError`'s advice said by :func:`as_arguments`."""
    try:
        yield
    except UserError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (as_arguments(exc.args[0], named, estimator), *exc.args[1:])
        raise
