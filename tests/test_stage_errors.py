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

from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.weights.checkpoint import save_checkpoint
from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.shell import sh


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", *args, cwd=cwd, check=False)


@pytest.fixture
def project(tmp_path) -> Path:
    return scratch_project(tmp_path, extra=["params.yaml"])


def compose(project: Path, *overrides: str) -> None:
    result = run(project, "pipeline.config", "--output", str(project / "params.yaml"), *overrides)
    assert result.returncode == 0, result.stderr


def assert_one_error_line(result: subprocess.CompletedProcess, param: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {param}: "), lines[0]
    return lines[0]


@pytest.mark.e2e
def test_corpus_stage_with_a_missing_path(project):
    compose(project, "data=files", f"data.path={project / 'no-such-texts'}")
    line = assert_one_error_line(run(project, "pipeline.stages.corpus"), "data.path")
    assert "does not exist" in line
    assert not (project / "data/corpus").exists()


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_tokenize_stage_with_too_few_sequences(project):
    write_corpus(project)
    compose(project, "tokenizer.vocab_size=300", "sequences.seq_len=50", "sequences.min_sequences=1000")
    line = assert_one_error_line(run(project, "pipeline.stages.tokenize"), "sequences.seq_len")
    assert "min_sequences=1000" in line
    assert not (project / "data/tokens").exists()


@pytest.mark.e2e
def test_tokenize_stage_with_a_missing_gpt2_tokenizer_file(project):
    write_corpus(project)
    compose(project, "tokenizer=gpt2", f"tokenizer.source={project / 'gpt2' / 'tokenizer.json'}")
    assert_one_error_line(run(project, "pipeline.stages.tokenize"), "tokenizer.source")
    assert not (project / "data/tokens").exists()


@pytest.mark.e2e
def test_model_stage_with_a_misshapen_checkpoint(project):
    (project / "data/tokens").mkdir(parents=True)
    (project / "data/tokens/meta.json").write_text(json.dumps({"begin_id": 0, "end_id": 1, "d_vocab": 50}))
    bad = project / "bad.pt"
    save_checkpoint(AttnOnlyTransformer(ModelConfig(d_vocab=50, n_ctx=16, d_model=32, n_heads=4, d_head=8)), bad)
    obj = torch.load(bad, weights_only=True)
    obj["state_dict"]["W_pos"] = torch.zeros(16, 33)
    torch.save(obj, bad)
    # An earlier model is in place: a failed stage must leave it as it was.
    (project / "data/model/file/seed0").mkdir(parents=True)
    (project / "data/model/file/seed0/model.pt").write_bytes(b"the previous model")

    compose(project, "model=file", f"model.file={bad}")
    line = assert_one_error_line(run(project, "pipeline.stages.model", "0"), "model.file")
    assert "W_pos has shape (16, 33)" in line
    assert (project / "data/model/file/seed0/model.pt").read_bytes() == b"the previous model"
    assert sorted(p.name for p in (project / "data/model/file/seed0").iterdir()) == ["model.pt"]


@pytest.mark.e2e
def test_a_stage_for_a_model_not_in_seeds(project):
    compose(project)
    line = assert_one_error_line(run(project, "pipeline.stages.cache_l0", "7"), "seeds")
    assert "no seed 7" in line
    line = assert_one_error_line(run(project, "pipeline.stages.scrub", "naive"), "hypotheses")
    assert "SEED HYPOTHESIS" in line
    assert not (project / "data/cache_l0").exists()


@pytest.mark.e2e
def test_model_file_without_a_path_stops_the_composition(project):
    before = (project / "params.yaml").read_text()
    result = run(project, "pipeline.config", "--output", str(project / "params.yaml"), "model=file")
    line = assert_one_error_line(result, "model.file")
    assert "-S model.file=" in line
    assert (project / "params.yaml").read_text() == before


@pytest.mark.e2e
def test_model_stage_with_model_file_but_no_path_in_a_hand_edited_params_yaml(project):
    """The composition refuses `???`; a params.yaml edited by hand is checked again when a stage
    loads it."""
    (project / "data/tokens").mkdir(parents=True)
    (project / "data/tokens/meta.json").write_text(json.dumps({"begin_id": 0, "end_id": 1, "d_vocab": 50}))
    compose(project, "model=file", "model.file=x.pt")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["file"] = "???"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert_one_error_line(run(project, "pipeline.stages.model", "0"), "model.file")
    assert not (project / "data/model").exists()


@pytest.mark.e2e
def test_an_unknown_position_init_stops_the_composition(project):
    result = run(project, "pipeline.config", "--output", str(project / "params.yaml"), "model.train.positions=rope")
    line = assert_one_error_line(result, "model.train.positions")
    assert "normal, sinusoidal" in line and "'rope'" in line


@pytest.mark.e2e
def test_a_stage_started_outside_the_repository_root_says_where_to_cd(project):
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    (project / "data").mkdir()
    line = assert_one_error_line(run(project / "data", "pipeline.stages.pairing"), "params.yaml")
    assert f"run the stages from the repository root (cd {project.resolve()})" in line
    assert "pipeline.config" not in line  # composing params.yaml here would not help


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.e2e
def test_a_killed_stages_temporary_folders_are_removed_by_the_next_stage_run(project):
    pid = dead_pid()
    stale = [project / f"data/cache_l0/.seed0.tmp-{pid}-x1", project / f"data/pairing/.pairing.parquet.tmp-{pid}-x2",
             project / f"data/scrub/seed1/naive/.losses.parquet.tmp-{pid}-x3", project / f".params.yaml.tmp-{pid}-x4",
             project / f"reports/heads/seed0/.example.png.tmp-{pid}-x6",
             project / f"data/heads/seed2/.roles.json.tmp-{pid}-x7", project / f"reports/sweep/.seed0.png.tmp-{pid}-x8"]
    running = project / f"data/whitelist/.whitelist.parquet.tmp-{os.getpid()}-x5"  # a live process's
    unrelated = project / "data/pairing/.keep"
    for folder in stale + [running]:
        (folder / "part").mkdir(parents=True)
    unrelated.write_text("")
    # the stage itself fails (no sequences), after the clean-up
    result = run(project, "pipeline.stages.pairing")
    assert result.returncode == 2
    assert not any(folder.exists() for folder in stale)
    assert running.exists() and unrelated.exists()
    assert result.stdout.count("left by a stage that was stopped") == len(stale)


def test_temporary_folders_are_invisible_to_git_and_dvc(tmp_path):
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    temporary = tmp_path / "data/scrub/naive/.losses.parquet.tmp-123-abc"
    temporary.mkdir(parents=True)
    (temporary / "losses.parquet").write_text("half")
    (tmp_path / "data/scrub/naive/metrics.json").write_text("{}")
    assert subprocess.run(["git", "init", "-q"], cwd=tmp_path).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", str(temporary / "losses.parquet")], cwd=tmp_path).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", "data/scrub/naive/metrics.json"], cwd=tmp_path).returncode == 1

    from dvc.repo import Repo

    repo = Repo.init(tmp_path)
    try:
        assert repo.dvcignore.is_ignored(repo.fs, str(temporary / "losses.parquet"))
        assert not repo.dvcignore.is_ignored(repo.fs, str(tmp_path / "data/scrub/naive/metrics.json"))
    finally:
        repo.close()


