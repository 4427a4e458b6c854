"""Hypotheses as data: the YAML files of conf/hypothesis/ parsed into checked specs.

A hypothesis says, for each input R_q, R_k, R_v of the induction heads, where every piece of
the layer-1 input comes from (HYPOTHESES.md):

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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.stage import ConfigError

FIXED_SOURCES = ("clean", "other")
MASKS = {"cur": (0,), "prev": (1,), "last3": (0, 1, 2)}
INPUTS = ("q", "k", "v")
ROLES = ("prev", "self")


@dataclass(frozen=True)
class Whole:
    """The head's output from one source: out_j^S."""
    source: str


@dataclass(frozen=True)
class Masked:
    """Inside the relative-position mask: pattern from `pattern`, values from `values`; outside:
    pattern and values both from `outside`."""
    offsets: tuple[int, ...]
    pattern: str
    values: str
    outside: str


@dataclass(frozen=True)
class Residual:
    """out_j = I_j^identity + (out_j^rest - I_j^rest), I_j the output under identity attention."""
    identity: str
    rest: str


HeadSpec = Whole | Masked | Residual


@dataclass(frozen=True)
class InputSpec:
    embedding: str
    heads: dict[str, HeadSpec]   # keys: "all", role names, head names "0.H"

    def for_head(self, head: str, roles: dict) -> HeadSpec:
        if head in self.heads:
            return self.heads[head]
        if roles.get("prev") == head and "prev" in self.heads:
            return self.heads["prev"]
        if head in roles.get("self", []) and "self" in self.heads:
            return self.heads["self"]
        return self.heads["all"]


@dataclass(frozen=True)
class Resampler:
    """Draw, for each position t, a sequence whose position t has the same class. `classes`
    maps class name → rules; a position takes the first class whose rules match, else the
    class `other`. Rules: previous_token / current_token (token strings), and
    previous_token_piece_of / current_token_piece_of (strings whose every token counts)."""
    classes: dict[str, dict[str, list[str]]]
    seed: int = 0


RULES = ("previous_token", "current_token", "previous_token_piece_of", "current_token_piece_of")


@dataclass(frozen=True)
class Hypothesis:
    name: str
    inputs: dict[str, InputSpec]
    resamplers: dict[str, Resampler] = field(default_factory=dict)

    def sources(self) -> set[str]:
        used = set()
        for spec in self.inputs.values():
            used.add(spec.embedding)
            for head in spec.heads.values():
                if isinstance(head, Whole):
                    used.add(head.source)
                elif isinstance(head, Masked):
                    used |= {head.pattern, head.values, head.outside}
                else:
                    used |= {head.identity, head.rest}
        return used

    def max_offset(self) -> int:
        return max([max(h.offsets) for s in self.inputs.values() for h in s.heads.values()
                    if isinstance(h, Masked)], default=0)


def parse_hypothesis(key: str, raw: dict) -> Hypothesis:
    """conf/hypothesis/<key>.yaml (as composed into params.yaml under hypotheses.<key>) → spec.
    Errors name the offending parameter, e.g. `hypotheses.refined2.q.heads.all.mask`."""
    where = f"hypotheses.{key}"
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a mapping with q, k and v")
    resamplers = {}
    for name, r in (raw.get("resample") or {}).items():
        if name in FIXED_SOURCES:
            raise ConfigError(f"{where}.resample.{name}", "clean and other are reserved source names")
        classes = r.get("classes") if isinstance(r, dict) else None
        if not classes:
            raise ConfigError(f"{where}.resample.{name}.classes", "give at least one class of rules")
        for cname, rules in classes.items():
            bad = set(rules) - set(RULES)
            if bad:
                raise ConfigError(f"{where}.resample.{name}.classes.{cname}", f"unknown rules {sorted(bad)}; use {RULES}")
        resamplers[name] = Resampler(classes={c: {k: list(v) for k, v in rules.items()} for c, rules in classes.items()},
                                     seed=int(r.get("seed", 0)))
    known = set(FIXED_SOURCES) | set(resamplers)

    def source(value, at: str) -> str:
        if value not in known:
            raise ConfigError(at, f"unknown source {value!r}; use one of {sorted(known)}")
        return value

    def head_spec(value, at: str) -> HeadSpec:
        if isinstance(value, str):
            return Whole(source(value, at))
        if not isinstance(value, dict):
            raise ConfigError(at, "a source name or a mapping (mask/inside/outside, or rewrite)")
        if "rewrite" in value:
            if value["rewrite"] != "residual":
                raise ConfigError(f"{at}.rewrite", f"only `residual` is known, got {value['rewrite']!r}")
            return Residual(source(value.get("identity"), f"{at}.identity"), source(value.get("rest"), f"{at}.rest"))
        if "mask" in value:
            mask = value["mask"]
            offsets = MASKS.get(mask) if isinstance(mask, str) else mask
            if not offsets or not all(isinstance(o, int) and o >= 0 for o in offsets):
                raise ConfigError(f"{at}.mask", f"{mask!r}: use {sorted(MASKS)} or a list of offsets ≥ 0")
            inside = value.get("inside") or {}
            return Masked(tuple(sorted(set(offsets))), source(inside.get("pattern"), f"{at}.inside.pattern"),
                          source(inside.get("values"), f"{at}.inside.values"), source(value.get("outside"), f"{at}.outside"))
        raise ConfigError(at, "a head spec needs `mask` or `rewrite`")

    inputs = {}
    for name in INPUTS:
        spec = raw.get(name)
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}.{name}", "missing: give embedding and heads for each of q, k, v")
        heads = spec.get("heads") or {}
        if "all" not in heads:
            raise ConfigError(f"{where}.{name}.heads.all", "missing: the default for heads not named otherwise")
        inputs[name] = InputSpec(source(spec.get("embedding"), f"{where}.{name}.embedding"),
                                 {str(h): head_spec(v, f"{where}.{name}.heads.{h}") for h, v in heads.items()})
    return Hypothesis(raw.get("name", key), inputs, resamplers)


def check_heads(hyp: Hypothesis, key: str, n_heads: int) -> None:
    """Head names in a hypothesis must be layer-0 heads of the model."""
    for name, spec in hyp.inputs.items():
        for head in spec.heads:
            if head in ("all",) + ROLES:
                continue
            layer, _, index = head.partition(".")
            if layer != "0" or not index.isdigit() or int(index) >= n_heads:
                raise ConfigError(f"hypotheses.{key}.{name}.heads.{head}",
                                  f"unknown layer-0 head; use all, {', '.join(ROLES)} or 0.0 … 0.{n_heads - 1}")
