"""The scrub engine against what a researcher would write instead, and against the FLOP bound.

    python benchmarks/bench.py                              # every hypothesis, all sequences
    python benchmarks/bench.py --hypotheses naive refined2 --sequences 300
    python benchmarks/bench.py --synthetic 10000            # peak memory at 10,000 sequences
    python benchmarks/bench.py --repro                      # a fresh clone's `dvc repro`, per stage

Reads the default pipeline's outputs for its first model (the first of `seeds`; run `dvc repro`
first). In one run, on the same sequences and threads, it

- measures the machine's fp32 GEMM rate (2048³) and counts, per hypothesis, the FLOP bound: the
  matrix multiplies the scrubs cannot avoid (each distinct residual built and projected once, keys
  and values only up to each sequence's last scored position, queries, attention, W_O and the
  unembedding only at scored positions; see `flop_bound`);
- times `scrub_losses` in this process (the engine alone: seconds and multiple of the bound);
- times each whole stage as its own process, `python -m pipeline.stages.scrub SEED KEY` against
  `benchmarks/tl_hooks.py` run the same way (load inputs, scrub, write losses), with each
  process's peak RSS, and checks that the two agree on every sequence's loss;
- times the cache_l0 stage.

Stages run in a scratch folder that links to the pipeline's inputs; nothing under data/ changes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config.hypothesis import parse_hypothesis  # noqa: E402
from pipeline.data.sequences import load_sequences  # noqa: E402
from pipeline.paths import ModelPaths  # noqa: E402
from pipeline.scrub.cache import load_cache  # noqa: E402
from pipeline.scrub.engine import CLEAN, OTHER, PARTS, _spec_key, build_cache, scrub_losses  # noqa: E402  # noqa: E402
from pipeline.weights.checkpoint import load_checkpoint  # noqa: E402

STAGE_INPUTS = ("data/tokens/tokenizer.json", "data/whitelist/whitelist.parquet")


# --- what to compare against ---------------------------------------------------------------------

def cpu_model() -> str:
    out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    flags = next((line for line in out.splitlines() if line.startswith("Flags")), "")
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name or platform.processor()} ({os.cpu_count()} cores, {isa})"


def git_commit() -> str:
    """The repository's commit, marked when tracked files differ from it (the code the run copies)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    return commit + (" (+ uncommitted changes)" if dirty else "")


def gemm_rate(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n³ matrix multiply on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def flop_bound(hypothesis, roles: dict, model, tokens: np.ndarray, scored: np.ndarray, parts: list[str]) -> float:
    """FLOPs of the matrix multiplies one hypothesis cannot avoid, for the original, the baseline
    and each part. Per sequence, with n_k = last scored position + 1, S scored positions and
    A = Σ over scored t of (t + 1) keys attended:
      a residual R at n positions: z W_O, 2·n·(H·e)·d; its keys or values for h heads: 2·n·d·h·e;
      queries at S positions: 2·S·d·h·e; attention: 4·A·e per head; W_O: 2·S·h·e·d;
      unembedding: 2·S·d·V per variant.
    The clean residual is projected for every head (the untouched layer-1 heads need it); the
    partner's and each distinct rebuilt residual only for the induction heads, keys and values
    only where a part reads them, queries only at scored positions."""
    cfg = model.cfg
    H, e, d, V = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.d_vocab
    I = len(roles["induction"])
    mask = scored[tokens[:, :-1]]
    S = mask.sum(axis=1).astype(np.float64)
    positions = np.arange(mask.shape[1])
    n_k = np.where(mask.any(axis=1), mask.shape[1] - np.argmax(mask[:, ::-1], axis=1), 0).astype(np.float64)
    A = (mask * (positions + 1)).sum(axis=1).astype(np.float64)

    def residual(n):
        return 2 * n * H * e * d

    def project(n, heads):
        return 2 * n * d * heads * e

    def layer1(heads):  # queries' attention and W_O at the scored positions
        return 4 * A * e * heads + 2 * S * heads * e * d

    unembed = 2 * S * d * V
    total = residual(n_k) + 2 * project(n_k, H) + project(S, H) + layer1(H) + unembed  # original
    total += residual(n_k) + 2 * project(n_k, I) + project(S, I) + layer1(I) + unembed  # baseline
    built = {_spec_key(CLEAN): {"K", "V", "Q"}, _spec_key(OTHER): {"K", "V", "Q"}}
    for part in parts:
        for name in PARTS[part]:
            spec = hypothesis.inputs[name]
            which = {"q": "Q", "k": "K", "v": "V"}[name]
            have = built.setdefault(_spec_key(spec), set())
            if which in have:
                continue
            if which == "Q":
                if not have & {"K", "V"}:
                    total += residual(S)  # only the query positions; K or V later would cost n_k more
                total += project(S, I)
            else:
                total += (residual(n_k) if not have & {"K", "V"} else 0) + project(n_k, I)
            have.add(which)
        total += layer1(I) + unembed
    return float(total.sum())


# --- the stages, as processes ----------------------------------------------------------------------

# Runs a module or script as __main__, then records the process's peak RSS. VmHWM, not
# getrusage: a child's ru_maxrss starts from the RSS of the parent it was forked from.
PEAK_RSS = """
import runpy, sys
target, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(target, run_name="__main__") if target.endswith(".py") else runpy.run_module(target, run_name="__main__", alter_sys=True)
finally:
    peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    open("peak_rss_kib", "w").write(peak)
"""


def run_process(cmd: list[str], cwd: Path, threads: int) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, output) of `python MODULE_OR_SCRIPT ARGS`, given as
    [MODULE_OR_SCRIPT, ARGS...]."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}")
    return seconds, int((cwd / "peak_rss_kib").read_text()) / 1024, proc.stdout


