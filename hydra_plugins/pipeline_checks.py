"""Loaded by Hydra's plugin scan, which `dvc exp run -S` (and `python -m pipeline.config`) runs
with the repository root on sys.path before composing conf/:

- registers the `${pipeline.check:}` resolver that conf/config.yaml's `checked` key calls, so
  every composition runs the schema of pipeline/config/schema.py;
- reads every YAML file of conf/ first, so that a syntax error is one line naming the file
  (`ERROR: conf/hypothesis/x.yaml: is not valid YAML: line 3, column 8: ...`) instead of
  PyYAML's error raised from inside Hydra.

- makes Hydra's own composition errors (an unknown `-S` key or group option) one line too:
  DVC would print their several lines, with the config search path, as an "unexpected error"
  under a banner.

A namespace package (no __init__.py), as Hydra's plugin discovery wants.
"""
import functools
from pathlib import Path

from pipeline.config.compose import (
    CompositionError,
    check_yaml_files,
    one_line,
    register,
)
from pipeline.errors import ConfigError


def _one_line_hydra_errors() -> None:
    try:  # Hydra's internals: if they move, Hydra's errors keep their own form
        from hydra._internal.hydra import Hydra
        from hydra.errors import HydraException
    except ImportError:
        return
    compose = Hydra.compose_config
    if getattr(compose, "one_line", False):  # the plugin scan may run this module twice
        return

    @functools.wraps(compose)
    def compose_config(self, *args, **kwargs):
        try:
            return compose(self, *args, **kwargs)
        except HydraException as err:
            message = str(err)
            if err.__cause__ is not None and str(err.__cause__):  # e.g. "Key 'x' is not in struct"
                message += f": {str(err.__cause__).splitlines()[0]}"
            raise CompositionError(one_line(message)) from None

    compose_config.one_line = True
    Hydra.compose_config = compose_config


register()
_one_line_hydra_errors()
try:
    check_yaml_files(Path(__file__).resolve().parent.parent / "conf")
except ConfigError as err:
    raise CompositionError(err) from None
