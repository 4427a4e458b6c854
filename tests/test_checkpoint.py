"""pipeline.weights.checkpoint: our format round-trips exactly, and every unreadable or foreign file is a
ConfigError naming the parameter that points at it, never a traceback or executed code."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.weights.checkpoint import load_checkpoint, save_checkpoint
from pipeline.weights.redwood import load_redwood

SMALL = ModelConfig(d_vocab=50, n_ctx=16, d_model=32, n_heads=4, d_head=8, n_layers=2)


def small_model(seed: int = 0) -> AttnOnlyTransformer:
    model = AttnOnlyTransformer(SMALL)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    noise = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # biases and LayerNorms off their defaults, so they are checked too
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=noise))
    return model.eval()


def saved(tmp_path: Path, model: AttnOnlyTransformer | None = None) -> Path:
    path = tmp_path / "model.pt"
    save_checkpoint(model or small_model(), path)
    return path


def test_round_trip_gives_equal_weights_and_logits(tmp_path):
    model = small_model()
    loaded = load_checkpoint(saved(tmp_path, model))
    assert loaded.cfg == model.cfg
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    tokens = torch.randint(0, SMALL.d_vocab, (3, SMALL.n_ctx), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
    assert not loaded.training


def test_round_trip_of_the_pipeline_model(model, sequences, tmp_path):
    loaded = load_checkpoint(saved(tmp_path, model))
    assert loaded.cfg == model.cfg
    with torch.no_grad():
        assert torch.equal(loaded(sequences[:2, :-1]), model(sequences[:2, :-1]))


def rewrite(path: Path, edit) -> None:
    obj = torch.load(path, weights_only=True)
    edit(obj)
    torch.save(obj, path)


def test_a_misshapen_weight_is_a_config_error(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda obj: obj["state_dict"].__setitem__("blocks.1.attn.W_K", torch.zeros(4, 32, 9)))
    with pytest.raises(ConfigError, match=r"blocks\.1\.attn\.W_K has shape \(4, 32, 9\), expected \(4, 32, 8\)") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"


def test_a_weight_that_is_not_a_tensor_is_a_config_error(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda obj: obj["state_dict"].__setitem__("b_U", [0.0] * 51))
    with pytest.raises(ConfigError, match=r"b_U is a list, not a tensor") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"


def test_weights_that_do_not_fit_the_config_are_a_config_error(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda obj: obj["config"].__setitem__("d_vocab", 51))
    with pytest.raises(ConfigError, match="W_E has shape") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"


def test_a_missing_or_extra_weight_is_a_config_error(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda obj: obj["state_dict"].pop("ln_final.w"))
    with pytest.raises(ConfigError, match=r"missing weights \['ln_final.w'\]") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"

    path = saved(tmp_path)
    rewrite(path, lambda obj: obj["state_dict"].__setitem__("blocks.2.ln1.w", torch.ones(32)))
    with pytest.raises(ConfigError, match=r"unexpected \['blocks.2.ln1.w'\]"):
        load_checkpoint(path)


def test_a_bad_config_is_a_config_error(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda obj: obj["config"].__setitem__("n_experts", 4))
    with pytest.raises(ConfigError, match="bad config") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"


def test_a_corrupt_file_is_a_config_error(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError, match="not a readable checkpoint") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"
    # One line, and none of torch's advice to retry with weights_only=False (running the file).
    assert str(err.value) == (f"model.file: {path} is not a readable checkpoint (not a torch file, or it holds "
                              f"objects other than tensors)")

    # A truncated checkpoint of ours, as an interrupted copy leaves it.
    good = saved(tmp_path)
    good.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_checkpoint(good)


class Payload:
    """Unpickling this object would write a file: the check that nothing of it runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.pt"
    torch.save({"config": SMALL.to_dict(), "state_dict": Payload(marker)}, path)
    with pytest.raises(ConfigError, match="not a readable checkpoint") as err:
        load_checkpoint(path)
    assert err.value.param == "model.file"
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()

    # The same holds for the Redwood loader, whose files come from outside.
    with pytest.raises(ConfigError) as err:
        load_redwood(str(path))
    assert err.value.param == "model.repo"
    assert not marker.exists()


def test_a_file_of_another_kind_is_a_config_error(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ConfigError, match="holds a Tensor, not a state dict"):
        load_checkpoint(path)
    # A TransformerLens state dict is not a checkpoint of ours (that is model.source=redwood).
    torch.save({"embed.W_E": torch.zeros(50, 32)}, path)
    with pytest.raises(ConfigError, match="no config/state_dict"):
        load_checkpoint(path)
    # ... and ours is not a TransformerLens one.
    with pytest.raises(ConfigError, match="not a TransformerLens attn-only checkpoint") as err:
        load_redwood(str(saved(tmp_path)))
    assert err.value.param == "model.repo"


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert err.value.param == "model.file"
    assert str(err.value).startswith("model.file: ")


def test_a_missing_local_redwood_file_is_not_looked_up_on_the_hub(tmp_path):
    for path in (str(tmp_path / "nope.pt"), "./model_state_dict.pt", "weights.pth"):
        with pytest.raises(ConfigError, match="does not exist") as err:
            load_redwood(path)
        assert err.value.param == "model.repo"
