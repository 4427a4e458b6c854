"""Measurements that identify heads: previous-token, self-attending (copies of the current
token) and induction scores, and the loss on repeated random tokens."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.model import AttnOnlyTransformer


@torch.no_grad()
def layer_patterns(model: AttnOnlyTransformer, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Attention patterns [batch, head, query_pos, key_pos] of every layer on the plain forward pass."""
    _, cache = model.run_with_cache(tokens)
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)]


def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """Mean attention to the previous position, over queries t ≥ 1: [head]."""
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))


def same_token_score(pattern: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean attention to earlier copies of the query's own token (the query itself excluded),
    over queries whose token occurred before: [head]."""
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, q, k]
    same = same & torch.ones_like(same).tril(diagonal=-1)
    has_copy = same.any(dim=-1)  # [batch, q]
    mass = (pattern * same[:, None]).sum(dim=-1)  # [batch, head, q]
    n = has_copy.sum().clamp(min=1)
    return (mass * has_copy[:, None]).sum(dim=(0, 2)) / n


def repeated_random_tokens(n_seqs: int, length: int, vocab: range, begin_id: int, seed: int) -> torch.Tensor:
    """[BEGIN] + R + R with R uniform random tokens: [n_seqs, 1 + 2·length]."""
    rng = np.random.default_rng(seed)
    half = rng.integers(vocab.start, vocab.stop, size=(n_seqs, length))
    begin = np.full((n_seqs, 1), begin_id)
    return torch.from_numpy(np.concatenate([begin, half, half], axis=1)).long()


@torch.no_grad()
def induction_measurements(model: AttnOnlyTransformer, tokens: torch.Tensor, length: int) -> dict:
    """On repeated random tokens (see `repeated_random_tokens`): per layer-1 head, the mean
    attention from each second-half position to the token after its earlier copy; and the mean
    loss of the first and of the second half."""
    patterns = layer_patterns(model, tokens)
    # query 1+length+i (second copy of R[i]) → key 2+i (the token after the first copy of R[i])
    induction = patterns[1].diagonal(offset=-(length - 1), dim1=-2, dim2=-1)  # [batch, head, q]
    # diagonal index j is query j + length - 1; the second copy starts at query 1 + length
    induction = induction[..., 2:].mean(dim=(0, -1))
    logits = model(tokens[:, :-1])
    losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # [batch, pos]
    # losses[:, p] predicts position p + 1. Neither R[0] after BEGIN nor R[0] at the start of
    # the second copy can be predicted from an earlier occurrence, so both are left out.
    first = losses[:, 1:length].mean().item()
    second = losses[:, length + 1 :].mean().item()
    return {"induction_score": induction.tolist(), "loss_first_half": first, "loss_second_half": second}


@torch.no_grad()
def head_scores(model: AttnOnlyTransformer, heldout: torch.Tensor, repeated: torch.Tensor, length: int) -> dict:
    """Every score on held-out text `heldout` [batch, pos] and repeated random tokens."""
    patterns = layer_patterns(model, heldout)
    scores = {
        "previous_token_score": [previous_token_score(p).tolist() for p in patterns],
        "same_token_score": [same_token_score(p, heldout).tolist() for p in patterns],
    }
    scores.update(induction_measurements(model, repeated, length))
    return scores
