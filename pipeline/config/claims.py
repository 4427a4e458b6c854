"""The writeup's claims as data: the `claims` section of params.yaml, composed from
conf/claims/<option>.yaml (default.yaml unless `-S claims=OTHER`).

Each claim is one conclusion of the writeup, its words quoted exactly, written as comparisons
between numbers the pipeline already produces:

    current_token_q:
      says: the current token matters for Q
      quote: ["We would like to express the hypothesis that ..."]
      reading: why the threshold is what it is, from the writeup's words
      requires: [self_heads]              # optional: what the model must have for the claim to apply
      compare:
        - {value: refined1.q, minus: naive.q, above: 5}    # refined1.q − naive.q > 5
        - {value: sweep.k{1}, above: 79}                   # the sweep's K with the mask {1}

A *quantity* is `<hypothesis>.<part>` (% loss recovered of a scrub stage: a key of `hypotheses`,
a part of `scrub.parts`) or `sweep.<part>{offsets}` (a row of the sweep stage: part q or k, the
cumulative mask {0,…,m} or a single offset {m}, m ≤ `sweep.max_offset`). A comparison takes
`value` (minus `minus`, when given) and says it is `above` or `below` a threshold (strictly).
How a verdict follows from the intervals is pipeline/scrub/claims.py's (docs/claims.md).
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, NamedTuple

from annotated_types import MinLen
from pydantic import AfterValidator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.config.base import Section, Text, invalid, number
from pipeline.errors import ConfigError

# What a claim may require of a model, each read from the heads stage's roles.json.
CONDITIONS = {"self_heads": "at least one self-attending layer-0 head (roles.json: self)",
              "prev_head": "a previous-token head (roles.json: prev)"}
SCRUB_PARTS = ("q", "k", "v", "all")
SWEEP_PARTS = ("q", "k")  # pipeline.scrub.sweep.PARTS (not imported: that module loads torch)
KEY = re.compile(r"^[A-Za-z0-9_]+$")  # names an anchor of the review page and a row of claims.md
_SCRUB = re.compile(r"^(?P<hypothesis>[A-Za-z0-9_-]+)\.(?P<part>[a-z]+)$")
_SWEEP = re.compile(r"^sweep\.(?P<part>[a-z]+)\{(?P<offsets>[0-9]+(?:,[0-9]+)*)\}$")


class Quantity(NamedTuple):
    """A number a claim compares: a scrub's % recovered (`kind` scrub: `hypothesis`, `part`) or a
    row of the sweep (`kind` sweep: `part`, `offsets`)."""
    text: str
    kind: Literal["scrub", "sweep"]
    part: str
    hypothesis: str | None = None
    offsets: tuple[int, ...] = ()


def parse_quantity(text: str) -> Quantity:
    """`naive.q` or `sweep.k{0,1}` → Quantity; anything else a PydanticCustomError saying the forms."""
    sweep = _SWEEP.match(text)
    if sweep:
        offsets = tuple(int(o) for o in sweep["offsets"].split(","))
        if sweep["part"] not in SWEEP_PARTS:
            raise _bad(text, f"the sweep scrubs {' and '.join(SWEEP_PARTS)} only")
        if list(offsets) != sorted(set(offsets)):
            raise _bad(text, "write the offsets in increasing order, each once")
        if len(offsets) > 1 and offsets != tuple(range(len(offsets))):
            raise _bad(text, "the sweep's masks are {0,…,m} and single offsets {m}")
        return Quantity(text, "sweep", sweep["part"], offsets=offsets)
    scrub = _SCRUB.match(text)
    if scrub and scrub["hypothesis"] != "sweep":
        if scrub["part"] not in SCRUB_PARTS:
            raise _bad(text, f"the part is one of {', '.join(SCRUB_PARTS)}")
        return Quantity(text, "scrub", scrub["part"], hypothesis=scrub["hypothesis"])
    raise _bad(text, "use HYPOTHESIS.PART (naive.q) or sweep.PART{OFFSETS} (sweep.k{0,1})")


def _bad(text: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("quantity", "{text}: {why}", {"text": repr(text), "why": why})


def _checked_quantity(text: str) -> str:
    parse_quantity(text)
    return text


QuantityText = Annotated[Text, AfterValidator(_checked_quantity)]


class Comparison(Section):
    """`value` − `minus` (or `value` alone) is strictly `above` or strictly `below` a threshold."""
    value: QuantityText
    minus: QuantityText | None = None
    above: number() | None = None
    below: number() | None = None

    @model_validator(mode="after")
    def _one_threshold(self) -> Comparison:
        if (self.above is None) == (self.below is None):
            raise invalid("above", "give exactly one of above, below")
        return self

    @property
    def quantities(self) -> list[Quantity]:
        return [parse_quantity(q) for q in (self.value, self.minus) if q is not None]

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below

    @property
    def text(self) -> str:
        """As the report writes it: `refined1.q − naive.q > 5`."""
        left = self.value if self.minus is None else f"{self.value} − {self.minus}"
        return f"{left} {'>' if self.above is not None else '<'} {self.threshold:g}"


class Claim(Section):
    says: Text                                         # the conclusion, in a line
    quote: Annotated[list[Text], MinLen(1)]            # the writeup's own words, exactly
    reading: Text                                      # where the thresholds come from
    requires: tuple[Literal[tuple(CONDITIONS)], ...] = ()  # what a model must have for the claim to apply
    compare: Annotated[list[Comparison], MinLen(1)]


def _keys(claims: dict[str, Claim]) -> dict[str, Claim]:
    for key in claims:
        if not KEY.match(str(key)):
            raise ConfigError(f"claims.{key}", f"{str(key)!r}: a claim's key uses letters, digits and _ only "
                                               f"(it names an anchor of the review page)")
    return claims


Claims = Annotated[dict[str, Claim], AfterValidator(_keys)]


def check_claims(claims: dict[str, Claim], hypotheses: list[str], parts: list[str], sweep_max_offset: int) -> None:
    """What a quantity names must be measured: a hypothesis of `hypotheses` and a part of
    `scrub.parts`; a sweep mask within `sweep.max_offset`."""
    for key, claim in claims.items():
        for i, comparison in enumerate(claim.compare):
            for field, quantity in zip(("value", "minus"), comparison.quantities):
                at = f"claims.{key}.compare[{i}].{field}"
                if quantity.kind == "scrub":
                    if quantity.hypothesis not in hypotheses:
                        raise ConfigError(at, f"{quantity.text!r}: no hypothesis {quantity.hypothesis!r} in "
                                              f"hypotheses ({', '.join(hypotheses)})")
                    if quantity.part not in parts:
                        raise ConfigError(at, f"{quantity.text!r}: part {quantity.part} is not scrubbed "
                                              f"(scrub.parts: {', '.join(parts)})")
                elif max(quantity.offsets) > sweep_max_offset:
                    raise ConfigError(at, f"{quantity.text!r}: the sweep reaches offset sweep.max_offset="
                                          f"{sweep_max_offset}")
