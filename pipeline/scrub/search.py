"""Search for the hypothesis that explains most of the induction heads' loss per unit of complexity
(docs/hypotheses.md, "The search").

A point of the search space is a hypothesis in the vocabulary of conf/hypothesis/ (fixed sources
only): for each input (q, k, v) an *input state*, the tuple (embedding, head 0, …, head H-1) whose
entries are "other", "clean" or a masked split's offsets (a tuple: inside the mask, pattern from
the other sequence and values clean; outside, the other sequence). A point is the triple of the
three input states.

The rule: greedy forward selection from the baseline (every input from the other sequence),
each step taking the change with the most % loss recovered gained per unit of complexity added,
while that is at least `min_gain`; then backward pruning, each step taking the change that loses
least, while the hypothesis stays within `prune_tolerance` points of where forward selection
ended. Every step is picked on one half of the sequences (the selection half) and measured on
the other (the held-out half).

The `Evaluator` scores many points on chosen sequences. Per batch it builds, once, each layer-0
head's output in every state a point uses (z W_O per head, [batch, pos, head, d_model]); a
point's residual is then a sum of those, and what it costs is the induction heads' projections of
the residuals no earlier point of the batch had, their attention and the unembedding at the
scored positions. It agrees with `pipeline.scrub.engine.scrub_losses` to float32 rounding (the
residual is summed per head here, in one matrix multiply there): tests/test_search.py.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.config.heads import head_name, parse_head_name
from pipeline.config.hypothesis import Hypothesis, Masked, Residual, Whole
from pipeline.config.search import Cost, Search, check_search
from pipeline.errors import ConfigError
from pipeline.model import AttnOnlyTransformer
from pipeline.scrub.engine import (
    _LIBC,
    PARTS,
    Batch,
    Layer1,
    Weights,
    _at,
    _release,
    scored_positions,
    token_losses,
)

INPUTS = ("q", "k", "v")
State = str | tuple[int, ...]
InputState = tuple[State, ...]          # (embedding, head 0, …, head H-1)
Point = tuple[InputState, InputState, InputState]  # (q, k, v)


def uniform(n_heads: int, state: str) -> InputState:
    return (state,) * (n_heads + 1)


def references(n_heads: int) -> tuple[Point, Point]:
    """The original (every input clean) and the baseline (every input from the other sequence)."""
    return (uniform(n_heads, "clean"),) * 3, (uniform(n_heads, "other"),) * 3


def covers(a: State, b: State) -> bool:
    """Whether state `a` keeps everything `b` keeps: clean covers all, all cover other, and a split
    covers the splits whose offsets it contains."""
    if a == b or a == "clean" or b == "other":
        return True
    return isinstance(a, tuple) and isinstance(b, tuple) and set(b) <= set(a)


def state_text(state: State) -> str:
    return state if isinstance(state, str) else "[" + ", ".join(map(str, state)) + "]"


def head_spec(state: State) -> Whole | Masked:
    """A head's state as the spec conf/hypothesis/ writes."""
    if isinstance(state, str):
        return Whole.model_validate(state)
    return Masked.model_validate({"mask": list(state), "inside": {"pattern": "other", "values": "clean"},
                                  "outside": "other"})


