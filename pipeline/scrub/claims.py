"""The writeup's claims (params' `claims`, pipeline/config/claims.py) checked on each model: a
verdict from intervals, and, where a claim does not hold, why, from the data. No file I/O: the
claims stage reads the files and hands the numbers here.

A *quantity* on one model (`Measured`) is a number with its 95% interval and where it was read:

- a scrub's % loss recovered (`naive.q`): its bootstrap distribution comes from the scrub stage's
  per-sequence loss sums, resampled by pipeline/scrub/bootstrap.py with the scrub stage's seed and
  sample count, the same draws for every hypothesis of the model (`measure_scrubs`), so a
  difference of two scrubs has a **paired** interval, and a single scrub's interval is exactly
  the one in its metrics.json;
- a row of the sweep (`sweep.k{1}`): only its interval is stored (sweep.csv), so a difference
  that involves one takes the **combined** interval [low_a − high_b, high_a − low_b]. This is
  conservative: for any dependence between the two estimates, sd(a − b) ≤ sd(a) + sd(b), so
  this interval is at least as wide as a normal-theory interval of the difference at the same
  level; it is wider than the paired one whenever the two estimates move together (they share
  the sequences), and so it leaves more comparisons inconclusive, never fewer.

A comparison `value − minus > t` (`above`) **holds** when the interval's low end is above t,
**fails** when its high end is at or below t, and is **inconclusive** when the interval reaches
across t; `below` mirrors it. A claim on a model: fails if any of its comparisons fails, holds if
all hold, else inconclusive. Across the models (`overall`), the same rule: a claim holds only if it
holds on every model, fails if it fails on any.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.config.claims import CONDITIONS, Claim, Comparison, Quantity
from pipeline.scrub.bootstrap import LEVEL, bootstrap_means, interval, recovered

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
PAIRED, COMBINED, SINGLE = "paired bootstrap", "combined intervals", "its own interval"
RULES = {
    "comparison": f"A comparison value − minus > threshold (above) holds when the {LEVEL:g}% interval's low end is "
                  f"above the threshold, fails when its high end is at or below it, and is inconclusive when the "
                  f"interval reaches across it; below mirrors it",
    "claim": "A claim on one model fails if any of its comparisons fails, holds if every one holds, and is "
             "inconclusive otherwise",
    "overall": "Overall, across the models, a claim fails if it fails on any model, holds only if it holds on every "
               "model, and is inconclusive otherwise",
    "intervals": "a scrub against a scrub takes the paired bootstrap over sequences (the scrub stages' own seed "
                 "and draws); a difference involving the sweep, which keeps no per-sequence losses, takes the "
                 "combined interval [low_a − high_b, high_a − low_b], which is conservative: at least as wide as "
                 "any interval of the difference at the same level under a normal approximation, whatever the "
                 "dependence between the two",
}


@dataclass(frozen=True)
class Measured:
    """One quantity on one model: value, its interval, where the value is on disk (`file`, and `key`
    inside it as the review page names it: `q/recovered`, `<row>/recovered`), and for a scrub its
    bootstrap distribution [sample] and per-sequence loss sums [seq] (to tell identical scrubs)."""
    value: float
    low: float
    high: float
    file: str
    key: str
    dist: np.ndarray | None = field(default=None, compare=False)
    sums: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ModelData:
    """What the claims read of one model: its quantities (quantity text → Measured) and its roles."""
    name: str
    measured: Mapping[str, Measured]
    roles: Mapping | None
    roles_file: str


def needed(claims: Mapping[str, Claim]) -> list[Quantity]:
    """Every quantity the claims name, once each, in order."""
    seen: dict[str, Quantity] = {}
    for claim in claims.values():
        for comparison in claim.compare:
            for q in comparison.quantities:
                seen.setdefault(q.text, q)
    return list(seen.values())


def measure_scrubs(sums: Mapping[str, np.ndarray], count: np.ndarray, samples: int, seed: int,
                   sources: Mapping[str, tuple[str, str]]) -> dict[str, Measured]:
    """Scrub quantities of one model from per-sequence loss sums [seq]: `sums` holds `original`,
    `baseline` and each quantity's scrubbed sums (by its text, `naive.q`); `count` the scored
    positions per sequence [seq]; `sources`: quantity → (file, key) of its published value. Every
    quantity is resampled with the same draws (pipeline/scrub/bootstrap.py)."""
    boot = bootstrap_means(sums, count, samples, seed)
    total = count.sum()
    original, baseline = sums["original"].sum() / total, sums["baseline"].sum() / total
    out = {}
    for name, file_key in sources.items():
        dist = recovered(boot["baseline"], boot["original"], boot[name])
        low, high = interval(dist)
        out[name] = Measured(float(recovered(baseline, original, sums[name].sum() / total)), low, high, *file_key,
                             dist=dist, sums=np.asarray(sums[name]))
    return out


def verdict(low: float, high: float, above: float | None = None, below: float | None = None) -> str:
    """An interval [low, high] against a threshold: strictly above `above`, or strictly below `below`."""
    if above is not None:
        return HOLDS if low > above else FAILS if high <= above else INCONCLUSIVE
    return HOLDS if high < below else FAILS if low >= below else INCONCLUSIVE


def combine(verdicts: Iterable[str]) -> str:
    """Fails if any fails, holds if all hold, else inconclusive (for no verdicts at all: inconclusive)."""
    verdicts = list(verdicts)
    if FAILS in verdicts:
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def compared(a: Measured, b: Measured | None) -> tuple[float, float, float, str]:
    """(value, low, high, method) of a − b (of a alone when b is None)."""
    if b is None:
        return a.value, a.low, a.high, SINGLE
    if a.dist is not None and b.dist is not None:
        low, high = interval(a.dist - b.dist)
        return a.value - b.value, low, high, PAIRED
    return a.value - b.value, a.low - b.high, a.high - b.low, COMBINED


def _f(x: float) -> str:
    return f"{x:.1f}".replace("-", "−")


def reason(text: str, file: str | None = None) -> dict:
    """One sentence of why, and the file it cites (None: the numbers of the row say it)."""
    return {"text": text, "file": file}


def why(comparison: Comparison, a: Measured, b: Measured | None, value: float, low: float, high: float,
        method: str, result: str) -> list[dict]:
    """Why a comparison does not hold on a model, from the numbers: what was measured against what
    was asked, then what in the data explains it (identical scrubs, a ceiling, a wide interval)."""
    if result == HOLDS:
        return []
    op = ">" if comparison.above is not None else "<"
    left = comparison.value if b is None else f"{comparison.value} − {comparison.minus}"
    measured = f"{left} = {_f(value)} ({_f(low)} to {_f(high)})"
    if result == FAILS:
        reasons = [reason(f"{measured}: not {op} {comparison.threshold:g}")]
    else:
        reasons = [reason(f"{measured} reaches across {comparison.threshold:g}: undecided at {LEVEL:g}%")]
    if b is not None and a.sums is not None and b.sums is not None and np.array_equal(a.sums, b.sums):
        reasons.append(reason(f"{comparison.value} and {comparison.minus} are the same scrub on this model: equal "
                              f"loss on every sequence, so the two hypotheses feed the induction heads the same "
                              f"inputs here", b.file))
    elif b is not None and comparison.above is not None and comparison.above > 0 and b.value + comparison.above > 100:
        reasons.append(reason(f"{comparison.minus} already recovers {_f(b.value)}%, {_f(100 - b.value)} points "
                              f"short of 100: less room than the {comparison.above:g} asked", b.file))
    if method == COMBINED and result == INCONCLUSIVE:
        reasons.append(reason("the sweep keeps no per-sequence losses, so this difference takes the combined "
                              "interval, wider than a paired one"))
    return reasons


def unmet(claim: Claim, model: ModelData) -> list[dict]:
    """The claim's requirements this model's roles do not meet, in words."""
    out = []
    roles = model.roles or {}
    for condition in claim.requires:
        if condition == "self_heads" and not roles.get("self"):
            out.append(reason(f"{model.name} has no self-attending layer-0 head (roles.json: self = "
                              f"{list(roles.get('self') or [])})", model.roles_file))
        elif condition == "prev_head" and not roles.get("prev"):
            out.append(reason(f"{model.name} has no previous-token head (roles.json: prev = {roles.get('prev')})",
                              model.roles_file))
    return out


def evaluate_comparison(comparison: Comparison, model: ModelData) -> dict:
    """One comparison on one model: the measured difference, its interval, method, verdict, the
    numbers it used (file and key of each) and, where it does not hold, why."""
    a = model.measured[comparison.value]
    b = model.measured[comparison.minus] if comparison.minus is not None else None
    value, low, high, method = compared(a, b)
    result = verdict(low, high, comparison.above, comparison.below)
    inputs = [{"name": name, "value": m.value, "ci_low": m.low, "ci_high": m.high, "file": m.file, "key": m.key}
              for name, m in ((comparison.value, a), (comparison.minus, b)) if m is not None]
    return {"value": value, "ci_low": low, "ci_high": high, "method": method, "verdict": result, "inputs": inputs,
            "reasons": why(comparison, a, b, value, low, high, method, result)}


def evaluate(claims: Mapping[str, Claim], models: list[ModelData], samples: int, seed: int) -> dict:
    """Every claim on every model: data/claims/claims.json's content."""
    out_claims = []
    for key, claim in claims.items():
        comparisons = []
        for comparison in claim.compare:
            per_model = {m.name: evaluate_comparison(comparison, m) for m in models}
            comparisons.append({
                "text": comparison.text, "value": comparison.value, "minus": comparison.minus,
                "above": comparison.above, "below": comparison.below, "threshold": comparison.threshold,
                "verdict": combine(r["verdict"] for r in per_model.values()), "models": per_model})
        verdicts = {m.name: combine(c["models"][m.name]["verdict"] for c in comparisons) for m in models}
        reasons = {}
        for m in models:
            if verdicts[m.name] != HOLDS:
                # the model's own conditions first (a missing role explains the numbers that follow)
                found = unmet(claim, m) + [r for c in comparisons for r in c["models"][m.name]["reasons"]]
                reasons[m.name] = list({r["text"]: r for r in found}.values())  # each sentence once
        out_claims.append({"key": key, "says": claim.says, "quote": list(claim.quote), "reading": claim.reading,
                           "requires": [{"name": c, "means": CONDITIONS[c]} for c in claim.requires],
                           "comparisons": comparisons, "verdicts": verdicts, "reasons": reasons,
                           "verdict": combine(verdicts.values())})
    counts = {v: sum(c["verdict"] == v for c in out_claims) for v in VERDICTS}
    return {"models": [m.name for m in models], "level": LEVEL, "bootstrap_samples": samples, "seed": seed,
            "rules": RULES, "counts": counts, "claims": out_claims}


def quantity_row(quantity: Quantity) -> tuple[str, str]:
    """The sweep row a sweep quantity reads: (part, offsets as sweep.csv writes them, `0,1`)."""
    return quantity.part, ",".join(map(str, quantity.offsets))

