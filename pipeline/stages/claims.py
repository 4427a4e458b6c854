"""claims: the writeup's conclusions (params' `claims`, conf/claims/default.yaml) checked on
every model of `seeds`, each holding, failing or inconclusive from its 95% interval.

    python -m pipeline.stages.claims

Reads, per model, what the claims name: each named hypothesis' per-sequence loss sums
(data/scrub/seed<N>/<key>/losses.parquet) and its published % recovered (metrics.json, which
they must reproduce), the sweep (data/sweep/seed<N>/sweep.csv) where a claim names it, and the
roles (data/heads/seed<N>/roles.json) that say why a claim needing a role fails. The verdicts are
pipeline/scrub/claims.py's, resampling with `scrub.seed` and `scrub.bootstrap_samples`, the
scrub stages' own draws. Writes data/claims/claims.json and reports/claims.md; the report stage
puts the table at the top of the review page.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.config.load import load_params
from pipeline.errors import ConfigError
from pipeline.outputs import atomic_path, rounded, run_stage, write_json
from pipeline.paths import ModelPaths
from pipeline.report.claims import markdown
from pipeline.scrub.claims import Measured, ModelData, evaluate, measure_scrubs, needed, quantity_row


def scrub_quantities(model: ModelPaths, quantities: list, samples: int, seed: int) -> dict[str, Measured]:
    """Every scrub quantity of one model, resampled together from the stored per-sequence sums."""
    if not quantities:
        return {}
    frames, metrics = {}, {}
    for key in dict.fromkeys(q.hypothesis for q in quantities):
        frames[key] = pd.read_parquet(model.scrub_losses(key))
        metrics[key] = json.loads(Path(model.scrub_metrics(key)).read_text())
    first_key, first = next(iter(frames.items()))
    for key, frame in frames.items():
        # Paired differences need the same sequences, positions, original and baseline in every file.
        for column in ("seq_id", "count", "loss_sum_original", "loss_sum_baseline"):
            if not np.array_equal(frame[column].to_numpy(), first[column].to_numpy()):
                raise ConfigError(model.scrub_losses(key),
                                  f"its {column} differs from {model.scrub_losses(first_key)}'s: the scrubs were not "
                                  f"run on the same data; rerun them")
    sums = {"original": first["loss_sum_original"].to_numpy(), "baseline": first["loss_sum_baseline"].to_numpy()}
    sources = {}
    for q in quantities:
        sums[q.text] = frames[q.hypothesis][f"loss_sum_{q.part}"].to_numpy()
        sources[q.text] = (model.scrub_metrics(q.hypothesis), f"{q.part}/recovered")
    measured = measure_scrubs(sums, first["count"].to_numpy(), samples, seed, sources)
    for q in quantities:
        published = metrics[q.hypothesis][q.part]["recovered"]
        # both from the same sums by the same arithmetic, metrics.json's at the stated precision
        # (pipeline.outputs.rounded): any other difference means the two files are of different runs
        if rounded(measured[q.text].value) != rounded(published):
            raise ConfigError(model.scrub_metrics(q.hypothesis), f"{q.part} recovers {published} but "
                                                                 f"{model.scrub_losses(q.hypothesis)} gives "
                                                                 f"{measured[q.text].value}: rerun the scrub stage")
    return measured


def sweep_quantities(model: ModelPaths, quantities: list) -> dict[str, Measured]:
    if not quantities:
        return {}
    frame = pd.read_csv(model.sweep_csv, dtype={"offsets": str, "part": str, "kind": str})
    out = {}
    for q in quantities:
        part, offsets = quantity_row(q)
        rows = frame.index[(frame["part"] == part) & (frame["offsets"] == offsets)]
        if rows.empty:
            raise ConfigError(model.sweep_csv, f"has no row for {q.text} (part {part}, offsets {offsets}): rerun the "
                                               f"sweep stage")
        i = int(rows[0])  # {0} is both the first cumulative and the first single mask: the same numbers
        out[q.text] = Measured(float(frame.at[i, "recovered"]), float(frame.at[i, "ci_low"]),
                               float(frame.at[i, "ci_high"]), model.sweep_csv, f"{i}/recovered")
    return out


def main() -> None:
    params = load_params()
    claims, cfg = params.claims, params.scrub
    quantities = needed(claims)
    models = []
    for seed in params.seeds:
        model = ModelPaths(params.model.dir, seed)
        measured = {**scrub_quantities(model, [q for q in quantities if q.kind == "scrub"], cfg.bootstrap_samples,
                                       cfg.seed),
                    **sweep_quantities(model, [q for q in quantities if q.kind == "sweep"])}
        roles = json.loads(Path(model.roles).read_text())
        models.append(ModelData(model.name, measured, roles, model.roles))
    result = evaluate(claims, models, cfg.bootstrap_samples, cfg.seed)
    write_json(paths.CLAIMS_JSON, rounded(result))  # at the stated precision, as every committed number
    text = markdown(result)
    with atomic_path(paths.CLAIMS_MD) as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    run_stage(main)
