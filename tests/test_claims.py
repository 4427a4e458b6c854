"""The writeup's claims (pipeline/config/claims.py, pipeline/scrub/claims.py, the claims stage):
verdicts from intervals on synthetic numbers (holds, fails, inconclusive; a verdict that flips
when its threshold crosses the measured value), paired intervals from the scrubs' own bootstrap
draws, the reasons generated from the data, a bad claims file refused in one line, and the stage
on synthetic files."""
from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import TypeAdapter

from pipeline import paths
from pipeline.outputs import rounded
from pipeline.config import schema
from pipeline.config.claims import Claims, parse_quantity
from pipeline.errors import ConfigError
from pipeline.paths import ModelPaths
from pipeline.scrub.claims import (
    COMBINED,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    PAIRED,
    Measured,
    ModelData,
    combine,
    compared,
    evaluate,
    measure_scrubs,
    verdict,
)
from pipeline.scrub.stats import summarize
from tests.helpers import ROOT
from tests.helpers.project import scratch_project
from tests.helpers.shell import one_thread, sh
from tests.test_stats import make_losses, simulate

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def claims_of(raw: dict):
    return TypeAdapter(Claims).validate_python(raw)


def claim(*compare: dict, requires: list | None = None) -> dict:
    return {"says": "s", "quote": ["q"], "reading": "r", "requires": requires or [], "compare": list(compare)}


def point(value: float, low: float, high: float, name: str = "x", dist=None, sums=None) -> Measured:
    return Measured(value, low, high, f"data/scrub/seed0/{name}/metrics.json", "q/recovered", dist=dist, sums=sums)


# ---------------------------------------------------------------------------------------------
# The verdict of one interval, and of several

@pytest.mark.parametrize("low, high, above, below, expected", [
    (5.1, 9.0, 5, None, HOLDS),           # the whole interval above
    (1.0, 5.0, 5, None, FAILS),           # its top at the threshold: not above it
    (1.0, 4.9, 5, None, FAILS),
    (4.0, 6.0, 5, None, INCONCLUSIVE),    # reaches across
    (5.0, 6.0, 5, None, INCONCLUSIVE),    # its bottom at the threshold: not surely above
    (0.0, 0.0, 0, None, FAILS),           # identical scrubs: a difference of exactly 0 is no gain
    (-3.0, 2.9, None, 3, HOLDS),
    (3.0, 4.0, None, 3, FAILS),
    (2.0, 4.0, None, 3, INCONCLUSIVE),
])
def test_verdict_of_an_interval(low, high, above, below, expected):
    assert verdict(low, high, above, below) == expected


def test_combining_verdicts():
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, FAILS, HOLDS]) == FAILS
    assert combine([]) == INCONCLUSIVE  # nothing measured is nothing shown


def one_model(measured: dict, roles=None, name: str = "seed0") -> ModelData:
    return ModelData(name, measured, roles if roles is not None else {"prev": "0.0", "self": ["0.1"]},
                     f"data/heads/{name}/roles.json")


def test_evaluate_holds_fails_and_inconclusive_on_synthetic_numbers():
    claims = claims_of({
        "high": claim({"value": "a.q", "above": 50}),
        "gain": claim({"value": "a.q", "minus": "b.q", "above": 5}),
        "both": claim({"value": "a.q", "above": 50}, {"value": "b.q", "above": 50})})
    seed0 = one_model({"a.q": point(80, 75, 85), "b.q": point(48, 45, 51)})
    seed1 = one_model({"a.q": point(60, 55, 65), "b.q": point(40, 35, 45)}, name="seed1")
    doc = evaluate(claims, [seed0, seed1], 100, 0)
    by_key = {c["key"]: c for c in doc["claims"]}
    assert by_key["high"]["verdicts"] == {"seed0": HOLDS, "seed1": HOLDS} and by_key["high"]["verdict"] == HOLDS
    # no distributions: a difference takes the combined interval [75 − 51, 85 − 45] = [24, 40]
    gain = by_key["gain"]["comparisons"][0]["models"]["seed0"]
    assert (gain["value"], gain["ci_low"], gain["ci_high"], gain["method"]) == (32, 24, 40, COMBINED)
    # b.q on seed0 reaches across 50 (inconclusive), on seed1 lies below it (fails): the claim fails overall
    assert by_key["both"]["verdicts"] == {"seed0": INCONCLUSIVE, "seed1": FAILS}
    assert by_key["both"]["verdict"] == FAILS
    assert doc["counts"] == {HOLDS: 2, FAILS: 1, INCONCLUSIVE: 0}
    # reasons only where a claim does not hold, naming the number against the threshold
    assert "high" not in json.dumps(by_key["high"]["reasons"])
    assert by_key["both"]["reasons"]["seed1"][0]["text"] == "b.q = 40.0 (35.0 to 45.0): not > 50"
    assert "reaches across 50" in by_key["both"]["reasons"]["seed0"][0]["text"]
    # claims.json is JSON
    assert json.loads(json.dumps(doc)) == doc


