"""The head views of the heads stage (pipeline/analysis/head_views.py, pipeline/stages/heads.py): relative
attention is what its definition says, computed by hand from a pattern; a head's row sums to at
most 1; the example sequence has the repeated token its rule states, and the same seed picks the
same one; the stage writes every view."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import paths
from pipeline.analysis.head_views import (
    earlier_copies,
    pick_example,
    relative_attention,
    repeat_candidates,
)
from pipeline.analysis.scores import head_scores, layer_patterns, repeated_random_tokens
from pipeline.config.heads import parse_head_name
from pipeline.data.tokenizer import train_bpe
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.stages import heads as heads_stage

VIEWS = {"max_offset": 5, "window": 12, "seed": 0}
TARGET = paths.ModelPaths("data/model", 0)  # where the views of seed 0 go


def sharp_model(d_vocab: int = 300, n_ctx: int = 40, seed: int = 0) -> AttnOnlyTransformer:
    """A tiny random model whose layer-0 attention is peaked (queries scaled up), so that
    different offsets get clearly different attention and an off-by-one shows."""
    torch.manual_seed(seed)
    model = AttnOnlyTransformer(ModelConfig(d_vocab=d_vocab, n_ctx=n_ctx, d_model=32, n_heads=4, d_head=8)).eval()
    with torch.no_grad():
        model.blocks[0].attn.W_Q.mul_(6)
    return model


def by_hand(pattern: torch.Tensor, max_offset: int) -> np.ndarray:
    """relative_attention's definition, as loops: [head, offset]."""
    batch, n_heads, n_pos, _ = pattern.shape
    out = np.zeros((n_heads, max_offset + 1))
    for h in range(n_heads):
        for k in range(max_offset + 1):
            values = [float(pattern[b, h, t, t - k]) for b in range(batch) for t in range(max_offset, n_pos)]
            out[h, k] = sum(values) / len(values)
    return out


def test_relative_attention_is_the_mean_over_queries_by_hand_on_a_tiny_model():
    model = sharp_model()
    tokens = torch.randint(2, 300, (3, 20))
    pattern = layer_patterns(model, tokens)[0]  # [batch, head, q, k]
    got = relative_attention(pattern, 6).numpy()
    want = by_hand(pattern, 6)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the peaked model makes the check discriminating: offsets differ, so a shifted index would not pass
    assert np.ptp(want, axis=1).max() > 0.1


def test_a_heads_attention_over_offsets_sums_to_at_most_one():
    n_pos = 12
    causal = torch.ones(n_pos, n_pos).tril().bool()
    logits = torch.randn(4, 3, n_pos, n_pos) * 4
    random = logits.masked_fill(~causal, float("-inf")).softmax(dim=-1)
    # Every query on position 0 (BEGIN, a head with nothing to do): averaged over different
    # queries per offset, this head's offsets would sum to ≈ 2.
    sink = torch.zeros(1, 1, n_pos, n_pos)
    sink[..., 0] = 1
    for pattern in (random, sink):
        for max_offset in (0, 3, n_pos - 2, n_pos - 1):
            sums = relative_attention(pattern, max_offset).sum(dim=-1)
            assert (sums <= 1 + 1e-6).all(), (max_offset, sums)
    # offsets up to the last position cover every key of the one query left: exactly 1
    torch.testing.assert_close(relative_attention(random, n_pos - 1).sum(dim=-1), torch.ones(3))
    with pytest.raises(ValueError, match="max_offset=12"):
        relative_attention(random, n_pos)


def brute_force_candidates(tokens: np.ndarray, allowed: np.ndarray, window: int) -> set[tuple[int, int, int]]:
    found = set()
    for row, x in enumerate(tokens):
        for t in range(len(x) - 1):
            earlier = [s for s in range(t) if x[s] == x[t]]
            if allowed[x[t]] and len(earlier) == 1:
                s = earlier[0]
                if 2 <= t - s <= window - 2 and x[s + 1] == x[t + 1]:
                    found.add((row, t, s))
    return found


@pytest.mark.parametrize("seed", range(3))
def test_the_example_candidates_are_exactly_the_repeats_the_rule_states(seed):
    rng = np.random.default_rng(seed)
    # a small vocabulary of A B pairs: many repeats, many repeated bigrams, some tokens repeating twice
    tokens = rng.integers(0, 12, size=(20, 30))
    allowed = rng.random(12) < 0.7
    for window in (4, 8, 30):
        got = {tuple(int(v) for v in c) for c in repeat_candidates(tokens, allowed, window)}
        assert got == brute_force_candidates(tokens, allowed, window)
    assert got, "the random tokens should give candidates"
    counts = earlier_copies(tokens)
    for row, t in [(0, 29), (5, 13), (19, 0)]:
        assert counts[row, t] == int((tokens[row, :t] == tokens[row, t]).sum())


