"""report: every hypothesis × Q/K/V/All next to the writeup's numbers.

Reads data/scrub/<key>/metrics.json for each key of params' `hypotheses`, in that order (a folder
left by a hypothesis no longer in params is not read: DVC does not delete it); writes
reports/results.csv, reports/results.md, the bar chart reports/recovered.png (declared under
`plots:` in dvc.yaml), the training curves reports/training.png (from data/model/train_log.json)
and the review page reports/index.html (pipeline/page.py), which also shows the head views, the
per-token breakdowns and the sweep where their stages have written them.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline import page, paths
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


# Panels of the training figure: which train_log.json keys share an axis (a log lacking one is drawn
# without it: older logs and other recipes record fewer).
TRAINING_PANELS = [("train loss (nats)", ["train_loss"]),
                   ("head scores during training", ["prev_token", "induction", "induction_frequent"]),
                   ("loss drop on repeated tokens (nats)", ["repeat_gain", "repeat_gain_frequent"])]


def training_chart(log: list[dict], path: Path) -> None:
    """data/model/train_log.json (one dict per evaluation: step and measurements) → three panels."""
    panels = [(title, [k for k in keys if any(k in row for row in log)]) for title, keys in TRAINING_PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.2), squeeze=False)
    if not panels:
        # A loaded model (model=redwood, model=file) has an empty log; the figure is a declared
        # output all the same, so it says so rather than being absent.
        axes[0][0].text(0.5, 0.5, "no training log: the model was loaded, not trained", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            steps = [row["step"] for row in log if key in row]
            ax.plot(steps, [row[key] for row in log if key in row], marker=".", label=key)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_page(params: dict, metrics: list[dict], root: Path = Path(".")) -> None:
    """reports/training.png and reports/index.html under `root`."""
    log_path = root / paths.TRAIN_LOG
    log = json.loads(log_path.read_text()) if log_path.exists() else []
    training_chart(log, root / paths.TRAINING_FIGURE)
    html = page.build(params, {m["hypothesis"]: m for m in metrics}, root)
    with atomic_path(root / paths.REPORT_PAGE) as tmp:
        tmp.write_text(html)


def main() -> None:
    params = load_params()
    cfg = require(params, "report")
    metrics = collect(Path(paths.SCRUB), [str(k) for k in require(params, "hypotheses")])
    frame = table(metrics, cfg["reference"])
    with atomic_path("reports/results.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path("reports/results.md") as tmp:
        tmp.write_text(markdown(frame, metrics, cfg["reference_losses"]))
    chart(frame, Path(paths.RECOVERED_FIGURE))
    write_page(params, metrics)
    print(open("reports/results.md").read())


if __name__ == "__main__":
    run_stage(main)