def fake_metrics(key: str, recovered: float) -> dict:
    part = {"recovered": recovered, "ci_low": recovered - 1, "ci_high": recovered + 1, "loss": 1.0}
    return {"hypothesis": key, "name": key, "original_loss": 0.5, "baseline_loss": 2.0, "scored_positions": 10,
            "scored_share": 0.1, **{p: dict(part) for p in ("q", "k", "v", "all")}}


def one_model(project: Path) -> None:
    """params.yaml with one model (seed 0): the tests below fake that model's scrub outputs only.
    With the committed models' recipe, which the default params.yaml's model.dir follows."""
    (project / "data/model").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "data/model/recipe.json", project / "data/model/recipe.json")
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": [0]}, sort_keys=False))


@pytest.mark.e2e
def test_the_report_lists_exactly_the_hypotheses_in_params(project):
    one_model(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["hypotheses"] = {k: params["hypotheses"][k] for k in ("refined2", "naive")}  # naive removed… and reordered
    params["claims"] = {}  # the claims name the removed hypotheses (a one-line error otherwise: tests/test_claims.py)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for key, value in (("naive", 50.0), ("refined2", 80.0), ("baseline", 0.0)):  # baseline: a folder left behind
        (project / f"data/scrub/seed0/{key}").mkdir(parents=True)
        (project / f"data/scrub/seed0/{key}/metrics.json").write_text(json.dumps(fake_metrics(key, value)))
    result = run(project, "pipeline.stages.report")
    assert result.returncode == 0, result.stderr
    table = (project / "reports/results.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["hypothesis", "refined2", "naive"]  # params' order; no baseline
    assert set(pd.read_csv(project / "reports/results.csv").hypothesis) == {"naive", "refined2"}

    # a hypothesis in params without its metrics: an error naming it, the old report kept
    (project / "data/scrub/seed0/refined2/metrics.json").unlink()
    assert_one_error_line(run(project, "pipeline.stages.report"), "hypotheses.refined2")
    assert (project / "reports/results.md").read_text() == table


def test_retraining_writes_an_identical_train_log():
    """No wall-clock time in train_log.json: a bit-identical retrain gives an identical dvc.lock."""
    import numpy as np

    from pipeline.weights.train import RowSampler, TrainConfig, train

    stream = np.random.default_rng(0).integers(2, 50, size=2000)
    cfg = TrainConfig(steps=4, batch_size=2, repeat_span=(4, 8), bf16=False, eval_every=2)

    def log() -> list[dict]:
        torch.manual_seed(0)
        model = AttnOnlyTransformer(ModelConfig(d_vocab=50, n_ctx=16, d_model=32, n_heads=4, d_head=8))
        return train(model, RowSampler(stream, 16, 0, 2, 50, cfg), cfg, lambda m: {"probe": 1.0})

    first, second = log(), log()
    assert json.dumps(first) == json.dumps(second)
    assert set(first[0]) == {"step", "train_loss", "probe"}


@pytest.mark.e2e
def test_a_failed_report_under_dvc_keeps_the_committed_report(project):
    """DVC deletes a `cache: false` output before running its stage unless it is `persist`; the
    report's outputs are git-tracked, so a failed run must leave them as they were."""
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    one_model(project)
    keys = list(yaml.safe_load((project / "params.yaml").read_text())["hypotheses"])
    for key in keys:
        (project / f"data/scrub/seed0/{key}").mkdir(parents=True)
        (project / f"data/scrub/seed0/{key}/metrics.json").write_text(json.dumps(fake_metrics(key, 50.0)))
    # the page's other inputs, which DVC wants present: the committed run's (git-tracked) ones
    for name in ("data/heads/seed0/scores.json", "data/heads/seed0/views.json", "data/sweep/seed0/sweep.csv",
                 "data/model/seed0/train_log.json", "data/model/seed0/model.pt", "data/claims/claims.json",
                 "data/search/README.md"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    (project / "data/heads/seed0/roles.json").write_text(json.dumps({"prev": "0.0", "self": [], "induction": ["1.5", "1.4"]}))

    def sh(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=project, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "--single-item", "report"],
                ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        result = sh(*cmd)
        assert result.returncode == 0, (cmd, result.stderr)
    report = {name: (project / "reports" / name).read_bytes() for name in ("results.md", "results.csv", "recovered.png")}
    (project / f"data/scrub/seed0/{keys[-1]}/metrics.json").unlink()
    failed = sh("dvc", "repro", "--single-item", "report")
    assert failed.returncode != 0 and f"hypotheses.{keys[-1]}" in failed.stderr
    assert {name: (project / "reports" / name).read_bytes() for name in report} == report
    assert sh("git", "status", "--porcelain", "reports").stdout == ""
