"""The whitelist of "inductiony" tokens (the writeup's appendix, "How we picked the subset of
tokens"): tokens A after which hard induction predicts the next token B better than bigrams do.

For every adjacent pair A→B inside a training document:
- bigram loss = −log p(B|A), from the full bigram table of the training documents with add-k
  smoothing over the whole vocabulary;
- heuristic loss = −log of B's probability under a two-way softmax that starts from the bigram
  and adds β per earlier occurrence of A in the same document:
      logit(B)     = log p(B|A)       + β·m    m: earlier A's followed by B
      logit(not B) = log(1 − p(B|A))  + β·n    n: earlier A's followed by something else
Both losses are averaged per token A over all its occurrences; A is whitelisted when
mean bigram loss − mean heuristic loss ≥ threshold. With m = n = 0 the two losses are equal, so
only occurrences with an earlier copy of A in the document move the gain.

The same bytes on every CPU: counts are exact integers; losses are float64, and numpy's log and
exp differ between CPUs in their last bits (its AVX-512 loops against its AVX2 ones on the default
corpus: 5 of 3,744 means differ, by up to 2.7e-15 nats). The means are therefore rounded to
LOSS_DECIMALS decimals of a nat, and the gain is the difference of the rounded means, rounded
again, before the threshold decides and before anything is written. A last-bit difference changes
a stored value only when a mean lies that close to a rounding boundary: 6e-9 changed values
expected per pair of CPUs (docs/reproducibility.md).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError

# The precision (decimals of a nat) at which the per-token losses and gains are stored and decided.
LOSS_DECIMALS = 6


def check_params(beta: float, threshold: float, smoothing: float) -> None:
    """ConfigError naming the `whitelist.*` parameter that cannot be used."""
    if not np.isfinite(beta) or beta < 0:
        raise ConfigError("whitelist.beta", f"must be a finite number ≥ 0, got {beta}")
    if not np.isfinite(threshold):
        raise ConfigError("whitelist.threshold", f"must be a finite number, got {threshold}")
    if not np.isfinite(smoothing) or smoothing < 0:
        raise ConfigError("whitelist.smoothing", f"must be a finite number ≥ 0, got {smoothing}")


def prior_count(keys: np.ndarray) -> np.ndarray:
    """For each i, how many j < i have keys[j] == keys[i]: [n] int64.

    A stable sort keeps equal keys in position order, so an element's rank inside its run of
    equal keys is the number of earlier elements with that key."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    index = np.arange(n)
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run_start = np.maximum.accumulate(np.where(starts, index, 0))
    counts = np.empty(n, dtype=np.int64)
    counts[order] = index - run_start
    return counts


