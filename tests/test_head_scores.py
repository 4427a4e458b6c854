"""The heads stage's scores (pipeline.analysis.measure, pipeline/stages/heads.py): memory bounded by
`heads.batch_size`, not by how many sequences are measured; scores.json the same bytes batched or
not; the same quantities as pipeline.analysis.scores (the model stage's float32 evaluation); and
written at 9 significant digits, which float64 noise does not reach."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_leaves
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.analysis.measure import SIGNIFICANT_DIGITS, float64, measure_heads
from pipeline.analysis.scores import head_scores, repeated_random_tokens
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.stages import heads as heads_stage
from tests.helpers.heads_stage import heads_project

ROLES = {"prev": "0.0", "self": ["0.1"], "induction": ["1.2", "1.3"]}  # a random model proposes none
OUTPUTS = ("data/heads/seed0/scores.json", "data/heads/seed0/views.json", "data/heads/seed0/relative_attention.csv")


class LargestTensor(TorchDispatchMode):
    """While active: the bytes of the largest tensor any torch operation returns (every
    intermediate of every function, cross-entropy's log-softmax included)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.bytes = max(self.bytes, t.numel() * t.element_size())
        return out


def run_heads_stage(project, monkeypatch) -> int:
    """`python -m pipeline.stages.heads 0` in this process, in `project`: the largest tensor's bytes."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", ["pipeline.stages.heads", "0"])
    with LargestTensor() as seen:
        heads_stage.main()
    return seen.bytes


def test_the_largest_tensor_of_the_heads_stage_does_not_grow_with_the_sequences(tmp_path, monkeypatch):
    d_vocab, batch, length = 2000, 3, 10  # a vocabulary large enough for the logits to dominate
    largest = {}
    for n in (6, 24):
        project = heads_project(tmp_path / str(n), ROLES, n_sequences=24, d_vocab=d_vocab, heldout_sequences=n,
                                repeat_sequences=n, repeat_length=length, batch_size=batch)
        largest[n] = run_heads_stage(project, monkeypatch)
    assert largest[6] == largest[24], largest
    # one batch's float64 logits of repeated tokens [batch, 2·length, d_vocab]: the bound
    assert largest[24] <= batch * 2 * length * d_vocab * 8, largest


def test_scores_json_is_the_same_bytes_batched_or_not(tmp_path, monkeypatch):
    written = {}
    for batch in (1, 4, 64):  # 23 sequences: 4 leaves a short last batch; 64 is one batch
        project = heads_project(tmp_path / str(batch), ROLES, n_sequences=23, heldout_sequences=23,
                                repeat_sequences=23, batch_size=batch)
        run_heads_stage(project, monkeypatch)
        written[batch] = [(project / name).read_bytes() for name in OUTPUTS]
    assert written[1] == written[4] == written[64]


def small_model(seed: int = 0) -> AttnOnlyTransformer:
    torch.manual_seed(seed)
    model = AttnOnlyTransformer(ModelConfig(d_vocab=300, n_ctx=64, d_model=32, n_heads=4, d_head=8)).eval()
    with torch.no_grad():
        model.blocks[0].attn.W_Q.mul_(6)  # peaked attention: scores that differ between heads
    return model


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    heldout = torch.randint(2, 300, (10, 40), generator=gen)
    heldout[:, 0] = 0
    heldout[:, 20:30] = heldout[:, 5:15]  # repeats, so the same-token score has queries
    return heldout, repeated_random_tokens(7, 12, range(2, 300), 0, seed=0)


def test_the_scores_are_the_model_stages_scores_to_float32_rounding():
    model = small_model()
    heldout, repeated = inputs()
    old = head_scores(model, heldout, repeated, 12)  # float32, every sequence at once
    new = measure_heads(model, heldout, repeated, 12, batch_size=3)
    assert old.keys() == new.keys()
    for key in old:
        np.testing.assert_allclose(np.asarray(new[key]), np.asarray(old[key]), rtol=1e-6, atol=1e-7, err_msg=key)
    assert np.ptp(new["previous_token_score"][0]) > 0.05  # distinct heads: a swapped index would show


def numbers(scores: dict) -> list[float]:
    return [float(v) for v in np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in scores.values()])]


def test_scores_are_written_at_nine_significant_digits_and_float64_noise_does_not_reach_them():
    model = float64(small_model())
    heldout, repeated = inputs()
    scores = measure_heads(model, heldout, repeated, 12, batch_size=4)
    for value in numbers(scores):
        mantissa = f"{value!r}".lower().split("e")[0]  # what JSON writes, exponent dropped
        assert len(mantissa.replace("-", "").replace(".", "").strip("0")) <= SIGNIFICANT_DIGITS, value
    assert json.loads(json.dumps(scores)) == scores
    # Another CPU's float64 kernels round differently, ~1e-16 relative per operation: emulated by
    # moving every weight by a relative 1e-14 either way. The written numbers do not move.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 1e-14 * (2 * torch.randint(0, 2, p.shape, generator=gen, dtype=torch.float64) - 1))
    assert measure_heads(model, heldout, repeated, 12, batch_size=4) == scores


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_refused(batch_size):
    heldout, repeated = inputs()
    with pytest.raises(ValueError, match="batch_size"):
        measure_heads(small_model(), heldout, repeated, 12, batch_size)
