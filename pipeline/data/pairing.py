"""The fixed pairing of experiment sequences: each clean sequence `c` gets the one other sequence
`o` (the writeup's emb2) that every experiment patches in, so that comparisons between
experiments share their noise."""
from __future__ import annotations

import numpy as np

from pipeline.errors import ConfigError


def pair_sequences(n: int, seed: int) -> np.ndarray:
    """A random derangement of range(n): other[i] is sequence i's partner, never i itself.
    [n] int64, the same for the same seed.

    Drawn by rejection (redraw a permutation until it has no fixed point), which makes every
    derangement equally likely; about e ≈ 2.7 draws are needed on average. Being a permutation,
    every sequence is also the partner of exactly one other."""
    if n < 2:
        raise ConfigError("sequences", f"pairing needs at least 2 sequences, got {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("pairing.seed", f"must be an integer ≥ 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    index = np.arange(n)
    while True:
        other = rng.permutation(n)
        if not (other == index).any():
            return other.astype(np.int64)
