"""Experiment sequences: windows of the held-out token stream, each behind BEGIN, and the
ordinary token ids (all but BEGIN and END) that random tokens are drawn from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError


def ordinary_ids(meta: dict) -> range:
    """Every token id but BEGIN and END, from the tokenizer's metadata (data/tokens/meta.json):
    what random tokens, spans and the frequency ranks of training are drawn from. Both tokenizers
    put the two special tokens at one end of the vocabulary (bpe: 0 and 1; gpt2: 50257 and
    50258), so the ordinary ids are one range."""
    d_vocab, special = int(meta["d_vocab"]), sorted({int(meta["begin_id"]), int(meta["end_id"])})
    lo, hi = 0, d_vocab
    for s in special:
        lo += s == lo
    for s in reversed(special):
        hi -= s == hi - 1
    ordinary = range(lo, hi)
    if not len(ordinary) or any(s in ordinary for s in special):
        raise ConfigError("tokenizer", f"special ids {special} of a {d_vocab}-token vocabulary are not at one "
                                       f"end of it, or leave no ordinary token")
    return ordinary


def make_sequences(docs: list[np.ndarray], doc_ids: list[str], seq_len: int, begin_id: int,
                   max_sequences: int | None = None, min_sequences: int = 1) -> pd.DataFrame:
    """Experiment sequences: non-overlapping windows of `seq_len + 1` tokens of each held-out
    document (the last token is only a target), each behind BEGIN, in document order.
    Columns: seq_id, doc_id, offset (of the window's first token in its document), tokens."""
    if seq_len < 2:
        raise ConfigError("sequences.seq_len", f"must be at least 2, got {seq_len}")
    if max_sequences is not None and max_sequences < max(1, min_sequences):
        raise ConfigError("sequences.max_sequences",
                          f"{max_sequences} is below sequences.min_sequences={min_sequences} (or below 1)")
    rows = []
    width = seq_len + 1
    for doc_id, tokens in zip(doc_ids, docs):
        for offset in range(0, len(tokens) - width + 1, width):
            rows.append((doc_id, offset, np.concatenate([[begin_id], tokens[offset : offset + width]]).astype(np.int32)))
            if max_sequences is not None and len(rows) >= max_sequences:
                break
        if max_sequences is not None and len(rows) >= max_sequences:
            break
    if len(rows) < min_sequences:
        raise ConfigError(
            "sequences.seq_len",
            f"the held-out documents give {len(rows)} sequences of {seq_len} tokens, fewer than "
            f"sequences.min_sequences={min_sequences}: shorten seq_len or add documents",
        )
    return pd.DataFrame({
        "seq_id": np.arange(len(rows), dtype=np.int32),
        "doc_id": [r[0] for r in rows],
        "offset": np.asarray([r[1] for r in rows], dtype=np.int32),
        "tokens": [r[2] for r in rows],
    })


def load_sequences(path: Path | str) -> np.ndarray:
    """sequences.parquet → tokens [n_seq, seq_len + 2] int64."""
    return np.stack(pd.read_parquet(path).tokens.to_numpy()).astype(np.int64)
