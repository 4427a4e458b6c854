"""pairing: each experiment sequence's one partner (pipeline.data.pairing), fixed for every experiment.

Output: data/pairing/pairing.parquet with columns seq_id, other_seq_id.
"""
from __future__ import annotations

import pandas as pd

from pipeline import paths
from pipeline.config.load import load_params
from pipeline.data.pairing import pair_sequences
from pipeline.outputs import atomic_path, run_stage


def main() -> None:
    params = load_params()
    seed = params.pairing.seed
    seq_ids = pd.read_parquet(paths.SEQUENCES, columns=["seq_id"]).seq_id.to_numpy()
    other = pair_sequences(len(seq_ids), seed)
    with atomic_path(paths.PAIRING) as tmp:
        pd.DataFrame({"seq_id": seq_ids, "other_seq_id": seq_ids[other]}).to_parquet(tmp, index=False)
    print(f"{len(seq_ids)} sequences paired (seed {seed}) → {paths.PAIRING}")


if __name__ == "__main__":
    run_stage(main)
