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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config.heads import ROLE_LAYER, parse_head_name
from pipeline.errors import ConfigError

FIXED_SOURCES = ("clean", "other")
MASKS = {"cur": (0,), "prev": (1,), "last3": (0, 1, 2)}
INPUTS = ("q", "k", "v")
# The roles a hypothesis may name: those of layer-0 heads (pipeline.analysis.roles has every role).
ROLES = tuple(role for role, layer in ROLE_LAYER.items() if layer == 0)


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
    known_keys(raw, where, ("name", "resample") + INPUTS)
    if not isinstance(raw.get("name", key), str):
        raise ConfigError(f"{where}.name", f"must be a string, got {raw['name']!r}")
    resample = raw.get("resample") or {}
    if not isinstance(resample, dict):
        raise ConfigError(f"{where}.resample", "a mapping of resampler name → {classes, seed}")
    resamplers = {}
    for name, r in resample.items():
        at = f"{where}.resample.{name}"
        if name in FIXED_SOURCES:
            raise ConfigError(at, "clean and other are reserved source names")
        classes = r.get("classes") if isinstance(r, dict) else None
        if not classes or not isinstance(classes, dict):
            raise ConfigError(f"{at}.classes", "give at least one class of rules")
        known_keys(r, at, ("classes", "seed"))
        seed = r.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"{at}.seed", f"must be an integer ≥ 0, got {seed!r}")
        for cname, rules in classes.items():
            if not isinstance(rules, dict):
                raise ConfigError(f"{at}.classes.{cname}", f"a mapping of rules ({', '.join(RULES)}) to token lists")
            known_keys(rules, f"{at}.classes.{cname}", RULES)
            for rule, tokens in rules.items():
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ConfigError(f"{at}.classes.{cname}.{rule}", f"must be a list of strings, got {tokens!r}")
        resamplers[name] = Resampler(classes={c: {k: list(v) for k, v in rules.items()} for c, rules in classes.items()},
                                     seed=seed)
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
            known_keys(value, at, ("rewrite", "identity", "rest"))
            if value["rewrite"] != "residual":
                raise ConfigError(f"{at}.rewrite", f"only `residual` is known, got {value['rewrite']!r}")
            return Residual(source(value.get("identity"), f"{at}.identity"), source(value.get("rest"), f"{at}.rest"))
        if "mask" in value:
            known_keys(value, at, ("mask", "inside", "outside"))
            offsets = mask_offsets(value["mask"], f"{at}.mask")
            inside = value.get("inside") or {}
            if not isinstance(inside, dict):
                raise ConfigError(f"{at}.inside", "a mapping {pattern: SOURCE, values: SOURCE}")
            known_keys(inside, f"{at}.inside", ("pattern", "values"))
            return Masked(offsets, source(inside.get("pattern"), f"{at}.inside.pattern"),
                          source(inside.get("values"), f"{at}.inside.values"), source(value.get("outside"), f"{at}.outside"))
        raise ConfigError(at, "a head spec needs `mask` or `rewrite`")

    inputs = {}
    for name in INPUTS:
        spec = raw.get(name)
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}.{name}", "missing: give embedding and heads for each of q, k, v")
        known_keys(spec, f"{where}.{name}", ("embedding", "heads"))
        heads = spec.get("heads") or {}
        if not isinstance(heads, dict):
            raise ConfigError(f"{where}.{name}.heads", "a mapping of all / role / head name → head spec")
        if "all" not in heads:
            raise ConfigError(f"{where}.{name}.heads.all", "missing: the default for heads not named otherwise")
        inputs[name] = InputSpec(source(spec.get("embedding"), f"{where}.{name}.embedding"),
                                 {str(h): head_spec(v, f"{where}.{name}.heads.{h}") for h, v in heads.items()})
    return Hypothesis(raw.get("name", key), inputs, resamplers)


def mask_offsets(mask, at: str) -> tuple[int, ...]:
    """A mask's relative offsets (0: the current position, 1: the previous one, ...)."""
    offsets = MASKS.get(mask) if isinstance(mask, str) else mask
    # bool is an int to Python: `[true]` must not pass as offset 1
    if (not isinstance(offsets, (list, tuple)) or not offsets
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
        raise ConfigError(at, f"{mask!r}: use one of {', '.join(sorted(MASKS))} or a list of offsets ≥ 0 such as [0, 1]")
    return tuple(sorted(set(offsets)))


def known_keys(value: dict, at: str, known: tuple[str, ...]) -> None:
    """A misspelt key would otherwise be ignored and its default silently used."""
    for k in value:
        if k not in known:
            raise ConfigError(f"{at}.{k}", f"unknown key; use {', '.join(known)}")


def check_heads(hyp: Hypothesis, key: str, n_heads: int) -> None:
    """Head names in a hypothesis must be layer-0 heads of the model."""
    for name, spec in hyp.inputs.items():
        for head in spec.heads:
            if head in ("all",) + ROLES:
                continue
            try:
                layer, index = parse_head_name(head)
            except ValueError:
                layer, index = None, None
            if layer != 0 or index >= n_heads:
                raise ConfigError(f"hypotheses.{key}.{name}.heads.{head}",
                                  f"unknown layer-0 head; use all, {', '.join(ROLES)} or 0.0 … 0.{n_heads - 1}")
