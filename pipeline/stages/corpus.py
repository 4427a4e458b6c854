"""corpus: fetch the documents of `data.source` and split them into train / held-out.

Output: data/corpus/documents.parquet with columns doc_id, split ("train" | "heldout") and text;
for a source of token rows (data=redwood_validation) `tokens` instead of text, one row each.

This is the first stage that downloads. When a download is missing (offline, nothing cached),
the stage also checks the tokenizer's and the model's (pipeline.fetch.plan.missing_downloads, which
composition runs too), so that one run lists every missing piece, one line each, with the
parameter that takes a local copy instead.
"""
from __future__ import annotations

import sys

import pandas as pd

from pipeline import paths
from pipeline.config.load import load_params
from pipeline.data.sources import (
    TOKEN_SOURCES,
    load_documents,
    load_token_rows,
    split_documents,
)
from pipeline.errors import MissingDownload
from pipeline.fetch.plan import missing_downloads
from pipeline.outputs import atomic_path, run_stage


def main() -> None:
    params = load_params()
    data = params.data
    try:
        if data.source in TOKEN_SOURCES:
            rows = load_token_rows(data.model_dump())
            docs = [(f"row:{i}", row.tolist()) for i, row in enumerate(rows)]
        else:
            docs = load_documents(data.model_dump())
    except MissingDownload as err:
        for line in dict.fromkeys([str(err), *missing_downloads(params.model_dump(by_alias=True))]):
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)  # run_stage's status for a ConfigError
    train, heldout = split_documents(docs, data.heldout_fraction, data.split_seed)
    column = "tokens" if data.source in TOKEN_SOURCES else "text"
    frame = pd.DataFrame(
        [(doc_id, "train", x) for doc_id, x in train] + [(doc_id, "heldout", x) for doc_id, x in heldout],
        columns=["doc_id", "split", column],
    )
    with atomic_path(paths.CORPUS) as tmp:
        frame.to_parquet(tmp, index=False)
    print(f"{len(train)} training and {len(heldout)} held-out {'rows' if column == 'tokens' else 'documents'} → {paths.CORPUS}")


if __name__ == "__main__":
    run_stage(main)
