"""What the head views of the heads stage show, computed from attention patterns (no file I/O, no
plotting): each head's mean attention by relative position, and the choice of one example
sequence with a repeated token.

Patterns come from the model's one forward pass (pipeline.analysis.scores.layer_patterns, i.e.
`run_with_cache` and `blocks.L.attn.hook_pattern`); nothing here recomputes attention. This is
not in pipeline/analysis/scores.py because the model stage depends on that file: an addition there would
make `dvc repro` retrain the committed model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


def relative_attention(pattern: torch.Tensor, max_offset: int) -> torch.Tensor:
    """Mean attention from each query t to key t − k, for k = 0 (itself) … max_offset:
    pattern [batch, head, query_pos, key_pos] → [head, max_offset + 1].

    The mean is over the same queries for every offset, those with t ≥ max_offset (so that each
    offset exists for each of them): a head's row then sums to at most 1, the rest of its
    attention going further back than max_offset."""
    n_pos = pattern.shape[-1]
    if not 0 <= max_offset < n_pos:
        raise ValueError(f"max_offset={max_offset} needs 0 ≤ max_offset < {n_pos} positions")
    # diagonal(-k) holds A[t, t-k] for t = k … n_pos-1; entry j is query k + j, so queries
    # t ≥ max_offset start at entry max_offset - k: every offset keeps n_pos - max_offset queries.
    by_offset = [pattern.diagonal(offset=-k, dim1=-2, dim2=-1)[..., max_offset - k:] for k in range(max_offset + 1)]
    return torch.stack(by_offset, dim=-1).mean(dim=(0, 2))  # [batch, head, query, offset] → [head, offset]


@dataclass(frozen=True)
class Example:
    """One repeated token in one sequence: token A at `query` occurred once before, at `earlier`,
    and the token after it repeats too (x[earlier + 1] = x[query + 1]), so an induction head at `query`
    should attend to `earlier + 1`. The view shows positions start … stop - 1."""

    row: int          # row of the sequences array
    query: int        # t
    earlier: int      # s, the one earlier copy of x[t]
    start: int
    stop: int
    candidates: int   # how many (sequence, t) met the rule


def example_rule(window: int, seed: int) -> str:
    """The rule `pick_example` follows, in words (stored with the example in data/heads/seed<N>/views.json)."""
    return (f"every (sequence, position t) of the experiment sequences (the model's input, BEGIN + "
            f"seq_len tokens) where the token at t is whitelisted and occurred exactly once before, at "
            f"some s with t - {window - 2} <= s <= t - 2, and the token after it repeats too "
            f"(x[s+1] = x[t+1]); one of them chosen uniformly by numpy.random.default_rng({seed}) "
            f"among the candidates in (sequence, t) order; the view shows the {window} positions "
            f"ending at t+1 (fewer where t+1 < {window - 1})")


def repeat_candidates(tokens: np.ndarray, allowed: np.ndarray, window: int) -> np.ndarray:
    """Every (row, t, s) of `tokens` [n_seq, pos] meeting example_rule's condition, `allowed`
    [d_vocab] marking the whitelisted tokens; sorted by row then t: [n, 3]."""
    n_seq, n_pos = tokens.shape
    if window < 4:
        raise ValueError(f"window={window} cannot show A B … A B: it needs at least 4 positions")
    found = np.full((n_seq, n_pos), -1, dtype=np.int64)  # s for each (row, t), -1 where none
    ts = np.arange(n_pos - 1)  # t + 1 must be a position of the sequence
    # Largest gap first, so that the smallest gap (the latest copy) is written last and wins.
    for gap in range(min(window - 2, n_pos - 2), 1, -1):
        t = ts[gap:]
        hit = (tokens[:, t] == tokens[:, t - gap]) & (tokens[:, t + 1] == tokens[:, t - gap + 1])
        found[:, t] = np.where(hit, t - gap, found[:, t])
    found[~allowed[tokens]] = -1
    # With a second earlier copy, an induction head may look at either (or the model may not
    # rely on induction at all): the view is clear only where s is the first occurrence.
    found[earlier_copies(tokens) != 1] = -1
    rows, t = np.nonzero(found >= 0)
    return np.stack([rows, t, found[rows, t]], axis=1)


def earlier_copies(tokens: np.ndarray) -> np.ndarray:
    """How often each position's token occurred before it in its row: [n_seq, pos]."""
    counts = np.empty_like(tokens, dtype=np.int64)
    for row, x in enumerate(tokens):
        order = np.argsort(x, kind="stable")  # equal tokens stay in position order
        ranked = x[order]
        group_start = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        starts = np.repeat(group_start, np.diff(np.r_[group_start, len(x)]))
        counts[row, order] = np.arange(len(x)) - starts
    return counts


def pick_example(candidates: np.ndarray, window: int, seed: int) -> Example | None:
    """The example of example_rule(window, seed) among `candidates` (repeat_candidates), or None
    when there are none."""
    if not len(candidates):
        return None
    row, t, s = (int(v) for v in candidates[np.random.default_rng(seed).integers(len(candidates))])
    stop = t + 2
    start = max(0, stop - window)
    return Example(row=row, query=t, earlier=s, start=start, stop=stop, candidates=len(candidates))


def attention_at_candidates(patterns_of: Callable[[torch.Tensor], list[torch.Tensor]], tokens: np.ndarray,
                            candidates: np.ndarray, heads: list[tuple[int, int]], batch_size: int = 16) -> np.ndarray:
    """Each (layer, head)'s attention from t to s + 1, to s and to position 0 at every candidate
    (row, t, s): [candidate, head, 3]. patterns_of: tokens [batch, pos] → per layer
    [batch, head, q, k] (pipeline.analysis.scores.layer_patterns), run on the candidates' rows in batches
    so that the patterns of only `batch_size` sequences are held at once."""
    out = np.zeros((len(candidates), len(heads), 3))
    rows = np.unique(candidates[:, 0])
    for first in range(0, len(rows), batch_size):
        chunk = rows[first : first + batch_size]
        patterns = patterns_of(torch.from_numpy(tokens[chunk]).long())
        for i in np.flatnonzero(np.isin(candidates[:, 0], chunk)):
            row, t, s = candidates[i]
            b = int(np.searchsorted(chunk, row))
            for j, (layer, h) in enumerate(heads):
                out[i, j] = patterns[layer][b, h, t, [s + 1, s, 0]].numpy()
    return out
