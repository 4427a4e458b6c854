"""The invariants of HYPOTHESES.md, on the committed model and real held-out sequences, plus an
independent slow reference for the naive and refined-2 scrubs."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.scrub import build_cache, parse_hypothesis, scrub_losses
from pipeline.scrub.hypothesis import MASKS

ROLES = {"prev": "0.0", "self": ["0.1", "0.2"], "induction": ["1.5", "1.6"]}
PARTS = ["q", "k", "v", "all"]


def spec(q, k=None, v=None, embedding="clean", **extra):
    return {"q": {"embedding": embedding, "heads": q}, "k": {"embedding": embedding, "heads": k or q},
            "v": {"embedding": embedding, "heads": v or q}, **extra}


@pytest.fixture(scope="module")
def setup(model, sequences):
    tokens = sequences[:12]
    cache = build_cache(model, tokens, n_offsets=4, batch_size=6, dtype=torch.float32, progress=False)
    other = np.roll(np.arange(len(tokens)), 1)
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, 1:-1].numpy())[::2]] = True  # half the tokens that occur
    return model, tokens, cache, other, scored


def run(setup, raw, roles=ROLES, parts=PARTS, **kw):
    model, tokens, cache, other, scored = setup
    return scrub_losses(model, cache, tokens, other, parse_hypothesis("t", raw), roles, scored, parts,
                        batch_size=5, progress=False, **kw)


def test_decomposed_forward_equals_plain_forward(setup):
    model, tokens, cache, other, scored = setup
    losses = run(setup, spec({"all": "clean"}), parts=[])["original"]
    with torch.no_grad():
        per_pos = F.cross_entropy(model(tokens[:, :-1]).transpose(1, 2), tokens[:, 1:], reduction="none")
    mask = torch.as_tensor(scored)[tokens[:, :-1]]
    expected = (per_pos * mask).sum(dim=1).numpy()
    assert mask.sum() > 100
    np.testing.assert_allclose(losses.loss_sum, expected, atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(losses.count, mask.sum(dim=1).numpy())


def test_all_clean_reproduces_original_exactly(setup):
    out = run(setup, spec({"all": "clean"}))
    for part in PARTS:
        np.testing.assert_array_equal(out[part].loss_sum, out["original"].loss_sum)


def test_all_other_reproduces_baseline(setup):
    out = run(setup, spec({"all": "other"}, embedding="other"))
    np.testing.assert_allclose(out["all"].loss_sum, out["baseline"].loss_sum, rtol=1e-6, atol=1e-5)
    assert np.abs(out["baseline"].loss_sum - out["original"].loss_sum).max() > 1e-2


@pytest.mark.parametrize("source", ["clean", "other"])
@pytest.mark.parametrize("mask", ["cur", "prev", "last3", [0, 3]])
def test_masked_split_with_one_source_equals_unsplit_head(setup, source, mask):
    split = {"mask": mask, "inside": {"pattern": source, "values": source}, "outside": source}
    whole = run(setup, spec({"all": source}))
    masked = run(setup, spec({"all": split}))
    for part in PARTS:
        np.testing.assert_allclose(masked[part].loss_sum, whole[part].loss_sum, rtol=1e-6, atol=1e-5)


def test_residual_rewrite_with_clean_parts_equals_clean_head(setup):
    rewrite = {"rewrite": "residual", "identity": "clean", "rest": "clean"}
    out = run(setup, spec({"all": "other", "self": rewrite}))
    ref = run(setup, spec({"all": "other", "self": "clean"}))
    for part in PARTS:
        np.testing.assert_allclose(out[part].loss_sum, ref[part].loss_sum, rtol=1e-6, atol=1e-5)


def test_scrubbing_changes_the_loss(setup):
    """Guards the tests above against an engine that ignores its hypothesis."""
    out = run(setup, spec({"all": "other"}))
    assert np.abs(out["q"].loss_sum - out["original"].loss_sum).max() > 1e-2


# --- an independent slow reference: full attention matrices, masks as matrices ----------------

@torch.no_grad()
def reference_loss(model, tokens, other, scored, hyp, roles, part):
    """One sequence at a time, straight from HYPOTHESES.md: out_j = (M∘A^a) V^b + ((1-M)∘A^s) V^s."""
    total = np.zeros(len(tokens))
    b0, b1 = model.blocks[0], model.blocks[1]
    T = tokens.shape[1] - 1
    P = model.W_pos[:T]
    ind = [int(h.split(".")[1]) for h in roles["induction"]]
    for n in range(len(tokens)):
        seqs = {"clean": tokens[n, :-1], "other": tokens[other[n], :-1]}
        x = {s: model.W_E[t] for s, t in seqs.items()}
        A, V = {}, {}
        for s in seqs:
            u = b0.ln1(x[s])
            for j in range(model.cfg.n_heads):
                q = (u + P) @ b0.attn.W_Q[j] + b0.attn.b_Q[j]
                k = (u + P) @ b0.attn.W_K[j] + b0.attn.b_K[j]
                sc = (q @ k.T / np.sqrt(model.cfg.d_head)).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -1e30)
                A[s, j] = sc.softmax(-1)
                V[s, j] = (u @ b0.attn.W_V[j] + b0.attn.b_V[j]) @ b0.attn.W_O[j]

        def head_out(j, h):
            if isinstance(h, str):
                return A[h, j] @ V[h, j]
            M = sum(torch.diag(torch.ones(T - o), -o) for o in MASKS[h["mask"]])
            s = h["outside"]
            return (M * A[h["inside"]["pattern"], j]) @ V[h["inside"]["values"], j] + ((1 - M) * A[s, j]) @ V[s, j]

        def resid(name):
            spec_ = hyp[name]
            heads = spec_["heads"]
            r = x[spec_["embedding"]] + b0.attn.b_O
            for j in range(model.cfg.n_heads):
                h = heads.get("prev") if roles["prev"] == f"0.{j}" and "prev" in heads else heads["all"]
                r = r + head_out(j, h)
            return r

        r1 = x["clean"] + sum(A["clean", j] @ V["clean", j] for j in range(8)) + b0.attn.b_O
        R = {name: (resid(name) if name in ({"all": "qkv"}.get(part, part)) else r1) for name in "qkv"}
        r2 = r1 + b1.attn.b_O
        for i in range(model.cfg.n_heads):
            rq, rk, rv = (R["q"], R["k"], R["v"]) if i in ind else (r1, r1, r1)
            q = (b1.ln1(rq) + P) @ b1.attn.W_Q[i] + b1.attn.b_Q[i]
            k = (b1.ln1(rk) + P) @ b1.attn.W_K[i] + b1.attn.b_K[i]
            v = b1.ln1(rv) @ b1.attn.W_V[i] + b1.attn.b_V[i]
            sc = (q @ k.T / np.sqrt(model.cfg.d_head)).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -1e30)
            r2 = r2 + sc.softmax(-1) @ v @ b1.attn.W_O[i]
        logits = model.ln_final(r2) @ model.W_U + model.b_U
        losses = F.cross_entropy(logits, tokens[n, 1:], reduction="none")
        total[n] = (losses * torch.as_tensor(scored)[seqs["clean"]]).sum().item()
    return total


@pytest.mark.parametrize("name", ["naive", "refined2"])
def test_engine_agrees_with_slow_reference(setup, name):
    import yaml

    model, tokens, cache, other, scored = setup
    hyp = yaml.safe_load(open(f"conf/hypothesis/{name}.yaml"))
    tokens6, other6 = tokens[:6], np.roll(np.arange(6), 1)
    cache6 = {k: v[:6] for k, v in cache.items()}
    out = scrub_losses(model, cache6, tokens6, other6, parse_hypothesis(name, hyp), ROLES, scored, PARTS,
                       batch_size=4, progress=False)
    for part in PARTS:
        ref = reference_loss(model, tokens6, other6, scored, hyp, ROLES, part)
        np.testing.assert_allclose(out[part].loss_sum, ref, rtol=1e-5, atol=1e-4, err_msg=part)
