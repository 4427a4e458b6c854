"""A stage stopped by Ctrl-C or SIGTERM: one line naming the stage, exit 128 + the signal's number,
and nothing of the output it was writing left behind (pipeline.outputs.run_stage)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SLOW_STAGE = """
import time
from pipeline.outputs import atomic_path, run_stage

def main():
    with atomic_path("data/slow/result.txt") as tmp:
        tmp.write_text("half of it")
        print("writing", flush=True)
        time.sleep(60)

run_stage(main)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_stage_is_one_line_and_leaves_nothing(tmp_path, sig):
    (tmp_path / "slow_stage.py").write_text(SLOW_STAGE)
    process = subprocess.Popen([sys.executable, "slow_stage.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline() == "writing\n"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + sig.value
    assert stderr.strip().count("\n") == 0, stderr
    assert stderr.startswith(f"error: stage slow_stage interrupted ({sig.name})")
    assert list((tmp_path / "data/slow").iterdir()) == []  # no result.txt, no temporary folder
