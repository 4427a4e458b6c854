"""pipeline/paths.py and dvc.yaml name the same files: a stage that writes elsewhere than DVC
expects, or reads a file DVC does not know it depends on, fails here. dvc.yaml is resolved by
DVC itself (its matrix stages and ${...} templates), with two models."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipeline import paths
from tests.helpers import ROOT

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def declared(tmp_path_factory) -> dict[str, set[str]]:
    """Stage name → every dep and out path DVC resolves for it, with seeds SEEDS."""
    from dvc.repo import Repo

    work = tmp_path_factory.mktemp("paths")
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": SEEDS}, sort_keys=False))
    repo = Repo.init(work, no_scm=True)
    try:
        return {stage.name: {str(Path(o.def_path)) for o in (*stage.deps, *stage.outs)}
                for stage in repo.index.stages}
    finally:
        repo.close()


def covered(path: str, names: set[str]) -> bool:
    """`path` is declared, or lies inside a declared folder, or is a declared folder's parent."""
    return any(path == n or path.startswith(n + "/") or n.startswith(path + "/") for n in names)


def test_every_stage_path_is_declared_in_dvc_yaml(declared):
    names = set().union(*declared.values())
    for name, value in vars(paths).items():
        if name.isupper() and value != paths.GPT2_FILES:  # GPT-2's files are a download, not a stage output
            assert covered(value, names), f"paths.{name} = {value!r} is not in dvc.yaml"


def model_files(m: paths.ModelPaths, hypotheses: list[str]) -> list[str]:
    files = [getattr(m, name) for name, value in vars(paths.ModelPaths).items()
             if isinstance(value, property) and name != "name"]
    for key in hypotheses:
        files += [m.scrub_metrics(key), m.scrub_losses(key), m.scrub_positions(key), m.scrub_breakdown(key)]
    return files


def test_every_models_files_are_its_own_stages(declared):
    """Each model's files are declared by that model's matrix stages (model@<seed>, heads@<seed>,
    …), never by another model's."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    hypotheses = list(params["hypotheses"])
    for seed in SEEDS:
        m = paths.ModelPaths(params["model"]["dir"], seed)
        own = set().union(*(names for stage, names in declared.items() if f"@{seed}" in stage))
        others = set().union(*(names for stage, names in declared.items()
                               if "@" in stage and f"@{seed}" not in stage))
        for path in model_files(m, hypotheses):
            assert covered(path, own), f"{path} is not declared by a stage of seed {seed}"
            assert not any(path == n or path.startswith(n + "/") for n in others), f"{path} is another model's"
    assert {f"scrub@{seed}-{key}" for seed in SEEDS for key in hypotheses} <= set(declared)
