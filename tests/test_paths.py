"""pipeline/paths.py and dvc.yaml name the same files: a stage that writes elsewhere than DVC
expects, or reads a file DVC does not know it depends on, fails here."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline import paths

ROOT = Path(__file__).resolve().parent.parent


def declared() -> set[str]:
    """Every dep and out named in dvc.yaml (templated ones left out)."""
    names: set[str] = set()
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        stage = stage.get("do", stage)
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                name = entry if isinstance(entry, str) else next(iter(entry))
                if "${" not in name:
                    names.add(name)
    return names


def test_every_stage_path_is_declared_in_dvc_yaml():
    names = declared()
    for name, value in vars(paths).items():
        if name.isupper() and value != paths.GPT2_FILES:  # GPT-2's files are a download, not a stage output
            folder_or_file = value if value in names else None
            inside = [n for n in names if n.startswith(value + "/")]
            assert folder_or_file or inside, f"paths.{name} = {value!r} is not in dvc.yaml"
