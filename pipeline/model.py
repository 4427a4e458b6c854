"""The two-layer attention-only transformer of the induction-heads writeup.

Shortformer positions (added to the LayerNorm output that feeds queries and keys, never to values
or the residual), LayerNorm before each attention layer and before the unembedding, untied
unembedding. Parameters use TransformerLens' layout and names ([head, d_model, d_head]) so that
the Redwood checkpoint maps onto this module key for key and per-head algebra reads directly.

Besides the plain forward pass, the module exposes the pieces the scrub engine composes:
`embed`, `layer0` (per-head patterns, OV vectors and outputs), `attention` with separate query,
key and value residuals per head, and `unembed`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def pattern(self, q_in: torch.Tensor, k_in: torch.Tensor) -> torch.Tensor:
        """q_in, k_in: [batch, pos, d_model] or [batch, head, pos, d_model], already normalised
        and with positions added. Returns the causal attention pattern [batch, head, q, k]."""
        q = _per_head(q_in, self.W_Q) + self.b_Q[:, None, :]  # [batch, head, pos, d_head]
        k = _per_head(k_in, self.W_K) + self.b_K[:, None, :]
        scores = q @ k.transpose(-1, -2) / self.scale  # [batch, head, q, k]
        n = scores.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)

    def ov(self, v_in: torch.Tensor) -> torch.Tensor:
        """Each head's OV vector at every position, `V_h[s] = (v_in[s] W_V + b_V) W_O`.
        v_in: [batch, pos, d_model] or [batch, head, pos, d_model] → [batch, head, pos, d_model]."""
        v = _per_head(v_in, self.W_V) + self.b_V[:, None, :]  # [batch, head, pos, d_head]
        return torch.einsum("bhpe,hed->bhpd", v, self.W_O)

    def forward(self, q_in, k_in, v_in) -> torch.Tensor:
        """Per-head outputs [batch, head, pos, d_model] (b_O not included)."""
        return self.pattern(q_in, k_in) @ self.ov(v_in)

    def summed(self, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        """The layer's output Σ_h out_h + b_O [batch, pos, d_model] for inputs shared by all
        heads. Same maths as `forward`, but W_O is applied after the weighted sum (d_head wide,
        not d_model) through the fused attention kernel: this is the training path."""
        q = _per_head(q_in, self.W_Q) + self.b_Q[:, None, :]
        k = _per_head(k_in, self.W_K) + self.b_K[:, None, :]
        v = _per_head(v_in, self.W_V) + self.b_V[:, None, :]
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [batch, head, pos, d_head]
        return torch.einsum("bhpe,hed->bpd", z, self.W_O) + self.b_O


def _per_head(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:  # one residual shared by all heads
        return torch.einsum("bpd,hde->bhpe", x, w)
    return torch.einsum("bhpd,hde->bhpe", x, w)  # a residual of its own per head


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

    # --- the pieces the scrub engine composes -------------------------------------------------

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] → token embeddings x [batch, pos, d_model]."""
        return self.W_E[tokens]

    def positions(self, n_pos: int) -> torch.Tensor:
        if n_pos > self.cfg.n_ctx:
            raise ValueError(f"sequence of {n_pos} positions exceeds the model's n_ctx={self.cfg.n_ctx}")
        return self.W_pos[:n_pos]  # [pos, d_model]

    def attention(self, layer: int, resid_q, resid_k, resid_v) -> torch.Tensor:
        """Per-head outputs [batch, head, pos, d_model] of `layer`, each of Q, K and V computed
        from its own residual ([batch, pos, d_model], or [batch, head, pos, d_model] for a residual
        per head). Each copy is normalised by the layer's LayerNorm on its own."""
        block = self.blocks[layer]
        pos = self.positions(resid_q.shape[-2])
        return block.attn(block.ln1(resid_q) + pos, block.ln1(resid_k) + pos, block.ln1(resid_v))

    def layer0(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything of layer 0 on one batch: the token embeddings x [batch, pos, d_model],
        per-head patterns [batch, head, q, k], OV vectors ov [batch, head, pos, d_model] and
        outputs out [batch, head, pos, d_model] (out = pattern @ ov), and b_O."""
        x = self.embed(tokens)
        block = self.blocks[0]
        u = block.ln1(x)
        pos = self.positions(tokens.shape[1])
        pattern = block.attn.pattern(u + pos, u + pos)
        ov = block.attn.ov(u)
        return {"x": x, "pattern": pattern, "ov": ov, "out": pattern @ ov, "b_O": block.attn.b_O}

    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        """Final residual [..., d_model] → logits [..., d_vocab]."""
        return self.ln_final(resid) @ self.W_U + self.b_U

    # --- the plain model -----------------------------------------------------------------------

    def residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final residual stream [batch, pos, d_model]."""
        r = self.embed(tokens)
        pos = self.positions(tokens.shape[1])
        for block in self.blocks:
            u = block.ln1(r)
            r = r + block.attn.summed(u + pos, u + pos, u)
        return r

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] → logits [batch, pos, d_vocab]."""
        return self.unembed(self.residual(tokens))
