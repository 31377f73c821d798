"""Causal tracing (ROME) from the entity and the relation perspective, with severed variants.

Usage::

    result = trace(adapter, "The mother tongue of Danielle Darrieux is", "Danielle Darrieux",
                   corrupt="relation", kind="mlp")
    result.ie                      # [tokens, layers] indirect effects P(o|corr, restored) - P(o|corr)
    result.clean_prob, result.corrupted_prob
    both = trace_kinds(adapter, prompt, subject, kinds=("state", "mlp", "attn"))  # shares the runs

Three runs (ROME; seed 000 "relation-focused causal tracing", seed 001 §3.3):

* clean: the prompt as is; every ``h``/``a``/``m`` activation is kept;
* corrupted: Gaussian noise, std = ``noise`` × ``adapter.embedding_std()`` (or a fixed
  ``noise_std``), is added at the ``embed`` site to the corrupted span, once per noise
  sample. ``corrupt="subject"`` noises the subject tokens (entity perspective);
  ``corrupt="relation"`` noises the relation tokens, i.e. the template tokens *after* the
  subject (``fr``..``lr``). The relation prefix ``rp`` is left clean unless
  ``relation_prefix=True``: RETS (seed 000, Fig. 2) marks only the relation tokens after
  the subject as intervened and reports ``rp`` as a restored, non-corrupted position;
* corrupted-with-restoration: the clean activation at one (token, layer) is copied into
  the corrupted run (``kind="state"``: ``h^l``; ``"mlp"``/``"attn"``: ``m``/``a`` over a
  window of layers centred on ``l``, clipped at the ends, ROME's 10 by default).

``severed="mlp"|"attn"`` (seed 001, ROME Fig. 7) restores ``h^l_i`` while the MLP (or
attention) outputs of token ``i`` in every later layer stay frozen at their
corrupted-run values. The target is the first token of ``target`` (ROME), by default
the model's greedy prediction on the clean prompt. The same noise (drawn from a
``torch.Generator`` seeded with ``seed``) is used for every restoration.

The numbers come from :mod:`factscope.localize.tracing_fast`, which batches the
restorations and recomputes only what a restoration can change; the tests compare it
with a straightforward one-restoration-per-forward implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from factscope.localize.tracing_fast import FastTracer
# Re-exported: callers keep importing the plan types from here.
from factscope.localize.tracing_plan import (CORRUPTIONS, DEFAULT_WINDOW, KINDS, SEVERABLE, TraceConfig,  # noqa: F401
                                             TracePlan, corrupted_positions, plan_trace, window_layers)
from factscope.models.adapter import ModelAdapter


@dataclass
class TraceResult:
    """The (token × layer) grid of one trace and what produced it.

    ``scores[i, l] = P(o | corrupted, restored at (i, l))`` averaged over noise samples;
    ``ie = scores - corrupted_prob``.
    """

    prompt: str
    subject: str
    target: str
    target_id: int
    tokens: list[str]
    groups: dict[str, list[int]]
    corrupted: list[int]
    scores: torch.Tensor  # [T, L] float32
    clean_prob: float
    corrupted_prob: float
    config: TraceConfig
    noise_std: float
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def ie(self) -> torch.Tensor:
        """Indirect effect per (token, layer)."""
        return self.scores - self.corrupted_prob

    @property
    def n_layers(self) -> int:
        return int(self.scores.shape[1])

    def label(self) -> str:
        """Short name of what was restored, e.g. ``"mlp"`` or ``"state (mlp severed)"``."""
        return f"state ({self.config.severed} severed)" if self.config.severed else self.config.kind

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (grids as nested lists)."""
        cfg = self.config
        return {
            "model": self.model,
            "prompt": self.prompt,
            "subject": self.subject,
            "target": self.target,
            "target_id": self.target_id,
            "tokens": self.tokens,
            "groups": self.groups,
            "corrupted": self.corrupted,
            "corrupt": cfg.corrupt,
            "kind": cfg.kind,
            "severed": cfg.severed,
            "window": cfg.window,
            "samples": cfg.samples,
            "noise": cfg.noise,
            "noise_std": self.noise_std,  # the std actually used
            "fixed_noise_std": cfg.noise_std,  # as requested (None: noise × embedding std)
            "seed": cfg.seed,
            "relation_prefix": cfg.relation_prefix,
            "clean_prob": self.clean_prob,
            "corrupted_prob": self.corrupted_prob,
            "scores": self.scores.tolist(),
            "ie": self.ie.tolist(),
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TraceResult":
        config = TraceConfig(
            corrupt=data["corrupt"],
            kind=data["kind"],
            window=data["window"],
            samples=data["samples"],
            noise=data["noise"],
            noise_std=data.get("fixed_noise_std"),
            severed=data.get("severed"),
            seed=data["seed"],
            relation_prefix=data.get("relation_prefix", False),
        )
        return cls(
            prompt=data["prompt"],
            subject=data["subject"],
            target=data["target"],
            target_id=data["target_id"],
            tokens=list(data["tokens"]),
            groups={k: list(v) for k, v in data["groups"].items()},
            corrupted=list(data["corrupted"]),
            scores=torch.tensor(data["scores"], dtype=torch.float32),
            clean_prob=float(data["clean_prob"]),
            corrupted_prob=float(data["corrupted_prob"]),
            config=config,
            noise_std=float(data["noise_std"]),
            model=data.get("model", ""),
            extra=data.get("extra", {}),
        )


def _result(adapter: ModelAdapter, plan: TracePlan, config: TraceConfig, scores: torch.Tensor,
            clean_prob: float, corrupted_prob: float) -> TraceResult:
    tokens = [adapter.tokenizer.decode([int(t)]) for t in plan.groups.input_ids]
    return TraceResult(
        prompt=plan.prompt,
        subject=plan.subject,
        target=plan.target,
        target_id=plan.target_id,
        tokens=tokens,
        groups={k: list(v) for k, v in plan.groups.groups.items()},
        corrupted=list(plan.corrupted),
        scores=scores.float().cpu(),
        clean_prob=clean_prob,
        corrupted_prob=corrupted_prob,
        config=config,
        noise_std=plan.noise_std,
        model=adapter.name,
    )


def trace_kinds(
    adapter: ModelAdapter,
    prompt: str,
    subject: str,
    target: str | None = None,
    *,
    kinds: Sequence[str] = KINDS,
    corrupt: str = "subject",
    window: int = DEFAULT_WINDOW,
    samples: int = 10,
    noise: float = 3.0,
    noise_std: float | None = None,
    severed: Sequence[str] = (),
    seed: int = 0,
    relation_prefix: bool = False,
    max_batch_tokens: int | None = None,
    progress: bool = False,
) -> dict[str, TraceResult]:
    """Several grids of one prompt sharing the clean and corrupted runs.

    Keys are the kinds (``"state"``, ``"mlp"``, ``"attn"``) and ``"severed_mlp"`` /
    ``"severed_attn"`` for each entry of ``severed``.
    """
    base = TraceConfig(corrupt=corrupt, window=window, samples=samples, noise=noise, noise_std=noise_std,
                       seed=seed, relation_prefix=relation_prefix)
    jobs: dict[str, TraceConfig] = {}
    for kind in kinds:
        jobs[kind] = TraceConfig(**{**base.__dict__, "kind": kind})
    for sever in severed:
        jobs[f"severed_{sever}"] = TraceConfig(**{**base.__dict__, "kind": "state", "severed": sever})
    if not jobs:
        raise ValueError("Nothing to trace: give at least one kind or severed variant.")
    plan = plan_trace(adapter, prompt, subject, target, base)
    tracer = FastTracer(adapter, plan, read_kinds=tuple(severed), max_batch_tokens=max_batch_tokens)
    grids = tracer.grids([(c.kind, c.window, c.severed) for c in jobs.values()], progress=progress)
    return {
        name: _result(adapter, plan, config, scores, tracer.clean_prob, tracer.corrupted_prob)
        for (name, config), scores in zip(jobs.items(), grids)
    }


def trace(
    adapter: ModelAdapter,
    prompt: str,
    subject: str,
    target: str | None = None,
    corrupt: str = "subject",
    kind: str = "state",
    window: int = DEFAULT_WINDOW,
    samples: int = 10,
    noise: float = 3.0,
    noise_std: float | None = None,
    severed: str | None = None,
    seed: int = 0,
    *,
    relation_prefix: bool = False,
    max_batch_tokens: int | None = None,
) -> TraceResult:
    """One causal-tracing grid (see module docstring); errors come before any forward pass."""
    TraceConfig(corrupt=corrupt, kind=kind, window=window, samples=samples, noise=noise,
                noise_std=noise_std, severed=severed, seed=seed, relation_prefix=relation_prefix)
    kinds = () if severed else (kind,)
    results = trace_kinds(
        adapter, prompt, subject, target, kinds=kinds, corrupt=corrupt, window=window, samples=samples,
        noise=noise, noise_std=noise_std, severed=(severed,) if severed else (), seed=seed,
        relation_prefix=relation_prefix, max_batch_tokens=max_batch_tokens,
    )
    return next(iter(results.values()))