def adjacent_pairs(docs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every adjacent pair inside a document, in document then position order: (doc, a, b), each
    [n_pairs] int64. Pairs never cross a document boundary."""
    docs = [np.asarray(d, dtype=np.int64) for d in docs]
    a = [d[:-1] for d in docs]
    b = [d[1:] for d in docs]
    doc = [np.full(len(x), i, dtype=np.int64) for i, x in enumerate(a)]
    if not a or sum(len(x) for x in a) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(doc), np.concatenate(a), np.concatenate(b)


def induction_counts(doc: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m, n of each pair (see the module doc): earlier pairs of the same document with the same A
    and the same B (m), or the same A and another B (n). [n_pairs] each."""
    # Pack (doc, a) and (doc, a, b) into single int64 keys. (a, b) is first renumbered densely so
    # that the packed key stays small even for a 50k vocabulary.
    vocab = int(max(a.max(initial=0), b.max(initial=0))) + 1
    _, pair_code = np.unique(a * vocab + b, return_inverse=True)
    n_codes = int(pair_code.max(initial=0)) + 1
    same_a = prior_count(doc * vocab + a)
    m = prior_count(doc * n_codes + pair_code)
    return m, same_a - m


def pair_losses(a: np.ndarray, b: np.ndarray, m: np.ndarray, n: np.ndarray, d_vocab: int,
                beta: float, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Bigram and heuristic log-loss (nats) of each pair: [n_pairs] each.

    The bigram table is counted on these same pairs; only the entries of observed pairs are ever
    needed, so it is kept sparse (a dense 50k × 50k table would not fit)."""
    pair_id = a * d_vocab + b
    _, pair_code, pair_count = np.unique(pair_id, return_inverse=True, return_counts=True)
    row_count = np.bincount(a, minlength=d_vocab)
    p = (pair_count[pair_code] + smoothing) / (row_count[a] + smoothing * d_vocab)
    bigram = -np.log(p)
    with np.errstate(divide="ignore"):  # p = 1 (no smoothing, one successor): not-B logit is −inf
        logit_b = np.log(p) + beta * m
        logit_not = np.log1p(-p) + beta * n
    heuristic = np.logaddexp(logit_b, logit_not) - logit_b
    return bigram, heuristic


def stored_loss(x: np.ndarray) -> np.ndarray:
    """x rounded to LOSS_DECIMALS decimals (NaN stays NaN). Multiply, round to integer, divide: exact
    IEEE operations, the same on every CPU."""
    return np.round(np.asarray(x, dtype=np.float64), LOSS_DECIMALS)


def token_stats(docs: Sequence[np.ndarray], d_vocab: int, special: Iterable[int], beta: float,
                threshold: float, smoothing: float) -> pd.DataFrame:
    """Per-token whitelist stats over the training documents `docs` (token ids, no BEGIN).

    One row per vocabulary id: token, count (occurrences of the token as A, i.e. followed by a
    token in its document), bigram_loss, heuristic_loss (means over those occurrences, rounded to
    LOSS_DECIMALS; NaN when count is 0), gain = bigram_loss − heuristic_loss (rounded likewise),
    whitelisted (gain ≥ threshold and not a special token).

    No minimum count of A: rare tokens barely weigh in the scored positions. On the default
    Brown corpus (2048-token BPE, β = 1, threshold 0.1) every whitelisted token occurs at least 5
    times, and the 5 of 118 that occur under 20 times cover 10 of 5742 scored positions."""
    check_params(beta, threshold, smoothing)
    doc, a, b = adjacent_pairs(docs)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= d_vocab):
        raise ConfigError("tokenizer", f"training tokens fall outside the vocabulary of {d_vocab}")
    m, n = induction_counts(doc, a, b)
    bigram, heuristic = pair_losses(a, b, m, n, d_vocab, beta, smoothing)

    count = np.bincount(a, minlength=d_vocab)
    with np.errstate(invalid="ignore", divide="ignore"):  # tokens never seen as A: NaN
        bigram_mean = stored_loss(np.bincount(a, weights=bigram, minlength=d_vocab) / count)
        heuristic_mean = stored_loss(np.bincount(a, weights=heuristic, minlength=d_vocab) / count)
    gain = stored_loss(bigram_mean - heuristic_mean)  # the rounded means' difference is not on the grid
    whitelisted = np.nan_to_num(gain, nan=-np.inf) >= threshold
    whitelisted[[s for s in special if 0 <= s < d_vocab]] = False
    return pd.DataFrame({
        "token": np.arange(d_vocab, dtype=np.int64),
        "count": count.astype(np.int64),
        "bigram_loss": bigram_mean,
        "heuristic_loss": heuristic_mean,
        "gain": gain,
        "whitelisted": whitelisted,
    })


def summarize(stats: pd.DataFrame, positions: np.ndarray | None = None) -> dict:
    """count: whitelisted tokens; share_of_vocab: of all vocabulary ids; share_of_train_pairs:
    of the training pairs A→B whose A is whitelisted; with `positions` (token ids of the
    positions the scrubs score, any shape), share_of_positions and scored_positions there."""
    whitelisted = stats.whitelisted.to_numpy()
    counts = stats["count"].to_numpy()
    summary = {
        "count": int(whitelisted.sum()),
        "share_of_vocab": float(whitelisted.mean()),
        "share_of_train_pairs": float(counts[whitelisted].sum() / max(1, counts.sum())),
    }
    if positions is not None:
        scored = whitelisted[np.asarray(positions).reshape(-1)]
        summary["scored_positions"] = int(scored.sum())
        summary["share_of_positions"] = float(scored.mean()) if scored.size else 0.0
    return summary
