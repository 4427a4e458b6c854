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

from pipeline.errors import ConfigError, MissingDownload

# TransformerLens' rule for NeelNanda/ and ArthurConmy/ repos (redwood_attn_2l among them): the
# checkpoint is the file whose name ends in `final.pth`, the architecture its config.json.
FINAL_SUFFIX = "final.pth"
CONFIG_FILE = "config.json"
CHECKPOINT_LOCAL_HINT = "path/to/snapshot_folder_or_checkpoint.pth"


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


def unreachable(what: str, repo: str, param: str, local: str) -> MissingDownload:
    why = "HF_HUB_OFFLINE is set" if _offline() else "the hub cannot be reached"
    return MissingDownload(param, f"could not fetch {what} from {repo} ({why}) and it is not in the Hugging Face "
                                  f"cache {_cache_dir()}; give a local copy instead: -S {param}={local}")


def _not_found(repo: str, param: str, err: Exception) -> ConfigError:
    return ConfigError(param, f"{repo} is not a repository the hub serves ({type(err).__name__}); "
                              f"check the id, or give a local copy with -S {param}=PATH")


def download(repo: str, filename: str, param: str, local: str = "PATH") -> Path:
    """One file of a hub model repo: downloaded, or from the cache when the hub is unreachable."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo, filename))
    except LocalEntryNotFoundError as err:  # hf_hub_download already fell back to the cache
        raise unreachable(filename, repo, param, local) from err
    except EntryNotFoundError as err:
        raise ConfigError(param, f"{repo} has no file {filename}") from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise _not_found(repo, param, err) from err
    except OSError as err:  # a connection dropped mid-way and the like
        raise unreachable(filename, repo, param, local) from err


def repo_files(repo: str, param: str, what: str, local: str = "PATH") -> tuple[list[str], Callable[[str], Path], bool]:
    """A hub model repo's file names, a function giving a local path for one of them, and whether
    the listing is the hub's (True) or the cache's (False).

    Online this is TransformerLens' own listing (HfApi.list_repo_files). When the hub cannot be
    reached, the listing is that of the cached snapshot of the main branch, which holds only the
    files fetched before: enough to run again offline what once ran online."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

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
        raise unreachable(what, repo, param, local) from err
    names = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    return names, lambda name: snapshot / name, False


def hub_reachable() -> bool:
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


def cached(repo: str, names: list[str]) -> bool:
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