class Space:
    """The points a search may visit and their complexity: `search` of params.yaml on a model with
    `n_heads` layer-0 heads and the given roles."""

    def __init__(self, cfg: Search, n_heads: int, roles: dict, n_offsets: int):
        self.cfg, self.n_heads, self.cost = cfg, n_heads, cfg.cost
        self.inputs = [name for name in INPUTS if name in PARTS[cfg.objective]]
        self.heads = searched_heads(cfg.heads, roles, n_heads)
        self.masks = [tuple(mask) for mask in cfg.masks]
        check_search(cfg, n_offsets, n_heads)

    def slots(self) -> list[int]:
        """The entries of an input state a step may change: the embedding (0) and the searched heads."""
        return [0] + [1 + h for h in self.heads]

    def states(self, slot: int) -> list[State]:
        return ["other", "clean"] if slot == 0 else ["other", *self.masks, "clean"]

    def state_cost(self, slot: int, state: State) -> int:
        if state == "other":
            return 0
        if slot == 0:
            return self.cost.embedding
        return self.cost.clean if state == "clean" else self.cost.offset * len(state)

    def complexity(self, point: Point) -> int:
        """Σ over the searched inputs of the cost of every kept piece (Cost)."""
        return sum(self.state_cost(slot, state) for name, input_state in zip(INPUTS, point) if name in self.inputs
                   for slot, state in enumerate(input_state))

    def start(self) -> Point:
        """The baseline on the searched inputs; the inputs the objective does not scrub stay clean."""
        return tuple(uniform(self.n_heads, "other" if name in self.inputs else "clean") for name in INPUTS)

    def moves(self, point: Point, forward: bool) -> list[tuple[str, Point]]:
        """Every change of one entry to a state that keeps strictly more (forward) or strictly less
        (backward): (description, new point), in a fixed order."""
        out = []
        for i, name in enumerate(INPUTS):
            if name not in self.inputs:
                continue
            for slot in self.slots():
                now = point[i][slot]
                for state in self.states(slot):
                    if state == now or not (covers(state, now) if forward else covers(now, state)):
                        continue
                    changed = list(point[i])
                    changed[slot] = state
                    new = tuple(tuple(changed) if j == i else point[j] for j in range(3))
                    out.append((f"{name} {self.slot_name(slot)}: {state_text(now)} → {state_text(state)}", new))
        return out

    def slot_name(self, slot: int) -> str:
        return "embedding" if slot == 0 else head_name(0, slot - 1)

    def evaluated(self, point: Point) -> Point:
        """The triple the evaluator runs for `point`: the inputs the objective does not scrub clean."""
        return tuple(state if name in self.inputs else uniform(self.n_heads, "clean")
                     for name, state in zip(INPUTS, point))


def searched_heads(heads: list[str] | str, roles: dict, n_heads: int) -> list[int]:
    """search.heads ("all", or head names and roles of layer 0) → head indices, in order."""
    if heads == "all":
        return list(range(n_heads))
    out: list[int] = []
    for name in heads:
        if name == "prev":
            named = [roles["prev"]] if roles.get("prev") else []
        elif name == "self":
            named = list(roles.get("self", []))
        else:
            named = [name]
        out += [parse_head_name(head)[1] for head in named if parse_head_name(head)[1] not in out]
    if not out:
        raise ConfigError("search.heads", f"{heads} names no head of this model (roles: {roles})")
    return sorted(out)


# --- points as hypotheses, and hypotheses' complexity ---------------------------------------------

def to_hypothesis(point: Point, name: str) -> dict:
    """A point as a hypothesis file's mapping (conf/hypothesis/): per input the embedding, `all` the
    most common head state, and the heads that differ from it by name."""
    out: dict = {"name": name}
    for input_name, state in zip(INPUTS, point):
        embedding, heads = state[0], state[1:]
        common = Counter(heads).most_common(1)[0][0]
        specs = {"all": _written(common)}
        specs.update({head_name(0, h): _written(s) for h, s in enumerate(heads) if s != common})
        out[input_name] = {"embedding": embedding, "heads": specs}
    return out


def describe(point: Point, space: Space) -> str:
    """What a point keeps, per searched input: `q: embedding, 0.4, 0.0[1]; k: …` (- for nothing)."""
    parts = []
    for name, state in zip(INPUTS, point):
        if name in space.inputs:
            kept = [space.slot_name(slot) + ("" if s == "clean" or slot == 0 else state_text(s))
                    for slot, s in enumerate(state) if s != "other"]
            parts.append(f"{name}: {', '.join(kept) or '-'}")
    return "; ".join(parts)


def _written(state: State):
    if isinstance(state, str):
        return state
    return {"mask": list(state), "inside": {"pattern": "other", "values": "clean"}, "outside": "other"}


