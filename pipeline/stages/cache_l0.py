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
from pathlib import Path

import numpy as np
import torch

from pipeline import paths
from pipeline.checkpoint import load_checkpoint
from pipeline.device import resolve_device
from pipeline.model import AttnOnlyTransformer
from pipeline.scrub.engine import cache_shapes, fill_cache
from pipeline.stage import ConfigError, atomic_path, load_params, model_argument, require, run_stage
from pipeline.tokenizer import load_sequences



class _AppendNpy:
    """A .npy file written front to back, batch after batch, by plain writes: unlike a memory map,
    the written pages never count as the process's memory."""

    def __init__(self, path: Path, dtype: str, shape: tuple):
        self.file, self.dtype, self.written = open(path, "wb"), np.dtype(dtype), 0
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                          "fortran_order": False, "shape": shape})

    def __setitem__(self, rows: slice, value: np.ndarray) -> None:
        assert rows.start == self.written, "batches are written in order"
        self.file.write(np.ascontiguousarray(value, dtype=self.dtype).tobytes())
        self.written += len(value)


def write_cache(folder: Path, model: AttnOnlyTransformer, tokens: torch.Tensor, n_offsets: int, batch_size: int,
                dtype: str = "float16", progress: bool = True, device: str | torch.device = "cpu") -> dict[str, tuple]:
    """The cache of every sequence as folder/{v,z,diag}.npy, written batch by batch (memory does
    not grow with the number of sequences). Returns the shapes."""
    shapes = cache_shapes(model, len(tokens), tokens.shape[1] - 1, n_offsets)
    out = {key: _AppendNpy(folder / f"{key}.npy", dtype, shape) for key, shape in shapes.items()}
    try:
        fill_cache(out, model, tokens, n_offsets, batch_size, progress, device)
    finally:
        for writer in out.values():
            writer.file.close()
    return shapes


def check_context(tokens: np.ndarray, n_ctx: int) -> None:
    if tokens.shape[1] - 1 > n_ctx:
        raise ConfigError("sequences.seq_len", f"{tokens.shape[1] - 2} tokens + BEGIN exceed the model's context n_ctx={n_ctx}")


def main() -> None:
    params = load_params()
    cfg = require(params, "cache")  # types and ranges checked by pipeline.schema (load_params)
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.cache_l0 SEED")
    model = load_checkpoint(target.checkpoint, "model.dir")
    tokens = load_sequences(paths.SEQUENCES)
    check_context(tokens, model.cfg.n_ctx)
    device = resolve_device(params.get("device", "auto"))
    # Written batch by batch into memory-mapped files: memory does not grow with the sequences.
    with atomic_path(target.cache_l0) as tmp:
        tmp.mkdir()
        shapes = write_cache(tmp, model, torch.from_numpy(tokens), int(cfg["n_offsets"]), int(cfg["batch_size"]),
                             cfg["dtype"], device=device)
        total = sum((tmp / f"{key}.npy").stat().st_size for key in shapes)
        meta = {key: list(shape) for key, shape in shapes.items()}
        meta.update(dtype=cfg["dtype"], bytes_total=total, bytes_per_sequence=total // len(tokens))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(tokens)} sequences, {total / 2**20:.0f} MiB ({total // len(tokens) // 1024} KiB per sequence) → {target.cache_l0}")


def load_cache(folder: str | Path) -> dict[str, np.ndarray]:
    """The cache, memory-mapped read-only: a scrub reads only the rows of its batch."""
    return {key: np.load(Path(folder) / f"{key}.npy", mmap_mode="r") for key in ("v", "z", "diag")}


if __name__ == "__main__":
    run_stage(main)
