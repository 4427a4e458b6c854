"""search@<seed>: search one model for the hypothesis that explains most per unit of complexity.

    python -m pipeline.stages.search 0

The space, the rule and the complexity are `search` of params.yaml (conf/search/default.yaml;
docs/hypotheses.md, "The search"); the engine is pipeline/scrub/search.py. Each step is picked on
the selection half of the sequences and every reported number is measured on the held-out half,
with a bootstrap 95% interval (scrub.bootstrap_samples, scrub.seed).

Outputs in data/search/seed<N>/ (small, committed to git):
- path.csv: every step (start, forward, prune): the change, the complexity, % recovered on the
  held-out half with its interval and on the selection half, how many points it chose among;
- frontier.csv: the best hypothesis found at each complexity (chosen on the selection half,
  measured on the held-out half), with its file;
- hypotheses/<name>.yaml: each frontier hypothesis as a file of conf/hypothesis/'s form, to copy
  there and run as an ordinary scrub stage;
- summary.json (DVC metrics): the references on each half and the search's end.
"""
from __future__ import annotations

import sys
import time

import pandas as pd
import yaml

from pipeline.config.load import load_params, model_argument
from pipeline.device import resolve_device
from pipeline.errors import ConfigError
from pipeline.outputs import CSV_FLOAT_FORMAT, atomic_path, rounded, run_stage, write_json
from pipeline.scrub.inputs import load_inputs
from pipeline.scrub.search import (
    Evaluator,
    Space,
    describe,
    frontier,
    greedy,
    halves,
    references,
    to_hypothesis,
)
from pipeline.scrub.bootstrap import bootstrap_means, interval, recovered

PATH_COLUMNS = ["step", "phase", "change", "complexity", "heldout", "ci_low", "ci_high", "selection", "candidates",
                "hypothesis"]
FRONTIER_COLUMNS = ["complexity", "heldout", "ci_low", "ci_high", "selection", "on_path", "hypothesis", "kept"]


def main() -> None:
    usage = "python -m pipeline.stages.search SEED"
    params = load_params()
    cfg, scrub_cfg = params.search, params.scrub
    target = model_argument(params, sys.argv[1:], usage)
    inputs = load_inputs(target)
    n_heads = inputs.model.cfg.n_heads
    space = Space(cfg, n_heads, inputs.roles, inputs.cache["diag"].shape[-1])
    evaluator = Evaluator(inputs.model, inputs.cache, inputs.tokens, inputs.other, inputs.scored, inputs.roles,
                          batch_size=cfg.batch_size, device=resolve_device(params.device), progress=True)
    selection, heldout = halves(len(inputs.tokens), cfg.selection_fraction, cfg.selection_seed, cfg.max_selection)
    for rows, half in ((selection, "selection"), (heldout, "held-out")):
        if evaluator.counts(rows).sum() == 0:
            cap = f" (at most search.max_selection={cfg.max_selection})" if cfg.max_selection is not None else ""
            raise ConfigError("search.selection_fraction", f"{cfg.selection_fraction}{cap} leaves the {half} half "
                                                           f"({len(rows)} of {len(inputs.tokens)} sequences) "
                                                           f"without a scored position")
    original, baseline = references(n_heads)
    start = time.perf_counter()

    count = evaluator.counts(selection)
    reference_sums = evaluator.loss_sums([original, baseline], selection, "references")
    loss_original, loss_baseline = reference_sums.sum(axis=1) / count.sum()

    def score(points):
        sums = evaluator.loss_sums([space.evaluated(p) for p in points], selection, f"{len(points)} points")
        return recovered(loss_baseline, loss_original, sums.sum(axis=1) / count.sum())

    steps, scored = greedy(space, score, cfg, log=lambda line: print(line, flush=True))
    front = frontier(scored, space)
    searched = time.perf_counter() - start

    # Every reported number: the held-out half, one bootstrap for all (paired).
    measured = list(dict.fromkeys([step.point for step in steps] + front))
    sums = evaluator.loss_sums([original, baseline] + [space.evaluated(p) for p in measured], heldout, "held-out")
    boot = bootstrap_means({i: s for i, s in enumerate(sums)}, evaluator.counts(heldout),
                           scrub_cfg.bootstrap_samples, scrub_cfg.seed)
    means = sums.sum(axis=1) / evaluator.counts(heldout).sum()
    held = {}
    for i, point in enumerate(measured, start=2):
        lo, hi = interval(recovered(boot[1], boot[0], boot[i]))
        held[point] = (float(recovered(means[1], means[0], means[i])), lo, hi)

    names = {point: f"search_{target.name}_c{space.complexity(point)}" for point in front}
    path = pd.DataFrame([{"step": i, "phase": step.phase, "change": step.change, "complexity": step.complexity,
                          "heldout": held[step.point][0], "ci_low": held[step.point][1],
                          "ci_high": held[step.point][2], "selection": step.selection,
                          "candidates": step.candidates, "hypothesis": names.get(step.point, "")}
                         for i, step in enumerate(steps)], columns=PATH_COLUMNS)
    on_path = {step.point for step in steps}
    frontier_frame = pd.DataFrame([{"complexity": space.complexity(p), "heldout": held[p][0], "ci_low": held[p][1],
                                    "ci_high": held[p][2], "selection": scored[p], "on_path": p in on_path,
                                    "hypothesis": names[p], "kept": describe(p, space)} for p in front],
                                  columns=FRONTIER_COLUMNS)

    with atomic_path(target.search_hypotheses) as tmp:
        tmp.mkdir()
        for point in front:
            c, (value, lo, hi) = space.complexity(point), held[point]
            header = (f"# Found by the search stage on model {target.name} (objective: {cfg.objective}): complexity {c},\n"
                      f"# {value:.1f}% loss recovered on the held-out half (95% interval {lo:.1f}–{hi:.1f}),\n"
                      f"# {scored[point]:.1f}% on the selection half. To run it as a scrub stage, copy this file to\n"
                      f"# conf/hypothesis/{names[point]}.yaml and add `- hypothesis@hypotheses.{names[point]}: "
                      f"{names[point]}`\n# to conf/config.yaml's defaults.\n")
            body = yaml.safe_dump(to_hypothesis(point, names[point]), sort_keys=False, default_flow_style=None)
            (tmp / f"{names[point]}.yaml").write_text(header + body)
    with atomic_path(target.search_path) as tmp:
        path.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    with atomic_path(target.search_frontier) as tmp:
        frontier_frame.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    end = steps[-1]
    write_json(target.search_summary, rounded({
        "objective": cfg.objective,
        "sequences": {"selection": int(len(selection)), "heldout": int(len(heldout))},
        "references": {"selection": {"original_loss": float(loss_original), "baseline_loss": float(loss_baseline)},
                       "heldout": {"original_loss": float(means[0]), "baseline_loss": float(means[1])}},
        "points_scored": len(scored),
        "steps": {"forward": sum(s.phase == "forward" for s in steps), "prune": sum(s.phase == "prune" for s in steps)},
        "end": {"complexity": end.complexity, "heldout": held[end.point][0], "ci_low": held[end.point][1],
                "ci_high": held[end.point][2], "selection": end.selection, "kept": describe(end.point, space)},
    }))
    print(f"search: {len(scored)} points scored in {searched:.0f} s ({len(scored) / searched * 60:.0f} per minute); "
          f"end: complexity {end.complexity}, {held[end.point][0]:.1f}% held-out "
          f"({held[end.point][1]:.1f}–{held[end.point][2]:.1f}); frontier of {len(front)}")


if __name__ == "__main__":
    run_stage(main)
