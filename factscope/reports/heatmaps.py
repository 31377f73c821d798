"""Causal-tracing heatmaps: per prompt (tokens × layers) and per position group (RETS Fig. 2).

Usage::

    plot_trace(result, "out/state.png")                  # one TraceResult, ROME-style
    plot_traces({"state": r1, "mlp": r2, "attn": r3}, "out/all.png")
    plot_group_grid(grid, group_names, "mlp", "out/aier_mlp.png", corrupted={"fr", "mr", "lr"})
    print(text_heatmap(result))                          # compact terminal view
    fit_title("a long prompt → its target", width_inches=4.2)   # wrapped text and font size that fit

Rows marked ``*`` are the corrupted tokens (groups), as in RETS Fig. 2.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from factscope.localize.tracing import TraceResult

CMAPS = {"state": "Purples", "mlp": "Greens", "attn": "Reds"}
_SHADES = " ░▒▓█"


def _cmap(kind: str) -> str:
    return CMAPS.get(kind, "Blues")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def token_labels(result: "TraceResult") -> list[str]:
    """Decoded tokens with ``*`` on corrupted ones."""
    return [f"{tok!r}{'*' if i in result.corrupted else ''}" for i, tok in enumerate(result.tokens)]


def _draw_trace(ax, result: "TraceResult", *, show_ylabels: bool = True) -> None:
    data = result.ie.numpy()
    kind = result.config.severed and "state" or result.kind
    vmax = max(float(np.abs(data).max()), 1e-9)
    img = ax.pcolormesh(data, cmap=_cmap(kind), vmin=min(0.0, float(data.min())), vmax=vmax)
    ax.invert_yaxis()
    ax.set_yticks(np.arange(len(result.tokens)) + 0.5)
    ax.set_yticklabels(token_labels(result) if show_ylabels else [""] * len(result.tokens), fontsize=8)
    step = max(1, result.n_layers // 10)
    ax.set_xticks(np.arange(0, result.n_layers, step) + 0.5)
    ax.set_xticklabels(range(0, result.n_layers, step), fontsize=8)
    ax.set_xlabel("layer")
    what = result.label() if result.kind == "state" else f"{result.kind} (window {result.config.window})"
    ax.set_title(f"restore {what}\ncorrupt {result.config.corrupt}", fontsize=9)
    bar = ax.figure.colorbar(img, ax=ax, fraction=0.05)
    bar.set_label(f"IE on P({result.target!r})", fontsize=8)


def fit_title(text: str, width_inches: float, fontsize: float = 9, min_fontsize: float = 7, max_lines: int = 3) -> tuple[str, float]:
    """``text`` wrapped to a figure ``width_inches`` wide, in the largest font ≥ ``min_fontsize`` that needs ≤ ``max_lines``.

    A character is taken as 0.6 em wide (DejaVu Sans averages about 0.55), so the lines fit
    with a small margin; at ``min_fontsize`` the text wraps into as many lines as it needs.
    """
    import textwrap

    size = fontsize
    while True:
        chars = max(10, int(width_inches * 72 / (0.6 * size)) - 2)
        lines = textwrap.wrap(text, chars, break_long_words=True, break_on_hyphens=False) or [""]
        if len(lines) <= max_lines or size <= min_fontsize:
            return "\n".join(lines), size
        size -= 1


def plot_trace(result: "TraceResult", path: str | Path) -> Path:
    """One grid as a PNG; returns the path."""
    return plot_traces({result.label(): result}, path)


def plot_traces(results: Mapping[str, "TraceResult"], path: str | Path) -> Path:
    """Grids of one prompt side by side (e.g. state, mlp, attn) as one PNG."""
    plt = _plt()
    items = list(results.values())
    if not items:
        raise ValueError("No traces to plot.")
    width = 4.2 * len(items)
    first = items[0]
    title, fontsize = fit_title(
        f"{first.prompt!r} → {first.target!r}  (clean {first.clean_prob:.3f}, corrupted {first.corrupted_prob:.3f})", width)
    title_height = (title.count("\n") + 1) * fontsize * 1.4 / 72  # inches
    height = 1.0 + 0.32 * len(items[0].tokens) + title_height
    fig, axes = plt.subplots(1, len(items), figsize=(width, height), squeeze=False)
    for i, (ax, result) in enumerate(zip(axes[0], items)):
        _draw_trace(ax, result, show_ylabels=i == 0)
    fig.suptitle(title, fontsize=fontsize, y=1 - 0.04 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - (title_height + 0.04) / height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_group_grid(
    grid: np.ndarray,
    groups: Sequence[str],
    kind: str,
    path: str | Path,
    *,
    corrupted: Collection[str] = (),
    title: str = "",
    n_facts: int | None = None,
) -> Path:
    """Average IE per (position group, layer), RETS Fig. 2 / seed 001 Fig. 2 layout; NaN rows blank."""
    plt = _plt()
    data = np.ma.masked_invalid(np.asarray(grid, dtype=float))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(groups) + 1.4))
    vmax = max(float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0, 1e-9)
    img = ax.pcolormesh(data, cmap=_cmap(kind), vmin=0.0, vmax=vmax)
    ax.invert_yaxis()
    ax.set_yticks(np.arange(len(groups)) + 0.5)
    ax.set_yticklabels([f"{g}{'*' if g in corrupted else ''}" for g in groups])
    n_layers = grid.shape[1]
    step = max(1, n_layers // 10)
    ax.set_xticks(np.arange(0, n_layers, step) + 0.5)
    ax.set_xticklabels(range(0, n_layers, step))
    ax.set_xlabel("layer")
    suffix = f" over {n_facts} facts" if n_facts is not None else ""
    ax.set_title(title or f"average indirect effect, restore {kind}{suffix}", fontsize=9)
    fig.colorbar(img, ax=ax, fraction=0.05).set_label("AIE (probability)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def text_heatmap(result: "TraceResult", width: int = 16) -> str:
    """A compact terminal heatmap: one row per token, one shade per layer (scaled to the max IE)."""
    ie = result.ie.numpy()
    top = float(ie.max())
    labels = token_labels(result)
    pad = min(width, max(len(s) for s in labels))
    lines = [
        f"restore {result.label()}"
        + (f" (window {result.config.window})" if result.kind != "state" else "")
        + f", corrupt {result.config.corrupt}: P({result.target!r}) clean {result.clean_prob:.4f}, "
        f"corrupted {result.corrupted_prob:.4f}, max IE {top:+.4f}"
    ]
    for label, row in zip(labels, ie):
        cells = "".join(
            _SHADES[min(len(_SHADES) - 1, int(round(max(0.0, v) / top * (len(_SHADES) - 1))))] if top > 0 else " "
            for v in row
        )
        lines.append(f"{label[:pad]:>{pad}} |{cells}| {row.max():+.3f}")
    lines.append(f"{'':>{pad}}  layer 0..{result.n_layers - 1}")
    return "\n".join(lines)
