"""heads@<seed>: measure every head of one model and settle the roles the hypotheses refer to.

    python -m pipeline.stages.heads 0

Outputs in data/heads/seed<N>/ and reports/heads/seed<N>/, one folder per model (`seeds`).
Scores (scores.json, a DVC metrics file): per head, mean attention to the previous
token and to earlier copies of the current token on held-out sequences; per layer-1 head,
attention to the induction target on repeated random tokens; the loss on the first and second
copy of those tokens. Roles (roles.json): `roles.*` from config where given, else
proposed from the scores (pipeline.analysis.roles).

Head views, for the report (parameters `heads.views.*`): the scores as heatmaps with the roles
outlined (scores.png); the role heads' attention on one held-out sequence with a repeated token,
picked by the rule stored with it in views.json (example.png); each layer-0 head's mean
attention by relative position (relative_attention.csv, a DVC plot, and relative.png). The views read
the roles and scores and never change them: roles.json stays byte-identical, so the scrub stages
downstream do not rerun when only a view changes.
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
    Example,
    attention_at_candidates,
    example_rule,
    pick_example,
    relative_attention,
    repeat_candidates,
)
from pipeline.analysis.roles import propose_roles, resolve_roles
from pipeline.analysis.scores import head_scores, layer_patterns, repeated_random_tokens
from pipeline.config.heads import ROLES, parse_head_name
from pipeline.config.load import load_params, model_argument, require
from pipeline.data.sequences import load_sequences, ordinary_ids
from pipeline.errors import ConfigError
from pipeline.outputs import atomic_path, run_stage, write_json
from pipeline.report.figures import (
    ROLE_COLOR,
    heatmap,
    outline_cells,
    plt,
    save_figure,
    token_text,
)
from pipeline.weights.checkpoint import load_checkpoint


def main() -> None:
    params = load_params()
    cfg = require(params, "heads")
    views_cfg = require(params, "heads.views")
    target = model_argument(params, sys.argv[1:], "python -m pipeline.stages.heads SEED")
    meta = json.loads(Path(paths.TOKENS_META).read_text())
    model = load_checkpoint(target.checkpoint, "model.dir").eval()
    scores, heldout = measure(model, cfg, meta)
    roles = resolve_roles(require(params, "roles"), lambda given: propose_roles(scores, cfg, given), model.cfg)
    summary = summarize_scores(scores)
    # the views first: a view that cannot be drawn stops the stage before roles.json changes
    write_views(target, model, views_cfg, scores, roles, heldout[:, :-1])
    write_json(target.head_scores, {**summary, **scores})
    write_json(target.roles, roles)
    print("roles:", roles, "|", {k: round(v, 3) for k, v in summary.items()})


def measure(model, cfg: dict, meta: dict) -> tuple[dict, torch.Tensor]:
    """Every head's scores (pipeline.analysis.scores.head_scores) on the first `heads.heldout_sequences`
    experiment sequences and on repeated random tokens; and those sequences [batch, pos + 1]."""
    seqs = pd.read_parquet(paths.SEQUENCES).tokens
    if len(seqs[0]) - 1 > model.cfg.n_ctx:
        raise ConfigError("sequences.seq_len",
                          f"{len(seqs[0]) - 2} + BEGIN exceeds the model's context n_ctx={model.cfg.n_ctx}")
    heldout = torch.tensor(np.stack(seqs.head(cfg["heldout_sequences"]).map(np.asarray).tolist()), dtype=torch.long)
    length = cfg["repeat_length"]
    if 1 + 2 * length > model.cfg.n_ctx:
        raise ConfigError("heads.repeat_length", f"1 + 2·{length} exceeds n_ctx={model.cfg.n_ctx}")
    repeated = repeated_random_tokens(cfg["repeat_sequences"], length, ordinary_ids(meta),
                                      meta["begin_id"], seed=0)
    return head_scores(model, heldout[:, :-1], repeated, length), heldout


def summarize_scores(scores: dict) -> dict:
    """The one-number summaries of measure's scores that head scores.json leads with."""
    return {
        "max_previous_token_score_layer0": max(scores["previous_token_score"][0]),
        "max_same_token_score_layer0": max(scores["same_token_score"][0]),
        "max_induction_score": max(scores["induction_score"]),
        "repeat_loss_drop": scores["loss_first_half"] - scores["loss_second_half"],
    }


def role_heads(roles: dict) -> list[tuple[str, str]]:
    """(head, role) of every role head, in the order prev, self, induction."""
    out = []
    for role in ROLES:
        given = roles.get(role)
        out += [(head, role) for head in ([given] if isinstance(given, str) else given or [])]
    return out


