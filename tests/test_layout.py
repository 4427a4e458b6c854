"""The package's layout: the import-linter contracts of pyproject.toml (layers, stages that import no
other stage, no torch where DVC composes params, no matplotlib in the stages), no import circle, and
dvc.yaml deps that cover the code each stage runs."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml

from tests.helpers import ROOT
from tests.helpers.project import scratch_project


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `root`, with that pyproject.toml's contracts."""
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=root,
                          capture_output=True, text=True)


def test_every_import_linter_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for contract in ("Layers: no import runs upward", "Stages are glue: no stage imports another",
                     "What DVC's process imports to compose params loads no torch",
                     "Stages draw nothing: no stage imports matplotlib"):
        assert f"{contract} KEPT" in result.stdout


@pytest.mark.parametrize("module, line", [
    ("pipeline/config/schema.py", "from pipeline.scrub.engine import PARTS"),  # a lower layer imports a higher one
    ("pipeline/stages/sweep.py", "from pipeline.stages.scrub import main as scrub_main"),  # a stage imports a stage
    ("pipeline/fetch/hub.py", "import torch"),  # torch where DVC composes params
    ("pipeline/stages/report.py", "from matplotlib.lines import Line2D"),  # a stage that draws
])
def test_a_broken_contract_fails(tmp_path, module, line):
    scratch_project(tmp_path, extra=["pyproject.toml"])
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("pipeline", cache_dir=None)


def test_no_import_circle():
    graph = _graph()
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                circles.append((module, imported))
    assert circles == []


# What every stage runs to read params.yaml and write its outputs: a change here changes how a
# stage starts or fails, never its numbers, so no stage lists these (and what only they import).
PLUMBING = {"pipeline.config.load", "pipeline.config.schema", "pipeline.config.base", "pipeline.outputs",
            "pipeline.errors", "pipeline.paths"}


def _imports_nothing(path: Path) -> bool:
    """A package's __init__.py that only holds a docstring: Python runs it first, but it changes nothing."""
    return not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(ast.parse(path.read_text())))


def stage_code(module: str, graph: grimp.ImportGraph) -> set[str]:
    """Every file of pipeline/ that `python -m <module>` executes, but PLUMBING: its transitive
    imports and, for each, the __init__.py of its packages (which Python runs first)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name in PLUMBING or not name.startswith("pipeline"):
            continue
        seen.add(name)
        todo.extend(graph.find_modules_directly_imported_by(name))
        if "." in name:
            todo.append(name.rpartition(".")[0])
    files = set()
    for name in seen:
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if path.name == "__init__.py" and _imports_nothing(path):
            continue
        files.add(path.relative_to(ROOT).as_posix())
    return files


def dvc_stages(dvc_yaml: dict) -> dict[str, tuple[str, list[str]]]:
    """stage name → (the module its cmd runs, its deps)."""
    out = {}
    for name, stage in dvc_yaml["stages"].items():
        match = re.match(r"python -m (pipeline\.stages\.\w+)", stage["cmd"])
        assert match, f"stage {name}: cmd {stage['cmd']!r} is not `python -m pipeline.stages.NAME`"
        out[name] = (match.group(1), [str(d) for d in stage.get("deps", [])])
    return out


def uncovered_code(dvc_yaml: dict) -> dict[str, list[str]]:
    graph = _graph()
    missing = {}
    for name, (module, deps) in dvc_stages(dvc_yaml).items():
        lacking = sorted(f for f in stage_code(module, graph)
                         if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
        if lacking:
            missing[name] = lacking
    return missing


def test_dvc_deps_cover_the_code_each_stage_runs():
    assert uncovered_code(yaml.safe_load((ROOT / "dvc.yaml").read_text())) == {}


def test_deps_test_fails_when_a_stage_loses_a_code_dep():
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc_yaml["stages"]["scrub"]["deps"].remove("pipeline/scrub/cache.py")
    assert uncovered_code(dvc_yaml) == {"scrub": ["pipeline/scrub/cache.py"]}


def test_deps_name_no_code_the_stage_does_not_run():
    """A stale dep reruns a stage for nothing; a moved module leaves one behind."""
    graph = _graph()
    extra = {}
    for name, (module, deps) in dvc_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text())).items():
        code = stage_code(module, graph)
        stale = [d for d in deps if d.startswith("pipeline/") and d.endswith(".py") and d not in code]
        if stale:
            extra[name] = stale
    assert extra == {}
