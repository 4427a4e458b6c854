"""model@<seed>: one model the experiments run on, saved in our checkpoint format.

    python -m pipeline.stages.model 0

`model.source`: `trained` trains one on the training stream (pipeline.weights.train) with the given seed
(one stage per seed of `seeds`); `redwood` loads Redwood's redwood_attn_2l as
TransformerLens does (pipeline.weights.checkpoint: the repo's *final.pth and config.json, from the hub, a
local snapshot folder or a file); `file` loads a checkpoint of ours. Outputs, under
`model.dir`/seed<N>/: model.pt (committed to git for the trained models; git-ignored for
Redwood's) and train_log.json (empty for loaded models).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import torch

from pipeline import paths
from pipeline.analysis.scores import (
    head_scores,
    induction_measurements,
    repeated_random_tokens,
)
from pipeline.config.load import load_params, model_argument
from pipeline.config.schema import Trained
from pipeline.data.sequences import ordinary_ids
from pipeline.device import resolve_device
from pipeline.errors import ConfigError
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.outputs import atomic_path, run_stage, write_json
from pipeline.weights.checkpoint import file_record, load_checkpoint, save_checkpoint
from pipeline.weights.redwood import load_tl_checkpoint, resolve_redwood
from pipeline.weights.train import (
    RowSampler,
    TrainConfig,
    initialise_for_training,
    train,
)

EVAL_SEQUENCES = 16


def training_stream(end_id: int) -> np.ndarray:
    """The training documents end to end, each closed by END: [tokens] int64."""
    docs = pd.read_parquet(paths.TRAIN_TOKENS).tokens
    return np.concatenate([np.append(np.asarray(t, dtype=np.int64), end_id) for t in docs])


def trained_model(cfg: Trained, meta: dict, seed: int,
                  device: torch.device = torch.device("cpu")) -> tuple[AttnOnlyTransformer, list[dict]]:
    arch = ModelConfig(d_vocab=meta["d_vocab"], n_ctx=cfg.n_ctx, d_model=cfg.d_model,
                       n_heads=cfg.n_heads, d_head=cfg.d_head, n_layers=cfg.n_layers)
    train_cfg = TrainConfig(**cfg.train.model_dump(), seed=seed)  # the schema checked model.d_head and model.train

    torch.manual_seed(train_cfg.seed)
    model = AttnOnlyTransformer(arch)
    try:
        initialise_for_training(model, train_cfg)
    except ValueError as err:
        raise ConfigError("model.train", str(err)) from err
    ordinary = ordinary_ids(meta)  # random spans use ordinary tokens only
    try:
        sampler = RowSampler(training_stream(meta["end_id"]), arch.n_ctx, meta["begin_id"], ordinary,
                             arch.d_vocab, train_cfg)
    except ValueError as err:
        raise ConfigError("model.train", str(err)) from err

    # Progress on text and on repeated random tokens, so a long run can be judged early. The
    # text is a fixed slice of the training stream: reading the held-out sequences would make the
    # model depend on the sequence parameters. The heads stage measures on held-out text.
    stream = sampler.stream
    width = min(301, arch.n_ctx)
    heldout = torch.from_numpy(np.stack([
        np.concatenate([[meta["begin_id"]], stream[i * width : i * width + width - 1]]) for i in range(EVAL_SEQUENCES)
    ]))
    length = min(50, (arch.n_ctx - 1) // 2)
    repeated = repeated_random_tokens(EVAL_SEQUENCES, length, ordinary, meta["begin_id"], seed=1)
    # The same over the curriculum's first span alphabet: induction shows there first.
    frequent = sampler.by_frequency[: train_cfg.alphabet_start or len(sampler.by_frequency)]
    repeated_frequent = torch.from_numpy(frequent)[repeated_random_tokens(
        EVAL_SEQUENCES, length, range(len(frequent)), 0, seed=2)]
    repeated_frequent[:, 0] = meta["begin_id"]

    def evaluate(m: AttnOnlyTransformer) -> dict:
        s = head_scores(m, heldout, repeated, length)
        f = induction_measurements(m, repeated_frequent, length)
        return {
            "prev_token": max(s["previous_token_score"][0]),
            "same_token": max(s["same_token_score"][0]),  # layer 0: the self role's score
            "induction": max(s["induction_score"]),
            "repeat_gain": s["loss_first_half"] - s["loss_second_half"],
            "induction_frequent": max(f["induction_score"]),
            "repeat_gain_frequent": f["loss_first_half"] - f["loss_second_half"],
        }

    log = train(model, sampler, train_cfg, evaluate, device)
    return model.eval(), log


def main() -> None:
    params = load_params()
    cfg = params.model
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.model SEED")
    meta = json.loads(open(paths.TOKENS_META).read())
    if cfg.source == "trained":
        model, log = trained_model(cfg, meta, target.seed, resolve_device(params.device))
        source = {"source": "trained", "seed": target.seed}
    elif cfg.source == "redwood":
        checkpoint, config = resolve_redwood(cfg.repo, cfg.filename)
        model, log = load_tl_checkpoint(checkpoint, config), []
        source = {"source": "redwood", "repo": cfg.repo, **file_record(checkpoint)}
    else:  # file; the schema refused `???`
        if not cfg.file:
            raise ConfigError("model.file", "model=file needs a checkpoint path: -S model.file=PATH")
        model, log = load_checkpoint(cfg.file), []
        source = {"source": "file", **file_record(cfg.file)}
    if model.cfg.d_vocab != meta["d_vocab"]:
        raise ConfigError("tokenizer", f"the model has {model.cfg.d_vocab} tokens but the tokenizer {meta['d_vocab']}")
    with atomic_path(target.checkpoint) as tmp:
        save_checkpoint(model, tmp)
    write_json(target.train_log, log)
    write_json(target.source, source)
    print(f"{target.checkpoint}: " + ", ".join(f"{k} {v}" for k, v in source.items()))


if __name__ == "__main__":
    run_stage(main)
