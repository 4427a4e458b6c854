"""pipeline.data.pairing: a seeded derangement, and the stage on a scratch project."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.data.pairing import pair_sequences
from pipeline.errors import ConfigError
from tests.helpers import ROOT
from tests.helpers.shell import one_thread, sh


@pytest.mark.parametrize("n", [2, 3, 7, 1230])
def test_a_derangement(n):
    for seed in range(20):
        other = pair_sequences(n, seed)
        assert other.shape == (n,)
        assert not (other == np.arange(n)).any()  # nobody is paired with itself
        assert sorted(other.tolist()) == list(range(n))  # everyone is someone's partner once


def test_deterministic_for_a_seed_and_different_across_seeds():
    assert np.array_equal(pair_sequences(100, 3), pair_sequences(100, 3))
    assert not np.array_equal(pair_sequences(100, 3), pair_sequences(100, 4))


def test_every_derangement_of_three_occurs():
    # The two derangements of 3 are the two 3-cycles; a sampler that, say, always drew one
    # cycle direction would miss the other.
    drawn = {tuple(pair_sequences(3, seed)) for seed in range(40)}
    assert drawn == {(1, 2, 0), (2, 0, 1)}


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_sequences(n):
    with pytest.raises(ConfigError) as err:
        pair_sequences(n, 0)
    assert err.value.param == "sequences"


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
def test_bad_seed(seed):
    with pytest.raises(ConfigError) as err:
        pair_sequences(10, seed)
    assert err.value.param == "pairing.seed"


@pytest.mark.e2e
def test_stage(tmp_path):
    (tmp_path / "data/tokens").mkdir(parents=True)
    # seq_ids that are not row numbers: the output must map partners through them.
    seq_ids = np.array([10, 11, 12, 13, 14])
    pd.DataFrame({"seq_id": seq_ids, "doc_id": ["d"] * 5, "offset": range(5),
                  "tokens": [np.array([0, 2, 3])] * 5}).to_parquet(tmp_path / "data/tokens/sequences.parquet", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"pairing": {"seed": 7}}))
    result = sh(sys.executable, "-m", "pipeline.stages.pairing", cwd=tmp_path, env=one_thread(PYTHONPATH=str(ROOT)),
                check=False)
    assert result.returncode == 0, result.stderr
    pairing = pd.read_parquet(tmp_path / "data/pairing/pairing.parquet")
    assert list(pairing.columns) == ["seq_id", "other_seq_id"]
    assert pairing.seq_id.tolist() == seq_ids.tolist()
    assert pairing.other_seq_id.tolist() == seq_ids[pair_sequences(5, 7)].tolist()