def write_views(target: paths.ModelPaths, model, cfg: dict, scores: dict, roles: dict, heldout: torch.Tensor) -> None:
    """The head views (module docstring). heldout: the held-out sequences the scores are measured
    on, as model input [batch, pos]."""
    from tokenizers import Tokenizer

    max_offset, window, seed = cfg["max_offset"], cfg["window"], cfg["seed"]
    if max_offset >= heldout.shape[1]:
        raise ConfigError("heads.views.max_offset", f"{max_offset} must be below the {heldout.shape[1]} positions "
                                                    f"of a held-out sequence (BEGIN + sequences.seq_len)")
    relative = relative_attention(layer_patterns(model, heldout)[0], max_offset)  # [head, offset]
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
    patterns = [p[0] for p in layer_patterns(model, x[None])]  # per layer [head, q, k]
    tokenizer = Tokenizer.from_file(paths.TOKENIZER)
    labels = [token_text(tokenizer, i) for i in x.tolist()]  # [pos]
    heads = role_heads(roles)
    t, s = example.query, example.earlier
    # The one example in context: the same attention at every candidate of the rule.
    at_candidates = attention_at_candidates(lambda x: layer_patterns(model, x), tokens, candidates,
                                            [parse_head_name(head) for head, _ in heads]).mean(axis=0)  # [head, 3]
    attention = {}
    for (head, role), means in zip(heads, at_candidates):
        layer, h = parse_head_name(head)
        row = patterns[layer][h, t]
        attention[head] = {"role": role, "to_earlier_copy": float(row[s]), "to_token_after_copy": float(row[s + 1]),
                           "to_previous_token": float(row[t - 1]), "to_itself": float(row[t]),
                           "to_begin": float(row[0]),
                           "candidates_mean": {"to_token_after_copy": float(means[0]), "to_earlier_copy": float(means[1]),
                                               "to_begin": float(means[2])}}
    seq_ids = pd.read_parquet(paths.SEQUENCES, columns=["seq_id"]).seq_id
    views = {
        "example": {"seq_id": int(seq_ids[example.row]), "rule": example_rule(window, seed), "seed": seed,
                    "window": window, "candidates": example.candidates, "query": t, "earlier": s,
                    "start": example.start, "stop": example.stop, "token": int(x[t]), "token_text": labels[t],
                    "next_token_text": labels[t + 1], "attention_at_query": attention},
        "relative": {"max_offset": max_offset, "sequences": int(heldout.shape[0]),
                     "queries": f"positions t >= {max_offset} of each held-out sequence",
                     "beyond_max_offset": {f"0.{h}": float(1 - relative[h].sum()) for h in range(n_heads)}},
    }
    write_json(target.head_views, views)

    save_figure(scores_figure(scores, roles), target.head_scores_figure)
    save_figure(example_figure(patterns, heads, example, labels, views["example"]["seq_id"], attention),
                target.head_example_figure)
    save_figure(relative_figure(relative.numpy(), roles, heldout.shape[0]), target.relative_figure)
    print(f"views: example sequence {views['example']['seq_id']} (t={t}, s={s}, one of {example.candidates}); "
          f"relative attention up to offset {max_offset}")


def scores_figure(scores: dict, roles: dict):
    """Heatmaps of the previous-token and same-token scores (every layer) and the induction scores
    (layer 1), each role's heads outlined in its own score."""
    prev, same = np.asarray(scores["previous_token_score"]), np.asarray(scores["same_token_score"])
    induction = np.asarray(scores["induction_score"])[None, :]
    n_layers, n_heads = prev.shape
    panels = [
        ("previous-token score: mean attention to position t − 1", prev, "prev"),
        ("same-token score: mean attention to earlier copies of the token at t", same, "self"),
        ("induction score: attention to the token after the earlier copy (repeated random tokens)", induction,
         "induction"),
    ]
    layer_names = [[f"layer {layer}" for layer in range(n_layers)]] * 2 + [["layer 1"]]
    fig, axes = plt.subplots(3, 1, figsize=(0.8 * n_heads + 3, 0.9 * (2 * n_layers + 1) + 3.6), layout="constrained",
                             gridspec_kw={"height_ratios": [n_layers, n_layers, 1]})
    cells = {"prev": [], "self": [], "induction": []}
    for head, role in role_heads(roles):
        layer, h = parse_head_name(head)
        cells[role].append((0 if role == "induction" else layer, h))
    for ax, (title, values, role), names in zip(axes, panels, layer_names):
        image = heatmap(ax, values, xticklabels=[str(h) for h in range(n_heads)], yticklabels=names,
                        annotate="{:.2f}" if n_heads <= 16 else None)
        outline_cells(ax, cells[role])
        ax.set_title(title + ("" if cells[role] else f" — no head has the role {role}"), fontsize=10)
        ax.set_xlabel("head")
    fig.colorbar(image, ax=axes, shrink=0.8, label="score (fraction of attention)")
    described = "; ".join(f"{role}: {', '.join(head for head, r in role_heads(roles) if r == role) or 'none'}"
                          for role in ROLES)
    fig.suptitle(f"Head scores, outlined in red: the heads given each role\n({described})", fontsize=11)
    return fig


