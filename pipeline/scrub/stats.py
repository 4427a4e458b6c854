"""Loss summaries: mean over scored positions, % loss recovered, bootstrap intervals."""
from __future__ import annotations

import numpy as np

from pipeline.scrub.engine import Losses

BOOTSTRAP_CHUNK = 100


def recovered(baseline: float, original: float, scrubbed: float) -> float:
    """(L_baseline - L_scrubbed) / (L_baseline - L_original) · 100; may leave [0, 100]."""
    return 100.0 * (baseline - scrubbed) / (baseline - original)


def bootstrap_means(loss_sums: dict[str, np.ndarray], count: np.ndarray, samples: int,
                    seed: int) -> dict[str, np.ndarray]:
    """Mean loss per scored position of each named array of per-sequence loss sums [seq], under
    `samples` bootstrap resamplings of the sequences [sample]. All names share each resampling
    (paired), and the same seed and sequence count give the same resamplings: numbers from
    separate calls are paired too. count [seq]: scored positions per sequence."""
    n_seq = len(count)
    rng = np.random.default_rng(seed)
    boot: dict[str, list[np.ndarray]] = {name: [] for name in loss_sums}
    # Resampling weights in chunks of samples, so memory stays bounded however many sequences
    # there are; the generator draws row by row, so the chunks give the same draws as one call.
    for start in range(0, samples, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, samples - start)
        weights = rng.multinomial(n_seq, np.full(n_seq, 1.0 / n_seq), size=size).astype(np.float64)  # [sample, seq]
        counts = weights @ count
        for name, sums in loss_sums.items():
            boot[name].append((weights @ sums) / counts)
    return {name: np.concatenate(chunks) for name, chunks in boot.items()}


def interval(dist: np.ndarray) -> tuple[float, float]:
    """The bootstrap 95% interval of a distribution [sample]."""
    lo, hi = np.percentile(dist, [2.5, 97.5])
    return float(lo), float(hi)


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
        out[part] = {"loss": losses[part].mean(), "recovered": float(point), "ci_low": lo, "ci_high": hi}
    return out
