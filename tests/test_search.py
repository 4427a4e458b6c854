"""The search (pipeline/scrub/search.py): its evaluator against the scrub engine, the space's
moves and complexity, the greedy rule and the frontier on known scores, and its parameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config.hypothesis import parse_hypothesis
from pipeline.config.schema import check
from pipeline.config.search import Search
from pipeline.errors import ConfigError
from pipeline.scrub.engine import build_cache, scrub_losses
from pipeline.scrub.search import (
    Evaluator,
    Space,
    covers,
    from_hypothesis,
    frontier,
    greedy,
    halves,
    hypothesis_complexity,
    references,
    to_hypothesis,
)
from tests.helpers import ROOT

ROLES = {"prev": "0.0", "self": ["0.1", "0.2"], "induction": ["1.5", "1.6"]}
MASKS = [[0], [1], [0, 1], [0, 1, 2]]
N_HEADS = 8


def space(n_offsets: int = 4, **cfg) -> Space:
    return Space(Search.model_validate({"masks": MASKS, **cfg}), N_HEADS, ROLES, n_offsets)


def hypothesis(key: str):
    import yaml
    return parse_hypothesis(key, yaml.safe_load((ROOT / f"conf/hypothesis/{key}.yaml").read_text()))


# --- the evaluator against the engine ------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(model, sequences):
    tokens = sequences[:6, :121].clone()  # 120 inputs + 1 target
    cache = build_cache(model, tokens, n_offsets=4, batch_size=3, dtype=torch.float32, progress=False)
    other = np.array([2, 3, 1, 0, 5, 4])
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, :-1].numpy())[::2]] = True
    return {"model": model, "tokens": tokens.numpy(), "cache": cache, "other": other, "scored": scored}


def test_evaluator_agrees_with_the_engine(setup):
    """Every point of a forward step from naive (and the references), scored by the evaluator in
    one call, against scrub_losses on the same hypothesis (part all): per-sequence loss sums."""
    s = setup
    evaluator = Evaluator(s["model"], s["cache"], s["tokens"], s["other"], s["scored"], ROLES, batch_size=4)
    sp = space()
    start = from_hypothesis(hypothesis("naive"), ROLES, N_HEADS)
    moves = sp.moves(start, forward=True)
    picked = [point for _, point in moves[::7]]  # every input, embedding and heads, splits and clean
    original, baseline = references(N_HEADS)
    points = [original, baseline, start] + picked
    rows = np.array([0, 2, 3, 5])  # a subset, out of order with the partners
    sums = evaluator.loss_sums(points, rows)
    for i, point in enumerate(points[2:], start=2):
        expected = scrub_losses(s["model"], s["cache"], s["tokens"], s["other"],
                                parse_hypothesis("p", to_hypothesis(point, "p")), ROLES, s["scored"], ["all"],
                                batch_size=3, progress=False)
        np.testing.assert_allclose(sums[i], expected["all"].loss_sum[rows], rtol=2e-5, err_msg=str(point))
        np.testing.assert_allclose(sums[0], expected["original"].loss_sum[rows], rtol=2e-5)
        np.testing.assert_allclose(sums[1], expected["baseline"].loss_sum[rows], rtol=2e-5)
    np.testing.assert_array_equal(evaluator.counts(rows), expected["original"].count[rows])
    # not vacuous: the points differ from each other
    assert len({round(float(x), 3) for x in sums[2:].sum(axis=1)}) > len(points) // 2


def test_evaluator_alone_or_among_others_gives_the_same_losses(setup):
    """A point's losses do not depend on which other points share its batch (the kept residuals
    and projections are a cache, not an approximation beyond float rounding)."""
    s = setup
    evaluator = Evaluator(s["model"], s["cache"], s["tokens"], s["other"], s["scored"], ROLES, batch_size=6)
    start = from_hypothesis(hypothesis("refined2"), ROLES, N_HEADS)
    points = [start] + [p for _, p in space().moves(start, forward=False)[:6]]
    together = evaluator.loss_sums(points, np.arange(6))
    for i, point in enumerate(points):
        np.testing.assert_allclose(evaluator.loss_sums([point], np.arange(6))[0], together[i], rtol=1e-5)


def test_kept_residuals_are_dropped_after_their_last_use(setup, monkeypatch):
    """A step's points share residuals: one a change away starts from the step's current point's.
    A residual is kept only until the last one that starts from it, so however many points a batch
    scores, few are held at once and none outlives the batch (at Redwood's size every kept one is
    [batch, pos, d_model]; holding a step's ~80 made the search's memory grow past 2 GB)."""
    from pipeline.scrub import search
    s = setup
    evaluator = Evaluator(s["model"], s["cache"], s["tokens"], s["other"], s["scored"], ROLES, batch_size=6)
    start = from_hypothesis(hypothesis("naive"), ROLES, N_HEADS)
    points = [p for _, p in space().moves(start, forward=True)]
    held, batches = [], []
    residual, losses = search._PointBatch.residual, search._PointBatch.losses

    def counting_residual(self, state, where):
        out = residual(self, state, where)
        held.append(len(self.kept))
        return out

    def recording_losses(self):
        batches.append(self)
        return losses(self)

    monkeypatch.setattr(search._PointBatch, "residual", counting_residual)
    monkeypatch.setattr(search._PointBatch, "losses", recording_losses)
    evaluator.loss_sums(points, np.arange(6))
    built = len(batches[0].base)
    assert len(points) > 60 and built > 60
    assert sum(base is not None for base in batches[0].base.values()) > built // 2  # bases are used
    assert max(held) <= 6
    assert all(not batch.kept for batch in batches)


# --- points, hypotheses and complexity -------------------------------------------------------------

@pytest.mark.parametrize("key, expected", [("baseline", 0), ("naive", 3), ("refined1", 26), ("refined2", 59)])
def test_complexity_of_the_writeups_hypotheses(key, expected):
    """docs/hypotheses.md's count with the default costs: naive keeps Q's and V's embedding and
    the previous-token head's value one back for K (1 + 1 + 1); refined 2 every head's values at
    three offsets for Q and K and at one for V, and three embeddings (3·8 + 1 + 3·8 + 1 + 8 + 1)."""
    sp = space()
    h = hypothesis(key)
    assert hypothesis_complexity(h, ROLES, N_HEADS, sp.cost, "all") == expected
    assert sp.complexity(from_hypothesis(h, ROLES, N_HEADS)) == expected


def test_points_round_trip_through_hypothesis_files():
    sp = space()
    point = sp.start()
    for _, point in sp.moves(point, forward=True)[::5]:
        h = parse_hypothesis("x", to_hypothesis(point, "x"))
        assert from_hypothesis(h, ROLES, N_HEADS) == point
        assert hypothesis_complexity(h, ROLES, N_HEADS, sp.cost, "all") == sp.complexity(point)


def test_hypotheses_outside_the_space_are_recognised():
    assert from_hypothesis(hypothesis("refined4"), ROLES, N_HEADS) is None  # the residual rewrite
    assert from_hypothesis(hypothesis("bonus5"), ROLES, N_HEADS) is None    # a resampled source
    assert hypothesis_complexity(hypothesis("refined4"), ROLES, N_HEADS, space().cost, "all") > 0


def test_moves_change_one_piece_and_respect_the_order():
    sp = space()
    start = from_hypothesis(hypothesis("naive"), ROLES, N_HEADS)
    for forward in (True, False):
        for change, point in sp.moves(start, forward):
            diff = [(i, j) for i in range(3) for j in range(N_HEADS + 1) if point[i][j] != start[i][j]]
            assert len(diff) == 1, change
            (i, j), = diff
            assert covers(point[i][j], start[i][j]) if forward else covers(start[i][j], point[i][j])
            assert (sp.complexity(point) > sp.complexity(start)) == forward
    # the previous-token head's split [1] for K can grow to [0, 1] or clean, not to [0]
    k_prev = {change for change, _ in sp.moves(start, True) if change.startswith("k 0.0")}
    assert k_prev == {"k 0.0: [1] → [0, 1]", "k 0.0: [1] → [0, 1, 2]", "k 0.0: [1] → clean"}


def test_objective_of_one_part_searches_only_its_inputs():
    sp = space(objective="k")
    assert sp.inputs == ["k"]
    assert {change.split()[0] for change, _ in sp.moves(sp.start(), True)} == {"k"}
    # the inputs it does not scrub stay clean in what the evaluator runs
    q, k, v = sp.evaluated(sp.start())
    assert set(q) == set(v) == {"clean"} and set(k) == {"other"}


# --- the rule on known scores ----------------------------------------------------------------------

def additive_score(values: dict):
    """A score that adds a value per (input, slot, state): the greedy rule's choices are known."""
    def score(points):
        return [sum(values.get((i, j, s), 0.0) for i, state in enumerate(p) for j, s in enumerate(state))
                for p in points]
    return score


