"""Reading and writing model weights.

Our format: {"config": ModelConfig fields, "state_dict": ...}. Redwood's redwood_attn_2l uses
TransformerLens key names (embed.W_E, pos_embed.W_pos, blocks.L.attn.W_Q, unembed.W_U, ...),
which map one to one onto ours. Files from outside are untrusted: weights_only=True.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.stage import ConfigError

# TransformerLens name → our name (per-layer names are the same under blocks.L).
_TL_RENAMES = {
    "embed.W_E": "W_E",
    "pos_embed.W_pos": "W_pos",
    "unembed.W_U": "W_U",
    "unembed.b_U": "b_U",
}
REDWOOD_FILE = "model_state_dict.pt"


def save_checkpoint(model: AttnOnlyTransformer, path: Path | str) -> None:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"config": model.cfg.to_dict(), "state_dict": state}, path)


def _torch_load(path: Path, param: str) -> dict:
    if not path.exists():
        raise ConfigError(param, f"{path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(param, f"{path} is not a readable checkpoint: {err}") from err
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
    obj = _torch_load(Path(path), param)
    if "config" not in obj or "state_dict" not in obj:
        raise ConfigError(param, f"{path} is not a checkpoint of this pipeline (no config/state_dict)")
    try:
        cfg = ModelConfig(**obj["config"])
    except TypeError as err:
        raise ConfigError(param, f"{path} has a bad config: {err}") from err
    return build_from_state(obj["state_dict"], cfg, param, str(path))


def from_transformer_lens(state: dict, source: str, param: str = "model.repo") -> AttnOnlyTransformer:
    """A TransformerLens attn-only state dict (redwood_attn_2l's names) → our model. The
    architecture is read off the shapes; TL's buffers (masks, IGNORE) are dropped."""
    ours = {}
    for name, tensor in state.items():
        if name.endswith((".mask", ".IGNORE")) or not torch.is_tensor(tensor):
            continue
        ours[_TL_RENAMES.get(name, name)] = tensor
    try:
        d_vocab, d_model = ours["W_E"].shape
        n_ctx = ours["W_pos"].shape[0]
        n_heads, _, d_head = ours["blocks.0.attn.W_Q"].shape
    except (KeyError, ValueError) as err:
        raise ConfigError(param, f"{source} is not a TransformerLens attn-only checkpoint: {err}") from err
    n_layers = 1 + max(int(k.split(".")[1]) for k in ours if k.startswith("blocks."))
    cfg = ModelConfig(d_vocab=d_vocab, n_ctx=n_ctx, d_model=d_model, n_heads=n_heads, d_head=d_head, n_layers=n_layers)
    return build_from_state(ours, cfg, param, source)


def load_redwood(repo_or_path: str, filename: str = REDWOOD_FILE) -> AttnOnlyTransformer:
    """redwood_attn_2l from a local file, or from the Hugging Face hub (needs network)."""
    path = Path(repo_or_path)
    if not path.exists():
        if repo_or_path.startswith((".", "/")) or repo_or_path.endswith((".pt", ".pth")):
            raise ConfigError("model.repo", f"{repo_or_path} does not exist")
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(repo_or_path, filename))
        except Exception as err:
            raise ConfigError("model.repo", f"cannot download {filename} from {repo_or_path}: {err}") from err
    return from_transformer_lens(_torch_load(path, "model.repo"), str(path))
