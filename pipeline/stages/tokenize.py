"""tokenize: build the tokenizer, the training token stream and the experiment sequences.

Outputs in data/tokens/: tokenizer.json; train.parquet (doc_id, tokens: one row per training
document); sequences.parquet (seq_id, doc_id, offset, tokens = BEGIN + seq_len tokens + 1 target,
cut from held-out documents); meta.json (special ids, vocabulary size, token counts: what the model stage reads, so
that sequence parameters never force a retraining).
"""
from __future__ import annotations

import pandas as pd

from pipeline.stage import ConfigError, atomic_path, load_params, require, run_stage, write_json
from pipeline.tokenizer import encode_documents, gpt2_tokenizer, make_sequences, special_ids, train_bpe

CORPUS = "data/corpus/documents.parquet"
OUT = "data/tokens"


def build_tokenizer(cfg: dict, train_texts: list[str]):
    if cfg["kind"] == "bpe":
        return train_bpe(train_texts, cfg["vocab_size"])
    if cfg["kind"] == "gpt2":
        return gpt2_tokenizer(cfg["source"], cfg.get("begin_id", 50257))
    raise ConfigError("tokenizer.kind", f"unknown tokenizer {cfg['kind']!r}; choose bpe or gpt2")


def main() -> None:
    params = load_params()
    tok_cfg, seq_cfg = require(params, "tokenizer"), require(params, "sequences")
    docs = pd.read_parquet(CORPUS)
    train = docs[docs.split == "train"]
    heldout = docs[docs.split == "heldout"]
    tokenizer = build_tokenizer(tok_cfg, train.text.tolist())
    ids = special_ids(tokenizer)

    train_tokens = encode_documents(tokenizer, train.text.tolist())
    heldout_tokens = encode_documents(tokenizer, heldout.text.tolist())
    sequences = make_sequences(
        heldout_tokens, heldout.doc_id.tolist(), seq_cfg["seq_len"], ids["begin"],
        max_sequences=seq_cfg["max_sequences"], min_sequences=seq_cfg["min_sequences"],
    )

    with atomic_path(f"{OUT}/tokenizer.json") as tmp:
        tokenizer.save(str(tmp))
    with atomic_path(f"{OUT}/train.parquet") as tmp:
        pd.DataFrame({"doc_id": train.doc_id.tolist(), "tokens": [t.tolist() for t in train_tokens]}).to_parquet(tmp, index=False)
    with atomic_path(f"{OUT}/sequences.parquet") as tmp:
        sequences.to_parquet(tmp, index=False)
    meta = {
        "begin_id": ids["begin"],
        "end_id": ids["end"],
        "d_vocab": tokenizer.get_vocab_size(),
        "train_tokens": int(sum(len(t) for t in train_tokens)),
        "heldout_tokens": int(sum(len(t) for t in heldout_tokens)),
    }
    write_json(f"{OUT}/meta.json", meta)
    print(meta, f"{len(sequences)} sequences of {seq_cfg['seq_len']} tokens")


if __name__ == "__main__":
    run_stage(main)