def paired_scrubs(n_seq: int = 400, gain: float = 0.0015, seed: int = 0):
    """Per-sequence loss sums of two scrubs of the same sequences, as real scrubs are: each
    position's loss shared by both up to a little noise of its own, `b` recovering `gain` nats
    (3 points of % recovered) more than `a` on average: far less than the spread between sequences."""
    rng = np.random.default_rng(seed)
    base = simulate(rng, n_seq, {"original": 0.16, "baseline": 0.21, "a": 0.20 - 0.6 * 0.05})
    a = base["a"]
    b = make_losses(np.repeat(np.arange(n_seq), a.count.astype(int)),
                    a.loss - gain + rng.normal(0.0, 0.01, size=len(a.loss)), n_seq)
    losses = {**base, "b": b}
    sums = {name: l.loss_sum for name, l in losses.items()}
    return losses, sums, losses["original"].count


def test_a_single_scrubs_interval_is_its_metrics_json_interval():
    """The claims resample with the scrub stage's machinery and seed: a quantity's interval is
    exactly the one summarize wrote into metrics.json."""
    losses, sums, count = paired_scrubs()
    metrics = summarize({"original": losses["original"], "baseline": losses["baseline"], "q": losses["a"]}, ["q"],
                        100, 300, seed=4)["q"]
    measured = measure_scrubs({"original": sums["original"], "baseline": sums["baseline"], "a.q": sums["a"]}, count,
                              300, 4, {"a.q": ("f", "q/recovered")})["a.q"]
    expected = (metrics["recovered"], metrics["ci_low"], metrics["ci_high"])
    assert (measured.value, measured.low, measured.high) == expected


def test_the_paired_interval_decides_where_combining_intervals_cannot():
    _, sums, count = paired_scrubs()
    m = measure_scrubs({"original": sums["original"], "baseline": sums["baseline"], "a.q": sums["a"], "b.q": sums["b"]},
                       count, 300, 0, {"a.q": ("fa", "q/recovered"), "b.q": ("fb", "q/recovered")})
    value, low, high, method = compared(m["b.q"], m["a.q"])
    assert method == PAIRED and value == pytest.approx(m["b.q"].value - m["a.q"].value)
    assert 0 < low < value < high  # a gain of about 3 points, surely above 0 ...
    combined = compared(Measured(m["b.q"].value, m["b.q"].low, m["b.q"].high, "", ""),
                        Measured(m["a.q"].value, m["a.q"].low, m["a.q"].high, "", ""))
    assert combined[3] == COMBINED and combined[1] < 0 < combined[2]  # ... which combined intervals cannot tell
    assert combined[2] - combined[1] > 3 * (high - low)


@pytest.mark.parametrize("where, expected", [("below", HOLDS), ("at", INCONCLUSIVE), ("beyond", FAILS)])
def test_a_verdict_flips_when_its_threshold_crosses_the_measured_value(where, expected):
    """The issue's acceptance test: one measured gain, the threshold moved from below its interval,
    onto its value, to above its interval."""
    _, sums, count = paired_scrubs()
    m = measure_scrubs({"original": sums["original"], "baseline": sums["baseline"], "a.q": sums["a"], "b.q": sums["b"]},
                       count, 300, 0, {"a.q": ("fa", "q/recovered"), "b.q": ("fb", "q/recovered")})
    value, low, high, _ = compared(m["b.q"], m["a.q"])
    threshold = {"below": low - 0.1, "at": value, "beyond": high + 0.1}[where]
    doc = evaluate(claims_of({"gain": claim({"value": "b.q", "minus": "a.q", "above": threshold})}),
                   [one_model(m)], 300, 0)
    assert doc["claims"][0]["verdict"] == expected


