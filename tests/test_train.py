"""The training rows: BEGIN + stream window, a random span pasted twice, and the curriculum
(short rows over a small alphabet first, then full rows over a growing one)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.train import RowSampler, TrainConfig

BEGIN, FIRST_PLAIN, VOCAB, N_CTX = 0, 2, 100, 40
STREAM = np.full(5000, 7, dtype=np.int64)  # one ordinary token: spans stand out against it
STREAM[::50] = 1  # END, which spans must never use


def sampler(**kw) -> RowSampler:
    cfg = TrainConfig(batch_size=4, repeat_share=1.0, repeat_span=(8, 12), **kw)
    return RowSampler(STREAM, N_CTX, BEGIN, FIRST_PLAIN, VOCAB, cfg)


def test_rows_start_with_begin_and_repeat_one_span():
    rows = sampler()(0)
    assert rows.shape == (4, N_CTX + 1) and (rows[:, 0] == BEGIN).all()
    for row in rows.numpy():
        pasted = np.flatnonzero((row != 7) & (row != 1))[1:]  # without BEGIN
        values = row[pasted]
        # two copies of one span of 8 to 12 tokens (a random token equal to 7 may hide in it)
        assert 0 < len(values) <= 24 and (values >= FIRST_PLAIN).all()
        assert any(np.array_equal(row[i : i + 8], row[j : j + 8]) for i in pasted for j in pasted if j >= i + 8)


def test_the_same_seed_gives_the_same_rows():
    a, b = sampler(), sampler()
    for step in range(3):
        assert torch.equal(a(step), b(step))
    assert not torch.equal(sampler(seed=1)(0), sampler()(0))


def test_short_rows_first_with_as_many_tokens_per_step():
    s = sampler(short_steps=5, short_len=20)
    assert s(0).shape == (4 * N_CTX // 20, 21)
    assert s(4).shape == (8, 21)
    assert s(5).shape == (4, N_CTX + 1)


def test_the_span_alphabet_grows_from_the_most_frequent_tokens_to_every_ordinary_token():
    s = sampler(short_steps=10, short_len=20, alphabet_start=3, alphabet_grow_steps=100)
    # token 7 is the most frequent, then the rest by id: 2, 3
    assert list(s.by_frequency[:3]) == [7, 2, 3] and len(s.by_frequency) == VOCAB - FIRST_PLAIN
    assert [s.alphabet(step) for step in (0, 10, 60, 110, 500)] == [3, 3, 50, 98, 98]
    early = torch.cat([s(step).flatten() for step in range(10)])
    assert set(early.tolist()) <= {BEGIN, 1, 7, 2, 3}
    late = torch.cat([s(step).flatten() for step in range(200, 210)])
    assert len(set(late.tolist())) > 20


def test_short_rows_must_fit_the_spans_and_the_context():
    with pytest.raises(ValueError, match="short_len=10"):
        sampler(short_steps=5, short_len=10)
    with pytest.raises(ValueError, match="short_len=80"):
        sampler(short_steps=5, short_len=80)


def test_short_rows_start_anywhere_in_the_context_and_full_rows_at_zero():
    s = sampler(short_steps=200, short_len=20)
    firsts = [s.first_position(step) for step in range(200)]
    assert min(firsts) == 0 and max(firsts) == N_CTX - 20
    assert firsts == [sampler(short_steps=200, short_len=20).first_position(step) for step in range(200)]
    assert s.first_position(200) == 0
