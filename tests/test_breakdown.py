"""The per-token breakdown (pipeline/analysis/breakdown.py) and the per-position class column the scrub
stage writes for it (pipeline/stages/scrub.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.analysis.breakdown import COLUMNS, breakdown, token_label, token_labels
from pipeline.config.hypothesis import parse_hypothesis
from pipeline.data.tokenizer import train_bpe
from pipeline.scrub.inputs import resampler_classes
from pipeline.scrub.resample import classify_positions, resolve_rules
from pipeline.stages.scrub import positions_frame
from tests.helpers import ROOT


@pytest.fixture
def small() -> pd.DataFrame:
    """Five scored positions, three tokens, two classes, a q and a k part: small enough to
    check every number by hand."""
    return pd.DataFrame({
        "seq_id": [0, 0, 1, 1, 2], "pos": [1, 3, 2, 4, 1], "token": [7, 9, 7, 8, 7],
        "target": [1, 1, 1, 1, 1],
        "loss_original": [1.0, 2.0, 3.0, 1.0, 2.0],
        "loss_baseline": [4.0, 4.0, 5.0, 2.0, 6.0],
        "loss_q": [2.0, 2.5, 3.0, 1.5, 5.0],      # unrecovered 1, .5, 0, .5, 3 → total 5
        "loss_k": [1.0, 3.0, 3.5, 1.0, 2.0],      # unrecovered 0, 1, .5, 0, 0 → total 1.5
        "class_typicality": ["atypical", "other", "other", "atypical", "other"],
    })


LABELS = {7: '" the"', 8: '"."', 9: '" to"'}


@pytest.fixture
def random_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    original = rng.gamma(2.0, 1.0, n)
    return pd.DataFrame({
        "seq_id": rng.integers(0, 50, n), "pos": rng.integers(0, 30, n), "token": rng.integers(0, 20, n),
        "target": rng.integers(0, 20, n), "loss_original": original,
        "loss_baseline": original + rng.gamma(2.0, 1.0, n),
        **{f"loss_{p}": original + rng.normal(0.5, 1.0, n) for p in ("all", "v", "k", "q")},
        "class_typicality": rng.choice(["atypical", "typical", "other"], n),
    })


def test_group_means_and_sums_by_hand(small):
    table = breakdown(small, LABELS)
    assert list(table.columns) == COLUMNS
    row = table[(table.part == "q") & (table.group == "token") & (table.token == 7)].iloc[0]
    # Token 7 at rows 0, 2, 4.
    assert row["label"] == '" the"' and row["count"] == 3
    assert row["loss_original"] == pytest.approx((1 + 3 + 2) / 3)
    assert row["loss_baseline"] == pytest.approx((4 + 5 + 6) / 3)
    assert row["loss_scrubbed"] == pytest.approx((2 + 3 + 5) / 3)
    assert row["unrecovered"] == pytest.approx(1 + 0 + 3)
    assert row["unrecovered_share"] == pytest.approx(4 / 5)
    row = table[(table.part == "k") & (table.group == "typicality") & (table.label == "atypical")].iloc[0]
    # Rows 0 and 3, part k.
    assert row["token"] == -1 and row["count"] == 2
    assert row["loss_scrubbed"] == pytest.approx((1.0 + 1.0) / 2)
    assert row["unrecovered"] == pytest.approx(0.0)
    other = table[(table.part == "k") & (table.group == "typicality") & (table.label == "other")].iloc[0]
    assert other["unrecovered"] == pytest.approx(1.5) and other["unrecovered_share"] == pytest.approx(1.0)


def test_order_parts_groups_then_loss(small):
    table = breakdown(small, LABELS)
    assert list(dict.fromkeys(table.part)) == ["q", "k"]
    assert [(p, g) for p, g in dict.fromkeys(zip(table.part, table.group))] == [
        ("q", "token"), ("q", "typicality"), ("k", "token"), ("k", "typicality")]
    q_tokens = table[(table.part == "q") & (table.group == "token")]
    assert list(q_tokens.token) == [7, 9, 8]   # unrecovered 4, .5, .5 (ties by label: " to" < ".")
    for _, rows in table.groupby(["part", "group"]):
        assert rows.unrecovered.is_monotonic_decreasing


def test_shares_sum_to_one_and_counts_to_positions(random_frame):
    table = breakdown(random_frame, {t: f'"t{t}"' for t in range(20)})
    assert list(dict.fromkeys(table.part)) == ["q", "k", "v", "all"]
    for (part, group), rows in table.groupby(["part", "group"]):
        assert rows.unrecovered_share.sum() == pytest.approx(1.0), (part, group)
        assert rows["count"].sum() == len(random_frame), (part, group)
        total = (random_frame[f"loss_{part}"] - random_frame.loss_original).sum()
        assert rows.unrecovered.sum() == pytest.approx(total)
        # Means weighted by counts give back the overall means.
        for col, source in (("loss_scrubbed", f"loss_{part}"), ("loss_original", "loss_original"),
                            ("loss_baseline", "loss_baseline")):
            assert (rows[col] * rows["count"]).sum() / len(random_frame) == pytest.approx(random_frame[source].mean())


def test_only_the_parts_present_and_classes_passed_in(small):
    frame = small.drop(columns=["loss_k", "class_typicality"])
    table = breakdown(frame, LABELS, classes={"typicality": small.class_typicality})
    assert set(table.part) == {"q"} and set(table.group) == {"token", "typicality"}
    assert table.equals(breakdown(small.drop(columns=["loss_k"]), LABELS))
    with pytest.raises(ValueError, match="no label"):
        breakdown(small, {7: '" the"'})


def test_token_labels_show_spaces_and_bytes():
    assert token_label(" the", "Ġthe") == '" the"'
    assert token_label("\n", "Ċ") == '"\\n"'
    assert token_label('"', '"') == '"\\""'
    # A piece of a multi-byte character decodes to U+FFFD; its bytes tell the pieces apart. (A
    # tokenizer trained on ASCII only keeps ’ as its three byte tokens.)
    tok = train_bpe(["the cat sat on the mat"] * 20, 270)
    pieces = tok.encode("’", add_special_tokens=False).ids
    assert len(pieces) == 3
    labels = token_labels(pieces + tok.encode(" the", add_special_tokens=False).ids, tok)
    assert [labels[i] for i in pieces] == ['"\\xe2"', '"\\x80"', '"\\x99"']
    assert '" the"' in labels.values()


@pytest.fixture
def bonus5_setting(tmp_path):
    """A tokenizer that knows the typicality rules' strings, and random sequences over it."""
    tok = train_bpe(["he said “yes” to a man. it’s an owl, not a cat."] * 50, 300)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    hypothesis = parse_hypothesis("bonus5", yaml.safe_load((ROOT / "conf/hypothesis/bonus5.yaml").read_text()))
    rng = np.random.default_rng(0)
    vocab = np.array(sorted(set(tok.encode("he said “yes” to a man. it’s an owl, not a cat.").ids)))
    tokens = rng.choice(vocab, size=(30, 17))   # [seq, pos + 1]
    return tok, path, hypothesis, tokens


def test_class_column_matches_classify_positions(bonus5_setting):
    tok, path, hypothesis, tokens = bonus5_setting
    classes = resampler_classes(hypothesis, tokens, path)
    rng = np.random.default_rng(1)
    seq, pos = rng.integers(0, tokens.shape[0], 200), rng.integers(0, tokens.shape[1] - 1, 200)
    loss = rng.random(200)
    losses = {n: SimpleNamespace(seq=seq, pos=pos, loss=loss) for n in ("original", "baseline", "q")}
    frame = positions_frame(tokens, losses, classes)
    resampler = hypothesis.resamplers["typicality"]
    rules = resolve_rules(resampler, lambda text: tok.encode(text, add_special_tokens=False).ids)
    expected = classify_positions(tokens[:, :-1], rules)[seq, pos]
    names = list(resampler.classes) + ["other"]
    assert list(frame.class_typicality) == [names[i] for i in expected]
    assert set(frame.class_typicality) == {"atypical", "other"}   # both classes occur: the check has teeth
    np.testing.assert_array_equal(frame.token, tokens[seq, pos])
    np.testing.assert_array_equal(frame.target, tokens[seq, pos + 1])
