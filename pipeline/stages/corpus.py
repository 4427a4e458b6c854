"""corpus: fetch the documents of `data.source` and split them into train / held-out.

Output: data/corpus/documents.parquet with columns doc_id, split ("train" | "heldout") and text;
for a source of token rows (data=redwood_validation) `tokens` instead of text, one row each.

This is the first stage that downloads. When a download is missing (offline, nothing cached),
the stage also tries the tokenizer's and the model's downloads, so that one run lists every
missing piece, one line each, with the parameter that takes a local copy instead.
"""
from __future__ import annotations

import sys

import pandas as pd

from pipeline import paths
from pipeline.hub import MissingDownload
from pipeline.sources import TOKEN_SOURCES, load_documents, load_token_rows, split_documents
from pipeline.stage import ConfigError, atomic_path, load_params, require, run_stage



def other_missing_downloads(params: dict) -> list[str]:
    """The tokenizer's and the model's downloads that fail too (each fetched into its cache if it
    can be: the tokenize and model stages then find it there)."""
    from pipeline.checkpoint import resolve_redwood
    from pipeline.tokenizer import gpt2_files

    missing = []
    tok, model = params.get("tokenizer", {}), params.get("model", {})
    probes = []
    if tok.get("kind") == "gpt2":
        probes.append(lambda: gpt2_files(tok["source"], tok.get("cache_dir", paths.GPT2_FILES)))
    if model.get("source") == "redwood":
        probes.append(lambda: resolve_redwood(model["repo"], model.get("filename")))
    for probe in probes:
        try:
            probe()
        except MissingDownload as err:
            missing.append(str(err))
        except ConfigError:  # not a missing download: its own stage reports it
            pass
    return missing


def main() -> None:
    params = load_params()
    data = require(params, "data")
    try:
        if data.get("source") in TOKEN_SOURCES:
            rows = load_token_rows(data)
            docs = [(f"row:{i}", row.tolist()) for i, row in enumerate(rows)]
        else:
            docs = load_documents(data)
    except MissingDownload as err:
        for line in [str(err), *other_missing_downloads(params)]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)  # run_stage's status for a ConfigError
    train, heldout = split_documents(docs, data["heldout_fraction"], data["split_seed"])
    column = "tokens" if data.get("source") in TOKEN_SOURCES else "text"
    frame = pd.DataFrame(
        [(doc_id, "train", x) for doc_id, x in train] + [(doc_id, "heldout", x) for doc_id, x in heldout],
        columns=["doc_id", "split", column],
    )
    with atomic_path(paths.CORPUS) as tmp:
        frame.to_parquet(tmp, index=False)
    print(f"{len(train)} training and {len(heldout)} held-out {'rows' if column == 'tokens' else 'documents'} → {paths.CORPUS}")


if __name__ == "__main__":
    run_stage(main)
