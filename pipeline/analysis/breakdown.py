"""Per-token breakdown of a scrub: where a hypothesis loses what it fails to recover.

A library with no file I/O: the scrub stage hands it its per-position frame (positions.parquet's
columns: seq_id, pos, token, target, loss_original, loss_baseline, loss_<part> for each part run,
and class_<resampler> for each resampler of the hypothesis) and the token texts; it returns the
table written as data/scrub/seed<N>/<key>/breakdown.csv, one row per (part, group, label):

    part               q | k | v | all (whatever loss_<part> columns the frame has)
    group              "token" (the input token at the scored position, which is what the
                       whitelist scores by) or a resampler's name (e.g. "typicality")
    label              the token's text, quoted so that leading spaces show (" the"), or the class
    token              the token id; -1 on a class row
    count              scored positions in the group
    loss_original, loss_baseline, loss_scrubbed    means over those positions
    unrecovered        Σ over the group of (scrubbed − original): the loss the part fails to recover
    unrecovered_share  unrecovered / the part's total unrecovered (each group's shares sum to 1;
                       NaN where the part's total is 0)

Rows sorted by part (q, k, v, all, then any other part by name), group ("token" first, then the
resamplers by name), unrecovered descending, then label (so equal rows keep one order).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

COLUMNS = ["part", "group", "label", "token", "count", "loss_original", "loss_baseline",
           "loss_scrubbed", "unrecovered", "unrecovered_share"]
PART_ORDER = ("q", "k", "v", "all")
TOKEN_GROUP = "token"
CLASS_PREFIX = "class_"
# Columns of the per-position frame that are losses but not parts.
REFERENCE_LOSSES = ("loss_original", "loss_baseline")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet inverted (character of a token string → the byte it stands
    for), the ByteLevel pre-tokenizer both of our tokenizers use."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


BYTE_DECODER = _byte_decoder()


def quote(text: str) -> str:
    """A token's text as a double-quoted, escaped string: `" the"`, `"\\n"`."""
    return json.dumps(text, ensure_ascii=False)


def token_label(decoded: str, piece: str | None) -> str:
    """The label of one token from its decoded text and its vocabulary string (`piece`).
    A token that is part of a multi-byte character decodes to U+FFFD; it is shown by its bytes
    instead (`"\\xe2\\x80"`), so that the three pieces of ’ stay apart. A special token
    ([BEGIN]) decodes to nothing and is shown by its name, unquoted."""
    if piece is not None and decoded == "":
        return piece
    if piece is not None and "\ufffd" in decoded:
        raw = [BYTE_DECODER.get(c) for c in piece]
        if all(b is not None for b in raw):
            return '"' + "".join(_escape_byte(b) for b in raw) + '"'
    return quote(decoded)


def _escape_byte(b: int) -> str:
    if 0x20 <= b < 0x7F and chr(b) not in '"\\':
        return chr(b)
    return f"\\x{b:02x}"


def token_labels(ids: Iterable[int], tokenizer) -> dict[int, str]:
    """id → label for each id, through a `tokenizers.Tokenizer` (or anything with `decode(list)`
    and `id_to_token(int)`)."""
    return {int(i): token_label(tokenizer.decode([int(i)], skip_special_tokens=False),
                                tokenizer.id_to_token(int(i)))
            for i in ids}


def parts_of(positions: pd.DataFrame) -> list[str]:
    """The parts whose losses the frame holds, in report order (q, k, v, all, then others)."""
    parts = [c[len("loss_"):] for c in positions.columns
             if c.startswith("loss_") and c not in REFERENCE_LOSSES]
    return sorted(parts, key=lambda p: (PART_ORDER.index(p) if p in PART_ORDER else len(PART_ORDER), p))


def class_groups(positions: pd.DataFrame) -> list[str]:
    """The resamplers whose class the frame holds (columns class_<resampler>), by name."""
    return sorted(c[len(CLASS_PREFIX):] for c in positions.columns if c.startswith(CLASS_PREFIX))


def breakdown(positions: pd.DataFrame, labels: Mapping[int, str],
              classes: Mapping[str, Iterable] | None = None) -> pd.DataFrame:
    """The breakdown table (module docstring) of one scrub.

    positions: one row per scored position, with `token`, loss_original, loss_baseline and
        loss_<part> per part; class_<resampler> columns, if any, are grouped as classes.
    labels: token id → label (token_labels); every token of the frame needs one.
    classes: resampler name → per-position class names (aligned with the frame's rows), for a
        frame that does not carry its class_ columns; they are used in addition to those.
    """
    frame = positions.copy()
    for name, values in (classes or {}).items():
        values = np.asarray(list(values))
        if len(values) != len(frame):
            raise ValueError(f"classes[{name!r}] has {len(values)} entries for {len(frame)} positions")
        frame[CLASS_PREFIX + name] = values
    missing = sorted(set(frame["token"].unique().tolist()) - set(labels))
    if missing:
        raise ValueError(f"no label for tokens {missing[:10]}")
    parts = parts_of(frame)
    if not parts:
        raise ValueError("the frame has no loss_<part> column")
    groups = [(TOKEN_GROUP, "token")] + [(name, CLASS_PREFIX + name) for name in class_groups(frame)]

    tables = []
    for part in parts:
        unrecovered = frame[f"loss_{part}"].astype(np.float64) - frame["loss_original"].astype(np.float64)
        total = float(unrecovered.sum())
        work = pd.DataFrame({"loss_original": frame["loss_original"].astype(np.float64),
                             "loss_baseline": frame["loss_baseline"].astype(np.float64),
                             "loss_scrubbed": frame[f"loss_{part}"].astype(np.float64),
                             "unrecovered": unrecovered})
        for group, column in groups:
            key = frame[column]
            stats = work.groupby(key.to_numpy(), sort=True).agg(
                count=("unrecovered", "size"), loss_original=("loss_original", "mean"),
                loss_baseline=("loss_baseline", "mean"), loss_scrubbed=("loss_scrubbed", "mean"),
                unrecovered=("unrecovered", "sum"))
            if group == TOKEN_GROUP:
                stats["token"] = stats.index.astype(np.int64)
                stats["label"] = [labels[int(t)] for t in stats.index]
            else:
                stats["token"] = -1
                stats["label"] = stats.index.astype(str)
            stats["part"] = part
            stats["group"] = group
            stats["unrecovered_share"] = stats["unrecovered"] / total if total != 0 else np.nan
            stats = stats.sort_values(["unrecovered", "label"], ascending=[False, True], kind="stable")
            tables.append(stats.reset_index(drop=True)[COLUMNS])
    out = pd.concat(tables, ignore_index=True)
    out["count"] = out["count"].astype(np.int64)
    out["token"] = out["token"].astype(np.int64)
    return out


def top(table: pd.DataFrame, part: str, n: int = 10, group: str = TOKEN_GROUP) -> pd.DataFrame:
    """The n rows of one part and group that lose most (the table is already sorted)."""
    return table[(table["part"] == part) & (table["group"] == group)].head(n)
