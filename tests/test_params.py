"""pipeline.config.compose: params.yaml is the composition of conf/ (the stages read only params.yaml), and
a bad override is one clear error that writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import compose as params
from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.shell import sh as shell


def run_params(*args: str) -> subprocess.CompletedProcess:
    return run_params_in(ROOT, *args)


def test_committed_params_yaml_is_the_composition_of_conf():
    """Fails when conf/ was edited without running `python -m pipeline.config`."""
    assert params.main(["--check"]) == 0


def test_check_detects_a_stale_params_yaml(tmp_path, capsys):
    stale = yaml.safe_load((ROOT / "params.yaml").read_text())
    stale["sequences"]["seq_len"] += 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(stale, sort_keys=False))
    assert params.main(["--check", "--output", str(tmp_path / "params.yaml")]) == 1
    assert "differs from the composition of conf/" in capsys.readouterr().err
    assert params.main(["--check", "--output", str(tmp_path / "absent.yaml")]) == 1


def test_overrides_compose_like_dvc_exp_run_s(tmp_path):
    out = tmp_path / "params.yaml"
    result = run_params("--output", str(out), "data=files", "data.path=/texts", "sequences.seq_len=48")
    assert result.returncode == 0, result.stderr
    composed = yaml.safe_load(out.read_text())
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert composed["data"]["source"] == "files" and composed["data"]["path"] == "/texts"
    assert "cache_dir" not in composed["data"]  # the group option replaced, not merged
    assert composed["sequences"]["seq_len"] == 48
    assert composed["hypotheses"] == committed["hypotheses"]
    # another corpus is another recipe: the same architecture and training, in a folder of its own
    mine, theirs = dict(composed["model"]), dict(committed["model"])
    assert mine.pop("dir") != theirs.pop("dir") and mine.pop("recipe") != theirs.pop("recipe") and mine == theirs


def test_unknown_group_option_is_one_error_and_writes_nothing(tmp_path):
    out = tmp_path / "params.yaml"
    result = run_params("--output", str(out), "model=nonexistent")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "model/nonexistent" in lines[0]
    assert "file, redwood, trained" in lines[0]  # the options there are
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary beside it


def test_unknown_key_is_one_error_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "params.yaml"
    out.write_text("old: true\n")
    result = run_params("--output", str(out), "sequences.seq_lenn=3")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "sequences.seq_lenn" in result.stderr
    assert out.read_text() == "old: true\n"
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


# ---- the schema, run by the composition (pipeline/config/schema.py) ----------------------------------

MASK = "hypotheses.refined2.q.heads.all.mask"


@pytest.mark.parametrize("override, param", [
    ("tokenizer.vocab_size=abc", "tokenizer.vocab_size"),
    ("sequences.seq_len=abc", "sequences.seq_len"),
    ("scrub.batch_size=0", "scrub.batch_size"),
    ("scrub.bootstrap_samples=0", "scrub.bootstrap_samples"),
    (f"{MASK}=1", MASK),            # mask: 1
    (f"{MASK}=[true]", MASK),       # mask: [true]
    (f"{MASK}=[0,4]", MASK),        # an offset ≥ cache.n_offsets (4)
    ("cache.n_offsets=2", MASK),    # the same, from the other side (last3 needs offset 2)
    ("sequences.seq_len=320", "sequences.seq_len"),  # BEGIN + 320 tokens > model.n_ctx = 320
])
def test_a_bad_value_stops_the_composition_with_one_line_and_writes_nothing(tmp_path, override, param):
    out = tmp_path / "params.yaml"
    out.write_text("old: true\n")
    result = run_params("--output", str(out), override)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {param}: "), result.stderr
    assert out.read_text() == "old: true\n"
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    """pipeline/ and conf/ in a scratch folder: `python -m pipeline.config` there composes its conf/."""
    return scratch_project(tmp_path)


def run_params_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return shell(sys.executable, "-m", "pipeline.config", *args, cwd=folder, check=False)


@pytest.mark.e2e
def test_a_misspelt_key_written_into_conf_is_refused(conf_copy):
    config = conf_copy / "conf/config.yaml"
    config.write_text(config.read_text().replace("  beta: 1.0", "  betta: 1.0"))
    result = run_params_in(conf_copy)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: whitelist.betta: unknown key; whitelist has beta, threshold, smoothing"]
    assert not (conf_copy / "params.yaml").exists()


@pytest.mark.e2e
def test_a_misspelt_key_in_a_hypothesis_file_is_refused(conf_copy):
    hyp = conf_copy / "conf/hypothesis/naive.yaml"
    hyp.write_text(hyp.read_text().replace("  embedding: other", "  embeding: other"))
    result = run_params_in(conf_copy)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: hypotheses.naive.k.embeding: unknown key; hypotheses.naive.k has embedding, heads")


@pytest.mark.e2e
def test_a_yaml_syntax_error_in_a_hypothesis_file_is_one_line_naming_the_file(conf_copy):
    (conf_copy / "conf/hypothesis/naive.yaml").write_text("name: x\nq: {embedding: clean\n  heads: [\n")
    result = run_params_in(conf_copy)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: conf/hypothesis/naive.yaml: is not valid YAML: line 3, column")


@pytest.mark.parametrize("preset", ["tiny", "redwood", "none"])
def test_every_preset_passes_the_schema(tmp_path, preset):
    # Redwood's downloads as local copies: composition checks that what it would fetch is there
    # (an empty cache offline is tests/test_redwood_offline.py's case)
    local = []
    if preset == "redwood":
        (tmp_path / "snapshot").mkdir()
        (tmp_path / "validation_data.pt").write_bytes(b"")
        local = [f"model.repo={tmp_path / 'snapshot'}", f"data.file={tmp_path / 'validation_data.pt'}"]
    result = run_params("--output", str(tmp_path / "params.yaml"), f"preset={preset}", *local)
    assert result.returncode == 0, result.stderr


def test_the_schema_hook_leaves_one_constant_key_no_stage_reads():
    """conf/config.yaml's `checked: ${pipeline.check:}` is what runs the schema; it resolves to a
    constant, so it never makes a stage's params differ."""
    composed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert composed["checked"] is True
    assert "checked" not in (ROOT / "dvc.yaml").read_text()


