"""Reading and writing this pipeline's checkpoints: {"config": ModelConfig fields, "state_dict": ...}.
Files from outside are untrusted: weights_only=True."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pipeline.errors import ConfigError
from pipeline.model import AttnOnlyTransformer, ModelConfig


def save_checkpoint(model: AttnOnlyTransformer, path: Path | str) -> None:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"config": model.cfg.to_dict(), "state_dict": state}, path)


def file_record(path: Path | str) -> dict:
    """Which file a model was read from, so that a different file under the same name shows."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"file": str(path), "bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def torch_load(path: Path, param: str) -> dict:
    if not path.exists():
        raise ConfigError(param, f"{path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never.
        raise ConfigError(param, f"{path} is not a readable checkpoint (not a torch file, or it holds "
                                 f"objects other than tensors)") from err
    if not isinstance(obj, dict):
        raise ConfigError(param, f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def build_from_state(state: dict, cfg: ModelConfig, param: str, source: str) -> AttnOnlyTransformer:
    """A model of `cfg` holding `state`; any missing, extra or misshapen tensor is a ConfigError."""
    model = AttnOnlyTransformer(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ConfigError(param, f"{source}: missing weights {missing[:5]}, unexpected {extra[:5]}")
    for name, tensor in expected.items():
        if not torch.is_tensor(state[name]):
            raise ConfigError(param, f"{source}: {name} is a {type(state[name]).__name__}, not a tensor")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ConfigError(param, f"{source}: {name} has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_checkpoint(path: Path | str, param: str = "model.file") -> AttnOnlyTransformer:
    obj = torch_load(Path(path), param)
    if "config" not in obj or "state_dict" not in obj:
        raise ConfigError(param, f"{path} is not a checkpoint of this pipeline (no config/state_dict)")
    try:
        cfg = ModelConfig(**obj["config"])
    except TypeError as err:
        raise ConfigError(param, f"{path} has a bad config: {err}") from err
    return build_from_state(obj["state_dict"], cfg, param, str(path))
