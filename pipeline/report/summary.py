"""The report stage's figures: the bar chart of % loss recovered (reports/recovered.png) and every
model's training curves (reports/training.png). `*_figure` builds a figure, `*_chart` writes it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from pipeline.report.figures import plt, save_figure
from pipeline.report.results import PART_LABELS


def recovered_figure(headline: pd.DataFrame, by_model: pd.DataFrame):
    """Bars: the headline value (the mean across models); whiskers: the headline's spread; with
    several models, each model's value as a dot on its bar; black ticks: the writeup.
    `headline`, `by_model`: pipeline.report.results' headline_table and by_model_table."""
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


def recovered_chart(headline: pd.DataFrame, by_model: pd.DataFrame, path: Path | str) -> None:
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


def training_chart(logs: dict[str, list[dict]], path: Path | str) -> None:
    save_figure(training_figure(logs), path, dpi=110)
