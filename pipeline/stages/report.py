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
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from pipeline import paths
from pipeline.config.load import load_params, require
from pipeline.errors import ConfigError
from pipeline.outputs import atomic_path, run_stage
from pipeline.paths import ModelPaths
from pipeline.report import page
from pipeline.report.figures import plt, save_figure
from pipeline.report.page import (  # the headline's spread, stated alike on the page
    spread_name,
    spread_statement,
)

PART_LABELS = {"q": "Q", "k": "K", "v": "V", "all": "All"}
BY_MODEL_COLUMNS = ["model", "seed", "hypothesis", "part", "recovered", "ci_low", "ci_high", "loss",
                    "original_loss", "baseline_loss", "writeup"]
HEADLINE_COLUMNS = ["hypothesis", "part", "recovered", "spread_low", "spread_high", "spread", "models", "writeup"]


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
                             "ci_high": m[part]["ci_high"], "loss": m[part]["loss"], "original_loss": m["original_loss"],
                             "baseline_loss": m["baseline_loss"], "writeup": ref[i]})
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


def recovered_figure(headline: pd.DataFrame, by_model: pd.DataFrame):
    """Bars: the headline value (the mean across models); whiskers: the headline's spread; with
    several models, each model's value as a dot on its bar; black ticks: the writeup."""
    names = list(dict.fromkeys(headline.hypothesis))
    parts = list(PART_LABELS.values())
    n_models = int(headline.models.max())
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4.4))
    width = 0.8 / len(parts)
    for i, part in enumerate(parts):
        sub = headline[headline.part == part].set_index("hypothesis").reindex(names)
        x = np.arange(len(names)) + (i - (len(parts) - 1) / 2) * width
        # A percentile interval need not contain the point estimate (few sequences, a skewed
        # ratio): the bar then shows no whisker on that side rather than a negative one.
        err = np.clip(np.vstack([sub.recovered - sub.spread_low, sub.spread_high - sub.recovered]), 0, None)
        ax.bar(x, sub.recovered, width, yerr=err, capsize=2, label=part)
        ax.scatter(x, sub.writeup, marker="_", s=120, color="black", zorder=3, label="writeup" if i == 0 else None)
        if n_models >= 2:
            at = dict(zip(names, x))
            dots = by_model[by_model.part == part]
            ax.scatter([at[h] for h in dots.hypothesis], dots.recovered, s=9, color="black", alpha=0.7, zorder=4,
                       label="each model" if i == 0 else None)
    ax.set_xticks(np.arange(len(names)), names, rotation=20)
    ax.set_ylabel("% loss recovered")
    ax.set_title(f"bars: mean of {n_models} models; whiskers: min–max across them; dots: each model" if n_models >= 2
                 else "whiskers: bootstrap 95% interval over sequences", fontsize=10)
    ax.axhline(100, color="grey", lw=0.5)
    # The legend sits in a band above the bars (100 %, or the highest whisker), not over them.
    low, high = ax.get_ylim()
    top = max(high, 100)
    ax.set_yticks([t for t in ax.get_yticks() if low <= t <= top])
    ax.set_ylim(low, top + 22)
    ax.legend(ncol=6, fontsize=8, loc="upper center", frameon=False)
    fig.tight_layout()
    return fig


def chart(headline: pd.DataFrame, by_model: pd.DataFrame, path: Path) -> None:
    save_figure(recovered_figure(headline, by_model), path)


# Panels of the training figure: which train_log.json keys share an axis (a log lacking one is drawn
# without it: older logs and other recipes record fewer).
TRAINING_PANELS = [("train loss (nats)", ["train_loss"]),
                   ("head scores during training", ["prev_token", "same_token", "induction", "induction_frequent"]),
                   ("loss drop on repeated tokens (nats)", ["repeat_gain", "repeat_gain_frequent"])]
MODEL_STYLES = ["-", "--", ":", "-."]  # one per model; colour stays one per measurement


def training_figure(logs: dict[str, list[dict]]):
    """Each model's train_log.json (model name → one dict per evaluation: step and measurements)
    → three panels; colour: the measurement, line style: the model."""
    logs = {name: log for name, log in logs.items() if log}
    panels = [(title, [k for k in keys if any(k in row for log in logs.values() for row in log)])
              for title, keys in TRAINING_PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.2), squeeze=False)
    if not panels:
        # A loaded model (model=redwood, model=file) has an empty log; the figure is a declared
        # output all the same, so it says so rather than being absent.
        axes[0][0].text(0.5, 0.5, "no training log: the model was loaded, not trained", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (title, keys) in zip(axes[0], panels):
        for j, key in enumerate(keys):
            for m, (name, log) in enumerate(logs.items()):
                steps = [row["step"] for row in log if key in row]
                ax.plot(steps, [row[key] for row in log if key in row], marker="." if len(logs) == 1 else None,
                        color=f"C{j}", linestyle=MODEL_STYLES[m % len(MODEL_STYLES)])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        # colour names the measurement in each panel; with several models one legend below the
        # panels names their line styles (a legend entry per model and measurement hid the lines)
        handles = [Line2D([], [], color=f"C{j}", label=key) for j, key in enumerate(keys)]
        ax.legend(handles=handles, fontsize=7)
    if len(logs) > 1:
        styles = [Line2D([], [], color="black", linestyle=MODEL_STYLES[m % len(MODEL_STYLES)], label=name)
                  for m, name in enumerate(logs)]
        fig.legend(handles=styles, loc="lower center", ncol=len(styles), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        fig.tight_layout()
    return fig


def training_chart(logs: dict[str, list[dict]], path: Path) -> None:
    save_figure(training_figure(logs), path, dpi=110)


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
    cfg = require(params, "report")
    require(params, "seeds")
    require(params, "model.dir")
    collected = collect(paths.models(params), [str(k) for k in require(params, "hypotheses")])
    by_model = by_model_table(collected, cfg["reference"])
    headline = headline_table(by_model)
    with atomic_path(paths.RESULTS_BY_MODEL_CSV) as tmp:
        by_model.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(paths.RESULTS_CSV) as tmp:
        headline.to_csv(tmp, index=False, float_format="%.4f")
    text = markdown(headline, by_model, collected, cfg["reference_losses"])
    with atomic_path(paths.RESULTS_MD) as tmp:
        tmp.write_text(text)
    chart(headline, by_model, Path(paths.RECOVERED_FIGURE))
    write_page(params, collected)
    print(text)


if __name__ == "__main__":
    run_stage(main)
