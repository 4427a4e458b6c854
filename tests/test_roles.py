"""pipeline.analysis.roles: proposals from head scores, config overrides, and head-name checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.analysis.roles import propose_roles, resolve_roles
from pipeline.errors import ConfigError
from pipeline.model import ModelConfig
from tests.helpers import ROOT
from tests.helpers.heads_stage import THRESHOLDS, heads_project
from tests.helpers.shell import one_thread, sh

CFG = THRESHOLDS
MODEL = ModelConfig(d_vocab=10, n_ctx=16, n_heads=8, n_layers=2)
NULL = {"prev": None, "self": None, "induction": None}


def scores(prev0=None, same0=None, induction=None) -> dict:
    """head_scores' layout; layer-1 previous/same scores are there but never used."""
    return {
        "previous_token_score": [prev0 or [0.05, 0.1, 0.02, 0.6, 0.01, 0.2, 0.0, 0.0], [0.9] * 8],
        "same_token_score": [same0 or [0.5, 0.35, 0.0, 0.7, 0.4, 0.3, 0.29, 0.8], [0.9] * 8],
        "induction_score": induction or [0.05, 0.3, 0.0, 0.12, 0.0, 0.5, 0.09, 0.1],
    }


def test_proposal():
    roles = propose_roles(scores(), CFG)
    assert roles["prev"] == "0.3"  # best previous-token score, 0.6
    # same-token ≥ 0.3 and not the prev head (0.3 has 0.7): 0.7 (0.8), 0.0 (0.5), 0.4 (0.4), then
    # 0.1 (0.35) and 0.5 (0.3) fall beyond max_self_heads; 0.6 (0.29) is below the threshold.
    assert roles["self"] == ["0.7", "0.0", "0.4"]
    # induction ≥ 0.1, best first: 1.5 (0.5), 1.1 (0.3), 1.3 (0.12), 1.7 (0.1 exactly); not 1.6 (0.09).
    assert roles["induction"] == ["1.5", "1.1", "1.3", "1.7"]
    assert propose_roles(scores(), {**CFG, "max_self_heads": 5})["self"] == ["0.7", "0.0", "0.4", "0.1", "0.5"]
    assert propose_roles(scores(), {**CFG, "min_same_token_score": 0.9})["self"] == []


def test_no_previous_token_head():
    with pytest.raises(ConfigError) as err:
        propose_roles(scores(prev0=[0.1] * 8), CFG)
    assert err.value.param == "roles.prev"
    assert "0.100" in str(err.value)


def test_no_induction_head_names_roles_induction_and_the_best_score():
    with pytest.raises(ConfigError) as err:
        resolve_roles(NULL, lambda given: propose_roles(scores(induction=[0.01, 0.07, 0.02] + [0.0] * 5), CFG, given),
                      MODEL)
    assert err.value.param == "roles.induction"
    message = str(err.value)
    assert "no induction head" in message and "0.070" in message and "1.1" in message


def test_resolve_proposes_every_null_role():
    roles = resolve_roles(NULL, lambda given: propose_roles(scores(), CFG, given), MODEL)
    assert roles == {"prev": "0.3", "self": ["0.7", "0.0", "0.4"], "induction": ["1.5", "1.1", "1.3", "1.7"]}


def test_config_roles_override_per_role():
    config = {"prev": "0.0", "self": None, "induction": ["1.6"]}
    roles = resolve_roles(config, lambda given: propose_roles(scores(), CFG, given), MODEL)
    assert roles["prev"] == "0.0" and roles["induction"] == ["1.6"]
    # self is proposed around the configured prev: 0.0 is taken, so 0.3 (0.7) joins instead.
    assert roles["self"] == ["0.7", "0.3", "0.4"]


def test_a_given_induction_role_spares_a_model_without_induction_heads():
    weak = scores(induction=[0.0] * 8)
    roles = resolve_roles({"prev": None, "self": None, "induction": ["1.5"]},
                          lambda given: propose_roles(weak, CFG, given), MODEL)
    assert roles["induction"] == ["1.5"] and roles["prev"] == "0.3"


def test_propose_is_not_called_when_config_settles_every_role():
    def propose(given):
        raise AssertionError("called")
    config = {"prev": "0.0", "self": ["0.1", "0.2", "0.5"], "induction": ["1.5", "1.6"]}
    assert resolve_roles(config, propose, MODEL) == config
    assert resolve_roles({**config, "self": []}, propose, MODEL)["self"] == []


def test_a_proposal_cannot_override_config():
    proposal = {"prev": "0.3", "self": ["0.7"], "induction": ["1.1"]}
    roles = resolve_roles({"prev": "0.0", "self": None, "induction": None}, lambda given: proposal, MODEL)
    assert roles == {"prev": "0.0", "self": ["0.7"], "induction": ["1.1"]}


@pytest.mark.parametrize("role, value", [
    ("induction", ["3.9"]),      # no layer 3
    ("induction", ["1.8"]),      # heads 0..7
    ("prev", "0.x"),             # not a head name
    ("prev", "0"),
    ("self", ["0.1", "abc"]),
    ("prev", 0.0),               # an unquoted YAML number
    ("self", "0.1"),             # a string, not a list
    ("prev", "1.0"),             # prev is a layer-0 head
    ("induction", ["0.4"]),      # induction heads are in layer 1
    ("induction", []),           # at least one induction head
    ("self", ["0.1", "0.1"]),    # listed twice
])
def test_bad_config_roles_name_the_role(role, value):
    config = {"prev": "0.0", "self": ["0.1"], "induction": ["1.5"], role: value}
    with pytest.raises(ConfigError) as err:
        resolve_roles(config, lambda given: propose_roles(scores(), CFG, given), MODEL)
    assert err.value.param == f"roles.{role}"


def test_a_head_with_two_roles():
    with pytest.raises(ConfigError) as err:
        resolve_roles({"prev": "0.1", "self": ["0.1"], "induction": ["1.5"]}, lambda given: given, MODEL)
    assert err.value.param == "roles.self"


def test_an_unknown_role():
    with pytest.raises(ConfigError) as err:
        resolve_roles({**NULL, "inductoin": ["1.5"]}, lambda given: propose_roles(scores(), CFG, given), MODEL)
    assert err.value.param == "roles"


# --- the heads stage -----------------------------------------------------------------------------

def run_heads(cwd: Path) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "pipeline.stages.heads", "0", cwd=cwd, env=one_thread(PYTHONPATH=str(ROOT)),
              check=False)


@pytest.mark.e2e
def test_heads_stage_with_config_roles(tmp_path):
    roles = {"prev": "0.0", "self": ["0.1"], "induction": ["1.2", "1.3"]}
    project = heads_project(tmp_path, roles)
    result = run_heads(project)
    assert result.returncode == 0, result.stderr
    assert json.loads((project / "data/heads/seed0/roles.json").read_text()) == roles
    scores = json.loads((project / "data/heads/seed0/scores.json").read_text())
    assert len(scores["previous_token_score"]) == 2 and len(scores["induction_score"]) == 4


@pytest.mark.e2e
def test_heads_stage_on_a_model_without_a_previous_token_head(tmp_path):
    # A random model attends nowhere in particular: no proposal, one error line, no output.
    project = heads_project(tmp_path, dict(NULL))
    result = run_heads(project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: roles.prev: no layer-0 head attends to the previous token")
    assert not (project / "data/heads").exists()
