"""Loaded by Hydra's plugin scan, which `dvc exp run -S` (and `python -m pipeline.params`) runs
with the repository root on sys.path before composing conf/:

- registers the `${pipeline.check:}` resolver that conf/config.yaml's `checked` key calls, so
  every composition runs the schema of pipeline/schema.py;
- reads every YAML file of conf/ first, so that a syntax error is one line naming the file
  (`ERROR: conf/hypothesis/x.yaml: is not valid YAML: line 3, column 8: ...`) instead of
  PyYAML's error raised from inside Hydra.

A namespace package (no __init__.py), as Hydra's plugin discovery wants.
"""
from pathlib import Path

from pipeline.schema import CompositionError, check_yaml_files, register
from pipeline.stage import ConfigError

register()
try:
    check_yaml_files(Path(__file__).resolve().parent.parent / "conf")
except ConfigError as err:
    raise CompositionError(err) from None
