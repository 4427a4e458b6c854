"""The `device` parameter: auto takes the CPU when torch sees no GPU, a wrong name or a missing
GPU is one error naming the parameter, and asking for the CPU changes no number."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config.hypothesis import parse_hypothesis
from pipeline.device import resolve_device
from pipeline.errors import ConfigError
from pipeline.scrub.engine import build_cache, scrub_losses


def test_auto_is_cuda_only_when_torch_sees_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error_naming_device():
    with pytest.raises(ConfigError, match="^device: cuda was asked for"):
        resolve_device("cuda")


def test_unknown_device_is_an_error_naming_device():
    with pytest.raises(ConfigError, match="^device: 'gpu'"):
        resolve_device("gpu")


def test_cpu_device_gives_the_default_numbers(model, sequences):
    tokens = sequences[:4, :100]
    cache = build_cache(model, tokens, n_offsets=4, batch_size=2, dtype=torch.float32, progress=False)
    spec = {"embedding": "clean", "heads": {"all": {"mask": "prev", "inside": {"pattern": "other", "values": "clean"},
                                                    "outside": "other"}}}
    hypothesis = parse_hypothesis("t", {"q": spec, "k": spec, "v": spec})
    scored = np.ones(model.cfg.d_vocab, dtype=bool)
    args = (model, cache, tokens, np.roll(np.arange(4), 1), hypothesis,
            {"prev": "0.0", "self": [], "induction": ["1.5"]}, scored, ["q", "all"])
    default = scrub_losses(*args, progress=False)
    on_cpu = scrub_losses(*args, progress=False, device=resolve_device("cpu"))
    for name, losses in default.items():
        np.testing.assert_array_equal(on_cpu[name].loss, losses.loss)
