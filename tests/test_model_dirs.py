"""A trained model's folder follows its recipe (pipeline/config/recipe.py): the committed default
models in data/model/ are reachable by their own recipe only, so no preset, changed parameter or
interrupted run can overwrite them, and the default composed after any of them retrains nothing."""
from __future__ import annotations

import copy
import json
import sys

import pytest
import yaml

from pipeline.config import recipe, schema
from pipeline.config.training import Train
from pipeline.errors import ConfigError
from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.shell import sh

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def sections(params: dict) -> dict:
    return schema.recipe_sections(params["model"], params["data"], params["tokenizer"])


def test_the_committed_params_are_the_committed_recipe():
    assert PARAMS["model"]["dir"] == recipe.COMMITTED_DIR == recipe.model_dir(recipe.recipe_id(sections(PARAMS)))
    assert PARAMS["model"]["recipe"] == recipe.COMMITTED == recipe.recipe_id(sections(PARAMS))


@pytest.mark.parametrize("section, key, value", [
    ("model", "n_ctx", 512), ("train", "steps", 10), ("train", "betas", [0.9, 0.99]),
    ("tokenizer", "vocab_size", 512), ("data", "max_documents", 60),
])
def test_any_other_recipe_gets_its_own_folder_and_data_model_is_refused(section, key, value):
    params = copy.deepcopy(PARAMS)
    (params["model"]["train"] if section == "train" else params[section])[key] = value
    name = recipe.recipe_id(sections(params))
    folder = recipe.model_dir(name)
    assert folder == f"data/model/{name}" and name.startswith("recipe-") and name != recipe.recipe_id(sections(PARAMS))
    with pytest.raises(ConfigError, match="is not this recipe's name") as err:
        schema.check(params)  # model.recipe still default
    assert err.value.param == "model.recipe"
    params["model"]["recipe"] = name
    with pytest.raises(ConfigError, match="is not this recipe's folder") as err:
        schema.check(params)  # model.dir still data/model
    assert err.value.param == "model.dir"
    params["model"]["dir"] = folder
    schema.check(params)


def test_a_default_written_out_is_the_same_recipe():
    params = copy.deepcopy(PARAMS)
    params["model"]["train"]["grad_clip"] = Train.model_fields["grad_clip"].default
    assert recipe.recipe_id(sections(params)) == recipe.COMMITTED


@pytest.mark.e2e
def test_a_preset_then_the_default_retrains_nothing(tmp_path):
    """The tiny preset trains its model beside the committed ones; composing the default again
    finds the committed models untouched and their stages up to date."""
    work = scratch_project(tmp_path, dvc=True, extra=["params.yaml", "dvc.lock", "data/model"],
                           with_data=["data/external/brown"])
    committed = {p.relative_to(work): p.read_bytes() for p in (work / "data/model").rglob("*") if p.is_file()}
    sh("dvc", "init", "--no-scm", "-q", cwd=work)
    sh(sys.executable, "-m", "pipeline.config", "preset=tiny", cwd=work)
    tiny = yaml.safe_load((work / "params.yaml").read_text())["model"]["dir"]
    assert tiny.startswith("data/model/recipe-")
    sh("dvc", "repro", f"model@0-{tiny.rpartition('/')[2]}", cwd=work)
    assert (work / tiny / "seed0/model.pt").exists()
    assert json.loads((work / tiny / "seed0/source.json").read_text()) == {"source": "trained", "seed": 0}
    sh(sys.executable, "-m", "pipeline.config", cwd=work)  # the default again, as any `dvc exp run -S` composes it
    assert yaml.safe_load((work / "params.yaml").read_text()) == PARAMS
    sh("dvc", "repro", "tokenize", cwd=work)  # the default's tokens, as `dvc repro` makes them before the models
    status = sh("dvc", "status", *(f"model@{seed}-default" for seed in PARAMS["seeds"]), cwd=work).stdout
    assert "up to date" in status, status
    assert {p.relative_to(work): p.read_bytes() for p in (work / "data/model").rglob("*")
            if p.is_file() and not p.is_relative_to(work / tiny)} == committed
