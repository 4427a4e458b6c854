"""Redwood's redwood_attn_2l, or any TransformerLens attention-only shortformer checkpoint: from the
hub, a local snapshot folder or a local file, into this pipeline's model.

The checkpoint is a state dict with TransformerLens key names (embed.W_E, pos_embed.W_pos,
blocks.L.attn.W_Q, unembed.W_U, ...), which map one to one onto ours, beside a config.json of
HookedTransformerConfig fields. Which file of a hub repo is the checkpoint follows TransformerLens
3.9.0 (loading_from_pretrained.get_pretrained_state_dict, the branch for NeelNanda/ and
ArthurConmy/ repos): list the repo's files and take the one whose name ends in `final.pth`; the
architecture comes from the repo's config.json (convert_neel_model_config).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from pipeline.errors import ConfigError, MissingDownload
from pipeline.fetch.hub import CHECKPOINT_LOCAL_HINT, CONFIG_FILE, FINAL_SUFFIX, looks_like_path, repo_files
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.weights.checkpoint import build_from_state, torch_load

# TransformerLens name → our name (per-layer names are the same under blocks.L).
_TL_RENAMES = {
    "embed.W_E": "W_E",
    "pos_embed.W_pos": "W_pos",
    "unembed.W_U": "W_U",
    "unembed.b_U": "b_U",
}


def _tl_tensors(state: dict) -> dict:
    """TransformerLens names → ours; TL's buffers (causal masks, IGNORE) dropped."""
    return {_TL_RENAMES.get(name, name): tensor for name, tensor in state.items()
            if not name.endswith((".mask", ".IGNORE")) and torch.is_tensor(tensor)}


def from_transformer_lens(state: dict, source: str, param: str = "model.repo") -> AttnOnlyTransformer:
    """A TransformerLens attn-only state dict without its config.json → our model, the
    architecture read off the shapes (shortformer positions and LayerNorm assumed)."""
    ours = _tl_tensors(state)
    try:
        d_vocab, d_model = ours["W_E"].shape
        n_ctx = ours["W_pos"].shape[0]
        n_heads, _, d_head = ours["blocks.0.attn.W_Q"].shape
    except (KeyError, ValueError) as err:
        raise ConfigError(param, f"{source} is not a TransformerLens attn-only checkpoint: {err}") from err
    n_layers = 1 + max(int(k.split(".")[1]) for k in ours if k.startswith("blocks."))
    cfg = ModelConfig(d_vocab=d_vocab, n_ctx=n_ctx, d_model=d_model, n_heads=n_heads, d_head=d_head, n_layers=n_layers)
    return build_from_state(ours, cfg, param, source)


def _field(cfg: dict, source: str, name: str, param: str):
    if name not in cfg:
        raise ConfigError(param, f"{source} lacks the field {name}")
    return cfg[name]


def _refuse(source: str, field: str, value, supported: str, param: str) -> ConfigError:
    return ConfigError(param, f"{source}: {field}={value!r} is not implemented by this pipeline's model "
                              f"(it implements {supported})")


def config_from_tl(cfg: dict, source: str, param: str = "model.repo") -> ModelConfig:
    """A TransformerLens config.json → ModelConfig, or a ConfigError naming the first field that
    asks for an architecture our model does not implement. Both spellings TransformerLens reads
    are accepted: HookedTransformerConfig fields (normalization_type, positional_embedding_type)
    and the older `normalization` / `shortformer_pos`."""
    sizes = {k: _field(cfg, source, k, param) for k in ("d_model", "n_layers", "n_heads", "d_head", "n_ctx", "d_vocab")}
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(param, f"{source}: {key}={value!r} is not a positive integer")
    if cfg.get("attn_only") is not True:
        raise _refuse(source, "attn_only", cfg.get("attn_only"), "attention-only models: attn_only=true", param)
    norm_field = "normalization_type" if "normalization_type" in cfg or "normalization" not in cfg else "normalization"
    if cfg.get(norm_field) != "LN":
        raise _refuse(source, norm_field, cfg.get(norm_field), "LayerNorm: LN", param)
    if "positional_embedding_type" in cfg:
        if cfg["positional_embedding_type"] != "shortformer":
            raise _refuse(source, "positional_embedding_type", cfg["positional_embedding_type"], "shortformer", param)
    elif cfg.get("shortformer_pos") is not True:
        # TransformerLens reads a config without either field as standard positions.
        raise _refuse(source, "positional_embedding_type", cfg.get("shortformer_pos", "standard (no field)"),
                      "shortformer", param)
    eps = cfg.get("eps", 1e-5)
    if eps != 1e-5:
        raise _refuse(source, "eps", eps, "eps=1e-05", param)
    # Fields that, away from TransformerLens' defaults, change what the attention layers compute.
    defaults = {
        "attention_dir": ("causal",), "use_attn_scale": (True,), "use_local_attn": (False,),
        "scale_attn_by_inverse_layer_idx": (False,), "final_rms": (False,), "n_key_value_heads": (None,),
        "use_qk_norm": (False,), "attn_scores_soft_cap": (-1.0, None), "use_normalization_before_and_after": (False,),
        "original_architecture": (None, "neel", "custom"), "attn_types": (None,),
    }
    for key, allowed in defaults.items():
        if key in cfg and cfg[key] not in allowed:
            raise _refuse(source, key, cfg[key], f"{key}={allowed[0]!r}", param)
    scale = cfg.get("attn_scale")
    if scale is not None and not math.isclose(scale, math.sqrt(sizes["d_head"]), rel_tol=1e-6):
        raise _refuse(source, "attn_scale", scale, f"attn_scale=sqrt(d_head)={math.sqrt(sizes['d_head']):.4f}", param)
    if cfg.get("d_vocab_out") not in (None, -1, sizes["d_vocab"]):
        raise _refuse(source, "d_vocab_out", cfg["d_vocab_out"], f"d_vocab_out=d_vocab={sizes['d_vocab']}", param)
    return ModelConfig(ln_eps=eps, **sizes)