def test_reasons_come_from_the_data():
    same = np.arange(5.0)
    claims = claims_of({
        "self": claim({"value": "r4.q", "minus": "r2.q", "above": 5}, requires=["self_heads"]),
        "ceiling": claim({"value": "r2.k", "minus": "r1.k", "above": 5}),
        "sweep": claim({"value": "sweep.k{0,1,2}", "minus": "sweep.k{0,1}", "above": 3})})
    measured = {"r4.q": point(67.5, 64.0, 71.0, "r4", np.zeros(10), same),
                "r2.q": point(67.5, 64.0, 71.0, "r2", np.zeros(10), same.copy()),
                "r2.k": point(96.7, 95.0, 98.0, "r2", np.full(10, 96.7), same + 1),
                "r1.k": point(97.2, 95.4, 98.8, "r1", np.full(10, 97.2), same + 2),
                "sweep.k{0,1,2}": point(96.7, 95.0, 98.2), "sweep.k{0,1}": point(96.7, 95.1, 98.2)}
    doc = evaluate(claims, [one_model(measured, roles={"prev": "0.0", "self": []}, name="seed1")], 10, 0)
    reasons = {c["key"]: [r["text"] for r in c["reasons"]["seed1"]] for c in doc["claims"]}
    files = {c["key"]: [r["file"] for r in c["reasons"]["seed1"]] for c in doc["claims"]}
    assert reasons["self"][0] == "seed1 has no self-attending layer-0 head (roles.json: self = [])"
    assert files["self"][0] == "data/heads/seed1/roles.json"
    assert any("r4.q and r2.q are the same scrub on this model" in r for r in reasons["self"])
    assert any(r.startswith("r1.k already recovers 97.2%, 2.8 points short of 100") for r in reasons["ceiling"])
    assert any("combined interval" in r for r in reasons["sweep"])
    # a model that has the role: no such reason
    doc = evaluate(claims, [one_model(measured, roles={"prev": "0.0", "self": ["0.4"]})], 10, 0)
    assert not any("self-attending" in r["text"] for r in doc["claims"][0]["reasons"]["seed0"])


# ---------------------------------------------------------------------------------------------
# The claims file: refused in one line naming the key

def edited_claims(key: str, comparison: dict | None = None, **fields) -> dict:
    params = copy.deepcopy(PARAMS)
    params["claims"] = {key: claim(comparison or {"value": "naive.q", "above": 1}, **fields)}
    return params


@pytest.mark.parametrize("comparison, param, fragment", [
    ({"value": "naive.q", "abov": 1}, "claims.c.compare[0].abov", "unknown key"),
    ({"value": "naive.q"}, "claims.c.compare[0].above", "exactly one of above, below"),
    ({"value": "naive.q", "above": 1, "below": 2}, "claims.c.compare[0].above", "exactly one of above, below"),
    ({"value": "naive.x", "above": 1}, "claims.c.compare[0].value", "the part is one of q, k, v, all"),
    ({"value": "naive", "above": 1}, "claims.c.compare[0].value", "HYPOTHESIS.PART"),
    ({"value": "sweep.v{1}", "above": 1}, "claims.c.compare[0].value", "the sweep scrubs q and k only"),
    ({"value": "sweep.k{0,2}", "above": 1}, "claims.c.compare[0].value", "{0,…,m} and single offsets"),
    ({"value": "sweep.k{9}", "above": 1}, "claims.c.compare[0].value", "sweep.max_offset=3"),
    ({"value": "naive.q", "minus": "nosuch.q", "above": 1}, "claims.c.compare[0].minus", "no hypothesis 'nosuch'"),
    ({"value": "naive.q", "above": "5"}, "claims.c.compare[0].above", "a number"),
])
def test_a_bad_comparison_is_one_line_naming_its_key(comparison, param, fragment):
    with pytest.raises(ConfigError) as err:
        schema.check(edited_claims("c", comparison))
    assert err.value.param == param and fragment in err.value.message and "\n" not in str(err.value)


