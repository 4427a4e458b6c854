"""Which relative positions matter for the induction heads' Q and K: a hypothesis form (refined 2
by default) run with every masked layer-0 head spec of Q and K masked by the cumulative offsets
{0}, {0,1}, …, {0,…,m} and by each single offset {0}, …, {m}."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from pipeline.config.hypothesis import Hypothesis, Masked, parse_hypothesis
from pipeline.errors import ConfigError
from pipeline.scrub.engine import Losses, scrub_losses
from pipeline.scrub.stats import summarize

PARTS = ["q", "k"]
KINDS = ["cumulative", "single"]
COLUMNS = ["part", "kind", "offsets", "recovered", "ci_low", "ci_high", "loss"]


def masks(max_offset: int) -> list[tuple[str, tuple[int, ...]]]:
    """(kind, offsets) of every row: {0}, {0,1}, …, {0,…,max_offset}, then {0}, {1}, …, {max_offset}."""
    if max_offset < 0:
        raise ConfigError("sweep.max_offset", f"must be an integer ≥ 0, got {max_offset}")
    return ([("cumulative", tuple(range(m + 1))) for m in range(max_offset + 1)]
            + [("single", (m,)) for m in range(max_offset + 1)])


def variant(form: Hypothesis | dict, offsets: tuple[int, ...]) -> Hypothesis:
    """The form (checked by pipeline.config.schema.check_sweep; a dict is parsed) with every masked
    head spec of Q and K masked by `offsets`; V as in the form."""
    form = form if isinstance(form, Hypothesis) else parse_hypothesis("sweep", form)
    masked = {part: form.inputs[part].model_copy(update={"heads": {
        head: spec.model_copy(update={"mask": tuple(sorted(set(offsets)))}) if isinstance(spec, Masked) else spec
        for head, spec in form.inputs[part].heads.items()}}) for part in PARTS}
    return form.model_copy(update={**masked, "name": f"{form.name or 'sweep'} mask {{{','.join(map(str, offsets))}}}"})


def sweep(model, cache: dict, tokens: np.ndarray, other: np.ndarray, form: Hypothesis | dict, roles: dict,
          scored: np.ndarray, max_offset: int, batch_size: int = 32, bootstrap_samples: int = 1000, seed: int = 0,
          resampled: dict | None = None, device: str | torch.device = "cpu", quiet: bool = False) -> pd.DataFrame:
    """% loss recovered of Q and of K for every mask of `masks(max_offset)`: a frame of COLUMNS.

    One engine run per distinct mask (the cumulative {0} is the single {0}), scrubbing Q and K as
    two parts. The original and the baseline do not depend on the mask: only the first run
    computes them, and every row's interval comes from the same bootstrap draws (summarize's
    seed): rows are paired."""
    n_offsets = cache["diag"].shape[-1]
    if max_offset >= n_offsets:
        raise ConfigError("sweep.max_offset", f"{max_offset} is not cached: the layer-0 cache keeps offsets "
                                              f"< cache.n_offsets={n_offsets}")
    n_positions = tokens.shape[1] - 1
    references: dict[str, Losses] | None = None
    runs: dict[tuple[int, ...], dict[str, Losses]] = {}
    rows = []
    for kind, offsets in masks(max_offset):
        if offsets not in runs:
            start = time.perf_counter()
            hypothesis = variant(form, offsets)
            losses = scrub_losses(model, cache, tokens, other, hypothesis, roles, scored, PARTS, resampled,
                                  batch_size=batch_size, progress=False, device=device,
                                  references=references is None)
            references = references or {name: losses[name] for name in ("original", "baseline")}
            runs[offsets] = losses
            seconds = time.perf_counter() - start
        else:
            seconds = 0.0
        metrics = summarize({**references, **{p: runs[offsets][p] for p in PARTS}}, PARTS, n_positions,
                            bootstrap_samples, seed)
        label = ",".join(map(str, offsets))
        for part in PARTS:
            m = metrics[part]
            rows.append({"part": part, "kind": kind, "offsets": label, "recovered": m["recovered"],
                         "ci_low": m["ci_low"], "ci_high": m["ci_high"], "loss": m["loss"]})
        if not quiet:
            print(f"sweep {kind:10s} {{{label}}}: " + ", ".join(
                f"{p.upper()} {metrics[p]['recovered']:.1f}% ({metrics[p]['ci_low']:.1f}–{metrics[p]['ci_high']:.1f})"
                for p in PARTS) + (f"  [{seconds:.1f} s]" if seconds else "  [same run as above]"), flush=True)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    # parts, then kinds, each in mask order: the CSV reads as the figure's four series
    frame["order"] = frame.part.map(PARTS.index) * 2 + frame.kind.map(KINDS.index)
    return frame.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)
