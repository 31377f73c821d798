"""What each artefact costs: its work units for a size preset, seconds per unit, the estimate.

Usage::

    from factscope.reproduce.cost import estimate, units
    units(preset("standard"), n_layers=30)["rets_table3"]     # 6 editors × eval_cases + 1 + MEND training
    estimate(preset("standard"), 30, reused_layers={"rome": 5, "rets": 22})["rets_fig5"]  # (units, s/unit, s)

A unit is the thing whose count the sizes set: a traced fact, an edited case of one
editor, a fact of one batch edit. Work another artefact already did counts for the
first artefact that needs it only (the shared trace, the unedited and PMET batches,
the Figure 5 runs at the editors' default layers, which are Table 3's runs).
:data:`SECONDS_PER_UNIT` was measured by ``benchmarks/bench_reproduce.py`` on the
shared 2-core development CPU (1 thread); ``per_unit`` overrides it (e.g. with the
figures a run measures on a GPU).
"""

from __future__ import annotations

from collections.abc import Mapping

from factscope.reproduce.sizes import Sizes

# Measured by benchmarks/bench_reproduce.py (docs/reproduction.md, "Cost"): CPU seconds of the
# process (1 thread) per unit at small n, so a step's fixed cost is folded in; on a quiet
# 2-core machine that is the wall time, on a shared one the wall time is larger.
SECONDS_PER_UNIT: dict[str, float] = {
    "rets_table1": 39.6,
    "rets_fig2": 0.8,
    "rets_fig3_table2": 0.05,
    "rets_table3": 9.1,
    "rets_fig5": 8.5,
    "seed001_tables12": 10.4,
    "seed001_fig2": 0.6,
    "seed001_fig3": 12.9,
    "pmet_fig2": 0.3,
    "pmet_table1": 5.3,
    "pmet_table3": 4.3,
}
KNOCKOUT_WEIGHT = 30  # one knock-out fact costs about this many lens facts (two components × every layer)
# docs/evaluation.md, "KN and MEND" (100 cases, 1 thread): a KN edit at the bare prompt took 30 s
# plus 3 s of scoring, about 3 single edits of the other editors; MEND's 300 training steps take
# about as long as 16 Table 3 edits, once per model (the editor is cached), and a MEND edit ~1 s.
KN_WEIGHT = 3
MEND_TRAINING_UNITS = 16
UNIT_NAMES = {
    "rets_table1": "traced facts (both corruptions, 3 kinds)",
    "rets_fig2": "— (the shared trace)",
    "rets_fig3_table2": "lens facts + 30 × knock-out facts",
    "rets_table3": "(editor, case) single edits, 6 editors + unedited pass + 16 for MEND's training",
    "rets_fig5": "(editor, layer, case) single edits not shared with Table 3",
    "seed001_tables12": "(run, case): 4 editors × 2 perspectives + 2 ROME relation variants + KN (×3) × 2",
    "seed001_fig2": "— (the shared trace)",
    "seed001_fig3": "severed facts",
    "pmet_fig2": "prompts",
    "pmet_table1": "batch facts × 3 runs (unedited, MEMIT, PMET)",
    "pmet_table3": "batch facts × ablation runs not shared with Table 1",
}


def units(sizes: Sizes, n_layers: int, reused_layers: Mapping[str, int] | None = None) -> dict[str, int]:
    """Work units of every artefact under ``sizes``; ``reused_layers``: ROME's and RETS's default layers."""
    reused = dict(reused_layers or {})
    layers = sizes.sweep_layer_indices(n_layers)
    shared = sum(1 for e in ("rome", "rets") if reused.get(e) in layers) if sizes.sweep_cases <= sizes.eval_cases else 0
    ablation_runs = 3 + (0 if sizes.n_ablation == sizes.batch_cases else 2)  # PMET and unedited re-run at another n
    return {
        "rets_table1": sizes.trace_facts,
        "rets_fig2": 1,
        "rets_fig3_table2": sizes.lens_facts + KNOCKOUT_WEIGHT * sizes.knockout_facts,
        "rets_table3": 6 * sizes.eval_cases + 1 + MEND_TRAINING_UNITS,
        "rets_fig5": (2 * len(layers) - shared) * sizes.sweep_cases,
        "seed001_tables12": (10 + 2 * KN_WEIGHT) * sizes.perspective_cases,
        "seed001_fig2": 1,
        "seed001_fig3": sizes.severed_facts,
        "pmet_fig2": sizes.dynamics_facts,
        "pmet_table1": 3 * sizes.batch_cases,
        "pmet_table3": ablation_runs * sizes.n_ablation,
    }


def estimate(sizes: Sizes, n_layers: int, per_unit: Mapping[str, float] | None = None,
             reused_layers: Mapping[str, int] | None = None) -> dict[str, tuple[int, float, float]]:
    """``{artefact: (units, seconds per unit, estimated seconds)}``."""
    rates = {**SECONDS_PER_UNIT, **(per_unit or {})}
    return {name: (u, rates[name], u * rates[name]) for name, u in units(sizes, n_layers, reused_layers).items()}


def format_seconds(seconds: float) -> str:
    """``"42 s"``, ``"12.5 min"`` or ``"3.2 h"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_table(sizes: Sizes, n_layers: int, per_unit: Mapping[str, float] | None = None,
                   reused_layers: Mapping[str, int] | None = None) -> str:
    """A Markdown table: artefact, units, s/unit, estimated total; and the sum."""
    rows = estimate(sizes, n_layers, per_unit, reused_layers)
    lines = ["| artefact | units | unit | s/unit | estimate |", "|---|---|---|---|---|"]
    for name, (u, rate, secs) in rows.items():
        lines.append(f"| `{name}` | {u} | {UNIT_NAMES[name]} | {rate:g} | {format_seconds(secs)} |")
    total = sum(s for _, _, s in rows.values())
    lines.append(f"| **total** | | | | **{format_seconds(total)}** |")
    return "\n".join(lines)
