"""The scrubs written the way a researcher would write them with TransformerLens hooks.

This is both the competitor the benchmark times and the tests' independent reference for the
scrub engine (pipeline/scrub/engine.py), so it shares none of the engine's code or tricks:

- the model is TransformerLens' HookedTransformer (`to_hooked_transformer` converts our weights)
  with `use_split_qkv_input=True`, so each layer-1 head reads its query, key and value from its
  own copy of the residual (`blocks.1.hook_{q,k,v}_input`, [batch, pos, head, d_model]);
- layer-0 head outputs are rebuilt from the *full* attention patterns and values that
  `run_with_cache` records on the clean, partner and resampled sequences: a masked split is
  `(M∘A^a) V^b + ((1−M)∘A^s) V^s` with M a full [query, key] 0/1 matrix, the residual rewrite is
  `V^i[t] + (A^r V^r − V^r)[t]`, no near-diagonal cache;
- a resampled source reads, at each query position t, sequence draws[n, t]: the whole attention
  row t, the values and the token at t of that sequence. Any sequence may be drawn anywhere, so
  the full layer-0 patterns and values of the heads that read a resampled source are kept for
  every sequence, from one extra layer-0 pass over the data (0.44 GB per head at 1,230 × 300).

The meaning is docs/hypotheses.md's and `pipeline.scrub.scrub_losses`': per sequence, the summed
next-token loss at positions whose input token is scored, for `original` (nothing scrubbed),
`baseline` (R_q = R_k = R_v = r1 of the partner) and each part (q, k, v, all).

    from benchmarks.tl_hooks import to_hooked_transformer, tl_scrub_losses
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config.hypothesis import Hypothesis, InputSpec, Masked, Residual, Whole

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from transformer_lens import HookedTransformer, HookedTransformerConfig

# Our parameter names that differ from TransformerLens'; the per-layer ones (blocks.L.ln1.w,
# blocks.L.attn.W_Q …) are the same in both.
OURS_TO_TL = {"W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_U": "unembed.W_U", "b_U": "unembed.b_U"}
PART_INPUTS = {"q": ("q",), "k": ("k",), "v": ("v",), "all": ("q", "k", "v")}
LAYER0_CHUNK = 32  # sequences run through layer 0 at once for a resampled source: 32 × 8 heads × 300² floats ≈ 92 MB


def tl_config(model, split_qkv: bool = False) -> HookedTransformerConfig:
    """redwood_attn_2l's TransformerLens config (shortformer positions, LN, attention only), sized
    like our `model` (pipeline.model.AttnOnlyTransformer)."""
    c = model.cfg
    return HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_head=c.d_head,
        d_vocab=c.d_vocab, n_ctx=c.n_ctx, eps=c.ln_eps,
        attn_only=True, positional_embedding_type="shortformer", normalization_type="LN",
        act_fn="relu",  # unused: no MLPs
        default_prepend_bos=False, device="cpu", seed=None, use_split_qkv_input=split_qkv,
    )


def to_hooked_transformer(model, split_qkv: bool = True) -> HookedTransformer:
    """Our weights in a HookedTransformer. Only TransformerLens' own buffers (causal mask,
    IGNORE) may be missing from our state dict; anything else unmatched is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # HookedTransformer is deprecated in TL 3
        tl = HookedTransformer(tl_config(model, split_qkv))
    state = {OURS_TO_TL.get(k, k): v for k, v in model.state_dict().items()}
    result = tl.load_state_dict(state, strict=False)
    bad = [k for k in result.missing_keys if not k.endswith((".mask", ".IGNORE"))]
    if result.unexpected_keys or bad:
        raise ValueError(f"weights do not map onto TransformerLens: unexpected {result.unexpected_keys}, missing {bad}")
    return tl.eval()


@dataclass
class TLLosses:
    """Per sequence: summed loss over scored positions and their count, [seq] each."""
    loss_sum: np.ndarray
    count: np.ndarray

    def mean(self) -> float:
        return float(self.loss_sum.sum() / max(1, self.count.sum()))


