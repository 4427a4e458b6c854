"""The report stage and its review page (reports/index.html, pipeline/report/page.py and its
templates), its tables (pipeline/report/results.py) and figures (pipeline/report/summary.py).

The stage runs in a scratch folder on the repository's composed params and fake inputs that
follow the file contracts (metrics.json, breakdown.csv, sweep.csv, views.json, train_log.json),
with one model (`seeds` [0]) and with two ([0, 1]): every number the page shows must read
back from the file it names at the shown rounding, every table cell's number must name a file,
every link must exist, the hypothesis tables must follow the params they are generated from, a
missing optional input gives a notice, not a crash, and the headline is the mean across models
with the spread it states (min–max across several models, one model's bootstrap interval)."""
from __future__ import annotations

import copy
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pydantic import TypeAdapter

from pipeline import paths
from pipeline.config.claims import Claims
from pipeline.errors import ConfigError
from pipeline.report.results import by_model_table, headline_table
from pipeline.report.claims import markdown as claims_markdown
from pipeline.report.summary import recovered_chart, recovered_figure, training_figure
from pipeline.scrub.claims import Measured, ModelData, evaluate, needed, quantity_row
from pipeline.stages import report
from tests.helpers import ROOT

PARTS = ("q", "k", "v", "all")
PART_LABELS = {"q": "Q", "k": "K", "v": "V", "all": "All"}


def with_seeds(params: dict, seeds: list[int]) -> dict:
    """`params` with the models `seeds` (top-level `seeds`, each under model.dir)."""
    params = copy.deepcopy(params)
    params["seeds"] = list(seeds)
    return params


PARAMS = with_seeds(yaml.safe_load((ROOT / "params.yaml").read_text()), [0])
PARAMS2 = with_seeds(PARAMS, [0, 1])
KEYS = list(PARAMS["hypotheses"])
FIRST, SECOND = paths.models(PARAMS2)


# ---------------------------------------------------------------------------------------------
# Fake inputs

def write(root: Path, target: str, content) -> None:
    path = root / target
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))


def fake_metrics(key: str, rng) -> dict:
    m = {"hypothesis": key, "name": PARAMS["hypotheses"][key].get("name", key), "original_loss": float(rng.uniform(3, 3.2)),
         "baseline_loss": 3.6024635, "scored_positions": 5742, "scored_share": 0.0155092}
    for part in PARTS:
        # Values near a rounding boundary (x.x5) and negatives: rounding and signs must survive.
        r = float(rng.uniform(-20, 100)) + 0.05
        m[part] = {"recovered": r, "ci_low": r - float(rng.uniform(1, 5)), "ci_high": r + float(rng.uniform(1, 5)),
                   "loss": float(rng.uniform(3.1, 3.6))}
    return m


LABELS = ['" the"', '","', '" 1990"', '"."', '" to"', '" of"', '"\\n"', '" a"', '" in"', '" and"', '" is"', '" he"']


def fake_breakdown(key: str, rng) -> pd.DataFrame:
    rows = []
    resamplers = list((PARAMS["hypotheses"][key].get("resample") or {}))
    for part in PARTS:
        groups = [("token", LABELS, list(range(10, 10 + len(LABELS))))]
        groups += [(name, ["atypical", "other"], [-1, -1]) for name in resamplers]
        for group, labels, tokens in groups:
            unrecovered = rng.normal(1, 3, len(labels))
            order = np.argsort(-unrecovered)
            for i in order:
                rows.append({"part": part, "group": group, "label": labels[i], "token": tokens[i],
                             "count": int(rng.integers(1, 500)), "loss_original": float(rng.uniform(0, 6)),
                             "loss_baseline": float(rng.uniform(0, 6)), "loss_scrubbed": float(rng.uniform(0, 6)),
                             "unrecovered": float(unrecovered[i]),
                             # the contract's NaN where a part's total is 0: one such part
                             "unrecovered_share": np.nan if (key, part) == ("baseline", "all")
                             else float(unrecovered[i] / unrecovered.sum())})
    return pd.DataFrame(rows)


def fake_sweep(rng) -> pd.DataFrame:
    rows = []
    for part in ("q", "k"):
        for kind in ("cumulative", "single"):
            for n in range(4):
                offsets = ",".join(map(str, range(n + 1))) if kind == "cumulative" else str(n)
                r = float(rng.uniform(0, 100))
                rows.append({"part": part, "kind": kind, "offsets": offsets, "recovered": r, "ci_low": r - 3,
                             "ci_high": r + 3, "loss": float(rng.uniform(3, 4))})
    return pd.DataFrame(rows)


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64  # the page only links figures; their content is not read


