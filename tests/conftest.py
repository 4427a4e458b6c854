"""Shared fixtures: the committed model and real held-out sequences. Tests run on two cores
beside other work, so one thread and small batches."""
from __future__ import annotations

import json
import subprocess

import pytest
import torch

from pipeline.data.sequences import load_sequences
from pipeline.weights.checkpoint import load_checkpoint
from tests.helpers import ROOT

torch.set_num_threads(1)
SEQUENCES = ROOT / "data/tokens/sequences.parquet"
ROLES = ROOT / "data/heads/seed0/roles.json"


@pytest.fixture(scope="session")
def model():
    """The first default model, data/model/seed0/model.pt (committed to git with dvc.lock)."""
    return load_checkpoint(ROOT / "data/model/seed0/model.pt").eval()


@pytest.fixture(scope="session")
def sequences() -> torch.Tensor:
    """[16, seq_len + 2] held-out sequences of the default pipeline: BEGIN + seq_len tokens + 1
    target. A fresh clone has no DVC cache, so the (seconds-long) upstream stages are rerun."""
    if not SEQUENCES.exists():
        subprocess.run(["dvc", "repro", "tokenize"], cwd=ROOT, check=True)
    return torch.from_numpy(load_sequences(SEQUENCES)[:16])


@pytest.fixture(scope="session")
def model_roles() -> dict:
    """The committed model's own head roles (the heads@0 stage's roles.json, committed; in a
    checkout without it, that stage and its upstream ones are rerun, ~30 s)."""
    if not ROLES.exists():
        subprocess.run(["dvc", "repro", "heads@0"], cwd=ROOT, check=True)
    return json.loads(ROLES.read_text())
