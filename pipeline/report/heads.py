"""The heads stage's figures (reports/heads/seed<N>/): the head scores as heatmaps with the roles
outlined (scores.png), the role heads' attention on the example sequence (example.png), and each
layer-0 head's mean attention by relative position (relative.png). `*_figure` builds a figure,
`*_chart` writes it; the stage computes what they draw (pipeline/stages/heads.py)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.analysis.roles import role_heads
from pipeline.config.heads import ROLES, parse_head_name
from pipeline.report.figures import ROLE_COLOR, heatmap, outline_cells, plt, save_figure

if TYPE_CHECKING:
    import torch

    from pipeline.analysis.head_views import Example


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


def scores_chart(scores: dict, roles: dict, path: Path | str) -> None:
    save_figure(scores_figure(scores, roles), path)


def example_figure(patterns: list[torch.Tensor], heads: list[tuple[str, str]], example: Example,
                   labels: list[str], seq_id: int, attention: dict):
    """The role heads' attention on the example's window: one panel per head, queries (the
    window's positions) down, keys across: position 0 (BEGIN, where heads with nothing to do put
    their attention), the window, and what falls elsewhere, so that each row sums to 1.
    patterns: per layer [head, q, k] on the example sequence; heads: role_heads of the roles;
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


def example_chart(patterns: list[torch.Tensor], heads: list[tuple[str, str]], example: Example, labels: list[str],
                  seq_id: int, attention: dict, path: Path | str) -> None:
    save_figure(example_figure(patterns, heads, example, labels, seq_id, attention), path)


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


def relative_chart(relative: np.ndarray, roles: dict, n_sequences: int, path: Path | str) -> None:
    save_figure(relative_figure(relative, roles, n_sequences), path)