def head_spec(spec: InputSpec, j: int, roles: dict):
    """Which spec layer-0 head j follows: its name beats its role (prev, self), which beats all."""
    name = f"0.{j}"
    if name in spec.heads:
        return spec.heads[name]
    if roles.get("prev") == name and "prev" in spec.heads:
        return spec.heads["prev"]
    if name in (roles.get("self") or []) and "self" in spec.heads:
        return spec.heads["self"]
    return spec.heads["all"]


def spec_sources(spec) -> set[str]:
    if isinstance(spec, Whole):
        return {spec.source}
    if isinstance(spec, Residual):
        return {spec.identity, spec.rest}
    return {spec.pattern, spec.values, spec.outside}


def mask_matrix(offsets, n_pos: int) -> torch.Tensor:
    """The relative-position mask as a full [query t, key s] matrix: 1 where t − s ∈ offsets."""
    t = torch.arange(n_pos)
    return torch.isin(t[:, None] - t[None, :], torch.tensor(offsets)).float()


class Layer0:
    """Layer 0 of one batch under every source: full patterns and values from run_with_cache.

    For a fixed source (clean, other) each query row reads one sequence, so pattern(S) is that
    sequence's [batch, head, t, s] and values(S) its [batch, s, head, d_head]. For a resampled
    source, query row t of sequence n reads sequence draws[n, t]: pattern rows and per-query
    values [batch, t, s, head, d_head] are gathered from layer 0 kept for every sequence."""

    def __init__(self, tl: HookedTransformer, inputs: torch.Tensor, seq: dict[str, torch.Tensor],
                 stores: dict[str, dict]):
        self.tl, self.inputs, self.seq = tl, inputs, seq  # seq: source → [batch, pos] sequence ids
        self.stores = stores  # resampled source → `layer0_of_every_sequence` for the heads reading it
        self.n_pos = inputs.shape[1]
        self.fixed: dict[str, dict[str, torch.Tensor]] = {}
        self.drawn: dict[str, dict] = {}

    def run(self, rows: torch.Tensor, full: bool = False) -> dict[str, torch.Tensor]:
        """Layer 0's patterns and values of sequences `rows`, and r1 (the input of layer 1);
        `full`: also the logits of the whole model (the clean run gives the original loss)."""
        names = ("blocks.0.attn.hook_pattern", "blocks.0.attn.hook_v", "blocks.1.hook_resid_pre")
        out, cache = self.tl.run_with_cache(self.inputs[rows], names_filter=lambda n: n in names,
                                            stop_at_layer=None if full else 1)
        act = {"pattern": cache["blocks.0.attn.hook_pattern"], "v": cache["blocks.0.attn.hook_v"]}
        if full:
            act.update(logits=out, r1=cache["blocks.1.hook_resid_pre"])
        else:
            act.update(r1=out)  # stopped before layer 1: the residual it would read
        return act

    def is_fixed(self, source: str) -> bool:
        s = self.seq[source]
        return bool((s == s[:, :1]).all())

    def of_fixed(self, source: str) -> dict[str, torch.Tensor]:
        if source not in self.fixed:
            self.fixed[source] = self.run(self.seq[source][:, 0], full=source == "clean")
        return self.fixed[source]

    def of_drawn(self, source: str) -> dict:
        """Per query row t of sequence n, the layer 0 of the sequence drawn for (n, t), for the
        heads that read the source: pattern rows [batch, head, t, s] and values [batch, t, s, head, d_head]."""
        if source not in self.drawn:
            seq, store = self.seq[source], self.stores[source]
            t = torch.arange(seq.shape[1])[None, :].expand_as(seq)
            self.drawn[source] = {"pattern": store["pattern"][seq, :, t, :].permute(0, 2, 1, 3),
                                  "v": store["v"][seq], "heads": store["heads"]}
        return self.drawn[source]

    def pattern(self, source: str, j: int) -> torch.Tensor:
        """Head j's attention rows under `source`: [batch, t, s]."""
        if self.is_fixed(source):
            return self.of_fixed(source)["pattern"][:, j]
        drawn = self.of_drawn(source)
        return drawn["pattern"][:, drawn["heads"].index(j)]

    def weighted(self, weights: torch.Tensor, source: str, j: int) -> torch.Tensor:
        """Σ_s weights[b, t, s] · V_source[s] for head j, the values read by query t: [batch, t, d_head]."""
        if self.is_fixed(source):
            return torch.einsum("bts,bsd->btd", weights, self.of_fixed(source)["v"][:, :, j])
        drawn = self.of_drawn(source)
        return torch.einsum("bts,btsd->btd", weights, drawn["v"][..., drawn["heads"].index(j), :])

    def embedding(self, source: str) -> torch.Tensor:
        """Token embeddings x [batch, pos, d_model], token t from the sequence the source reads at t."""
        tok = self.inputs[self.seq[source], torch.arange(self.n_pos)]
        return self.tl.W_E[tok]