def test_the_example_has_its_repeated_token_and_is_the_same_for_a_seed():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 40, size=(50, 60))
    allowed = np.ones(40, dtype=bool)
    candidates = repeat_candidates(tokens, allowed, 16)
    picks = set()
    for seed in range(10):
        example = pick_example(candidates, 16, seed)
        assert example == pick_example(candidates, 16, seed)
        x, t, s = tokens[example.row], example.query, example.earlier
        assert x[t] == x[s] and x[t + 1] == x[s + 1] and (x[:t] == x[t]).sum() == 1
        assert example.start <= s < s + 1 < t < example.stop == t + 2
        assert example.stop - example.start <= 16
        picks.add((example.row, t))
    assert len(picks) > 1, "the seed should choose among the candidates"
    assert pick_example(candidates[:0], 16, 0) is None


@pytest.fixture
def stage_folder(tmp_path, monkeypatch):
    """A scratch folder with the inputs the views read: a tokenizer, experiment sequences, a
    whitelist; and a tiny sharp model with its scores."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / paths.TOKENS).mkdir(parents=True)
    (tmp_path / "data/whitelist").mkdir(parents=True)
    tokenizer = train_bpe(["the cat sat on the mat, and the dog sat on the log."] * 20, 300)
    tokenizer.save(paths.TOKENIZER)
    rng = np.random.default_rng(0)
    n_seq, n_pos = 12, 33  # BEGIN + 31 tokens + 1 target
    rows = np.concatenate([np.zeros((n_seq, 1), dtype=np.int64), rng.integers(2, 40, size=(n_seq, n_pos - 1))], axis=1)
    rows[::2, [10, 11, 20, 21]] = [41, 42, 41, 42]  # A B … A B, tokens found nowhere else
    pd.DataFrame({"seq_id": np.arange(100, 100 + n_seq), "tokens": list(rows)}).to_parquet(paths.SEQUENCES)
    d_vocab = tokenizer.get_vocab_size()
    pd.DataFrame({"token": np.arange(d_vocab), "whitelisted": np.arange(d_vocab) % 3 != 0}).to_parquet(paths.WHITELIST)
    model = sharp_model(d_vocab=d_vocab)
    heldout = torch.from_numpy(rows[:8, :-1]).long()
    scores = head_scores(model, heldout, repeated_random_tokens(4, 10, range(2, d_vocab), 0, seed=0), 10)
    roles = {"prev": "0.1", "self": ["0.2"], "induction": ["1.0", "1.3"]}
    return model, scores, roles, heldout, rows


def test_the_stage_writes_every_view_and_its_numbers_are_the_patterns(stage_folder):
    model, scores, roles, heldout, rows = stage_folder
    heads_stage.write_views(TARGET, model, VIEWS, scores, roles, heldout)
    for figure in (TARGET.head_scores_figure, TARGET.head_example_figure, TARGET.relative_figure):
        with open(figure, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", figure
    table = pd.read_csv(TARGET.relative_attention, dtype={"head": str})  # "0.10" is head 10, not 0.1
    assert list(table.columns) == ["head", "offset", "attention"]
    assert sorted(table["head"].unique()) == ["0.0", "0.1", "0.2", "0.3"]
    assert (table.groupby("head").attention.sum() <= 1 + 1e-5).all()
    want = by_hand(layer_patterns(model, heldout)[0], VIEWS["max_offset"])
    got = table.pivot(index="head", columns="offset", values="attention").to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)

    views = json.loads(open(TARGET.head_views).read())
    example = views["example"]
    row = example["seq_id"] - 100
    x, t, s = rows[row], example["query"], example["earlier"]
    assert x[t] == x[s] == example["token"] and x[t + 1] == x[s + 1] and x[t] % 3 != 0  # whitelisted
    assert "default_rng(0)" in example["rule"]
    pattern = layer_patterns(model, torch.from_numpy(x[None, :-1]).long())
    for head, at in example["attention_at_query"].items():
        layer, h = parse_head_name(head)
        assert at["to_token_after_copy"] == pytest.approx(float(pattern[layer][0, h, t, s + 1]), abs=1e-6)
    assert set(example["attention_at_query"]) == {"0.1", "0.2", "1.0", "1.3"}

    # the same inputs and seed: the same example
    heads_stage.write_views(TARGET, model, VIEWS, scores, roles, heldout)
    assert json.loads(open(TARGET.head_views).read()) == views


def test_an_offset_beyond_the_sequences_is_an_error_naming_the_parameter(stage_folder):
    model, scores, roles, heldout, _ = stage_folder
    with pytest.raises(heads_stage.ConfigError, match="heads.views.max_offset"):
        heads_stage.write_views(TARGET, model, {**VIEWS, "max_offset": heldout.shape[1]}, scores, roles, heldout)
