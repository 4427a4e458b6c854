"""The invariants of docs/hypotheses.md, each checked against a computation that does not share the
engine's code, on the committed model and real held-out sequences.

The independent side is TransformerLens: its own hook activations for the layer-0 cache, and
benchmarks/tl_hooks.py (HookedTransformer, layer-0 heads rebuilt from full attention patterns,
masks as full matrices) for losses. The engine rebuilds a masked split from near-diagonal
patterns (z − Σ_k A[t,t−k] v[t−k] + …), so "a split with one source on both sides equals the
unsplit head" is a real check of that arithmetic only when the unsplit head comes from elsewhere.
Only the engine's public API is used (build_cache, scrub_losses).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.tl_hooks import tl_scrub_losses, to_hooked_transformer
from pipeline.config.hypothesis import parse_hypothesis
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.scrub.engine import LOSS_BLOCK, build_cache, scrub_losses, token_losses

ROLES = {"prev": "0.0", "self": ["0.1", "0.2"], "induction": ["1.5", "1.6"]}
PARTS = ["q", "k", "v", "all"]
N_OFFSETS = 4
RTOL = 1e-4  # float32 on both sides


def spec(q, k=None, v=None, embedding="clean"):
    return {"q": {"embedding": embedding, "heads": q}, "k": {"embedding": embedding, "heads": k or q},
            "v": {"embedding": embedding, "heads": v or q}}


@pytest.fixture(scope="module")
def setup(model, sequences):
    tokens = sequences[:4, :201].clone()  # 200 inputs + 1 target
    cache = build_cache(model, tokens, n_offsets=N_OFFSETS, batch_size=3, dtype=torch.float32, progress=False)
    other = np.array([2, 3, 1, 0])
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, :-1].numpy())[::2]] = True  # half the tokens that occur
    return {"model": model, "tl": to_hooked_transformer(model), "tokens": tokens, "cache": cache,
            "other": other, "scored": scored}


def engine(s, raw, parts=PARTS, roles=ROLES):
    return scrub_losses(s["model"], s["cache"], s["tokens"], s["other"], parse_hypothesis("t", raw), roles,
                        s["scored"], parts, batch_size=3, progress=False)


def reference(s, raw, parts=PARTS, roles=ROLES):
    return tl_scrub_losses(s["tl"], s["tokens"], s["other"], parse_hypothesis("t", raw), roles, s["scored"],
                           parts, batch_size=4)


def assert_same(got, expected, names):
    for name in names:
        np.testing.assert_allclose(got[name].loss_sum, expected[name].loss_sum, rtol=RTOL, atol=0, err_msg=name)


# --- the layer-0 cache against TransformerLens' own activations ---------------------------------

def test_cache_matches_transformer_lens_activations(setup):
    """v, z and the near-diagonal pattern of build_cache against blocks.0.attn.hook_v, hook_z and
    hook_pattern's diagonals A[t, t−k] (0 where t − k < 0)."""
    inputs = setup["tokens"][:, :-1]
    with torch.no_grad():
        _, act = setup["tl"].run_with_cache(inputs, names_filter=lambda n: n.startswith("blocks.0.attn.hook_"))
    cache = {k: torch.as_tensor(np.asarray(v)).float() for k, v in setup["cache"].items()}
    n_seq, n_pos = inputs.shape
    n_heads, d_head = setup["model"].cfg.n_heads, setup["model"].cfg.d_head
    assert cache["v"].shape == cache["z"].shape == (n_seq, n_pos, n_heads, d_head)
    assert cache["diag"].shape == (n_seq, n_pos, n_heads, N_OFFSETS)
    torch.testing.assert_close(cache["v"], act["blocks.0.attn.hook_v"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cache["z"], act["blocks.0.attn.hook_z"], rtol=1e-4, atol=1e-5)
    pattern = act["blocks.0.attn.hook_pattern"]  # [seq, head, q, k]
    for k in range(N_OFFSETS):
        expected = torch.zeros(n_seq, n_pos, n_heads)
        expected[:, k:] = pattern.diagonal(offset=-k, dim1=-2, dim2=-1).transpose(1, 2)
        torch.testing.assert_close(cache["diag"][..., k], expected, rtol=1e-4, atol=1e-6, msg=f"offset {k}")
    # Not vacuous: head 0.0 (the previous-token head) puts most of its attention one back.
    assert cache["diag"][:, 1:, 0, 1].mean() > 0.5


def test_cache_in_float16_rounds_the_float32_cache(setup):
    half = build_cache(setup["model"], setup["tokens"][:2], N_OFFSETS, 2, torch.float16, False)
    for key, value in half.items():
        value = torch.as_tensor(np.asarray(value))
        assert value.dtype == torch.float16, key
        full = torch.as_tensor(np.asarray(setup["cache"][key][:2])).float()
        torch.testing.assert_close(value.float(), full, rtol=2e-3, atol=2e-3, msg=key)


# --- whole-model references ---------------------------------------------------------------------

def test_original_is_the_plain_forward_pass_of_transformer_lens(setup):
    """The engine's `original` (the decomposed model, nothing scrubbed) against TransformerLens'
    plain logits, without any hook."""
    tokens, scored = setup["tokens"], setup["scored"]
    out = engine(setup, spec({"all": "clean"}), parts=[])["original"]
    with torch.no_grad():
        logits = setup["tl"](tokens[:, :-1])
    per_pos = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    mask = torch.as_tensor(scored)[tokens[:, :-1]]
    assert mask.sum() > 100
    np.testing.assert_allclose(out.loss_sum, (per_pos * mask).sum(1).numpy(), rtol=RTOL, atol=0)
    np.testing.assert_array_equal(out.count, mask.sum(1).numpy())


def test_every_source_clean_reproduces_the_original(setup):
    out = engine(setup, spec({"all": "clean"}))
    ref = reference(setup, spec({"all": "clean"}), parts=[])
    assert_same(out, ref, ["original"])
    for part in PARTS:
        np.testing.assert_allclose(out[part].loss_sum, ref["original"].loss_sum, rtol=RTOL, atol=0, err_msg=part)


def test_every_source_other_reproduces_the_baseline(setup):
    """TransformerLens' baseline reads the partner's r1 from its own forward pass; the engine
    rebuilds it from the cache."""
    out = engine(setup, spec({"all": "other"}, embedding="other"), parts=["all"])
    ref = reference(setup, spec({"all": "clean"}), parts=[])
    assert_same(out, ref, ["baseline"])
    np.testing.assert_allclose(out["all"].loss_sum, ref["baseline"].loss_sum, rtol=RTOL, atol=0)
    assert np.abs(ref["baseline"].loss_sum - ref["original"].loss_sum).max() > 1e-2


# --- masked splits --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unsplit(setup):
    """Per source, the losses with every layer-0 head whole from that source, computed from full
    patterns by the reference: what a split with that source on both sides must give."""
    return {source: reference(setup, spec({"all": source}), parts=["all"]) for source in ("clean", "other")}


@pytest.mark.parametrize("source", ["clean", "other"])
@pytest.mark.parametrize("mask", ["cur", "prev", "last3", [0, 3]])
def test_masked_split_with_one_source_equals_unsplit_head(setup, unsplit, source, mask):
    split = {"mask": mask, "inside": {"pattern": source, "values": source}, "outside": source}
    out = engine(setup, spec({"all": split}), parts=["all"])
    assert_same(out, unsplit[source], ["all"])


@pytest.mark.parametrize("inside, outside", [(("other", "clean"), "other"), (("clean", "other"), "clean"),
                                             (("other", "other"), "clean")],
                         ids=["pattern-other-values-clean", "pattern-clean-values-other", "inside-other-outside-clean"])
def test_masked_split_mixing_sources_equals_full_pattern_split(setup, inside, outside):
    """(M∘A^a) V^b + ((1−M)∘A^s) V^s with M a full matrix, offsets 0 and 3 (a gap, and the
    largest offset the cache holds)."""
    split = {"mask": [0, 3], "inside": {"pattern": inside[0], "values": inside[1]}, "outside": outside}
    raw = spec({"all": split, "prev": {**split, "mask": "prev"}})
    out, ref = engine(setup, raw), reference(setup, raw)
    assert_same(out, ref, PARTS)
    assert np.abs(ref["all"].loss_sum - ref["original"].loss_sum).max() > 1e-2


# --- the residual rewrite -------------------------------------------------------------------------

def test_residual_rewrite_with_clean_parts_equals_clean_head(setup):
    """I^c + (out^c − I^c) = out^c, against the clean head's output from its full pattern."""
    rewrite = {"rewrite": "residual", "identity": "clean", "rest": "clean"}
    out = engine(setup, spec({"all": "other", "self": rewrite}), parts=["all"])
    ref = reference(setup, spec({"all": "other", "self": "clean"}), parts=["all"])
    assert_same(out, ref, ["all"])


@pytest.mark.parametrize("identity, rest", [("clean", "other"), ("other", "clean")])
def test_residual_rewrite_mixing_sources_equals_identity_attention_rewrite(setup, identity, rest):
    """V^i[t] + (A^r V^r − V^r)[t], from the reference's identity-matrix attention."""
    raw = spec({"all": "clean", "self": {"rewrite": "residual", "identity": identity, "rest": rest}})
    out, ref = engine(setup, raw, parts=["q", "all"]), reference(setup, raw, parts=["q", "all"])
    assert_same(out, ref, ["q", "all"])
    assert np.abs(ref["all"].loss_sum - ref["original"].loss_sum).max() > 1e-3


def test_scrubbing_changes_the_loss(setup):
    """Guards the tests above against an engine that ignores its hypothesis."""
    out = engine(setup, spec({"all": "other"}), parts=["q"])
    assert np.abs(out["q"].loss_sum - out["original"].loss_sum).max() > 1e-2


def test_parts_without_references_equal_parts_with_them(setup):
    """`references=False` (the sweep's runs after its first) skips the original and the baseline
    and changes nothing else: the keys and values each part reads are built the same way."""
    raw = spec({"all": {"mask": [0, 1], "inside": {"pattern": "other", "values": "clean"}, "outside": "other"}},
               {"all": "other"}, {"0.0": "clean", "all": "other"})
    with_refs = engine(setup, raw)
    without = scrub_losses(setup["model"], setup["cache"], setup["tokens"], setup["other"],
                           parse_hypothesis("t", raw), ROLES, setup["scored"], PARTS, batch_size=3,
                           progress=False, references=False)
    assert sorted(without) == sorted(PARTS)
    for part in PARTS:
        np.testing.assert_allclose(without[part].loss, with_refs[part].loss, rtol=1e-6, err_msg=part)


@pytest.mark.parametrize("d_vocab", [LOSS_BLOCK, 2 * LOSS_BLOCK + 17])
def test_token_losses_are_the_cross_entropy_of_the_logits(d_vocab):
    """Past LOSS_BLOCK tokens of vocabulary the loss runs over blocks of W_U (speed and memory at
    Redwood's vocabulary): the cross-entropy of the whole logits to float32 rounding, for targets
    in the first, a middle and the last, partial, block; at most one block, exactly it."""
    torch.manual_seed(0)
    model = AttnOnlyTransformer(ModelConfig(d_vocab=d_vocab, n_ctx=8, d_model=32, n_heads=2, d_head=16))
    with torch.no_grad():
        model.W_U.mul_(8)  # logits spread over tens of nats: the running maximum matters
        model.b_U.normal_()
    resid = torch.randn(9, 32)
    targets = torch.tensor([0, 5, LOSS_BLOCK - 1, LOSS_BLOCK // 2, d_vocab - 1, d_vocab - 17, 3, 7, d_vocab // 2])
    expected = torch.nn.functional.cross_entropy(model.unembed(resid), targets, reduction="none")
    with torch.no_grad():
        losses = token_losses(model, resid, targets)
    if d_vocab <= LOSS_BLOCK:
        assert torch.equal(losses, expected)
    assert expected.max() - expected.min() > 10
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-5)
