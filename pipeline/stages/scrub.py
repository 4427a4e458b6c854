"""scrub@<seed>-<hypothesis>: run one hypothesis of conf/hypothesis/ on one model for each part
(Q, K, V, All).

    python -m pipeline.stages.scrub 0 refined2

Outputs in data/scrub/seed<N>/<hypothesis>/: metrics.json (original and baseline losses on the
scored positions; per part the loss, % loss recovered and its bootstrap 95% interval),
losses.parquet (per sequence: loss sums and scored-position counts) and positions.parquet (per
scored position: sequence, position, input token, target, and the loss of the original, the
baseline and each part, and for a hypothesis with resamplers each position's class in a column
class_<resampler>), which the report's breakdowns read instead of recomputing, and breakdown.csv
(pipeline/analysis/breakdown.py: per input token and per resampler class, each part's mean losses and
share of the loss the hypothesis fails to recover).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer

from pipeline import paths
from pipeline.analysis.breakdown import breakdown, token_labels
from pipeline.config.hypothesis import check_heads
from pipeline.config.load import load_params, model_argument
from pipeline.device import resolve_device
from pipeline.errors import ConfigError
from pipeline.outputs import CSV_FLOAT_FORMAT, atomic_path, rounded, run_stage, write_json
from pipeline.scrub.engine import scrub_losses
from pipeline.scrub.inputs import load_inputs, resampled_draws, resampler_classes
from pipeline.scrub.stats import summarize


def positions_frame(tokens: np.ndarray, losses: dict, classes: dict[str, tuple[list[str], np.ndarray]]) -> pd.DataFrame:
    """One row per scored position (positions.parquet): sequence, position, input token, target,
    loss_<name> for each of `losses` (original, baseline, each part), and class_<resampler>, the
    class name of the position, so that the breakdown and the report read it instead of
    resolving the rules again. tokens [seq, pos + 1]; classes as resampler_classes returns."""
    original = losses["original"]
    return pd.DataFrame({"seq_id": original.seq, "pos": original.pos, "token": tokens[original.seq, original.pos],
                         "target": tokens[original.seq, original.pos + 1],
                         **{f"loss_{n}": l.loss for n, l in losses.items()},
                         **{f"class_{name}": np.asarray(names)[index[original.seq, original.pos]]
                            for name, (names, index) in classes.items()}})


def main() -> None:
    usage = "python -m pipeline.stages.scrub SEED HYPOTHESIS"
    if len(sys.argv) != 3:
        raise ConfigError("hypotheses", f"usage: {usage}")
    key = sys.argv[2]
    params = load_params()
    target = model_argument(params, sys.argv[1:2], usage)
    hypotheses = params.hypotheses
    if key not in hypotheses:
        raise ConfigError(f"hypotheses.{key}", f"unknown hypothesis; known: {sorted(hypotheses)}")
    cfg = params.scrub
    parts = list(cfg.parts)
    hypothesis = hypotheses[key]

    inputs = load_inputs(target)
    model, tokens, other, scored, roles, cache = (inputs.model, inputs.tokens, inputs.other, inputs.scored,
                                                  inputs.roles, inputs.cache)
    check_heads(hypothesis, model.cfg.n_heads, f"hypotheses.{key}")

    classes = resampler_classes(hypothesis, tokens)
    resampled = resampled_draws(hypothesis, tokens, cfg.seed, classes=classes)

    losses = scrub_losses(model, cache, torch.from_numpy(tokens), other, hypothesis, roles, scored, parts,
                          resampled, batch_size=cfg.batch_size, device=resolve_device(params.device))
    metrics = {"hypothesis": key, "name": hypothesis.name,
               **summarize(losses, parts, tokens.shape[1] - 1, cfg.bootstrap_samples, cfg.seed)}
    with atomic_path(target.scrub_losses(key)) as tmp:
        pd.DataFrame({"seq_id": np.arange(len(tokens)), "count": losses["original"].count,
                      **{f"loss_sum_{n}": l.loss_sum for n, l in losses.items()}}).to_parquet(tmp, index=False)
    positions = positions_frame(tokens, losses, classes)
    with atomic_path(target.scrub_positions(key)) as tmp:
        positions.to_parquet(tmp, index=False)
    tokenizer = Tokenizer.from_file(paths.TOKENIZER)
    table = breakdown(positions, token_labels(np.unique(positions["token"]), tokenizer))
    with atomic_path(target.scrub_breakdown(key)) as tmp:
        table.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    # at the precision docs/reproducibility.md states: a rerun on another CPU rewrites the same bytes
    write_json(target.scrub_metrics(key), rounded(metrics))
    print(json.dumps({p: round(metrics[p]["recovered"], 1) for p in parts}),
          f"original {metrics['original_loss']:.4f}, baseline {metrics['baseline_loss']:.4f}")


if __name__ == "__main__":
    run_stage(main)
