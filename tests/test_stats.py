"""Loss summaries: % loss recovered, and bootstrap intervals that cover a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.scrub import Losses, recovered, summarize


def test_recovered_arithmetic():
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.2) == pytest.approx(50.0)
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.1) == pytest.approx(100.0)
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.3) == pytest.approx(0.0)
    # It may leave [0, 100]: a scrub better than the original, or worse than the baseline.
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.05) == pytest.approx(125.0)
    assert recovered(baseline=0.3, original=0.1, scrubbed=0.4) == pytest.approx(-50.0)
    np.testing.assert_allclose(recovered(np.array([0.3, 0.5]), np.array([0.1, 0.1]), np.array([0.2, 0.2])), [50.0, 75.0])


def simulate(rng, n_seq: int, true: dict[str, float]) -> dict[str, Losses]:
    """Per-sequence loss sums with known per-position means: each sequence has its own count of
    scored positions and its own difficulty, shared by every scrub of it (paired data)."""
    count = rng.integers(20, 80, size=n_seq).astype(float)
    difficulty = rng.normal(0.0, 0.5, size=n_seq)  # per-sequence offset, mean 0
    out = {}
    for name, mean in true.items():
        per_position = mean + difficulty + rng.normal(0.0, 0.1, size=n_seq) / np.sqrt(count)
        out[name] = Losses(per_position * count, count)
    return out


def test_summarize_point_estimates_by_hand():
    losses = {"original": Losses(np.array([1.0, 3.0]), np.array([2.0, 4.0])),
              "baseline": Losses(np.array([4.0, 8.0]), np.array([2.0, 4.0])),
              "q": Losses(np.array([2.0, 7.0]), np.array([2.0, 4.0]))}
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
