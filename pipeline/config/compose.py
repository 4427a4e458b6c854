"""Compose conf/ into params.yaml, exactly as `dvc exp run -S` does (same DVC function).

    python -m pipeline.config                   # after editing conf/, before `dvc repro`
    python -m pipeline.config preset=tiny       # with Hydra overrides
    python -m pipeline.config --check           # exit 1 if params.yaml is stale
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from omegaconf.errors import InterpolationResolutionError
from pydantic import ValidationError

from pipeline.config import recipe, schema
from pipeline.errors import ConfigError, one_line_yaml_error
from pipeline.fetch.plan import missing_downloads
from pipeline.outputs import atomic_path

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"
RESOLVER = "pipeline.check"

try:  # DVC prints its own exceptions as one line, "ERROR: <message>", other ones with a banner
    from dvc.exceptions import DvcException as _Base
except ImportError:  # composing without DVC installed (only Hydra)
    _Base = Exception


class CompositionError(InterpolationResolutionError, _Base):
    """A ConfigError (or one of Hydra's, made one line) met while composing conf/. Raised from
    the `checked` key's resolver, it must be an InterpolationResolutionError for OmegaConf to pass
    it on unwrapped; DVC prints a DvcException as one line, `ERROR: <message>`, where other errors
    get a banner."""

    def __init__(self, err: ConfigError | str):
        message = str(err)
        InterpolationResolutionError.__init__(self, message)
        if _Base is not Exception:
            _Base.__init__(self, message)
        self.msg, self.param = message, getattr(err, "param", None)

    def __str__(self) -> str:
        return self.msg


def _resolve(*, _root_: Any) -> bool:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(_root_, resolve=False)
    for key in ("dir", "recipe"):  # ${pipeline.model_dir:...}, ${pipeline.recipe:} resolved
        if isinstance(raw.get("model"), dict) and key in raw["model"]:
            raw["model"][key] = _root_.model[key]
    try:
        params = schema.check(raw)
    except ConfigError as err:
        raise CompositionError(err) from None
    # Here, not in the first stage that downloads: `dvc exp run -S` writes params.yaml into the
    # workspace before running anything and leaves it there when a stage fails.
    missing = missing_downloads(params.model_dump(by_alias=True))
    if missing:
        raise CompositionError("\n".join(missing))
    return True


def _recipe_id(*, _root_: Any) -> str:
    """`${pipeline.recipe:}` (conf/model/trained.yaml): the name of the recipe being composed."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(_root_, resolve=False)
    try:
        sections = schema.recipe_sections(raw["model"], raw["data"], raw["tokenizer"])
    except (ValidationError, KeyError):  # the `checked` key names what is wrong
        sections = {key: raw.get(key) for key in ("model", "data", "tokenizer")}
    return recipe.recipe_id(sections)


def record_recipe(overrides: list[str]) -> Path:
    """Write the recipe of the composition into data/model/recipe.json: its trained models (moved
    to data/model/seed<N>/) become the committed ones."""
    with tempfile.TemporaryDirectory() as tmp:
        compose(Path(tmp) / "params.yaml", overrides)
        raw = yaml.safe_load((Path(tmp) / "params.yaml").read_text())
    sections = schema.recipe_sections(raw["model"], raw["data"], raw["tokenizer"])
    path = ROOT / recipe.RECIPE_FILE
    with atomic_path(path) as out:
        out.write_text(json.dumps(recipe.recipe(sections), indent=2, sort_keys=True) + "\n")
    return path


def check_yaml_files(conf_dir: Path) -> None:
    """A YAML syntax error in conf/ as one line naming the file: Hydra would raise PyYAML's
    error from deep in its defaults list (a 60-line traceback)."""
    import yaml

    for path in sorted(conf_dir.rglob("*.yaml")):
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            name = path.relative_to(conf_dir.parent) if conf_dir.is_absolute() else path
            raise ConfigError(str(name), f"is not valid YAML: {one_line_yaml_error(err)}") from None


def register() -> None:
    """Make `${pipeline.check:}`, `${pipeline.recipe:}` and `${pipeline.model_dir:NAME}` known to
    OmegaConf; idempotent (Hydra's plugin scan may run a plugin module twice)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(RESOLVER, _resolve, replace=True)
    OmegaConf.register_new_resolver("pipeline.model_dir", recipe.model_dir, replace=True)
    OmegaConf.register_new_resolver("pipeline.recipe", _recipe_id, replace=True)


def compose(output: Path, overrides: list[str]) -> None:
    from dvc.utils.hydra import compose_and_dump

    # DVC passes its repo root as the plugins path, where hydra_plugins/ registers the schema's
    # resolver; registering it here too lets a copy of pipeline/ and conf/ alone compose.
    register()
    check_yaml_files(CONF_DIR)
    compose_and_dump(output, str(CONF_DIR), None, "config", str(ROOT), overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=redwood train.steps=100")
    parser.add_argument("--check", action="store_true", help="compare with params.yaml instead of writing it")
    parser.add_argument("--output", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--record-recipe", action="store_true",
                        help=f"write the composition's model recipe into {recipe.RECIPE_FILE} "
                             f"(see pipeline.config.recipe)")
    args = parser.parse_args(argv)
    try:
        if args.record_recipe:
            print(f"{record_recipe(args.overrides).relative_to(ROOT)}: the committed models' recipe")
            return 0
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                fresh = Path(tmp) / "params.yaml"
                compose(fresh, args.overrides)
                if not args.output.exists() or fresh.read_text() != args.output.read_text():
                    print(f"{args.output} differs from the composition of conf/; run `python -m pipeline.config`",
                          file=sys.stderr)
                    return 1
            return 0
        with atomic_path(args.output) as tmp:
            compose(tmp, args.overrides)
    except Exception as err:  # the schema's errors, and Hydra's (unknown group option, bad override)
        if isinstance(err, (CompositionError, ConfigError)):
            print(f"error: {err}", file=sys.stderr)
            return 2
        if type(err).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    return 0


def one_line(message: str) -> str:
    """Hydra's multi-line error as one line: headers joined by '; ', each followed by its indented
    items joined by ', '; the config search path (noise to a user) dropped."""
    parts: list[str] = []
    for line in message.split("Config search path:")[0].splitlines():
        if not line.strip():
            continue
        if line[0].isspace() and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        else:
            parts.append(line.strip())
    out = ""
    for part in parts:
        out += (" " if out.endswith(".") else "; ") + part if out else part
    return out
