"""Loss summaries: % loss recovered, and bootstrap intervals that cover a known answer."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.scrub.engine import Losses
from pipeline.scrub.stats import recovered, summarize


def test_recovered_arithmetic():
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.2) == pytest.approx(50.0)
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.1) == pytest.approx(100.0)
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.3) == pytest.approx(0.0)
    # It may leave [0, 100]: a scrub better than the original, or worse than the baseline.
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.05) == pytest.approx(125.0)
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.4) == pytest.approx(-50.0)
    np.testing.assert_allclose(recovered(np.array([0.3, 0.5]), np.array([0.1, 0.1]), np.array([0.2, 0.2])), [50.0, 75.0])


def make_losses(seq: np.ndarray, loss: np.ndarray, n_seq: int) -> Losses:
    """The engine's Losses from per-position losses (sequence ids seq, losses loss, [n] each),
    whatever per-position fields it carries besides loss_sum and count."""
    pos = np.concatenate([np.arange(c) for c in np.bincount(seq, minlength=n_seq)]) if len(seq) else seq
    available = {"seq": seq, "pos": pos, "loss": loss, "loss_sum": np.bincount(seq, weights=loss, minlength=n_seq),
                 "count": np.bincount(seq, minlength=n_seq).astype(float)}
    return Losses(**{f.name: available[f.name] for f in dataclasses.fields(Losses)})


def simulate(rng, n_seq: int, true: dict[str, float]) -> dict[str, Losses]:
    """Per-position losses with known means: each sequence has its own number of scored
    positions and its own difficulty, shared by every scrub of it (paired data)."""
    count = rng.integers(20, 80, size=n_seq)
    seq = np.repeat(np.arange(n_seq), count)
    difficulty = rng.normal(0.0, 0.5, size=n_seq)  # per-sequence offset, mean 0
    return {name: make_losses(seq, mean + difficulty[seq] + rng.normal(0.0, 0.1, size=len(seq)), n_seq)
            for name, mean in true.items()}


def test_summarize_point_estimates_by_hand():
    seq = np.array([0, 0, 1, 1, 1, 1])  # 2 and 4 scored positions
    losses = {"original": make_losses(seq, np.array([0.5, 0.5, 0.0, 1.0, 1.0, 1.0]), 2),   # sums 1, 3
              "baseline": make_losses(seq, np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0]), 2),   # sums 4, 8
              "q": make_losses(seq, np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]), 2)}          # sums 2, 7
    m = summarize(losses, ["q"], n_positions=10, samples=50, seed=0)
    assert m["original_loss"] == pytest.approx(4 / 6) and m["baseline_loss"] == pytest.approx(2.0)
    assert m["q"]["loss"] == pytest.approx(1.5)
    assert m["q"]["recovered"] == pytest.approx(100 * (2.0 - 1.5) / (2.0 - 4 / 6))
    assert m["scored_positions"] == 6 and m["scored_share"] == pytest.approx(6 / 20)
    assert m["remix_scale"] == {"original": pytest.approx(0.2), "baseline": pytest.approx(0.6), "q": pytest.approx(0.45)}
    assert m["q"]["ci_low"] <= m["q"]["recovered"] <= m["q"]["ci_high"]


def test_bootstrap_interval_covers_the_true_value():
    """Repeated experiments on simulated sequences whose true % recovered is 60: the 95% interval
    covers it in about 95% of them. Pairing matters: the per-sequence difficulty is shared, so an
    interval that resampled original, baseline and scrub independently would be far too wide
    (coverage ~100%), one from too few quantiles too narrow."""
    true = {"original": 0.16, "baseline": 0.21, "q": 0.21 - 0.6 * 0.05}
    rng = np.random.default_rng(0)
    covered, widths = [], []
    for i in range(300):
        m = summarize(simulate(rng, 100, true), ["q"], n_positions=100, samples=300, seed=i)["q"]
        covered.append(m["ci_low"] <= 60.0 <= m["ci_high"])
        widths.append(m["ci_high"] - m["ci_low"])
    coverage = np.mean(covered)
    assert 0.90 <= coverage <= 0.99, coverage
    assert 5.0 < np.median(widths) < 25.0  # ~13 points here: an interval, not a point or the whole line


def test_bootstrap_is_seeded():
    losses = simulate(np.random.default_rng(1), 50, {"original": 0.1, "baseline": 0.2, "q": 0.15})
    a = summarize(losses, ["q"], 100, 200, seed=7)
    assert a == summarize(losses, ["q"], 100, 200, seed=7)
    assert a["q"]["ci_low"] != summarize(losses, ["q"], 100, 200, seed=8)["q"]["ci_low"]
