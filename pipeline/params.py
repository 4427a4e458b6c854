"""Compose conf/ into params.yaml, exactly as `dvc exp run -S` does (same DVC function).

    python -m pipeline.params                   # after editing conf/, before `dvc repro`
    python -m pipeline.params preset=tiny       # with Hydra overrides
    python -m pipeline.params --check           # exit 1 if params.yaml is stale
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pipeline.stage import ConfigError, atomic_path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def compose(output: Path, overrides: list[str]) -> None:
    from dvc.utils.hydra import compose_and_dump

    from pipeline import schema

    # DVC passes its repo root as the plugins path, where hydra_plugins/ registers the schema's
    # resolver; registering it here too lets a copy of pipeline/ and conf/ alone compose.
    schema.register()
    schema.check_yaml_files(CONF_DIR)
    compose_and_dump(output, str(CONF_DIR), None, "config", str(ROOT), overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=redwood train.steps=100")
    parser.add_argument("--check", action="store_true", help="compare with params.yaml instead of writing it")
    parser.add_argument("--output", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                fresh = Path(tmp) / "params.yaml"
                compose(fresh, args.overrides)
                if not args.output.exists() or fresh.read_text() != args.output.read_text():
                    print(f"{args.output} differs from the composition of conf/; run `python -m pipeline.params`",
                          file=sys.stderr)
                    return 1
            return 0
        with atomic_path(args.output) as tmp:
            compose(tmp, args.overrides)
    except Exception as err:  # the schema's errors, and Hydra's (unknown group option, bad override)
        from pipeline.schema import CompositionError

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


if __name__ == "__main__":
    sys.exit(main())
