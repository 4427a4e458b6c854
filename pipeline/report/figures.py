"""Shared matplotlib helpers for the figures the stages write (reports/…).

Importing this module selects the Agg backend before pyplot is imported anywhere: the stages run
headless (DVC, CI, a server), where an interactive backend would fail or open windows. Import
pyplot from here (`from pipeline.report.figures import plt`) so that the order is always right.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pipeline.outputs import atomic_path  # noqa: E402

DPI = 120
ROLE_COLOR = "#d62728"  # outlines of role heads: red reads on every colormap used here


def save_figure(fig: "matplotlib.figure.Figure", path: Path | str, dpi: int = DPI) -> None:
    """Write `fig` as PNG at `path` atomically (pipeline.outputs.atomic_path) and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def heatmap(ax, values: np.ndarray, *, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis",
            xticklabels: Sequence[str] | None = None, yticklabels: Sequence[str] | None = None,
            annotate: str | None = "{:.2f}", fontsize: float = 8):
    """values [row, col] as an image with one cell per entry (row 0 at the top); each cell's value
    written in it (format `annotate`, None for none) in black or white, whichever reads on its
    colour. Returns the image, for a colorbar."""
    values = np.asarray(values, dtype=float)
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto", interpolation="nearest")
    if xticklabels is not None:
        ax.set_xticks(range(values.shape[1]), labels=xticklabels)
    if yticklabels is not None:
        ax.set_yticks(range(values.shape[0]), labels=yticklabels)
    if annotate:
        colormap = plt.get_cmap(cmap)
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                red, green, blue, _ = colormap((v - vmin) / (vmax - vmin) if vmax > vmin else 0.0)
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(c, r, annotate.format(v), ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")
    return image


def outline_cells(ax, cells: Iterable[tuple[int, int]], color: str = ROLE_COLOR, linewidth: float = 2.5) -> None:
    """A rectangle around each (row, col) cell of a heatmap."""
    for r, c in cells:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=linewidth))


def token_text(tokenizer, token_id: int) -> str:
    """A token as a tick label: its text double-quoted and escaped, so that a leading space or a
    newline shows (`" the"`, `"\\n"`); a special token ([BEGIN]) or a piece of a multi-byte
    character (which decodes to U+FFFD) by its vocabulary string instead."""
    text = tokenizer.decode([int(token_id)], skip_special_tokens=False)
    special = tokenizer.decode([int(token_id)], skip_special_tokens=True) == "" != text
    if special or text == "" or "\ufffd" in text:
        return tokenizer.id_to_token(int(token_id)) or f"<{int(token_id)}>"
    return json.dumps(text, ensure_ascii=False)


def sweep_figure(frame, path: Path | str) -> None:
    """% recovered against the mask, one panel per part, cumulative and single side by side at
    each offset m (cumulative: {0,…,m}; single: {m}), whiskers the bootstrap 95% interval.
    `frame`: the sweep stage's DataFrame (part, kind, offsets "0,1,2", recovered, ci_low, ci_high)."""
    styles = {"cumulative": ("tab:blue", "o", -0.08, "cumulative {0,…,m}"),
              "single": ("tab:orange", "s", 0.08, "single {m}")}
    parts = list(dict.fromkeys(frame.part))
    fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4.2), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, part in zip(axes, parts):
        for kind, (color, marker, shift, label) in styles.items():
            sub = frame[(frame.part == part) & (frame.kind == kind)]
            m = np.array([int(o.split(",")[-1]) for o in sub.offsets])
            # a point outside its interval (possible for a percentile bootstrap) gets no whisker on that side
            err = np.clip([sub.recovered - sub.ci_low, sub.ci_high - sub.recovered], 0, None)
            ax.errorbar(m + shift, sub.recovered, yerr=err, color=color, marker=marker, capsize=3,
                        linestyle="-" if kind == "cumulative" else ":", label=label)
            # values beside the points, away from the whiskers: cumulative's left, single's right
            for x, y in zip(m + shift, sub.recovered):
                ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(-9 if shift < 0 else 9, 0),
                            ha="right" if shift < 0 else "left", va="center", fontsize=8, color=color)
        ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
        ax.axhline(0, color="grey", linewidth=0.8)
        offsets = sorted({int(o.split(",")[-1]) for o in frame.offsets})
        ax.set_xticks(offsets)
        ax.set_xlim(offsets[0] - 0.5, offsets[-1] + 0.5)
        ax.set_xlabel("offset m (positions back from the query)")
        ax.set_title(f"{part.upper()} of the induction heads")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("% loss recovered (95% CI)")
    axes[0].legend(loc="lower right", fontsize=9)
    fig.suptitle("Which positions matter: refined 2 with the layer-0 mask varied")
    fig.tight_layout()
    save_figure(fig, path)
