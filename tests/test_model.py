"""Placing a short row later in the context (training's curriculum) reads later rows of W_pos."""
from __future__ import annotations

import pytest
import torch

from pipeline.model import AttnOnlyTransformer, ModelConfig


def test_first_position_reads_later_position_embeddings():
    torch.manual_seed(0)
    cfg = ModelConfig(d_vocab=50, n_ctx=24, d_model=32, n_heads=4, d_head=8)
    model, shifted = AttnOnlyTransformer(cfg), AttnOnlyTransformer(cfg)
    shifted.load_state_dict(model.state_dict())
    with torch.no_grad():
        shifted.W_pos[:10] = model.W_pos[7:17]
    tokens = torch.randint(0, 50, (3, 10))
    torch.testing.assert_close(model(tokens, first_position=7), shifted(tokens))
    assert not torch.allclose(model(tokens, first_position=7), model(tokens))
    with pytest.raises(ValueError, match="from 15 exceeds the model's n_ctx=24"):
        model(tokens, first_position=15)
