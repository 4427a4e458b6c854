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
    for row in shown.itertuples():
        ax.annotate(row.name, (row.complexity, row.heldout), textcoords="offset points", xytext=(6, -10),
                    fontsize=8, color="tab:red")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("complexity (kept pieces: docs/hypotheses.md, search.cost)")
    ax.set_ylabel(f"% loss recovered, {objective.upper() if objective != 'all' else 'All'}")
    ax.set_title(f"Model {model}: the best hypothesis found at each complexity")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
