"""Gradient factors of an edit loss at the MLP down-projections, and edits applied through hooks.

Usage::

    batch = TokenBatch.with_targets(adapter.tokenizer, ["The capital of Italy is"], ["Paris"])
    factors = gradient_factors(adapter, batch, [2, 3])    # layer -> (u [T, in], delta [T, out])
    with added_deltas(adapter, {3: (up, vp)}):            # the weight acts as W + up @ vp.T
        hidden = runner.run()

The edit loss of a batch is the sum over its rows of each row's mean target-token
NLL (so every request of a batch edit gets a full step). Its gradient w.r.t. a
down-projection W is ``Σ_t δ_t u_tᵀ``, from the layer input u_t (site ``mlp_key``)
and δ_t = ∂loss/∂(W u_t), read through a zero tensor added to the module's output.
Edits never touch the weights: a forward hook adds ``(x @ vp) @ upᵀ`` to the
output, so gradients flow to ``up`` and ``vp``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from factscope.edit.runner import SuffixRunner
from factscope.hooks import Site
from factscope.models.adapter import ModelAdapter
from factscope.scoring import continuation_ids


@dataclass
class TokenBatch:
    """Token rows and the positions whose next-token predictions are scored."""

    seqs: list[list[int]]
    rows: list[int]  # one entry per scored position
    positions: list[int]
    targets: list[int]  # the token expected next (target rows); -1 for locality rows
    row_weights: list[float]  # 1 / (scored positions of its row)

    @classmethod
    def with_targets(cls, tokenizer: Any, prompts: Sequence[str], targets: Sequence[str]) -> "TokenBatch":
        """Rows ``prompt + target[:-1]`` scored at the target tokens (teacher forcing)."""
        seqs, rows, positions, ids, weights = [], [], [], [], []
        for r, (prompt, target) in enumerate(zip(prompts, targets)):
            prompt_ids = tokenizer(prompt)["input_ids"]
            target_ids = continuation_ids(tokenizer, prompt, target)
            seqs.append(prompt_ids + target_ids[:-1])
            for j, token in enumerate(target_ids):
                rows.append(r)
                positions.append(len(prompt_ids) - 1 + j)
                ids.append(token)
                weights.append(1.0 / len(target_ids))
        return cls(seqs, rows, positions, ids, weights)

    @classmethod
    def every_token(cls, tokenizer: Any, prompts: Sequence[str]) -> "TokenBatch":
        """Rows ``prompt`` scored at every position (locality: the whole next-token distribution)."""
        seqs, rows, positions, weights = [], [], [], []
        for r, prompt in enumerate(prompts):
            ids = tokenizer(prompt)["input_ids"]
            seqs.append(ids)
            rows += [r] * len(ids)
            positions += list(range(len(ids)))
            weights += [1.0 / len(ids)] * len(ids)
        return cls(seqs, rows, positions, [-1] * len(rows), weights)

    def last_positions(self) -> list[int]:
        """Index (into the scored positions) of each row's last scored position."""
        last: dict[int, int] = {}
        for i, row in enumerate(self.rows):
            last[row] = i
        return [last[r] for r in sorted(last)]


def scored_logits(adapter: ModelAdapter, hidden: torch.Tensor, batch: TokenBatch, row_offset: int = 0) -> torch.Tensor:
    """Float32 logits ``[positions, vocab]`` at the scored positions (rows shifted by ``row_offset``)."""
    rows = torch.tensor([r + row_offset for r in batch.rows], device=hidden.device)
    pos = torch.tensor(batch.positions, device=hidden.device)
    return adapter.project_to_vocab(hidden[rows, pos]).float()


def target_nll(logits: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Per-row mean target NLL, ``[rows]``."""
    logp = torch.log_softmax(logits, -1)
    ids = torch.tensor(batch.targets, device=logits.device)
    token_nll = -logp.gather(1, ids[:, None]).squeeze(1)
    weights = torch.tensor(batch.row_weights, device=logits.device)
    rows = torch.tensor(batch.rows, device=logits.device)
    return torch.zeros(len(batch.seqs), device=logits.device).index_add(0, rows, token_nll * weights)


def runner_for(adapter: ModelAdapter, seqs: list[list[int]], layers: Sequence[int]) -> SuffixRunner:
    """A runner that recomputes only the layers from the lowest edited one (a weight edit changes every token)."""
    return SuffixRunner(adapter, seqs, [0] * len(seqs), start_layer=min(layers), reuse_prefix=False)


def gradient_factors(adapter: ModelAdapter, batch: TokenBatch, layers: Sequence[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer ``(u [tokens, in], δ [tokens, out])`` of the batch's edit loss (float32, detached)."""
    runner = runner_for(adapter, batch.seqs, layers)
    inputs: dict[int, torch.Tensor] = {}
    probes: dict[int, torch.Tensor] = {}

    def capture(layer: int):
        def hook(_module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor:
            inputs[layer] = args[0].detach()
            probes[layer] = torch.zeros_like(output, requires_grad=True)
            return output + probes[layer]

        return hook

    handles = [adapter.module(Site("mlp_key", layer)).register_forward_hook(capture(layer)) for layer in layers]
    try:
        with torch.enable_grad():
            hidden = runner.run()
            loss = target_nll(scored_logits(adapter, hidden, batch), batch).sum()
            grads = torch.autograd.grad(loss, [probes[layer] for layer in layers])
    finally:
        for handle in handles:
            handle.remove()
    return {layer: (inputs[layer].reshape(-1, inputs[layer].shape[-1]).float(), grad.reshape(-1, grad.shape[-1]).float())
            for layer, grad in zip(layers, grads)}


@contextlib.contextmanager
def added_deltas(adapter: ModelAdapter, deltas: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Within the block the down-projection of each layer acts as ``W + up @ vp.T`` (hooks, weights untouched)."""

    def add(up: torch.Tensor, vp: torch.Tensor):
        def hook(_module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor:
            x = args[0]
            return output + ((x.to(vp.dtype) @ vp) @ up.T).to(output.dtype)

        return hook

    handles = [adapter.module(Site("mlp_key", layer)).register_forward_hook(add(*deltas[layer])) for layer in deltas]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
