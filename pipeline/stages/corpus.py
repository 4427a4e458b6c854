"""corpus: fetch the documents of `data.source` and split them into train / held-out.

Output: data/corpus/documents.parquet with columns doc_id, split ("train" | "heldout"), text.
"""
from __future__ import annotations

import pandas as pd

from pipeline.sources import load_documents, split_documents
from pipeline.stage import atomic_path, load_params, require, run_stage

OUTPUT = "data/corpus/documents.parquet"


def main() -> None:
    data = require(load_params(), "data")
    docs = load_documents(data)
    train, heldout = split_documents(docs, data["heldout_fraction"], data["split_seed"])
    frame = pd.DataFrame(
        [(doc_id, "train", text) for doc_id, text in train] + [(doc_id, "heldout", text) for doc_id, text in heldout],
        columns=["doc_id", "split", "text"],
    )
    with atomic_path(OUTPUT) as tmp:
        frame.to_parquet(tmp, index=False)
    print(f"{len(train)} training and {len(heldout)} held-out documents → {OUTPUT}")


if __name__ == "__main__":
    run_stage(main)
