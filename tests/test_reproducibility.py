"""The same bytes on every CPU (docs/reproducibility.md): a last-bit change upstream of what the
whitelist and the layer-0 cache write does not reach their bytes, numbers are written at the
stated precision, and only stages with CPU-stable outputs keep them out of git.

Another CPU changes a float64 result in its last bits (numpy's log and exp, torch's softmax and
matrix multiplies); here the same change is made by hand, one ulp up or down at random, so the
check runs on any machine. Each test also shows that the change would reach the bytes without
the rounding it checks, so that it cannot pass by perturbing nothing."""
from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
import torch

from pipeline.analysis import whitelist
from pipeline.outputs import SIGNIFICANT_DIGITS, rounded
from pipeline.scrub import engine
from pipeline.scrub.cache import write_cache
from tests.helpers import ROOT


def nudged(x, rng: np.random.Generator):
    """x (a float array or tensor) with each nonzero element moved one ulp of its dtype up or down
    at random. Zeros stay: they are exact on every CPU (a masked attention weight, an offset before
    the sequence's start), and a nudge down would make them −0.0, other bytes."""
    direction = rng.choice([-np.inf, np.inf], size=tuple(x.shape))
    if isinstance(x, torch.Tensor):
        return torch.where(x == 0, x, torch.nextafter(x, torch.from_numpy(direction).to(x.dtype)))
    return np.where(x == 0, x, np.nextafter(x, direction))


# --- the whitelist ---------------------------------------------------------------------------------

THRESHOLD = -0.5