def test_other_bad_claims_are_named():
    with pytest.raises(ConfigError, match=r"^claims\.c\.requires\[0\]: must be one of self_heads, prev_head"):
        schema.check(edited_claims("c", requires=["induction_heads"]))
    with pytest.raises(ConfigError, match=r"^claims\.my claim: .*letters, digits and _ only"):
        schema.check(edited_claims("my claim"))
    params = edited_claims("c")
    params["claims"]["c"]["compare"] = []
    with pytest.raises(ConfigError, match=r"^claims\.c\.compare: must have at least 1 items"):
        schema.check(params)
    params = edited_claims("c")
    params["scrub"]["parts"] = ["k", "v"]
    with pytest.raises(ConfigError, match=r"^claims\.c\.compare\[0\]\.value: 'naive.q': part q is not scrubbed"):
        schema.check(params)


def test_quantities_parse():
    assert parse_quantity("refined1.all") == ("refined1.all", "scrub", "all", "refined1", ())
    assert parse_quantity("sweep.k{0,1}") == ("sweep.k{0,1}", "sweep", "k", None, (0, 1))
    assert parse_quantity("naive_weak-k.v").hypothesis == "naive_weak-k"


def test_the_committed_claims_quote_and_name_what_the_pipeline_measures():
    """Every committed claim quotes something and names a hypothesis of conf/ (or the sweep)."""
    claims = schema.check(PARAMS).claims
    assert len(claims) >= 6
    for key, c in claims.items():
        assert c.quote and all(len(q) > 20 for q in c.quote), key
        for comparison in c.compare:
            for q in comparison.quantities:
                assert q.kind == "sweep" or q.hypothesis in PARAMS["hypotheses"], (key, q)


