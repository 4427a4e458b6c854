"""What every stage shares: the parameters, one error convention, and atomic outputs.

A stage is `python -m pipeline.stages.NAME`: read params.yaml, load inputs, call the library,
write outputs. Outputs are written next to their final place and renamed into it at the end, so
a failed stage leaves nothing half-written; what a killed stage leaves beside them (a folder
`.NAME.tmp-PID-*`, ignored by git and DVC) the next stage run removes.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import yaml

if TYPE_CHECKING:
    from pipeline.paths import ModelPaths

PARAMS_FILE = Path("params.yaml")
# Folders below the root (params.yaml) whose children may be atomic_path's temporaries: data/,
# data/<stage>/, data/<stage>/seed<N>/ (the per-model stages; data/cache_l0/seed<N> is written
# into data/cache_l0/), data/scrub/seed<N>/<key>/, reports/, reports/<folder>/ and
# reports/<folder>/seed<N>/ (the head views); not a recursive walk, which would read all of
# data/external/.
TEMP_PARENTS = ("data", "data/*", "data/*/*", "data/scrub/*/*", "reports", "reports/*", "reports/*/*")
_TEMP = re.compile(r"^\..+\.tmp-(\d+)-[^/]*$")


class ConfigError(Exception):
    """Bad input a user can fix: the message names the parameter (or file) at fault."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml, checked against pipeline.schema: composition checked it already, but a
    hand-edited file should fail here, with one line, not deep in a stage."""
    from pipeline import schema  # imports this module

    if not path.exists():
        root = repository_root()
        if root is not None and root != Path.cwd().resolve():
            raise ConfigError(str(path), f"not found in {Path.cwd()}: run the stages from the repository root "
                                         f"(cd {root})")
        raise ConfigError(str(path), "not found; run `python -m pipeline.params` to compose it from conf/")
    with open(path) as f:
        try:
            params = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(str(path), f"is not valid YAML: {one_line_yaml_error(err)}") from err
    schema.check_present(params)
    return params


def one_line_yaml_error(err: Exception) -> str:
    """PyYAML's multi-line error (context, problem, a caret under the line) as one line."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def require(params: dict, dotted: str) -> Any:
    """params['a']['b'] for 'a.b', or a ConfigError naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(dotted, "missing from params.yaml")
        node = node[part]
    return node


def model_argument(params: dict, args: list[str], usage: str) -> "ModelPaths":
    """The model a per-model stage runs on, from its command line (`args[0]`: a seed of
    `seeds`; dvc.yaml's matrix stages pass it), as pipeline.paths.ModelPaths."""
    from pipeline.paths import ModelPaths

    seeds = [int(s) for s in require(params, "seeds")]
    if not args or not args[0].isdigit():
        raise ConfigError("seeds", f"usage: {usage}, SEED one of {seeds}")
    if int(args[0]) not in seeds:
        raise ConfigError("seeds", f"{seeds} has no seed {args[0]}")
    return ModelPaths(require(params, "model.dir"), int(args[0]))


def repository_root() -> Path | None:
    """The nearest folder at or above the working directory that holds dvc.yaml, else the folder
    of this package's project if it has one."""
    for folder in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        if (folder / "dvc.yaml").exists():
            return folder
    project = Path(__file__).resolve().parent.parent
    return project if (project / "dvc.yaml").exists() else None


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final` (file or folder); rename it into place only if the
    block succeeds, replacing what was there. The temporary folder's name carries this process's
    id, so that clean_stale_temporaries can tell a killed stage's leftovers from a running one's."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent)) / final.name
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


def clean_stale_temporaries(root: Path | str = ".") -> list[Path]:
    """Remove atomic_path's temporary folders under `root` (see TEMP_PARENTS) whose process is
    gone: a killed stage's half-written output (the layer-0 cache's is hundreds of MB). Returns
    what it removed."""
    removed = []
    parents = [Path(root)] + [p for pattern in TEMP_PARENTS for p in Path(root).glob(pattern)]
    for parent in parents:
        if parent.is_dir():
            for child in parent.iterdir():
                match = _TEMP.match(child.name)
                if match and child.is_dir() and not process_alive(int(match.group(1))):
                    shutil.rmtree(child, ignore_errors=True)
                    removed.append(child)
    return removed


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a ConfigError or a missing input becomes one line on stderr and
    exit status 2. Leftovers of killed stages are removed first."""
    try:
        for path in clean_stale_temporaries():
            print(f"removed {path}, left by a stage that was stopped")
        main()
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