def from_hypothesis(hypothesis: Hypothesis, roles: dict, n_heads: int) -> Point | None:
    """The point of the search space a hypothesis is, or None when it uses anything else (a
    resampled source, the residual rewrite, another masked split)."""
    point = []
    for spec in hypothesis.inputs.values():
        if spec.embedding not in ("clean", "other"):
            return None
        state: list[State] = [spec.embedding]
        for h in range(n_heads):
            head = spec.for_head(head_name(0, h), roles)
            if isinstance(head, Whole) and head.source in ("clean", "other"):
                state.append(head.source)
            elif (isinstance(head, Masked) and (head.pattern, head.values, head.outside) == ("other", "clean", "other")):
                state.append(tuple(head.offsets))
            else:
                return None
        point.append(tuple(state))
    return tuple(point)


def hypothesis_complexity(hypothesis: Hypothesis, roles: dict, n_heads: int, cost: Cost, objective: str) -> int:
    """The complexity of any hypothesis by the search's count (Space.complexity for a point of the
    space). Beyond the space: a piece from a resampled source counts as kept (it keeps its
    class); a masked split costs its offsets when its inside keeps anything, plus a clean head
    when its outside does; the residual rewrite one offset for its identity part, plus a clean
    head for its rest when kept; never more than a clean head."""
    total = 0
    for name, spec in hypothesis.inputs.items():
        if name not in PARTS[objective]:
            continue
        total += cost.embedding if spec.embedding != "other" else 0
        for h in range(n_heads):
            head = spec.for_head(head_name(0, h), roles)
            if isinstance(head, Whole):
                piece = 0 if head.source == "other" else cost.clean
            elif isinstance(head, Masked):
                inside = head.pattern != "other" or head.values != "other"
                piece = cost.offset * len(head.offsets) * inside + cost.clean * (head.outside != "other")
            else:
                assert isinstance(head, Residual)
                piece = cost.offset * (head.identity != "other") + cost.clean * (head.rest != "other")
            total += min(piece, cost.clean)
    return total


# --- the evaluator ---------------------------------------------------------------------------------

class Evaluator:
    """Per-sequence loss sums of many points on chosen sequences (module docstring)."""

    def __init__(self, model: AttnOnlyTransformer, cache: dict, tokens: np.ndarray, other: np.ndarray,
                 scored: np.ndarray, roles: dict, batch_size: int = 16, device: str | torch.device = "cpu",
                 progress: bool = False):
        self.model, self.cache, self.roles = model, cache, roles
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.other = np.asarray(other, dtype=np.int64)
        self.batch_size, self.device, self.progress = batch_size, torch.device(device), progress
        self.weights = Weights(model, [parse_head_name(h)[1] for h in roles["induction"]])
        self.n_heads = model.cfg.n_heads
        attn0 = model.blocks[0].attn
        self.W_O0 = attn0.W_O  # [head, d_head, d_model]
        self.scored_all = np.asarray(scored, dtype=bool)[self.tokens[:, :-1]]  # [seq, pos]
        n_pos = self.scored_all.shape[1]
        self.last = np.where(self.scored_all.any(axis=1),
                             n_pos - 1 - np.argmax(self.scored_all[:, ::-1], axis=1), -1)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """Scored positions of each of `rows` [len(rows)]."""
        return self.scored_all[rows].sum(axis=1).astype(np.float64)

    @torch.no_grad()
    def loss_sums(self, points: list[Point], rows: np.ndarray, desc: str = "evaluate") -> np.ndarray:
        """Σ of the loss over the scored positions of each sequence of `rows`, for every point:
        [len(points), len(rows)] (float64; each point evaluated as given, every input as its
        state says)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(points), len(rows)))
        where = np.empty(len(self.tokens), dtype=np.int64)
        where[rows] = np.arange(len(rows))
        # batches of sequences whose last scored positions are close, as scrub_losses does
        order = rows[np.argsort(self.last[rows], kind="stable")]
        batches = range(0, len(order), self.batch_size)
        for start in tqdm(batches, desc=desc, unit="batch", disable=not self.progress, leave=False):
            batch_rows = order[start : start + self.batch_size]
            if not self.scored_all[batch_rows].any():
                continue
            seq, losses = self._batch(points, batch_rows)
            # a cache over RELEASE_LIMIT (Redwood's setting at full size) hands back the pages this
            # batch read, else a pass over the held-out half would leave the whole cache resident
            _release(self.cache)
            if _LIBC is not None:
                # a batch's head outputs are hundreds of MB in shapes that change from batch to
                # batch: glibc would keep the freed heap fragmented and the RSS would only grow
                _LIBC.malloc_trim(0)
            for i, loss in enumerate(losses):
                out[i] += np.bincount(where[seq], weights=loss, minlength=len(rows))
        return out

    def _batch(self, points: list[Point], rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """One batch: the sequence of each scored position [n_scored] and each point's losses there."""
        n_pos = self.scored_all.shape[1]
        queries, valid, keys = scored_positions(self.scored_all[rows])
        index = {"clean": np.broadcast_to(rows[:, None], (len(rows), n_pos)),
                 "other": np.broadcast_to(self.other[rows][:, None], (len(rows), n_pos))}
        batch = Batch(self.model, self.cache, self.tokens, index, {"queries": queries, "keys": keys}, self.roles,
                      self.device, self.weights)
        losses = _PointBatch(self, batch, points, valid).losses()
        return np.broadcast_to(rows[:, None], valid.shape)[valid], losses


