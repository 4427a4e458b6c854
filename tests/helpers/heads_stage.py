"""A folder the heads stage runs in: a small random model, experiment sequences, a tokenizer, a
whitelist and params.yaml."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from pipeline.data.tokenizer import train_bpe
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.weights.checkpoint import save_checkpoint

THRESHOLDS = {"min_previous_token_score": 0.3, "min_same_token_score": 0.3, "max_self_heads": 3,
              "min_induction_score": 0.1}


def heads_project(tmp: Path, roles: dict, n_sequences: int = 4, d_vocab: int = 40, **heads) -> Path:
    """`tmp` with what `python -m pipeline.stages.heads 0` reads: a random model of `d_vocab`
    tokens, `n_sequences` experiment sequences (BEGIN + 21 tokens), params.yaml with `roles` and
    the heads section (4 held-out and 4 repeated sequences, batches of 3) updated by `heads`."""
    torch.manual_seed(0)
    (tmp / "data/model/seed0").mkdir(parents=True)
    (tmp / "data/tokens").mkdir(parents=True)
    save_checkpoint(AttnOnlyTransformer(ModelConfig(d_vocab=d_vocab, n_ctx=32, d_model=32, n_heads=4, d_head=8)),
                    tmp / "data/model/seed0/model.pt")
    rng = np.random.default_rng(0)
    # each sequence repeats its first ten tokens, so the head views find an example
    halves = [rng.permutation(np.arange(2, 40))[:10] for _ in range(n_sequences)]
    tokens = [np.concatenate([[0], half, half, [5]]) for half in halves]
    pd.DataFrame({"seq_id": range(n_sequences), "doc_id": ["d"] * n_sequences, "offset": [0] * n_sequences,
                  "tokens": tokens}).to_parquet(tmp / "data/tokens/sequences.parquet", index=False)
    (tmp / "data/tokens/meta.json").write_text(json.dumps({"begin_id": 0, "end_id": 1, "d_vocab": d_vocab}))
    train_bpe(["the cat sat on the mat, and the dog sat on the log."] * 20, 300).save(
        str(tmp / "data/tokens/tokenizer.json"))
    (tmp / "data/whitelist").mkdir(parents=True)
    pd.DataFrame({"token": np.arange(40), "whitelisted": True}).to_parquet(tmp / "data/whitelist/whitelist.parquet")
    params = {"seeds": [0], "model": {"source": "file", "dir": "data/model", "file": "data/model/seed0/model.pt"},
              "roles": roles,
              "heads": {**THRESHOLDS, "heldout_sequences": 4, "repeat_length": 10, "repeat_sequences": 4,
                        "batch_size": 3, "views": {"max_offset": 4, "window": 16, "seed": 0}, **heads}}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp
