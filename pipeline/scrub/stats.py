"""Loss summaries: mean over scored positions, % loss recovered, bootstrap intervals."""
from __future__ import annotations

import numpy as np

from pipeline.scrub.engine import Losses

BOOTSTRAP_CHUNK = 100


def recovered(baseline: float, original: float, scrubbed: float) -> float:
    """(L_baseline - L_scrubbed) / (L_baseline - L_original) · 100; may leave [0, 100]."""
    return 100.0 * (baseline - scrubbed) / (baseline - original)


def summarize(losses: dict[str, Losses], parts: list[str], n_positions: int, samples: int, seed: int) -> dict:
    """Metrics of one hypothesis: original and baseline losses, and per part the loss, % loss
    recovered with a bootstrap 95% interval over sequences (resampling sequences jointly for
    the original, baseline and scrubbed losses, so the interval reflects the paired data).
    `n_positions`: positions per sequence, for REMIX's scale (sum over all positions)."""
    original, baseline = losses["original"], losses["baseline"]
    n_seq = len(original.count)
    names = ["original", "baseline"] + parts
    rng = np.random.default_rng(seed)
    boot: dict[str, list[np.ndarray]] = {name: [] for name in names}
    # Resampling weights in chunks of samples, so memory stays bounded however many sequences
    # there are; the generator draws row by row, so the chunks give the same draws as one call.
    for start in range(0, samples, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, samples - start)
        weights = rng.multinomial(n_seq, np.full(n_seq, 1.0 / n_seq), size=size).astype(np.float64)  # [sample, seq]
        counts = weights @ original.count
        for name in names:
            boot[name].append((weights @ losses[name].loss_sum) / counts)
    boot = {name: np.concatenate(chunks) for name, chunks in boot.items()}
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
        lo, hi = np.percentile(dist, [2.5, 97.5])
        out[part] = {"loss": losses[part].mean(), "recovered": float(point), "ci_low": float(lo), "ci_high": float(hi)}
    return out
