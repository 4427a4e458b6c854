"""Running the project's commands from tests: a failure shows the command's last output."""
from __future__ import annotations

import os
import subprocess


def one_thread(**extra: str) -> dict:
    """The test process's environment with one OpenMP thread (the tests share two cores), plus
    `extra` (e.g. PYTHONPATH, HF_HOME)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def sh(*cmd, cwd, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` in `cwd` (one thread unless `env` says otherwise); with `check`, a non-zero exit
    fails the test with the end of stdout and stderr."""
    env = env if env is not None else one_thread()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result
