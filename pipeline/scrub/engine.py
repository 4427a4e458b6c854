"""The scrub engine: (model, layer-0 cache, pairing, hypothesis, whitelist) → losses.

Layer 0 is linear in its per-head values once the patterns are fixed, so every scrub of the
writeup is a recombination of three cached arrays per sequence (see `build_cache`):

    v    [seq, pos, head, d_head]   the values   LN0(x) W_V + b_V
    z    [seq, pos, head, d_head]   the outputs  Σ_s A[t,s] v[s]   (before W_O)
    diag [seq, pos, head, offset]   the pattern near the diagonal A[t, t-k], k < n_offsets

A masked split only needs A on the mask's diagonals: inside = Σ_k A^a[t,t-k] v^b[t-k], and
outside = z^s[t] - Σ_k A^s[t,t-k] v^s[t-k] (pattern and values from one sequence s). Head
outputs are z W_O, so nothing of layer 0 is recomputed here. Layer 1 is recomputed, for the
induction heads only, from the three rebuilt residuals R_q, R_k, R_v; every other layer-1 head
and the direct path see the clean residual. Logits are computed only at scored positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.model import AttnOnlyTransformer
from pipeline.scrub.hypothesis import Hypothesis, InputSpec, Masked, Residual, Whole

PARTS = {"q": ("q",), "k": ("k",), "v": ("v",), "all": ("q", "k", "v")}
# The two fixed references: every input clean (the original) and every input from the partner
# sequence (the baseline, R_q = R_k = R_v = r1^o).
CLEAN = InputSpec("clean", {"all": Whole("clean")})
OTHER = InputSpec("other", {"all": Whole("other")})


# --- the layer-0 cache -------------------------------------------------------------------------

@torch.no_grad()
def layer0_cache(model: AttnOnlyTransformer, tokens: torch.Tensor, n_offsets: int) -> dict[str, torch.Tensor]:
    """One batch of the cache for input tokens [batch, pos]: v, z [batch, pos, head, d_head] and
    diag [batch, pos, head, n_offsets] (0 where t - k < 0)."""
    block = model.blocks[0]
    u = block.ln1(model.embed(tokens))
    pos = model.positions(tokens.shape[1])
    pattern = block.attn.pattern(u + pos, u + pos)  # [batch, head, q, k]
    v = torch.einsum("bpd,hde->bhpe", u, block.attn.W_V) + block.attn.b_V[:, None, :]
    z = pattern @ v  # [batch, head, pos, d_head]
    n = tokens.shape[1]
    diag = torch.zeros(tokens.shape[0], model.cfg.n_heads, n, n_offsets)
    for k in range(min(n_offsets, n)):
        diag[:, :, k:, k] = pattern.diagonal(offset=-k, dim1=-2, dim2=-1)
    return {"v": v.transpose(1, 2), "z": z.transpose(1, 2), "diag": diag.transpose(1, 2)}


def build_cache(model: AttnOnlyTransformer, tokens: torch.Tensor, n_offsets: int, batch_size: int,
                dtype: torch.dtype = torch.float16, progress: bool = True) -> dict[str, torch.Tensor]:
    """The cache of every sequence: tokens [seq, pos + 1] (inputs and the last target) →
    {v, z, diag} stored in `dtype`."""
    parts: dict[str, list[torch.Tensor]] = {"v": [], "z": [], "diag": []}
    for start in tqdm(range(0, len(tokens), batch_size), desc="cache layer 0", unit="batch", disable=not progress):
        batch = layer0_cache(model, tokens[start : start + batch_size, :-1], n_offsets)
        for key, value in batch.items():
            parts[key].append(value.to(dtype))
    return {key: torch.cat(value) for key, value in parts.items()}


# --- sources -----------------------------------------------------------------------------------

@dataclass
class Sources:
    """For one batch, which sequence each source reads at each position: [batch, pos] indices
    into the cache (clean: the sequence itself; other: its partner; resamplers: per position)."""
    index: dict[str, torch.Tensor]


class Batch:
    """The cached arrays of one batch as float32, gathered per source on first use."""

    def __init__(self, cache: dict[str, torch.Tensor], sources: Sources):
        self.cache, self.sources = cache, sources
        self.memo: dict[tuple, torch.Tensor] = {}

    def take(self, key: str, source: str, shift: int = 0) -> torch.Tensor:
        """cache[key] of `source` at key position t - shift for every query position t:
        [batch, pos, head, ...]; zero where t - shift < 0."""
        memo_key = (key, source, shift)
        if memo_key not in self.memo:
            seq = self.sources.index[source]  # [batch, pos]
            n_pos = seq.shape[1]
            pos = torch.arange(n_pos) - shift
            out = self.cache[key][seq, pos.clamp(min=0)].float()
            if shift:
                out[:, :shift] = 0
            self.memo[memo_key] = out
        return self.memo[memo_key]


def head_z(batch: Batch, head: int, spec) -> torch.Tensor:
    """A layer-0 head's output before W_O, rebuilt as `spec` says: [batch, pos, d_head]."""
    if isinstance(spec, Whole):
        return batch.take("z", spec.source)[:, :, head]
    if isinstance(spec, Residual):
        identity = batch.take("v", spec.identity)[:, :, head]
        rest = batch.take("z", spec.rest)[:, :, head] - batch.take("v", spec.rest)[:, :, head]
        return identity + rest
    assert isinstance(spec, Masked)
    out = batch.take("z", spec.outside)[:, :, head].clone()
    for k in spec.offsets:
        a_in = batch.take("diag", spec.pattern)[:, :, head, k, None]
        a_out = batch.take("diag", spec.outside)[:, :, head, k, None]
        out += a_in * batch.take("v", spec.values, k)[:, :, head] - a_out * batch.take("v", spec.outside, k)[:, :, head]
    return out


