"""One-line messages for configuration errors.

pydantic reports every problem of a validation as a structured record (where, what kind,
the input). :func:`describe` turns the first into the line the user reads, naming the key,
the value given and what is allowed, e.g.::

    config: model.preset must be one of 'form', 'default', 'astrovader'; got 'fomr'

and :class:`ConfigError` carries it: a :class:`~morphospace.errors.UserError`, so the command
line prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import UserError

# pydantic error type -> what the value must be (the value had the wrong type)
_TYPES = {
    "int_type": "int", "float_type": "float", "bool_type": "true or false", "string_type": "str",
    "list_type": "a list", "model_type": "a table", "dict_type": "a table", "literal_error": "",
}


class ConfigError(UserError):
    """A configuration key or value that is not allowed.

    Its message is one line naming the key, the value given and what is allowed. As a
    :class:`~morphospace.errors.UserError`, the command line prints that line and exits with
    status 2. (Deliberately not a ``ValueError``: pydantic would catch that while validating
    an enclosing section and wrap the line into a longer message.)
    """


def describe(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The one-line message for a validation error of ``model``.

    Parameters
    ----------
    exc : pydantic.ValidationError
        The error, as raised by validating ``model`` (constructing it, assigning to one of its
        fields or ``model_validate``).
    model : type of pydantic.BaseModel
        The model that was validated: the keys of the error are looked up in it.
    prefix : str, optional
        Dotted path of ``model`` in the whole configuration (``"train."``), so that the
        message names the key as it is written in a TOML file or after ``--set``.

    Returns
    -------
    str
        ``"config: <key> must ...; got <value>"``; when there were several problems, the
        first, followed by how many more there were.
    """
    errors = [{**e, "loc": _field_loc(e["loc"])} for e in exc.errors(include_url=False)]
    # a value that fits no member of a union (``float | "auto"``) fails once per member: one problem
    alternatives = [e for e in errors if e["loc"] == errors[0]["loc"]]
    if len(alternatives) > 1:
        whats = [_requirement(e, model) for e in alternatives]
        text = (f"config: {_dotted(prefix, errors[0]['loc'])} {whats[0]}, or "
                + " or ".join(w.removeprefix("must be ") for w in whats[1:])
                + f"; got {_show(errors[0].get('input'))}")
    else:
        text = _describe_one(errors[0], model, prefix)
    more = len({e["loc"] for e in errors}) - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text


def not_a_table(key: str, setting: str) -> str:
    """The message for a key that reaches below a setting (``train.epochs.x``)."""
    return f"config: unknown key '{_printable(key)}' ('{_printable(setting)}' is a setting, not a table of settings)"


def unknown_key(key: str, model: type[BaseModel]) -> str:
    """The message for a key that ``model`` (the table holding it) does not have."""
    known = sorted(model.model_fields)
    key = str(key)  # a notebook's dict may have a number for a key
    head, _, last = key.rpartition(".")
    close = difflib.get_close_matches(last, known, n=1)
    hint = f"did you mean '{_printable(f'{head}.' if head else '')}{close[0]}'? " if close else ""
    # a setting written outside its section (``epochs = 3`` at the top of a file): name the sections
    # that hold it, not the section whose name looks most like it
    homes = [f"{head}.{name}.{last}" if head else f"{name}.{last}" for name, field in model.model_fields.items()
             if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
             and last in field.annotation.model_fields]
    if homes:
        hint = f"did you mean {' or '.join(repr(_printable(h)) for h in homes)}? settings go in their section; "
    return f"config: unknown key '{_printable(key)}' ({hint}known here: {', '.join(known)})"


def _describe_one(error: dict[str, Any], model: type[BaseModel], prefix: str) -> str:
    loc, kind = tuple(error["loc"]), error["type"]
    key = _dotted(prefix, loc)
    if kind == "extra_forbidden":
        return unknown_key(key, _model_at(model, loc[:-1]))
    if kind == "config":  # a rule across keys: the validator wrote the whole sentence
        return f"config: {error['msg']}"
    return f"config: {key or 'the configuration'} {_requirement(error, model)}; got {_got(error)}"


def _requirement(error: dict[str, Any], model: type[BaseModel]) -> str:
    """What the value of a failed key must be (``"must be in [0, 1]"``)."""
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    if kind == "literal_error":
        allowed = ctx.get("expected", "")
        head, _, last = allowed.rpartition(" or ")
        return f"must be one of {head}, {last}" if head else f"must be {allowed}"
    if kind in _TYPES:
        return f"must be {_TYPES[kind]}"
    if kind in ("greater_than_equal", "less_than_equal") and _range(model, loc):
        return _range(model, loc)
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length', 1)} item(s)"
    # custom rules are phrased "must ..."; pydantic's own ones "Input should be ..."
    return str(error["msg"]).replace("Input should be", "must be", 1)


def _got(error: dict[str, Any]) -> str:
    """The value given, with its type named when the type was the problem."""
    value, kind = error.get("input"), error["type"]
    return f"{type(value).__name__} {_show(value)}" if kind in _TYPES and kind != "literal_error" else _show(value)


def _field_loc(loc: Sequence[Any]) -> tuple:
    """``loc`` without pydantic's union-member tags (``constrained-float``, ``literal['auto']``):
    keys and list indices only."""
    return tuple(p for p in loc if isinstance(p, int) or str(p).isidentifier())


def _dotted(prefix: str, loc: Sequence[Any]) -> str:
    text = prefix.rstrip(".")
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return _printable(text)


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel]:
    """The (sub-)model holding the key at ``path`` under ``model``."""
    for part in path:
        if isinstance(part, str) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
    return model


def _constraints(model: type[BaseModel], loc: Sequence[Any]) -> list[Any]:
    """The constraint objects (``annotated_types.Ge`` ...) of the value at ``loc``."""
    annotation: Any = model
    metadata: list[Any] = []
    for part in loc:
        if isinstance(part, int):  # an item of a list: list[Annotated[int, Field(...)]]
            args = typing.get_args(annotation)
            annotation = args[0] if args else Any
            inner = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Annotated else ()
            metadata = [m for extra in inner[1:] for m in getattr(extra, "metadata", [extra])]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            info = annotation.model_fields[part]
            annotation, metadata = info.annotation, list(info.metadata)
            if not metadata and typing.get_origin(annotation) in (typing.Union, types.UnionType):
                # ``Annotated[float, Field(ge=..)] | Literal["auto"]``: the bounds live in the member
                metadata = [m for member in typing.get_args(annotation)
                            if typing.get_origin(member) is typing.Annotated
                            for extra in typing.get_args(member)[1:] for m in getattr(extra, "metadata", [extra])]
        else:
            return []
    return metadata


def _range(model: type[BaseModel], loc: Sequence[Any]) -> str:
    """``"must be in [lo, hi]"`` for the value at ``loc`` (``""`` if it has no bounds)."""
    bounds = _constraints(model, loc)
    lo = next((m.ge for m in bounds if getattr(m, "ge", None) is not None), None)
    hi = next((m.le for m in bounds if getattr(m, "le", None) is not None), None)
    if lo is not None and hi is not None:
        return f"must be in [{lo}, {hi}]"
    if lo is not None or hi is not None:
        return f"must be >= {lo}" if lo is not None else f"must be <= {hi}"
    return ""


def _printable(text: str) -> str:
    """``text`` with control characters escaped (a key may be any quoted TOML string)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
