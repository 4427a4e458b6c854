"""What the pydantic models of params.yaml (pipeline.config.schema) and of the hypotheses
(pipeline.config.hypothesis) share: their base class, the value types, and pydantic's
ValidationError as one line naming the parameter (`scrub.batch_size: must be an integer ≥ 1, got 0`).

Values are checked as YAML gives them (strict): `"3"` or `true` is no count, `2.5` no integer;
an integer is a number, and stays the integer it was (params.yaml's `51` is not made `51.0`).
"""
from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, Discriminator, RootModel, Strict, Tag, ValidationError, WrapValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from pipeline.errors import ConfigError


class Section(BaseModel):
    """A mapping of params.yaml (or of a hypothesis) with exactly these keys: a misspelt key would
    otherwise be ignored and its default silently used. Frozen: hypotheses' head specs are
    dictionary keys of the scrub engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_given(value: Any, handler: Any) -> Any:
    checked = handler(value)
    return value if type(value) is int else checked


def integer(*bounds: Any) -> Any:
    """An int (not a bool: `true` for a count is a mistake), within annotated_types bounds."""
    return Annotated[(int, Strict(), *bounds)]


def number(*bounds: Any) -> Any:
    """An int or a float (not a bool), within annotated_types bounds, kept as given."""
    return Annotated[(float, Strict(), *bounds, WrapValidator(_as_given))]


Count = integer(Ge(1))
Seed = integer(Ge(0))
Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]


def invalid(at: str, message: str) -> PydanticCustomError:
    """The error a model validator raises: `at`, a dotted path below the model's own location
    (the whole path for Params), and the message."""
    return PydanticCustomError("invalid", "{message}", {"at": at, "message": message})


def from_config_error(err: ConfigError) -> PydanticCustomError:
    """A ConfigError raised by a check that stages call too, inside a validator of Params."""
    return invalid(err.param, err.message)


def config_error(err: ValidationError, root: Any, prefix: str = "") -> ConfigError:
    """pydantic's ValidationError of a value of type `root` (found at the dotted path `prefix`) as
    one ConfigError naming its first error's parameter; a wrong value before a missing one."""
    errors = err.errors(include_url=False)
    first = next((e for e in errors if e["type"] != "missing"), errors[0])
    kind, loc, value, ctx = first["type"], tuple(first["loc"]), first.get("input"), first.get("ctx") or {}
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a tuple's item: the tuple is short
        path, tp, _ = locate(root, loc[:-1], prefix)
        return ConfigError(path, f"must have {length(tp)} items, got {len(value)}")
    path, tp, parent = locate(root, loc, prefix)
    if kind == "invalid":
        return ConfigError(join(path, ctx["at"]), ctx["message"])
    if kind == "missing":
        return ConfigError(path, "missing")
    if kind == "extra_forbidden":
        return ConfigError(path, f"unknown key; {parent or 'params'} has {', '.join(keys(_parts(tp)[0]))}")
    if kind in ("union_tag_invalid", "union_tag_not_found") and isinstance(value, dict):
        at = join(path, ctx["discriminator"].strip("'"))
        if kind == "union_tag_not_found":
            return ConfigError(at, "missing")
        tags = ctx["expected_tags"].replace("'", "")
        return ConfigError(at, f"must be one of {tags}, got {ctx['tag']!r}")
    if kind in ("too_short", "too_long"):
        fixed = length(tp)
        want = fixed if fixed is not None else f"at least {ctx.get('min_length')}" if kind == "too_short" else (
            f"at most {ctx.get('max_length')}")
        return ConfigError(path, f"must have {want} items, got {ctx['actual_length']}")
    if loc and loc[-1] == "[key]":
        if kind == "literal_error":
            return ConfigError(path, f"unknown key; {parent} has {', '.join(map(str, get_args(tp)))}")
        return ConfigError(path, f"keys are strings (quote it in YAML), got {value!r}")
    if kind.startswith(("union_tag", "model_", "dict_", "list_", "tuple_", "int_", "float_", "bool_", "string_",
                        "literal_", "greater_", "less_")):
        return ConfigError(path, f"must be {describe(tp)}, got {value!r}")
    return ConfigError(path, first["msg"])  # our own messages (a mask, a head spec)


def join(at: str, key: Any) -> str:
    return f"{at}.{key}" if at and key != "" else f"{at}{key}"