def _differing(a: InputState, b: InputState) -> list[int]:
    """The entries (slots) where two input states differ, in order."""
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


class _PointBatch:
    """Many points on one batch: the layer-0 heads' z per state, residuals, projections (each built
    once, dropped once no later point of the batch reads it)."""

    def __init__(self, evaluator: Evaluator, batch: Batch, points: list[Point], valid: np.ndarray):
        self.evaluator, self.batch, self.points, self.model = evaluator, batch, points, evaluator.model
        self.layer1 = Layer1(batch, evaluator.weights, needs=set())
        device = evaluator.device
        self.valid = torch.from_numpy(valid).to(device)
        queries = batch.positions["queries"]
        self.targets = torch.from_numpy(np.take_along_axis(evaluator.tokens[batch.index["clean"][:, :1].ravel()],
                                                           queries + 1, axis=1)).to(device)[self.valid]
        self.z: dict[tuple, torch.Tensor] = {}         # (state, where) → [batch, n, head, d_head]
        self.embedded: dict[tuple, torch.Tensor] = {}  # (source, where) → [batch, n, d_model]
        # A residual one or two changes away from one built before (a step's current point) starts
        # from it and adds those changes' difference; `base` fixes which, before any tensor is
        # built, and a base is kept only until the last residual that starts from it.
        self.base, self.base_reads = self._plan_bases()
        self.kept: dict[tuple, torch.Tensor] = {}
        self.uses = Counter((kind, state) for point in points for kind, state in zip("QKV", point))
        self.projected: dict[tuple, torch.Tensor] = {}
        self.normalized: dict[tuple, torch.Tensor] = {}
        self.pending = Counter((state, "queries" if kind == "Q" else "keys") for kind, state in self.uses)
        self.W_O0 = evaluator.W_O0  # [head, d_head, d_model]

    def heads_z(self, state: State, where: str) -> torch.Tensor:
        """Every layer-0 head's output before W_O in `state` at `where`: [batch, n, head, d_head]."""
        if (state, where) not in self.z:
            if where == "queries":
                self.z[state, where] = _at(self.heads_z(state, "keys"), self.batch.positions["queries"])
            else:
                every = list(range(self.evaluator.n_heads))
                self.z[state, where] = self.batch.heads_z(every, head_spec(state), "keys")
        return self.z[state, where]

    def embedding(self, source: str, where: str) -> torch.Tensor:
        if (source, where) not in self.embedded:
            pos = self.batch.positions[where]
            seq = np.take_along_axis(self.batch.index[source], pos, axis=1)
            tokens = torch.from_numpy(self.evaluator.tokens[seq, pos]).to(self.evaluator.device)
            self.embedded[source, where] = F.embedding(tokens, self.model.W_E)
        return self.embedded[source, where]

    def _plan_bases(self) -> tuple[dict[tuple, tuple | None], Counter]:
        """Each residual's base, in the order the points first need them: among the residuals
        built before it that several points read, the one with fewest differing entries (at most
        two; the earliest on a tie), else None; and how many residuals start from each base."""
        state_uses = Counter(state for point in self.points for state in point)
        candidates: list[tuple] = []  # (state, where), in build order
        base: dict[tuple, tuple | None] = {}
        reads: Counter = Counter()
        for point in self.points:
            for kind, state in zip("QKV", point):
                where = "queries" if kind == "Q" else "keys"
                if (state, where) in base:
                    continue
                near = [(other, len(_differing(other, state))) for other, at in candidates if at == where]
                near = [(other, n) for other, n in near if n <= 2]
                base[state, where] = min(near, key=lambda item: item[1])[0] if near else None
                if near:
                    reads[base[state, where], where] += 1
                if state_uses[state] > 1:
                    candidates.append((state, where))
        return base, reads

    def residual(self, state: InputState, where: str) -> torch.Tensor:
        """x^emb + Σ_h z_h W_O^h + b_O of layer 0 at `where`: [batch, n, d_model]."""
        base = self.base[state, where]
        if base is not None:
            resid = self.kept[base, where].clone()
            self.base_reads[base, where] -= 1
            if not self.base_reads[base, where]:
                del self.kept[base, where]
            for slot in _differing(base, state):
                if slot == 0:
                    resid += self.embedding(state[0], where) - self.embedding(base[0], where)
                else:  # one head's difference: [batch, n, d_head] @ [d_head, d_model]
                    h = slot - 1
                    resid += (self.heads_z(state[slot], where)[:, :, h] - self.heads_z(base[slot], where)[:, :, h]) \
                        @ self.W_O0[h]
        else:
            # each head's z from its state, then one matrix multiply for all heads (as the engine)
            z = torch.stack([self.heads_z(s, where)[:, :, h] for h, s in enumerate(state[1:])], dim=2)
            resid = z.flatten(2) @ self.evaluator.weights.W_O0
            resid += self.embedding(state[0], where)
            resid += self.model.blocks[0].attn.b_O
        if self.base_reads[state, where]:
            self.kept[state, where] = resid
        return resid

    def project(self, kind: str, state: InputState) -> torch.Tensor:
        """The induction heads' queries (at scored positions), keys or values (at key positions) of
        the residual `state` builds: [batch, head, n, d_head]."""
        if (kind, state) not in self.projected:
            where = "queries" if kind == "Q" else "keys"
            if (state, where) not in self.normalized:
                self.normalized[state, where] = self.layer1.block.ln1(self.residual(state, where))
            u = self.normalized[state, where]
            self.pending[state, where] -= 1
            if not self.pending[state, where]:
                del self.normalized[state, where]
            weights = self.evaluator.weights
            x = u @ weights.W[kind, "induction"]
            x = x + (self.layer1._position_term(where, kind, "induction") if kind != "V"
                     else weights.b[kind, "induction"])
            self.projected[kind, state] = x.unflatten(-1, (-1, self.model.cfg.d_head)).transpose(1, 2)
        return self.projected[kind, state]

    def losses(self) -> list[np.ndarray]:
        """Each point's loss at the batch's scored positions [n_scored] (float64)."""
        rest = self.layer1.clean_rest()[self.valid]  # [n_scored, d_model]
        out = []
        for point in self.points:
            q, k, v = (self.project(kind, state) for kind, state in zip("QKV", point))
            resid = rest + self.layer1.output(self.layer1.attend(q, k, v), "induction")[self.valid]
            loss = token_losses(self.model, resid, self.targets)
            out.append(loss.double().cpu().numpy())
            for kind, state in zip("QKV", point):
                self.uses[kind, state] -= 1
                if not self.uses[kind, state]:
                    del self.projected[kind, state]
        return out