@torch.no_grad()
def layer0_of_every_sequence(tl: HookedTransformer, inputs: torch.Tensor, heads: list[int]) -> dict:
    """Layer 0 of every sequence, for `heads` only: full patterns [seq, head, t, s] and values
    [seq, s, head, d_head]. A resampled source may read any sequence at any position, so its
    heads are kept whole for the run (seq × heads × pos² floats: 0.44 GB per head at 1,230
    sequences of 300), from one layer-0 pass over the data."""
    n_seq, n_pos = inputs.shape
    pattern = torch.empty(n_seq, len(heads), n_pos, n_pos)
    v = torch.empty(n_seq, n_pos, len(heads), tl.cfg.d_head)
    names = ("blocks.0.attn.hook_pattern", "blocks.0.attn.hook_v")
    for start in range(0, n_seq, LAYER0_CHUNK):
        _, cache = tl.run_with_cache(inputs[start : start + LAYER0_CHUNK], names_filter=lambda n: n in names,
                                     stop_at_layer=1)
        pattern[start : start + LAYER0_CHUNK] = cache["blocks.0.attn.hook_pattern"][:, heads]
        v[start : start + LAYER0_CHUNK] = cache["blocks.0.attn.hook_v"][:, :, heads]
    return {"pattern": pattern, "v": v, "heads": heads}


def rebuilt_head_z(l0: Layer0, j: int, spec, n_pos: int) -> torch.Tensor:
    """Layer-0 head j's output before W_O, as the spec says, from full patterns: [batch, pos, d_head]."""
    if isinstance(spec, Whole):
        return l0.weighted(l0.pattern(spec.source, j), spec.source, j)
    if isinstance(spec, Residual):
        # Identity attention reads the head's own value at t: I[t] = V[t].
        eye = torch.eye(n_pos).expand(l0.seq[spec.identity].shape[0], -1, -1)  # [batch, t, s]
        identity = l0.weighted(eye, spec.identity, j)
        rest_out = l0.weighted(l0.pattern(spec.rest, j), spec.rest, j)
        rest_identity = l0.weighted(eye, spec.rest, j)
        return identity + (rest_out - rest_identity)
    assert isinstance(spec, Masked), spec
    M = mask_matrix(spec.offsets, n_pos)
    inside = l0.weighted(M * l0.pattern(spec.pattern, j), spec.values, j)
    outside = l0.weighted((1 - M) * l0.pattern(spec.outside, j), spec.outside, j)
    return inside + outside


def rebuilt_residual(tl: HookedTransformer, l0: Layer0, spec: InputSpec, roles: dict) -> torch.Tensor:
    """R = x^emb + Σ_j z_j W_O[j] + b_O of layer 0: [batch, pos, d_model]."""
    attn = tl.blocks[0].attn
    r = l0.embedding(spec.embedding) + attn.b_O
    for j in range(tl.cfg.n_heads):
        r = r + rebuilt_head_z(l0, j, head_spec(spec, j, roles), l0.n_pos) @ attn.W_O[j]
    return r


