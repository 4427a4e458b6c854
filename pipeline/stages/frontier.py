"""frontier@<seed>: every hypothesis of `hypotheses` on the search's axes, against its frontier.

    python -m pipeline.stages.frontier 0

For each hypothesis: its complexity by the search's count (search.cost), and its % loss recovered
of the search's objective on the search's held-out half, with the same bootstrap resamplings as
the search's numbers (paired), from the per-sequence losses its scrub stage wrote (nothing is
scrubbed again). Then where it stands against the frontier point of at most its complexity:
`below` (the frontier's interval lies above its interval), `above` (the other way round: the
greedy search missed something) or `on` (the intervals overlap).

Outputs: data/search/seed<N>/placed.csv and the figure reports/search/seed<N>.png. A separate
stage from the search, so that changing a hypothesis reruns this, not the search.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.load import load_params, model_argument
from pipeline.errors import ConfigError
from pipeline.outputs import CSV_FLOAT_FORMAT, atomic_path, run_stage
from pipeline.report.search import search_figure
from pipeline.scrub.search import from_hypothesis, halves, hypothesis_complexity
from pipeline.scrub.bootstrap import bootstrap_means, interval, recovered
from pipeline.weights.checkpoint import load_checkpoint

COLUMNS = ["hypothesis", "name", "complexity", "in_space", "heldout", "ci_low", "ci_high", "frontier_complexity",
           "frontier_heldout", "frontier_ci_low", "frontier_ci_high", "standing", "simplest_match"]


def standing(low: float, high: float, frontier_low: float, frontier_high: float) -> str:
    """Where a hypothesis stands against a frontier point, by their 95% intervals."""
    if frontier_low > high:
        return "below"
    if low > frontier_high:
        return "above"
    return "on"


def main() -> None:
    params = load_params()
    cfg, scrub_cfg = params.search, params.scrub
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.frontier SEED")
    n_heads = load_checkpoint(target.checkpoint, "model.dir").cfg.n_heads
    roles = json.loads(Path(target.roles).read_text())
    frontier = pd.read_csv(target.search_frontier).sort_values("complexity")
    part = cfg.objective
    rows = []
    for key, hypothesis in params.hypotheses.items():
        losses = pd.read_parquet(target.scrub_losses(key)).sort_values("seq_id")
        if f"loss_sum_{part}" not in losses:
            raise ConfigError("scrub.parts", f"the search's objective {part} is not among the parts the scrub "
                                             f"stages run; add it to scrub.parts")
        _, heldout = halves(len(losses), cfg.selection_fraction, cfg.selection_seed, cfg.max_selection)
        held = losses.iloc[heldout]
        names = ["original", "baseline", part]
        sums = {name: held[f"loss_sum_{name}"].to_numpy(dtype=np.float64) for name in names}
        count = held["count"].to_numpy(dtype=np.float64)
        boot = bootstrap_means(sums, count, scrub_cfg.bootstrap_samples, scrub_cfg.seed)
        mean = {name: sums[name].sum() / count.sum() for name in names}
        value = float(recovered(mean["baseline"], mean["original"], mean[part]))
        lo, hi = interval(recovered(boot["baseline"], boot["original"], boot[part]))
        c = hypothesis_complexity(hypothesis, roles, n_heads, cfg.cost, part)
        at_most = frontier[frontier.complexity <= c].iloc[-1]
        matching = frontier[frontier.heldout >= value]
        rows.append({"hypothesis": key, "name": hypothesis.name, "complexity": c,
                     "in_space": from_hypothesis(hypothesis, roles, n_heads) is not None, "heldout": value,
                     "ci_low": lo, "ci_high": hi, "frontier_complexity": int(at_most.complexity),
                     "frontier_heldout": at_most.heldout, "frontier_ci_low": at_most.ci_low,
                     "frontier_ci_high": at_most.ci_high,
                     "standing": standing(lo, hi, at_most.ci_low, at_most.ci_high),
                     "simplest_match": int(matching.complexity.iloc[0]) if len(matching) else None})
    placed = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(target.search_placed) as tmp:
        placed.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    search_figure(frontier, pd.read_csv(target.search_path), placed, target.name, part, target.search_figure)
    for row in placed.itertuples():
        print(f"{row.hypothesis}: complexity {row.complexity}, {row.heldout:.1f}% held-out, {row.standing} the "
              f"frontier ({row.frontier_heldout:.1f}% at complexity {row.frontier_complexity})")


if __name__ == "__main__":
    run_stage(main)