def corpus(seed: int = 0, d_vocab: int = 64) -> list[np.ndarray]:
    """40 documents of 150 tokens, each with its own successor of each token 60% of the time: the
    gains of the 64 tokens spread over a nat."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(40):
        successor = rng.integers(0, d_vocab, size=d_vocab)
        doc = [int(rng.integers(d_vocab))]
        for _ in range(149):
            doc.append(int(successor[doc[-1]]) if rng.random() < 0.6 else int(rng.integers(d_vocab)))
        docs.append(np.array(doc))
    return docs


def whitelist_bytes(docs) -> bytes:
    """whitelist.parquet as the stage writes it, for a threshold some tokens pass and others not
    (about the median gain on this corpus)."""
    stats = whitelist.token_stats(docs, 64, [0], beta=1.0, threshold=THRESHOLD, smoothing=0.01)
    assert 0 < stats.whitelisted.sum() < (stats["count"] > 0).sum()
    buffer = io.BytesIO()
    stats.to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_a_last_bit_change_in_the_pair_losses_leaves_the_whitelist_bytes(monkeypatch):
    docs = corpus()
    exact = whitelist.pair_losses
    rng = np.random.default_rng(1)

    def perturbed(*args, **kwargs):  # another CPU's log, exp and log1p
        return tuple(nudged(x, rng) for x in exact(*args, **kwargs))

    expected = whitelist_bytes(docs)
    monkeypatch.setattr(whitelist, "pair_losses", perturbed)
    assert whitelist_bytes(docs) == expected
    # Not vacuous: with the means stored unrounded, the same perturbation changes the bytes.
    monkeypatch.setattr(whitelist, "stored_loss", lambda x: x)
    perturbed_unrounded = whitelist_bytes(docs)
    monkeypatch.setattr(whitelist, "pair_losses", exact)
    assert perturbed_unrounded != whitelist_bytes(docs)


def test_the_whitelist_stores_and_decides_at_the_stated_precision():
    stats = whitelist.token_stats(corpus(), 64, [0], beta=1.0, threshold=THRESHOLD, smoothing=0.01)
    seen = stats[stats["count"] > 0]
    for column in ("bigram_loss", "heuristic_loss", "gain"):
        values = seen[column].to_numpy()
        np.testing.assert_array_equal(values, np.round(values, whitelist.LOSS_DECIMALS), err_msg=column)
    np.testing.assert_array_equal(seen.gain, np.round(seen.bigram_loss - seen.heuristic_loss, whitelist.LOSS_DECIMALS))
    assert (seen.whitelisted == ((seen.gain >= THRESHOLD) & (seen.token != 0))).all()  # 0: special


# --- the layer-0 cache -----------------------------------------------------------------------------

def cache_bytes(model, tokens, folder, dtype: str = "float16") -> dict[str, bytes]:
    folder.mkdir()
    write_cache(folder, model, tokens, n_offsets=4, batch_size=4, dtype=dtype, progress=False)
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_last_bit_change_in_layer_0_leaves_the_cache_bytes(model, sequences, tmp_path, monkeypatch, dtype):
    tokens = sequences[:8, :121]  # 120 positions: 8 · 120 · 8 heads · 68 = 522,240 stored values
    expected = cache_bytes(model, tokens, tmp_path / "exact", dtype)
    rng = np.random.default_rng(0)
    exact = engine.layer0_cache

    def perturbed(*args, **kwargs):  # another CPU's matrix multiplies, softmax and layer norm
        return {key: nudged(value, rng) for key, value in exact(*args, **kwargs).items()}

    monkeypatch.setattr(engine, "layer0_cache", perturbed)
    assert cache_bytes(model, tokens, tmp_path / "perturbed", dtype) == expected
    # Not vacuous: computed in float32 (the model's own dtype), a last-bit change reaches float16's
    # rounding in ~1 value in 4,000 (a float32 cache's in every value), and the files differ.
    monkeypatch.setattr(engine, "float64_layer0", lambda m: m)
    assert cache_bytes(model, tokens, tmp_path / "float32", dtype) != expected


def test_the_cache_is_layer_0_in_float64_rounded_to_its_dtype(model, sequences):
    tokens = sequences[:3, :41]
    cache = engine.build_cache(model, tokens, n_offsets=4, batch_size=2, dtype=torch.float16, progress=False)
    with torch.no_grad():
        exact = engine.layer0_cache(copy.deepcopy(model).double(), tokens[:, :-1], 4)
    for key, value in cache.items():
        torch.testing.assert_close(value, exact[key].to(torch.float16), rtol=0, atol=0, msg=key)


# --- numbers written to git ------------------------------------------------------------------------

def test_rounded_keeps_six_significant_digits_of_every_float():
    assert SIGNIFICANT_DIGITS == 6
    metrics = {"loss": 3.16521648979237, "recovered": 63.70924724290627, "share": 0.015509278016368203,
               "small": 2.5e-07, "n": 5742, "ok": True, "name": "refined 2", "nan": float("nan"),
               "interval": [60.695064125516744, np.float32(67.04731758368774)], "nested": {"x": 98.23215864784338}}
    out = rounded(metrics)
    assert out["loss"] == 3.16522 and out["recovered"] == 63.7092 and out["share"] == 0.0155093
    assert out["small"] == 2.5e-07 and out["interval"] == [60.6951, 67.0473] and out["nested"] == {"x": 98.2322}
    assert out["n"] == 5742 and out["ok"] is True and out["name"] == "refined 2" and math.isnan(out["nan"])
    assert type(out["interval"][1]) is float  # json writes it
    assert json.dumps(rounded(out)) == json.dumps(out)  # rounding twice changes nothing


def test_a_change_below_the_precision_leaves_the_written_json():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 100, size=1000)
    assert json.dumps(rounded(values.tolist())) == json.dumps(rounded(nudged(values, rng).tolist()))


# --- what a fresh clone rebuilds ---------------------------------------------------------------------

def test_only_stages_with_cpu_stable_outputs_keep_them_out_of_git():
    """A fresh clone has only what git holds: it reruns exactly the stages with an output in DVC's
    cache. Those are the ones whose bytes do not depend on the CPU (the tests above); every stage
    after them (heads, scrubs, sweeps, the report) keeps all of its outputs in git, so it is found up
    to date and nothing committed is rewritten."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stages = {stage.addressing.split("@")[0] for stage in repo.index.stages
                  if any(out.use_cache for out in stage.outs)}
    assert stages == {"corpus", "tokenize", "whitelist", "pairing", "cache_l0"}