@pytest.mark.e2e
def test_dvc_exp_run_s_with_a_bad_value_prints_one_line_and_changes_nothing(tmp_path):
    """What a user sees: DVC composes conf/ in its own process (dvc.utils.hydra.compose_and_dump),
    which loads hydra_plugins/ from the repository root and so runs the same schema."""
    scratch_project(tmp_path, dvc=True, extra=["params.yaml", ".gitignore", ".dvcignore"])

    def sh(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})

    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t"], ["git", "config", "user.name", "t"],
                ["dvc", "init", "-q"], ["dvc", "config", "hydra.enabled", "true"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "scratch"]):
        assert sh(*cmd).returncode == 0, cmd
    dvc_status = sh("dvc", "status").stdout
    result = sh("dvc", "exp", "run", "-S", "scrub.batch_size=0")
    assert result.returncode != 0
    assert result.stdout.strip() == ""
    assert result.stderr.strip().splitlines() == ["ERROR: scrub.batch_size: must be an integer ≥ 1, got 0"]
    # Hydra's own errors, one line too (hydra_plugins/pipeline_checks.py)
    result = sh("dvc", "exp", "run", "-S", "sequences.seq_lenn=3")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "ERROR: Could not override 'sequences.seq_lenn'. To append to your config use +sequences.seq_lenn=3: "
        "Key 'seq_lenn' is not in struct"]
    assert sh("git", "status", "--porcelain").stdout == ""
    assert sh("dvc", "status").stdout == dvc_status
    assert sh("dvc", "exp", "list", "--all-commits").stdout.strip() == ""


def test_overrides_do_not_carry_over_from_one_composition_to_the_next(tmp_path):
    """The README's warning: each composition starts from conf/, so a preset given before is gone
    unless given again."""
    out = tmp_path / "params.yaml"
    assert run_params("--output", str(out), "preset=tiny").returncode == 0
    tiny = yaml.safe_load(out.read_text())
    assert run_params("--output", str(out), "scrub.seed=1").returncode == 0
    again = yaml.safe_load(out.read_text())
    assert tiny["sequences"]["seq_len"] == 48 and again["sequences"]["seq_len"] == 300
    assert run_params("--output", str(out), "preset=tiny", "scrub.seed=1").returncode == 0
    both = yaml.safe_load(out.read_text())
    assert both["sequences"]["seq_len"] == 48 and both["scrub"]["seed"] == 1


# What each option needs beside itself to compose (a mandatory value, a matching tokenizer, a
# local copy of a download, which composition checks for: {tmp} is the test's folder).
OPTION_NEEDS = {"data=files": ["data.path=texts"], "model=file": ["model.file=model.pt"],
                "data=redwood_validation": ["tokenizer=gpt2", "data.file={tmp}/validation_data.pt"],
                "model=redwood": ["model.repo={tmp}/snapshot"]}


@pytest.mark.parametrize("option", [f"{p.parent.name}={p.stem}" for group in ("data", "tokenizer", "model")
                                    for p in sorted((ROOT / "conf" / group).glob("*.yaml"))])
def test_every_group_option_in_conf_has_a_schema(tmp_path, option):
    """Fails when a key is added to conf/ without its line in pipeline/config/schema.py."""
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "validation_data.pt").write_bytes(b"")
    needs = [need.format(tmp=tmp_path) for need in OPTION_NEEDS.get(option, [])]
    result = run_params("--output", str(tmp_path / "params.yaml"), option, *needs)
    assert result.returncode == 0, result.stderr