def test_greedy_takes_the_best_gain_per_unit_then_prunes_within_tolerance():
    sp = space(min_gain=1.0, prune_tolerance=3.0, max_steps=10)
    # K's previous-token head: [1] gains 20 for one unit, clean 50 for four (12.5 per unit);
    # Q's embedding 10 for one unit; V's head 0.5: clean 2 for four (0.5 per unit, below min_gain)
    values = {(1, 1, (1,)): 20.0, (1, 1, "clean"): 50.0, (0, 0, "clean"): 10.0, (2, 6, "clean"): 2.0,
              (1, 1, (0, 1)): 22.0, (1, 1, (0, 1, 2)): 23.0}
    steps, scored = greedy(sp, additive_score(values), sp.cfg)
    forward = [s.change for s in steps if s.phase == "forward"]
    # [1] first (20/unit), then [1] → clean (30 more for 3 units: 10/unit) ties Q's embedding
    # (10/unit) and wins on the larger gain
    assert forward[:3] == ["k 0.0: other → [1]", "k 0.0: [1] → clean", "q embedding: other → clean"]
    assert all("v 0.6" not in change for change in forward)
    prune = [s for s in steps if s.phase == "prune"]
    # nothing can go without losing more than 3 points
    assert prune == [] and steps[-1].selection == 60.0
    assert len(scored) == len(set(scored))


