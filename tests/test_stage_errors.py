"""Bad input to a stage, run as DVC runs it (`python -m pipeline.stages.NAME` reading params.yaml
from the working directory) in a scratch copy of the project: exit status 2, one line
"error: ..." naming the parameter at fault, and no output written or replaced."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.checkpoint import save_checkpoint
from pipeline.model import AttnOnlyTransformer, ModelConfig

ROOT = Path(__file__).resolve().parent.parent


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def project(tmp_path) -> Path:
    for name in ("pipeline", "conf"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def compose(project: Path, *overrides: str) -> None:
    result = run(project, "pipeline.params", "--output", str(project / "params.yaml"), *overrides)
    assert result.returncode == 0, result.stderr


def assert_one_error_line(result: subprocess.CompletedProcess, param: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {param}: "), lines[0]
    return lines[0]


def test_corpus_stage_with_a_missing_path(project):
    compose(project, "data=files", f"data.path={project / 'no-such-texts'}")
    line = assert_one_error_line(run(project, "pipeline.stages.corpus"), "data.path")
    assert "does not exist" in line
    assert not (project / "data/corpus").exists()


def test_corpus_stage_with_a_table_lacking_the_text_column(project):
    table = project / "texts.jsonl"
    table.write_text('{"body": "one"}\n{"body": "two"}\n')
    compose(project, "data=files", f"data.path={table}")
    assert_one_error_line(run(project, "pipeline.stages.corpus"), "data.text_column")
    assert not (project / "data/corpus").exists()


def write_corpus(project: Path) -> None:
    words = "the jury said that the city of atlanta had a primary election and no evidence".split()
    texts = [" ".join(words[(i + j) % len(words)] for j in range(120)) for i in range(6)]
    frame = pd.DataFrame({"doc_id": [f"d{i}" for i in range(6)], "split": ["train"] * 4 + ["heldout"] * 2,
                          "text": texts})
    (project / "data/corpus").mkdir(parents=True)
    frame.to_parquet(project / "data/corpus/documents.parquet", index=False)


def test_tokenize_stage_with_too_few_sequences(project):
    write_corpus(project)
    compose(project, "tokenizer.vocab_size=300", "sequences.seq_len=50", "sequences.min_sequences=1000")
    line = assert_one_error_line(run(project, "pipeline.stages.tokenize"), "sequences.seq_len")
    assert "min_sequences=1000" in line
    assert not (project / "data/tokens").exists()


def test_tokenize_stage_with_a_missing_gpt2_tokenizer_file(project):
    write_corpus(project)
    compose(project, "tokenizer=gpt2", f"tokenizer.source={project / 'gpt2' / 'tokenizer.json'}")
    assert_one_error_line(run(project, "pipeline.stages.tokenize"), "tokenizer.source")
    assert not (project / "data/tokens").exists()


def test_model_stage_with_a_misshapen_checkpoint(project):
    (project / "data/tokens").mkdir(parents=True)
    (project / "data/tokens/meta.json").write_text(json.dumps({"begin_id": 0, "end_id": 1, "d_vocab": 50}))
    bad = project / "bad.pt"
    save_checkpoint(AttnOnlyTransformer(ModelConfig(d_vocab=50, n_ctx=16, d_model=32, n_heads=4, d_head=8)), bad)
    obj = torch.load(bad, weights_only=True)
    obj["state_dict"]["W_pos"] = torch.zeros(16, 33)
    torch.save(obj, bad)
    # An earlier model is in place: a failed stage must leave it as it was.
    (project / "data/model").mkdir(parents=True)
    (project / "data/model/model.pt").write_bytes(b"the previous model")

    compose(project, "model=file", f"model.file={bad}")
    line = assert_one_error_line(run(project, "pipeline.stages.model"), "model.file")
    assert "W_pos has shape (16, 33)" in line
    assert (project / "data/model/model.pt").read_bytes() == b"the previous model"
    assert sorted(p.name for p in (project / "data/model").iterdir()) == ["model.pt"]


def test_model_file_without_a_path_stops_the_composition(project):
    before = (project / "params.yaml").read_text()
    result = run(project, "pipeline.params", "--output", str(project / "params.yaml"), "model=file")
    line = assert_one_error_line(result, "model.file")
    assert "-S model.file=" in line
    assert (project / "params.yaml").read_text() == before


def test_model_stage_with_model_file_but_no_path_in_a_hand_edited_params_yaml(project):
    """The composition refuses `???`; a params.yaml edited by hand is checked again when a stage
    loads it."""
    (project / "data/tokens").mkdir(parents=True)
    (project / "data/tokens/meta.json").write_text(json.dumps({"begin_id": 0, "end_id": 1, "d_vocab": 50}))
    compose(project, "model=file", "model.file=x.pt")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["file"] = "???"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert_one_error_line(run(project, "pipeline.stages.model"), "model.file")
    assert not (project / "data/model").exists()


def test_an_unknown_position_init_stops_the_composition(project):
    result = run(project, "pipeline.params", "--output", str(project / "params.yaml"), "model.train.positions=rope")
    line = assert_one_error_line(result, "model.train.positions")
    assert "normal, sinusoidal" in line and "'rope'" in line
