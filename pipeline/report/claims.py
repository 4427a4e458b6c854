"""reports/claims.md: the claims stage's verdicts (data/claims/claims.json, pipeline/scrub/claims.py)
as a summary table, then each claim with the writeup's words, each comparison on each model with
the numbers it used (linked to their files) and, where it does not hold, why. The review page
shows the same from the same file (pipeline/report/page.py, templates/sections/claims.html)."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline import paths

VERDICT_MARK = {"holds": "holds", "fails": "**fails**", "inconclusive": "*inconclusive*"}


def number(x: float) -> str:
    return f"{x:.1f}".replace("-", "−")


def link(target: str, label: str) -> str:
    """A markdown link to a repository path, relative to reports/claims.md."""
    return f"[{label}]({Path(os.path.relpath(target, Path(paths.CLAIMS_MD).parent)).as_posix()})"


def markdown(doc: dict) -> str:
    models = doc["models"]
    source = (f"From `{paths.CLAIMS_JSON}` (the claims stage; the claims are `conf/claims/default.yaml`). "
              f"Intervals: {doc['level']:g}% bootstrap over sequences, {doc['bootstrap_samples']} samples, seed "
              f"{doc['seed']}.")
    lines = ["# The writeup's claims, checked on every model", "", source, ""]
    rules = doc["rules"]
    lines += [f"{rules['comparison']}. {rules['claim']}. {rules['overall']}. Intervals: {rules['intervals']}."]
    counts = doc["counts"]
    lines += ["", f"Overall: {counts['holds']} hold, {counts['fails']} fail, {counts['inconclusive']} inconclusive.",
              "", "| claim | " + " | ".join(models) + " | overall |",
              "|---|" + "---|" * (len(models) + 1)]
    for c in doc["claims"]:
        cells = [VERDICT_MARK[c["verdicts"][m]] for m in models]
        lines.append(f"| [{c['key']}](#{c['key']}): {c['says']} | " + " | ".join(cells)
                     + f" | {VERDICT_MARK[c['verdict']]} |")
    for c in doc["claims"]:
        lines += ["", f"## {c['key']}", "", f"{c['says']}. Overall: {VERDICT_MARK[c['verdict']]}.", ""]
        lines += [f"> {q}" + ("\n>" if i < len(c["quote"]) - 1 else "") for i, q in enumerate(c["quote"])]
        lines += ["", f"Thresholds: {c['reading']}"]
        if c["requires"]:
            lines += ["", "Requires: " + "; ".join(f"{r['name']} ({r['means']})" for r in c["requires"]) + "."]
        lines += ["", "| comparison | model | measured | 95% interval | method | verdict | numbers used |",
                  "|---|---|---|---|---|---|---|"]
        for comparison in c["comparisons"]:
            for m in models:
                r = comparison["models"][m]
                used = ", ".join(link(i["file"], f"{i['name']} = {number(i['value'])}") for i in r["inputs"])
                lines.append(f"| `{comparison['text']}` | {m} | {number(r['value'])} | {number(r['ci_low'])} to "
                             f"{number(r['ci_high'])} | {r['method']} | {VERDICT_MARK[r['verdict']]} | {used} |")
        for m, reasons in c["reasons"].items():
            lines += ["", f"Why not on {m} ({c['verdicts'][m]}):", ""]
            lines += [f"- {r['text']}" + (f" ({link(r['file'], 'file')})" if r["file"] else "") for r in reasons]
    return "\n".join(lines) + "\n"
