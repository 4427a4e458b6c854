"""params.yaml as the stages read it: loaded and validated (pipeline.config.schema.Params), and the
model a per-model stage runs on."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import schema
from pipeline.errors import ConfigError, one_line_yaml_error
from pipeline.paths import ModelPaths

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> schema.Params:
    """params.yaml, validated: composition checked it already, but a hand-edited file should fail
    here, with one line, not deep in a stage. A file with only some sections (a test's, for one
    stage) gives Params with only those (schema.check_present)."""
    if not path.exists():
        root = repository_root()
        if root is not None and root != Path.cwd().resolve():
            raise ConfigError(str(path), f"not found in {Path.cwd()}: run the stages from the repository root "
                                         f"(cd {root})")
        raise ConfigError(str(path), "not found; run `python -m pipeline.config` to compose it from conf/")
    with open(path) as f:
        try:
            params = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(str(path), f"is not valid YAML: {one_line_yaml_error(err)}") from err
    return schema.check_present(params)


def model_argument(params: schema.Params, args: list[str], usage: str) -> ModelPaths:
    """The model a per-model stage runs on, from its command line (`args[0]`: a seed of
    `seeds`; dvc.yaml's matrix stages pass it), as pipeline.paths.ModelPaths."""
    seeds = list(params.seeds)
    if not args or not args[0].isdigit():
        raise ConfigError("seeds", f"usage: {usage}, SEED one of {seeds}")
    if int(args[0]) not in seeds:
        raise ConfigError("seeds", f"{seeds} has no seed {args[0]}")
    return ModelPaths(params.model.dir, int(args[0]))


def repository_root() -> Path | None:
    """The nearest folder at or above the working directory that holds dvc.yaml, else the folder
    of this package's project if it has one."""
    for folder in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        if (folder / "dvc.yaml").exists():
            return folder
    project = Path(__file__).resolve().parents[2]
    return project if (project / "dvc.yaml").exists() else None


