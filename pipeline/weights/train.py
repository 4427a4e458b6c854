"""Training the default model on the CPU.

Rows are windows of the training token stream behind a BEGIN token, as the experiment sequences
are. A share of rows also gets one span of random tokens pasted twice, at a random length and a
random distance. Random tokens cannot be predicted from bigrams, so their second copy rewards
induction alone; the varying distance takes away the shortcut of copying from a fixed offset,
which a fixed repeat distance teaches instead (docs/training.md).

An induction head is a product of three circuits (previous-token QK in layer 0, induction QK and
copying OV in layer 1), each useless without the others, so training sits on a plateau before it
forms, longer the longer the rows and the larger the alphabet to copy. Hence a curriculum:
`short_steps` steps of `short_len`-token rows (as many tokens per step) with spans over the
`alphabet_start` most frequent tokens, then over `grow_steps` the rows lengthen to n_ctx and the
alphabet widens to every ordinary token, linearly.

A previous-token head needs, for every position t, a query that matches the key of t - 1. With
learned N(0, 1) positions that is a separate fact per position, which one head's rank-32 QK
cannot hold for 320 positions until W_pos itself has become smooth. `positions: sinusoidal`
starts W_pos as sines and cosines at frequencies spread evenly over (0, π), where "one step back"
is one fixed rotation of every frequency pair, expressible by a rank-32 QK at all positions at
once. `seed_prev_head` > 0 goes further and starts head 0.0's QK as that rotation on 16 of the
frequencies, scaled by the value given; every weight is then trained freely. What each of these
did on this corpus is measured in docs/training.md.

Positions as strong as the tokens make a second shortcut easy: a layer-0 head can attend to its
own position by position alone, and then never attends to earlier copies of its token, which the
writeup's self-attending heads (0.1, 0.2, 0.5) do by matching the token itself. `position_scale`
< 1 starts the sinusoidal W_pos that much smaller than the token embeddings. The seeded head's
weights grow by 1 / position_scale, so its logits from positions start as at scale 1; but it reads
tokens too, so its input is then that much more token than position (what this did: docs/training.md).
`private_seed_dims` starts the token embeddings at zero in the dimensions the seeded head reads,
so that it starts reading positions alone, however small.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from tqdm import tqdm

from pipeline.config.base import Seed
from pipeline.config.training import Train
from pipeline.model import AttnOnlyTransformer


class TrainConfig(Train):
    """params.yaml's model.train (pipeline.config.training.Train: every key's type and range, and the
    defaults of the keys params.yaml may leave out) and the model's seed. Built without params (the
    tests), the keys params.yaml must give take BUILT_DEFAULTS."""
    seed: Seed = 0

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return {**BUILT_DEFAULTS, **data} if isinstance(data, dict) else data


BUILT_DEFAULTS = {"steps": 20000, "batch_size": 16, "lr": 3e-3, "warmup_steps": 100, "final_lr_fraction": 0.1,
                  "weight_decay": 0.05, "repeat_share": 0.5, "repeat_span": (8, 64), "short_steps": 0, "short_len": 64,
                  "alphabet_start": None, "grow_steps": 0, "positions": "normal", "seed_prev_head": 0.0, "bf16": True,
                  "eval_every": 500}


class RowSampler:
    """Seeded training rows [batch, len + 1]: BEGIN + a window of the stream, some with a random
    span repeated. Row length and span alphabet follow the curriculum (see the module docstring)."""

    def __init__(self, stream: np.ndarray, n_ctx: int, begin_id: int, ordinary: range | int,
                 d_vocab: int, cfg: TrainConfig):
        if len(stream) <= n_ctx:
            raise ValueError(f"the training stream has {len(stream)} tokens, fewer than n_ctx={n_ctx}")
        if cfg.short_steps and not 2 * cfg.repeat_span[0] <= cfg.short_len <= n_ctx:
            raise ValueError(f"short_len={cfg.short_len} must lie in [2·repeat_span[0], n_ctx={n_ctx}]")
        self.stream, self.n_ctx, self.begin_id = stream, n_ctx, begin_id
        # ordinary token ids (pipeline.data.tokenizer.ordinary_ids); an int is the first of them, the
        # rest up to d_vocab
        ordinary = range(ordinary, d_vocab) if isinstance(ordinary, int) else ordinary
        self.ordinary, self.d_vocab, self.cfg = ordinary, d_vocab, cfg
        self.rng = np.random.default_rng(cfg.seed)
        counts = np.bincount(stream, minlength=d_vocab)[ordinary.start : ordinary.stop]
        # ordinary tokens, most frequent first (ties by id, so the order is deterministic)
        self.by_frequency = ordinary.start + np.argsort(-counts, kind="stable")

    def grown(self, step: int) -> float:
        """How far the curriculum has grown at `step`: 0 during the short rows, 1 when done."""
        cfg = self.cfg
        if step < cfg.short_steps:
            return 0.0
        return min(1.0, (step - cfg.short_steps + 1) / (cfg.grow_steps + 1))

    def row_length(self, step: int) -> int:
        grown = self.grown(step)
        if not self.cfg.short_steps or grown == 1.0:
            return self.n_ctx
        short = self.cfg.short_len
        # multiples of 16, so that the rows per step change rarely
        return short + 16 * int((self.n_ctx - short) * grown / 16)

    def alphabet(self, step: int) -> int:
        """How many of the most frequent ordinary tokens random spans draw from at `step`."""
        full = len(self.by_frequency)
        if self.cfg.alphabet_start is None:
            return full
        start = min(self.cfg.alphabet_start, full)
        return int(start + (full - start) * self.grown(step))

    def __call__(self, step: int = 0) -> torch.Tensor:
        cfg, rng = self.cfg, self.rng
        n = self.row_length(step)
        batch = cfg.batch_size * self.n_ctx // n  # short rows: as many tokens per step
        starts = rng.integers(0, len(self.stream) - n + 1, size=batch)
        rows = np.empty((batch, n + 1), dtype=np.int64)
        rows[:, 0] = self.begin_id
        alphabet = self.by_frequency[: self.alphabet(step)]
        for i, s in enumerate(starts):
            rows[i, 1:] = self.stream[s : s + n]
            if rng.random() < cfg.repeat_share:
                self._paste_repeat(rows[i], alphabet)
        return torch.from_numpy(rows)

    def _paste_repeat(self, row: np.ndarray, alphabet: np.ndarray) -> None:
        lo, hi = self.cfg.repeat_span
        length = int(self.rng.integers(lo, min(hi, (len(row) - 1) // 2) + 1))
        first = int(self.rng.integers(1, len(row) - 2 * length + 1))
        second = int(self.rng.integers(first + length, len(row) - length + 1))
        span = alphabet[self.rng.integers(0, len(alphabet), size=length)]
        row[first : first + length] = span
        row[second : second + length] = span


def sinusoidal_positions(n_ctx: int, d_model: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W_pos [n_ctx, d_model] of sines (even columns) and cosines (odd columns) at d_model / 2
    frequencies spread evenly over (0, π), each row of mean square 1 like N(0, 1) rows; and the
    frequencies."""
    frequencies = math.pi * (torch.arange(d_model // 2, dtype=torch.float64) + 0.5) / (d_model // 2)
    angles = torch.arange(n_ctx, dtype=torch.float64)[:, None] * frequencies  # [pos, d_model / 2]
    w_pos = torch.zeros(n_ctx, d_model, dtype=torch.float64)
    w_pos[:, 0::2], w_pos[:, 1::2] = angles.sin(), angles.cos()
    return (w_pos * math.sqrt(2)).float(), frequencies


@torch.no_grad()
def initialise_for_training(model: AttnOnlyTransformer, cfg: TrainConfig) -> None:
    """Apply `positions` and `seed_prev_head` (see the module docstring) to a freshly
    initialised model."""
    if cfg.seed_prev_head and cfg.positions != "sinusoidal":
        raise ValueError("seed_prev_head needs positions=sinusoidal")
    if cfg.private_seed_dims and not cfg.seed_prev_head:
        raise ValueError("private_seed_dims needs seed_prev_head > 0")
    if cfg.position_scale != 1.0 and cfg.positions != "sinusoidal":
        raise ValueError("position_scale needs positions=sinusoidal")
    if cfg.positions == "normal":
        return
    w_pos, frequencies = sinusoidal_positions(model.cfg.n_ctx, model.cfg.d_model)
    model.W_pos.copy_(w_pos * cfg.position_scale)
    if not cfg.seed_prev_head:
        return
    seed = cfg.seed_prev_head / cfg.position_scale  # query and key each see positions scaled down
    attn = model.blocks[0].attn
    n_pairs = min(attn.W_Q.shape[-1] // 2, len(frequencies))
    stride = len(frequencies) // n_pairs
    attn.W_Q[0].zero_()
    attn.W_K[0].zero_()
    attn.b_Q[0].zero_()
    attn.b_K[0].zero_()
    for j in range(n_pairs):
        f = stride * j + stride // 2  # frequencies spread over (0, π): a sharp peak at t - 1
        cos, sin = math.cos(frequencies[f]), math.sin(frequencies[f])
        row, col = 2 * f, 2 * j
        # query: position t's (sin, cos) pair as it is; key: position s's pair rotated one step
        # forward, which is position t's pair exactly when s = t - 1
        attn.W_Q[0, row, col] = attn.W_Q[0, row + 1, col + 1] = seed
        attn.W_K[0, row, col], attn.W_K[0, row + 1, col] = seed * cos, seed * sin
        attn.W_K[0, row, col + 1], attn.W_K[0, row + 1, col + 1] = -seed * sin, seed * cos
        if cfg.private_seed_dims:
            model.W_E[:, row : row + 2] = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `final_lr_fraction` of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.final_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@contextmanager
def deterministic_algorithms(device: torch.device = torch.device("cpu")):
    """With several threads, the CPU's accumulating index_put (the embedding's backward) adds in a
    varying order; its deterministic variant makes the same params give the same weights. On a
    GPU, cuBLAS needs a fixed workspace for that, and kernels without a deterministic variant
    only warn: GPU training is repeatable as far as CUDA allows, not guaranteed bit for bit."""
    was = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


def train(model: AttnOnlyTransformer, sampler: RowSampler, cfg: TrainConfig, evaluate=None,
          device: torch.device = torch.device("cpu")) -> list[dict]:
    """Train in place on `device`; `evaluate(model) -> dict` runs on the CPU every `eval_every`
    steps and at the end. Returns the log: one entry per evaluation. The model ends on the CPU."""
    torch.manual_seed(cfg.seed)
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas,
    )
    log: list[dict] = []
    t0 = time.time()
    running = None
    bar = tqdm(range(cfg.steps), desc="train", unit="step", mininterval=5)
    with deterministic_algorithms(device):
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            rows = sampler(step).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(rows[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            last = step == cfg.steps - 1
            if evaluate is not None and ((step + 1) % cfg.eval_every == 0 or last):
                model.to("cpu").eval()  # parameters move in place: the optimizer keeps them
                # no wall-clock time in the log: retraining must give a bit-identical train_log.json
                entry = {"step": step + 1, "train_loss": running, **evaluate(model)}
                model.to(device).train()
                log.append(entry)
                bar.set_postfix({k: round(v, 3) for k, v in entry.items() if isinstance(v, float)})
                tqdm.write(str({k: (round(v, 3) if isinstance(v, float) else v) for k, v in entry.items()})
                           + f" after {time.time() - t0:.0f} s")
            elif step % 50 == 0:
                bar.set_postfix(loss=round(running, 3))
    model.to("cpu")
    return log
