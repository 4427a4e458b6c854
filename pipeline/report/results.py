"""The report's tables: every hypothesis × Q/K/V/All on every model, next to the writeup's numbers.

`collect` reads data/scrub/seed<N>/<key>/metrics.json for each model of `seeds` and each key of
params' `hypotheses`, in those orders (a folder left by a hypothesis or model no longer in params
is not read: DVC does not delete it). From them:

- `by_model_table`, reports/results_by_model.csv: each model's % recovered per hypothesis and part,
  with its bootstrap 95% interval over sequences and the losses;
- `headline_table`, reports/results.csv (a DVC plot, template pipeline/report/plots/recovered.json):
  per hypothesis and part the mean across models and a spread, which the row names in `spread`:
  the min–max across the models when there are several (the spread from training, which the
  bootstrap does not cover), else the one model's bootstrap interval;
- `markdown`, reports/results.md: the same as tables.

`spread_name` and `spread_statement` say which spread a headline shows, alike in results.md and
on the review page (pipeline/report/page.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.errors import ConfigError
from pipeline.paths import ModelPaths

PART_LABELS = {"q": "Q", "k": "K", "v": "V", "all": "All"}
BY_MODEL_COLUMNS = ["model", "seed", "hypothesis", "part", "recovered", "ci_low", "ci_high", "loss",
                    "original_loss", "baseline_loss", "writeup"]
HEADLINE_COLUMNS = ["hypothesis", "part", "recovered", "spread_low", "spread_high", "spread", "models", "writeup"]
BOOTSTRAP = "bootstrap 95% interval"


def spread_name(n_models: int) -> str:
    """What the headline's spread (results.csv spread_low..spread_high) is, for `n_models` models."""
    return f"min–max across {n_models} models" if n_models >= 2 else BOOTSTRAP


def spread_statement(models: list[ModelPaths]) -> str:
    """The one sentence every headline table (results.md, the review page) carries: which spread it shows."""
    names = ", ".join(m.name for m in models)
    if len(models) >= 2:
        return (f"Each cell: the mean % loss recovered across the {len(models)} models ({names}: one training "
                f"recipe, different seeds); in parentheses the min–max across these models, the spread that "
                f"training alone gives. Each model's own bootstrap 95% interval over sequences is in its table.")
    return (f"Each cell: % loss recovered of the one model ({names}); in parentheses its bootstrap 95% interval "
            f"over sequences, which covers the sampling of sequences only, not the training of the model.")


def collect(models: list[ModelPaths], keys: list[str], root: Path = Path(".")) -> dict[ModelPaths, list[dict]]:
    """The metrics of exactly the hypotheses `keys` on each model: model → one dict per key, in
    order. Every model's file of a hypothesis must hold the same parts: the headline averages them."""
    if not keys:
        raise ConfigError("hypotheses", "is empty: nothing to report")
    found: dict[ModelPaths, list[dict]] = {}
    first_parts: dict[str, list[str]] = {}  # key → the parts of its first model's file
    for model in models:
        found[model] = []
        for key in keys:
            path = model.scrub_metrics(key)
            if not (root / path).exists():
                raise ConfigError(f"hypotheses.{key}", f"model {model.name} has no {path}: run its scrub stage "
                                                       f"(scrub@{model.seed}-{key}) first (dvc repro)")
            metrics = json.loads((root / path).read_text())
            if metrics.get("hypothesis") != key:
                raise ConfigError(f"hypotheses.{key}", f"{path} is the result of {metrics.get('hypothesis')!r}")
            parts = [p for p in PART_LABELS if p in metrics]
            if first_parts.setdefault(key, parts) != parts:
                raise ConfigError(f"hypotheses.{key}", f"{path} has parts {parts} but {models[0].scrub_metrics(key)} "
                                                       f"{first_parts[key]}: rerun the scrub stages (dvc repro)")
            found[model].append(metrics)
    return found


