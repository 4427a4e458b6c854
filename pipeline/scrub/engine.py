"""The scrub engine: (model, layer-0 cache, pairing, hypothesis, whitelist) → losses.

Layer 0 is linear in its per-head values once the patterns are fixed, so every scrub of the
writeup is a recombination of three cached arrays per sequence (see `build_cache`):

    v    [seq, pos, head, d_head]   the values   LN0(x) W_V + b_V
    z    [seq, pos, head, d_head]   the outputs  Σ_s A[t,s] v[s]   (before W_O)
    diag [seq, pos, head, offset]   the pattern near the diagonal A[t, t-k], k < n_offsets

A masked split only needs A on the mask's diagonals: inside = Σ_k A^a[t,t-k] v^b[t-k], and
outside = z^s[t] - Σ_k A^s[t,t-k] v^s[t-k] (pattern and values from one sequence s). Head
outputs are z W_O, so nothing of layer 0 is recomputed here (docs/hypotheses.md).

Layer 1 is computed only where the loss is read. A scored position t needs the query at t and
the keys and values at s ≤ t, so per batch: queries, attention, W_O and the unembedding only at
scored positions; keys and values only up to the batch's last scored position. Every distinct
residual (the clean r1, the partner's, each rebuilt R of the hypothesis) is built, normalised and
projected once per batch and shared by every part that reads it; the induction heads' weights are
one matrix multiply. Every other layer-1 head and the direct path see the clean residual.

The cache may be torch tensors or numpy arrays (memory-mapped .npy files, written and opened by
the cache_l0 stage): only the rows a batch reads are loaded, so memory does not grow with the
number of sequences.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import mmap
import os
import warnings
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.config.heads import head_name, parse_head_name
from pipeline.config.hypothesis import FIXED_SOURCES, InputSpec, Masked, Residual, Whole
from pipeline.model import AttnOnlyTransformer

PARTS = {"q": ("q",), "k": ("k",), "v": ("v",), "all": ("q", "k", "v")}
# The two fixed references: every input clean (the original) and every input from the partner
# sequence (the baseline, R_q = R_k = R_v = r1^o).
CLEAN = InputSpec(embedding="clean", heads={"all": Whole("clean")})
OTHER = InputSpec(embedding="other", heads={"all": Whole("other")})


# --- the layer-0 cache -------------------------------------------------------------------------

@torch.no_grad()
def layer0_cache(model: AttnOnlyTransformer, tokens: torch.Tensor, n_offsets: int) -> dict[str, torch.Tensor]:
    """One batch of the cache for input tokens [batch, pos]: v, z [batch, pos, head, d_head] and
    diag [batch, pos, head, n_offsets] (0 where t - k < 0)."""
    _, acts = model.run_with_cache(tokens, stop_at_layer=1)
    pattern = acts["blocks.0.attn.hook_pattern"]  # [batch, head, query_pos, key_pos]
    n = tokens.shape[1]
    diag = pattern.new_zeros(tokens.shape[0], n, model.cfg.n_heads, n_offsets)
    for k in range(min(n_offsets, n)):
        diag[:, k:, :, k] = pattern.diagonal(offset=-k, dim1=-2, dim2=-1).transpose(1, 2)
    return {"v": acts["blocks.0.attn.hook_v"], "z": acts["blocks.0.attn.hook_z"], "diag": diag}


def cache_shapes(model: AttnOnlyTransformer, n_seq: int, n_pos: int, n_offsets: int) -> dict[str, tuple]:
    h, e = model.cfg.n_heads, model.cfg.d_head
    return {"v": (n_seq, n_pos, h, e), "z": (n_seq, n_pos, h, e), "diag": (n_seq, n_pos, h, n_offsets)}


def float64_layer0(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    """A float64 copy of the model's layer 0 (the embeddings and block 0), to run with
    stop_at_layer=1. Later blocks and the unembedding are dropped: a large vocabulary's W_U is not
    doubled."""
    layer0 = deepcopy(model)
    del layer0.blocks[1:]
    layer0.W_U = layer0.b_U = None
    layer0.cfg = dataclasses.replace(model.cfg, n_layers=1)
    return layer0.to(torch.float64)


@torch.no_grad()
def fill_cache(out: dict, model: AttnOnlyTransformer, tokens: torch.Tensor, n_offsets: int, batch_size: int,
               progress: bool = True, device: str | torch.device = "cpu") -> None:
    """Write the cache of every sequence, batch by batch, into `out` (arrays shaped as
    `cache_shapes` says: tensors, numpy arrays, or files written in order). tokens [seq, pos + 1]: inputs and the last
    target; only the inputs are run.

    Layer 0 is computed in float64, then rounded to each array's dtype, so that the stored bytes do
    not depend on the CPU's matrix-multiply and softmax kernels: they change a float64 result in its
    last bits (up to 4e-15 measured), which moves a rounded value only when it lies that close to a
    rounding boundary. For the default float16 cache of three models (6·10^8 values) that is ~1e-4
    changed values expected per pair of CPUs; a float32 cache, ~1 (docs/reproducibility.md)."""
    layer0 = float64_layer0(model).to(device)
    for start in tqdm(range(0, len(tokens), batch_size), desc="cache layer 0", unit="batch", disable=not progress):
        batch = layer0_cache(layer0, tokens[start : start + batch_size, :-1].to(device), n_offsets)
        for key, value in batch.items():
            target = out[key]
            # torch's float64 → float16 goes through float32 (two roundings): the same on every
            # machine, and one path for all three kinds of target
            value = value.to(_torch_dtype(target.dtype)).cpu()
            if isinstance(target, torch.Tensor):
                target[start : start + len(value)] = value
            else:  # a numpy array or a file being written
                target[start : start + len(value)] = value.numpy()


def _torch_dtype(dtype) -> torch.dtype:
    """torch's dtype for a torch or numpy dtype."""
    return dtype if isinstance(dtype, torch.dtype) else torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def build_cache(model: AttnOnlyTransformer, tokens: torch.Tensor, n_offsets: int, batch_size: int,
                dtype: torch.dtype = torch.float16, progress: bool = True) -> dict[str, torch.Tensor]:
    """The cache of every sequence in memory: {v, z, diag} tensors in `dtype`."""
    shapes = cache_shapes(model, len(tokens), tokens.shape[1] - 1, n_offsets)
    out = {key: torch.empty(shape, dtype=dtype) for key, shape in shapes.items()}
    fill_cache(out, model, tokens, n_offsets, batch_size, progress)
    return out


