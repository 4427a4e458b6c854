"""What every stage shares: the parameters, one error convention, and atomic outputs.

A stage is `python -m pipeline.stages.NAME`: read params.yaml, load inputs, call the library,
write outputs. Outputs are written next to their final place and renamed into it at the end, so
a failed stage leaves nothing half-written.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

PARAMS_FILE = Path("params.yaml")


class ConfigError(Exception):
    """Bad input a user can fix: the message names the parameter (or file) at fault."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(str(path), "not found; run `python -m pipeline.params` to compose it from conf/")
    with open(path) as f:
        return yaml.safe_load(f)


def require(params: dict, dotted: str) -> Any:
    """params['a']['b'] for 'a.b', or a ConfigError naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(dotted, "missing from params.yaml")
        node = node[part]
    return node


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final` (file or folder); rename it into place only if the
    block succeeds, replacing what was there."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent)) / final.name
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a ConfigError or a missing input becomes one line on stderr and
    exit status 2."""
    try:
        main()
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
