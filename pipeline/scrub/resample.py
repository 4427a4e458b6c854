"""Conditional resampling: classify positions by token rules, then draw per position a
sequence whose same position falls in the same class (bonus hypothesis 5's typicality)."""
from __future__ import annotations

import numpy as np

from pipeline.config.hypothesis import Resampler


def resolve_rules(resampler: Resampler, encode) -> list[dict[str, set[int]]]:
    """Token strings → token ids through `encode(text) -> list[int]` (the tokenizer in use).
    `*_token` rules take strings that are one token (others cannot match and are dropped);
    `*_piece_of` rules take every token of the string's encoding (a quote character that BPE
    splits into byte tokens counts through each piece)."""
    resolved = []
    for rules in resampler.classes.values():
        ids: dict[str, set[int]] = {"previous": set(), "current": set()}
        for rule, texts in rules.items():
            where = rule.split("_")[0]
            for text in texts:
                tokens = list(encode(text))
                if rule.endswith("piece_of"):
                    ids[where] |= set(tokens)
                elif len(tokens) == 1:
                    ids[where].add(tokens[0])
        resolved.append(ids)
    return resolved


def classify_positions(tokens: np.ndarray, classes: list[dict[str, set[int]]]) -> np.ndarray:
    """tokens [seq, pos] (inputs) → class index per position [seq, pos]: the first class whose
    rules match, len(classes) where none does. Position 0 has no previous token."""
    previous = np.full_like(tokens, -1)
    previous[:, 1:] = tokens[:, :-1]
    out = np.full(tokens.shape, len(classes), dtype=np.int64)
    for index in reversed(range(len(classes))):
        ids = classes[index]
        hit = np.isin(previous, list(ids["previous"])) | np.isin(tokens, list(ids["current"]))
        out[hit] = index
    return out


def draw_matching(classes: np.ndarray, seed: int) -> np.ndarray:
    """For every (sequence n, position t), a sequence m ≠ n with classes[m, t] == classes[n, t],
    uniformly and seeded: [seq, pos]. Where n is alone in its class at t, m = n."""
    rng = np.random.default_rng(seed)
    n_seq, n_pos = classes.shape
    drawn = np.empty((n_seq, n_pos), dtype=np.int64)
    for t in range(n_pos):
        for value in np.unique(classes[:, t]):
            members = np.flatnonzero(classes[:, t] == value)
            if len(members) == 1:
                drawn[members, t] = members
                continue
            # Draw among the other members: an index in [0, k-1), skipping the member itself.
            pick = rng.integers(0, len(members) - 1, size=len(members))
            pick += pick >= np.arange(len(members))
            drawn[members, t] = members[pick]
    return drawn