# A cache at most this large may stay resident: releasing its pages after every batch costs more
# (the madvise, then page faults when the partner reads the same rows again) than it saves. Half a
# GiB: the default run's cache (0.38 GiB) stays; at Redwood's vocabulary a batch's own memory is
# near 1 GiB, so a 1 GiB resident cache put a scrub over 2 GB around 3,000 sequences.
RELEASE_LIMIT = 1 << 29


def _release(cache: dict) -> None:
    """Hand back to the kernel what a batch leaves behind: the pages of a memory-mapped cache it
    read, which would otherwise stay resident until the scrub held the whole cache, and the freed
    heap, which glibc keeps (fragmented by batches of growing shapes) unless asked to trim. Only
    for a cache larger than RELEASE_LIMIT."""
    if cache_bytes(cache) <= RELEASE_LIMIT:
        return
    for array in cache.values():
        mapping = getattr(array, "_mmap", None)
        if mapping is not None:
            mapping.madvise(mmap.MADV_DONTNEED)
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def cache_bytes(cache: dict) -> int:
    """The whole cache's size: every array of it."""
    return sum(array.nbytes for array in cache.values())


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None  # not glibc: nothing to trim


_LIBC = _libc()


# --- one batch: gathering sources, rebuilding residuals ------------------------------------------

