"""The report stage and its review page (reports/index.html, pipeline/page.py).

The stage runs in a scratch folder on the repository's composed params and fake inputs that
follow the file contracts (metrics.json, breakdown.csv, sweep.csv, views.json, train_log.json):
every number the page shows must read back from the file it names at the shown rounding, every
table cell's number must name a file, every link must exist, the hypothesis tables must follow
the params they are generated from, and a missing optional input gives a notice, not a crash."""
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

from pipeline import paths
from pipeline.stages import report
from pipeline.stages.report import chart

ROOT = Path(__file__).resolve().parent.parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
KEYS = list(PARAMS["hypotheses"])
PARTS = ("q", "k", "v", "all")


def test_chart_of_a_point_outside_its_interval(tmp_path):
    frame = pd.DataFrame([
        {"hypothesis": "h", "part": part, "recovered": 50.0, "ci_low": 52.0 if part == "Q" else 40.0,
         "ci_high": 60.0, "writeup": None} for part in ("Q", "K", "V", "All")])
    chart(frame, tmp_path / "recovered.png")
    assert (tmp_path / "recovered.png").stat().st_size > 1000


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
    m = {"hypothesis": key, "name": PARAMS["hypotheses"][key].get("name", key), "original_loss": 3.1454273,
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
OPTIONAL = [paths.ROLES, paths.HEAD_SCORES, paths.HEAD_VIEWS, paths.SWEEP_CSV, paths.SWEEP_FIGURE, paths.TRAIN_LOG,
            paths.HEAD_SCORES_FIGURE, paths.HEAD_EXAMPLE_FIGURE, paths.RELATIVE_FIGURE] + [paths.scrub_breakdown(k) for k in KEYS]


def make_root(root: Path, params: dict = PARAMS, optional: bool = True) -> Path:
    rng = np.random.default_rng(0)
    write(root, "params.yaml", yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    for key in params["hypotheses"]:
        write(root, paths.scrub_metrics(key), fake_metrics(key, rng))
    if not optional:
        return root
    write(root, paths.ROLES, {"prev": "0.0", "self": ["0.3"], "induction": ["1.5", "1.4"]})
    write(root, paths.HEAD_SCORES, {"previous_token_score": [rng.uniform(0, 1, 8).tolist(), rng.uniform(0, 1, 8).tolist()],
                                    "same_token_score": [rng.uniform(0, 1, 8).tolist(), rng.uniform(0, 1, 8).tolist()],
                                    "induction_score": rng.uniform(0, 1, 8).tolist()})
    # views.json as the heads stage writes it (the keys the page reads; head names hold dots)
    write(root, paths.HEAD_VIEWS, {"example": {
        "seq_id": 17, "rule": "a whitelisted token that occurred once before, chosen by numpy.random.default_rng(0)",
        "candidates": 41, "query": 120, "earlier": 97, "token_text": '" Pro"', "next_token_text": '"ject"',
        "attention_at_query": {h: {"role": role, "to_earlier_copy": float(rng.uniform()), "to_token_after_copy": float(rng.uniform()),
                                   "to_previous_token": float(rng.uniform()), "to_itself": float(rng.uniform()),
                                   "to_begin": float(rng.uniform())}
                               for h, role in (("0.0", "prev"), ("1.5", "induction"), ("1.4", "induction"))}},
        "relative": {"max_offset": 8}})
    for key in params["hypotheses"]:
        write(root, paths.scrub_breakdown(key), fake_breakdown(key, rng).to_csv(index=False))
    write(root, paths.SWEEP_CSV, fake_sweep(rng).to_csv(index=False))
    write(root, paths.TRAIN_LOG, [{"step": 250 * (i + 1), "train_loss": 5 - 0.1 * i, "prev_token": 0.5 + 0.02 * i,
                                    "induction": 0.05 * i, "repeat_gain": 0.4 * i} for i in range(10)])
    for figure in (paths.SWEEP_FIGURE, paths.HEAD_SCORES_FIGURE, paths.HEAD_EXAMPLE_FIGURE, paths.RELATIVE_FIGURE):
        write(root, figure, PNG)
    return root


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
    """The value `key` names in file `src`, read independently of pipeline/page.py."""
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
# Invariants

def test_every_number_on_the_page_equals_its_file(site):
    root, page = site
    parsed = parse(page)
    for span in parsed.spans:
        check_span(root, span)
    shown = {(s["data-src"], s["data-key"]) for s in parsed.spans}
    # Coverage: the headline shows every hypothesis × part with its interval and writeup number,
    # and a top row of every per-token table and the whole sweep are there.
    for key in KEYS:
        for part in PARTS:
            for field in ("recovered", "ci_low", "ci_high"):
                assert (paths.scrub_metrics(key), f"{part}/{field}") in shown
        for i, value in enumerate(PARAMS["report"]["reference"].get(key, [])):
            assert ("params.yaml", f"report/reference/{key}/{i}") in shown
        assert (paths.scrub_breakdown(key), "0/unrecovered_share") in shown
    for row in range(16):  # every row of the sweep, with its interval
        for field in ("recovered", "ci_low", "ci_high"):
            assert (paths.SWEEP_CSV, f"{row}/{field}") in shown
    assert (paths.TRAIN_LOG, "9/train_loss") in shown
    assert (paths.HEAD_VIEWS, "example/attention_at_query/1.5/to_earlier_copy") in shown


def test_every_number_in_a_data_table_names_its_file(site):
    _, page = site
    assert parse(page).unsourced == []


def test_a_changed_number_is_caught(site, tmp_path):
    """The read-back check is not vacuous: a page whose number differs from its file fails it."""
    root, page = site
    parsed = parse(page)
    span = next(s for s in parsed.spans if s["data-key"] == "q/recovered")
    bad = dict(span, text=f"{float(span['text'].replace(chr(0x2212), '-')) + 0.2:.1f}")
    with pytest.raises(AssertionError):
        check_span(root, bad)


def test_every_link_and_figure_exists(site):
    root, page = site
    parsed = parse(page)
    assert len(parsed.links) > 20
    for target in parsed.links:
        assert not re.match(r"^[a-z]+:", target), f"external reference {target}: the page must be self-contained"
        if target.startswith("#"):
            assert target[1:] in parsed.ids, f"anchor {target} has no target"
        else:
            assert (root / paths.REPORTS / target).resolve().exists(), f"the page links {target}, which does not exist"
    for figure in (paths.RECOVERED_FIGURE, paths.TRAINING_FIGURE, paths.SWEEP_FIGURE, paths.HEAD_SCORES_FIGURE,
                   paths.HEAD_EXAMPLE_FIGURE, paths.RELATIVE_FIGURE):
        assert str(Path(figure).relative_to(paths.REPORTS)) in parsed.links, f"{figure} is not shown"
    for key in KEYS:
        assert f"../{paths.scrub_breakdown(key)}" in parsed.links
    assert "not produced" not in page


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
    for target in OPTIONAL:
        if target != paths.HEAD_SCORES:  # scores only annotate the roles, whose own notice stands for both
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
    write(root, paths.TRAIN_LOG, [])
    page = run_report(root, monkeypatch)
    assert "loaded, not trained" in page
    assert (root / paths.TRAINING_FIGURE).stat().st_size > 1000


def test_loaded_model_takes_its_head_count_from_the_scores(tmp_path, monkeypatch):
    """model=redwood / file params carry no n_heads: the heads stage's scores give it (one per
    head); without them the tables show the YAML's entries and say why."""
    params = copy.deepcopy(PARAMS)
    params["model"] = {"source": "redwood", "path": "data/model/redwood.pt"}
    root = make_root(tmp_path / "a", params)
    assert "every layer-0 head (0.0 – 0.7)" in hypothesis_rows(run_report(root, monkeypatch), "baseline")
    root = make_root(tmp_path / "b", params)
    (root / paths.HEAD_SCORES).unlink()
    page = run_report(root, monkeypatch)
    assert f"not produced: <code>{paths.HEAD_SCORES}</code>" in page
    assert "heads: all" in hypothesis_rows(page, "baseline")
