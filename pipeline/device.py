"""Where the tensors of training, the layer-0 cache and the scrubs live: the `device` parameter.

`auto` takes CUDA when torch sees a GPU, else the CPU. Results on the CPU do not depend on this
parameter; on a GPU they agree with the CPU's to float rounding (not bit for bit).
"""
from __future__ import annotations

import torch

from pipeline.errors import ConfigError

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name not in CHOICES:
        raise ConfigError("device", f"{name!r}: choose one of {', '.join(CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was asked for but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)
