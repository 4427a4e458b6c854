"""report: every hypothesis × Q/K/V/All next to the writeup's numbers.

Reads data/scrub/<key>/metrics.json for each key of params' `hypotheses`, in that order (a folder
left by a hypothesis no longer in params is not read: DVC does not delete it); writes
reports/results.csv, reports/results.md and the bar chart reports/recovered.png (declared under
`plots:` in dvc.yaml).
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.stage import ConfigError, atomic_path, load_params, require, run_stage

PART_LABELS = {"q": "Q", "k": "K", "v": "V", "all": "All"}


def collect(folder: Path, keys: list[str]) -> list[dict]:
    """The metrics of exactly the hypotheses `keys`, in that order."""
    if not keys:
        raise ConfigError("hypotheses", "is empty: nothing to report")
    found = []
    for key in keys:
        path = folder / key / "metrics.json"
        if not path.exists():
            raise ConfigError(f"hypotheses.{key}", f"has no {path}: run its scrub stage first (dvc repro)")
        metrics = json.loads(path.read_text())
        if metrics.get("hypothesis") != key:
            raise ConfigError(f"hypotheses.{key}", f"{path} is the result of {metrics.get('hypothesis')!r}")
        found.append(metrics)
    return found


def table(metrics: list[dict], reference: dict) -> pd.DataFrame:
    rows = []
    for m in metrics:
        ref = reference.get(m["hypothesis"]) or [None] * 4
        for i, part in enumerate(PART_LABELS):
            if part not in m:
                continue
            rows.append({"hypothesis": m["hypothesis"], "part": PART_LABELS[part], "recovered": m[part]["recovered"],
                         "ci_low": m[part]["ci_low"], "ci_high": m[part]["ci_high"], "loss": m[part]["loss"],
                         "writeup": ref[i], "original_loss": m["original_loss"], "baseline_loss": m["baseline_loss"]})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, metrics: list[dict], reference_losses: dict) -> str:
    lines = ["# Causal scrubbing of induction heads: results", "",
             "% loss recovered on whitelisted positions, with bootstrap 95% intervals over sequences; "
             "the writeup's published numbers in brackets.", "",
             "| hypothesis | Q | K | V | All |", "|---|---|---|---|---|"]
    for name, group in frame.groupby("hypothesis", sort=False):
        cells = []
        for _, r in group.iterrows():
            ref = "" if pd.isna(r.writeup) else f" [{r.writeup:.0f}]"
            cells.append(f"{r.recovered:.1f} ({r.ci_low:.1f}–{r.ci_high:.1f}){ref}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    m = metrics[0]
    lines += ["", f"Loss on whitelisted positions: original {m['original_loss']:.4f}, baseline {m['baseline_loss']:.4f} "
              f"(writeup: {reference_losses.get('original')}, {reference_losses.get('baseline')}); "
              f"{m['scored_positions']} scored positions ({100 * m['scored_share']:.1f}% of all)."]
    return "\n".join(lines) + "\n"


def chart(frame: pd.DataFrame, path: Path) -> None:
    names = list(dict.fromkeys(frame.hypothesis))
    parts = list(PART_LABELS.values())
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    width = 0.8 / len(parts)
    for i, part in enumerate(parts):
        sub = frame[frame.part == part].set_index("hypothesis").reindex(names)
        x = np.arange(len(names)) + (i - (len(parts) - 1) / 2) * width
        # A percentile interval need not contain the point estimate (few sequences, a skewed
        # ratio): the bar then shows no whisker on that side rather than a negative one.
        err = np.clip(np.vstack([sub.recovered - sub.ci_low, sub.ci_high - sub.recovered]), 0, None)
        ax.bar(x, sub.recovered, width, yerr=err, capsize=2, label=part)
        ax.scatter(x, sub.writeup, marker="_", s=120, color="black", zorder=3, label="writeup" if i == 0 else None)
    ax.set_xticks(np.arange(len(names)), names, rotation=20)
    ax.set_ylabel("% loss recovered")
    ax.axhline(100, color="grey", lw=0.5)
    ax.legend(ncol=5, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    params = load_params()
    cfg = require(params, "report")
    metrics = collect(Path(paths.SCRUB), [str(k) for k in require(params, "hypotheses")])
    frame = table(metrics, cfg["reference"])
    with atomic_path("reports/results.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path("reports/results.md") as tmp:
        tmp.write_text(markdown(frame, metrics, cfg["reference_losses"]))
    chart(frame, Path("reports/recovered.png"))
    print(open("reports/results.md").read())


if __name__ == "__main__":
    run_stage(main)
