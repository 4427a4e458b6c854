"""heads@<seed>: measure every head of one model and settle the roles the hypotheses refer to.

    python -m pipeline.stages.heads 0

Outputs in data/heads/seed<N>/ and reports/heads/seed<N>/, one folder per model (`seeds`).
Scores (scores.json, a DVC metrics file): per head, mean attention to the previous
token and to earlier copies of the current token on held-out sequences; per layer-1 head,
attention to the induction target on repeated random tokens; the loss on the first and second
copy of those tokens. Computed in float64, `heads.batch_size` sequences at a time, and written at
9 significant digits (pipeline.analysis.measure: the same bytes on another CPU or batch size).
Roles (roles.json): `roles.*` from config where given, else proposed from the scores
(pipeline.analysis.roles).

Head views, for the report (parameters `heads.views.*`): the scores as heatmaps with the roles
outlined (scores.png); the role heads' attention on one held-out sequence with a repeated token,
picked by the rule stored with it in views.json (example.png); each layer-0 head's mean
attention by relative position (relative_attention.csv, a DVC plot, and relative.png). The views read
the roles and scores and never change them: roles.json stays byte-identical, so the scrub stages
downstream do not rerun when only a view changes. The figures are drawn by pipeline/report/heads.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import paths
from pipeline.analysis.head_views import (
    attention_at_candidates,
    example_rule,
    pick_example,
    relative_attention,
    repeat_candidates,
)
from pipeline.analysis.measure import attention_patterns, batches, measure_heads, rounded
from pipeline.analysis.roles import propose_roles, resolve_roles, role_heads
from pipeline.analysis.scores import repeated_random_tokens
from pipeline.config.heads import parse_head_name
from pipeline.config.load import load_params, model_argument
from pipeline.config.schema import Heads
from pipeline.data.sequences import load_sequences, ordinary_ids
from pipeline.errors import ConfigError
from pipeline.outputs import atomic_path, run_stage, write_json
from pipeline.report.figures import token_text
from pipeline.report.heads import example_chart, relative_chart, scores_chart
from pipeline.weights.checkpoint import load_checkpoint


def main() -> None:
    params = load_params()
    cfg = params.heads
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.heads SEED")
    meta = json.loads(Path(paths.TOKENS_META).read_text())
    # float64 for the scores and views (pipeline.analysis.measure); converted in place, no copy
    model = load_checkpoint(target.checkpoint, "model.dir").eval().double()
    scores, heldout = measure(model, cfg, meta)
    roles = resolve_roles(params.roles.model_dump(), lambda given: propose_roles(scores, cfg.model_dump(), given),
                          model.cfg)
    summary = summarize_scores(scores)
    # the views first: a view that cannot be drawn stops the stage before roles.json changes
    write_views(target, model, cfg.views.model_dump(), scores, roles, heldout[:, :-1], cfg.batch_size)
    write_json(target.head_scores, {**summary, **scores})
    write_json(target.roles, roles)
    print("roles:", roles, "|", {k: round(v, 3) for k, v in summary.items()})


def measure(model, cfg: Heads, meta: dict) -> tuple[dict, torch.Tensor]:
    """Every head's scores (pipeline.analysis.measure.measure_heads: float64, `heads.batch_size`
    sequences at a time, rounded) on the first `heads.heldout_sequences` experiment sequences and
    on repeated random tokens; and those sequences [batch, pos + 1]."""
    seqs = pd.read_parquet(paths.SEQUENCES).tokens
    if len(seqs[0]) - 1 > model.cfg.n_ctx:
        raise ConfigError("sequences.seq_len",
                          f"{len(seqs[0]) - 2} + BEGIN exceeds the model's context n_ctx={model.cfg.n_ctx}")
    heldout = torch.tensor(np.stack(seqs.head(cfg.heldout_sequences).map(np.asarray).tolist()), dtype=torch.long)
    length = cfg.repeat_length
    if 1 + 2 * length > model.cfg.n_ctx:
        raise ConfigError("heads.repeat_length", f"1 + 2·{length} exceeds n_ctx={model.cfg.n_ctx}")
    repeated = repeated_random_tokens(cfg.repeat_sequences, length, ordinary_ids(meta),
                                      meta["begin_id"], seed=0)
    return measure_heads(model, heldout[:, :-1], repeated, length, cfg.batch_size), heldout


def summarize_scores(scores: dict) -> dict:
    """The one-number summaries of measure's scores that head scores.json leads with, from the
    rounded scores (so as reproducible as they are) and rounded the same way."""
    return {
        "max_previous_token_score_layer0": max(scores["previous_token_score"][0]),
        "max_same_token_score_layer0": max(scores["same_token_score"][0]),
        "max_induction_score": max(scores["induction_score"]),
        "repeat_loss_drop": rounded(scores["loss_first_half"] - scores["loss_second_half"]),
    }


def write_views(target: paths.ModelPaths, model, cfg: dict, scores: dict, roles: dict, heldout: torch.Tensor,
                batch_size: int = 8) -> None:
    """The head views (module docstring). heldout: the held-out sequences the scores are measured
    on, as model input [batch, pos]. Patterns are formed `batch_size` sequences at a time, without
    the unembedding; the numbers of views.json are rounded as the scores are."""
    from tokenizers import Tokenizer

    max_offset, window, seed = cfg["max_offset"], cfg["window"], cfg["seed"]
    if max_offset >= heldout.shape[1]:
        raise ConfigError("heads.views.max_offset", f"{max_offset} must be below the {heldout.shape[1]} positions "
                                                    f"of a held-out sequence (BEGIN + sequences.seq_len)")
    # the mean over sequences of each batch's mean: every sequence has the same queries
    relative = sum(relative_attention(attention_patterns(model, heldout[part], n_layers=1)[0], max_offset)
                   * len(heldout[part]) for part in batches(len(heldout), batch_size)) / len(heldout)  # [head, offset]
    n_heads = relative.shape[0]
    rows = [(f"0.{h}", k, float(relative[h, k])) for h in range(n_heads) for k in range(max_offset + 1)]
    with atomic_path(target.relative_attention) as tmp:
        pd.DataFrame(rows, columns=["head", "offset", "attention"]).to_csv(tmp, index=False, float_format="%.6g")

    tokens = load_sequences(paths.SEQUENCES)[:, :-1]  # model input; the last token is only a target
    whitelist = pd.read_parquet(paths.WHITELIST)
    allowed = np.zeros(model.cfg.d_vocab, dtype=bool)
    allowed[whitelist.token[whitelist.whitelisted].to_numpy()] = True
    candidates = repeat_candidates(tokens, allowed, window)  # [n, (row, t, s)]
    example = pick_example(candidates, window, seed)
    if example is None:
        raise ConfigError("heads.views.window", f"no experiment sequence has a whitelisted token that repeats, with "
                                                f"the token after it, within {window} positions: widen the window")
    x = torch.from_numpy(tokens[example.row]).long()  # [pos]
    patterns = [p[0] for p in attention_patterns(model, x[None])]  # per layer [head, q, k]
    tokenizer = Tokenizer.from_file(paths.TOKENIZER)
    labels = [token_text(tokenizer, i) for i in x.tolist()]  # [pos]
    heads = role_heads(roles)
    t, s = example.query, example.earlier
    # The one example in context: the same attention at every candidate of the rule.
    at_candidates = attention_at_candidates(lambda x: attention_patterns(model, x), tokens, candidates,
                                            [parse_head_name(head) for head, _ in heads],
                                            batch_size).mean(axis=0)  # [head, 3]
    attention = {}
    for (head, role), means in zip(heads, at_candidates):
        layer, h = parse_head_name(head)
        row = patterns[layer][h, t]
        attention[head] = {"role": role, "to_earlier_copy": rounded(row[s]), "to_token_after_copy": rounded(row[s + 1]),
                           "to_previous_token": rounded(row[t - 1]), "to_itself": rounded(row[t]),
                           "to_begin": rounded(row[0]),
                           "candidates_mean": {"to_token_after_copy": rounded(means[0]),
                                               "to_earlier_copy": rounded(means[1]), "to_begin": rounded(means[2])}}
    seq_ids = pd.read_parquet(paths.SEQUENCES, columns=["seq_id"]).seq_id
    views = {
        "example": {"seq_id": int(seq_ids[example.row]), "rule": example_rule(window, seed), "seed": seed,
                    "window": window, "candidates": example.candidates, "query": t, "earlier": s,
                    "start": example.start, "stop": example.stop, "token": int(x[t]), "token_text": labels[t],
                    "next_token_text": labels[t + 1], "attention_at_query": attention},
        "relative": {"max_offset": max_offset, "sequences": int(heldout.shape[0]),
                     "queries": f"positions t >= {max_offset} of each held-out sequence",
                     "beyond_max_offset": {f"0.{h}": rounded(1 - relative[h].sum()) for h in range(n_heads)}},
    }
    write_json(target.head_views, views)

    scores_chart(scores, roles, target.head_scores_figure)
    example_chart(patterns, heads, example, labels, views["example"]["seq_id"], attention, target.head_example_figure)
    relative_chart(relative.numpy(), roles, heldout.shape[0], target.relative_figure)
    print(f"views: example sequence {views['example']['seq_id']} (t={t}, s={s}, one of {example.candidates}); "
          f"relative attention up to offset {max_offset}")


if __name__ == "__main__":
    run_stage(main)