def residual(model: AttnOnlyTransformer, batch: Batch, tokens: dict[str, torch.Tensor], spec: InputSpec,
             roles: dict) -> torch.Tensor:
    """R = x^emb + Σ_j out_j (each as `spec` says) + b_O of layer 0: [batch, pos, d_model]."""
    attn = model.blocks[0].attn
    z = torch.stack([head_z(batch, j, spec.for_head(f"0.{j}", roles)) for j in range(model.cfg.n_heads)], dim=2)
    return model.embed(tokens[spec.embedding]) + torch.einsum("bphe,hed->bpd", z, attn.W_O) + attn.b_O


def layer1_heads(model: AttnOnlyTransformer, heads: list[int], rq, rk, rv) -> torch.Tensor:
    """Σ over `heads` of layer-1 head outputs (b_O excluded), each head's query, key and value
    read from rq, rk, rv [batch, pos, d_model]: [batch, pos, d_model]."""
    block = model.blocks[1]
    a = block.attn
    pos = model.positions(rq.shape[1])
    q_in, k_in = block.ln1(rq) + pos, block.ln1(rk) + pos
    v_in = block.ln1(rv)
    idx = torch.tensor(heads)
    q = torch.einsum("bpd,hde->bhpe", q_in, a.W_Q[idx]) + a.b_Q[idx, None, :]
    k = torch.einsum("bpd,hde->bhpe", k_in, a.W_K[idx]) + a.b_K[idx, None, :]
    v = torch.einsum("bpd,hde->bhpe", v_in, a.W_V[idx]) + a.b_V[idx, None, :]
    z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [batch, head, pos, d_head]
    return torch.einsum("bhpe,hed->bpd", z, a.W_O[idx])


def head_index(name: str) -> int:
    return int(name.split(".")[1])


# --- scoring -----------------------------------------------------------------------------------

@dataclass
class Losses:
    """Per sequence: summed loss over scored positions and their count. [seq] each."""
    loss_sum: np.ndarray
    count: np.ndarray

    def mean(self) -> float:
        return float(self.loss_sum.sum() / max(1, self.count.sum()))


