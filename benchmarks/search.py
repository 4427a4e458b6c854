"""The search stage's speed on every model, in one run: points (candidate hypotheses) scored per
minute in one step, against their FLOP bound, and the whole default search stage.

    python benchmarks/search.py                 # every model: one step, then the whole search stage
    python benchmarks/search.py --in-place      # the same, each search as `dvc repro -f -s search@N`
    python benchmarks/search.py --batch-sizes 16 32 64 --threads 1   # one step only, first model

Reads the default pipeline's outputs (run `dvc repro` first). A step's points
are every change of one piece of `naive` (all of Q's, K's and V's moves), scored in one
`Evaluator.loss_sums` call as the search does. The bound of a point counts the matrix multiplies
that point alone needs once the step's shared pieces exist: its changed residual (one head's
z W_O difference at the positions its input reads), the induction heads' projection of it (keys
or values at every key position, queries at the scored ones), attention, W_O and the unembedding
at the scored positions. The whole search runs `python -m pipeline.stages.search SEED` as a
process in a scratch folder that links to the pipeline's inputs (nothing under data/ changes):
its time, peak RSS and points scored. Ends with a markdown table (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import cpu_model, gemm_rate, git_commit  # noqa: E402
from pipeline.config.schema import check  # noqa: E402
from pipeline.paths import ModelPaths  # noqa: E402
from pipeline.scrub.inputs import load_inputs  # noqa: E402
from pipeline.scrub.search import INPUTS, Evaluator, Space, from_hypothesis, halves  # noqa: E402


def point_bound(kind: str, n_k: np.ndarray, scored: np.ndarray, attended: np.ndarray, cfg, n_induction: int) -> float:
    """FLOPs one point of the step needs beyond what the step shares (module docstring).
    n_k, scored, attended: per sequence, key positions, scored positions and Σ (t + 1) over them."""
    e, d, V, heads = cfg.d_head, cfg.d_model, cfg.d_vocab, n_induction
    n = scored if kind == "q" else n_k
    residual = 2 * n * e * d                 # one head's difference through W_O
    project = 2 * n * d * heads * e
    layer1 = 4 * attended * e * heads + 2 * scored * heads * e * d + 2 * scored * d * V
    return float((residual + project + layer1).sum())


def step(params: dict, seed: int, batch_sizes: list[int], threads: int, rate: float) -> dict[int, dict]:
    """Each batch size's step: {batch size: {points, seconds, bound (s)}}."""
    torch.set_num_threads(threads)
    target = ModelPaths(params["model"]["dir"], seed)
    inputs = load_inputs(target)
    typed = check(params)
    cfg = inputs.model.cfg
    space = Space(typed.search, cfg.n_heads, inputs.roles, inputs.cache["diag"].shape[-1])
    selection, _ = halves(len(inputs.tokens), typed.search.selection_fraction, typed.search.selection_seed,
                          typed.search.max_selection)
    start = from_hypothesis(typed.hypotheses["naive"], inputs.roles, cfg.n_heads)
    moves = space.moves(start, forward=True)
    points = [start] + [point for _, point in moves]
    kinds = [change.split()[0] for change, _ in moves]

    mask = inputs.scored[inputs.tokens[selection, :-1]]
    scored = mask.sum(axis=1).astype(np.float64)
    n_k = np.where(mask.any(axis=1), mask.shape[1] - np.argmax(mask[:, ::-1], axis=1), 0).astype(np.float64)
    attended = (mask * (np.arange(mask.shape[1]) + 1)).sum(axis=1).astype(np.float64)
    flops = sum(point_bound(kind, n_k, scored, attended, cfg, len(inputs.roles["induction"])) for kind in kinds)
    print(f"model {target.name}: {len(selection)} selection sequences, {int(scored.sum())} scored positions; "
          f"a forward step from naive: {len(points)} points ({', '.join(f'{kinds.count(i)} {i}' for i in INPUTS)})")
    print(f"fp32 GEMM {rate:.0f} GFLOP/s on {threads} thread(s); the step's bound {flops / 1e9:.0f} GFLOP = "
          f"{flops / rate / 1e9:.1f} s")
    out = {}
    for batch_size in batch_sizes:
        evaluator = Evaluator(inputs.model, inputs.cache, inputs.tokens, inputs.other, inputs.scored, inputs.roles,
                              batch_size=batch_size)
        evaluator.loss_sums(points[:2], selection[:batch_size])  # warm: the cache's pages, the allocator
        began = time.perf_counter()
        evaluator.loss_sums(points, selection)
        seconds = time.perf_counter() - began
        print(f"batch {batch_size:3d}: {seconds:6.1f} s, {len(points) / seconds * 60:5.0f} points per minute, "
              f"{seconds / (flops / rate / 1e9):4.1f} × bound", flush=True)
        out[batch_size] = {"points": len(points), "seconds": seconds, "bound": flops / rate / 1e9}
    return out


