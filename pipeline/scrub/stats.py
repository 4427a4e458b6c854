"""Loss summaries: mean over scored positions, % loss recovered, bootstrap intervals (the
resampling itself is pipeline/scrub/bootstrap.py's, shared with the claims stage)."""
from __future__ import annotations

from pipeline.scrub.bootstrap import bootstrap_means, interval, recovered
from pipeline.scrub.engine import Losses

__all__ = ["recovered", "summarize"]


def summarize(losses: dict[str, Losses], parts: list[str], n_positions: int, samples: int, seed: int) -> dict:
    """Metrics of one hypothesis: original and baseline losses, and per part the loss, % loss
    recovered with a bootstrap 95% interval over sequences (resampling sequences jointly for
    the original, baseline and scrubbed losses, so the interval reflects the paired data).
    `n_positions`: positions per sequence, for REMIX's scale (sum over all positions)."""
    original, baseline = losses["original"], losses["baseline"]
    n_seq = len(original.count)
    names = ["original", "baseline"] + parts
    boot = bootstrap_means({name: losses[name].loss_sum for name in names}, original.count, samples, seed)
    out = {
        "original_loss": original.mean(),
        "baseline_loss": baseline.mean(),
        "scored_positions": int(original.count.sum()),
        "scored_share": float(original.count.sum() / (n_seq * n_positions)),
        "remix_scale": {name: float(losses[name].loss_sum.sum() / (n_seq * n_positions))
                        for name in ["original", "baseline"] + parts},
    }
    for part in parts:
        point = recovered(baseline.mean(), original.mean(), losses[part].mean())
        dist = recovered(boot["baseline"], boot["original"], boot[part])
        lo, hi = interval(dist)
        out[part] = {"loss": losses[part].mean(), "recovered": float(point), "ci_low": float(lo), "ci_high": float(hi)}
    return out
