"""Tokenizers (`tokenizer.kind`) and the cutting of experiment sequences.

Both kinds are Hugging Face `tokenizers` objects holding two special tokens, BEGIN and END:
- `bpe`: byte-level BPE trained on the training documents (the offline default). BEGIN and END
  take ids 0 and 1.
- `gpt2`: GPT-2's BPE plus Redwood's two extra tokens at ids 50257 and 50258 (redwood_attn_2l's
  vocabulary of 50,259). Which of the two is BEGIN is `tokenizer.begin_id`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline.stage import ConfigError

BEGIN, END = "[BEGIN]", "[END]"


def train_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE trained on `texts`; BEGIN = 0, END = 1."""
    if vocab_size < 260:
        raise ConfigError("tokenizer.vocab_size", f"{vocab_size} is below the 256 byte tokens + specials")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BEGIN, END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def gpt2_tokenizer(source: str, begin_id: int = 50257) -> Tokenizer:
    """GPT-2's tokenizer (a hub repo id or a local tokenizer.json) with BEGIN and END appended as
    ids 50257 and 50258, in the order `begin_id` says."""
    if begin_id not in (50257, 50258):
        raise ConfigError("tokenizer.begin_id", f"must be 50257 or 50258, got {begin_id}")
    path = Path(source)
    if not path.exists() and (source.startswith((".", "/")) or source.endswith(".json")):
        # A local path that is not there, not a hub repo id: do not ask the network for it.
        raise ConfigError("tokenizer.source", f"{source} does not exist")
    try:
        tok = Tokenizer.from_file(str(path)) if path.exists() else Tokenizer.from_pretrained(source)
    except Exception as err:  # network or file errors: one message naming the parameter
        raise ConfigError("tokenizer.source", f"cannot load a tokenizer from {source!r}: {err}") from err
    base = tok.get_vocab_size()
    if base != 50257:
        raise ConfigError("tokenizer.source", f"{source!r} has {base} tokens; GPT-2's BPE has 50257")
    tok.add_special_tokens([BEGIN, END] if begin_id == 50257 else [END, BEGIN])
    got = (tok.token_to_id(BEGIN), tok.token_to_id(END))
    if got != (begin_id, 50257 + 50258 - begin_id):
        raise ConfigError("tokenizer.source", f"{source!r} already holds {BEGIN} or {END}: they got ids {got}")
    return tok


def special_ids(tok: Tokenizer) -> dict[str, int]:
    ids = {"begin": tok.token_to_id(BEGIN), "end": tok.token_to_id(END)}
    if None in ids.values():
        raise ConfigError("tokenizer", f"the tokenizer lacks {BEGIN} or {END}")
    return ids


def encode_documents(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's token ids. A literal "[BEGIN]" or "[END]" in a text is encoded as the text it
    is, never as the special token (which `tokenizers` would otherwise match in raw text)."""
    previous = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        encodings = tok.encode_batch(texts, add_special_tokens=False)
    finally:
        tok.encode_special_tokens = previous
    return [np.asarray(e.ids, dtype=np.int32) for e in encodings]


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