def _read_config(path: Path, param: str) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(param, f"{path} is not a readable config.json: {err}") from err
    if not isinstance(cfg, dict):
        raise ConfigError(param, f"{path} holds a {type(cfg).__name__}, not a config object")
    return cfg


def pick_checkpoint(names: list[str], filename: str | None, where: str) -> str | None:
    """The checkpoint among a repo's files: `filename` if given (model.filename), else the first
    name ending in final.pth, as TransformerLens picks it. None when there is none."""
    if filename:
        return filename if filename in names else None
    finals = [n for n in names if n.endswith(FINAL_SUFFIX)]
    if len(finals) > 1:
        # TransformerLens would take the first; which one is meant is the user's to say
        raise ConfigError("model.filename", f"{where} holds {len(finals)} checkpoints ending in {FINAL_SUFFIX} "
                                            f"({', '.join(finals)}); pick one with -S model.filename=NAME")
    return finals[0] if finals else None


def resolve_redwood(repo: str, filename: str | None = None) -> tuple[Path, Path | None]:
    """(checkpoint file, its config.json or None) for `model.repo`: a hub id, a local snapshot
    folder (a copy of the repo) or a single checkpoint file."""
    param = "model.repo"
    path = Path(repo).expanduser()
    if path.is_file():
        config = path.parent / CONFIG_FILE
        return path, config if config.exists() else None
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        name = pick_checkpoint(names, filename, str(path))
        if name is None:
            raise ConfigError("model.filename" if filename else param,
                              f"{path} holds no {filename or '*' + FINAL_SUFFIX} checkpoint")
        if CONFIG_FILE not in names:
            raise ConfigError(param, f"{path} has no {CONFIG_FILE} beside {name}")
        return path / name, path / CONFIG_FILE
    if looks_like_path(repo):
        raise ConfigError(param, f"{repo} does not exist")
    wanted = f"{filename or '*' + FINAL_SUFFIX} and {CONFIG_FILE}"
    names, fetch, listed_online = repo_files(repo, param, wanted, CHECKPOINT_LOCAL_HINT)
    name = pick_checkpoint(names, filename, repo)
    missing = [w for w, ok in ((filename or "*" + FINAL_SUFFIX, name), (CONFIG_FILE, CONFIG_FILE in names)) if not ok]
    if missing:
        if not listed_online:  # the cached snapshot lacks them: they were never fetched
            raise MissingDownload(param, f"could not fetch {' and '.join(missing)} from {repo} (the hub cannot be "
                                         f"reached and the cached snapshot lacks them); give a local copy "
                                         f"instead: -S {param}={CHECKPOINT_LOCAL_HINT}")
        raise ConfigError("model.filename" if filename and name is None else param,
                          f"{repo} has no {' and no '.join(missing)}")
    return fetch(name), fetch(CONFIG_FILE)


def load_redwood(repo_or_path: str, filename: str | None = None) -> AttnOnlyTransformer:
    """redwood_attn_2l (or any TransformerLens attention-only shortformer checkpoint) from the hub,
    a local snapshot folder or a local file. A file without a config.json beside it has its
    architecture read off the tensor shapes."""
    return load_tl_checkpoint(*resolve_redwood(repo_or_path, filename))


def load_tl_checkpoint(ckpt: Path, config: Path | None) -> AttnOnlyTransformer:
    """A TransformerLens checkpoint file and its config.json (None: read the shapes)."""
    state = torch_load(ckpt, "model.repo")
    if config is None:
        return from_transformer_lens(state, str(ckpt))
    cfg = config_from_tl(_read_config(config, "model.repo"), str(config))
    return build_from_state(_tl_tensors(state), cfg, "model.repo", str(ckpt))
