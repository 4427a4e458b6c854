"""Our model against TransformerLens' HookedTransformer, the implementation Redwood's
redwood_attn_2l was published for: the same weights give the same logits, in both directions of
the weight-name mapping (ours → TransformerLens through benchmarks/tl_hooks.py, which the scrub
reference builds on, and TransformerLens → ours through the Redwood loader
pipeline.weights.checkpoint.load_redwood)."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from transformer_lens import HookedTransformer  # the `test` extra

from benchmarks.tl_hooks import OURS_TO_TL, tl_config, to_hooked_transformer
from pipeline.model import AttnOnlyTransformer
from pipeline.weights.redwood import load_redwood

ATOL = 1e-4
# Perturbed weights give logits of ~20, where float32 rounding alone differs by ~1e-4 between two
# correct implementations (different summation orders); in float64 they agree to ~1e-13.
ATOL_FLOAT64 = 1e-9


def to_transformer_lens(model: AttnOnlyTransformer, split_qkv: bool = False) -> HookedTransformer:
    tl = to_hooked_transformer(model, split_qkv=split_qkv)
    # Only TransformerLens' own buffers (causal mask, IGNORE) are not ours.
    ours = {OURS_TO_TL.get(k, k) for k in model.state_dict()}
    assert all(k.endswith((".mask", ".IGNORE")) for k in set(tl.state_dict()) - ours)
    return tl


def perturbed(model: AttnOnlyTransformer, seed: int = 0) -> AttnOnlyTransformer:
    """A copy with noise on every parameter: LayerNorm weights away from 1 and biases away from 0,
    so a bias or LayerNorm weight mapped to the wrong place cannot go unnoticed."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return other.eval()


@pytest.fixture(scope="module")
def inputs(sequences) -> torch.Tensor:
    """4 real held-out sequences without their final target token: [4, 1 + seq_len]."""
    return sequences[:4, :-1]


@pytest.mark.parametrize("split_qkv", [False, True], ids=["shared-qkv", "split-qkv"])
@pytest.mark.parametrize("noise", [False, True], ids=["checkpoint", "perturbed"])
def test_transformer_lens_gives_our_logits(model, inputs, noise, split_qkv):
    """split-qkv: the configuration of the scrub reference, where each head reads its query, key
    and value from its own copy of the residual (blocks.L.hook_{q,k,v}_input)."""
    ours = perturbed(model) if noise else model
    tl = to_transformer_lens(ours, split_qkv)
    if noise:
        ours, tl = ours.double(), tl.to(torch.float64)  # `perturbed` made a copy already
    with torch.no_grad():
        expected = ours(inputs)
        got = tl(inputs)
    assert got.shape == expected.shape == (*inputs.shape, model.cfg.d_vocab)
    torch.testing.assert_close(got, expected, atol=ATOL_FLOAT64 if noise else ATOL, rtol=0)
    # Not a vacuous match: the logits vary across positions and vocabulary.
    assert expected.std() > 1e-2


def test_shortformer_positions_matter(model, inputs):
    """The comparison above is sensitive to how positions enter: TransformerLens with standard
    (residual-added) positions gives different logits."""
    cfg = tl_config(model)
    cfg.positional_embedding_type = "standard"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tl = HookedTransformer(cfg)
    tl.load_state_dict({OURS_TO_TL.get(k, k): v for k, v in model.state_dict().items()}, strict=False)
    with torch.no_grad():
        assert (tl.eval()(inputs) - model(inputs)).abs().max() > 10 * ATOL


def test_redwood_loader_reads_a_transformer_lens_checkpoint(model, inputs, tmp_path):
    """A TransformerLens state dict saved to a file (TL names, mask and IGNORE buffers included),
    read back by load_redwood: the same architecture and the same logits as TransformerLens."""
    tl = to_transformer_lens(perturbed(model, seed=1))
    state = tl.state_dict()
    assert any(k.endswith(".mask") for k in state) and any(k.endswith(".IGNORE") for k in state)
    path = tmp_path / "model_state_dict.pt"
    torch.save(state, path)

    loaded = load_redwood(str(path))
    assert loaded.cfg == model.cfg
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state[OURS_TO_TL.get(name, name)]), name
    with torch.no_grad():
        got, expected = loaded.double()(inputs), tl.to(torch.float64)(inputs)
    torch.testing.assert_close(got, expected, atol=ATOL_FLOAT64, rtol=0)


def test_split_qkv_hooks_reach_one_head_only(model, inputs):
    """Replacing head 1.5's key input through blocks.1.hook_k_input changes the logits, and
    writing back what was there does not: the hook point the scrub reference uses is live."""
    tl = to_transformer_lens(model, split_qkv=True)

    def hook(value):
        def fn(act, hook):  # [batch, pos, head, d_model]
            act = act.clone()
            act[:, :, 5] = value(act[:, :, 5])
            return act
        return fn

    with torch.no_grad():
        plain = tl(inputs)
        same = tl.run_with_hooks(inputs, fwd_hooks=[("blocks.1.hook_k_input", hook(lambda a: a))])
        moved = tl.run_with_hooks(inputs, fwd_hooks=[("blocks.1.hook_k_input", hook(lambda a: a.roll(1, dims=1)))])
    torch.testing.assert_close(same, plain, rtol=0, atol=0)
    assert (moved - plain).abs().max() > 1e-2