def test_pruning_removes_what_costs_least():
    sp = space(min_gain=0.0, prune_tolerance=2.5, max_steps=3)
    # min_gain 0: forward also takes steps that gain nothing; pruning must remove them again
    values = {(1, 1, "clean"): 50.0, (1, 1, (1,)): 48.0}
    steps, _ = greedy(sp, additive_score(values), sp.cfg)
    end = steps[-1]
    assert end.selection == 48.0 and end.complexity == 1, [s.change for s in steps]
    assert [s.phase for s in steps][0] == "start" and "prune" in [s.phase for s in steps]


def test_frontier_keeps_the_best_at_each_complexity_that_beats_every_simpler_one():
    sp = space()
    start = sp.start()
    moves = sp.moves(start, forward=True)
    scores = {start: 0.0}
    for i, (_, point) in enumerate(moves):
        scores[point] = float((i * 37) % 23)
    front = frontier(scores, sp)
    complexities = [sp.complexity(p) for p in front]
    assert complexities == sorted(set(complexities)) and front[0] == start
    values = [scores[p] for p in front]
    assert values == sorted(values) and len(set(values)) == len(values)
    for point, value in scores.items():  # nothing found beats the frontier at no more complexity
        at_most = [scores[p] for p in front if sp.complexity(p) <= sp.complexity(point)]
        assert value <= max(at_most)


def test_halves_are_disjoint_seeded_and_cover_every_sequence():
    a, b = halves(101, 0.5, 0)
    assert len(a) == 50 and len(b) == 51 and not set(a) & set(b) and set(a) | set(b) == set(range(101))
    assert np.array_equal(halves(101, 0.5, 0)[0], a) and not np.array_equal(halves(101, 0.5, 1)[0], a)


# --- parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, key", [
    ({"masks": [[0], [4]]}, "search.masks[1]"),
    ({"cost": {"clean": 3}}, "search.cost.clean"),
    ({"heads": ["0.9"]}, "search.heads[0]"),
    ({"objective": "x"}, "search.objective"),
    ({"selection_fraction": 1.0}, "search.selection_fraction"),
    ({"typo": 1}, "search.typo"),
])
def test_bad_search_parameters_are_refused_naming_the_key(change, key):
    import yaml
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, value in change.items():
        params["search"][name] = {**params["search"][name], **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as err:
        check(params)
    assert str(err.value).startswith(key), str(err.value)


def test_max_selection_caps_the_selection_half():
    selection, heldout = halves(1000, 0.5, 0, max_selection=200)
    assert len(selection) == 200 and len(heldout) == 800 and not set(selection) & set(heldout)
    assert np.array_equal(halves(1000, 0.5, 0, max_selection=600)[0], halves(1000, 0.5, 0)[0])  # not binding
