"""What a causal trace will do: validated inputs, corrupted span, target token and noise.

Usage::

    plan = plan_trace(adapter, "The mother tongue of Danielle Darrieux is", "Danielle Darrieux",
                      None, TraceConfig(corrupt="relation", kind="mlp"))
    plan.corrupted, plan.target, plan.noise.shape

Shared by the reference tracer (:mod:`factscope.localize.tracing`) and the fast one
(:mod:`factscope.localize.tracing_fast`), so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch

from factscope.models.adapter import ModelAdapter
from factscope.scoring import EmptyTargetError, continuation_ids
from factscope.tokens import PositionGroups, position_groups, require_relation_tokens

KINDS = ("state", "mlp", "attn")
CORRUPTIONS = ("subject", "relation")
SEVERABLE = ("mlp", "attn")
DEFAULT_WINDOW = 10  # ROME's window for MLP/attention restorations


@dataclass(frozen=True)
class TraceConfig:
    """How to corrupt and what to restore (see module docstring)."""

    corrupt: str = "subject"
    kind: str = "state"
    window: int = DEFAULT_WINDOW
    samples: int = 10
    noise: float = 3.0
    noise_std: float | None = None
    severed: str | None = None
    seed: int = 0
    relation_prefix: bool = False

    def __post_init__(self) -> None:
        if self.corrupt not in CORRUPTIONS:
            raise ValueError(f"corrupt must be one of {CORRUPTIONS}, got {self.corrupt!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}.")
        if self.severed is not None and self.severed not in SEVERABLE:
            raise ValueError(f"severed must be None or one of {SEVERABLE}, got {self.severed!r}.")
        if self.severed is not None and self.kind != "state":
            raise ValueError("Severed tracing restores hidden states: use kind='state' with severed=...")
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be a positive integer, got {self.window!r}.")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples must be a positive integer, got {self.samples!r}.")
        if self.noise_std is None and not self.noise > 0:
            raise ValueError(f"noise must be positive, got {self.noise!r}.")
        if self.noise_std is not None and not self.noise_std > 0:
            raise ValueError(f"noise_std must be positive, got {self.noise_std!r}.")


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """Layers restored together for an MLP/attention restoration at ``layer`` (ROME's window).

    ``window_layers(12, 10, 48) == range(7, 17)``; clipped at ``0`` and ``n_layers``.
    """
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


@dataclass
class TracePlan:
    """Everything fixed before any restoration: tokens, corrupted span, target, noise."""

    prompt: str
    subject: str
    groups: PositionGroups
    input_ids: torch.Tensor  # [1, T]
    corrupted: list[int]  # token indices that receive noise
    target: str
    target_id: int
    noise: torch.Tensor  # [samples, len(corrupted), d_model], float32 on CPU
    noise_std: float
    config: TraceConfig

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[1])


def corrupted_positions(groups: PositionGroups, corrupt: str, relation_prefix: bool = False) -> list[int]:
    """Token indices to noise: the subject, or the relation (after the subject, optionally ``rp``)."""
    if corrupt == "subject":
        return list(groups.subject_tokens)
    if corrupt == "relation":
        require_relation_tokens(groups)
        positions = list(groups.relation_tokens)
        if relation_prefix:
            positions = sorted(set(groups["rp"]) | set(positions))
        return positions
    raise ValueError(f"corrupt must be one of {CORRUPTIONS}, got {corrupt!r}.")


@torch.no_grad()
def plan_trace(
    adapter: ModelAdapter, prompt: str, subject: str, target: str | None, config: TraceConfig
) -> TracePlan:
    """Validate the input and fix tokens, corrupted span, target token and noise."""
    groups = position_groups(adapter.tokenizer, prompt, subject)
    positions = corrupted_positions(groups, config.corrupt, config.relation_prefix)
    input_ids = torch.tensor([groups.input_ids], dtype=torch.long)
    if target is None:
        logits = adapter.model(input_ids=input_ids.to(adapter.device), use_cache=False).logits
        target_id = int(logits[0, -1].argmax())
        target_text = adapter.tokenizer.decode([target_id])
    else:
        if not target.strip():
            raise EmptyTargetError(f"Target for prompt {groups.prompt!r} is empty.")
        target_id = continuation_ids(adapter.tokenizer, groups.prompt, target)[0]
        target_text = target.strip()
    std = float(config.noise_std) if config.noise_std is not None else config.noise * adapter.embedding_std()
    generator = torch.Generator().manual_seed(config.seed)
    noise = torch.randn((config.samples, len(positions), adapter.d_model), generator=generator) * std
    return TracePlan(
        prompt=groups.prompt,
        subject=subject,
        groups=groups,
        input_ids=input_ids,
        corrupted=positions,
        target=target_text,
        target_id=target_id,
        noise=noise,
        noise_std=std,
        config=config,
    )
