"""scrub@<seed>-<hypothesis>: run one hypothesis of conf/hypothesis/ on one model for each part
(Q, K, V, All).

    python -m pipeline.stages.scrub 0 refined2

Outputs in data/scrub/seed<N>/<hypothesis>/: metrics.json (original and baseline losses on the
scored positions; per part the loss, % loss recovered and its bootstrap 95% interval),
losses.parquet (per sequence: loss sums and scored-position counts) and positions.parquet (per
scored position: sequence, position, input token, target, and the loss of the original, the
baseline and each part, and for a hypothesis with resamplers each position's class in a column
class_<resampler>), which the report's breakdowns read instead of recomputing, and breakdown.csv
(pipeline/breakdown.py: per input token and per resampler class, each part's mean losses and
share of the loss the hypothesis fails to recover).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer

from pipeline import paths
from pipeline.breakdown import breakdown, token_labels
from pipeline.checkpoint import load_checkpoint
from pipeline.device import resolve_device
from pipeline.model import AttnOnlyTransformer
from pipeline.scrub import check_heads, classify_positions, draw_matching, parse_hypothesis, resolve_rules, scrub_losses, summarize
from pipeline.stage import ConfigError, atomic_path, load_params, model_argument, require, run_stage, write_json
from pipeline.stages.cache_l0 import load_cache
from pipeline.tokenizer import load_sequences


@dataclass
class Inputs:
    """What every scrub reads besides its hypothesis (the scrub and sweep stages)."""
    model: AttnOnlyTransformer
    tokens: np.ndarray  # [seq, pos + 1] the experiment sequences: inputs and the last target
    other: np.ndarray   # [seq] each sequence's partner (the pairing stage's emb2)
    scored: np.ndarray  # [d_vocab] bool: a position counts when its input token is whitelisted
    roles: dict
    cache: dict         # the layer-0 cache, memory-mapped (cache_l0.load_cache)


def load_inputs(params: dict, target: paths.ModelPaths) -> Inputs:
    model = load_checkpoint(target.checkpoint, "model.dir")
    tokens = load_sequences(paths.SEQUENCES)
    other = pd.read_parquet(paths.PAIRING).sort_values("seq_id").other_seq_id.to_numpy()
    whitelist = pd.read_parquet(paths.WHITELIST)
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[whitelist.loc[whitelist.whitelisted, "token"].to_numpy()] = True
    if not scored[tokens[:, :-1]].any():
        raise ConfigError("whitelist.threshold", "no position of the experiment sequences has a whitelisted token")
    roles = json.loads(Path(target.roles).read_text())
    cache = load_cache(target.cache_l0)
    if cache["z"].shape[0] != len(tokens):
        raise ConfigError("cache", "the layer-0 cache does not match the sequences; rerun `dvc repro`")
    return Inputs(model, tokens, other, scored, roles, cache)


def resampler_classes(hypothesis, tokens: np.ndarray,
                      tokenizer_path: str | Path = paths.TOKENIZER) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each resampler of the hypothesis: its class names (the declared ones, then "other") and
    the class index of every input position ([seq, pos], rules resolved through the tokenizer in
    use)."""
    out = {}
    if hypothesis.resamplers:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        for name, resampler in hypothesis.resamplers.items():
            rules = resolve_rules(resampler, lambda text: tokenizer.encode(text, add_special_tokens=False).ids)
            out[name] = (list(resampler.classes) + ["other"], classify_positions(tokens[:, :-1], rules))
    return out


def resampled_draws(hypothesis, tokens: np.ndarray, seed: int, quiet: bool = False,
                    tokenizer_path: str | Path = paths.TOKENIZER,
                    classes: dict[str, tuple[list[str], np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Each resampler of the hypothesis: the seeded draw per position ([seq, pos] sequence ids)
    among the positions of its class. `classes`: resampler_classes' result, when the caller
    also keeps the classes (the stage writes them per position)."""
    if classes is None:
        classes = resampler_classes(hypothesis, tokens, tokenizer_path)
    resampled = {}
    for name, resampler in hypothesis.resamplers.items():
        names, index = classes[name]
        resampled[name] = draw_matching(index, seed + resampler.seed)
        if not quiet:
            shares = [(c, round(float((index == i).mean()), 4)) for i, c in enumerate(names)]
            print(f"{name}: share of positions per class {shares}")
    return resampled


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
    hypotheses = require(params, "hypotheses")
    if key not in hypotheses:
        raise ConfigError(f"hypotheses.{key}", f"unknown hypothesis; known: {sorted(hypotheses)}")
    cfg = require(params, "scrub")  # types and ranges checked by pipeline.schema (load_params)
    parts = list(cfg["parts"])
    hypothesis = parse_hypothesis(key, hypotheses[key])

    inputs = load_inputs(params, target)
    model, tokens, other, scored, roles, cache = (inputs.model, inputs.tokens, inputs.other, inputs.scored,
                                                  inputs.roles, inputs.cache)
    check_heads(hypothesis, key, model.cfg.n_heads)

    classes = resampler_classes(hypothesis, tokens)
    resampled = resampled_draws(hypothesis, tokens, cfg["seed"], classes=classes)

    losses = scrub_losses(model, cache, torch.from_numpy(tokens), other, hypothesis, roles, scored, parts,
                          resampled, batch_size=int(cfg["batch_size"]),
                          device=resolve_device(params.get("device", "auto")))
    metrics = {"hypothesis": key, "name": hypothesis.name,
               **summarize(losses, parts, tokens.shape[1] - 1, int(cfg["bootstrap_samples"]), int(cfg["seed"]))}
    with atomic_path(target.scrub_losses(key)) as tmp:
        pd.DataFrame({"seq_id": np.arange(len(tokens)), "count": losses["original"].count,
                      **{f"loss_sum_{n}": l.loss_sum for n, l in losses.items()}}).to_parquet(tmp, index=False)
    positions = positions_frame(tokens, losses, classes)
    with atomic_path(target.scrub_positions(key)) as tmp:
        positions.to_parquet(tmp, index=False)
    tokenizer = Tokenizer.from_file(paths.TOKENIZER)
    table = breakdown(positions, token_labels(np.unique(positions["token"]), tokenizer))
    with atomic_path(target.scrub_breakdown(key)) as tmp:
        table.to_csv(tmp, index=False)
    write_json(target.scrub_metrics(key), metrics)
    print(json.dumps({p: round(metrics[p]["recovered"], 1) for p in parts}),
          f"original {metrics['original_loss']:.4f}, baseline {metrics['baseline_loss']:.4f}")


if __name__ == "__main__":
    run_stage(main)