def run_scrubbed(tl: HookedTransformer, inputs: torch.Tensor, induction: list[int],
                 resid: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits [batch, pos, d_vocab] with the induction heads' q/k/v inputs replaced by
    resid[name] [batch, pos, d_model]; every other head sees the clean residual."""
    def replace(name):
        def hook(act, hook):  # act: [batch, pos, head, d_model]
            act = act.clone()
            act[:, :, induction] = resid[name][:, :, None, :]
            return act
        return hook
    hooks = [(f"blocks.1.hook_{name}_input", replace(name)) for name in resid]
    return tl.run_with_hooks(inputs, fwd_hooks=hooks)


@torch.no_grad()
def tl_scrub_losses(model, tokens: torch.Tensor, other: np.ndarray, hypothesis: Hypothesis, roles: dict,
                    scored: np.ndarray, parts: list[str], resampled: dict[str, np.ndarray] | None = None,
                    batch_size: int = 8) -> dict[str, TLLosses]:
    """The losses of `pipeline.scrub.scrub_losses`, computed with TransformerLens hooks.

    model: a HookedTransformer with use_split_qkv_input (or our model, converted here);
    tokens [seq, pos + 1] (inputs and the last target); other [seq]: each sequence's partner;
    scored [d_vocab] bool: position t counts when its input token is scored; resampled:
    resampler name → [seq, pos] sequence drawn per position. Returns {"original", "baseline",
    *parts} → TLLosses ([seq] loss sums and counts)."""
    tl = model if isinstance(model, HookedTransformer) else to_hooked_transformer(model)
    if not tl.cfg.use_split_qkv_input:
        raise ValueError("the HookedTransformer needs use_split_qkv_input=True")
    resampled = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in (resampled or {}).items()}
    n_seq, n_pos = tokens.shape[0], tokens.shape[1] - 1
    other = torch.as_tensor(np.asarray(other), dtype=torch.long)
    scored = torch.as_tensor(np.asarray(scored), dtype=torch.bool)
    induction = [int(h.split(".")[1]) for h in roles["induction"]]
    # Per-query values of a resampled source are [batch, t, s, d_head] per head: only for the
    # layer-0 heads whose spec reads that source.
    used = {name for part in parts for name in PART_INPUTS[part]}
    heads_reading = {source: [j for j in range(tl.cfg.n_heads)
                              if any(source in spec_sources(head_spec(hypothesis.inputs[name], j, roles))
                                     for name in used)]
                     for source in resampled}
    inputs_all = tokens[:, :-1]
    stores = {source: layer0_of_every_sequence(tl, inputs_all, heads) for source, heads in heads_reading.items() if heads}
    names = ["original", "baseline"] + list(parts)
    sums = {name: np.zeros(n_seq) for name in names}
    counts = np.zeros(n_seq)
    for start in range(0, n_seq, batch_size):
        rows = torch.arange(start, min(start + batch_size, n_seq))
        seq = {"clean": rows[:, None].expand(-1, n_pos), "other": other[rows][:, None].expand(-1, n_pos)}
        seq.update({name: draws[rows] for name, draws in resampled.items()})
        l0 = Layer0(tl, inputs_all, seq, stores)
        inputs, targets = inputs_all[rows], tokens[rows, 1:]
        mask = scored[inputs].float()  # [batch, pos]
        counts[rows.numpy()] = mask.sum(1).numpy()

        def loss(logits):
            per_pos = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [batch, pos]
            return (per_pos * mask).sum(1).numpy()

        sums["original"][rows.numpy()] = loss(l0.of_fixed("clean")["logits"])
        r1_other = l0.of_fixed("other")["r1"]
        sums["baseline"][rows.numpy()] = loss(run_scrubbed(tl, inputs, induction, {n: r1_other for n in "qkv"}))
        built: dict[str, torch.Tensor] = {}
        for part in parts:
            for name in PART_INPUTS[part]:
                if name not in built:
                    built[name] = rebuilt_residual(tl, l0, hypothesis.inputs[name], roles)
            resid = {name: built[name] for name in PART_INPUTS[part]}
            sums[part][rows.numpy()] = loss(run_scrubbed(tl, inputs, induction, resid))
    return {name: TLLosses(sums[name], counts.copy()) for name in names}
