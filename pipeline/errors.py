"""The errors a user can fix, at the ground of the package: every layer raises them, and the
stages turn them into one line on stderr and exit status 2 (pipeline.outputs.run_stage)."""
from __future__ import annotations


class ConfigError(Exception):
    """Bad input a user can fix: the message names the parameter (or file) at fault."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, message


class MissingDownload(ConfigError):
    """A file the configuration asks the network for, neither reachable nor cached."""


def one_line_yaml_error(err: Exception) -> str:
    """PyYAML's multi-line error (context, problem, a caret under the line) as one line."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
