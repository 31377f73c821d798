"""How much work each artefact does: the ``--quick``, ``--standard``, ``--full`` and ``tiny`` presets.

Usage::

    sizes = preset("quick").override(["lens_facts=80", "sweep_layers=[0.2, 0.5, 0.75]"])
    sizes.trace_facts, sizes.to_dict()

Layers in ``sweep_layers`` are fractions of depth (``0.75`` of 30 layers = layer 22) or
``"all"``. ``editor_overrides`` go to every editor that has the field (the tiny preset uses them to
shrink the value optimisation and covariance); ``editor_specific`` per editor name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    """Sample sizes and settings of every artefact (see module docstring)."""

    name: str
    trace_facts: int  # correctly predicted known facts traced (wrongly predicted ones are skipped, not counted)
    trace_samples: int  # noise samples per corrupted run
    trace_window: int = 10  # layers restored together for MLP / attention (ROME)
    severed_facts: int = 4  # traced facts also traced with later MLP / attention severed
    lens_facts: int = 40
    knockout_facts: int = 4
    dynamics_facts: int = 16
    eval_cases: int = 4  # COUNTERFACT cases per editor (RETS Table 3)
    generation: bool = False  # Fluency / Consistency (text generation, slow)
    sweep_layers: Any = (0.17, 0.5, 0.73)  # fractions of depth, or "all"
    sweep_cases: int = 3
    perspective_cases: int = 3  # seed 001 Tables 1-2, per editor and perspective
    batch_cases: int = 20  # PMET Table 1 / Table 3
    ablation_cases: int | None = None  # PMET Table 3; None = batch_cases
    threads: int = 1
    edit_group: int = 1  # independent single edits computed together (edit_each); 1 on a CPU, where it does not pay
    editor_overrides: dict = field(default_factory=dict)
    editor_specific: dict = field(default_factory=dict)

    def override(self, items: list[str]) -> "Sizes":
        """A copy with ``KEY=VALUE`` items applied (VALUE parsed as JSON when it can be)."""
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for item in items:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in known or key == "name":
                raise ValueError(f"--sizes expects KEY=VALUE with KEY one of {', '.join(sorted(known - {'name'}))}; got {item!r}.")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            changes[key] = tuple(value) if isinstance(value, list) and key == "sweep_layers" else value
        return replace(self, **changes).validate() if changes else self

    def validate(self) -> "Sizes":
        for name in ("trace_facts", "trace_samples", "trace_window", "lens_facts", "dynamics_facts", "eval_cases",
                     "sweep_cases", "perspective_cases", "batch_cases", "threads", "edit_group"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"Size {name} must be a positive integer, got {getattr(self, name)!r}.")
        for name in ("severed_facts", "knockout_facts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"Size {name} must be a non-negative integer, got {getattr(self, name)!r}.")
        if self.sweep_layers != "all":
            layers = list(self.sweep_layers)
            if not layers or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in layers):
                raise ValueError(f"sweep_layers must be 'all' or fractions of depth in [0, 1], got {self.sweep_layers!r}.")
        return self

    @property
    def n_ablation(self) -> int:
        return self.ablation_cases or self.batch_cases

    def sweep_layer_indices(self, n_layers: int) -> list[int]:
        """The swept layer indices for a model with ``n_layers`` layers."""
        if self.sweep_layers == "all":
            return list(range(n_layers))
        return sorted({min(n_layers - 1, max(0, round(float(f) * n_layers))) for f in self.sweep_layers})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sweep_layers"] = self.sweep_layers if self.sweep_layers == "all" else list(self.sweep_layers)
        return data


# Small enough for a shared 2-core CPU: the value optimisation uses 4 context prefixes of
# 5 tokens and at most 15 Adam steps (the editors' defaults: 20 prefixes, 20-25 steps).
QUICK = Sizes(name="quick", trace_facts=8, trace_samples=3, severed_facts=3, lens_facts=40, knockout_facts=2,
              dynamics_facts=16, eval_cases=3, sweep_layers=(0.17, 0.5, 0.73), sweep_cases=2,
              perspective_cases=2, batch_cases=6, editor_overrides={"context_lengths": [[5, 4]], "v_steps": 15})
# Paper-like: RETS traced 1000 facts, lens over 1000 (knock-out 100), PMET dynamics over 1209,
# Table 3 on all of counterfact_500 with generation, Figure 5 over 50 prompts, 1,000 batch edits.
FULL = Sizes(name="full", trace_facts=1209, trace_samples=10, severed_facts=200, lens_facts=1000, knockout_facts=100,
             dynamics_facts=1209, eval_cases=500, generation=True, sweep_layers="all", sweep_cases=50,
             perspective_cases=200, batch_cases=1000)
# For the test: a 4-layer random model, a handful of hand-made facts, tiny editor settings.
TINY = Sizes(name="tiny", trace_facts=3, trace_samples=2, trace_window=2, severed_facts=1, lens_facts=3,
             knockout_facts=1, dynamics_facts=3, eval_cases=1, sweep_layers=(0.75,), sweep_cases=1,
             perspective_cases=1, batch_cases=2,
             editor_overrides={"context_lengths": [[3, 2]], "v_steps": 3, "mom2_n_tokens": 64},
             editor_specific={"memit": {"layers": [1, 2]}, "pmet": {"layers": [1, 2]}, "ft": {"ft_steps": 3},
                              "kn": {"ig_steps": 4}, "mend": {"rank": 8, "steps": 2, "val_size": 1, "val_every": 0}})
# Sized by the power calculation of factscope/reproduce/power.py (docs/reproduction.md, "The
# standard preset"): each n is the smallest at which the planned effects of its claims clear
# the verdict rule with margin, capped where the whole run would leave the 4-hour budget.
STANDARD = Sizes(name="standard", trace_facts=25, trace_samples=3, severed_facts=25, lens_facts=170, knockout_facts=13,
                 dynamics_facts=25, eval_cases=75, sweep_layers=(0.17, 0.5, 0.73), sweep_cases=25,
                 perspective_cases=25, batch_cases=250, editor_overrides=dict(QUICK.editor_overrides))
PRESETS = {s.name: s for s in (QUICK, STANDARD, FULL, TINY)}


def preset(name: str) -> Sizes:
    """One of ``quick``, ``standard``, ``full``, ``tiny``."""
    if name not in PRESETS:
        raise ValueError(f"Unknown size preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]