def bench_model(params: dict) -> ModelPaths:
    """The model the benchmark runs on: the first of params' `seeds`."""
    return ModelPaths(params["model"]["dir"], int(params["seeds"][0]))


def tl_stage(key: str, batch_size: int) -> None:
    """What a researcher's stage would be with benchmarks/tl_hooks.py: the scrub stage's inputs,
    TransformerLens hooks, per-sequence loss sums written to tl/<key>.npz."""
    from benchmarks.tl_hooks import tl_scrub_losses, to_hooked_transformer
    from pipeline.scrub.inputs import resampled_draws

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    params = yaml.safe_load(open("params.yaml"))
    hypothesis = parse_hypothesis(key, params["hypotheses"][key])
    m = bench_model(params)
    model = load_checkpoint(m.checkpoint)
    tokens = load_sequences("data/tokens/sequences.parquet")
    other = pd.read_parquet("data/pairing/pairing.parquet").sort_values("seq_id").other_seq_id.to_numpy()
    scored = _scored(model)
    roles = json.loads(open(m.roles).read())
    resampled = resampled_draws(hypothesis, tokens, params["scrub"]["seed"], quiet=True)
    tl = to_hooked_transformer(model)
    losses = tl_scrub_losses(tl, torch.from_numpy(tokens), other, hypothesis, roles, scored,
                             list(params["scrub"]["parts"]), resampled, batch_size=batch_size)
    Path("tl").mkdir(exist_ok=True)
    np.savez(f"tl/{key}.npz", **{name: l.loss_sum for name, l in losses.items()})


def _scored(model) -> np.ndarray:
    whitelist = pd.read_parquet("data/whitelist/whitelist.parquet")
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[whitelist.loc[whitelist.whitelisted, "token"].to_numpy()] = True
    return scored


