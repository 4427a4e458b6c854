"""sweep@<seed>: which relative positions matter for the induction heads' Q and K of one model.

    python -m pipeline.stages.sweep 0

Runs the form of `sweep.form` (refined 2 by default: conf/hypothesis/refined2.yaml, composed into
params.yaml under sweep.form) with the mask of every masked layer-0 head spec of Q and K replaced
by the cumulative masks {0}, {0,1}, …, {0,…,m} and by each single offset {0}, {1}, …, {m}
(m = `sweep.max_offset`). Q and K are scrubbed separately, as the scrub stage's parts q and k.
Refined 2 itself is the cumulative mask {0,1,2} (last3).

The form is its own copy of the hypothesis, not `hypotheses.refined2`: changing refined 2 (e.g.
`-S 'hypotheses.refined2.q.heads.all.mask=[0,1]'`) reruns only refined 2's scrub, not the sweep,
whose masks replace refined 2's anyway.

Outputs (DVC plots): data/sweep/seed<N>/sweep.csv, one row per (part, kind, offsets) with % loss
recovered, its bootstrap 95% interval and the mean scrubbed loss; reports/sweep/seed<N>.png.
"""
from __future__ import annotations

import sys

from pipeline.config.load import load_params, model_argument
from pipeline.config.schema import check_sweep
from pipeline.device import resolve_device
from pipeline.outputs import CSV_FLOAT_FORMAT, atomic_path, rounded, run_stage
from pipeline.report.figures import sweep_figure
from pipeline.scrub.inputs import load_inputs, resampled_draws
from pipeline.scrub.sweep import sweep


def main() -> None:
    params = load_params()
    scrub_cfg, cfg = params.scrub, params.sweep
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.sweep SEED")

    inputs = load_inputs(target)
    model, tokens, other, scored, roles, cache = (inputs.model, inputs.tokens, inputs.other, inputs.scored,
                                                  inputs.roles, inputs.cache)
    # composition checked these against cache.n_offsets; here against the cache and model in hand
    check_sweep(cfg, cache["diag"].shape[-1], model.cfg.n_heads)
    resampled = resampled_draws(cfg.form, tokens, scrub_cfg.seed)

    frame = sweep(model, cache, tokens, other, cfg.form, roles, scored, cfg.max_offset,
                  batch_size=scrub_cfg.batch_size, bootstrap_samples=scrub_cfg.bootstrap_samples,
                  seed=scrub_cfg.seed, resampled=resampled, device=resolve_device(params.device))
    # the figure is drawn from the numbers as written (docs/reproducibility.md's precision)
    frame = frame.map(rounded)
    with atomic_path(target.sweep_csv) as tmp:
        frame.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    sweep_figure(frame, target.sweep_figure)


if __name__ == "__main__":
    run_stage(main)
