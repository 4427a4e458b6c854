"""The layer-0 cache on disk: written by the cache_l0 stage batch by batch, read memory-mapped
by the scrubs. The layout of its arrays is pipeline.scrub.engine's (cache_shapes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ConfigError
from pipeline.model import AttnOnlyTransformer
from pipeline.scrub.engine import cache_shapes, fill_cache


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


def load_cache(folder: str | Path) -> dict[str, np.ndarray]:
    """The cache, memory-mapped read-only: a scrub reads only the rows of its batch."""
    return {key: np.load(Path(folder) / f"{key}.npy", mmap_mode="r") for key in ("v", "z", "diag")}