def full(params: dict, seed: int, threads: int, in_place: bool) -> dict:
    """The search stage as a process: its seconds, peak RSS (MiB) and points scored. In a scratch
    folder linking to the inputs, or (`in_place`) as `dvc repro -f -s search@SEED` in the project,
    which writes the stage's outputs and dvc.lock entry as `dvc repro` would (DVC's own few seconds
    included)."""
    target = ModelPaths(params["model"]["dir"], seed)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        work = ROOT if in_place else Path(tmp)
        if in_place:
            cmd = ["dvc", "repro", "-f", "-s", f"search@{seed}"]
        else:
            for path in ("data/tokens/sequences.parquet", "data/pairing/pairing.parquet",
                         "data/whitelist/whitelist.parquet", target.checkpoint, target.roles, target.cache_l0):
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).symlink_to(ROOT / path)
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            cmd = [sys.executable, "-m", "pipeline.stages.search", str(target.seed)]
            env["PYTHONPATH"] = str(ROOT)
        began = time.perf_counter()
        # GNU time's %M: the largest resident set of the process tree's members
        run = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=work, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - began
        if run.returncode:
            sys.exit(run.stdout[-2000:] + run.stderr[-2000:])
        rss = int(run.stderr.strip().splitlines()[-1]) / 1024
        summary = json.loads((work / target.search_summary).read_text())
        last = run.stdout.rindex("search: ")  # the stage's closing line (progress bars before it)
        print(run.stdout[last:].splitlines()[0])
        print(f"the search stage of {target.name}: {seconds:.0f} s, peak RSS {rss:.0f} MiB ({threads} threads)",
              flush=True)
        return {"seconds": seconds, "rss": rss, "points": summary["points_scored"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="time only one step at these batch sizes, on "
                                                                   "the first model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--in-place", action="store_true",
                        help="run each whole search as dvc repro -f -s search@SEED: its outputs are the pipeline's")
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    rate = gemm_rate(args.threads)
    print(f"{datetime.date.today()}, commit {git_commit()}; {cpu_model()}; {args.threads} threads; "
          f"fp32 GEMM {rate:.0f} GFLOP/s; 1-min load average {os.getloadavg()[0]:.2f} before")
    if args.batch_sizes:
        step(params, params["seeds"][0], args.batch_sizes, args.threads, rate)
        return
    batch = params["search"]["batch_size"]
    rows = []
    for seed in params["seeds"]:
        one = step(params, seed, [batch], args.threads, rate)[batch]
        rows.append((seed, one, full(params, seed, args.threads, args.in_place)))
    print(f"\n1-min load average {os.getloadavg()[0]:.2f} after\n")
    print("| model | one step: points per minute | × FLOP bound | whole search: points scored | minutes | "
          "points per minute | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for seed, one, whole in rows:
        print(f"| seed {seed} | {one['points'] / one['seconds'] * 60:.0f} | {one['seconds'] / one['bound']:.1f} | "
              f"{whole['points']} | {whole['seconds'] / 60:.1f} | {whole['points'] / whole['seconds'] * 60:.0f} | "
              f"{whole['rss']:,.0f} MiB |")


if __name__ == "__main__":
    main()
