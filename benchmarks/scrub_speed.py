"""How fast the engine is: the layer-0 cache and each hypothesis's four scrubs, per sequence.

    python benchmarks/scrub_speed.py [--sequences 128] [--threads 2]

Reads the pipeline's outputs (run `dvc repro` first) and prints seconds and sequences/second.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
import yaml

from pipeline.checkpoint import load_checkpoint
from pipeline.scrub import build_cache, parse_hypothesis, scrub_losses
from pipeline.tokenizer import load_sequences


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(open("params.yaml"))
    model = load_checkpoint(params["model"]["path"])
    tokens = torch.from_numpy(load_sequences("data/tokens/sequences.parquet")[: args.sequences])
    n = len(tokens)
    wl = pd.read_parquet("data/whitelist/whitelist.parquet")
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[wl.loc[wl.whitelisted, "token"].to_numpy()] = True
    roles = json.loads(open("data/heads/roles.json").read())
    other = np.roll(np.arange(n), 1)

    t0 = time.perf_counter()
    cache = build_cache(model, tokens, params["cache"]["n_offsets"], args.batch_size, progress=False)
    t = time.perf_counter() - t0
    print(f"{'cache_l0':<14} {t:7.2f} s  {n / t:8.1f} seq/s")
    for key, raw in params["hypotheses"].items():
        hyp = parse_hypothesis(key, raw)
        draws = {name: np.tile(np.arange(n)[:, None], (1, tokens.shape[1] - 1)) for name in hyp.resamplers}
        t0 = time.perf_counter()
        scrub_losses(model, cache, tokens, other, hyp, roles, scored, ["q", "k", "v", "all"], draws,
                     batch_size=args.batch_size, progress=False)
        t = time.perf_counter() - t0
        print(f"{key:<14} {t:7.2f} s  {n / t:8.1f} seq/s  (Q, K, V, All + original + baseline)")


if __name__ == "__main__":
    main()