class Batch:
    """One batch of sequences: which sequence each source reads at each position, the cached
    arrays gathered per (array, source, position set, shift) on first use as float32, and every
    residual built once.

    Two position sets: "keys" (every position up to the batch's last scored one, [batch, n_k])
    and "queries" (each sequence's scored positions, padded to the batch's largest count,
    [batch, n_q])."""

    def __init__(self, model: AttnOnlyTransformer, cache: dict, tokens: np.ndarray, index: dict[str, np.ndarray],
                 positions: dict[str, np.ndarray], roles: dict, device: torch.device, weights: Weights):
        self.model, self.cache, self.tokens, self.index, self.weights = model, cache, tokens, index, weights
        self.positions, self.roles, self.device = positions, roles, device
        self.memo: dict[tuple, torch.Tensor] = {}
        self.residuals: dict[tuple, torch.Tensor] = {}

    def take(self, key: str, source: str, where: str, shift: int = 0, heads: tuple[int, ...] | None = None) -> torch.Tensor:
        """cache[key] of `source` at position p - shift for each position p of the set `where`
        (the sequence `source` names at p): [batch, n, head, ...]; zero where p - shift < 0.
        `heads` (a drawn source only) reads just those heads: [batch, n, len(heads), ...]."""
        memo_key = (key, source, where, shift, heads)
        if memo_key not in self.memo and shift and where == "keys" and source in FIXED_SOURCES:
            # key positions are 0 … n_k - 1 of one sequence per row: a shift is a slice of the
            # unshifted array, not another read of the cache
            unshifted = self.take(key, source, where)
            out = torch.zeros_like(unshifted)
            out[:, shift:] = unshifted[:, : max(0, unshifted.shape[1] - shift)]
            self.memo[memo_key] = out
        if memo_key not in self.memo and where == "keys" and source in FIXED_SOURCES:
            # each row reads the first n_k positions of one sequence: a slice per row, not a
            # gather per element
            n_k = self.positions["keys"].shape[1]
            self.memo[memo_key] = _rows(self.cache[key], self.index[source][:, 0], n_k).float().to(self.device)
        if memo_key not in self.memo:
            pos = self.positions[where]  # [batch, n]
            seq = np.take_along_axis(self.index[source], pos, axis=1)
            # scattered: the cache as a whole, not this array, sets what one batch may map
            scattered = source not in FIXED_SOURCES and cache_bytes(self.cache) > SCATTERED_MMAP_LIMIT
            out = _gather(self.cache[key], seq, np.maximum(pos - shift, 0), scattered, heads).float()
            if shift:
                out[torch.from_numpy(pos < shift)] = 0
            self.memo[memo_key] = out.to(self.device)
        return self.memo[memo_key]

    def heads_z(self, heads: list[int], spec, where: str) -> torch.Tensor:
        """The outputs before W_O of layer-0 `heads` that share one spec, rebuilt as `spec` says:
        [batch, n, len(heads), d_head]."""
        every = len(heads) == self.model.cfg.n_heads

        def take(key: str, source: str, shift: int = 0) -> torch.Tensor:
            if not every and source not in FIXED_SOURCES:
                # a drawn source reads one random row per position, and usually for one head:
                # gathering only that head's elements is what makes it cheap
                return self.take(key, source, where, shift, tuple(heads))
            out = self.take(key, source, where, shift)
            return out if every else out[:, :, heads]

        if isinstance(spec, Whole):
            return take("z", spec.source)
        if isinstance(spec, Residual):
            return take("v", spec.identity) + (take("z", spec.rest) - take("v", spec.rest))
        assert isinstance(spec, Masked)
        out = take("z", spec.outside).clone()
        if where == "keys" and spec.values in FIXED_SOURCES and spec.outside in FIXED_SOURCES:
            # key positions are 0 … n - 1 of one sequence per row: v[t - k] is a slice, no copy
            n = out.shape[1]
            for k in spec.offsets:  # in place: the arrays are large and memory-bound
                if k < n:
                    out[:, k:].addcmul_(take("diag", spec.pattern)[:, k:, :, k, None], take("v", spec.values)[:, : n - k])
                    out[:, k:].addcmul_(take("diag", spec.outside)[:, k:, :, k, None], take("v", spec.outside)[:, : n - k],
                                        value=-1)
            return out
        for k in spec.offsets:
            out.addcmul_(take("diag", spec.pattern)[..., k, None], take("v", spec.values, k))
            out.addcmul_(take("diag", spec.outside)[..., k, None], take("v", spec.outside, k), value=-1)
        return out

    def residual(self, spec: InputSpec, where: str) -> torch.Tensor:
        """R = x^emb + Σ_j out_j (each as `spec` says) + b_O of layer 0 at the positions `where`:
        [batch, n, d_model]. Query positions reuse a residual already built at every key position."""
        memo_key = (_spec_key(spec), where)
        if memo_key not in self.residuals:
            full = self.residuals.get((_spec_key(spec), "keys"))
            if where == "queries" and full is not None:
                self.residuals[memo_key] = _at(full, self.positions["queries"])
            else:
                model = self.model
                groups: dict = {}  # heads that share a spec are rebuilt together
                for j in range(model.cfg.n_heads):
                    groups.setdefault(spec.for_head(head_name(0, j), self.roles), []).append(j)
                pos = self.positions[where]
                # The largest group is rebuilt for every head, the others' heads then overwritten:
                # cheaper than gathering the group's heads out of each cached array.
                every = list(range(model.cfg.n_heads))
                largest = max(groups, key=lambda head_spec: len(groups[head_spec]))
                z = self.heads_z(every, largest, where)
                if len(groups) > 1:
                    z = z.clone() if isinstance(largest, Whole) else z  # a Whole's z is the memo's
                    for head_spec, heads in groups.items():
                        if head_spec is not largest:
                            z[:, :, heads] = self.heads_z(heads, head_spec, where)
                seq = np.take_along_axis(self.index[spec.embedding], pos, axis=1)
                tokens = torch.from_numpy(self.tokens[seq, pos]).to(self.device)
                resid = z.flatten(2) @ self.weights.W_O0  # Σ_j z_j W_O^j [batch, n, d_model]
                resid += F.embedding(tokens, model.W_E)  # an indexed gather is several times slower
                resid += model.blocks[0].attn.b_O
                self.residuals[memo_key] = resid
        return self.residuals[memo_key]


