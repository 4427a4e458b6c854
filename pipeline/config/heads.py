"""Head names ("L.H", the writeup's notation) and the roles the hypotheses refer to: the
previous-token head (`prev`, a layer-0 head), the self-attending heads (`self`, layer 0) and the
induction heads (`induction`, layer 1). Checked here, where the configuration is; proposed from
measured scores in pipeline.analysis.roles."""
from __future__ import annotations

import re
from typing import Any

from pipeline.errors import ConfigError

ROLES = ("prev", "self", "induction")
# Which layer each role's heads must be in: the scrub engine splits layer-0 heads by role and
# scrubs the inputs of layer-1 heads.
ROLE_LAYER = {"prev": 0, "self": 0, "induction": 1}
_HEAD = re.compile(r"^(\d+)\.(\d+)$")


def head_name(layer: int, head: int) -> str:
    return f"{layer}.{head}"


def parse_head_name(name: str) -> tuple[int, int]:
    """"L.H" → (layer, head); ValueError for anything else. The one parser of head names."""
    match = _HEAD.match(name) if isinstance(name, str) else None
    if not match:
        raise ValueError(f"{name!r} is not a head name \"L.H\" such as \"0.0\"")
    return int(match.group(1)), int(match.group(2))


def is_layer0_head(name: Any, n_heads: int) -> bool:
    """Whether `name` is a head name "0.H" of a model with `n_heads` heads per layer."""
    try:
        layer, head = parse_head_name(name)
    except ValueError:
        return False
    return layer == 0 and head < n_heads


def parse_head(name: Any, role: str, n_layers: int, n_heads: int) -> str:
    """Check one head name of `role` against the model; ConfigError naming `roles.<role>`."""
    param = f"roles.{role}"
    if not isinstance(name, str):
        # YAML reads an unquoted 0.10 as the float 0.1, losing which head was meant.
        raise ConfigError(param, f"head names are strings \"L.H\" (quote them in YAML), got {name!r}")
    try:
        layer, head = parse_head_name(name)
    except ValueError as err:
        raise ConfigError(param, str(err)) from err
    if layer >= n_layers or head >= n_heads:
        raise ConfigError(param, f"{name} does not exist: the model has {n_layers} layers of {n_heads} heads")
    if layer != ROLE_LAYER[role]:
        raise ConfigError(param, f"{name} is in layer {layer}; {role} heads are in layer {ROLE_LAYER[role]}")
    return head_name(layer, head)  # canonical form: "0.01" → "0.1"


def validate_roles(roles: dict, n_layers: int, n_heads: int) -> dict:
    """Roles with every head checked and canonical; null roles stay null."""
    out: dict = {}
    for role in ROLES:
        value = roles.get(role)
        if value is None:
            out[role] = None
        elif role == "prev":
            out[role] = parse_head(value, role, n_layers, n_heads)
        else:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"roles.{role}", f"must be a list of head names or null, got {value!r}")
            heads = [parse_head(v, role, n_layers, n_heads) for v in value]
            if len(set(heads)) != len(heads):
                raise ConfigError(f"roles.{role}", f"lists a head twice: {heads}")
            out[role] = heads
    if out["induction"] is not None and not out["induction"]:
        raise ConfigError("roles.induction", "is empty: the hypotheses need at least one induction head")
    if out["prev"] is not None and out["prev"] in (out["self"] or []):
        raise ConfigError("roles.self", f"{out['prev']} is also roles.prev; a head has one role")
    return out
