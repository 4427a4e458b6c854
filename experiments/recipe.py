"""Try a change to the default model's training recipe, without touching the pipeline's outputs.

    python experiments/recipe.py NAME -S model.train.position_scale=0.3 [-S ...] [--threads 1]

Composes the parameters as `dvc exp run -S` would (conf/ plus the overrides, checked by the
schema), trains one model exactly as the model stage does (pipeline.stages.model.trained_model,
seed: the first of `seeds`) on this checkout's data/tokens (`dvc repro tokenize` first), printing
the evaluation every `model.train.eval_every` steps, then scores the final model as the heads
stage does (pipeline.stages.heads.measure: held-out experiment sequences, repeated random tokens).
Writes experiments/results/NAME.json: the overrides, the seconds, the training log and the final
scores (per head, and the heads stage's summaries: the best previous-token, same-token and
induction score). The model itself
is not kept: a recipe worth keeping goes into conf/model/trained.yaml and is trained by `dvc repro`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import paths  # noqa: E402
from pipeline.config.compose import compose  # noqa: E402
from pipeline.stages.heads import measure, summarize_scores  # noqa: E402
from pipeline.stages.model import trained_model  # noqa: E402

RESULTS = ROOT / "experiments/results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="experiments/results/NAME.json")
    ap.add_argument("-S", dest="overrides", action="append", default=[], help="a Hydra override, as dvc exp run -S")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        compose(Path(tmp) / "params.yaml", args.overrides)
        params = yaml.safe_load((Path(tmp) / "params.yaml").read_text())
    meta = json.loads(Path(paths.TOKENS_META).read_text())
    seed = int(params["seeds"][0])
    start = time.time()
    model, log = trained_model(params["model"], meta, seed)
    seconds = time.time() - start
    scores, _ = measure(model.eval(), params["heads"], meta)
    best = summarize_scores(scores)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"name": args.name, "overrides": args.overrides, "seed": seed, "threads": args.threads,
           "train_seconds": round(seconds), "best": best, "scores": scores, "log": log}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"name": args.name, "train_seconds": round(seconds), **{k: round(v, 3) for k, v in best.items()}}))


if __name__ == "__main__":
    main()
