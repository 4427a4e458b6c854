"""The model of params.yaml's `model.train` (pipeline.config.schema's Trained holds it): its own module,
a dependency of the model stage in dvc.yaml, because its defaults are training parameters."""
from __future__ import annotations

from typing import Literal

from annotated_types import Ge, Gt, Le, Lt

from pipeline.config.base import Count, Flag, Section, integer, number


class Train(Section):
    """model.train: how a `trained` model is trained (pipeline.weights.train.TrainConfig adds the
    model's seed). The keys with a default here may be left out of params.yaml."""
    steps: Count
    batch_size: Count
    lr: number(Gt(0))
    warmup_steps: integer(Ge(0))
    final_lr_fraction: number(Ge(0), Le(1))
    weight_decay: number(Ge(0))
    betas: tuple[number(Ge(0), Lt(1)), number(Ge(0), Lt(1))] = (0.9, 0.95)
    grad_clip: number(Gt(0)) = 1.0
    repeat_share: number(Ge(0), Le(1))
    repeat_span: tuple[integer(Ge(1)), integer(Ge(1))]
    positions: Literal["normal", "sinusoidal"]
    position_scale: number(Gt(0)) = 1.0  # sinusoidal W_pos starts this size relative to N(0, 1) rows
    seed_prev_head: number()
    private_seed_dims: Flag = False
    short_steps: integer(Ge(0))
    short_len: Count
    alphabet_start: integer(Ge(1)) | None  # None: spans use every ordinary token from the start
    grow_steps: integer(Ge(0))
    bf16: Flag
    eval_every: Count
