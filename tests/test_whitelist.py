"""pipeline.analysis.whitelist: a corpus small enough to work by hand, a plain-Python reference on random
corpora, and the stage on a scratch project."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.analysis.whitelist import (
    adjacent_pairs,
    induction_counts,
    prior_count,
    summarize,
    token_stats,
)
from pipeline.errors import ConfigError
from pipeline.outputs import rounded
from tests.helpers import ROOT
from tests.helpers.shell import one_thread, sh


def test_counts_of_earlier_occurrences_by_hand():
    # pairs: (2,3) (3,2) (2,1) (1,2) (2,3); the last (2,3) has one earlier 2 followed by 3 (m = 1)
    # and one followed by 1 (n = 1); (2,1) has one earlier 2, followed by 3: m = 0, n = 1.
    doc, a, b = adjacent_pairs([np.array([2, 3, 2, 1, 2, 3])])
    m, n = induction_counts(doc, a, b)
    assert m.tolist() == [0, 0, 0, 0, 1]
    assert n.tolist() == [0, 0, 1, 0, 1]


def test_counts_stop_at_document_boundaries():
    # The second document's (2,1) would see two earlier 2s (n = 2) if documents ran together.
    doc, a, b = adjacent_pairs([np.array([2, 3, 2, 3]), np.array([2, 1])])
    assert a.tolist() == [2, 3, 2, 2] and b.tolist() == [3, 2, 3, 1]
    m, n = induction_counts(doc, a, b)
    assert m.tolist() == [0, 0, 1, 0]
    assert n.tolist() == [0, 0, 0, 0]


def test_prior_count():
    assert prior_count(np.array([5, 1, 5, 5, 1, 7])).tolist() == [0, 0, 1, 2, 1, 0]


def test_losses_and_decision_by_hand():
    # Vocabulary of 4, add-1 smoothing, β = 1. Pairs (2,3) (3,2) (2,3) | (2,1).
    # Bigram counts: C[2,3] = 2, C[2,1] = 1, C[3,2] = 1; rows: 2 → 3 pairs, 3 → 1 pair.
    # p(3|2) = (2+1)/(3+4) = 3/7, p(1|2) = (1+1)/7 = 2/7, p(2|3) = (1+1)/(1+4) = 2/5.
    # Only the second (2,3) has an earlier 2 (m = 1, n = 0):
    #   logits log(3/7) + 1 vs log(4/7) → loss −log(3e / (3e + 4)) = log(1 + 4/(3e)).
    docs = [np.array([2, 3, 2, 3]), np.array([2, 1])]
    stats = token_stats(docs, d_vocab=4, special=[0], beta=1.0, threshold=0.1, smoothing=1.0).set_index("token")
    bigram_2 = (2 * math.log(7 / 3) + math.log(7 / 2)) / 3
    heuristic_2 = (math.log(7 / 3) + math.log(1 + 4 / (3 * math.e)) + math.log(7 / 2)) / 3
    assert stats.loc[2, "count"] == 3
    assert stats.loc[2, "bigram_loss"] == pytest.approx(bigram_2)
    assert stats.loc[2, "heuristic_loss"] == pytest.approx(heuristic_2)
    assert stats.loc[2, "gain"] == pytest.approx(0.14939, abs=1e-4)  # (0.8473 − 0.3991) / 3
    assert stats.loc[3, "bigram_loss"] == pytest.approx(math.log(5 / 2))
    assert stats.loc[3, "gain"] == pytest.approx(0.0)  # one occurrence: nothing earlier to copy
    assert stats.loc[1, "count"] == 0 and np.isnan(stats.loc[1, "gain"])  # only ever a B
    assert stats.whitelisted.tolist() == [False, False, True, False]
    # The decision follows the threshold, and special tokens are never whitelisted.
    assert not token_stats(docs, 4, [0], 1.0, 0.2, 1.0).whitelisted.any()
    assert not token_stats(docs, 4, [2], 1.0, 0.1, 1.0).whitelisted.any()


def test_no_smoothing_and_a_certain_successor():
    # p(3|2) = 1: the not-B logit is −inf; both losses are 0, not NaN.
    stats = token_stats([np.array([2, 3, 2, 3])], 4, [0], beta=1.0, threshold=0.0, smoothing=0.0).set_index("token")
    assert stats.loc[2, "bigram_loss"] == 0.0 and stats.loc[2, "heuristic_loss"] == 0.0
    assert stats.loc[2, "whitelisted"]


def slow_stats(docs, d_vocab, special, beta, threshold, smoothing):
    """The appendix read literally, one pair at a time."""
    bigram = Counter((int(x), int(y)) for d in docs for x, y in zip(d[:-1], d[1:]))
    rows = Counter(int(x) for d in docs for x in d[:-1])
    losses = {}  # A → [(bigram loss, heuristic loss)]
    for d in docs:
        for i in range(len(d) - 1):
            a, b = int(d[i]), int(d[i + 1])
            p = (bigram[a, b] + smoothing) / (rows[a] + smoothing * d_vocab)
            m = sum(1 for j in range(i) if d[j] == a and d[j + 1] == b)
            n = sum(1 for j in range(i) if d[j] == a and d[j + 1] != b)
            yes, no = p * math.exp(beta * m), (1 - p) * math.exp(beta * n)
            losses.setdefault(a, []).append((-math.log(p), -math.log(yes / (yes + no))))
    out = {}
    for a, pairs in losses.items():
        bl = sum(x for x, _ in pairs) / len(pairs)
        hl = sum(y for _, y in pairs) / len(pairs)
        out[a] = (len(pairs), bl, hl, bl - hl >= threshold and a not in special)
    return out


def random_corpus(rng: np.random.Generator, d_vocab: int) -> list[np.ndarray]:
    """Documents with their own successor of each token (taken 60% of the time), so that earlier
    pairs of a document predict later ones, as in text; lengths 0 to 40."""
    docs = []
    for _ in range(6):
        successor = rng.integers(0, d_vocab, size=d_vocab)
        doc = [int(rng.integers(d_vocab))]
        for _ in range(40):
            doc.append(int(successor[doc[-1]]) if rng.random() < 0.6 else int(rng.integers(d_vocab)))
        docs.append(np.array(doc[: int(rng.integers(0, 41))]))
    return docs


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_a_plain_python_loop(seed):
    rng = np.random.default_rng(seed)
    d_vocab = int(rng.integers(4, 9))
    docs = random_corpus(rng, d_vocab)
    beta, smoothing = float(rng.uniform(0.2, 2)), float(rng.uniform(0.01, 1))
    special = [0]
    # A threshold in the widest gap between distinct gains, so that both decisions occur and are
    # checked, and no gain sits within the stored precision (1e-6 nats) of the threshold.
    gains = np.unique([bl - hl for _, bl, hl, _ in slow_stats(docs, d_vocab, special, beta, 0.0, smoothing).values()])
    k = int(np.argmax(np.diff(gains)))
    assert gains[k + 1] - gains[k] > 1e-4
    threshold = float(gains[k] + gains[k + 1]) / 2
    fast = token_stats(docs, d_vocab, special, beta, threshold, smoothing).set_index("token")
    slow = slow_stats(docs, d_vocab, special, beta, threshold, smoothing)
    assert set(fast.index[fast["count"] > 0]) == set(slow)
    assert {keep for *_, keep in slow.values()} == {True, False}
    for a, (count, bl, hl, keep) in slow.items():
        assert fast.loc[a, "count"] == count
        # stored at 6 decimals of a nat: within half a unit of the exact mean
        assert fast.loc[a, "bigram_loss"] == pytest.approx(bl, rel=0, abs=5e-7 + 1e-12)
        assert fast.loc[a, "heuristic_loss"] == pytest.approx(hl, rel=0, abs=5e-7 + 1e-12)
        assert fast.loc[a, "gain"] == np.round(fast.loc[a, "bigram_loss"] - fast.loc[a, "heuristic_loss"], 6)
        assert fast.loc[a, "whitelisted"] == keep
    assert not fast.loc[fast["count"] == 0, "whitelisted"].any()


def test_summary():
    stats = pd.DataFrame({"token": range(4), "count": [0, 10, 30, 60],
                          "whitelisted": [False, True, False, True]})
    positions = np.array([[0, 1, 1, 2], [3, 3, 2, 0]])
    summary = summarize(stats, positions)
    assert summary == {"count": 2, "share_of_vocab": 0.5, "share_of_train_pairs": 0.7,
                       "scored_positions": 4, "share_of_positions": 0.5}
    assert "share_of_positions" not in summarize(stats)


@pytest.mark.parametrize("param, value", [("beta", -1.0), ("smoothing", -0.5), ("threshold", float("nan"))])
def test_bad_params_name_the_parameter(param, value):
    kwargs = {"beta": 1.0, "threshold": 0.1, "smoothing": 0.01, param: value}
    with pytest.raises(ConfigError) as err:
        token_stats([np.array([2, 3])], 4, [0], **kwargs)
    assert err.value.param == f"whitelist.{param}"


# --- the stage -----------------------------------------------------------------------------------

def whitelist_project(tmp: Path, threshold: float) -> Path:
    """params.yaml and data/tokens/ small enough to read by eye: in document i, 2 is always
    followed by 3 + i, so the bigram p(B|2) is about 1/4 but induction knows B; 7 and 8 are
    random noise between the pairs."""
    rng = np.random.default_rng(0)
    docs = [np.concatenate([[2, 3 + i, *rng.integers(7, 9, size=2)] for _ in range(5)]) for i in range(4)]
    (tmp / "data/tokens").mkdir(parents=True)
    pd.DataFrame({"doc_id": [f"d{i}" for i in range(4)], "tokens": [d.tolist() for d in docs]}).to_parquet(
        tmp / "data/tokens/train.parquet", index=False)
    seqs = [np.array([0, 2, 3, 6, 7, 4, 9]), np.array([0, 6, 6, 7, 2, 3, 1])]
    pd.DataFrame({"seq_id": [0, 1], "doc_id": ["h0", "h1"], "offset": [0, 0], "tokens": seqs}).to_parquet(
        tmp / "data/tokens/sequences.parquet", index=False)
    (tmp / "data/tokens/meta.json").write_text(json.dumps({"begin_id": 0, "end_id": 1, "d_vocab": 10}))
    params = {"whitelist": {"beta": 1.0, "threshold": threshold, "smoothing": 0.01}}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def run_stage_in(cwd: Path) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "pipeline.stages.whitelist", cwd=cwd, env=one_thread(PYTHONPATH=str(ROOT)),
              check=False)


@pytest.mark.e2e
def test_stage_writes_the_table_and_summary(tmp_path):
    project = whitelist_project(tmp_path, threshold=0.1)
    result = run_stage_in(project)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(project / "data/whitelist/whitelist.parquet")
    assert list(table.columns) == ["token", "count", "bigram_loss", "heuristic_loss", "gain", "whitelisted"]
    assert len(table) == 10
    kept = set(table.token[table.whitelisted])
    assert 2 in kept and not kept & {0, 1}
    summary = json.loads((project / "data/whitelist/summary.json").read_text())
    # Input positions (the last token is only a target): 2 appears twice, 0 (BEGIN) twice.
    inputs = np.array([[0, 2, 3, 6, 7, 4], [0, 6, 6, 7, 2, 3]])
    expected = np.isin(inputs, list(kept)).sum()
    assert expected >= 2
    assert summary["scored_positions"] == expected
    assert summary["share_of_positions"] == rounded(expected / 12)  # six significant digits
    assert summary["count"] == len(kept)


@pytest.mark.e2e
def test_stage_with_nothing_scored_fails_and_writes_nothing(tmp_path):
    project = whitelist_project(tmp_path, threshold=100.0)
    result = run_stage_in(project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: whitelist.threshold: ")
    assert not (project / "data/whitelist").exists()
