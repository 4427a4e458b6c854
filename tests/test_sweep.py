"""The sweep stage (pipeline/stages/sweep.py): refined 2's Q and K with the layer-0 mask varied.

On the committed model and four real held-out sequences (as tests/test_scrub_engine.py), against
the engine run directly on refined 2 as the scrub stage runs it; the whole stage on the tiny preset
is in tests/test_pipeline_tiny.py.
"""
from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import yaml

from pipeline.config import schema
from pipeline.config.hypothesis import parse_hypothesis
from pipeline.errors import ConfigError
from pipeline.scrub.engine import build_cache, scrub_losses
from pipeline.scrub.stats import summarize
from pipeline.scrub.sweep import COLUMNS, masks, sweep
from tests.helpers import ROOT
from tests.helpers.shell import sh

REFINED2 = yaml.safe_load((ROOT / "conf/hypothesis/refined2.yaml").read_text())
ROLES = {"prev": "0.0", "self": [], "induction": ["1.5", "1.4", "1.0", "1.6"]}
N_OFFSETS = 4
SAMPLES, SEED = 200, 0


@pytest.fixture(scope="module")
def setup(model, sequences):
    import torch

    tokens = sequences[:4, :201].numpy()  # 200 inputs + 1 target
    cache = build_cache(model, torch.from_numpy(tokens), n_offsets=N_OFFSETS, batch_size=2, dtype=torch.float32,
                        progress=False)
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[np.unique(tokens[:, :-1])[::2]] = True  # half the tokens that occur
    return {"model": model, "cache": cache, "tokens": tokens, "other": np.array([2, 3, 1, 0]), "scored": scored}


@pytest.fixture(scope="module")
def frame(setup):
    s = setup
    return sweep(s["model"], s["cache"], s["tokens"], s["other"], REFINED2, ROLES, s["scored"], max_offset=2,
                 batch_size=2, bootstrap_samples=SAMPLES, seed=SEED, quiet=True)


def row(frame, part: str, kind: str, offsets: str):
    found = frame[(frame.part == part) & (frame.kind == kind) & (frame.offsets == offsets)]
    assert len(found) == 1, (part, kind, offsets)
    return found.iloc[0]


def test_rows_are_every_part_kind_and_mask(frame):
    assert list(frame.columns) == COLUMNS
    assert list(frame.offsets) == ["0", "0,1", "0,1,2", "0", "1", "2"] * 2
    assert list(frame.part) == ["q"] * 6 + ["k"] * 6
    assert list(frame.kind) == (["cumulative"] * 3 + ["single"] * 3) * 2
    assert masks(1) == [("cumulative", (0,)), ("cumulative", (0, 1)), ("single", (0,)), ("single", (1,))]


def test_cumulative_mask_012_is_refined2_as_the_scrub_stage_computes_it(setup, frame):
    """Refined 2's `last3` is the offsets {0, 1, 2}: its scrub-stage numbers (engine run on the
    hypothesis file itself, all four parts, summarized alike) are the sweep's {0,1,2} rows."""
    s = setup
    losses = scrub_losses(s["model"], s["cache"], s["tokens"], s["other"], parse_hypothesis("refined2", REFINED2),
                          ROLES, s["scored"], ["q", "k", "v", "all"], batch_size=2, progress=False)
    metrics = summarize(losses, ["q", "k", "v", "all"], s["tokens"].shape[1] - 1, SAMPLES, SEED)
    for part in ("q", "k"):
        got = row(frame, part, "cumulative", "0,1,2")
        for key in ("recovered", "ci_low", "ci_high", "loss"):
            assert got[key] == pytest.approx(metrics[part][key], rel=1e-6, abs=1e-9), (part, key)


def test_single_offsets_are_their_own_scrubs(frame):
    """{0} is the same mask either way; {1} and {2} alone are not {0,1} and {0,1,2}, and Q's rows
    are not K's (each part scrubs only its own input)."""
    for part in ("q", "k"):
        assert row(frame, part, "single", "0").recovered == row(frame, part, "cumulative", "0").recovered
        for m, cumulative in ((1, "0,1"), (2, "0,1,2")):
            single, cum = row(frame, part, "single", str(m)), row(frame, part, "cumulative", cumulative)
            assert abs(single.recovered - cum.recovered) > 1e-3, (part, m)
            assert single.loss != cum.loss
    assert not np.allclose(frame[frame.part == "q"].recovered.to_numpy(), frame[frame.part == "k"].recovered.to_numpy())
    assert (frame.ci_low <= frame.ci_high).all()


def test_a_max_offset_the_cache_lacks_is_named(setup):
    s = setup
    with pytest.raises(ConfigError) as err:
        sweep(s["model"], s["cache"], s["tokens"], s["other"], REFINED2, ROLES, s["scored"], max_offset=N_OFFSETS,
              quiet=True)
    assert err.value.param == "sweep.max_offset" and f"cache.n_offsets={N_OFFSETS}" in str(err.value)


def params_with(**sweep_keys) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = copy.deepcopy(params)
    params["sweep"].update(sweep_keys)
    return params


def check_error(params: dict) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        schema.check(params)
    assert "\n" not in str(err.value)
    return err.value


def test_max_offset_beyond_the_cache_is_one_line_at_composition(tmp_path):
    params = params_with()
    n_offsets = params["cache"]["n_offsets"]
    schema.check(params_with(max_offset=n_offsets - 1))
    err = check_error(params_with(max_offset=n_offsets))
    assert err.param == "sweep.max_offset" and f"cache.n_offsets={n_offsets}" in str(err)
    assert check_error(params_with(max_offset=-1)).param == "sweep.max_offset"
    # through the composition, as `dvc exp run -S` runs it: one line, nothing written
    out = tmp_path / "params.yaml"
    result = sh(sys.executable, "-m", "pipeline.config", "--output", str(out), f"sweep.max_offset={n_offsets}",
                cwd=ROOT, check=False)
    assert result.returncode != 0 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sweep.max_offset:"), result.stderr


def test_a_bad_form_is_named_under_sweep_form():
    form = copy.deepcopy(REFINED2)
    form["q"]["heads"]["all"]["outside"] = "elsewhere"
    assert check_error(params_with(form=form)).param == "sweep.form.q.heads.all.outside"
    form = copy.deepcopy(REFINED2)
    form["k"]["heads"]["all"] = "other"  # nothing masked: nothing to sweep
    assert check_error(params_with(form=form)).param == "sweep.form.k.heads"
