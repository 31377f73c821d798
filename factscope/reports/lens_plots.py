"""PNG plots for the vocabulary lens (RETS Figure 3) and component dynamics (PMET Figure 2).

Usage::

    plot_attributes_rate(result, "out/attributes_rate.png")
    plot_rank_flow(result, "out/rank_flow.png")
    plot_knockout(result, "out/knockout.png")
    plot_dynamics(dynamics, "out/dynamics.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from factscope.localize.dynamics import DynamicsResult
    from factscope.localize.lens import LensResult
    from factscope.localize.lens_dataset import LensDatasetResult


def _save(fig: "plt.Figure", path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_attributes_rate(result: "LensDatasetResult", path: str | Path) -> Path:
    """Mean AR (%) per layer at the last relation token (RETS Fig. 3a)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(result.layers, [100 * v for v in result.ar_mean], color="orange")
    ax.axvline(result.plateau_layer, color="grey", linestyle="--", linewidth=1, label=f"plateau (layer {result.plateau_layer})")
    ax.set_xlabel("layer")
    ax.set_ylabel("attributes rate (%)")
    ax.set_title(f"{result.model}: AR@{result.k} at the last relation token (n={result.n_used})")
    ax.legend()
    return _save(fig, path)


def plot_rank_flow(result: "LensDatasetResult", path: str | Path) -> Path:
    """Mean rank of the object's first token vs a random token per layer (RETS Fig. 3c)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(result.layers, result.object_rank_mean, label="target object", linewidth=2)
    ax.plot(result.layers, result.random_rank_mean, label="random token", linewidth=2)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean rank (1 = top)")
    ax.set_title(f"{result.model}: rank flow (Spearman ρ(−rank, AR) = {result.spearman_rho:.2f})")
    ax.legend()
    return _save(fig, path)


def plot_knockout(result: "LensDatasetResult", path: str | Path) -> Path:
    """Mean AR decline at the evaluation layer per knocked-out window start (RETS Fig. 3b)."""
    ko = result.knockout
    if not ko:
        raise ValueError("The result has no knock-out data (run with knockout enabled).")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.axhline(0, color="black", linewidth=0.8)
    labels = {"mlp": "blocking MLP", "attn": "blocking attention"}
    for kind, values in ko["decline_mean"].items():
        ax.plot(ko["starts"], [100 * v for v in values], marker="o", markersize=3, label=labels.get(kind, kind))
    ax.set_xlabel(f"first knocked-out layer (window {ko['window']})")
    ax.set_ylabel(f"AR decline at layer {ko['eval_layer']} (pp)")
    ax.set_title(f"{result.model}: knock-out at the last relation token (n={ko['n']})")
    ax.legend()
    return _save(fig, path)


def plot_dynamics(result: "DynamicsResult", path: str | Path, *, stable_layer: int | None = None) -> Path:
    """Mean cosine and top-k Jaccard similarity of h^{l-1} vs a^l / m^l per layer (PMET Fig. 2)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    names = {"attn": "MHSA (a^l)", "mlp": "FFN (m^l)"}
    for ax, (metric, values) in zip(axes, (("cosine", result.cos), (f"Jaccard@{result.k}", result.jaccard))):
        for comp, curve in values.items():
            ax.plot(result.layers, curve, marker="o", markersize=3, label=names.get(comp, comp))
        if stable_layer is not None:
            ax.axvline(stable_layer, color="grey", linestyle="--", linewidth=1, label=f"FFN stable from {stable_layer}")
        ax.set_xlabel("layer l")
        ax.set_ylabel(f"{metric} with h^(l-1)")
        ax.legend()
    fig.suptitle(f"{result.model}: last-token component dynamics (n={result.n})")
    return _save(fig, path)


def plot_single_lens(result: "LensResult", path: str | Path) -> Path:
    """Object rank (log scale) per layer for one prompt."""
    if result.object_id is None:
        raise ValueError("The lens result has no object to plot (pass object=...).")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r.layer for r in result.layers], [r.object_rank for r in result.layers], marker="o")
    ax.set_yscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("layer")
    ax.set_ylabel(f"rank of {result.object_token!r}")
    ax.set_title(f"{result.prompt!r} @ token {result.position}")
    return _save(fig, path)
