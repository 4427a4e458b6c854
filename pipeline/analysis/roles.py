"""Head roles the hypotheses refer to: the previous-token head (`prev`, a layer-0 head), the
self-attending heads (`self`, layer 0) and the induction heads (`induction`, layer 1).

Roles come from config (`roles.*`, e.g. Redwood's 0.0 / 0.1, 0.2, 0.5 / 1.5, 1.6) where given, and
are otherwise proposed from measured head scores (pipeline.analysis.scores.head_scores) with the
thresholds of `heads.*`. Heads are named "L.H" (layer.head), the writeup's notation.

Output: {"prev": "0.0", "self": ["0.1", ...], "induction": ["1.5", "1.6"]}.
"""
from __future__ import annotations

from typing import Callable

from pipeline.config.heads import ROLES, head_name, validate_roles
from pipeline.errors import ConfigError


def propose_roles(scores: dict, cfg: dict, given: dict | None = None) -> dict:
    """Propose every role that `given` (config roles) leaves null; given roles are kept as they
    are. `scores`: pipeline.analysis.scores.head_scores' dict; `cfg`: params["heads"].

    prev: the layer-0 head with the highest previous-token score, which must reach
      min_previous_token_score. self: up to max_self_heads other layer-0 heads whose same-token
      score reaches min_same_token_score, best first (possibly none). induction: every layer-1 head
      whose induction score reaches min_induction_score, best first (at least one)."""
    given = {role: (given or {}).get(role) for role in ROLES}
    roles = dict(given)
    if roles["prev"] is None:
        prev_scores = scores["previous_token_score"][0]
        # A head config names as self-attending is not a candidate: a head has one role.
        taken = set(roles["self"] or [])
        candidates = [h for h in range(len(prev_scores)) if head_name(0, h) not in taken]
        best = max(candidates, key=lambda h: prev_scores[h])
        if prev_scores[best] < cfg["min_previous_token_score"]:
            raise ConfigError(
                "roles.prev",
                f"no layer-0 head attends to the previous token: the best previous-token score is "
                f"{prev_scores[best]:.3f} (head {head_name(0, best)}), below "
                f"heads.min_previous_token_score={cfg['min_previous_token_score']}; set roles.prev "
                f"or lower the threshold")
        roles["prev"] = head_name(0, best)
    if roles["self"] is None:
        same = scores["same_token_score"][0]
        candidates = [h for h in range(len(same))
                      if head_name(0, h) != roles["prev"] and same[h] >= cfg["min_same_token_score"]]
        candidates.sort(key=lambda h: -same[h])
        roles["self"] = [head_name(0, h) for h in candidates[: int(cfg["max_self_heads"])]]
    if roles["induction"] is None:
        induction = scores["induction_score"]
        ranked = sorted(range(len(induction)), key=lambda h: -induction[h])
        chosen = [h for h in ranked if induction[h] >= cfg["min_induction_score"]]
        if not chosen:
            best = ranked[0]
            raise ConfigError(
                "roles.induction",
                f"the model shows no induction head: the best layer-1 induction score is "
                f"{induction[best]:.3f} (head {head_name(1, best)}), below "
                f"heads.min_induction_score={cfg['min_induction_score']}; train the model longer, "
                f"set roles.induction, or lower the threshold")
        roles["induction"] = [head_name(1, h) for h in chosen]
    return roles


def resolve_roles(config_roles: dict | None, propose_fn: Callable[[dict], dict], model_cfg) -> dict:
    """The roles the scrubs use: `config_roles` (roles.* from params, each a value or null) where
    given, the proposal for the rest. `propose_fn(given)` is called with the checked config roles
    only when one is null, and must fill in the nulls (see propose_roles); taking the given roles
    lets it skip roles config already settles (a model without induction heads can still be
    scrubbed with roles.induction set) and keep a proposed self head off the configured prev head.
    `model_cfg`: the model's ModelConfig (n_layers, n_heads)."""
    config_roles = config_roles or {}
    unknown = set(config_roles) - set(ROLES)
    if unknown:
        raise ConfigError("roles", f"unknown roles {sorted(unknown)}; known: {list(ROLES)}")
    given = validate_roles(config_roles, model_cfg.n_layers, model_cfg.n_heads)
    roles = given
    if any(v is None for v in given.values()):
        proposed = propose_fn(dict(given))
        if any(proposed.get(role) is None for role in ROLES):
            raise ValueError(f"propose_fn left a role null: {proposed}")
        roles = validate_roles(proposed, model_cfg.n_layers, model_cfg.n_heads)
        # The proposal may not override what config settled.
        roles.update({role: value for role, value in given.items() if value is not None})
    return {"prev": roles["prev"], "self": list(roles["self"]), "induction": list(roles["induction"])}


def role_heads(roles: dict) -> list[tuple[str, str]]:
    """(head, role) of every role head of `roles` (roles.json), in the order prev, self, induction."""
    out = []
    for role in ROLES:
        given = roles.get(role)
        out += [(head, role) for head in ([given] if isinstance(given, str) else given or [])]
    return out