# A read through a memory map also maps up to 64 KiB around each page it touches (the kernel's
# fault-around): fine for whole rows, but a resampled source reads one element of a random row at
# each position, and a batch of such reads would map gigabytes of a large cache. Past this size of
# the whole cache, scattered reads of a memory-mapped cache are plain file reads instead (the same
# size as RELEASE_LIMIT: a cache released after each batch is then never mapped whole within one).
SCATTERED_MMAP_LIMIT = RELEASE_LIMIT


def _gather(array, seq: np.ndarray, pos: np.ndarray, scattered: bool = False,
            heads: tuple[int, ...] | None = None) -> torch.Tensor:
    """array[seq, pos] (or array[seq, pos, heads]) for index arrays [batch, n]; a memory-mapped
    array reads only those rows, or with `scattered` only those elements."""
    if scattered and isinstance(array, np.memmap):
        out = torch.from_numpy(_read_elements(array, seq, pos))
        return out if heads is None else out[:, :, list(heads)]
    # torch's indexing, not numpy's: ~2-3x faster on these scattered reads (numpy's fancy
    # indexing walks element by element), and only the selected heads are copied
    tensor = array if isinstance(array, torch.Tensor) else _view(array)
    seq_t, pos_t = torch.from_numpy(np.ascontiguousarray(seq)), torch.from_numpy(np.ascontiguousarray(pos))
    if heads is None:
        return tensor[seq_t, pos_t]
    return tensor[seq_t[..., None], pos_t[..., None], torch.tensor(heads)]


