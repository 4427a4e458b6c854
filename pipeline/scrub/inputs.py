"""What every scrub reads besides its hypothesis, from the files of the stages before it (the
scrub and sweep stages share it); and the resamplers' classes and draws for those sequences."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from pipeline import paths
from pipeline.data.sequences import load_sequences
from pipeline.errors import ConfigError
from pipeline.model import AttnOnlyTransformer
from pipeline.scrub.cache import load_cache
from pipeline.scrub.resample import classify_positions, draw_matching, resolve_rules
from pipeline.weights.checkpoint import load_checkpoint


@dataclass
class Inputs:
    """What every scrub reads besides its hypothesis (the scrub and sweep stages)."""
    model: AttnOnlyTransformer
    tokens: np.ndarray  # [seq, pos + 1] the experiment sequences: inputs and the last target
    other: np.ndarray   # [seq] each sequence's partner (the pairing stage's emb2)
    scored: np.ndarray  # [d_vocab] bool: a position counts when its input token is whitelisted
    roles: dict
    cache: dict         # the layer-0 cache, memory-mapped (scrub.cache.load_cache)


def load_inputs(target: paths.ModelPaths) -> Inputs:
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
