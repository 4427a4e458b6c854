"""Shared fixtures. Tests run on two cores beside other work: one thread, small batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.model import AttnOnlyTransformer, ModelConfig

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model() -> AttnOnlyTransformer:
    """A seeded model of the default architecture (replaced by the committed trained model once
    it exists)."""
    torch.manual_seed(0)
    m = AttnOnlyTransformer(ModelConfig(d_vocab=2048, n_ctx=512))
    return m.eval()


@pytest.fixture(scope="session")
def sequences() -> torch.Tensor:
    """[8, 302] token sequences: BEGIN (id 0) + 300 tokens + 1 target, with repeated spans so
    induction has something to do (replaced by real held-out text once the tokenizer exists)."""
    rng = np.random.default_rng(0)
    rows = rng.integers(2, 2048, size=(8, 302))
    rows[:, 0] = 0
    rows[:, 200:260] = rows[:, 40:100]
    return torch.from_numpy(rows).long()