def _view(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing `array`'s memory (a read-only memory map included: only ever read)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _rows(array, rows: np.ndarray, n: int) -> torch.Tensor:
    """array[rows, :n] for a row index array [batch]: [batch, n, ...]."""
    if isinstance(array, torch.Tensor):
        return array[torch.from_numpy(np.ascontiguousarray(rows)), :n]
    return torch.from_numpy(np.ascontiguousarray(array[rows, :n]))


def _read_elements(array: np.memmap, seq: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """array[seq, pos] of a memory-mapped .npy file by one read per element."""
    size = array.strides[1]  # one (seq, pos) element: [head, ...] contiguous
    offsets = array.offset + seq.astype(np.int64) * array.strides[0] + pos.astype(np.int64) * size
    with open(array.filename, "rb", buffering=0) as f:
        fd = f.fileno()
        data = b"".join([os.pread(fd, size, int(o)) for o in offsets.ravel()])
    return np.frombuffer(data, dtype=array.dtype).reshape(*seq.shape, *array.shape[2:]).copy()


def _spec_key(spec: InputSpec) -> tuple:
    return (spec.embedding, tuple(sorted(spec.heads.items())))


def _at(x: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """x [batch, n, ...] at positions [batch, m] → [batch, m, ...]."""
    index = torch.from_numpy(positions).to(x.device)
    return x[torch.arange(len(x), device=x.device)[:, None], index]


class Weights:
    """The model's per-head weights laid out for one matrix multiply per head group, built once
    per scrub: projections as [d_model, head · d_head] (heads in the group's order, each head's
    d_head columns together) and W_O as [head · d_head, d_model]. Numerically the same products as
    the model's per-head einsums, summed in another order (float32 rounding, ~1e-7)."""

    def __init__(self, model: AttnOnlyTransformer, induction: list[int]):
        rest = [h for h in range(model.cfg.n_heads) if h not in induction]
        # "all" lists the induction heads first, so that theirs and the others' are slices (views)
        groups = {"all": induction + rest, "induction": induction, "rest": rest}
        self.n_induction = len(induction)
        attn0, attn1 = model.blocks[0].attn, model.blocks[1].attn
        self.W_O0 = attn0.W_O.reshape(-1, model.cfg.d_model)  # [head · d_head, d_model]
        self.W_O1 = {name: attn1.W_O[heads].reshape(-1, model.cfg.d_model) for name, heads in groups.items()}
        self.W, self.b = {}, {}
        for which in "QKV":
            w, b = getattr(attn1, f"W_{which}"), getattr(attn1, f"b_{which}")
            for name, heads in groups.items():
                self.W[which, name] = w[heads].permute(1, 0, 2).reshape(model.cfg.d_model, -1)
                self.b[which, name] = b[heads].reshape(-1)


class Layer1:
    """Layer 1 of one batch at the scored positions: the clean part every scrub shares, and the
    induction heads' output for any choice of query, key and value residuals.

    Each residual is normalised once and projected once per input kind, keys and values of one
    residual in one matrix multiply when the batch needs both (`needs`). Positions are added after
    the projection ((u + pos) W = u W + pos W): a pass over the narrower output, not the input."""

    def __init__(self, batch: Batch, weights: Weights, needs: set[tuple]):
        self.batch, self.model, self.weights, self.needs = batch, batch.model, weights, needs
        self.block = self.model.blocks[1]
        device = batch.device
        qpos = batch.positions["queries"]  # [batch, n_q]
        n_k = batch.positions["keys"].shape[1]
        pos = self.model.positions(n_k)
        self.pos = {"keys": pos, "queries": _at(pos[None].expand(len(qpos), -1, -1), qpos)}
        # attend to s ≤ t: 0 there, -inf after t, added to the scores [batch, 1, n_q, n_k]
        allowed = torch.arange(n_k, device=device)[None, None, :] <= torch.from_numpy(qpos).to(device)[:, :, None]
        self.causal = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, float("-inf"))[:, None]
        self.normalized: dict[tuple, torch.Tensor] = {}
        self.projected: dict[tuple, torch.Tensor] = {}
        self.position_terms: dict[tuple, torch.Tensor] = {}

    def _normalized(self, spec: InputSpec, where: str) -> torch.Tensor:
        """LN1 of the residual `spec` builds at the positions `where`: [batch, n, d_model]."""
        memo_key = (_spec_key(spec), where)
        if memo_key not in self.normalized:
            full = self.normalized.get((_spec_key(spec), "keys"))
            if where == "queries" and full is not None:
                self.normalized[memo_key] = _at(full, self.batch.positions["queries"])
            else:
                self.normalized[memo_key] = self.block.ln1(self.batch.residual(spec, where))
        return self.normalized[memo_key]

    def project(self, spec: InputSpec, which: str, group: str = "induction") -> torch.Tensor:
        """Queries (at scored positions), keys or values (at key positions) of a head group
        ("induction", "rest" or "all") from the residual `spec` builds: [batch, head, n, d_head]
        (a strided view). The clean residual's are slices of all heads' projections, which the
        clean layer 1 needs anyway."""
        memo_key = (_spec_key(spec), which, group)
        if _spec_key(spec) == _spec_key(CLEAN) and group != "all":
            n = self.weights.n_induction
            every = self.project(spec, which, "all")
            return every[:, :n] if group == "induction" else every[:, n:]
        if memo_key not in self.projected:
            kinds = [which]
            if which != "Q" and (_spec_key(spec), "KV".replace(which, "")) in self.needs:
                kinds = ["K", "V"]  # one matrix multiply for both
            where = "queries" if which == "Q" else "keys"
            u = self._normalized(spec, where)
            w = torch.cat([self.weights.W[k, group] for k in kinds], dim=1)
            out = u @ w  # [batch, n, kinds · head · d_head]
            for i, kind in enumerate(kinds):
                width = w.shape[1] // len(kinds)
                x = out[..., i * width : (i + 1) * width]
                bias = self.weights.b[kind, group]
                x = x + (self._position_term(where, kind, group) if kind != "V" else bias)
                self.projected[(_spec_key(spec), kind, group)] = x.unflatten(-1, (-1, self.model.cfg.d_head)).transpose(1, 2)
        return self.projected[memo_key]

    def _position_term(self, where: str, kind: str, group: str) -> torch.Tensor:
        """pos W + b of Q or K for a head group, once per batch whatever the residual:
        [n, head · d_head] at keys, [batch, n_q, head · d_head] at queries."""
        memo_key = (where, kind, group)
        if memo_key not in self.position_terms:
            self.position_terms[memo_key] = self.pos[where] @ self.weights.W[kind, group] + self.weights.b[kind, group]
        return self.position_terms[memo_key]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """z [batch, head, n_q, d_head] of queries q at the scored positions over keys k, values v."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.causal, scale=1 / self.block.attn.scale)

    def output(self, z: torch.Tensor, group: str) -> torch.Tensor:
        """Σ over the group's heads of z_h W_O^h: z [batch, head, n_q, d_head] → [batch, n_q, d_model]."""
        return z.transpose(1, 2).flatten(2) @ self.weights.W_O1[group]

    def clean_rest(self) -> torch.Tensor:
        """r1 + the non-induction heads + b_O at the scored positions: what no scrub touches
        [batch, n_q, d_model]."""
        # keys and values first: the query residual is then a gather of the full one
        k, v = self.project(CLEAN, "K", "rest"), self.project(CLEAN, "V", "rest")
        z = self.attend(self.project(CLEAN, "Q", "rest"), k, v)
        return self.batch.residual(CLEAN, "queries") + self.output(z, "rest") + self.block.attn.b_O

    def induction_out(self, q_spec: InputSpec, k_spec: InputSpec, v_spec: InputSpec) -> torch.Tensor:
        """Σ of the induction heads' outputs at the scored positions, with queries, keys and values
        from the three residuals: [batch, n_q, d_model]."""
        k, v = self.project(k_spec, "K"), self.project(v_spec, "V")
        z = self.attend(self.project(q_spec, "Q"), k, v)
        return self.output(z, "induction")


# --- scoring -----------------------------------------------------------------------------------

@dataclass
class Losses:
    """Per scored position: its sequence, its position and its loss ([n_scored] each), and per
    sequence the summed loss and the number of scored positions ([seq] each)."""
    seq: np.ndarray
    pos: np.ndarray
    loss: np.ndarray
    loss_sum: np.ndarray
    count: np.ndarray

    def mean(self) -> float:
        return float(self.loss_sum.sum() / max(1, self.count.sum()))


# Past this many tokens of vocabulary the loss is taken block by block of W_U's columns, never
# materialising a position's logits whole. At Redwood's 50,259 that is ~1.8x faster than the
# cross-entropy of whole logits (MKL multiplies the whole W_U at under half its peak; a block's
# logits stay in cache for the log-sum-exp: benchmarks/token_losses.py), and the search no longer
# frees 20-40 MB of logits per candidate between longer-lived tensors, which fragmented its heap
# past 2 GB. The default vocabulary (2,048) is one block: exactly the cross-entropy of the logits.
LOSS_BLOCK = 2048


def token_losses(model: AttnOnlyTransformer, resid: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss of predicting each target from its final residual: resid [n, d_model], targets
    [n] → [n] (cross-entropy of the logits; past LOSS_BLOCK tokens of vocabulary a log-sum-exp
    kept running over blocks, equal to float32 rounding)."""
    if model.cfg.d_vocab <= LOSS_BLOCK:
        return F.cross_entropy(model.unembed(resid), targets, reduction="none")
    x = model.ln_final(resid)  # [n, d_model]
    top = torch.full(targets.shape, -torch.inf, device=x.device)  # the largest logit so far [n]
    total = torch.zeros(targets.shape, device=x.device)           # Σ exp(logit - top) so far [n]
    target_logit = torch.empty(targets.shape, device=x.device)
    rows = torch.arange(len(targets), device=x.device)
    for start in range(0, model.cfg.d_vocab, LOSS_BLOCK):
        block = slice(start, start + LOSS_BLOCK)
        logits = x @ model.W_U[:, block] + model.b_U[block]  # [n, block]
        new_top = torch.maximum(top, logits.max(dim=1).values)
        total = total * torch.exp(top - new_top) + torch.exp(logits - new_top[:, None]).sum(dim=1)
        top = new_top
        inside = (targets >= start) & (targets < start + logits.shape[1])
        target_logit[inside] = logits[rows[inside], targets[inside] - start]
    return top + torch.log(total) - target_logit


def scored_positions(scored_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scored_rows [batch, pos] bool → (query positions [batch, n_q] padded with 0, valid
    [batch, n_q], key positions [batch, n_k] with n_k one past the last scored position)."""
    counts = scored_rows.sum(axis=1)
    n_q = max(1, int(counts.max()))
    # each row's scored positions first, in order (a stable sort of "not scored")
    order = np.argsort(~scored_rows, axis=1, kind="stable")[:, :n_q]
    valid = np.arange(n_q)[None, :] < counts[:, None]
    queries = np.where(valid, order, 0)
    n_k = int(queries.max()) + 1
    keys = np.broadcast_to(np.arange(n_k), (len(scored_rows), n_k))
    return queries, valid, keys


@torch.no_grad()
def scrub_losses(model: AttnOnlyTransformer, cache: dict, tokens: torch.Tensor | np.ndarray,
                 other: np.ndarray, hypothesis, roles: dict, scored: np.ndarray,
                 parts: list[str], resampled: dict[str, np.ndarray] | None = None, batch_size: int = 32,
                 progress: bool = True, device: str | torch.device = "cpu", references: bool = True) -> dict[str, Losses]:
    """Losses of `hypothesis` for each part (q, k, v, all), plus, with `references`, `original`
    (every input clean) and `baseline` (every input of the induction heads from the partner
    sequence), which do not depend on the hypothesis: a caller running several may ask once.

    tokens [seq, pos + 1]; cache: {v, z, diag} arrays (tensors or memory-mapped numpy);
    other [seq]: each sequence's partner; scored [d_vocab] bool: a position t counts when its
    input token tokens[t] is scored (the whitelist); resampled: resampler name → [seq, pos] drawn
    sequence per position."""
    resampled = resampled or {}
    missing = hypothesis.sources() - {"clean", "other"} - set(resampled)
    if missing:
        raise ValueError(f"no resampled draws for sources {sorted(missing)}")
    n_offsets = cache["diag"].shape[-1]
    if hypothesis.max_offset() >= n_offsets:
        raise ValueError(f"the hypothesis masks offset {hypothesis.max_offset()} but the cache holds "
                         f"{n_offsets} diagonals (raise cache.n_offsets)")
    device = torch.device(device)
    model = model.to(device)
    tokens = np.asarray(tokens, dtype=np.int64)
    n_seq, n_pos = tokens.shape[0], tokens.shape[1] - 1
    induction = [parse_head_name(h)[1] for h in roles["induction"]]
    weights = Weights(model, induction)
    triples = ([(CLEAN, CLEAN, CLEAN), (OTHER, OTHER, OTHER)] if references else []) + [
        tuple(hypothesis.inputs[name] if name in PARTS[part] else CLEAN for name in ("q", "k", "v")) for part in parts]
    needs = {(_spec_key(spec), which) for triple in triples for spec, which in zip(triple, "QKV")}
    scored = np.asarray(scored, dtype=bool)
    other = np.asarray(other, dtype=np.int64)
    names = (["original", "baseline"] if references else []) + list(parts)
    per_position: dict[str, list[np.ndarray]] = {n: [] for n in names}
    where_seq, where_pos = [], []
    # Batches of sequences whose last scored positions are close: keys are computed up to the
    # batch's last scored position, so this spares the work past each sequence's own.
    scored_all = scored[tokens[:, :-1]]  # [seq, pos]
    last = np.where(scored_all.any(axis=1), n_pos - 1 - np.argmax(scored_all[:, ::-1], axis=1), -1)
    order = np.argsort(last, kind="stable")
    for start in tqdm(range(0, n_seq, batch_size), desc=f"scrub {hypothesis.name}", unit="batch", disable=not progress):
        rows = order[start : start + batch_size]
        scored_rows = scored_all[rows]  # [batch, pos]
        if not scored_rows.any():
            continue
        queries, valid, keys = scored_positions(scored_rows)
        index = {"clean": np.broadcast_to(rows[:, None], (len(rows), n_pos)),
                 "other": np.broadcast_to(other[rows][:, None], (len(rows), n_pos))}
        index.update({name: np.asarray(draws[rows]) for name, draws in resampled.items()})
        batch = Batch(model, cache, tokens, index, {"queries": queries, "keys": keys}, roles, device, weights)
        layer1 = Layer1(batch, weights, needs)

        valid_t = torch.from_numpy(valid).to(device)
        targets = torch.from_numpy(np.take_along_axis(tokens[rows], queries + 1, axis=1)).to(device)[valid_t]
        rest = layer1.clean_rest()[valid_t]  # [n_scored, d_model]

        def score(q_spec: InputSpec, k_spec: InputSpec, v_spec: InputSpec) -> np.ndarray:
            resid = rest + layer1.induction_out(q_spec, k_spec, v_spec)[valid_t]
            return token_losses(model, resid, targets).cpu().numpy()

        for name, triple in zip(names, triples):
            per_position[name].append(score(*triple))
        where_seq.append(np.broadcast_to(rows[:, None], valid.shape)[valid])
        where_pos.append(queries[valid])
        _release(cache)

    seq = np.concatenate(where_seq) if where_seq else np.zeros(0, dtype=np.int64)
    pos = np.concatenate(where_pos) if where_pos else np.zeros(0, dtype=np.int64)
    count = np.bincount(seq, minlength=n_seq).astype(np.float64)
    out = {}
    for name in names:
        loss = np.concatenate(per_position[name]) if per_position[name] else np.zeros(0, dtype=np.float32)
        out[name] = Losses(seq, pos, loss, np.bincount(seq, weights=loss, minlength=n_seq), count)
    return out
