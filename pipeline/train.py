"""Training the default model on the CPU.

Rows are windows of the training token stream behind a BEGIN token, as the experiment sequences
are. A share of rows also gets one span of random tokens pasted twice, at a random length and a
random distance. Random tokens cannot be predicted from bigrams, so their second copy rewards
induction alone; the varying distance takes away the shortcut of copying from a fixed offset
(TRAINING-NOTES.md), which a fixed repeat distance teaches instead.

An induction head is a product of three circuits (previous-token QK, induction QK, copying OV),
each useless without the others, so training sits on a plateau before it forms. Measured here: the
plateau did not end within 26M tokens with full-length rows, spans over the whole vocabulary and
lr 1e-2, but ended after ~1000 steps (3.7M tokens) with 64-token rows, spans over the 64 most
frequent tokens and lr 1e-3. The time to form grows with the square of the context (arXiv
2511.01033) and with the alphabet the copy must cover. Hence a curriculum: `short_steps` steps of
`short_len`-token rows (as many tokens per step) with spans over the `alphabet_start` most frequent
tokens, each step's rows placed at a random position of the context; then full rows, the alphabet
growing to every ordinary token over `alphabet_grow_steps`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.model import AttnOnlyTransformer


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    repeat_share: float = 0.5
    repeat_span: tuple[int, int] = (8, 64)
    short_steps: int = 0
    short_len: int = 64
    alphabet_start: int | None = None  # None: spans use every ordinary token from the start
    alphabet_grow_steps: int = 0
    bf16: bool = True
    eval_every: int = 500
    extra: dict = field(default_factory=dict)


class RowSampler:
    """Seeded training rows [batch, len + 1]: BEGIN + a window of the stream, some with a random
    span repeated. Row length and span alphabet follow the curriculum (see the module docstring)."""

    def __init__(self, stream: np.ndarray, n_ctx: int, begin_id: int, first_plain_id: int,
                 d_vocab: int, cfg: TrainConfig):
        if len(stream) <= n_ctx:
            raise ValueError(f"the training stream has {len(stream)} tokens, fewer than n_ctx={n_ctx}")
        if cfg.short_steps and not 2 * cfg.repeat_span[0] <= cfg.short_len <= n_ctx:
            raise ValueError(f"short_len={cfg.short_len} must lie in [2·repeat_span[0], n_ctx={n_ctx}]")
        self.stream, self.n_ctx, self.begin_id = stream, n_ctx, begin_id
        self.first_plain_id, self.d_vocab, self.cfg = first_plain_id, d_vocab, cfg
        self.rng = np.random.default_rng(cfg.seed)
        counts = np.bincount(stream, minlength=d_vocab)[first_plain_id:]
        # ordinary tokens, most frequent first (ties by id, so the order is deterministic)
        self.by_frequency = first_plain_id + np.argsort(-counts, kind="stable")

    def row_length(self, step: int) -> int:
        return self.cfg.short_len if step < self.cfg.short_steps else self.n_ctx

    def first_position(self, step: int) -> int:
        """Where this step's rows start in the context: short rows at a random place, so that the
        previous-token head forms at every position, not only the first `short_len`."""
        n = self.row_length(step)
        if n == self.n_ctx:
            return 0
        return int(np.random.default_rng([self.cfg.seed, step]).integers(0, self.n_ctx - n + 1))

    def alphabet(self, step: int) -> int:
        """How many of the most frequent ordinary tokens random spans draw from at `step`."""
        cfg, full = self.cfg, len(self.by_frequency)
        if cfg.alphabet_start is None:
            return full
        start = min(cfg.alphabet_start, full)
        grown = (step - cfg.short_steps) / max(1, cfg.alphabet_grow_steps)
        return int(start + (full - start) * min(1.0, max(0.0, grown)))

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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `final_lr_fraction` of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.final_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: AttnOnlyTransformer, sampler: RowSampler, cfg: TrainConfig, evaluate=None) -> list[dict]:
    """Train in place; `evaluate(model) -> dict` runs every `eval_every` steps and at the end.
    Returns the log: one entry per evaluation."""
    torch.manual_seed(cfg.seed)
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
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        rows = sampler(step)
        first = sampler.first_position(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(rows[:, :-1], first)
        loss = F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        last = step == cfg.steps - 1
        if evaluate is not None and ((step + 1) % cfg.eval_every == 0 or last):
            model.eval()
            entry = {"step": step + 1, "train_loss": running, "seconds": time.time() - t0, **evaluate(model)}
            model.train()
            log.append(entry)
            bar.set_postfix({k: round(v, 3) for k, v in entry.items() if isinstance(v, float)})
            tqdm.write(str({k: (round(v, 3) if isinstance(v, float) else v) for k, v in entry.items()}))
        elif step % 50 == 0:
            bar.set_postfix(loss=round(running, 3))
    return log
