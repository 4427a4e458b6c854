"""Conditional resampling (bonus 5's typicality): token rules → classes per position → a sequence
drawn per position among those whose same position is in the same class."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config.hypothesis import Resampler
from pipeline.scrub.resample import classify_positions, draw_matching, resolve_rules

# A toy tokenizer: one token per known word, a "quote" that splits into two byte tokens.
VOCAB = {" a": 1, " an": 2, ".": 3, " to": 4, " cat": 5, "x": 6}
QUOTE_PIECES = {"”": [7, 8]}


def encode(text: str) -> list[int]:
    if text in QUOTE_PIECES:
        return QUOTE_PIECES[text]
    if text in VOCAB:
        return [VOCAB[text]]
    return [VOCAB[w] for w in text.split("|")]  # "a|b": a string that is several tokens


def test_resolve_rules_single_tokens_and_pieces():
    resampler = Resampler(classes={
        "atypical": {"previous_token_piece_of": ["”"], "previous_token": [" a", " to|.", " an"],
                     "current_token": [".", " to"]},
        "rare": {"current_token": ["x"]},
    })
    atypical, rare = resolve_rules(resampler, encode)
    # Every piece of a split character counts; a multi-token string under *_token cannot match.
    assert atypical == {"previous": {7, 8, 1, 2}, "current": {3, 4}}
    assert rare == {"previous": set(), "current": {6}}


def test_classify_positions_on_hand_made_tokens():
    classes = [{"previous": {1}, "current": {3}},   # class 0
               {"previous": set(), "current": {5}}]  # class 1; neither: 2
    tokens = np.array([[3, 1, 5, 5, 3, 6],
                       [5, 6, 1, 3, 6, 1]])
    expected = np.array([[0, 2, 0, 1, 0, 2],   # t=0 has no previous token: class of `3` itself
                         [1, 2, 2, 0, 2, 2]])  # t=3: previous 1 and current 3 both say class 0
    np.testing.assert_array_equal(classify_positions(tokens, classes), expected)
    # The first matching class wins: position (0, 2) is previous-token 1 (class 0) and current 5 (class 1).
    assert classify_positions(tokens, classes)[0, 2] == 0


@pytest.fixture
def classes() -> np.ndarray:
    """[seq, pos] classes with every case: big classes, pairs, and a sequence alone in its class."""
    rng = np.random.default_rng(5)
    c = rng.integers(0, 3, size=(40, 60))
    c[7, 10] = 9   # alone in class 9 at position 10
    c[:2, 20] = 8  # a pair at position 20
    c[2:, 20] = 0
    return c


def test_draws_share_the_class_and_avoid_the_sequence_itself(classes):
    drawn = draw_matching(classes, seed=0)
    n_seq, n_pos = classes.shape
    assert drawn.shape == classes.shape
    assert ((0 <= drawn) & (drawn < n_seq)).all()
    np.testing.assert_array_equal(classes[drawn, np.arange(n_pos)[None, :]], classes)
    alone = np.array([[(classes[:, t] == classes[n, t]).sum() == 1 for t in range(n_pos)] for n in range(n_seq)])
    itself = drawn == np.arange(n_seq)[:, None]
    np.testing.assert_array_equal(itself, alone)  # itself exactly where no other member exists
    assert drawn[7, 10] == 7
    assert drawn[0, 20] == 1 and drawn[1, 20] == 0


def test_draws_are_seeded(classes):
    np.testing.assert_array_equal(draw_matching(classes, seed=3), draw_matching(classes, seed=3))
    assert (draw_matching(classes, seed=3) != draw_matching(classes, seed=4)).mean() > 0.5


def test_draws_are_spread_over_the_class():
    """Uniform among the other members: with one class of 5 at every position, each sequence
    draws each of the 4 others about a quarter of the time."""
    drawn = draw_matching(np.zeros((5, 4000), dtype=np.int64), seed=1)
    for n in range(5):
        share = np.bincount(drawn[n], minlength=5) / 4000
        assert share[n] == 0
        np.testing.assert_allclose(np.delete(share, n), 0.25, atol=0.03)