def by_model_table(collected: dict[ModelPaths, list[dict]], reference: dict) -> pd.DataFrame:
    """One row per (model, hypothesis, part): reports/results_by_model.csv."""
    rows = []
    for model, metrics in collected.items():
        for m in metrics:
            ref = reference.get(m["hypothesis"]) or [None] * 4
            for i, part in enumerate(PART_LABELS):
                if part not in m:
                    continue
                rows.append({"model": model.name, "seed": model.seed, "hypothesis": m["hypothesis"],
                             "part": PART_LABELS[part], "recovered": m[part]["recovered"], "ci_low": m[part]["ci_low"],
                             "ci_high": m[part]["ci_high"], "loss": m[part]["loss"],
                             "original_loss": m["original_loss"], "baseline_loss": m["baseline_loss"], "writeup": ref[i]})
    return pd.DataFrame(rows, columns=BY_MODEL_COLUMNS)


def headline_table(by_model: pd.DataFrame) -> pd.DataFrame:
    """One row per (hypothesis, part), in by_model's order: reports/results.csv."""
    rows = []
    for (hypothesis, part), group in by_model.groupby(["hypothesis", "part"], sort=False):
        n = len(group)
        several = n >= 2
        rows.append({"hypothesis": hypothesis, "part": part, "recovered": group.recovered.mean(),
                     "spread_low": group.recovered.min() if several else group.ci_low.iloc[0],
                     "spread_high": group.recovered.max() if several else group.ci_high.iloc[0],
                     "spread": spread_name(n), "models": n, "writeup": group.writeup.iloc[0]})
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def cell(value: float, low: float, high: float, writeup=None) -> str:
    ref = "" if writeup is None or pd.isna(writeup) else f" [{writeup:.0f}]"
    return f"{value:.1f} ({low:.1f}–{high:.1f}){ref}"


def parts_table(frame: pd.DataFrame, value: str, low: str, high: str, writeup: bool) -> list[str]:
    """A markdown table: one row per hypothesis, one column per part."""
    lines = ["| hypothesis | Q | K | V | All |", "|---|---|---|---|---|"]
    for name, group in frame.groupby("hypothesis", sort=False):
        by_part = {r.part: cell(r[value], r[low], r[high], r.writeup if writeup else None) for _, r in group.iterrows()}
        lines.append(f"| {name} | " + " | ".join(by_part.get(p, "–") for p in PART_LABELS.values()) + " |")
    return lines


def loss_line(m: dict, reference_losses: dict) -> str:
    return (f"original {m['original_loss']:.4f}, baseline {m['baseline_loss']:.4f} "
            f"(writeup: {reference_losses.get('original')}, {reference_losses.get('baseline')}); "
            f"{m['scored_positions']} scored positions ({100 * m['scored_share']:.1f}% of all)")


def markdown(headline: pd.DataFrame, by_model: pd.DataFrame, collected: dict[ModelPaths, list[dict]],
             reference_losses: dict) -> str:
    """reports/results.md: the headline and, with several models, each model's table."""
    models = list(collected)
    lines = ["# Causal scrubbing of induction heads: results", "",
             "% loss recovered on whitelisted positions; the writeup's published numbers in brackets. "
             + spread_statement(models), ""]
    lines += parts_table(headline, "recovered", "spread_low", "spread_high", writeup=True)
    if len(models) == 1:
        # The headline is the one model's table: a second copy would say nothing new.
        lines += ["", f"Loss on whitelisted positions: {loss_line(collected[models[0]][0], reference_losses)}."]
        return "\n".join(lines) + "\n"
    lines += ["", "## Each model", "", "% loss recovered with the bootstrap 95% interval over sequences."]
    for model in models:
        lines += ["", f"### {model.name} (training seed {model.seed})", ""]
        lines += parts_table(by_model[by_model.model == model.name], "recovered", "ci_low", "ci_high", writeup=False)
        lines += ["", f"Loss on whitelisted positions: {loss_line(collected[model][0], reference_losses)}."]
    return "\n".join(lines) + "\n"
