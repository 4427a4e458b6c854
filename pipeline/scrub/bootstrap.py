"""% loss recovered and the bootstrap over sequences that every interval of the pipeline uses:
one seeded draw of resampling weights, shared by every loss it resamples, so intervals of
different scrubs of the same sequences are paired. Numpy only (no engine, no torch): the claims
stage resamples the scrub stages' stored per-sequence losses with it (pipeline/scrub/claims.py)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BOOTSTRAP_CHUNK = 100
LEVEL = 95.0  # every interval: the central 95% of the bootstrap distribution


def recovered(baseline, original, scrubbed):
    """(L_baseline - L_scrubbed) / (L_baseline - L_original) · 100; may leave [0, 100]. Numbers or arrays."""
    return 100.0 * (baseline - scrubbed) / (baseline - original)


def bootstrap_means(loss_sums: Mapping[str, np.ndarray], count: np.ndarray, samples: int,
                    seed: int) -> dict[str, np.ndarray]:
    """Each name's mean loss per scored position in `samples` bootstrap resamples of the sequences:
    name → [sample]. `loss_sums`: name → per-sequence loss sums [seq]; `count`: scored positions per
    sequence [seq]. Every name is resampled with the same weights (the draws depend only on the
    number of sequences, `samples` and `seed`), so differences between names are paired."""
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
    """The central LEVEL% of a bootstrap distribution [sample]."""
    lo, hi = np.percentile(dist, [(100 - LEVEL) / 2, (100 + LEVEL) / 2])
    return float(lo), float(hi)
