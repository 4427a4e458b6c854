"""A scratch copy of the project for tests that run its commands (DVC, the stages, the
composition of params.yaml) without touching the repository."""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tests.helpers import ROOT

CODE = ("pipeline", "conf")  # what `python -m pipeline.config` and `python -m pipeline.stages.NAME` need
# What DVC needs besides: its stages, and the Hydra plugin its composition (`dvc exp run -S`) loads.
# Not copied without `dvc`: `python -m pipeline.config` in a folder with hydra_plugins/ loads it too.
DVC = ("dvc.yaml", "hydra_plugins")


def scratch_project(dest: Path, *, dvc: bool = False, extra: Iterable[str] = (), with_data: Iterable[str] = ()) -> Path:
    """Copy CODE into `dest` (made if missing); with `dvc`, DVC as well; then the files or folders
    `extra` names (paths under the repository root, e.g. params.yaml, .gitignore: they must exist);
    then those of `with_data` this checkout has (downloads such as data/external/brown: a copy
    spares the network a second fetch). No __pycache__. Returns `dest`; makes no git or DVC repo."""
    dest.mkdir(parents=True, exist_ok=True)
    present = [name for name in with_data if (ROOT / name).exists()]
    for name in (*CODE, *(DVC if dvc else ()), *extra, *present):
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    return dest
