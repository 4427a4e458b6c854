"""The search's figure: the frontier it found, with intervals, and the hypotheses of `hypotheses`
placed on the same axes (complexity by the search's count, % loss recovered on the held-out half)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report.figures import plt, save_figure


def search_figure(frontier: pd.DataFrame, path: pd.DataFrame, placed: pd.DataFrame, model: str, objective: str,
                  out: Path | str) -> None:
    """frontier: the search stage's frontier.csv; path: its path.csv; placed: the frontier stage's
    placed.csv (hypothesis, name, complexity, heldout, ci_low, ci_high)."""
    fig, ax = plt.subplots(figsize=(8.5, 5))
    err = np.clip([frontier.heldout - frontier.ci_low, frontier.ci_high - frontier.heldout], 0, None)
    ax.errorbar(frontier.complexity, frontier.heldout, yerr=err, color="tab:blue", marker="o", capsize=3,
                drawstyle="steps-post", label="search frontier (held-out half, 95% CI)")
    steps = path[path.phase != "start"]
    ax.plot(steps.complexity, steps.heldout, color="tab:blue", alpha=0.35, linestyle=":", marker=".",
            label="search path (forward, then pruning)")
    shown = placed[placed.hypothesis != "baseline"]
    err = np.clip([shown.heldout - shown.ci_low, shown.ci_high - shown.heldout], 0, None)
    ax.errorbar(shown.complexity, shown.heldout, yerr=err, color="tab:red", marker="s", linestyle="none", capsize=3,
                label="the writeup's hypotheses (held-out half)")
    # labels to the right, pushed apart vertically where points are close (refined 4 and bonus 5
    # sit one unit apart), each joined to its point by a thin line
    span = max(1.0, float(frontier.complexity.max()), float(shown.complexity.max()) if len(shown) else 1.0)
    placed_labels: list[tuple[float, float]] = []
    for row in shown.sort_values("heldout").itertuples():
        y = row.heldout
        for x0, y0 in placed_labels:
            if abs(x0 - row.complexity) < 0.12 * span and y < y0 + 5:
                y = y0 + 5
        placed_labels.append((row.complexity, y))
        ax.annotate(row.name, (row.complexity, row.heldout), xytext=(row.complexity + 0.02 * span, y - 1.5),
                    fontsize=8, color="tab:red", arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.5})
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("complexity (kept pieces: docs/hypotheses.md, search.cost)")
    ax.set_ylabel(f"% loss recovered, {objective.upper() if objective != 'all' else 'All'}")
    ax.set_title(f"Model {model}: the best hypothesis found at each complexity")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
