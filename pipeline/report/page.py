"""The review page, reports/index.html: one static file (inline style, no scripts, no external
assets) that a reviewer reads top to bottom.

(in page order; the page numbers its sections from 1)

0. the writeup's claims checked on every model (data/claims/claims.json, the claims stage): a
   verdict table, then each claim's comparisons with the numbers they used, linked to their files;
1. the headline table (every hypothesis × Q/K/V/All: the mean % recovered across the models of
   `seeds` and the spread reports/results.csv states: min–max across the models, or the
   one model's bootstrap interval) next to the writeup's numbers; with several models each
   model's value with its bootstrap interval; each model's losses; the bar chart;
2. each hypothesis written out from its params (which source every input takes), with the first
   model's roles;
3. every model's roles and head scores, and the head views of the first model;
4. the per-token breakdown of each scrub of the first model (top rows, link to the CSV);
5. the mask sweep of the first model, and every model's sweep values side by side;
6. the search of every model: its frontier, and where each hypothesis stands against it, in words;
7. the training curves and last evaluation of every model.

"The first model" is the first of `seeds` (seed0 by default): the page names its files.

Every number taken from a file is a `<span class="n" data-src=FILE data-key=KEY>`: FILE is the
repository-relative path it came from, KEY the path inside it, `/`-separated since JSON keys
such as head names hold dots (JSON: keys and list indices; CSV: `ROW/COLUMN`, ROW the 0-based
data row; params.yaml: keys and indices), and
`data-scale` a factor applied before display (100 for shares shown in %). tests/test_report.py
reads every such span back from its file. Figures are linked relative to the page; an input that
does not exist yet (a stage not run) gives a "not produced" notice, never a crash, so the page
can be reviewed while parts of the pipeline are missing.

This module reads the inputs and shapes them into plain dicts and lists, one per section; the
Jinja templates of pipeline/report/templates/ write the HTML (base.html the layout, sections/*.html
one per section, macros.html the sourced number `num` and the other small pieces, page.css the
style, inlined), with autoescaping on.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from pipeline import paths
from pipeline.config.heads import head_name
from pipeline.config.hypothesis import INPUTS, MASKS, Masked, Whole, parse_hypothesis
from pipeline.paths import ModelPaths
from pipeline.report.results import PART_LABELS as PARTS
from pipeline.report.results import spread_name, spread_statement

TOP_ROWS = 8  # rows of each part's per-token table on the page; the CSV has all of them
PARAMS = "params.yaml"
MINUS = "\u2212"


# ---------------------------------------------------------------------------------------------
# What the templates call

def shown(value, decimals: int, scale: float = 1) -> str:
    """A number as the page shows it: `decimals` places (-1: an integer) after `scale`, a true
    minus sign; n/a for a missing value (None, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{float(value) * scale:.{decimals}f}" if decimals >= 0 else str(int(value))
    return text.replace("-", MINUS)


def rel(target: str) -> str:
    """A repository-relative path, relative to the page."""
    return Path(os.path.relpath(target, paths.REPORTS)).as_posix()


def symbol(source: str) -> str:
    """A source's letter in the formulas: c (clean), o (other), d (drawn by a resampler)."""
    return {"clean": "c", "other": "o"}.get(source, "d")


ENV = Environment(loader=PackageLoader("pipeline.report", "templates"), autoescape=True, trim_blocks=True,
                  lstrip_blocks=True, undefined=StrictUndefined)
ENV.filters.update(shown=shown, rel=rel, symbol=symbol)


# ---------------------------------------------------------------------------------------------
# Reading

def figure(root: Path, target: str) -> dict:
    """A figure the page links: the template shows it, or a notice where it is not there."""
    return {"target": target, "exists": (root / target).exists()}


def read_json(root: Path, target: str):
    path = root / target
    return json.loads(path.read_text()) if path.exists() else None


def read_csv(root: Path, target: str, **kwargs) -> pd.DataFrame | None:
    # Only an empty field is missing: token labels such as "NA" or "null" stay text.
    path = root / target
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# 0. Claims

def claims(root: Path) -> dict:
    """data/claims/claims.json for the claims section: the summary rows, each claim's comparisons
    model by model, each number with the file and key it was read from (the inputs' own files)."""
    src = paths.CLAIMS_JSON
    doc = read_json(root, src)
    out = {"src": src, "found": doc is not None, "md": figure(root, paths.CLAIMS_MD)}
    if doc is None:
        return out
    blocks = []
    for i, c in enumerate(doc["claims"]):
        at = f"claims/{i}"
        rows = []
        for j, comparison in enumerate(c["comparisons"]):
            for k, model in enumerate(doc["models"]):
                r = comparison["models"][model]
                rows.append({"first": k == 0, "text_key": f"{at}/comparisons/{j}/text", "text": comparison["text"],
                             "model": model, "at": f"{at}/comparisons/{j}/models/{model}", "r": r,
                             "inputs": [dict(x, at=f"{at}/comparisons/{j}/models/{model}/inputs/{n}")
                                        for n, x in enumerate(r["inputs"])]})
        blocks.append({"i": i, "at": at, "claim": c, "rows": rows,
                       "reasons": [{"model": m, "at": f"{at}/reasons/{m}", "items": items}
                                   for m, items in c["reasons"].items()]})
    out.update(models=doc["models"], doc=doc, blocks=blocks)
    return out


# ---------------------------------------------------------------------------------------------
# 1. Headline

def headline(root: Path, keys: list[str], models: list[ModelPaths], metrics: dict[ModelPaths, dict[str, dict]],
             report_cfg: dict) -> dict:
    src = paths.RESULTS_CSV
    frame = read_csv(root, src, dtype={"hypothesis": str, "part": str, "spread": str})
    out = {"src": src, "found": frame is not None}
    if frame is None:
        return out
    reference = report_cfg.get("reference") or {}
    row_of = {(r.hypothesis, r.part): i for i, r in frame.iterrows()}
    rows = []
    for key in keys:
        cells = []
        for i, part in enumerate(PARTS.values()):
            if (key, part) not in row_of:
                cells.append(None)
                continue
            r = row_of[(key, part)]
            ref = reference.get(key)
            cells.append({"row": r, "recovered": frame.at[r, "recovered"], "spread_low": frame.at[r, "spread_low"],
                          "spread_high": frame.at[r, "spread_high"], "part_index": i,
                          "writeup": ref[i] if ref is not None and i < len(ref) else None})
        rows.append({"key": key, "name": metrics[models[0]][key].get("name", key), "cells": cells})
    spreads = set(frame["spread"])
    out.update(statement=spread_statement(models), parts=list(PARTS.values()), rows=rows, n_models=len(models),
               spread=frame.at[0, "spread"],
               stated=None if spreads == {spread_name(len(models))} else ", ".join(sorted(spreads)),
               each_model=each_model(keys, models, metrics) if len(models) > 1 else None,
               losses=losses(keys, models, metrics, report_cfg.get("reference_losses") or {}),
               figure=figure(root, paths.RECOVERED_FIGURE))
    return out


def each_model(keys: list[str], models: list[ModelPaths], metrics: dict[ModelPaths, dict[str, dict]]) -> dict:
    """Every model's % recovered with its bootstrap interval, from its own metrics.json."""
    rows = [{"key": key, "first": j == 0, "model": model.name, "src": model.scrub_metrics(key),
             "metrics": metrics[model][key]} for key in keys for j, model in enumerate(models)]
    return {"parts": list(PARTS.items()), "n_models": len(models), "rows": rows,
            "folders": [model.scrub for model in models]}


def losses(keys: list[str], models: list[ModelPaths], metrics: dict[ModelPaths, dict[str, dict]],
           ref_losses: dict) -> dict:
    """Each model's original and baseline loss (from its first hypothesis' metrics) beside the writeup's;
    the models whose hypotheses disagree on them."""
    disagree = []
    for model in models:
        first = metrics[model][keys[0]]
        if not all(abs(metrics[model][k]["original_loss"] - first["original_loss"]) < 1e-9
                   and abs(metrics[model][k]["baseline_loss"] - first["baseline_loss"]) < 1e-9 for k in keys):
            disagree.append(model.name)
    return {"models": [{"name": model.name, "src": model.scrub_metrics(keys[0]), "metrics": metrics[model][keys[0]]}
                       for model in models],
            "reference": {which: ref_losses.get(which) for which in ("original", "baseline")},
            "disagree": disagree}


# ---------------------------------------------------------------------------------------------
# 2. Hypotheses

def mask_name(offsets: tuple[int, ...]) -> str:
    for name, value in MASKS.items():
        if tuple(value) == tuple(offsets):
            return name
    return "[" + ", ".join(str(o) for o in offsets) + "]"


def offsets_words(offsets: tuple[int, ...]) -> str:
    names = {0: "current", 1: "previous"}
    return ", ".join(names.get(o, f"{o} back") for o in offsets)


def spec_data(spec) -> dict:
    """A head's spec (pipeline.config.hypothesis: Whole, Masked, Residual) for the templates."""
    if isinstance(spec, Whole):
        return {"kind": "whole", "source": spec.source}
    if isinstance(spec, Masked):
        return {"kind": "masked", "mask": mask_name(spec.offsets), "keys": offsets_words(spec.offsets),
                "pattern": spec.pattern, "values": spec.values, "outside": spec.outside}
    return {"kind": "residual", "identity": spec.identity, "rest": spec.rest}


def head_list(heads: list[str], all_heads: list[str]) -> str:
    if heads == all_heads:
        return "every head"
    index = [all_heads.index(h) for h in heads]
    if len(heads) > 2 and index == list(range(index[0], index[-1] + 1)):
        return f"{heads[0]} – {heads[-1]}"
    return ", ".join(heads)


def role_tags(heads: list[str], roles: dict) -> str:
    tags = []
    if roles.get("prev") in heads:
        tags.append("previous-token head")
    if set(heads) & set(roles.get("self") or []):
        tags.append("self-attending")
    return ", ".join(tags)


def formula(part: str, spec, groups: list[tuple[list[str], object]], all_heads: list[str]) -> dict:
    """R_part as the writeup writes it: x^source + a sum of head outputs, one term per group of
    heads that take the same spec (`over`: every head, one head, or some, listed in `heads`)."""
    terms = []
    for heads, head_spec in groups:
        over = "every" if heads == all_heads else "one" if len(heads) == 1 else "some"
        terms.append({"over": over, "heads": heads[0] if over == "one" else head_list(heads, all_heads),
                      "spec": spec_data(head_spec)})
    return {"part": part, "embedding": spec.embedding, "terms": terms}


RULE_WORDS = {"previous_token": "the previous token is", "current_token": "the current token is",
              "previous_token_piece_of": "the previous token is a piece of",
              "current_token_piece_of": "the current token is a piece of"}


def resampler_data(name: str, resampler) -> dict:
    return {"name": name, "seed": resampler.seed,
            "classes": [{"name": cname, "conditions": [{"words": RULE_WORDS[r], "tokens": [repr(t) for t in toks]}
                                                       for r, toks in rules.items()]}
                        for cname, rules in resampler.classes.items()]}


def hypothesis_table(key: str, raw: dict, first: ModelPaths, roles: dict | None, n_heads: int | None) -> dict:
    """Hypothesis `key` as a table of sources, its role entries resolved with the first model's roles."""
    hyp = parse_hypothesis(key, raw)
    parts = [p for p in INPUTS if p in hyp.inputs]
    out = {"key": key, "name": hyp.name, "resamplers": [resampler_data(n, r) for n, r in hyp.resamplers.items()],
           "parts": [(p, PARTS[p]) for p in parts], "embedding": [hyp.inputs[p].embedding for p in parts],
           "unresolved": None, "formulas": None, "notes": []}
    all_heads = [head_name(0, h) for h in range(n_heads or 0)]
    if roles is None or n_heads is None:
        # Without the heads stage's roles (or its scores, which give the number of heads of a
        # loaded model), a role entry cannot be tied to a head: show the YAML's entries themselves
        # rather than guess.
        out["unresolved"] = first.roles if roles is None else first.head_scores
        entries = list(dict.fromkeys(h for p in parts for h in hyp.inputs[p].heads))
        out["rows"] = [{"label": f"heads: {entry}", "tags": "",
                        "specs": [None if hyp.inputs[p].heads.get(entry) is None else
                                  spec_data(hyp.inputs[p].heads[entry]) for p in parts]} for entry in entries]
        return out
    # Heads that take the same source in every part share a row: most hypotheses then read
    # as two or three rows (the previous-token head, the self heads, every other head).
    specs = {h: tuple(hyp.inputs[p].for_head(h, roles) for p in parts) for h in all_heads}
    groups: dict[tuple, list[str]] = {}
    for h in all_heads:
        groups.setdefault(specs[h], []).append(h)
    out["rows"] = []
    for combo, heads in groups.items():
        if heads == all_heads:
            label, tags = f"every layer-0 head ({heads[0]} – {heads[-1]})", ""
        else:
            label = f"layer-0 head{'s' if len(heads) > 1 else ''} {head_list(heads, all_heads)}"
            tags = role_tags(heads, roles)
        out["rows"].append({"label": label, "tags": tags, "specs": [spec_data(s) for s in combo]})
    out["formulas"] = []
    for i, p in enumerate(parts):
        per_part: dict = {}
        for h in all_heads:
            per_part.setdefault(specs[h][i], []).append(h)
        out["formulas"].append(formula(p, hyp.inputs[p], [(hs, s) for s, hs in per_part.items()], all_heads))
    # A role entry with no head in this model changes nothing: say so, since otherwise the
    # reader sees a rewrite in the YAML that the numbers do not reflect.
    for role, what in (("prev", "previous-token head"), ("self", "self-attending heads")):
        named = [PARTS[p] for p in parts if role in hyp.inputs[p].heads]
        if named and not roles.get(role):
            out["notes"].append({"role": role, "parts": ", ".join(named), "what": what})
    return out


def layer0_heads(params: dict, scores: dict | None) -> int | None:
    """How many layer-0 heads the model has: a trained model's params say; a loaded model's
    (model=redwood, file) do not, and the heads stage's scores (one per head) do."""
    if scores and scores.get("previous_token_score"):
        return len(scores["previous_token_score"][0])
    n_heads = (params.get("model") or {}).get("n_heads")
    return int(n_heads) if n_heads is not None else None


def hypotheses(keys: list[str], params: dict, models: list[ModelPaths], roles: dict | None,
               scores: dict | None) -> dict:
    """`roles`, `scores`: the first model's (the tables name heads; another model's roles may differ)."""
    n_heads = layer0_heads(params, scores)
    first = models[0]
    return {"first": first.name, "roles_file": first.roles, "roles_found": roles is not None,
            "several": len(models) > 1,
            "tables": [hypothesis_table(k, params["hypotheses"][k], first, roles, n_heads) for k in keys]}


# ---------------------------------------------------------------------------------------------
# 3. Head views

# scores.json's one-number summaries shown beside each model's roles: key, column title, decimals
SUMMARY_SCORES = [("max_previous_token_score_layer0", "max previous-token score, layer 0", 3),
                  ("max_same_token_score_layer0", "max same-token score, layer 0", 3),
                  ("max_induction_score", "max induction score", 3),
                  ("repeat_loss_drop", "loss drop on repeated tokens (nats)", 2)]


def role_head(scores: dict | None, head: str, key: str, layer: int | None) -> dict:
    """A role head and its score `key` (of `layer`, or of layer 1's list) from scores.json, None
    without scores.json or that score."""
    index = int(head.split(".")[1])
    if scores is None or key not in scores:
        return {"head": head, "score": None}
    values = scores[key][layer] if layer is not None else scores[key]
    return {"head": head, "score": values[index],
            "key": f"{key}/{layer}/{index}" if layer is not None else f"{key}/{index}"}


def roles_table(root: Path, models: list[ModelPaths]) -> dict:
    """One row per model: its roles (roles.json), each role head's score and the summaries (scores.json)."""
    found = [(model, read_json(root, model.roles), read_json(root, model.head_scores)) for model in models]
    summaries = [(k, title, d) for k, title, d in SUMMARY_SCORES if any(s and k in s for _, _, s in found)]
    rows = []
    for model, roles, scores in found:
        if roles is None:
            continue
        prev = roles.get("prev")
        rows.append({"name": model.name, "roles": model.roles, "scores": model.head_scores,
                     "prev": role_head(scores, prev, "previous_token_score", 0) if prev else None,
                     "self": [role_head(scores, h, "same_token_score", 0) for h in roles.get("self") or []],
                     "induction": [role_head(scores, h, "induction_score", None) for h in roles.get("induction") or []],
                     "summaries": [{"value": scores[k], "key": k, "decimals": d} if scores and k in scores else None
                                   for k, _, d in summaries]})
    return {"summaries": [title for _, title, _ in summaries], "rows": rows,
            "absent": [{"name": model.name, "file": model.roles} for model, roles, _ in found if roles is None],
            # links only to files there (a missing roles.json has its notice)
            "files": [{"name": model.name, "targets": [target for target, data in
                                                       ((model.roles, roles), (model.head_scores, scores))
                                                       if data is not None]}
                      for model, roles, scores in found if roles is not None or scores is not None]}


EXAMPLE_COLUMNS = [("to_earlier_copy", "earlier copy (s)"), ("to_token_after_copy", "token after the copy (s+1)"),
                   ("to_previous_token", "previous token (t−1)"), ("to_itself", "itself (t)"), ("to_begin", "BEGIN")]


def example_view(example: dict) -> dict:
    """The example sequence of views.json: its rule, where it repeats, and the role heads'
    attention at its query (with the columns the first head has)."""
    attention = example.get("attention_at_query")
    if not (isinstance(attention, dict) and attention):
        attention = None
    columns = [(c, title) for c, title in EXAMPLE_COLUMNS if c in next(iter(attention.values()))] if attention else []
    return {"example": example, "rule": str(example.get("rule", "not stated")), "attention": attention,
            "columns": columns}


def head_views(root: Path, models: list[ModelPaths]) -> dict:
    first = models[0]
    views = read_json(root, first.head_views)
    return {"roles_table": roles_table(root, models), "first": first.name, "views": first.head_views,
            "views_found": views is not None, "figures": first.head_figures,
            "others": [m.head_figures for m in models[1:]],
            "example": example_view(views["example"]) if views is not None and isinstance(views.get("example"), dict)
            else None,
            "scores_figure": figure(root, first.head_scores_figure),
            "example_figure": figure(root, first.head_example_figure),
            "relative_figure": figure(root, first.relative_figure)}


# ---------------------------------------------------------------------------------------------
# 4. Per-token breakdown

# breakdown.csv's columns on the page: column, title, decimals, scale
BREAKDOWN_COLUMNS = [("count", "count", -1, 1), ("loss_original", "original", 3, 1),
                     ("loss_scrubbed", "scrubbed", 3, 1), ("loss_baseline", "baseline", 3, 1),
                     ("unrecovered_share", "share %", 1, 100)]


def breakdown_table(frame: pd.DataFrame, part: str) -> dict | None:
    rows = frame[frame["part"] == part]
    if rows.empty:
        return None
    groups = []
    for group, sub in rows.groupby("group", sort=False):
        groups.append({"group": group, "total": len(sub),
                       "rows": [{"index": index, "label": row["label"],
                                 "cells": {column: row[column] for column, _, _, _ in BREAKDOWN_COLUMNS}}
                                for index, row in sub.head(TOP_ROWS).iterrows()]})
    return {"part": PARTS[part], "groups": groups}


def breakdowns(root: Path, keys: list[str], first: ModelPaths) -> dict:
    blocks = []
    for key in keys:
        src = first.scrub_breakdown(key)
        frame = read_csv(root, src, dtype={"label": str, "group": str, "part": str})
        tables = [] if frame is None else [t for t in (breakdown_table(frame, p) for p in PARTS) if t is not None]
        blocks.append({"key": key, "src": src, "found": frame is not None, "tables": tables})
    return {"first": first.name, "folder": first.scrub, "top_rows": TOP_ROWS, "columns": BREAKDOWN_COLUMNS,
            "blocks": blocks}


# ---------------------------------------------------------------------------------------------
# 5. Sweep

SWEEP_DTYPES = {"offsets": str, "part": str, "kind": str}


def sweep(root: Path, models: list[ModelPaths]) -> dict:
    first = models[0]
    src = first.sweep_csv
    frame = read_csv(root, src, dtype=SWEEP_DTYPES)
    out = {"first": first.name, "figure": figure(root, first.sweep_figure), "src": src, "found": frame is not None}
    if frame is None:
        return out
    # One table per kind of mask (cumulative, single), offsets down and parts across: the reader
    # compares Q with K at each mask, and reads down a column to see where recovery stops growing.
    tables = []
    for kind, sub in frame.groupby("kind", sort=False):
        parts = list(dict.fromkeys(sub["part"]))
        rows = []
        for offsets, at in sub.groupby("offsets", sort=False):
            cells = []
            for p in parts:
                hit = at[at["part"] == p]
                if hit.empty:
                    cells.append(None)
                    continue
                r = hit.iloc[0]
                cells.append({"i": hit.index[0], "recovered": r["recovered"], "ci_low": r["ci_low"],
                              "ci_high": r["ci_high"]})
            rows.append({"offsets": offsets, "i": at.index[0], "cells": cells})
        tables.append({"kind": kind, "i": sub.index[0], "parts": [PARTS.get(p, p) for p in parts], "rows": rows})
    out.update(tables=tables, across=sweep_across(root, models, frame) if len(models) > 1 else None)
    return out


def sweep_across(root: Path, models: list[ModelPaths], first_frame: pd.DataFrame) -> dict:
    """Every model's % recovered at each mask of the first model's sweep, side by side (no intervals:
    each model's file has them)."""
    frames = {model: read_csv(root, model.sweep_csv, dtype=SWEEP_DTYPES) for model in models}
    present = [m for m in models if frames[m] is not None]
    index = {m: {(r.part, r.kind, r.offsets): i for i, r in frames[m].iterrows()} for m in present}
    parts = list(dict.fromkeys(first_frame["part"]))
    rows = []
    for (kind, offsets), at in first_frame.groupby(["kind", "offsets"], sort=False):
        cells = []
        for p in parts:
            for m in present:
                i = index[m].get((p, kind, offsets))
                cells.append(None if i is None else {"value": frames[m].at[i, "recovered"], "src": m.sweep_csv, "i": i})
        rows.append({"kind": kind, "offsets": offsets, "i": at.index[0], "cells": cells})
    return {"src": models[0].sweep_csv, "parts": [PARTS.get(p, p) for p in parts], "rows": rows,
            "present": [{"name": m.name, "csv": m.sweep_csv} for m in present],
            "absent": [{"name": m.name, "csv": m.sweep_csv} for m in models if frames[m] is None]}


# ---------------------------------------------------------------------------------------------
# 6. The search

def standing_words(row: pd.Series) -> str:
    """Where one hypothesis stands against the frontier, in words, from placed.csv's row."""
    head = f"{row['name']} ({row['heldout']:.1f}% at complexity {row['complexity']})"
    at = f"{row['frontier_heldout']:.1f}% ({row['frontier_ci_low']:.1f}–{row['frontier_ci_high']:.1f})"
    gap = row["frontier_heldout"] - row["heldout"]
    if row["standing"] == "below":
        words = (f"is below the frontier by {gap:.1f} points: the search found {at} at complexity "
                 f"{row['frontier_complexity']}")
    elif row["standing"] == "above":
        words = (f"is above the frontier by {-gap:.1f} points: the search's best at no more complexity is {at} "
                 f"(complexity {row['frontier_complexity']}), so the greedy search missed it")
    else:
        words = (f"is on the frontier: its interval overlaps the search's {at} at complexity "
                 f"{row['frontier_complexity']}")
    match = row["simplest_match"]
    if not pd.isna(match) and int(match) < row["complexity"]:
        words += f"; the search matches its recovery from complexity {int(match)}"
    return f"{head} {words}."


def search(root: Path, models: list[ModelPaths], params: dict) -> dict:
    cfg = params.get("search") or {}
    out = {"objective": PARTS.get(cfg.get("objective", "all"), cfg.get("objective", "all")), "models": []}
    for m in models:
        frontier = read_csv(root, m.search_frontier)
        placed = read_csv(root, m.search_placed)
        summary = read_json(root, m.search_summary)
        entry = {"name": m.name, "figure": figure(root, m.search_figure), "frontier_src": m.search_frontier,
                 "placed_src": m.search_placed, "path_src": m.search_path, "summary_src": m.search_summary,
                 "summary": summary, "frontier": None, "placed": None}
        if frontier is not None:
            entry["frontier"] = [{"i": i, **row, "file": f"{m.search_hypotheses}/{row['hypothesis']}.yaml"}
                                 for i, row in frontier.iterrows()]
        if placed is not None:
            entry["placed"] = [{"i": i, **row, "words": standing_words(row)} for i, row in placed.iterrows()
                               if row["hypothesis"] != "baseline"]
        out["models"].append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# 7. Training

TRAINING_COLUMNS = [("step", -1), ("train_loss", 3), ("prev_token", 3), ("same_token", 3), ("induction", 3),
                    ("repeat_gain", 2)]


def training(root: Path, models: list[ModelPaths]) -> dict:
    logs = {model: read_json(root, model.train_log) for model in models}
    trained = [(m, log) for m, log in logs.items() if log]
    return {"sources": [{"name": m.name, "file": m.source,
                         "record": read_json(root, m.source)} for m in models],
            "figure": figure(root, paths.TRAINING_FIGURE) if any(logs.values()) else None,
            "several": len(models) > 1,
            "columns": [(c, d) for c, d in TRAINING_COLUMNS if any(c in log[-1] for _, log in trained)],
            "trained": [{"name": m.name, "file": m.train_log, "last": len(log) - 1, "row": log[-1]}
                        for m, log in trained],
            "logs": [{"name": m.name, "file": m.train_log, "missing": log is None, "empty": log is not None and not log}
                     for m, log in logs.items()]}


# ---------------------------------------------------------------------------------------------

def build(params: dict, metrics: dict[ModelPaths, dict[str, dict]], root: Path = Path(".")) -> str:
    """The page as a string. `metrics`: each model (in `seeds` order) → each hypothesis key →
    its metrics.json (the report stage has read and checked them, and written reports/results.csv,
    which the headline reads); everything else is read here from `root`, optional."""
    keys = list(params["hypotheses"])
    models = list(metrics)
    first = models[0]
    roles = read_json(root, first.roles)
    scores = read_json(root, first.head_scores)
    model = params.get("model", {})
    return ENV.get_template("base.html").render(
        keys=keys, params_file=PARAMS,
        claims=claims(root),
        run={"source": str(model.get("source", "?")), "dir": str(model.get("dir", "")),
             "models": [m.name for m in models]},
        headline=headline(root, keys, models, metrics, params.get("report") or {}),
        hypotheses=hypotheses(keys, params, models, roles, scores),
        heads=head_views(root, models),
        tokens=breakdowns(root, keys, first),
        sweep=sweep(root, models),
        search=search(root, models, params),
        training=training(root, models),
    )