def example_figure(patterns: list[torch.Tensor], heads: list[tuple[str, str]], example: Example,
                   labels: list[str], seq_id: int, attention: dict):
    """The role heads' attention on the example's window: one panel per head, queries (the
    window's positions) down, keys across: position 0 (BEGIN, where heads with nothing to do put
    their attention), the window, and what falls elsewhere, so that each row sums to 1.
    labels: every position's token text; attention: views.json's attention_at_query (for the
    means over every candidate of the rule)."""
    start, stop, t, s = example.start, example.stop, example.query, example.earlier
    keys = ([0] if start > 0 else []) + list(range(start, stop))
    key_labels = [labels[k] for k in keys] + ["elsewhere"]
    query_labels = labels[start:stop]
    col = {k: i for i, k in enumerate(keys)}
    n = len(heads)
    columns = min(n, 3) or 1
    grid_rows = max(1, -(-n // columns))
    width, height = 0.2 * len(key_labels) + 1.8, 0.2 * len(query_labels) + 2
    fig, axes = plt.subplots(grid_rows, columns, figsize=(width * columns + 1.5, height * grid_rows + 1.4),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    if not heads:
        axes[0, 0].text(0.5, 0.5, "no role heads (roles.json is empty)", ha="center",
                        transform=axes[0, 0].transAxes)
    image = None
    # tick colours: A (the repeated token) orange, B (the token after it) green
    marked_keys = {col[s]: "tab:orange", col[t]: "tab:orange", col[s + 1]: "tab:green", col[t + 1]: "tab:green"}
    marked_queries = {p - start: c for p, c in ((s, "tab:orange"), (t, "tab:orange"), (s + 1, "tab:green"),
                                                (t + 1, "tab:green"))}
    for ax, (head, role) in zip(axes.flat, heads):
        layer, h = parse_head_name(head)
        rows = patterns[layer][h, start:stop]  # [query in window, key]
        shown = rows[:, keys].numpy()
        values = np.concatenate([shown, 1 - shown.sum(axis=1, keepdims=True)], axis=1)
        image = heatmap(ax, values, cmap="Blues", xticklabels=key_labels, yticklabels=query_labels, annotate=None)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        for ticks, marked in ((ax.get_xticklabels(), marked_keys), (ax.get_yticklabels(), marked_queries)):
            for i, label in enumerate(ticks):
                if i in marked:
                    label.set_color(marked[i])
                    label.set_fontweight("bold")
        for boundary in ([0.5] if start > 0 else []) + [len(keys) - 0.5]:
            ax.axvline(boundary, color="grey", linewidth=1)
        outline_cells(ax, [(t - start, col[s + 1])], color=ROLE_COLOR, linewidth=2)
        outline_cells(ax, [(t - start, col[s])], color="tab:orange", linewidth=2)
        means = attention[head]["candidates_mean"]
        ax.set_title(f"{head} ({role}), from t: {float(rows[t - start, s + 1]):.2f} to s+1, "
                     f"{float(rows[t - start, s]):.2f} to s, {float(rows[t - start, 0]):.2f} to BEGIN\n"
                     f"mean over all {example.candidates} candidates: {means['to_token_after_copy']:.2f} to s+1, "
                     f"{means['to_earlier_copy']:.2f} to s, {means['to_begin']:.2f} to BEGIN", fontsize=9)
        ax.set_xlabel("key (attended-to token)", fontsize=8)
        ax.set_ylabel("query (attending token)", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat[:n]), shrink=0.6, label="attention")
    fig.suptitle(f"Role heads' attention on held-out sequence {seq_id}, queries at positions {start}–{stop - 1}: the "
                 f"token {labels[t]} at t={t} (orange) occurred once before, at s={s}, followed by {labels[s + 1]} "
                 f"(green) both times.\nOutlined: query t → key s+1 (red: where an induction head should look) "
                 f"and → key s (orange: the earlier copy). Keys: BEGIN, the window, and all other positions.",
                 fontsize=10)
    return fig


def relative_figure(relative: np.ndarray, roles: dict, n_sequences: int):
    """Each layer-0 head's mean attention by offset (relative [head, offset]), with a last column
    for everything further back."""
    n_heads, n_offsets = relative.shape
    max_offset = n_offsets - 1
    values = np.concatenate([relative, 1 - relative.sum(axis=1, keepdims=True)], axis=1)
    role_of = {head: role for head, role in role_heads(roles)}
    names = [f"0.{h}" + (f" ({role_of[f'0.{h}']})" if f"0.{h}" in role_of else "") for h in range(n_heads)]
    fig, ax = plt.subplots(figsize=(0.62 * (n_offsets + 1) + 3, 0.45 * n_heads + 2), layout="constrained")
    image = heatmap(ax, values, cmap="viridis", xticklabels=[str(k) for k in range(n_offsets)] + [f"> {max_offset}"],
                    yticklabels=names, fontsize=7)
    ax.axvline(n_offsets - 0.5, color="white", linewidth=3)
    ax.set_xlabel("offset k: the key is at t − k (0 = the query itself, 1 = the previous token)")
    ax.set_ylabel("layer-0 head")
    ax.set_title(f"Mean attention of each layer-0 head by relative position\n"
                 f"({n_sequences} held-out sequences, queries t ≥ {max_offset}; the last column is the rest)",
                 fontsize=10)
    fig.colorbar(image, ax=ax, label="mean attention")
    return fig


if __name__ == "__main__":
    run_stage(main)
