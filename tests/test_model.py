"""The model refuses sequences longer than its context."""
from __future__ import annotations

import pytest
import torch

from pipeline.model import AttnOnlyTransformer, ModelConfig


def test_a_sequence_longer_than_n_ctx_is_refused():
    model = AttnOnlyTransformer(ModelConfig(d_vocab=50, n_ctx=24, d_model=32, n_heads=4, d_head=8))
    model(torch.randint(0, 50, (2, 24)))
    with pytest.raises(ValueError, match="25 positions exceeds the model's n_ctx=24"):
        model(torch.randint(0, 50, (2, 25)))
