"""tokenize: build the tokenizer, the training token stream and the experiment sequences.

Outputs in data/tokens/: tokenizer.json; train.parquet (doc_id, tokens: one row per training
document); sequences.parquet (seq_id, doc_id, offset, tokens = BEGIN + seq_len tokens + 1 target,
cut from held-out documents); meta.json (special ids, vocabulary size, token counts: what the model stage reads, so
that sequence parameters never force a retraining).

Token rows (data=redwood_validation) are not encoded but checked against the tokenizer: ids in
its vocabulary, BEGIN first or not as `data.rows_start_with_begin` says, long enough for
`sequences.seq_len`. Each held-out row gives one sequence, its first seq_len + 1 tokens after
BEGIN (ACDC's inputs and labels of the same row); the training rows, BEGIN dropped, are the text
the whitelist's bigrams are counted on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.config.load import load_params
from pipeline.config.schema import Tokenizer
from pipeline.data.sequences import make_sequences
from pipeline.data.tokenizer import encode_documents, gpt2_tokenizer, special_ids, train_bpe
from pipeline.errors import ConfigError
from pipeline.outputs import atomic_path, run_stage, write_json


def build_tokenizer(cfg: Tokenizer, train_texts: list[str]):
    if cfg.kind == "bpe":
        return train_bpe(train_texts, cfg.vocab_size)
    return gpt2_tokenizer(cfg.source, cfg.begin_id, cfg.cache_dir)


def checked_rows(rows: list, ids: dict, d_vocab: int, starts_with_begin: bool, seq_len: int) -> list[np.ndarray]:
    """Token rows as the tokenizer and sequence length need them, BEGIN removed: [width] each.
    Anything else is a one-line ConfigError naming what is wrong."""
    rows = [np.asarray(r, dtype=np.int64) for r in rows]
    for i, row in enumerate(rows):
        if len(row) and (row.min() < 0 or row.max() >= d_vocab):
            bad = int(row[(row < 0) | (row >= d_vocab)][0])
            raise ConfigError("data.file", f"row {i} holds token id {bad}, outside the tokenizer's {d_vocab} ids "
                                           f"(tokenizer=gpt2 has GPT-2's 50257 + BEGIN and END)")
    firsts = np.asarray([r[0] if len(r) else -1 for r in rows])
    if starts_with_begin:
        wrong = np.flatnonzero(firsts != ids["begin"])
        if len(wrong):
            i = int(wrong[0])
            hint = ("tokenizer.begin_id=" + str(firsts[i]) if firsts[i] == ids["end"]
                    else "data.rows_start_with_begin=false")
            raise ConfigError("data.rows_start_with_begin",
                              f"true, but row {i} starts with {int(firsts[i])}, not BEGIN={ids['begin']} "
                              f"({len(wrong)} of {len(rows)} rows do not); set {hint}")
        rows = [r[1:] for r in rows]
    elif (firsts == ids["begin"]).all():
        raise ConfigError("data.rows_start_with_begin",
                          f"false, but every row starts with BEGIN={ids['begin']}; set data.rows_start_with_begin=true")
    short = min(len(r) for r in rows)
    if short < seq_len + 1:
        raise ConfigError("sequences.seq_len",
                          f"{seq_len} needs rows of seq_len + 1 = {seq_len + 1} tokens after BEGIN (inputs and the "
                          f"last label), but the shortest row has {short}; lower sequences.seq_len")
    return rows


def main() -> None:
    params = load_params()
    tok_cfg, seq_cfg, data = params.tokenizer, params.sequences, params.data
    docs = pd.read_parquet(paths.CORPUS)
    train = docs[docs.split == "train"]
    heldout = docs[docs.split == "heldout"]
    pretokenized = "tokens" in docs.columns
    if pretokenized and tok_cfg.kind != "gpt2":
        raise ConfigError("tokenizer.kind", f"data.source={data.source} holds GPT-2 token ids; it needs "
                                            f"tokenizer=gpt2, not {tok_cfg.kind}")
    tokenizer = build_tokenizer(tok_cfg, [] if pretokenized else train.text.tolist())
    ids = special_ids(tokenizer)

    if pretokenized:
        seq_len = seq_cfg.seq_len
        starts = data.rows_start_with_begin
        train_tokens = checked_rows(train.tokens.tolist(), ids, tokenizer.get_vocab_size(), starts, seq_len)
        heldout_rows = checked_rows(heldout.tokens.tolist(), ids, tokenizer.get_vocab_size(), starts, seq_len)
        # One sequence per row, from its start: the window ACDC takes (inputs [:n], labels [1:n + 1]).
        heldout_tokens = [r[: seq_len + 1] for r in heldout_rows]
    else:
        train_tokens = encode_documents(tokenizer, train.text.tolist())
        heldout_tokens = encode_documents(tokenizer, heldout.text.tolist())
    sequences = make_sequences(
        heldout_tokens, heldout.doc_id.tolist(), seq_cfg.seq_len, ids["begin"],
        max_sequences=seq_cfg.max_sequences, min_sequences=seq_cfg.min_sequences,
    )

    with atomic_path(paths.TOKENIZER) as tmp:
        tokenizer.save(str(tmp))
    with atomic_path(paths.TRAIN_TOKENS) as tmp:
        pd.DataFrame({"doc_id": train.doc_id.tolist(), "tokens": [t.tolist() for t in train_tokens]}).to_parquet(tmp, index=False)
    with atomic_path(paths.SEQUENCES) as tmp:
        sequences.to_parquet(tmp, index=False)
    meta = {
        "begin_id": ids["begin"],
        "end_id": ids["end"],
        "d_vocab": tokenizer.get_vocab_size(),
        "train_tokens": int(sum(len(t) for t in train_tokens)),
        "heldout_tokens": int(sum(len(t) for t in heldout_tokens)),
    }
    write_json(paths.TOKENS_META, meta)
    print(meta, f"{len(sequences)} sequences of {seq_cfg.seq_len} tokens")


if __name__ == "__main__":
    run_stage(main)