def scratch(work: Path, params: dict, tokens: np.ndarray, other: np.ndarray, cache_from: Path | None) -> None:
    """A folder the stages can run in: params.yaml, the first len(tokens) sequences, their pairing
    (and cache, when `cache_from` is given), and links to the other inputs."""
    m = bench_model(params)
    for path in STAGE_INPUTS + (m.checkpoint, m.roles):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).symlink_to(ROOT / path)
    for folder in ("data/tokens", "data/pairing"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pd.DataFrame({"seq_id": np.arange(len(tokens), dtype=np.int32), "doc_id": "bench", "offset": 0,
                  "tokens": list(tokens.astype(np.int32))}).to_parquet(work / "data/tokens/sequences.parquet")
    pd.DataFrame({"seq_id": np.arange(len(tokens)), "other_seq_id": other}).to_parquet(work / "data/pairing/pairing.parquet")
    if cache_from is not None:
        (work / m.cache_l0).mkdir(parents=True)
        for key, array in load_cache(cache_from).items():
            np.save(work / m.cache_l0 / f"{key}.npy", array[: len(tokens)])


def subset_pairing(other: np.ndarray, n: int) -> np.ndarray:
    """The pipeline's pairing restricted to the first n sequences: a partner beyond n is replaced
    by the next sequence (never the sequence itself)."""
    other = other[:n].copy()
    outside = other >= n
    other[outside] = (np.flatnonzero(outside) + 1) % n
    return other


# --- the report ---------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hypotheses", nargs="*", help="default: every hypothesis in params.yaml")
    ap.add_argument("--sequences", type=int, help="the first N sequences (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tl-batch-size", type=int, default=8, help="TransformerLens' batch (8 was its fastest)")
    ap.add_argument("--skip-tl", action="store_true", help="time the engine only")
    ap.add_argument("--synthetic", type=int, help="peak RSS of cache_l0 and a scrub stage at this many sequences")
    ap.add_argument("--repro", action="store_true", help="time `dvc repro` in a fresh clone (model reused)")
    ap.add_argument("--tl-stage", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tl_stage:
        return tl_stage(args.tl_stage, args.tl_batch_size)
    if args.repro:
        return repro(args.threads)
    os.chdir(ROOT)
    params = yaml.safe_load(open("params.yaml"))
    if args.synthetic:
        return synthetic(params, args.synthetic, args.threads, (args.hypotheses or ["bonus5"])[0])
    torch.set_num_threads(args.threads)
    m = bench_model(params)
    seed = str(m.seed)
    model = load_checkpoint(m.checkpoint)
    tokens_all = load_sequences("data/tokens/sequences.parquet")
    n = min(args.sequences or len(tokens_all), len(tokens_all))
    tokens = tokens_all[:n]
    other = subset_pairing(pd.read_parquet("data/pairing/pairing.parquet").sort_values("seq_id").other_seq_id.to_numpy(), n)
    scored = _scored(model)
    roles = json.loads(open(m.roles).read())
    parts = list(params["scrub"]["parts"])
    keys = args.hypotheses or list(params["hypotheses"])
    rate = gemm_rate(args.threads)
    print(f"model {m.checkpoint}; {n} sequences × {tokens.shape[1] - 1} positions, {int(scored[tokens[:, :-1]].sum())} scored; "
          f"{args.threads} threads; fp32 GEMM {rate:.0f} GFLOP/s (2048³); torch {torch.__version__}\n")

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        scratch(work, params, tokens, other, cache_from=None)
        seconds, rss, _ = run_process(["pipeline.stages.cache_l0", seed], work, args.threads)
        print(f"cache_l0 stage: {seconds:.1f} s, peak RSS {rss:.0f} MiB\n")
        cache = load_cache(work / m.cache_l0)
        # The stage's cache is float16, TransformerLens computes in float32 throughout: the
        # exactness check also runs the engine on a float32 cache of the same sequences.
        cache32 = build_cache(model, torch.from_numpy(tokens), params["cache"]["n_offsets"], 32, torch.float32,
                              progress=False)
        from pipeline.scrub.inputs import resampled_draws

        header = (f"{'hypothesis':<13} {'GFLOP':>6} {'bound s':>7} {'engine s':>8} {'×bound':>6} | "
                  f"{'stage s':>7} {'RSS MiB':>7} | {'TL stage s':>10} {'RSS MiB':>7} {'TL/stage':>8} "
                  f"{'Δ fp16':>7} {'Δ fp32':>7}")
        print(header)
        print("-" * len(header))
        for key in keys:
            hypothesis = parse_hypothesis(key, params["hypotheses"][key])
            resampled = resampled_draws(hypothesis, tokens, params["scrub"]["seed"], quiet=True,
                                        tokenizer_path=ROOT / "data/tokens/tokenizer.json")
            flops = flop_bound(hypothesis, roles, model, tokens, scored, parts)
            bound = flops / (rate * 1e9)
            run = lambda: scrub_losses(model, cache, tokens, other, hypothesis, roles, scored, parts, resampled,
                                       batch_size=params["scrub"]["batch_size"], progress=False)
            run()  # warm: first-touch of the memory map, allocator
            engine = min(_timed(run) for _ in range(2))
            stage_s, stage_rss, _ = run_process(["pipeline.stages.scrub", seed, key], work, args.threads)
            line = (f"{key:<13} {flops / 1e9:6.0f} {bound:7.2f} {engine:8.2f} {engine / bound:6.1f} | "
                    f"{stage_s:7.1f} {stage_rss:7.0f} |")
            if not args.skip_tl:
                tl_s, tl_rss, _ = run_process([str(ROOT / "benchmarks/bench.py"), "--tl-stage", key,
                                               "--tl-batch-size", str(args.tl_batch_size)], work, args.threads)
                ours = pd.read_parquet(work / m.scrub_losses(key))
                theirs = np.load(work / f"tl/{key}.npz")
                fp32 = scrub_losses(model, cache32, tokens, other, hypothesis, roles, scored, parts, resampled,
                                    progress=False)
                delta16 = max(_relative(ours[f"loss_sum_{name}"].to_numpy(), theirs[name]) for name in theirs.files)
                delta32 = max(_relative(fp32[name].loss_sum, theirs[name]) for name in theirs.files)
                line += f" {tl_s:10.1f} {tl_rss:7.0f} {tl_s / stage_s:7.1f}× {delta16:7.0e} {delta32:7.0e}"
            print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nGFLOP: the bound's matrix multiplies (original, baseline, Q, K, V, All); bound s = GFLOP / GEMM rate;"
          "\nengine s: scrub_losses in this process (best of 2); stage s: the whole `python -m pipeline.stages.scrub`"
          "\nprocess (imports, loading, bootstrap, writing); TL: benchmarks/tl_hooks.py as a stage; Δ: largest relative"
          "\ndifference of a sequence's loss sum, TL against the engine stage (float16 cache) and against the engine on"
          "\na float32 cache.")


def synthetic(params: dict, n: int, threads: int, key: str) -> None:
    """cache_l0 and one scrub stage at n sequences (the real sequences repeated, a random pairing):
    seconds and peak RSS, to show that memory does not grow with the data."""
    real = load_sequences("data/tokens/sequences.parquet")
    tokens = real[np.arange(n) % len(real)]
    rng = np.random.default_rng(0)
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n  # never the sequence itself
    work = Path(tempfile.mkdtemp(prefix="bench-synthetic-"))
    m = bench_model(params)
    try:
        scratch(work, params, tokens, other, cache_from=None)
        seconds, rss, _ = run_process(["pipeline.stages.cache_l0", str(m.seed)], work, threads)
        size = sum(f.stat().st_size for f in (work / m.cache_l0).glob("*.npy")) / 2**30
        print(f"{n} sequences: cache_l0 {seconds:.1f} s, peak RSS {rss:.0f} MiB, cache {size:.2f} GiB on disk")
        seconds, rss, _ = run_process(["pipeline.stages.scrub", str(m.seed), key], work, threads)
        print(f"{n} sequences: scrub@{key} {seconds:.1f} s, peak RSS {rss:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def repro(threads: int) -> None:
    """`dvc repro` in a fresh clone of this repository's HEAD (the committed model is reused):
    the whole time and each stage's."""
    work = Path(tempfile.mkdtemp(prefix="bench-repro-"))
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "clone")], check=True)
        clone = work / "clone"
        brown = ROOT / "data/external/brown"
        if brown.exists():  # the corpus download is the network's time, not the pipeline's
            shutil.copytree(brown, clone / "data/external/brown")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        proc = subprocess.Popen(["dvc", "repro"], cwd=clone, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        stages, current, since = {}, None, start
        for line in proc.stdout:
            if line.startswith("Running stage '") or line.startswith("Stage '"):
                now = time.perf_counter()
                if current:
                    stages[current] = now - since
                current = line.split("'")[1] if line.startswith("Running") else None
                since = now
        if proc.wait() != 0:
            raise SystemExit("dvc repro failed in the fresh clone")
        total = time.perf_counter() - start
        if current:
            stages[current] = time.perf_counter() - since
        for stage, seconds in stages.items():
            print(f"{stage:<22} {seconds:6.1f} s")
        print(f"{'dvc repro (all)':<22} {total:6.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1e-6)).max())


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
