"""pipeline.params: params.yaml is the composition of conf/ (the stages read only params.yaml), and
a bad override is one clear error that writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline import params

ROOT = Path(__file__).resolve().parent.parent


def run_params(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.params", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_committed_params_yaml_is_the_composition_of_conf():
    """Fails when conf/ was edited without running `python -m pipeline.params`."""
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
    assert composed["model"] == committed["model"] and composed["hypotheses"] == committed["hypotheses"]


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
