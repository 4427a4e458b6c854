"""The review page, reports/index.html: one static file (inline style, no scripts, no external
assets) that a reviewer reads top to bottom.

1. the headline table (every hypothesis × Q/K/V/All: the mean % recovered across the models of
   `seeds` and the spread reports/results.csv states: min–max across the models, or the
   one model's bootstrap interval) next to the writeup's numbers; with several models each
   model's value with its bootstrap interval; each model's losses; the bar chart;
2. each hypothesis written out from its params (which source every input takes), with the first
   model's roles;
3. every model's roles and head scores, and the head views of the first model;
4. the per-token breakdown of each scrub of the first model (top rows, link to the CSV);
5. the mask sweep of the first model, and every model's sweep values side by side;
6. the training curves and last evaluation of every model.

"The first model" is the first of `seeds` (seed0 by default): the page names its files.

Every number taken from a file is a `<span class="n" data-src=FILE data-key=KEY>`: FILE is the
repository-relative path it came from, KEY the path inside it, `/`-separated since JSON keys
such as head names hold dots (JSON: keys and list indices; CSV: `ROW/COLUMN`, ROW the 0-based
data row; params.yaml: keys and indices), and
`data-scale` a factor applied before display (100 for shares shown in %). tests/test_report.py
reads every such span back from its file. Figures are linked relative to the page; an input that
does not exist yet (a stage not run) gives a "not produced" notice, never a crash, so the page
can be reviewed while parts of the pipeline are missing.
"""
from __future__ import annotations

import json
import math
import os
from html import escape
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.config.heads import head_name
from pipeline.config.hypothesis import INPUTS, MASKS, Masked, Whole, parse_hypothesis
from pipeline.paths import ModelPaths

PARTS = {"q": "Q", "k": "K", "v": "V", "all": "All"}
TOP_ROWS = 8  # rows of each part's per-token table on the page; the CSV has all of them
PARAMS = "params.yaml"
MINUS = "\u2212"
BOOTSTRAP = "bootstrap 95% interval"

