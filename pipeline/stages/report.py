"""report: every hypothesis × Q/K/V/All on every model, next to the writeup's numbers.

Reads data/scrub/seed<N>/<key>/metrics.json for each model of `seeds` and each key of
params' `hypotheses`, in those orders (a folder left by a hypothesis or model no longer in params
is not read: DVC does not delete it). Writes

- reports/results_by_model.csv: each model's % recovered per hypothesis and part, with its
  bootstrap 95% interval over sequences and the losses;
- reports/results.csv, the headline (a DVC plot, template pipeline/report/plots/recovered.json): per
  hypothesis and part the mean across models and a spread, which the row names in `spread`: the
  min–max across the models when there are several (the spread from training, which the
  bootstrap does not cover), else the one model's bootstrap interval;
- reports/results.md, the same as tables; the bar chart reports/recovered.png; the training
  curves of every model reports/training.png; and the review page reports/index.html
  (pipeline/report/page.py), which also shows the first model's head views, per-token breakdowns and
  sweep where their stages have written them.

The tables are pipeline/report/results.py's, the figures pipeline/report/summary.py's, the page
pipeline/report/page.py's (Jinja templates in pipeline/report/templates/): this stage reads the
params and inputs and writes the outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import paths
from pipeline.config.load import load_params
from pipeline.outputs import CSV_FLOAT_FORMAT, atomic_path, run_stage
from pipeline.paths import ModelPaths
from pipeline.report import page
from pipeline.report.results import by_model_table, collect, headline_table, markdown
from pipeline.report.summary import recovered_chart, training_chart


def write_page(params: dict, collected: dict[ModelPaths, list[dict]], root: Path = Path(".")) -> None:
    """reports/training.png and reports/index.html under `root` (after results.csv, which the page reads)."""
    logs = {}
    for model in collected:
        log_path = root / model.train_log
        logs[model.name] = json.loads(log_path.read_text()) if log_path.exists() else []
    training_chart(logs, root / paths.TRAINING_FIGURE)
    html = page.build(params, {m: {x["hypothesis"]: x for x in metrics} for m, metrics in collected.items()}, root)
    with atomic_path(root / paths.REPORT_PAGE) as tmp:
        tmp.write_text(html)


def main() -> None:
    params = load_params()
    cfg = params.report
    collected = collect([ModelPaths(params.model.dir, seed) for seed in params.seeds], list(params.hypotheses))
    by_model = by_model_table(collected, cfg.reference)
    headline = headline_table(by_model)
    # the metrics' precision (docs/reproducibility.md), not more
    with atomic_path(paths.RESULTS_BY_MODEL_CSV) as tmp:
        by_model.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    with atomic_path(paths.RESULTS_CSV) as tmp:
        headline.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    text = markdown(headline, by_model, collected, cfg.reference_losses.model_dump())
    with atomic_path(paths.RESULTS_MD) as tmp:
        tmp.write_text(text)
    recovered_chart(headline, by_model, paths.RECOVERED_FIGURE)
    write_page(params.model_dump(by_alias=True), collected)  # the page reads params.yaml's form
    print(text)


if __name__ == "__main__":
    run_stage(main)
