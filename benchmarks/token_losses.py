"""The scrubs' last step at a vocabulary's width: `pipeline.scrub.engine.token_losses` (blocks of
LOSS_BLOCK columns of W_U past that width) against the cross-entropy of the whole logits, for the
numbers of scored positions a batch holds.

    python benchmarks/token_losses.py                    # Redwood's vocabulary (50,259), 2 threads
    python benchmarks/token_losses.py --vocab 2048 --threads 1

Random weights (the speed of a multiply does not depend on its values). Prints the CPU, the fp32
GEMM rate (2048³) and, per row count, milliseconds of each way (best of --repeats), the unembedding
multiply's GFLOP/s in each, and the largest difference between their losses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import cpu_model, gemm_rate  # noqa: E402
from pipeline.model import AttnOnlyTransformer, ModelConfig  # noqa: E402
from pipeline.scrub.engine import LOSS_BLOCK, token_losses  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Best of `repeats` calls, in milliseconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=50_259)
    parser.add_argument("--rows", type=int, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AttnOnlyTransformer(ModelConfig(d_vocab=args.vocab, n_ctx=16)).eval()
    d_model = model.cfg.d_model
    rate = gemm_rate(args.threads)
    print(f"{cpu_model()}, {args.threads} threads; fp32 GEMM {rate:.0f} GFLOP/s; d_vocab {args.vocab}, "
          f"d_model {d_model}, block {LOSS_BLOCK}")
    print("| rows | whole logits + cross-entropy: ms | multiply alone: GFLOP/s | token_losses: ms | "
          "speed-up | largest loss difference |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for rows in args.rows:
            resid = torch.randn(rows, d_model)
            targets = torch.randint(0, args.vocab, (rows,))
            x = model.ln_final(resid)
            multiply = timed(lambda: x @ model.W_U, args.repeats)

            def whole():
                return F.cross_entropy(model.unembed(resid), targets, reduction="none")

            before = timed(whole, args.repeats)
            after = timed(lambda: token_losses(model, resid, targets), args.repeats)
            diff = (whole() - token_losses(model, resid, targets)).abs().max().item()
            flops = 2 * rows * d_model * args.vocab
            print(f"| {rows} | {before:.1f} | {flops / multiply / 1e6:.0f} | {after:.1f} | {before / after:.2f}x | "
                  f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