SECTIONS = [("headline", "Headline: % loss recovered"), ("hypotheses", "The hypotheses, written out"),
            ("heads", "Head views"), ("tokens", "Where each scrub loses: per-token breakdown"),
            ("sweep", "Which positions matter: the mask sweep"), ("training", "Training curves")]

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;max-width:1180px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
h3{font-size:15px;margin:18px 0 6px}h4{font-size:13px;margin:8px 0 4px}
nav ol{columns:2;margin:4px 0 0}p.note{color:#555;font-size:13px;margin:4px 0}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d6d6d6;padding:3px 7px;vertical-align:top;text-align:left}
th{background:#f3f3f3}td.r{text-align:right;white-space:nowrap}
.n{font-variant-numeric:tabular-nums}.ci{color:#666;font-size:12px}.ref{color:#8a4b00;font-size:12px}
.f{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#234}
.missing{background:#fff4e5;border:1px solid #f0c36d;padding:4px 8px;display:table}
table.spec{width:100%;table-layout:fixed}table.spec th:first-child{width:19%}
tr.formula td{font-family:"Times New Roman",serif;font-size:15px;background:#fafafa}
figure{margin:8px 0}figure img{max-width:100%;max-height:760px;border:1px solid #e2e2e2}
h2 a.up{font-size:12px;font-weight:normal;margin-left:8px}nav .sub{font-size:12px}figcaption{color:#555;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:4px 20px}
.grid table{width:100%}code{font-size:12px}
"""


# ---------------------------------------------------------------------------------------------
# Small builders

def num(value, decimals: int, src: str, key: str, scale: float = 1) -> str:
    """A number from a file, traceable to it (see the module docstring)."""
    attrs = f' data-src="{escape(src)}" data-key="{escape(key)}"' + (f' data-scale="{scale:g}"' if scale != 1 else "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f'<span class="n"{attrs}>n/a</span>'
    shown = f"{float(value) * scale:.{decimals}f}" if decimals >= 0 else str(int(value))
    return f'<span class="n"{attrs}>{shown.replace("-", MINUS)}</span>'


def text(value, src: str, key: str) -> str:
    """A string from a file (a token label, a list of offsets), traceable like a number."""
    return f'<span class="n" data-src="{escape(src)}" data-key="{escape(key)}" data-kind="text">{escape(str(value))}</span>'


def missing(what: str, producer: str) -> str:
    return f'<p class="missing">not produced: <code>{escape(what)}</code> ({escape(producer)})</p>'


def link(target: str, label: str | None = None) -> str:
    """An <a> to a repository-relative path, relative to the page."""
    return f'<a href="{escape(rel(target))}">{escape(label or target)}</a>'


def rel(target: str) -> str:
    return Path(os.path.relpath(target, paths.REPORTS)).as_posix()


def figure(root: Path, target: str, caption: str, producer: str) -> str:
    if not (root / target).exists():
        return missing(target, producer)
    return (f'<figure><img src="{escape(rel(target))}" alt="{escape(caption)}">'
            f"<figcaption>{caption} ({link(target)})</figcaption></figure>")


def read_json(root: Path, target: str):
    path = root / target
    return json.loads(path.read_text()) if path.exists() else None


def read_csv(root: Path, target: str, **kwargs) -> pd.DataFrame | None:
    # Only an empty field is missing: token labels such as "NA" or "null" stay text.
    path = root / target
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# 1. Headline

def spread_name(n_models: int) -> str:
    """What the headline's spread (results.csv spread_low..spread_high) is, for `n_models` models."""
    return f"min–max across {n_models} models" if n_models >= 2 else BOOTSTRAP


def spread_statement(models: list[ModelPaths]) -> str:
    """The one sentence every headline table (results.md, this page) carries: which spread it shows."""
    names = ", ".join(m.name for m in models)
    if len(models) >= 2:
        return (f"Each cell: the mean % loss recovered across the {len(models)} models ({names}: one training "
                f"recipe, different seeds); in parentheses the min–max across these models, the spread that "
                f"training alone gives. Each model's own bootstrap 95% interval over sequences is in its table.")
    return (f"Each cell: % loss recovered of the one model ({names}); in parentheses its bootstrap 95% interval "
            f"over sequences, which covers the sampling of sequences only, not the training of the model.")


def headline(root: Path, keys: list[str], models: list[ModelPaths], metrics: dict[ModelPaths, dict[str, dict]],
             report_cfg: dict) -> str:
    reference = report_cfg.get("reference") or {}
    src = paths.RESULTS_CSV
    frame = read_csv(root, src, dtype={"hypothesis": str, "part": str, "spread": str})
    if frame is None:
        return missing(src, "the report stage writes it before this page")
    row_of = {(r.hypothesis, r.part): i for i, r in frame.iterrows()}
    rows = []
    for key in keys:
        name = metrics[models[0]][key].get("name", key)
        cells = [f'<th>{escape(key)}' + (f'<br><span class="ci">{escape(name)}</span>' if name != key else "") + "</th>"]
        for i, part in enumerate(PARTS.values()):
            if (key, part) not in row_of:
                cells.append('<td class="r">–</td>')
                continue
            r = row_of[(key, part)]
            cell = (f'{num(frame.at[r, "recovered"], 1, src, f"{r}/recovered")} <span class="ci">('
                    f'{num(frame.at[r, "spread_low"], 1, src, f"{r}/spread_low")} – '
                    f'{num(frame.at[r, "spread_high"], 1, src, f"{r}/spread_high")})</span>')
            ref = reference.get(key)
            if ref is not None and i < len(ref) and ref[i] is not None:
                cell += f'<br><span class="ref">writeup {num(ref[i], 0, PARAMS, f"report/reference/{key}/{i}")}</span>'
            cells.append(f'<td class="r">{cell}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    spreads = set(frame["spread"])
    stated = (f'<p class="note">In parentheses: the {text(frame.at[0, "spread"], src, "0/spread")} '
              f'({link(src)}, column <code>spread</code>).</p>')
    if spreads != {spread_name(len(models))}:
        stated += (f'<p class="missing">{link(src)} states the spread {escape(", ".join(sorted(spreads)))}, '
                   f"not that of the {len(models)} models of <code>seeds</code>: rerun the report stage</p>")
    out = ["<p>% of the loss gap recovered, (baseline − scrubbed) / (baseline − original) × 100, on whitelisted "
           f"positions. {escape(spread_statement(models))}</p>",
           '<table class="data"><tr><th>hypothesis</th>' + "".join(f"<th>{p}</th>" for p in PARTS.values()) + "</tr>"
           + "".join(rows) + "</table>", stated]
    if len(models) == 1:
        out.append("<p class=\"note\">Two trainings of the same recipe differed by up to ten points (README, “How far "
                   "to trust a number”): <code>seeds</code> with several seeds reports that spread.</p>")
    else:
        out.append(each_model(keys, models, metrics))
    out.append(losses(keys, models, metrics, report_cfg.get("reference_losses") or {}))
    spread = "min–max across the models, dots each model" if len(models) >= 2 else "bootstrap intervals"
    out.append(figure(root, paths.RECOVERED_FIGURE, f"% recovered per hypothesis and part; whiskers: {spread}; "
                      "black ticks: the writeup's numbers", "the report stage writes it"))
    return "".join(out)


def each_model(keys: list[str], models: list[ModelPaths], metrics: dict[ModelPaths, dict[str, dict]]) -> str:
    """Every model's % recovered with its bootstrap interval, from its own metrics.json."""
    rows = ['<tr><th>hypothesis</th><th>model</th>' + "".join(f"<th>{p}</th>" for p in PARTS.values()) + "</tr>"]
    for key in keys:
        for j, model in enumerate(models):
            m, src = metrics[model][key], model.scrub_metrics(key)
            cells = [f'<th rowspan="{len(models)}">{escape(key)}</th>' if j == 0 else "", f"<th>{escape(model.name)}</th>"]
            for part in PARTS:
                if part not in m:
                    cells.append('<td class="r">–</td>')
                    continue
                cells.append(f'<td class="r">{num(m[part]["recovered"], 1, src, f"{part}/recovered")} <span class="ci">('
                             f'{num(m[part]["ci_low"], 1, src, f"{part}/ci_low")} – '
                             f'{num(m[part]["ci_high"], 1, src, f"{part}/ci_high")})</span></td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
    files = ", ".join(link(model.scrub, model.scrub + "/") for model in models)
    return ('<h3 id="each-model">Each model</h3><p>% loss recovered of each model, in parentheses its bootstrap 95% '
            f"interval over sequences; from <code>&lt;key&gt;/metrics.json</code> under {files}.</p>"
            f'<table class="data">{"".join(rows)}</table>')


def losses(keys: list[str], models: list[ModelPaths], metrics: dict[ModelPaths, dict[str, dict]], ref_losses: dict) -> str:
    """Each model's original and baseline loss (from its first hypothesis' metrics) beside the writeup's."""
    firsts = [(metrics[model][keys[0]], model.scrub_metrics(keys[0])) for model in models]
    header = "".join(f"<th>{escape(model.name)}</th>" for model in models)
    out = (f'<table class="data"><tr><th></th>{header}<th>writeup</th></tr>'
           '<tr><th>original loss (nats, whitelisted positions)</th>'
           + "".join(f'<td class="r">{num(m["original_loss"], 4, src, "original_loss")}</td>' for m, src in firsts)
           + f'<td class="r">{ref_num(ref_losses, "original")}</td></tr>'
           '<tr><th>baseline loss (induction heads on the partner)</th>'
           + "".join(f'<td class="r">{num(m["baseline_loss"], 4, src, "baseline_loss")}</td>' for m, src in firsts)
           + f'<td class="r">{ref_num(ref_losses, "baseline")}</td></tr>'
           '<tr><th>scored positions</th>'
           + "".join(f'<td class="r">{num(m["scored_positions"], -1, src, "scored_positions")} '
                     f'({num(m["scored_share"], 1, src, "scored_share", scale=100)}% of all)</td>' for m, src in firsts)
           + "<td></td></tr></table>")
    out += ("<p class=\"note\">The absolute losses are not comparable with the writeup's unless this run uses its model, "
            "tokenizer and text (<code>preset=redwood</code>): a different model and corpus give a different loss scale. "
            "% recovered is the comparable quantity.</p>")
    for model in models:
        first = metrics[model][keys[0]]
        if not all(abs(metrics[model][k]["original_loss"] - first["original_loss"]) < 1e-9
                   and abs(metrics[model][k]["baseline_loss"] - first["baseline_loss"]) < 1e-9 for k in keys):
            out += (f'<p class="missing">the hypotheses\' metrics of model {escape(model.name)} disagree on the original '
                    "or baseline loss: they were not computed on the same data</p>")
    return out


def ref_num(ref_losses: dict, which: str) -> str:
    value = ref_losses.get(which)
    return "–" if value is None else num(value, 3, PARAMS, f"report/reference_losses/{which}")


# ---------------------------------------------------------------------------------------------
# 2. Hypotheses

def symbol(source: str) -> str:
    return {"clean": "c", "other": "o"}.get(source, "d")


def words(source: str) -> str:
    if source == "clean":
        return "clean (c)"
    if source == "other":
        return "other (o)"
    return f"drawn by {escape(source)} class (d)"


def mask_name(offsets: tuple[int, ...]) -> str:
    for name, value in MASKS.items():
        if tuple(value) == tuple(offsets):
            return name
    return "[" + ", ".join(str(o) for o in offsets) + "]"


def offsets_words(offsets: tuple[int, ...]) -> str:
    names = {0: "current", 1: "previous"}
    return ", ".join(names.get(o, f"{o} back") for o in offsets)


def spec_words(spec) -> str:
    if isinstance(spec, Whole):
        return f"whole head: {words(spec.source)}"
    if isinstance(spec, Masked):
        return (f"split at <b>{escape(mask_name(spec.offsets))}</b> (keys: {offsets_words(spec.offsets)}): "
                f"pattern {words(spec.pattern)}, values {words(spec.values)}; elsewhere all {words(spec.outside)}")
    return f"residual rewrite: identity part {words(spec.identity)}, the rest {words(spec.rest)}"


def spec_formula(spec, j: str = "j") -> str:
    """The writeup-style name of a head's output under `spec` (docs/hypotheses.md notation)."""
    if isinstance(spec, Whole):
        return f"out<sub>{j}</sub><sup>{symbol(spec.source)}</sup>"
    if isinstance(spec, Masked):
        a, b, s = symbol(spec.pattern), symbol(spec.values), symbol(spec.outside)
        name = escape(mask_name(spec.offsets))
        upper = f"split({name})" if (a, b, s) == ("o", "c", "o") else f"{name}:({a},{b})|{s}"
        return f"out<sub>{j}</sub><sup>{upper}</sup>"
    i, r = symbol(spec.identity), symbol(spec.rest)
    return f"I<sub>{j}</sub><sup>{i}</sup> + (out<sub>{j}</sub><sup>{r}</sup> − I<sub>{j}</sub><sup>{r}</sup>)"


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
    return f' <span class="ci">({", ".join(tags)})</span>' if tags else ""


def formula(part: str, spec, groups: list[tuple[list[str], object]], all_heads: list[str]) -> str:
    """R_part as the writeup writes it: x^source + a sum of head outputs, one term per group of
    heads that take the same spec."""
    terms = [f"x<sup>{symbol(spec.embedding)}</sup>"]
    for heads, head_spec in groups:
        if heads == all_heads:
            terms.append("Σ<sub>j</sub> " + spec_formula(head_spec))
        elif len(heads) == 1:
            terms.append(spec_formula(head_spec, heads[0]))
        else:
            terms.append(f"Σ<sub>j ∈ {{{head_list(heads, all_heads)}}}</sub> " + spec_formula(head_spec))
    return f"R<sub>{part}</sub> = " + " + ".join(terms)


def resampler_words(name: str, resampler) -> str:
    rule_words = {"previous_token": "the previous token is", "current_token": "the current token is",
                  "previous_token_piece_of": "the previous token is a piece of",
                  "current_token_piece_of": "the current token is a piece of"}
    classes = []
    for cname, rules in resampler.classes.items():
        conds = "; or ".join(f"{rule_words[r]} " + ", ".join(f"<code>{escape(repr(t))}</code>" for t in toks)
                             for r, toks in rules.items())
        classes.append(f"<b>{escape(cname)}</b> when {conds}")
    return (f"<p>Resampler <b>{escape(name)}</b> (d): at each query position t, a sequence drawn among those whose "
            f"position t is in the same class as the clean sequence's (seed {resampler.seed} + scrub.seed). Classes, first match "
            f"wins: " + "; ".join(classes) + "; otherwise <b>other</b>.</p>")


def hypothesis_table(key: str, raw: dict, first: ModelPaths, roles: dict | None, n_heads: int | None) -> str:
    """Hypothesis `key` as a table of sources, its role entries resolved with the first model's roles."""
    hyp = parse_hypothesis(key, raw)
    parts = [p for p in INPUTS if p in hyp.inputs]
    out = [f'<h3 id="hyp-{escape(key)}">{escape(key)}' + (f" — {escape(hyp.name)}" if hyp.name != key else "") + "</h3>"]
    yaml_file = f"conf/hypothesis/{key}.yaml"
    out.append(f'<p class="note">From <code>params.yaml</code> <code>hypotheses.{escape(key)}</code> (composed from <code>{yaml_file}</code>).</p>')
    for name, resampler in hyp.resamplers.items():
        out.append(resampler_words(name, resampler))
    header = "<tr><th>input</th>" + "".join(f"<th>R<sub>{p}</sub> (part {PARTS[p]})</th>" for p in parts) + "</tr>"
    rows = ["<tr><th>token embedding</th>" + "".join(
        f'<td>{words(hyp.inputs[p].embedding)}<br><span class="f">x<sup>{symbol(hyp.inputs[p].embedding)}</sup></span></td>'
        for p in parts) + "</tr>"]
    all_heads = [head_name(0, h) for h in range(n_heads or 0)]
    rows_note: list[str] = []
    if roles is None or n_heads is None:
        # Without the heads stage's roles (or its scores, which give the number of heads of a
        # loaded model), a role entry cannot be tied to a head: show the YAML's entries themselves
        # rather than guess.
        out.append(missing(first.roles if roles is None else first.head_scores,
                           "the heads stage writes it; the entries below are not resolved to heads"))
        entries = list(dict.fromkeys(h for p in parts for h in hyp.inputs[p].heads))
        for entry in entries:
            cells = []
            for p in parts:
                spec = hyp.inputs[p].heads.get(entry)
                cells.append("<td>as <i>all</i></td>" if spec is None else
                             f'<td>{spec_words(spec)}<br><span class="f">{spec_formula(spec)}</span></td>')
            rows.append(f"<tr><th>heads: {escape(entry)}</th>" + "".join(cells) + "</tr>")
    else:
        # Heads that take the same source in every part share a row: most hypotheses then read
        # as two or three rows (the previous-token head, the self heads, every other head).
        specs = {h: tuple(hyp.inputs[p].for_head(h, roles) for p in parts) for h in all_heads}
        groups: dict[tuple, list[str]] = {}
        for h in all_heads:
            groups.setdefault(specs[h], []).append(h)
        for combo, heads in groups.items():
            if heads == all_heads:
                label = f"every layer-0 head ({heads[0]} – {heads[-1]})"
            else:
                label = f"layer-0 head{'s' if len(heads) > 1 else ''} {head_list(heads, all_heads)}" + role_tags(heads, roles)
            rows.append(f"<tr><th>{label}</th>" + "".join(
                f'<td>{spec_words(s)}<br><span class="f">{spec_formula(s)}</span></td>' for s in combo) + "</tr>")
        cells = []
        for i, p in enumerate(parts):
            per_part: dict = {}
            for h in all_heads:
                per_part.setdefault(specs[h][i], []).append(h)
            cells.append(f"<td>{formula(p, hyp.inputs[p], [(hs, s) for s, hs in per_part.items()], all_heads)}</td>")
        rows.append('<tr class="formula"><th>formula</th>' + "".join(cells) + "</tr>")
        # A role entry with no head in this model changes nothing: say so, since otherwise the
        # reader sees a rewrite in the YAML that the numbers do not reflect.
        for role, what in (("prev", "previous-token head"), ("self", "self-attending heads")):
            named = [PARTS[p] for p in parts if role in hyp.inputs[p].heads]
            if named and not roles.get(role):
                out_note = (f"<p class=\"note\">The entry <code>{role}</code> (part {', '.join(named)}) names the {what}; "
                            f"the first model has none ({link(first.roles)}), so it applies to no head here.</p>")
                rows_note.append(out_note)
    out.append('<table class="spec">' + header + "".join(rows) + "</table>" + "".join(rows_note))
    return "".join(out)


def layer0_heads(params: dict, scores: dict | None) -> int | None:
    """How many layer-0 heads the model has: a trained model's params say; a loaded model's
    (model=redwood, file) do not, and the heads stage's scores (one per head) do."""
    if scores and scores.get("previous_token_score"):
        return len(scores["previous_token_score"][0])
    n_heads = (params.get("model") or {}).get("n_heads")
    return int(n_heads) if n_heads is not None else None


def hypotheses(keys: list[str], params: dict, models: list[ModelPaths], roles: dict | None, scores: dict | None) -> str:
    """`roles`, `scores`: the first model's (the tables name heads; another model's roles may differ)."""
    n_heads = layer0_heads(params, scores)
    intro = ("<p>What each hypothesis feeds the induction heads' query, key and value inputs "
             "R<sub>q</sub>, R<sub>k</sub>, R<sub>v</sub> = token embedding + Σ layer-0 head outputs "
             "(docs/hypotheses.md). Sources: <b>c</b> the clean sequence (the writeup's emb), <b>o</b> its partner "
             "(emb2), <b>d</b> a sequence drawn per position by a resampler. A masked split takes, at the key "
             "positions its mask names (offsets from the query: cur = 0, prev = 1, last3 = 0, 1, 2), the "
             "attention pattern and the values from the sources given, and everything outside the mask from one "
             "source; split(M) is the writeup's usual M:(o,c)|o. Part All scrubs the three inputs at once.</p>")
    first = models[0]
    intro += (f'<p class="note">Role entries (<code>prev</code>, <code>self</code>) are resolved to heads with the first '
              f"model's roles, {escape(first.name)} ("
              + (link(first.roles) if roles is not None else f"<code>{escape(first.roles)}</code>") + ")"
              + ("; every other model resolves them with its own (section 3)" if len(models) > 1 else "") + ".</p>")
    return intro + "".join(hypothesis_table(k, params["hypotheses"][k], first, roles, n_heads) for k in keys)


# ---------------------------------------------------------------------------------------------
# 3. Head views

# scores.json's one-number summaries shown beside each model's roles: key, column title, decimals
SUMMARY_SCORES = [("max_previous_token_score_layer0", "max previous-token score, layer 0", 3),
                  ("max_same_token_score_layer0", "max same-token score, layer 0", 3),
                  ("max_induction_score", "max induction score", 3),
                  ("repeat_loss_drop", "loss drop on repeated tokens (nats)", 2)]


def roles_table(root: Path, models: list[ModelPaths]) -> str:
    """One row per model: its roles (roles.json), each role head's score and the summaries (scores.json)."""
    found = [(model, read_json(root, model.roles), read_json(root, model.head_scores)) for model in models]
    summaries = [(k, title, d) for k, title, d in SUMMARY_SCORES if any(s and k in s for _, _, s in found)]
    rows = ["<tr><th>model</th><th>previous-token head (prev)</th><th>self-attending heads (self)</th>"
            "<th>induction heads (their Q, K, V are scrubbed)</th>" + "".join(f"<th>{escape(t)}</th>" for _, t, _ in summaries)
            + "</tr>"]
    notes = []
    for model, roles, scores in found:
        if roles is None:
            notes.append(missing(model.roles, f"the heads stage of {model.name} writes it"))
            continue

        def score(key: str, layer: int | None, head: str) -> str:
            index = int(head.split(".")[1])
            if scores is None or key not in scores:
                return ""
            values = scores[key][layer] if layer is not None else scores[key]
            key_path = f"{key}/{layer}/{index}" if layer is not None else f"{key}/{index}"
            return f" ({num(values[index], 3, model.head_scores, key_path)})"
        prev = roles.get("prev")
        selfs = roles.get("self") or []
        induction = roles.get("induction") or []
        cells = [text(prev, model.roles, "prev") + score("previous_token_score", 0, prev) if prev else "none",
                 ", ".join(text(h, model.roles, f"self/{i}") + score("same_token_score", 0, h) for i, h in enumerate(selfs))
                 or "none",
                 ", ".join(text(h, model.roles, f"induction/{i}") + score("induction_score", None, h)
                           for i, h in enumerate(induction))]
        cells += [num(scores[k], d, model.head_scores, k) if scores and k in scores else "–" for k, _, d in summaries]
        rows.append(f"<tr><th>{escape(model.name)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    # links only to files there (a missing roles.json has its notice above)
    files = "; ".join(f"{escape(model.name)}: " + ", ".join(link(target) for target, data in
                                                          ((model.roles, roles), (model.head_scores, scores)) if data is not None)
                      for model, roles, scores in found if roles is not None or scores is not None)
    table = f'<table class="data">{"".join(rows)}</table>' if len(rows) > 1 else ""
    return (f"<p>The heads each model's hypotheses act on: its roles and, in parentheses, each role head's "
            f"previous-token, same-token or induction score.</p>{table}{''.join(notes)}"
            + (f'<p class="note">Roles and scores: {files}.</p>' if files else ""))


def head_views(root: Path, models: list[ModelPaths]) -> str:
    first = models[0]
    out = [roles_table(root, models)]
    others = " (the other models' views are in their own folders under " + ", ".join(
        f"<code>{escape(m.head_figures)}/</code>" for m in models[1:]) + ")" if len(models) > 1 else ""
    views = read_json(root, first.head_views)
    source = link(first.head_views) if views is not None else f"<code>{escape(first.head_views)}</code>"
    out.append(f'<h3 id="views-{escape(first.name)}">Views of the first model, {escape(first.name)}</h3>'
               f'<p class="note">From {source} and the figures under '
               f"<code>{escape(first.head_figures)}/</code>{others}.</p>")
    producer = f"the heads stage of {first.name} writes it"
    out.append(figure(root, first.head_scores_figure, "Previous-token, same-token and induction score of every head, roles marked", producer))
    if views is None:
        out.append(missing(first.head_views, f"{producer}: the rule that picked the example sequence"))
    elif isinstance(views.get("example"), dict):
        out.append(example_view(views["example"], first.head_views))
    out.append(figure(root, first.head_example_figure, "The role heads' attention on one held-out sequence with a repeated token", producer))
    out.append(figure(root, first.relative_figure, "Each layer-0 head's mean attention by relative position (query − key)", producer))
    return "".join(out)


EXAMPLE_COLUMNS = [("to_earlier_copy", "earlier copy (s)"), ("to_token_after_copy", "token after the copy (s+1)"),
                   ("to_previous_token", "previous token (t−1)"), ("to_itself", "itself (t)"), ("to_begin", "BEGIN")]


def example_view(example: dict, src: str) -> str:
    """The example sequence's rule, where it repeats, and the role heads' attention at its query
    (`src`: the views.json it comes from)."""
    parts = ["<p><b>Example sequence</b>"]
    if "seq_id" in example:
        parts.append(f" {num(example['seq_id'], -1, src, 'example/seq_id')}")
    if "query" in example and "earlier" in example:
        parts.append(f": the token at query position {num(example['query'], -1, src, 'example/query')}"
                     + (f" (<code>{text(example['token_text'], src, 'example/token_text')}</code>)" if "token_text" in example else "")
                     + f" occurred before at position {num(example['earlier'], -1, src, 'example/earlier')}"
                     + (f", followed by <code>{text(example['next_token_text'], src, 'example/next_token_text')}</code> both times"
                        if "next_token_text" in example else ""))
    parts.append(f". Picked by this rule: {escape(str(example.get('rule', 'not stated')))}")
    if "candidates" in example:
        parts.append(f" ({num(example['candidates'], -1, src, 'example/candidates')} candidates)")
    out = ["".join(parts) + ".</p>"]
    attention = example.get("attention_at_query")
    if isinstance(attention, dict) and attention:
        first = next(iter(attention.values()))
        columns = [(c, title) for c, title in EXAMPLE_COLUMNS if c in first]
        rows = ["<tr><th>head</th><th>role</th>" + "".join(f"<th>{escape(t)}</th>" for _, t in columns) + "</tr>"]
        for head, values in attention.items():
            rows.append(f"<tr><th>{escape(head)}</th><td>{text(values.get('role', ''), src, f'example/attention_at_query/{head}/role')}</td>"
                        + "".join(f'<td class="r">{num(values[c], 3, src, f"example/attention_at_query/{head}/{c}")}</td>'
                                  for c, _ in columns) + "</tr>")
        out.append("<p>Attention of each role head at the query position t, to:</p>"
                   f'<table class="data">{"".join(rows)}</table>')
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# 4. Per-token breakdown

BREAKDOWN_COLUMNS = [("count", "count", -1, 1), ("loss_original", "original", 3, 1),
                     ("loss_scrubbed", "scrubbed", 3, 1), ("loss_baseline", "baseline", 3, 1),
                     ("unrecovered_share", "share %", 1, 100)]


def breakdown_table(frame: pd.DataFrame, src: str, part: str) -> str:
    rows = frame[frame["part"] == part]
    if rows.empty:
        return ""
    head = ('<tr><th rowspan="2">token / class</th><th rowspan="2">count</th><th colspan="3">mean loss (nats)</th>'
            '<th rowspan="2">share of unre&shy;covered %</th></tr><tr>'
            + "".join(f"<th>{escape(title)}</th>" for column, title, _, _ in BREAKDOWN_COLUMNS if column.startswith("loss"))
            + "</tr>")
    body = []
    for group, sub in rows.groupby("group", sort=False):
        shown = sub.head(TOP_ROWS)
        what = "tokens" if group == "token" else f"classes of {group}"
        more = f", top {len(shown)} of {len(sub)}" if len(sub) > len(shown) else ""
        body.append(f'<tr><th colspan="{len(BREAKDOWN_COLUMNS) + 1}">{escape(what)}{more}</th></tr>')
        for index, row in shown.iterrows():
            cells = [f"<td><code>{text(row['label'], src, f'{index}/label')}</code></td>"]
            for column, _, decimals, scale in BREAKDOWN_COLUMNS:
                cells.append(f'<td class="r">{num(row[column], decimals, src, f"{index}/{column}", scale)}</td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div><h4>part {PARTS[part]}</h4><table class=\"data\">{head}{''.join(body)}</table></div>"


def breakdowns(root: Path, keys: list[str], first: ModelPaths) -> str:
    out = [f"<p>Of the first model, {escape(first.name)} (files under <code>{escape(first.scrub)}/</code>): per scored "
           "position, grouped by its input token (the whitelist scores positions by their input "
           "token) and by a resampler's classes: mean loss of the original model, the scrub and the baseline, and the "
           "group's share of the loss the hypothesis fails to recover (the sum over the group of scrubbed − original, "
           "over the part's total). Sorted by that share; a negative share is a group where the scrub beats the "
           f"original. The top {TOP_ROWS} rows per group; the CSV has every row.</p>"]
    for key in keys:
        src = first.scrub_breakdown(key)
        out.append(f'<h3 id="tokens-{escape(key)}">{escape(key)}</h3>')
        frame = read_csv(root, src, dtype={"label": str, "group": str, "part": str})
        if frame is None:
            out.append(missing(src, f"the scrub stage of {key} on {first.name} writes it"))
            continue
        out.append(f"<p class=\"note\">Every row: {link(src)}</p>")
        out.append('<div class="grid">' + "".join(breakdown_table(frame, src, p) for p in PARTS) + "</div>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# 5. Sweep

SWEEP_DTYPES = {"offsets": str, "part": str, "kind": str}


def sweep(root: Path, models: list[ModelPaths]) -> str:
    first = models[0]
    out = [f"<p>Of the first model, {escape(first.name)}.</p>",
           figure(root, first.sweep_figure, "% recovered of refined 2's Q and K scrubs against the mask: cumulative "
                  "masks {0}, {0,1}, … and single offsets, bootstrap intervals", f"the sweep stage of {first.name} writes it")]
    src = first.sweep_csv
    frame = read_csv(root, src, dtype=SWEEP_DTYPES)
    if frame is None:
        out.append(missing(src, f"the sweep stage of {first.name} writes it"))
        return "".join(out)
    # One table per kind of mask (cumulative, single), offsets down and parts across: the reader
    # compares Q with K at each mask, and reads down a column to see where recovery stops growing.
    tables = []
    for kind, sub in frame.groupby("kind", sort=False):
        parts = list(dict.fromkeys(sub["part"]))
        rows = ["<tr><th>offsets in the mask</th>" + "".join(f'<th>part {escape(PARTS.get(p, p))}: % recovered</th>' for p in parts) + "</tr>"]
        for offsets, at in sub.groupby("offsets", sort=False):
            cells = [f"<td>{text(offsets, src, f'{at.index[0]}/offsets')}</td>"]
            for p in parts:
                hit = at[at["part"] == p]
                if hit.empty:
                    cells.append('<td class="r">–</td>')
                    continue
                i, r = hit.index[0], hit.iloc[0]
                cells.append(f'<td class="r">{num(r["recovered"], 1, src, f"{i}/recovered")} <span class="ci">('
                             f'{num(r["ci_low"], 1, src, f"{i}/ci_low")} – {num(r["ci_high"], 1, src, f"{i}/ci_high")})</span></td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        tables.append(f'<div><h4>{text(kind, src, f"{sub.index[0]}/kind")} masks</h4><table class="data">{"".join(rows)}</table></div>')
    out.append(f'<div class="grid">{"".join(tables)}</div><p class="note">Every row, with the scrubbed loss: {link(src)}</p>')
    if len(models) > 1:
        out.append(sweep_across(root, models, frame))
    return "".join(out)


def sweep_across(root: Path, models: list[ModelPaths], first_frame: pd.DataFrame) -> str:
    """Every model's % recovered at each mask of the first model's sweep, side by side (no intervals:
    each model's file has them)."""
    frames = {model: read_csv(root, model.sweep_csv, dtype=SWEEP_DTYPES) for model in models}
    present = [m for m in models if frames[m] is not None]
    notes = [missing(m.sweep_csv, f"the sweep stage of {m.name} writes it") for m in models if frames[m] is None]
    index = {m: {(r.part, r.kind, r.offsets): i for i, r in frames[m].iterrows()} for m in present}
    parts = list(dict.fromkeys(first_frame["part"]))
    rows = ['<tr><th rowspan="2">mask</th><th rowspan="2">offsets</th>'
            + "".join(f'<th colspan="{len(present)}">part {escape(PARTS.get(p, p))}</th>' for p in parts) + "</tr><tr>"
            + "".join(f"<th>{escape(m.name)}</th>" for _ in parts for m in present) + "</tr>"]
    first = models[0]
    for (kind, offsets), at in first_frame.groupby(["kind", "offsets"], sort=False):
        i0 = at.index[0]
        cells = [f"<td>{text(kind, first.sweep_csv, f'{i0}/kind')}</td><td>{text(offsets, first.sweep_csv, f'{i0}/offsets')}</td>"]
        for p in parts:
            for m in present:
                i = index[m].get((p, kind, offsets))
                cells.append('<td class="r">–</td>' if i is None else
                             f'<td class="r">{num(frames[m].at[i, "recovered"], 1, m.sweep_csv, f"{i}/recovered")}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    files = ", ".join(link(m.sweep_csv) for m in present)
    return (f'<h3 id="sweep-models">Every model</h3><p>% loss recovered at each mask, one column per model ({files}, '
            f'which also hold the intervals).</p><table class="data">{"".join(rows)}</table>' + "".join(notes))


# ---------------------------------------------------------------------------------------------
# 6. Training

TRAINING_COLUMNS = [("step", -1), ("train_loss", 3), ("prev_token", 3), ("same_token", 3), ("induction", 3),
                    ("repeat_gain", 2)]


def training(root: Path, models: list[ModelPaths]) -> str:
    logs = {model: read_json(root, model.train_log) for model in models}
    out = []
    if any(logs.values()):
        out.append(figure(root, paths.TRAINING_FIGURE, "Training loss, the previous-token and induction scores measured "
                          "during training, and the loss drop on repeated random tokens (repeat gain)"
                          + (", one line style per model" if len(models) > 1 else ""), "the report stage draws it"))
    trained = [(m, log) for m, log in logs.items() if log]
    if trained:
        columns = [(c, d) for c, d in TRAINING_COLUMNS if any(c in log[-1] for _, log in trained)]
        rows = ["<tr><th>model</th>" + "".join(f"<th>{c}</th>" for c, _ in columns) + "</tr>"]
        for m, log in trained:
            last = len(log) - 1
            rows.append(f"<tr><th>{escape(m.name)}</th>" + "".join(
                f'<td class="r">{num(log[last][c], d, m.train_log, f"{last}/{c}") if c in log[last] else "–"}</td>'
                for c, d in columns) + "</tr>")
        out.append(f'<p>At the last evaluation:</p><table class="data">{"".join(rows)}</table>'
                   f'<p class="note">{", ".join(link(m.train_log) for m, _ in trained)}</p>')
    for m, log in logs.items():
        if log is None:
            out.append(missing(m.train_log, f"the model stage of {m.name} writes it"))
        elif not log:
            out.append(f"<p>{link(m.train_log)} is empty: this model was loaded, not trained.</p>")
    return "".join(out)


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
    bodies = {
        "headline": headline(root, keys, models, metrics, params.get("report") or {}),
        "hypotheses": hypotheses(keys, params, models, roles, scores),
        "heads": head_views(root, models),
        "tokens": breakdowns(root, keys, first),
        "sweep": sweep(root, models),
        "training": training(root, models),
    }
    # Sections 2 and 4 hold one block per hypothesis: the contents link each of them.
    sub = {"hypotheses": "hyp", "tokens": "tokens"}
    toc = "".join(f'<li><a href="#{sid}">{escape(title)}</a>'
                  + ('<br><span class="sub">' + " · ".join(f'<a href="#{sub[sid]}-{escape(k)}">{escape(k)}</a>' for k in keys)
                     + "</span>" if sid in sub else "") + "</li>" for sid, title in SECTIONS)
    sections = "".join(f'<section id="{sid}"><h2>{i}. {escape(title)}<a class="up" href="#contents">contents ↑</a></h2>'
                       f"{bodies[sid]}</section>" for i, (sid, title) in enumerate(SECTIONS, 1))
    source = (f"model: {escape(str(model.get('source', '?')))} <code>{escape(str(model.get('dir', '')))}</code>, "
              f"{len(models)} model{'s' if len(models) > 1 else ''}: " + ", ".join(escape(m.name) for m in models))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Causal scrubbing of induction heads: report</title>"
            f"<style>{STYLE}</style></head><body>"
            "<h1>Causal scrubbing of induction heads: report</h1>"
            f"<p class=\"note\">Written by the report stage from this run's outputs ({source}); every number links "
            "back to its file. Redwood Research's writeup “Causal scrubbing: results on induction heads” (2022) "
            "gives the published numbers.</p>"
            f"<nav id=\"contents\"><b>Contents</b><ol>{toc}</ol></nav>{sections}</body></html>\n")