@torch.no_grad()
def scrub_losses(model: AttnOnlyTransformer, cache: dict[str, torch.Tensor], tokens: torch.Tensor,
                 other: np.ndarray, hypothesis: Hypothesis, roles: dict, scored: np.ndarray,
                 parts: list[str], resampled: dict[str, np.ndarray] | None = None, batch_size: int = 32,
                 progress: bool = True) -> dict[str, Losses]:
    """Losses of `hypothesis` for each part (q, k, v, all), plus `original` (every input clean) and
    `baseline` (every input of the induction heads from the partner sequence).

    tokens [seq, pos + 1]; other [seq]: each sequence's partner; scored [d_vocab] bool: a
    position t counts when its input token tokens[t] is scored (the whitelist); resampled:
    resampler name → [seq, pos] drawn sequence per position."""
    resampled = resampled or {}
    missing = hypothesis.sources() - {"clean", "other"} - set(resampled)
    if missing:
        raise ValueError(f"no resampled draws for sources {sorted(missing)}")
    n_seq, n_pos = tokens.shape[0], tokens.shape[1] - 1
    if hypothesis.max_offset() >= cache["diag"].shape[-1]:
        raise ValueError(f"the hypothesis masks offset {hypothesis.max_offset()} but the cache holds "
                         f"{cache['diag'].shape[-1]} diagonals (raise cache.n_offsets)")
    induction = [head_index(h) for h in roles["induction"]]
    scored_t = torch.as_tensor(scored, dtype=torch.bool)
    names = ["original", "baseline"] + list(parts)
    sums = {n: np.zeros(n_seq) for n in names}
    counts = np.zeros(n_seq)
    # copies: pairings read from Parquet arrive as read-only arrays, which torch will not wrap
    other_t = torch.from_numpy(np.array(other, dtype=np.int64))
    draws_t = {name: torch.from_numpy(np.array(draws, dtype=np.int64)) for name, draws in resampled.items()}
    for start in tqdm(range(0, n_seq, batch_size), desc=f"scrub {hypothesis.name}", unit="batch", disable=not progress):
        rows = torch.arange(start, min(start + batch_size, n_seq))
        index = {"clean": rows[:, None].expand(-1, n_pos),
                 "other": other_t[rows][:, None].expand(-1, n_pos)}
        index.update({name: draws[rows] for name, draws in draws_t.items()})
        batch = Batch(cache, Sources(index))
        tok_of = {s: tokens[idx, torch.arange(n_pos)] for s, idx in index.items()}  # [batch, pos]

        r1 = residual(model, batch, tok_of, CLEAN, roles)
        clean_ind = layer1_heads(model, induction, r1, r1, r1)
        # Everything but the induction heads: what no scrub touches. Adding the clean induction
        # heads back gives the original; an all-clean hypothesis repeats these exact operations,
        # so it recovers exactly 100%.
        r2_rest = _clean_final(model, r1) - clean_ind

        mask = scored_t[tok_of["clean"]]  # [batch, pos]
        targets = tokens[rows, 1:][mask]
        counts[rows.numpy()] = mask.sum(dim=1).numpy()

        def score(induction_out: torch.Tensor) -> np.ndarray:
            logits = model.unembed((r2_rest + induction_out)[mask])  # scored positions only
            losses = F.cross_entropy(logits, targets, reduction="none")
            return torch.zeros(len(rows)).index_add_(0, mask.nonzero()[:, 0], losses).numpy()

        sums["original"][rows.numpy()] = score(clean_ind)
        r1_other = residual(model, batch, tok_of, OTHER, roles)
        sums["baseline"][rows.numpy()] = score(layer1_heads(model, induction, r1_other, r1_other, r1_other))
        built: dict[str, torch.Tensor] = {}
        for part in parts:
            r_in = {}
            for name in ("q", "k", "v"):
                if name in PARTS[part]:
                    if name not in built:
                        built[name] = residual(model, batch, tok_of, hypothesis.inputs[name], roles)
                    r_in[name] = built[name]
                else:
                    r_in[name] = r1
            sums[part][rows.numpy()] = score(layer1_heads(model, induction, r_in["q"], r_in["k"], r_in["v"]))
    return {n: Losses(sums[n], counts.copy()) for n in names}


def _clean_final(model: AttnOnlyTransformer, r1: torch.Tensor) -> torch.Tensor:
    """The clean final residual r2 = r1 + layer 1(r1) [batch, pos, d_model]."""
    block = model.blocks[1]
    u = block.ln1(r1)
    pos = model.positions(r1.shape[1])
    return r1 + block.attn.summed(u + pos, u + pos, u)