def optional_inputs(model: paths.ModelPaths) -> list[str]:
    """A model's inputs of the page besides its metrics: each gives a notice where missing."""
    return ([model.roles, model.head_scores, model.head_views, model.sweep_csv, model.sweep_figure, model.train_log,
             model.head_scores_figure, model.head_example_figure, model.relative_figure]
            + [model.scrub_breakdown(k) for k in KEYS])


def make_root(root: Path, params: dict = PARAMS, optional: bool = True) -> Path:
    write(root, "params.yaml", yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    for model in paths.models(params):
        rng = np.random.default_rng(model.seed)  # each model its own numbers
        for key in params["hypotheses"]:
            write(root, model.scrub_metrics(key), fake_metrics(key, rng))
        if optional:
            make_model_inputs(root, params, model, rng)
    if optional:
        claims = fake_claims(root, params)
        write(root, paths.CLAIMS_JSON, claims)
        write(root, paths.CLAIMS_MD, claims_markdown(claims))
    return root


def fake_claims(root: Path, params: dict) -> dict:
    """data/claims/claims.json as the claims stage writes it (pipeline/scrub/claims.py's evaluate),
    on the fake metrics and sweep: each scrub quantity its metrics.json value and interval with a
    made-up bootstrap distribution (so differences are paired), each sweep quantity its row."""
    claims = TypeAdapter(Claims).validate_python(params["claims"])
    models = []
    for model in paths.models(params):
        rng = np.random.default_rng(100 + model.seed)
        sweep = pd.read_csv(root / model.sweep_csv, dtype={"offsets": str})
        measured = {}
        for q in needed(claims):
            if q.kind == "scrub":
                m = json.loads((root / model.scrub_metrics(q.hypothesis)).read_text())[q.part]
                measured[q.text] = Measured(m["recovered"], m["ci_low"], m["ci_high"],
                                            model.scrub_metrics(q.hypothesis), f"{q.part}/recovered",
                                            dist=rng.normal(m["recovered"], 2.0, 200))
            else:
                part, offsets = quantity_row(q)
                i = int(sweep.index[(sweep.part == part) & (sweep.offsets == offsets)][0])
                measured[q.text] = Measured(sweep.recovered[i], sweep.ci_low[i], sweep.ci_high[i], model.sweep_csv,
                                            f"{i}/recovered")
        roles = json.loads((root / model.roles).read_text())
        models.append(ModelData(model.name, measured, roles, model.roles))
    return evaluate(claims, models, 200, 0)


def make_model_inputs(root: Path, params: dict, model: paths.ModelPaths, rng) -> None:
    # the models differ in their self head: each model's roles must show its own
    write(root, model.roles, {"prev": "0.0", "self": [f"0.{3 + model.seed}"], "induction": ["1.5", "1.4"]})
    write(root, model.head_scores, {"previous_token_score": [rng.uniform(0, 1, 8).tolist(), rng.uniform(0, 1, 8).tolist()],
                                    "same_token_score": [rng.uniform(0, 1, 8).tolist(), rng.uniform(0, 1, 8).tolist()],
                                    "induction_score": rng.uniform(0, 1, 8).tolist(),
                                    "max_induction_score": float(rng.uniform(0.5, 1)),
                                    "repeat_loss_drop": float(rng.uniform(2, 8))})
    # views.json as the heads stage writes it (the keys the page reads; head names hold dots)
    write(root, model.head_views, {"example": {
        "seq_id": 17, "rule": "a whitelisted token that occurred once before, chosen by numpy.random.default_rng(0)",
        "candidates": 41, "query": 120, "earlier": 97, "token_text": '" Pro"', "next_token_text": '"ject"',
        "attention_at_query": {h: {"role": role, "to_earlier_copy": float(rng.uniform()), "to_token_after_copy": float(rng.uniform()),
                                   "to_previous_token": float(rng.uniform()), "to_itself": float(rng.uniform()),
                                   "to_begin": float(rng.uniform())}
                               for h, role in (("0.0", "prev"), ("1.5", "induction"), ("1.4", "induction"))}},
        "relative": {"max_offset": 8}})
    for key in params["hypotheses"]:
        write(root, model.scrub_breakdown(key), fake_breakdown(key, rng).to_csv(index=False))
    write(root, model.sweep_csv, fake_sweep(rng).to_csv(index=False))
    write(root, model.train_log, [{"step": 250 * (i + 1), "train_loss": 5 - 0.1 * i + 0.01 * model.seed,
                                   "prev_token": 0.5 + 0.02 * i, "induction": 0.05 * i, "repeat_gain": 0.4 * i}
                                  for i in range(10)])
    for figure in (model.sweep_figure, model.head_scores_figure, model.head_example_figure, model.relative_figure,
                   model.search_figure):
        write(root, figure, PNG)
    fake_search(root, params, model, rng)
    # seed0 loaded from a file, the others trained: the page names the file read and its digest
    write(root, model.source, {"source": "trained", "seed": model.seed} if model.seed else
          {"source": "redwood", "repo": "ArthurConmy/redwood_attn_2l", "file": "/hub/snapshots/abc/model_final.pth",
           "bytes": 104857600 + int(rng.integers(1000)), "sha256": f"{int(rng.integers(2**63)):064x}"})


def fake_search(root: Path, params: dict, model: paths.ModelPaths, rng) -> None:
    """The search and frontier stages' files: a frontier of three hypotheses (each with its file),
    its path, and every hypothesis of params placed against it (one below, one on, one above)."""
    frontier = pd.DataFrame({"complexity": [0, 3, 9], "heldout": [0.0, 60.0, 85.0], "ci_low": [-1.0, 57.0, 82.0],
                             "ci_high": [1.0, 63.0, 88.0], "selection": [0.0, 61.0, 86.0], "on_path": [True] * 3,
                             "hypothesis": [f"search_{model.name}_c{c}" for c in (0, 3, 9)],
                             "kept": ["q: -; k: -; v: -", "q: embedding; k: 0.0[1]; v: embedding",
                                      "q: embedding, 0.3; k: 0.0[1]; v: embedding"]})
    write(root, model.search_frontier, frontier.to_csv(index=False))
    for name in frontier.hypothesis:
        write(root, f"{model.search_hypotheses}/{name}.yaml", "name: x\n")
    write(root, model.search_path, frontier.assign(step=range(3), phase=["start", "forward", "forward"],
                                                   change=["start", "a", "b"], candidates=[1, 40, 40]).to_csv(index=False))
    standings = ["below", "on", "above"]
    placed = [{"hypothesis": key, "name": key, "complexity": 20 + i, "in_space": True,
               "heldout": [70.0, 84.0, 95.0][i % 3], "ci_low": [68.0, 81.0, 93.0][i % 3],
               "ci_high": [72.0, 87.0, 97.0][i % 3], "frontier_complexity": 9, "frontier_heldout": 85.0,
               "frontier_ci_low": 82.0, "frontier_ci_high": 88.0, "standing": standings[i % 3],
               "simplest_match": [3, 9, None][i % 3]} for i, key in enumerate(params["hypotheses"])]
    write(root, model.search_placed, pd.DataFrame(placed).to_csv(index=False))
    write(root, model.search_summary, {"objective": "all"})


def run_report(root: Path, monkeypatch) -> str:
    monkeypatch.chdir(root)
    report.main()
    return (root / paths.REPORT_PAGE).read_text()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as mp:
        page = run_report(root, mp)
    return root, page


@pytest.fixture(scope="module")
def site2(tmp_path_factory):
    """Two models, seed0 and seed1."""
    root = make_root(tmp_path_factory.mktemp("site2"), PARAMS2)
    with pytest.MonkeyPatch.context() as mp:
        page = run_report(root, mp)
    return root, page


# ---------------------------------------------------------------------------------------------
# Reading the page back

class Page(HTMLParser):
    """Sourced spans, links, ids, and the digits of data-table cells that no span accounts for."""

    def __init__(self):
        super().__init__()
        self.spans, self.links, self.ids, self.unsourced = [], [], set(), []
        self.stack: list[tuple[str, dict]] = []
        self.span: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if name in attrs:
                self.links.append(attrs[name])
        if tag == "span" and "data-src" in attrs:
            self.span = dict(attrs, text="")
        self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack:
            top, attrs = self.stack.pop()
            if top == "span" and "data-src" in attrs and self.span is not None:
                self.spans.append(self.span)
                self.span = None
            if top == tag:
                break

    def handle_data(self, data):
        if self.span is not None:
            self.span["text"] += data
            return
        in_data_td = any(t == "td" for t, _ in self.stack) and any(
            t == "table" and "data" in a.get("class", "").split() for t, a in self.stack)
        if in_data_td and re.search(r"\d", data):
            self.unsourced.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def lookup(root: Path, src: str, key: str):
    """The value `key` names in file `src`, read independently of pipeline/report/page.py."""
    path = root / src
    if src.endswith(".csv"):
        row, column = key.split("/", 1)
        with open(path, newline="") as f:
            return list(csv.DictReader(f))[int(row)][column]
    data = yaml.safe_load(path.read_text()) if src.endswith(".yaml") else json.loads(path.read_text())
    for part in key.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def check_span(root: Path, span: dict) -> None:
    value = lookup(root, span["data-src"], span["data-key"])
    shown = span["text"]
    if shown == "n/a":  # a share of a part whose total unrecovered loss is 0 (breakdown.csv: empty)
        assert value == "" or value is None, f"{span['data-src']} {span['data-key']}: page n/a, file {value!r}"
        return
    if span.get("data-kind") == "text":
        assert shown == str(value), f"{span['data-src']} {span['data-key']}: page {shown!r}, file {value!r}"
        return
    shown_number = shown.replace("\u2212", "-")
    decimals = len(shown_number.split(".")[1]) if "." in shown_number else 0
    expected = float(value) * float(span.get("data-scale", 1))
    assert abs(float(shown_number) - expected) <= 0.5 * 10 ** -decimals + 1e-9, (
        f"{span['data-src']} {span['data-key']}: page shows {shown}, file has {expected}")


# ---------------------------------------------------------------------------------------------
# One model: the page

def test_every_number_on_the_page_equals_its_file(site):
    root, page = site
    parsed = parse(page)
    for span in parsed.spans:
        check_span(root, span)
    shown = {(s["data-src"], s["data-key"]) for s in parsed.spans}
    # Coverage: the headline shows every hypothesis × part with its interval and writeup number,
    # and a top row of every per-token table and the whole sweep are there.
    results = pd.read_csv(root / paths.RESULTS_CSV)
    assert len(results) == len(KEYS) * len(PARTS)
    for row in range(len(results)):
        for field in ("recovered", "spread_low", "spread_high"):
            assert (paths.RESULTS_CSV, f"{row}/{field}") in shown
    for key in KEYS:
        for i, value in enumerate(PARAMS["report"]["reference"].get(key, [])):
            assert ("params.yaml", f"report/reference/{key}/{i}") in shown
        assert (FIRST.scrub_breakdown(key), "0/unrecovered_share") in shown
    for row in range(16):  # every row of the sweep, with its interval
        for field in ("recovered", "ci_low", "ci_high"):
            assert (FIRST.sweep_csv, f"{row}/{field}") in shown
    assert (FIRST.scrub_metrics(KEYS[0]), "original_loss") in shown
    assert (FIRST.train_log, "9/train_loss") in shown
    # the claims, first on the page: each verdict and measured difference from claims.json, each
    # number a comparison used from its own file (one model: naive's V appears nowhere else)
    claims = json.loads((root / paths.CLAIMS_JSON).read_text())["claims"]
    for i, c in enumerate(claims):
        assert (paths.CLAIMS_JSON, f"claims/{i}/verdicts/seed0") in shown
        assert (paths.CLAIMS_JSON, f"claims/{i}/verdict") in shown
        for j in range(len(c["comparisons"])):
            for field in ("value", "ci_low", "ci_high", "verdict"):
                assert (paths.CLAIMS_JSON, f"claims/{i}/comparisons/{j}/models/seed0/{field}") in shown
    assert (FIRST.scrub_metrics("naive"), "v/recovered") in shown
    assert page.index('<section id="claims">') < page.index('<section id="headline">')
    assert (FIRST.head_views, "example/attention_at_query/1.5/to_earlier_copy") in shown
    assert (FIRST.head_scores, "induction_score/5") in shown


def test_every_number_in_a_data_table_names_its_file(site):
    _, page = site
    assert parse(page).unsourced == []


def test_a_changed_number_is_caught(site, tmp_path):
    """The read-back check is not vacuous: a page whose number differs from its file fails it."""
    root, page = site
    parsed = parse(page)
    span = next(s for s in parsed.spans if s["data-key"] == "0/recovered")
    bad = dict(span, text=f"{float(span['text'].replace(chr(0x2212), '-')) + 0.2:.1f}")
    with pytest.raises(AssertionError):
        check_span(root, bad)


def check_links(root: Path, page: str, models: list[paths.ModelPaths]) -> Page:
    parsed = parse(page)
    assert len(parsed.links) > 20
    for target in parsed.links:
        assert not re.match(r"^[a-z]+:", target), f"external reference {target}: the page must be self-contained"
        if target.startswith("#"):
            assert target[1:] in parsed.ids, f"anchor {target} has no target"
        else:
            assert (root / paths.REPORTS / target).resolve().exists(), f"the page links {target}, which does not exist"
    first = models[0]
    for figure in (paths.RECOVERED_FIGURE, paths.TRAINING_FIGURE, first.sweep_figure, first.head_scores_figure,
                   first.head_example_figure, first.relative_figure):
        assert str(Path(figure).relative_to(paths.REPORTS)) in parsed.links, f"{figure} is not shown"
    for key in KEYS:
        assert f"../{first.scrub_breakdown(key)}" in parsed.links
    for model in models:
        assert f"../{model.roles}" in parsed.links and f"../{model.train_log}" in parsed.links
    assert "not produced" not in page
    return parsed


def test_every_link_and_figure_exists(site):
    root, page = site
    check_links(root, page, [FIRST])


def test_search_section_says_where_each_hypothesis_stands(site):
    """The words follow placed.csv: below by the gap, on, above; the simplest match where it is
    simpler; every frontier file linked."""
    root, page = site
    section = page.split('<section id="search">', 1)[1].split("</section>", 1)[0]
    placed = pd.read_csv(root / FIRST.search_placed)
    for row in placed.itertuples():
        if row.hypothesis == "baseline":
            continue
        sentence = re.search(rf"<li>{re.escape(row.name)} \({row.heldout:.1f}% at complexity {row.complexity}\) ([^<]*)",
                             section).group(1)
        gap = 85.0 - row.heldout
        expected = {"below": f"is below the frontier by {gap:.1f} points", "on": "is on the frontier",
                    "above": f"is above the frontier by {-gap:.1f} points"}[row.standing]
        assert sentence.startswith(expected), sentence
        assert ("matches its recovery from complexity" in sentence) == (not pd.isna(row.simplest_match))
    for name in pd.read_csv(root / FIRST.search_frontier).hypothesis:
        assert f"{name}.yaml" in section


def hypothesis_rows(page: str, key: str) -> dict[str, list[str]]:
    """The rows of hypothesis `key`'s table: row header → cell texts (Q, K, V)."""
    segment = page.split(f'<h3 id="hyp-{key}">', 1)[1].split("</table>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", segment, flags=re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
        rows[cells[0]] = cells[1:]
    return rows


def test_hypothesis_table_follows_its_params(tmp_path, monkeypatch):
    rows = hypothesis_rows(run_report(make_root(tmp_path / "a"), monkeypatch), "naive")
    # naive.yaml: K takes the previous-token head (roles.json: 0.0) split at prev, pattern o, values c.
    head = rows["layer-0 head 0.0 (previous-token head)"]
    assert head[0].startswith("whole head: other (o)")
    assert "split at prev (keys: previous): pattern other (o), values clean (c); elsewhere all other (o)" in head[1]
    assert rows["token embedding"][:2] == ["clean (c)xc", "other (o)xo"]
    assert "Rk = xo + out0.0split(prev) + Σj ∈ {0.1 – 0.7} outjo" in rows["formula"][1].replace("\n", "")

    params = copy.deepcopy(PARAMS)
    params["hypotheses"]["naive"]["k"]["heads"]["prev"]["mask"] = [0, 3]
    params["hypotheses"]["naive"]["k"]["heads"]["prev"]["inside"]["values"] = "other"
    params["hypotheses"]["naive"]["q"]["embedding"] = "other"
    changed = hypothesis_rows(run_report(make_root(tmp_path / "b", params), monkeypatch), "naive")
    head = changed["layer-0 head 0.0 (previous-token head)"]
    assert "split at [0, 3] (keys: current, 3 back): pattern other (o), values other (o)" in head[1]
    assert "out0.0[0, 3]:(o,o)|o" in changed["formula"][1]
    assert changed["token embedding"][0] == "other (o)xo"


def test_role_heads_take_their_entries(site):
    """roles.json (fake) names 0.0 prev and 0.3 self: refined 3 keeps both clean for Q and K,
    refined 4 rewrites 0.3 for Q only."""
    _, page = site
    rows = hypothesis_rows(page, "refined3")
    clean = rows["layer-0 heads 0.0, 0.3 (previous-token head, self-attending)"]
    assert [c.split("out")[0] for c in clean] == ["whole head: clean (c)"] * 2 + ["split at cur (keys: current): pattern "
                                                                                 "other (o), values clean (c); elsewhere all other (o)"]
    rewritten = hypothesis_rows(page, "refined4")["layer-0 head 0.3 (self-attending)"]
    assert rewritten[0].startswith("residual rewrite: identity part clean (c), the rest other (o)")
    assert rewritten[1].startswith("split at last3 (keys: current, previous, 2 back)")


def test_missing_optional_inputs_give_notices(tmp_path, monkeypatch):
    root = make_root(tmp_path, optional=False)
    page = run_report(root, monkeypatch)
    notices = re.findall(r'<p class="missing">not produced: <code>([^<]+)</code>', page)
    for target in optional_inputs(FIRST) + [paths.CLAIMS_JSON]:
        if target != FIRST.head_scores:  # scores only annotate the roles, whose own notice stands for both
            assert target in notices, f"no notice for missing {target}"
    parsed = parse(page)
    for span in parsed.spans:
        check_span(root, span)
    for target in parsed.links:
        if not target.startswith("#"):
            assert (root / paths.REPORTS / target).resolve().exists(), target
    # The training figure is a declared output: drawn (saying there is no log) even without one.
    assert (root / paths.TRAINING_FIGURE).stat().st_size > 1000


def test_loaded_model_has_an_empty_training_log(tmp_path, monkeypatch):
    root = make_root(tmp_path)
    write(root, FIRST.train_log, [])
    page = run_report(root, monkeypatch)
    assert "loaded, not trained" in page
    assert (root / paths.TRAINING_FIGURE).stat().st_size > 1000


def test_loaded_model_takes_its_head_count_from_the_scores(tmp_path, monkeypatch):
    """model=redwood / file params carry no n_heads: the heads stage's scores give it (one per
    head); without them the tables show the YAML's entries and say why."""
    params = copy.deepcopy(PARAMS)
    params["model"] = {"source": "redwood", "dir": "data/model/redwood", "repo": "ArthurConmy/redwood_attn_2l"}
    loaded = paths.models(params)[0]
    root = make_root(tmp_path / "a", params)
    assert "every layer-0 head (0.0 – 0.7)" in hypothesis_rows(run_report(root, monkeypatch), "baseline")
    root = make_root(tmp_path / "b", params)
    (root / loaded.head_scores).unlink()
    page = run_report(root, monkeypatch)
    assert f"not produced: <code>{loaded.head_scores}</code>" in page
    assert "heads: all" in hypothesis_rows(page, "baseline")


# ---------------------------------------------------------------------------------------------
# Several models

def metric(root: Path, model: paths.ModelPaths, key: str, part: str, field: str = "recovered") -> float:
    return json.loads((root / model.scrub_metrics(key)).read_text())[part][field]


def test_headline_is_the_mean_and_min_max_across_models(tmp_path, monkeypatch):
    """Hand-written metrics of two models: results.csv holds their mean and min–max per hypothesis
    and part, results_by_model.csv each model's value and bootstrap interval."""
    params = copy.deepcopy(PARAMS2)
    params["hypotheses"] = {k: params["hypotheses"][k] for k in ("naive", "refined2")}
    params["claims"] = {}  # they name the other hypotheses too
    root = tmp_path
    write(root, "params.yaml", yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    values = {  # (model, key) → Q, K, V, All
        (0, "naive"): [40.0, 80.0, 90.0, 30.0], (1, "naive"): [60.0, 70.0, 96.0, 36.0],
        (0, "refined2"): [85.0, 91.0, 97.0, 75.0], (1, "refined2"): [89.0, 81.0, 97.0, 70.0]}
    for (seed, key), recovered in values.items():
        model = paths.ModelPaths(params["model"]["dir"], seed)
        write(root, model.scrub_metrics(key), {
            "hypothesis": key, "name": key, "original_loss": 3.0 + seed, "baseline_loss": 4.0 + seed,
            "scored_positions": 100, "scored_share": 0.1,
            **{p: {"recovered": r, "ci_low": r - 2 - seed, "ci_high": r + 3, "loss": 3.5} for p, r in zip(PARTS, recovered)}})
    run_report(root, monkeypatch)
    headline = pd.read_csv(root / paths.RESULTS_CSV)
    assert list(headline.columns) == ["hypothesis", "part", "recovered", "spread_low", "spread_high", "spread",
                                      "models", "writeup"]
    assert list(zip(headline.hypothesis, headline.part)) == [(k, p) for k in ("naive", "refined2") for p in PART_LABELS.values()]
    naive_q = headline.iloc[0]
    assert (naive_q.recovered, naive_q.spread_low, naive_q.spread_high) == (50.0, 40.0, 60.0)
    refined2_k = headline.iloc[5]
    assert (refined2_k.recovered, refined2_k.spread_low, refined2_k.spread_high) == (86.0, 81.0, 91.0)
    assert set(headline.spread) == {"min–max across 2 models"} and set(headline.models) == {2}
    assert list(headline.writeup) == PARAMS["report"]["reference"]["naive"] + PARAMS["report"]["reference"]["refined2"]

    by_model = pd.read_csv(root / paths.RESULTS_BY_MODEL_CSV)
    assert list(by_model.columns) == ["model", "seed", "hypothesis", "part", "recovered", "ci_low", "ci_high", "loss",
                                      "original_loss", "baseline_loss", "writeup"]
    assert len(by_model) == 16
    seed1_naive_q = by_model[(by_model.model == "seed1") & (by_model.hypothesis == "naive") & (by_model.part == "Q")]
    assert seed1_naive_q[["seed", "recovered", "ci_low", "ci_high", "original_loss", "baseline_loss"]].values.tolist() == \
        [[1, 60.0, 57.0, 63.0, 4.0, 5.0]]
    md = (root / paths.RESULTS_MD).read_text()
    assert "| naive | 50.0 (40.0–60.0) [51] |" in md and "### seed1" in md
    assert "| refined2 | 89.0 (86.0–92.0) | 81.0 (78.0–84.0) |" in md  # seed1's own table, bootstrap intervals


def test_one_model_reports_its_bootstrap_interval(tmp_path, monkeypatch):
    root = make_root(tmp_path)
    run_report(root, monkeypatch)
    headline = pd.read_csv(root / paths.RESULTS_CSV)
    q = headline.iloc[0]
    assert q.recovered == pytest.approx(metric(root, FIRST, KEYS[0], "q"), abs=1e-4)
    assert q.spread_low == pytest.approx(metric(root, FIRST, KEYS[0], "q", "ci_low"), abs=1e-4)
    assert q.spread_high == pytest.approx(metric(root, FIRST, KEYS[0], "q", "ci_high"), abs=1e-4)
    assert set(headline.spread) == {"bootstrap 95% interval"} and set(headline.models) == {1}


def test_the_spread_statement_follows_the_number_of_models(site, site2):
    for (root, page), n in ((site, 1), (site2, 2)):
        md = (root / paths.RESULTS_MD).read_text()
        shown = {s["text"] for s in parse(page).spans if s["data-src"] == paths.RESULTS_CSV and s["data-key"] == "0/spread"}
        if n == 1:
            assert shown == {"bootstrap 95% interval"}
            for text in (md, page):
                assert "in parentheses its bootstrap 95% interval over sequences" in text and "min–max" not in text
        else:
            assert shown == {"min–max across 2 models"}
            for text in (md, page):
                assert "the mean % loss recovered across the 2 models" in text
                assert "in parentheses the min–max across these models" in text


def test_two_models_every_number_on_the_page_equals_its_file(site2):
    root, page = site2
    parsed = parse(page)
    for span in parsed.spans:
        check_span(root, span)
    assert parsed.unsourced == []
    shown = {(s["data-src"], s["data-key"]) for s in parsed.spans}
    results = pd.read_csv(root / paths.RESULTS_CSV)
    for row in range(len(KEYS) * len(PARTS)):
        for field in ("recovered", "spread_low", "spread_high"):
            assert (paths.RESULTS_CSV, f"{row}/{field}") in shown
    # the headline mean is the mean of the two models' files
    first_q = [metric(root, model, KEYS[0], "q") for model in (FIRST, SECOND)]
    assert results.recovered[0] == pytest.approx(np.mean(first_q), abs=1e-4)
    assert (results.spread_low[0], results.spread_high[0]) == pytest.approx((min(first_q), max(first_q)), abs=1e-4)
    for model in (FIRST, SECOND):
        for key in KEYS:
            for part in PARTS:
                for field in ("recovered", "ci_low", "ci_high"):
                    assert (model.scrub_metrics(key), f"{part}/{field}") in shown
        for field in ("original_loss", "baseline_loss", "scored_positions"):
            assert (model.scrub_metrics(KEYS[0]), field) in shown
        assert (model.roles, "self/0") in shown and (model.head_scores, "induction_score/5") in shown
        assert (model.head_scores, "max_induction_score") in shown
        assert (model.train_log, "9/train_loss") in shown
        for row in range(16):
            assert (model.sweep_csv, f"{row}/recovered") in shown
    # the head views and per-token breakdowns are the first model's only
    assert (FIRST.head_views, "example/query") in shown and not any(src == SECOND.head_views for src, _ in shown)
    assert not any(src.startswith(SECOND.scrub + "/") and src.endswith("breakdown.csv") for src, _ in shown)
    assert "0.4" in {s["text"] for s in parsed.spans if s["data-src"] == SECOND.roles}  # seed1's own self head


def test_two_models_every_link_and_figure_exists(site2):
    root, page = site2
    check_links(root, page, [FIRST, SECOND])
    assert "Views of the first model, seed0" in page


def test_a_missing_model_is_a_one_line_error_naming_the_hypothesis_and_file(tmp_path, monkeypatch):
    root = make_root(tmp_path, PARAMS2, optional=False)
    run_report(root, monkeypatch)
    before = {name: (root / name).read_bytes() for name in (paths.RESULTS_CSV, paths.RESULTS_BY_MODEL_CSV, paths.RESULTS_MD)}
    key = KEYS[-1]
    (root / SECOND.scrub_metrics(key)).unlink()
    with pytest.raises(ConfigError) as err:
        run_report(root, monkeypatch)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"hypotheses.{key}: ")
    assert SECOND.scrub_metrics(key) in message and "seed1" in message
    assert {name: (root / name).read_bytes() for name in before} == before  # the last report stays


def test_models_disagreeing_on_the_parts_is_an_error(tmp_path, monkeypatch):
    root = make_root(tmp_path, PARAMS2, optional=False)
    metrics = json.loads((root / SECOND.scrub_metrics("naive")).read_text())
    del metrics["v"]
    write(root, SECOND.scrub_metrics("naive"), metrics)
    with pytest.raises(ConfigError, match=r"^hypotheses\.naive: .*seed1/naive/metrics\.json has parts"):
        run_report(root, monkeypatch)


# ---------------------------------------------------------------------------------------------
# Figures

def frames(values: dict[int, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's two tables for one hypothesis "h" with `values` (seed → recovered, every part)."""
    collected = {paths.ModelPaths("data/model", seed): [{
        "hypothesis": "h", "original_loss": 3.0, "baseline_loss": 4.0,
        **{p: {"recovered": r, "ci_low": r + 2 if p == "q" else r - 10, "ci_high": r + 10, "loss": 3.5} for p in PARTS}}]
        for seed, r in values.items()}
    by_model = by_model_table(collected, {})
    return headline_table(by_model), by_model


def test_chart_of_a_point_outside_its_interval(tmp_path):
    """One model, whose Q interval lies above its value: no whisker below, not a negative one."""
    headline, by_model = frames({0: 50.0})
    recovered_chart(headline, by_model, tmp_path / "recovered.png")
    assert (tmp_path / "recovered.png").stat().st_size > 1000


def test_chart_marks_each_model_on_its_bar():
    dots = lambda fig: [c for c in fig.axes[0].collections if c.get_label() == "each model"]  # noqa: E731
    headline, by_model = frames({0: 40.0, 1: 60.0, 2: 65.0})
    fig = recovered_figure(headline, by_model)
    (collection,) = dots(fig)
    # 3 models per part; the Q part's dots, each model's value
    ys = sorted(y for x, y in collection.get_offsets())
    assert ys == [40.0, 60.0, 65.0]
    bars = [p.get_height() for p in fig.axes[0].patches]
    assert bars == pytest.approx([55.0] * 4)
    assert "min–max" in fig.axes[0].get_title()
    one = recovered_figure(*frames({0: 40.0}))
    assert dots(one) == [] and "bootstrap" in one.axes[0].get_title()


def test_training_figure_draws_every_model():
    log = [{"step": 100 * (i + 1), "train_loss": 5 - i, "induction": 0.1 * i} for i in range(3)]
    fig = training_figure({"seed0": log, "seed1": [dict(r, train_loss=r["train_loss"] + 1) for r in log]})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and lines[0].get_linestyle() != lines[1].get_linestyle()
    # the panel's legend names the measurement, the figure's the models by their line styles
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train_loss"]
    styles = fig.legends[0]
    assert [t.get_text() for t in styles.get_texts()] == ["seed0", "seed1"]
    assert [h.get_linestyle() for h in styles.legend_handles] == [line.get_linestyle() for line in lines]
    assert list(lines[1].get_ydata()) == [6, 5, 4]
    empty = training_figure({"seed0": []})
    assert "loaded, not trained" in empty.axes[0].texts[0].get_text()


def test_the_page_names_the_file_each_model_was_read_from(site2):
    root, page = site2
    parsed = Page()
    parsed.feed(page)
    loaded = json.loads((root / "data/model/seed0/source.json").read_text())
    shown = {(s["data-src"], s["data-key"]) for s in parsed.spans}
    assert {("data/model/seed0/source.json", k) for k in ("file", "bytes", "sha256", "repo")} <= shown
    assert loaded["sha256"] in page and loaded["file"] in page
    assert ("data/model/seed1/source.json", "seed") in shown and "trained by this pipeline" in page
