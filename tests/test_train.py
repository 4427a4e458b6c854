"""The training rows: BEGIN + stream window, a random span pasted twice, and the curriculum
(short rows over a small alphabet first, then longer rows over a wider one); the training init
(sinusoidal positions, a seeded previous-token head)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.analysis.scores import layer_patterns, previous_token_score
from pipeline.model import AttnOnlyTransformer, ModelConfig
from pipeline.weights.train import (
    RowSampler,
    TrainConfig,
    initialise_for_training,
    sinusoidal_positions,
    train,
)

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
    s = sampler(short_steps=10, short_len=20, alphabet_start=3, grow_steps=100)
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


def test_rows_lengthen_from_short_len_to_n_ctx_in_steps_of_16():
    s = sampler(short_steps=10, short_len=20, grow_steps=100)
    lengths = [s.row_length(step) for step in range(150)]
    assert lengths[:11] == [20] * 11 and lengths[110:] == [N_CTX] * 40
    assert lengths == sorted(lengths) and set(lengths) == {20, 36, N_CTX}
    assert s(100).shape == (4 * N_CTX // 36, 37)
    assert sampler().row_length(0) == N_CTX  # no curriculum: full rows from the start


def test_sinusoidal_positions_have_unit_mean_square_and_shift_by_a_rotation():
    w_pos, frequencies = sinusoidal_positions(50, 16)
    assert w_pos.shape == (50, 16) and (0 < frequencies).all() and (frequencies < torch.pi).all()
    torch.testing.assert_close(w_pos.pow(2).mean(dim=1), torch.ones(50))
    c, s = np.cos(frequencies[3].item()), np.sin(frequencies[3].item())
    rotated = torch.stack([w_pos[:-1, 6] * c + w_pos[:-1, 7] * s, w_pos[:-1, 7] * c - w_pos[:-1, 6] * s], 1)
    torch.testing.assert_close(rotated, w_pos[1:, 6:8], atol=1e-5, rtol=0)


def test_the_seeded_head_attends_to_the_previous_token_and_only_head_0_0_changes():
    torch.manual_seed(0)
    cfg = ModelConfig(d_vocab=VOCAB, n_ctx=N_CTX)
    plain, seeded = AttnOnlyTransformer(cfg), AttnOnlyTransformer(cfg)
    seeded.load_state_dict(plain.state_dict())
    initialise_for_training(seeded, TrainConfig(positions="sinusoidal", seed_prev_head=1.5))
    tokens = torch.randint(FIRST_PLAIN, VOCAB, (8, N_CTX))
    prev = previous_token_score(layer_patterns(seeded, tokens)[0])
    assert prev[0] > 0.4 and (prev[1:] < 0.2).all()
    assert previous_token_score(layer_patterns(plain, tokens)[0]).max() < 0.2
    for name, p in seeded.named_parameters():
        q = dict(plain.named_parameters())[name]
        if name in ("blocks.0.attn.W_Q", "blocks.0.attn.W_K"):
            assert torch.equal(p[1:], q[1:]) and not torch.equal(p[0], q[0])
        elif name != "W_pos":
            assert torch.equal(p, q), name


def test_position_scale_shrinks_w_pos_but_not_the_seeded_heads_attention():
    """The seeded head's query and key weights grow by 1 / position_scale, so its attention logits
    from positions, and hence its pattern on the positional part, start as at scale 1."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_vocab=VOCAB, n_ctx=N_CTX)
    full, small = AttnOnlyTransformer(cfg), AttnOnlyTransformer(cfg)
    small.load_state_dict(full.state_dict())
    initialise_for_training(full, TrainConfig(positions="sinusoidal", seed_prev_head=1.5))
    initialise_for_training(small, TrainConfig(positions="sinusoidal", seed_prev_head=1.5, position_scale=0.25))
    torch.testing.assert_close(small.W_pos, full.W_pos * 0.25)
    attn_full, attn_small = full.blocks[0].attn, small.blocks[0].attn
    # head 0.0's logits from position rows alone: (p W_Q)(p W_K)ᵀ
    logits = [(m.W_pos @ a.W_Q[0]) @ (m.W_pos @ a.W_K[0]).T for m, a in ((full, attn_full), (small, attn_small))]
    torch.testing.assert_close(logits[1], logits[0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(attn_small.W_Q[1:], attn_full.W_Q[1:])  # the other heads untouched
    with pytest.raises(ValueError, match="position_scale needs positions=sinusoidal"):
        initialise_for_training(AttnOnlyTransformer(cfg), TrainConfig(position_scale=0.5))


def test_private_seed_dims_keep_the_seeded_head_on_positions_when_they_are_small():
    """With small positions the seeded head reads mostly tokens and starts attending anywhere;
    with the token embeddings zero where it reads, it starts on the previous token again."""
    cfg = ModelConfig(d_vocab=VOCAB, n_ctx=N_CTX)
    tokens = torch.randint(FIRST_PLAIN, VOCAB, (8, N_CTX))
    prev = {}
    for private in (False, True):
        torch.manual_seed(0)
        model = AttnOnlyTransformer(cfg)
        initialise_for_training(model, TrainConfig(positions="sinusoidal", seed_prev_head=1.5, position_scale=0.25,
                                                   private_seed_dims=private))
        prev[private] = previous_token_score(layer_patterns(model, tokens)[0])[0].item()
        zero_columns = (model.W_E == 0).all(dim=0)
        assert zero_columns.sum().item() == (2 * (model.blocks[0].attn.W_Q.shape[-1] // 2) if private else 0)
    assert prev[True] > 0.4 and prev[True] > 2 * prev[False]
    with pytest.raises(ValueError, match="private_seed_dims needs seed_prev_head"):
        initialise_for_training(AttnOnlyTransformer(cfg), TrainConfig(positions="sinusoidal", private_seed_dims=True))


def test_training_init_rejects_unknown_positions_and_a_seed_without_sinusoids():
    model = AttnOnlyTransformer(ModelConfig(d_vocab=VOCAB, n_ctx=N_CTX))
    with pytest.raises(ValueError, match="'normal' or 'sinusoidal'.*input_value='rope'"):  # TrainConfig refuses it
        initialise_for_training(model, TrainConfig(positions="rope"))
    with pytest.raises(ValueError, match="seed_prev_head needs positions=sinusoidal"):
        initialise_for_training(model, TrainConfig(seed_prev_head=1.0))


def test_training_twice_on_two_threads_gives_the_same_weights():
    """Multi-threaded CPU training is bit-for-bit repeatable (the same params, the same model)."""
    stream = np.random.default_rng(0).integers(FIRST_PLAIN, VOCAB, size=5000)
    cfg = TrainConfig(steps=12, batch_size=4, lr=1e-2, repeat_share=1.0, repeat_span=(4, 8),
                      positions="sinusoidal", seed_prev_head=1.0, short_steps=4, short_len=16,
                      grow_steps=4, alphabet_start=8, bf16=False)

    def weights() -> torch.Tensor:
        torch.manual_seed(0)
        model = AttnOnlyTransformer(ModelConfig(d_vocab=VOCAB, n_ctx=N_CTX))
        initialise_for_training(model, cfg)
        train(model, RowSampler(stream, N_CTX, BEGIN, FIRST_PLAIN, VOCAB, cfg), cfg)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = weights(), weights()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, second)
    assert not torch.are_deterministic_algorithms_enabled()  # training leaves the global flag as it was
