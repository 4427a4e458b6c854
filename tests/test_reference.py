"""The scrub engine against an independent implementation, for every hypothesis of conf/hypothesis/.

The reference is benchmarks/tl_hooks.py: TransformerLens' HookedTransformer with
`use_split_qkv_input`, the induction heads' q/k/v inputs replaced through hooks, layer-0 head
outputs rebuilt from the full attention patterns and values of the clean, partner and resampled
sequences (masks as full [query, key] matrices). It shares no code with pipeline/scrub/engine.py,
whose cache keeps only near-diagonal patterns and rebuilds the part outside a mask as
z − Σ diagonal terms. Both read the hypotheses of docs/hypotheses.md through the same parser.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer

from benchmarks.tl_hooks import tl_scrub_losses, to_hooked_transformer
from pipeline.config.hypothesis import parse_hypothesis
from pipeline.scrub.engine import build_cache, scrub_losses
from pipeline.scrub.resample import classify_positions, draw_matching, resolve_rules
from tests.helpers import ROOT

HYPOTHESES = sorted(p.stem for p in (ROOT / "conf/hypothesis").glob("*.yaml"))
# Roles chosen so that every role is non-empty and differs from the model's own (below), whatever
# heads the committed model's training made.
ROLES = {"prev": "0.0", "self": ["0.1", "0.2"], "induction": ["1.5", "1.6"]}
PARTS = ["q", "k", "v", "all"]
N_SEQ, N_POS = 6, 200  # sequences cut to 200 inputs + 1 target: TransformerLens takes ~2 s a hypothesis
RTOL = 1e-4  # float32 throughout; the two implementations agree to ~1e-6 in practice


@pytest.fixture(scope="module")
def data(model, sequences):
    tokens = sequences[:N_SEQ, : N_POS + 1].clone()
    other = np.array([3, 2, 5, 0, 1, 4])  # a pairing, no sequence with itself
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, :-1].numpy())[::2]] = True  # half the tokens that occur
    cache = build_cache(model, tokens, 4, 4, torch.float32, False)
    return {"model": model, "tl": to_hooked_transformer(model), "tokens": tokens, "other": other,
            "scored": scored, "cache": cache}


def draws_for(hyp, tokens) -> dict[str, np.ndarray]:
    """Bonus 5's typicality draws, through the pipeline's own resampler and tokenizer."""
    if not hyp.resamplers:
        return {}
    tokenizer = Tokenizer.from_file(str(ROOT / "data/tokens/tokenizer.json"))
    out = {}
    for name, resampler in hyp.resamplers.items():
        rules = resolve_rules(resampler, lambda text: tokenizer.encode(text, add_special_tokens=False).ids)
        out[name] = draw_matching(classify_positions(tokens[:, :-1].numpy(), rules), resampler.seed)
    return out


def compare(data, hyp, roles, resampled, parts=PARTS):
    kw = dict(hypothesis=hyp, roles=roles, scored=data["scored"], parts=parts, resampled=resampled)
    ours = scrub_losses(data["model"], data["cache"], data["tokens"], data["other"], batch_size=4,
                        progress=False, **kw)
    # Batches of 4 and 2 sequences on both sides: a row mix-up between batches cannot cancel out.
    ref = tl_scrub_losses(data["tl"], data["tokens"], data["other"], batch_size=4, **kw)
    assert set(ours) == set(ref) == {"original", "baseline", *parts}
    for name in ref:
        np.testing.assert_array_equal(ours[name].count, ref[name].count, err_msg=name)
        np.testing.assert_allclose(ours[name].loss_sum, ref[name].loss_sum, rtol=RTOL, atol=0, err_msg=name)
    return ref


@pytest.mark.parametrize("name", HYPOTHESES)
def test_engine_agrees_with_transformer_lens_hooks(data, name):
    hyp = parse_hypothesis(name, yaml.safe_load((ROOT / f"conf/hypothesis/{name}.yaml").read_text()))
    resampled = draws_for(hyp, data["tokens"])
    if hyp.resamplers:
        # Not the trivial draw (every sequence itself): then the resampler would be `clean`.
        for draws in resampled.values():
            assert (draws != np.arange(N_SEQ)[:, None]).mean() > 0.5
    ref = compare(data, hyp, ROLES, resampled)
    assert ref["original"].count.sum() > 100
    # Not vacuous: the baseline is worse than the original, and every scrub except the
    # baseline hypothesis's lands strictly between them or at least away from the original.
    assert ref["baseline"].mean() > ref["original"].mean() + 5e-3
    for part in PARTS:
        assert abs(ref[part].mean() - ref["original"].mean()) > 1e-4, part


def test_engine_agrees_with_transformer_lens_hooks_on_the_models_own_roles(data, model_roles):
    """The roles the heads stage gave the committed model (data/heads/seed0/roles.json)."""
    hyp = parse_hypothesis("refined4", yaml.safe_load((ROOT / "conf/hypothesis/refined4.yaml").read_text()))
    compare(data, hyp, model_roles, {}, parts=["all"])


def test_resampled_draws_are_read_per_position(data):
    """A resampler that draws a different sequence at every position differs from one that draws
    the partner everywhere; both agree with the reference."""
    raw = yaml.safe_load((ROOT / "conf/hypothesis/bonus5.yaml").read_text())
    hyp = parse_hypothesis("bonus5", raw)
    n_pos = data["tokens"].shape[1] - 1
    partner = np.repeat(data["other"][:, None], n_pos, axis=1)
    shifted = (np.arange(N_SEQ)[:, None] + 1 + np.arange(n_pos)[None, :] % (N_SEQ - 1)) % N_SEQ  # never itself
    a = compare(data, hyp, ROLES, {"typicality": partner}, parts=["k"])
    b = compare(data, hyp, ROLES, {"typicality": shifted}, parts=["k"])
    assert np.abs(a["k"].loss_sum - b["k"].loss_sum).max() > 1e-3
