"""The layer-0 cache on disk: written batch by batch, read memory-mapped (and element by element
for a resampled source of a large file), the same numbers as the cache held in memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline.scrub.engine as engine
from pipeline.config.hypothesis import parse_hypothesis
from pipeline.scrub.cache import load_cache, write_cache
from pipeline.scrub.engine import build_cache, scrub_losses

ROLES = {"prev": "0.0", "self": ["0.1"], "induction": ["1.5", "1.6"]}
DRAWN = {"embedding": "clean", "heads": {"all": {"mask": "last3", "inside": {"pattern": "drawn", "values": "clean"},
                                                  "outside": "drawn"}}}
# K reads one head (prev) masked from the drawn sequences: the gather of only that head's elements
HYPOTHESIS = {"resample": {"drawn": {"classes": {"x": {"current_token": ["."]}}}},
              "q": DRAWN, "k": {"embedding": "other", "heads": {"all": "drawn", "prev": DRAWN["heads"]["all"]}},
              "v": {"embedding": "clean", "heads": {**DRAWN["heads"], "prev": "clean"}}}


@pytest.fixture(scope="module")
def files(model, sequences, tmp_path_factory):
    tokens = sequences[:10, :120]
    folder = tmp_path_factory.mktemp("cache")
    shapes = write_cache(folder, model, tokens, n_offsets=4, batch_size=4, dtype="float32", progress=False)
    return tokens, folder, shapes


def test_written_cache_equals_the_cache_in_memory(model, files):
    tokens, folder, shapes = files
    on_disk = load_cache(folder)
    in_memory = build_cache(model, tokens, n_offsets=4, batch_size=3, dtype=torch.float32, progress=False)
    for key, shape in shapes.items():
        assert isinstance(on_disk[key], np.memmap) and on_disk[key].shape == shape
        np.testing.assert_array_equal(np.asarray(on_disk[key]), in_memory[key].numpy())


# 0: every scattered read is a file read, and pages are released after every batch
@pytest.mark.parametrize("limit", [engine.SCATTERED_MMAP_LIMIT, 0])
def test_scrubs_read_the_files_as_they_read_memory(model, files, monkeypatch, limit):
    tokens, folder, _ = files
    monkeypatch.setattr(engine, "SCATTERED_MMAP_LIMIT", limit)
    monkeypatch.setattr(engine, "RELEASE_LIMIT", limit)
    n_seq, n_pos = len(tokens), tokens.shape[1] - 1
    draws = np.random.default_rng(0).integers(0, n_seq, size=(n_seq, n_pos))  # any sequence, per position
    other = np.roll(np.arange(n_seq), 3)
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, 1:-1].numpy())[::3]] = True
    hypothesis = parse_hypothesis("t", HYPOTHESIS)
    args = (tokens, other, hypothesis, ROLES, scored, ["q", "k", "v", "all"], {"drawn": draws})
    from_files = scrub_losses(model, load_cache(folder), *args, batch_size=4, progress=False)
    in_memory = build_cache(model, tokens, n_offsets=4, batch_size=4, dtype=torch.float32, progress=False)
    expected = scrub_losses(model, in_memory, *args, batch_size=4, progress=False)
    for name, losses in expected.items():
        np.testing.assert_array_equal(from_files[name].loss, losses.loss)
        np.testing.assert_array_equal(from_files[name].seq, losses.seq)
    assert np.abs(expected["all"].loss - expected["original"].loss).max() > 1e-3  # the scrub did something


def test_the_search_releases_a_large_cache_after_every_batch(model, files, monkeypatch):
    """The search's evaluator reads the memory-mapped cache as it reads memory and, for a cache
    over RELEASE_LIMIT (0 here), hands its pages back after every batch: else a pass over the
    held-out half leaves the whole cache resident (Redwood's setting: several GiB)."""
    from pipeline.scrub import search

    tokens, folder, _ = files
    monkeypatch.setattr(engine, "RELEASE_LIMIT", 0)
    released = []
    monkeypatch.setattr(search, "_release", lambda cache: released.append(engine._release(cache)))
    other = np.roll(np.arange(len(tokens)), 3)
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, 1:-1].numpy())[::3]] = True
    points = list(search.references(model.cfg.n_heads))
    rows = np.arange(len(tokens))
    in_memory = build_cache(model, tokens, n_offsets=4, batch_size=4, dtype=torch.float32, progress=False)
    sums = {}
    for name, cache in (("files", load_cache(folder)), ("memory", in_memory)):
        evaluator = search.Evaluator(model, cache, tokens.numpy(), other, scored, ROLES, batch_size=4)
        sums[name] = evaluator.loss_sums(points, rows)
    np.testing.assert_array_equal(sums["files"], sums["memory"])
    assert len(released) == 2 * 3  # each call: 10 sequences in batches of 4
