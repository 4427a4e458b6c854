"""The two-layer attention-only transformer of the induction-heads writeup.

Shortformer positions (added to the LayerNorm output that feeds queries and keys, never to values
or the residual), LayerNorm before each attention layer and before the unembedding, untied
unembedding. Parameters use TransformerLens' layout and names ([head, d_model, d_head]) so that
the Redwood checkpoint maps onto this module key for key and per-head algebra reads directly.

There is one forward pass. Asked for a cache, it also records named activations with
TransformerLens' names and shapes (`hook_embed`, `blocks.L.attn.hook_pattern`, ...), which is how
the head scores and the layer-0 cache read the model. The scrub engine recomputes layer 1 with
separate query, key and value inputs for a subset of heads and query positions; it does so
through the same `Attention.project` and `Attention.output` the forward pass uses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

ActivationCache = dict[str, torch.Tensor]


@dataclass
class ModelConfig:
    d_vocab: int
    n_ctx: int = 2048
    d_model: int = 256
    n_heads: int = 8
    d_head: int = 32
    n_layers: int = 2
    ln_eps: float = 1e-5

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm(nn.Module):
    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w, self.b, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, e))
        self.W_K = nn.Parameter(torch.empty(h, d, e))
        self.W_V = nn.Parameter(torch.empty(h, d, e))
        self.W_O = nn.Parameter(torch.empty(h, e, d))
        self.b_Q = nn.Parameter(torch.zeros(h, e))
        self.b_K = nn.Parameter(torch.zeros(h, e))
        self.b_V = nn.Parameter(torch.zeros(h, e))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.scale = math.sqrt(e)

    def project(self, x: torch.Tensor, which: str, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Queries, keys or values (`which` = "Q", "K", "V") of `heads` (all when None), from
        x [batch, pos, d_model] (normalised; positions already added for Q and K):
        [batch, head, pos, d_head]. The selected heads are one matrix multiply."""
        w, b = getattr(self, f"W_{which}"), getattr(self, f"b_{which}")
        if heads is not None:
            w, b = w[heads], b[heads]
        return torch.einsum("bpd,hde->bhpe", x, w) + b[:, None, :]

    def output(self, z: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Σ over `heads` of z_h W_O^h, b_O not included: z [batch, head, pos, d_head] →
        [batch, pos, d_model]."""
        w = self.W_O if heads is None else self.W_O[heads]
        return torch.einsum("bhpe,hed->bpd", z, w)

    def forward(self, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor,
                cache: ActivationCache | None = None, prefix: str = "") -> torch.Tensor:
        """The layer's output Σ_h out_h + b_O [batch, pos, d_model]. Without a cache the fused
        attention kernel runs (the training path); with one, the pattern is formed explicitly and
        q, k, v, pattern and z are recorded under `prefix` + hook_q, hook_k, hook_v,
        hook_pattern ([batch, head, query_pos, key_pos]) and hook_z ([batch, pos, head, d_head])."""
        q, k, v = self.project(q_in, "Q"), self.project(k_in, "K"), self.project(v_in, "V")
        if cache is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [batch, head, pos, d_head]
        else:
            scores = q @ k.transpose(-1, -2) / self.scale  # [batch, head, query_pos, key_pos]
            n = scores.shape[-1]
            causal = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
            pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            z = pattern @ v
            for name, value in (("q", q), ("k", k), ("v", v), ("z", z)):
                cache[f"{prefix}hook_{name}"] = value.transpose(1, 2)  # [batch, pos, head, d_head]
            cache[f"{prefix}hook_pattern"] = pattern
        return self.output(z) + self.b_O


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = Attention(cfg)


class AttnOnlyTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        std = 1.0 / math.sqrt(self.cfg.d_model)
        for name, p in self.named_parameters():
            if name.endswith(".w"):
                nn.init.ones_(p)
            elif name.split(".")[-1].startswith("b"):
                nn.init.zeros_(p)
            elif name == "W_E" or name == "W_pos":
                p.data.normal_(0.0, 1.0, generator=generator)
            else:
                p.data.normal_(0.0, std, generator=generator)

    def positions(self, n_pos: int) -> torch.Tensor:
        """W_pos[:n_pos] [pos, d_model], or an error naming the context length."""
        if n_pos > self.cfg.n_ctx:
            raise ValueError(f"sequence of {n_pos} positions exceeds the model's n_ctx={self.cfg.n_ctx}")
        return self.W_pos[:n_pos]

    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        """Final residual [..., d_model] → logits [..., d_vocab]."""
        return self.ln_final(resid) @ self.W_U + self.b_U

    def forward(self, tokens: torch.Tensor, cache: ActivationCache | None = None,
                stop_at_layer: int | None = None) -> torch.Tensor:
        """tokens [batch, pos] → logits [batch, pos, d_vocab], or with `stop_at_layer` the residual
        stream [batch, pos, d_model] entering that layer. A dict given as `cache` is filled with the
        named activations (see `run_with_cache`)."""
        resid = self.W_E[tokens]  # [batch, pos, d_model]
        pos = self.positions(tokens.shape[1])
        if cache is not None:
            cache["hook_embed"], cache["hook_pos_embed"] = resid, pos
        for layer, block in enumerate(self.blocks[:stop_at_layer]):
            u = block.ln1(resid)
            resid = resid + block.attn(u + pos, u + pos, u, cache, f"blocks.{layer}.attn.")
            if cache is not None:
                cache[f"blocks.{layer}.ln1.hook_normalized"] = u
                cache[f"blocks.{layer}.hook_resid_post"] = resid
        if stop_at_layer is not None:
            return resid
        return self.unembed(resid)

    def run_with_cache(self, tokens: torch.Tensor, stop_at_layer: int | None = None) -> tuple[torch.Tensor, ActivationCache]:
        """The forward pass and its named activations, TransformerLens' names and shapes."""
        cache: ActivationCache = {}
        return self.forward(tokens, cache, stop_at_layer), cache
