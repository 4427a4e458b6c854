"""whitelist: the "inductiony" tokens whose input positions the scrubs score (pipeline.analysis.whitelist).

Counted on the training documents; the share of positions is measured on the experiment
sequences' input positions (tokens[:, :-1], BEGIN included), the positions the scrubs score.
Outputs in data/whitelist/: whitelist.parquet (one row per vocabulary id: token, count,
bigram_loss, heuristic_loss, gain, whitelisted; losses in nats at 6 decimals) and summary.json (a
DVC metrics file: counts, and shares of counts at 6 significant digits). Both are the same bytes on
every CPU (docs/reproducibility.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.analysis.whitelist import summarize, token_stats
from pipeline.config.load import load_params
from pipeline.data.sequences import load_sequences
from pipeline.errors import ConfigError
from pipeline.outputs import atomic_path, rounded, run_stage, write_json


def main() -> None:
    params = load_params()
    cfg = params.whitelist
    beta, threshold, smoothing = float(cfg.beta), float(cfg.threshold), float(cfg.smoothing)
    meta = json.loads(Path(paths.TOKENS_META).read_text())
    train = pd.read_parquet(paths.TRAIN_TOKENS).tokens
    docs = [np.asarray(t, dtype=np.int64) for t in train]
    stats = token_stats(docs, meta["d_vocab"], [meta["begin_id"], meta["end_id"]], beta, threshold, smoothing)
    inputs = load_sequences(paths.SEQUENCES)[:, :-1]  # [seq, pos]: the last token is only a target
    summary = summarize(stats, inputs)
    if summary["scored_positions"] == 0:
        raise ConfigError("whitelist.threshold",
                          f"no input position of the experiment sequences has a whitelisted token "
                          f"({summary['count']} tokens whitelisted); lower the threshold")
    with atomic_path(paths.WHITELIST) as tmp:
        stats.to_parquet(tmp, index=False)
    write_json(paths.WHITELIST_SUMMARY, rounded(summary))
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})


if __name__ == "__main__":
    run_stage(main)
