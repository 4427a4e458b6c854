"""heads: measure every head and settle the roles the hypotheses refer to.

Scores (data/heads/scores.json, a DVC metrics file): per head, mean attention to the previous
token and to earlier copies of the current token on held-out sequences; per layer-1 head,
attention to the induction target on repeated random tokens; the loss on the first and second
copy of those tokens. Roles (data/heads/roles.json): `roles.*` from config where given, else
proposed from the scores (pipeline.roles).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import paths
from pipeline.checkpoint import load_checkpoint
from pipeline.roles import propose_roles, resolve_roles
from pipeline.scores import head_scores, repeated_random_tokens
from pipeline.tokenizer import ordinary_ids
from pipeline.stage import ConfigError, load_params, require, run_stage, write_json


def main() -> None:
    params = load_params()
    cfg = require(params, "heads")
    meta = json.loads(Path(paths.TOKENS_META).read_text())
    model = load_checkpoint(require(params, "model.path"), "model.path").eval()
    seqs = pd.read_parquet(paths.SEQUENCES).tokens
    if len(seqs[0]) - 1 > model.cfg.n_ctx:
        raise ConfigError("sequences.seq_len",
                          f"{len(seqs[0]) - 2} + BEGIN exceeds the model's context n_ctx={model.cfg.n_ctx}")
    heldout = torch.tensor(np.stack(seqs.head(cfg["heldout_sequences"]).map(np.asarray).tolist()), dtype=torch.long)
    length = cfg["repeat_length"]
    if 1 + 2 * length > model.cfg.n_ctx:
        raise ConfigError("heads.repeat_length", f"1 + 2·{length} exceeds n_ctx={model.cfg.n_ctx}")
    repeated = repeated_random_tokens(cfg["repeat_sequences"], length, ordinary_ids(meta),
                                      meta["begin_id"], seed=0)
    scores = head_scores(model, heldout[:, :-1], repeated, length)
    roles = resolve_roles(require(params, "roles"), lambda given: propose_roles(scores, cfg, given), model.cfg)
    summary = {
        "max_previous_token_score_layer0": max(scores["previous_token_score"][0]),
        "max_induction_score": max(scores["induction_score"]),
        "repeat_loss_drop": scores["loss_first_half"] - scores["loss_second_half"],
    }
    write_json(paths.HEAD_SCORES, {**summary, **scores})
    write_json(paths.ROLES, roles)
    print("roles:", roles, "|", {k: round(v, 3) for k, v in summary.items()})


if __name__ == "__main__":
    run_stage(main)
