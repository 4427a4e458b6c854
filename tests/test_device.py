"""The `device` parameter: auto takes the CPU when torch sees no GPU, a wrong name or a missing
GPU is one error naming the parameter, and the device asked for is where the layer-0 cache and the
scrub compute: on a stand-in second device (tests/helpers/fake_device.py), with the CPU's numbers."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from pipeline.config.hypothesis import parse_hypothesis
from pipeline.device import resolve_device
from pipeline.errors import ConfigError
from pipeline.scrub.cache import load_cache, write_cache
from pipeline.scrub.engine import build_cache, scrub_losses
from pipeline.scrub.sweep import sweep
from tests.helpers import ROOT
from tests.helpers.fake_device import FAKE, FakeDevice


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


# --- the device reaches every tensor the engine computes with -------------------------------------
# On FAKE (tests/helpers/fake_device.py), a stand-in second device with the CPU's numbers: an operand
# left on the CPU fails the op as it would on a GPU, and the counts say where the work ran.

COMPUTE = {"matmul", "einsum", "layer_norm", "softmax", "scaled_dot_product_attention", "cross_entropy",
           "embedding", "addcmul_", "masked_fill"}
ROLES = {"prev": "0.0", "self": ["0.1"], "induction": ["1.5", "1.6"]}


def assert_computed_on_fake(fake: FakeDevice, expected: set[str]) -> None:
    """No op of COMPUTE ran on the CPU, and each of `expected` ran on FAKE (the run did the work)."""
    assert not COMPUTE & set(fake.on_cpu), f"computed on the CPU: {sorted(COMPUTE & set(fake.on_cpu))}"
    assert expected <= set(fake.on_fake), f"missing on the device: {sorted(expected - set(fake.on_fake))}"


def test_the_layer0_cache_is_computed_on_the_device_asked_for(model, sequences, tmp_path):
    tokens = sequences[:4, :65]
    expected = build_cache(model, tokens, n_offsets=4, batch_size=2, dtype=torch.float32, progress=False)
    with FakeDevice() as fake:
        write_cache(tmp_path, copy.deepcopy(model), tokens, n_offsets=4, batch_size=2, dtype="float32",
                    progress=False, device=FAKE)
    assert_computed_on_fake(fake, {"einsum", "layer_norm", "softmax", "matmul", "masked_fill"})
    got = load_cache(tmp_path)
    for key, array in expected.items():
        np.testing.assert_array_equal(got[key], array.numpy(), err_msg=key)


@pytest.fixture(scope="module")
def scrub_inputs(model, sequences) -> dict:
    """Four sequences of 64 inputs, bonus 5's hypothesis (masks, a residual rewrite, a resampled
    source drawn per position), half the tokens scored."""
    tokens = sequences[:4, :65]
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, :-1].numpy())[::2]] = True
    n_pos = tokens.shape[1] - 1
    return {"cache": build_cache(model, tokens, n_offsets=4, batch_size=2, dtype=torch.float32, progress=False),
            "tokens": tokens, "other": np.roll(np.arange(4), 1), "roles": ROLES, "scored": scored,
            "resampled": {"typicality": (np.arange(4)[:, None] + 1 + np.arange(n_pos)[None, :] % 3) % 4}}


def test_the_scrub_is_computed_on_the_device_asked_for(model, scrub_inputs):
    hypothesis = parse_hypothesis("bonus5", yaml.safe_load((ROOT / "conf/hypothesis/bonus5.yaml").read_text()))
    kwargs = dict(**scrub_inputs, hypothesis=hypothesis, parts=["q", "k", "v", "all"], batch_size=2, progress=False)
    on_cpu = scrub_losses(model, **kwargs, device=resolve_device("cpu"))
    with FakeDevice() as fake:
        on_fake = scrub_losses(copy.deepcopy(model), **kwargs, device=FAKE)
    assert_computed_on_fake(fake, COMPUTE - {"einsum", "softmax", "masked_fill"})
    assert set(on_fake) == set(on_cpu) == {"original", "baseline", "q", "k", "v", "all"}
    for name, losses in on_cpu.items():  # the same CPU arithmetic either way
        np.testing.assert_allclose(on_fake[name].loss, losses.loss, rtol=1e-6, atol=0, err_msg=name)


def test_the_sweep_is_computed_on_the_device_asked_for(model, scrub_inputs):
    form = yaml.safe_load((ROOT / "conf/hypothesis/refined2.yaml").read_text())
    s = scrub_inputs
    with FakeDevice() as fake:
        frame = sweep(copy.deepcopy(model), s["cache"], s["tokens"].numpy(), s["other"], form, s["roles"], s["scored"],
                      max_offset=1, batch_size=2, bootstrap_samples=10, device=FAKE, quiet=True)
    assert_computed_on_fake(fake, {"matmul", "scaled_dot_product_attention", "cross_entropy", "addcmul_"})
    assert len(frame) and frame.recovered.notna().all()


def test_the_fake_device_refuses_an_operand_left_on_the_cpu():
    """What the tests above rely on: FAKE fails as a GPU would."""
    with FakeDevice():
        x = torch.ones(3).to(FAKE)
        assert x.device == FAKE and torch.zeros(2, device=x.device).device == FAKE
        assert (x + 1).device == FAKE and (x * torch.tensor(2.0)).device == FAKE  # a CPU scalar is allowed
        with pytest.raises(RuntimeError, match="same device"):
            x @ torch.ones(3)
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
        assert x[torch.tensor([0, 2])].device == FAKE  # CPU indices into a tensor on FAKE, as torch allows
        assert x.cpu().device == torch.device("cpu") and x.cpu().numpy().tolist() == [1.0, 1.0, 1.0]
        layer = torch.nn.Linear(3, 2).to(FAKE)
        assert layer.weight.device == FAKE and layer(x).device == FAKE
        with pytest.raises(RuntimeError, match="same device"):
            torch.nn.Linear(3, 2)(x)
