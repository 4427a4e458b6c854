"""cache_l0@<seed>: layer 0 of one model on every experiment sequence, once, in the form the
scrubs read.

    python -m pipeline.stages.cache_l0 0

data/cache_l0/seed<N>/{v,z,diag}.npy (see pipeline.scrub.engine for the layout) and meta.json (shapes,
dtype, bytes per sequence). At the default (301 positions, 8 heads, d_head 32, 4 diagonals,
float16) a sequence takes 301·8·(32 + 32 + 4)·2 B ≈ 327 KB.
"""
from __future__ import annotations

import json
import sys

import torch

from pipeline import paths
from pipeline.config.load import load_params, model_argument
from pipeline.data.sequences import load_sequences
from pipeline.device import resolve_device
from pipeline.outputs import atomic_path, run_stage
from pipeline.scrub.cache import check_context, write_cache
from pipeline.weights.checkpoint import load_checkpoint


def main() -> None:
    params = load_params()
    cfg = params.cache
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.cache_l0 SEED")
    model = load_checkpoint(target.checkpoint, "model.dir")
    tokens = load_sequences(paths.SEQUENCES)
    check_context(tokens, model.cfg.n_ctx)
    device = resolve_device(params.device)
    # Written batch by batch into memory-mapped files: memory does not grow with the sequences.
    with atomic_path(target.cache_l0) as tmp:
        tmp.mkdir()
        shapes = write_cache(tmp, model, torch.from_numpy(tokens), cfg.n_offsets, cfg.batch_size, cfg.dtype,
                             device=device)
        total = sum((tmp / f"{key}.npy").stat().st_size for key in shapes)
        meta = {key: list(shape) for key, shape in shapes.items()}
        meta.update(dtype=cfg.dtype, bytes_total=total, bytes_per_sequence=total // len(tokens))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(tokens)} sequences, {total / 2**20:.0f} MiB ({total // len(tokens) // 1024} KiB per sequence) → {target.cache_l0}")


if __name__ == "__main__":
    run_stage(main)