@pytest.mark.e2e
def test_a_misspelt_key_in_the_claims_file_stops_the_composition(tmp_path):
    project = scratch_project(tmp_path)
    path = project / "conf/claims/default.yaml"
    path.write_text(path.read_text().replace("{value: naive.v, above: 87}", "{value: naive.v, abov: 87}"))
    result = sh(sys.executable, "-m", "pipeline.config", cwd=project, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: claims.naive_v.compare[0].abov: unknown key; claims.naive_v.compare[0] has value, minus, above, below"]
    assert not (project / "params.yaml").exists()


# ---------------------------------------------------------------------------------------------
# The stage, on synthetic files

STAGE_CLAIMS = {
    "gain": claim({"value": "b.q", "minus": "a.q", "above": 0}),
    "sweep": claim({"value": "sweep.k{1}", "above": 50}, {"value": "sweep.k{1}", "minus": "sweep.k{0}", "above": 5}),
    "needs": claim({"value": "b.q", "minus": "a.q", "above": 0}, requires=["self_heads"]),
}


def write_model(root, model: ModelPaths, sums: dict, count: np.ndarray, samples: int, self_heads: list) -> None:
    """A model's files as the scrub, sweep and heads stages write them: for hypotheses a and b,
    losses.parquet and the metrics.json that summarize makes of them."""
    n = len(count)
    for key in ("a", "b"):
        folder = root / model.scrub / key
        folder.mkdir(parents=True)
        frame = pd.DataFrame({"seq_id": np.arange(n), "count": count, "loss_sum_original": sums["original"],
                              "loss_sum_baseline": sums["baseline"], "loss_sum_q": sums[key]})
        frame.to_parquet(folder / "losses.parquet", index=False)
        # metrics.json from the same sums by the scrub stage's own summary (original, baseline, q)
        from pipeline.scrub.engine import Losses

        empty = np.empty(0)
        losses = {name: Losses(empty, empty, empty, frame[f"loss_sum_{col}"].to_numpy(), count)
                  for name, col in (("original", "original"), ("baseline", "baseline"), ("q", "q"))}
        (folder / "metrics.json").write_text(json.dumps(summarize(losses, ["q"], 100, samples, 0)))
    (root / model.heads).mkdir(parents=True)
    (root / model.roles).write_text(json.dumps({"prev": "0.0", "self": self_heads, "induction": ["1.1"]}))
    sweep = pd.DataFrame({"part": ["k"] * 4, "kind": ["cumulative", "cumulative", "single", "single"],
                          "offsets": ["0", "0,1", "0", "1"], "recovered": [30.0, 95.0, 30.0, 93.0],
                          "ci_low": [27.0, 93.0, 27.0, 91.0], "ci_high": [33.0, 97.0, 33.0, 95.0],
                          "loss": [3.3, 3.0, 3.3, 3.0]})
    (root / model.sweep_csv).parent.mkdir(parents=True)
    sweep.to_csv(root / model.sweep_csv, index=False)


@pytest.fixture
def stage_root(tmp_path, monkeypatch):
    params = {"seeds": [0, 1], "model": PARAMS["model"], "claims": STAGE_CLAIMS,
              "scrub": {**PARAMS["scrub"], "bootstrap_samples": 300}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _, sums, count = paired_scrubs()
    for seed, self_heads in ((0, ["0.1"]), (1, [])):
        write_model(tmp_path, ModelPaths(PARAMS["model"]["dir"], seed), sums, count, 300, self_heads)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_stage_writes_verdicts_with_their_sources(stage_root):
    from pipeline.stages import claims as stage

    stage.main()
    doc = json.loads((stage_root / paths.CLAIMS_JSON).read_text())
    assert doc["models"] == ["seed0", "seed1"]
    by_key = {c["key"]: c for c in doc["claims"]}
    gain = by_key["gain"]["comparisons"][0]["models"]["seed0"]
    assert gain["method"] == PAIRED and gain["verdict"] == HOLDS and by_key["gain"]["verdict"] == HOLDS
    first = ModelPaths(PARAMS["model"]["dir"], 0)
    metrics = json.loads((stage_root / first.scrub_metrics("b")).read_text())["q"]
    used = gain["inputs"][0]
    # at the stated precision of every committed number (pipeline.outputs.rounded)
    assert (used["file"], used["key"], used["value"]) == (first.scrub_metrics("b"), "q/recovered",
                                                          rounded(metrics["recovered"]))
    sweep = by_key["sweep"]["comparisons"][1]["models"]["seed1"]
    assert sweep["method"] == COMBINED and (sweep["ci_low"], sweep["ci_high"]) == (91.0 - 33.0, 95.0 - 27.0)
    assert sweep["inputs"][0]["key"] == "3/recovered" and sweep["inputs"][1]["key"] == "0/recovered"
    # the same numbers on both models, but seed1 has no self-attending head: the claim needing one says so
    assert by_key["needs"]["verdicts"] == {"seed0": HOLDS, "seed1": HOLDS}
    md = (stage_root / paths.CLAIMS_MD).read_text()
    assert "| [gain](#gain): s | holds | holds | holds |" in md
    assert "[b.q = " in md and "(../data/scrub/seed0/b/metrics.json)" in md


def test_the_stage_refuses_losses_that_disagree_with_their_metrics(stage_root):
    from pipeline.stages import claims as stage

    model = ModelPaths(PARAMS["model"]["dir"], 1)
    path = stage_root / model.scrub_metrics("a")
    metrics = json.loads(path.read_text())
    metrics["q"]["recovered"] += 0.5  # a metrics.json of another run than its losses.parquet
    path.write_text(json.dumps(metrics))
    with pytest.raises(ConfigError, match=r"^data/scrub/seed1/a/metrics.json: q recovers .* rerun the scrub stage"):
        stage.main()
    assert not (stage_root / paths.CLAIMS_JSON).exists()


@pytest.mark.e2e
def test_the_stage_with_a_missing_input_is_one_line_and_writes_nothing(stage_root):
    """As DVC runs it: a scrub not run yet is one line naming the file, exit status 2."""
    (stage_root / ModelPaths(PARAMS["model"]["dir"], 1).scrub_losses("b")).unlink()
    result = sh(sys.executable, "-m", "pipeline.stages.claims", cwd=stage_root, check=False,
                env=one_thread(PYTHONPATH=str(ROOT)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "data/scrub/seed1/b/losses.parquet" in lines[0]
    assert not (stage_root / paths.CLAIMS_JSON).exists() and not (stage_root / paths.CLAIMS_MD).exists()
