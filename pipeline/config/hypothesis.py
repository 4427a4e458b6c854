"""Hypotheses as data: the YAML files of conf/hypothesis/ parsed into checked specs.

A hypothesis says, for each input R_q, R_k, R_v of the induction heads, where every piece of
the layer-1 input comes from (docs/hypotheses.md):

    q:                       # the residual the induction heads' queries read
      embedding: clean       # x^c
      heads:                 # layer-0 head outputs; the most specific key wins:
        all: other           #   a head name ("0.3") > a role (prev, self) > all
        prev:                #   a masked split of the previous-token head
          mask: prev         #   cur | prev | last3 | a list of offsets [0, 1, 2]
          inside: {pattern: clean, values: clean}
          outside: other     #   pattern and values from one sequence
        self: {rewrite: residual, identity: clean, rest: other}   # I^c + (out^o - I^o)

A *source* is `clean` (the sequence itself, the writeup's emb), `other` (its fixed partner,
emb2) or the name of a resampler declared under `resample:` (a sequence drawn per position
among those in the same class, e.g. bonus 5's typicality).

The pydantic models below are both the file's form and what the scrub engine reads. Their JSON
Schema is docs/hypothesis.schema.json (`python -m pipeline.config.hypothesis` writes it), for an
editor to check a hypothesis file while it is written.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import MinLen
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.config.base import Section, Seed, Text, config_error, invalid, join
from pipeline.config.heads import ROLE_LAYER, is_layer0_head
from pipeline.errors import ConfigError

FIXED_SOURCES = ("clean", "other")
MASKS = {"cur": (0,), "prev": (1,), "last3": (0, 1, 2)}
INPUTS = ("q", "k", "v")
# The roles a hypothesis may name: those of layer-0 heads (pipeline.analysis.roles has every role).
ROLES = tuple(role for role, layer in ROLE_LAYER.items() if layer == 0)
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "hypothesis.schema.json"

Source = Annotated[Text, Field(description="clean, other or the name of a resampler of `resample`")]


def mask_offsets(mask: Any) -> tuple[int, ...]:
    """A mask's relative offsets (0: the current position, 1: the previous one, ...)."""
    offsets = MASKS.get(mask) if isinstance(mask, str) else mask
    # bool is an int to Python: `[true]` must not pass as offset 1
    if (not isinstance(offsets, (list, tuple)) or not offsets
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
        raise PydanticCustomError("mask", "{mask}: use one of cur, last3, prev or a list of offsets ≥ 0 such as "
                                          "[0, 1]", {"mask": repr(mask)})
    return tuple(sorted(set(offsets)))


Mask = Annotated[tuple[int, ...], BeforeValidator(mask_offsets), WithJsonSchema({
    "description": "the key positions, as offsets back from the query: cur (0), prev (1), last3 (0, 1, 2) or a list",
    "anyOf": [{"enum": sorted(MASKS)}, {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}]})]


class Whole(RootModel[Source]):
    """The head's output from one source: out_j^S. Written as the source's name."""

    model_config = ConfigDict(frozen=True)

    @property
    def source(self) -> str:
        return self.root

    def named_sources(self) -> dict[str, str]:
        return {"": self.root}


class Inside(Section):
    pattern: Source
    values: Source


class Masked(Section):
    """Inside the relative-position mask: pattern from `pattern`, values from `values`; outside:
    pattern and values both from `outside`."""
    mask: Mask
    inside: Inside
    outside: Source

    @property
    def offsets(self) -> tuple[int, ...]:
        return self.mask

    @property
    def pattern(self) -> str:
        return self.inside.pattern

    @property
    def values(self) -> str:
        return self.inside.values

    def named_sources(self) -> dict[str, str]:
        return {".inside.pattern": self.pattern, ".inside.values": self.values, ".outside": self.outside}


class Residual(Section):
    """out_j = I_j^identity + (out_j^rest - I_j^rest), I_j the output under identity attention."""
    rewrite: Literal["residual"]
    identity: Source
    rest: Source

    def named_sources(self) -> dict[str, str]:
        return {".identity": self.identity, ".rest": self.rest}


def _head_kind(value: Any) -> str | None:
    if isinstance(value, (str, Whole)):
        return "whole"
    if isinstance(value, dict):
        return "residual" if "rewrite" in value else "masked" if "mask" in value else None
    return {Masked: "masked", Residual: "residual"}.get(type(value))


HeadSpec = Annotated[
    Annotated[Whole, Tag("whole")] | Annotated[Masked, Tag("masked")] | Annotated[Residual, Tag("residual")],
    Discriminator(_head_kind, custom_error_type="head_spec",
                  custom_error_message="a source name or a mapping: mask, inside, outside (a masked split) or "
                                       "rewrite, identity, rest (the residual rewrite)")]


class InputSpec(Section):
    embedding: Source
    # keys: "all", role names, head names "0.H" (checked against the model by check_heads)
    heads: dict[str, HeadSpec] = Field(json_schema_extra={"propertyNames": {"pattern": r"^(all|prev|self|0\.[0-9]+)$"},
                                                          "required": ["all"]})

    @model_validator(mode="after")
    def _has_all(self) -> InputSpec:
        if "all" not in self.heads:
            raise invalid("heads.all", "missing: the default for heads not named otherwise")
        return self

    def for_head(self, head: str, roles: dict) -> HeadSpec:
        if head in self.heads:
            return self.heads[head]
        if roles.get("prev") == head and "prev" in self.heads:
            return self.heads["prev"]
        if head in roles.get("self", []) and "self" in self.heads:
            return self.heads["self"]
        return self.heads["all"]


Rule = Literal["previous_token", "current_token", "previous_token_piece_of", "current_token_piece_of"]


class Resampler(Section):
    """Draw, for each position t, a sequence whose position t has the same class. `classes`
    maps class name → rules; a position takes the first class whose rules match, else the
    class `other`. Rules: previous_token / current_token (token strings), and
    previous_token_piece_of / current_token_piece_of (strings whose every token counts)."""
    classes: Annotated[dict[str, dict[Rule, list[Text]]], MinLen(1)]
    seed: Seed = 0


class Hypothesis(Section):
    name: Text | None = Field(None, description="the name the report shows; the key of `hypotheses` if not given")
    resamplers: dict[str, Resampler] = Field(default_factory=dict, alias="resample")
    q: InputSpec
    k: InputSpec
    v: InputSpec

    @model_validator(mode="after")
    def _known_sources(self) -> Hypothesis:
        for name in self.resamplers:
            if name in FIXED_SOURCES:
                raise invalid(f"resample.{name}", "clean and other are reserved source names")
        known = set(FIXED_SOURCES) | set(self.resamplers)
        for part, spec in self.inputs.items():
            named = {f"{part}.embedding": spec.embedding}
            for head, head_spec in spec.heads.items():
                named |= {f"{part}.heads.{head}{at}": source for at, source in head_spec.named_sources().items()}
            for at, source in named.items():
                if source not in known:
                    raise invalid(at, f"unknown source {source!r}; use one of {sorted(known)}")
        return self

    @property
    def inputs(self) -> dict[str, InputSpec]:
        return {"q": self.q, "k": self.k, "v": self.v}

    def sources(self) -> set[str]:
        return {source for spec in self.inputs.values()
                for source in [spec.embedding] + [s for h in spec.heads.values() for s in h.named_sources().values()]}

    def max_offset(self) -> int:
        return max([max(h.offsets) for s in self.inputs.values() for h in s.heads.values()
                    if isinstance(h, Masked)], default=0)


STAGE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def named(hypotheses: dict[str, Hypothesis]) -> dict[str, Hypothesis]:
    """`hypotheses` of params.yaml: each named by its key where it gives no name. A key names the
    stage scrub@<seed>-<key> in dvc.yaml, so it must be one DVC takes on a command line."""
    for key in hypotheses:
        if not STAGE_KEY.match(str(key)):
            raise ConfigError(f"hypotheses.{key}", f"{str(key)!r} cannot name the stage scrub@<seed>-{key}: use "
                                                   f"letters, digits, _ and - only (Hydra reads a dot in "
                                                   f"hypothesis@hypotheses.NAME as nesting)")
    return {key: h if h.name is not None else h.model_copy(update={"name": key}) for key, h in hypotheses.items()}


Hypotheses = Annotated[dict[str, Hypothesis], AfterValidator(named)]


def parse_hypothesis(key: str, raw: Any) -> Hypothesis:
    """conf/hypothesis/<key>.yaml (as composed into params.yaml under hypotheses.<key>) → spec.
    Errors name the offending parameter, e.g. `hypotheses.refined2.q.heads.all.mask`."""
    try:
        return named({key: Hypothesis.model_validate(raw)})[key]
    except ValidationError as err:
        raise config_error(err, Hypothesis, f"hypotheses.{key}") from None


def check_heads(hyp: Hypothesis, n_heads: int, at: str) -> None:
    """Head names in a hypothesis (whose parameter is `at`, e.g. hypotheses.refined2) must be
    layer-0 heads of the model."""
    for name, spec in hyp.inputs.items():
        for head in spec.heads:
            if head in ("all",) + ROLES:
                continue
            if not is_layer0_head(head, n_heads):
                raise ConfigError(join(at, f"{name}.heads.{head}"),
                                  f"unknown layer-0 head; use all, {', '.join(ROLES)} or 0.0 … 0.{n_heads - 1}")


def json_schema() -> str:
    """docs/hypothesis.schema.json: the JSON Schema of a hypothesis file."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **Hypothesis.model_json_schema(by_alias=True)}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m pipeline.config.hypothesis: write docs/hypothesis.schema.json
    SCHEMA_FILE.write_text(json_schema(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}", file=sys.stderr)
