"""The heads stage's head scores: the measurements of pipeline.analysis.scores, in float64, a batch
of sequences at a time, rounded to a stated precision.

- Memory is bounded by `batch_size`, not by how many sequences are measured nor by the
  vocabulary: the held-out sequences need attention patterns only, so they stop before the
  unembedding (`attention_patterns`); the repeated random tokens need their loss, so their logits
  [batch, pos, d_vocab] exist for one batch at a time. At Redwood's vocabulary of 50,259 the logits
  of all 64 repeated sequences at once were 1.3 GB in float32, those of the held-out ones 3.9 GB.
- float64 throughout (the model is converted), sums accumulated in float64: a batch's sum does not
  depend on the other batches, so the means are the same batched or not to float64 rounding
  (~1e-16), and two CPUs whose float kernels differ agree to about the same.
- Every score is written rounded to SIGNIFICANT_DIGITS significant digits, far above that float64
  noise and beyond the ~7 digits the float32 scores ever had: on another CPU (or another batch
  size) a written number changes only if its float64 value lies within ~1e-14 of a rounding
  boundary, about one number in 10^5. Roles are proposed from the rounded scores.

The model stage's training evaluation keeps pipeline.analysis.scores (float32, all sequences at
once, unrounded): the committed models' train_log.json depends on those numbers bit for bit, and
that module is a dep of the model stage, so it is not edited.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from pipeline.model import AttnOnlyTransformer

SIGNIFICANT_DIGITS = 9


def rounded(value) -> float:
    """`value` (a number or a one-element tensor or array) at SIGNIFICANT_DIGITS significant digits:
    JSON then writes at most that many."""
    return float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")


def float64(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    """The model in float64: itself when it already is, else a converted copy."""
    if next(model.parameters()).dtype == torch.float64:
        return model
    return copy.deepcopy(model).double()


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most batch_size covering range(n)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def attention_patterns(model: AttnOnlyTransformer, tokens: torch.Tensor, n_layers: int | None = None,
                       ) -> list[torch.Tensor]:
    """Attention patterns [batch, head, query_pos, key_pos] of the first `n_layers` layers (all when
    None), from the forward pass stopped there: no [batch, pos, d_vocab] logits are formed."""
    n_layers = model.cfg.n_layers if n_layers is None else n_layers
    _, cache = model.run_with_cache(tokens, stop_at_layer=n_layers)
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(n_layers)]


def next_token_losses(model: AttnOnlyTransformer, resid: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of model.unembed's logits of the final residual resid [batch, pos, d_model]
    against targets [batch, pos]: [batch, pos]. The logits are one [batch·pos, d_vocab] matrix
    (addmm: no second copy for the bias) and the log-sum-exp is taken in place, max-shifted as
    torch's is: one batch's logits are the only tensor of vocabulary size, held once."""
    normalized = model.ln_final(resid).flatten(0, 1)  # [batch·pos, d_model]
    logits = torch.addmm(model.b_U, normalized, model.W_U)  # [batch·pos, d_vocab]
    target = logits.gather(1, targets.reshape(-1, 1))[:, 0]  # [batch·pos]
    top = logits.max(dim=1, keepdim=True).values  # [batch·pos, 1]
    total = logits.sub_(top).exp_().sum(dim=1)  # Σ exp(logit - max)
    return (total.log_() + top[:, 0] - target).view(targets.shape)


@torch.no_grad()
def measure_heads(model: AttnOnlyTransformer, heldout: torch.Tensor, repeated: torch.Tensor, length: int,
                  batch_size: int) -> dict:
    """pipeline.analysis.scores.head_scores' dict (same keys, same definitions), computed in float64
    `batch_size` sequences at a time and rounded (`rounded`). heldout [seq, pos]: held-out text;
    repeated [seq, 1 + 2·length]: [BEGIN] + R + R (scores.repeated_random_tokens)."""
    model = float64(model)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    zeros = lambda: torch.zeros(n_layers, n_heads, dtype=torch.float64)  # noqa: E731
    previous, same = zeros(), zeros()
    queries = copies = 0  # how many (sequence, query) each mean is over
    for part in batches(len(heldout), batch_size):
        tokens = heldout[part]  # [batch, pos]
        patterns = attention_patterns(model, tokens)
        # a token's earlier copies (itself excluded): [batch, q, k]
        earlier = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(
            tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril(diagonal=-1)
        has_copy = earlier.any(dim=-1)  # [batch, q]
        copies += int(has_copy.sum())
        for layer, pattern in enumerate(patterns):
            # queries t ≥ 1 attending to t - 1: [batch, head, pos - 1]
            diagonal = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)
            previous[layer] += diagonal.sum(dim=(0, -1))
            mass = (pattern * earlier[:, None]).sum(dim=-1)  # [batch, head, q]
            same[layer] += (mass * has_copy[:, None]).sum(dim=(0, 2))
        queries += diagonal.shape[0] * diagonal.shape[-1]
    previous /= max(queries, 1)
    same /= max(copies, 1)

    induction = torch.zeros(n_heads, dtype=torch.float64)
    first = second = 0.0
    n_induction = n_first = n_second = 0
    for part in batches(len(repeated), batch_size):
        tokens = repeated[part]  # [batch, 1 + 2·length]
        # One pass on all positions: patterns and residuals at positions < 2·length do not depend
        # on the last token (causal attention), so the losses read them from the same pass.
        resid, cache = model.run_with_cache(tokens, stop_at_layer=n_layers)  # [batch, 1 + 2·length, d_model]
        pattern = cache["blocks.1.attn.hook_pattern"]  # [batch, head, q, k]
        del cache
        # query 1+length+i (second copy of R[i]) → key 2+i (the token after the first copy of R[i]);
        # diagonal index j is query j + length - 1, so the second copy starts at index 2
        at_target = pattern.diagonal(offset=-(length - 1), dim1=-2, dim2=-1)[..., 2:]  # [batch, head, length]
        induction += at_target.sum(dim=(0, -1))
        n_induction += at_target.shape[0] * at_target.shape[-1]
        losses = next_token_losses(model, resid[:, :-1], tokens[:, 1:])  # [batch, 2·length]
        # losses[:, p] predicts position p + 1; R[0] after BEGIN and at the start of the second
        # copy cannot be predicted from an earlier occurrence: both left out (as in scores.py)
        first += float(losses[:, 1:length].sum())
        second += float(losses[:, length + 1:].sum())
        n_first += losses[:, 1:length].numel()
        n_second += losses[:, length + 1:].numel()
    induction /= max(n_induction, 1)
    first /= max(n_first, 1)
    second /= max(n_second, 1)

    return {
        "previous_token_score": [[rounded(v) for v in layer.tolist()] for layer in previous],
        "same_token_score": [[rounded(v) for v in layer.tolist()] for layer in same],
        "induction_score": [rounded(v) for v in induction.tolist()],
        "loss_first_half": rounded(first),
        "loss_second_half": rounded(second),
    }