# --- the rule --------------------------------------------------------------------------------------

@dataclass
class Step:
    phase: str        # start, forward or prune
    change: str
    point: Point
    complexity: int
    selection: float  # % loss recovered on the selection half
    candidates: int   # points scored to choose this step


def halves(n_seq: int, fraction: float, seed: int, max_selection: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The selection half and the held-out half of the sequences (sorted indices), seeded: a
    `fraction` of them, at most `max_selection`, select."""
    order = np.random.default_rng(seed).permutation(n_seq)
    n_select = int(round(fraction * n_seq))
    if max_selection is not None:
        n_select = min(n_select, max_selection)
    return np.sort(order[:n_select]), np.sort(order[n_select:])


def greedy(space: Space, score: Callable[[list[Point]], Iterable[float]], cfg: Search,
           log: Callable[[str], None] = lambda line: None) -> tuple[list[Step], dict[Point, float]]:
    """The search (module docstring): its steps, and every point scored with its selection %."""
    scored: dict[Point, float] = {}

    def scores(points: list[Point]) -> list[float]:
        new = list(dict.fromkeys(p for p in points if p not in scored))
        if new:
            scored.update(zip(new, map(float, score(new))))
        return [scored[p] for p in points]

    current = space.start()
    now = scores([current])[0]
    steps = [Step("start", "every searched input from the other sequence", current, space.complexity(current), now, 1)]
    log(f"start: {now:.1f}%")
    for _ in range(cfg.max_steps):
        moves = [(change, point) for change, point in space.moves(current, forward=True)
                 if space.complexity(point) > space.complexity(current)]
        if not moves:
            break
        values = scores([point for _, point in moves])
        base = space.complexity(current)
        gains = [(value - now) / (space.complexity(point) - base) for (_, point), value in zip(moves, values)]
        # ties: the larger gain, then the earlier move (a fixed order: deterministic)
        best = max(range(len(moves)), key=lambda i: (gains[i], values[i], -i))
        if gains[best] < cfg.min_gain:
            log(f"forward stops: the best step gains {gains[best]:.2f} points per unit < {cfg.min_gain}")
            break
        current, now = moves[best][1], values[best]
        steps.append(Step("forward", moves[best][0], current, space.complexity(current), now, len(moves)))
        log(f"forward {moves[best][0]}: {now:.1f}% at complexity {space.complexity(current)}")
    floor = now - cfg.prune_tolerance
    while True:
        moves = [(change, point) for change, point in space.moves(current, forward=False)
                 if space.complexity(point) < space.complexity(current)]
        if not moves:
            break
        values = scores([point for _, point in moves])
        saved = [space.complexity(current) - space.complexity(point) for _, point in moves]
        best = max(range(len(moves)), key=lambda i: (values[i], saved[i], -i))
        if values[best] < floor:
            log(f"pruning stops: the cheapest removal leaves {values[best]:.1f}% < {floor:.1f}%")
            break
        current, now = moves[best][1], values[best]
        steps.append(Step("prune", moves[best][0], current, space.complexity(current), now, len(moves)))
        log(f"prune {moves[best][0]}: {now:.1f}% at complexity {space.complexity(current)}")
    return steps, scored


def frontier(scored: dict[Point, float], space: Space) -> list[Point]:
    """The best point found at each complexity that beats every less complex one (selection %),
    by complexity."""
    best: dict[int, Point] = {}
    for point, value in scored.items():  # insertion order: the first found wins a tie
        c = space.complexity(point)
        if c not in best or value > scored[best[c]]:
            best[c] = point
    out, top = [], -np.inf
    for c in sorted(best):
        if scored[best[c]] > top:
            out.append(best[c])
            top = scored[best[c]]
    return out