def keys(model: Any) -> list[str]:
    """A model's keys as params.yaml spells them."""
    return [field.alias or name for name, field in model.model_fields.items()]


def locate(root: Any, loc: tuple, prefix: str = "") -> tuple[str, Any, str]:
    """A pydantic error location as (the dotted parameter path, the type there, the path of the
    mapping that holds it). The location names the tag of a union's option (`model.trained.n_ctx`),
    which params.yaml does not: the walk along the types drops it (`model.n_ctx`)."""
    path, parent, tp, rest = prefix, prefix, root, list(loc)
    while rest:
        core, _, discriminator = _parts(tp)
        if get_origin(core) in UNIONS:
            options = [a for a in get_args(core) if a is not type(None)]
            if len(options) == 1:  # X or null: no step of its own
                tp = options[0]
                continue
            tp = _option(options, discriminator, rest.pop(0))
            continue
        if isinstance(core, type) and issubclass(core, RootModel):
            tp = _field_type(core.model_fields["root"])
            continue
        key = rest.pop(0)
        parent, path = path, join(path, key)
        if isinstance(core, type) and issubclass(core, BaseModel):
            field = next((f for name, f in core.model_fields.items() if (f.alias or name) == key), None)
            if field is None:  # an unknown key: the model is the type to name its keys
                break
            tp = _field_type(field)
        elif get_origin(core) is dict:
            if rest and rest[0] == "[key]":
                tp = get_args(core)[0]
                break
            tp = get_args(core)[1]
        elif get_origin(core) in (list, tuple):
            path = f"{parent}[{key}]"
            items = get_args(core)
            tp = items[key] if get_origin(core) is tuple and len(items) > key and items[-1] is not ... else items[0]
        else:
            break
    return path, tp, parent


def describe(tp: Any) -> str:
    """A type as the error messages say it: `an integer ≥ 1`, `one of float16, float32`."""
    core, meta, _ = _parts(tp)
    origin, args = get_origin(core), get_args(core)
    if origin in UNIONS:
        options = [a for a in args if a is not type(None)]
        if len(options) == len(args):
            return "a mapping"
        what = describe(options[0]) if len(options) == 1 else "a mapping"
        return what + (" (or null)" if what.startswith("a list") else " or null")
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if isinstance(core, type) and issubclass(core, RootModel):
        return describe(_field_type(core.model_fields["root"]))
    if origin in (list, tuple):
        fixed = length(tp)
        return f"a list of {f'{fixed} ' if fixed is not None else ''}items, each {describe(args[0])}"
    what = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(core, "a mapping")
    limits = [f"{symbol} {getattr(m, name)}" for m in meta for kind, (symbol, name) in BOUNDS.items()
              if isinstance(m, kind)]
    return what + (" " + " and ".join(limits) if limits else "")


UNIONS = (Union, UnionType)
BOUNDS = {Gt: (">", "gt"), Ge: ("≥", "ge"), Lt: ("<", "lt"), Le: ("≤", "le")}


def length(tp: Any) -> int | None:
    """The one length a list type allows (a tuple's, or a list's MinLen = MaxLen), else None."""
    core, meta, _ = _parts(tp)
    if get_origin(core) is tuple and ... not in get_args(core):
        return len(get_args(core))
    low = [m.min_length for m in meta if isinstance(m, MinLen)]
    high = [m.max_length for m in meta if isinstance(m, MaxLen)]
    return low[0] if low and low == high else None


def _field_type(field: FieldInfo) -> Any:
    return Annotated[field.annotation, field]


def _parts(tp: Any) -> tuple[Any, list, Any]:
    """A type without its Annotated layers: (the type, their metadata, a union's discriminator)."""
    meta: list = []
    discriminator = None
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        for m in extra:
            if isinstance(m, FieldInfo):
                meta += m.metadata
                discriminator = m.discriminator or discriminator
            elif isinstance(m, Discriminator):
                discriminator = m
            else:
                meta.append(m)
    return tp, meta, discriminator


def _option(options: list, discriminator: Any, tag: Any) -> Any:
    """The option of a discriminated union that `tag` names."""
    for option in options:
        core, meta, _ = _parts(option)
        if isinstance(discriminator, str):
            field = core.model_fields.get(discriminator)
            if field is not None and tag in get_args(field.annotation):
                return option
        elif any(isinstance(m, Tag) and m.tag == tag for m in meta):
            return option
    return Any
