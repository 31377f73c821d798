"""Batched forward passes that score prompts: next-token distributions and target log-probs.

Usage::

    top = top_k_next_tokens(adapter, "The capital of France is", k=5)   # [(" Paris", 0.77), ...]
    ids = continuation_ids(adapter.tokenizer, "The capital of France is", "Paris")
    nll = target_nll(adapter, ["The capital of France is"], ["Paris"])  # mean NLL per token, [1]

Target convention (every tokenizer family): a target is the text that follows the
prompt after one space, ``prompt + " " + target.strip()``; its tokens are those whose
character offsets start at or after the end of the prompt, so BPE leading-space
tokens (``Ġ``) and SentencePiece ``▁`` tokens both come out right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from factscope.models.adapter import ModelAdapter
from factscope.models.batch import encode_texts, pad_batch, pad_id
from factscope.models.forward import forward_inputs


class EmptyTargetError(ValueError):
    """A target string is empty or tokenizes to nothing."""


class InputTooLongError(ValueError):
    """A prompt (with its target) longer than the model's context."""


def check_length(adapter: ModelAdapter, n_tokens: int, text: str) -> None:
    """Raise :class:`InputTooLongError` if ``n_tokens`` exceed the model's context (GPT-2 would raise IndexError)."""
    limit = adapter.max_positions
    if limit is not None and n_tokens > limit:
        raise InputTooLongError(f"Input of {n_tokens} tokens ({text[:40]!r}...) is longer than the {limit} tokens "
                                f"{adapter.name} takes.")


def continuation_ids(tokenizer: Any, prompt: str, target: str) -> list[int]:
    """Token ids of ``target`` as it continues ``prompt`` (see module docstring)."""
    text = target.strip()
    if not text:
        raise EmptyTargetError(f"Target for prompt {prompt!r} is empty.")
    full = prompt + " " + text
    enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=False)
    ids = [i for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if a >= len(prompt) or b > len(prompt)]
    if not ids:
        raise EmptyTargetError(f"Target {target!r} tokenizes to nothing after {prompt!r}.")
    return ids


def encode_prompts(tokenizer: Any, prompts: Sequence[str], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Right-padded batch with ``input_ids``, ``attention_mask`` and ``last_index`` per row."""
    enc = encode_texts(tokenizer, prompts).to(device)
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "last_index": enc.last_index}


@torch.no_grad()
def next_token_logprobs(adapter: ModelAdapter, prompts: Sequence[str], *, batch_size: int = 32) -> torch.Tensor:
    """Log-probabilities of the next token after each prompt, ``[len(prompts), vocab]`` (float32, CPU)."""
    rows = []
    for start in range(0, len(prompts), batch_size):
        batch = encode_prompts(adapter.tokenizer, prompts[start : start + batch_size], adapter.device)
        last = batch.pop("last_index")
        check_length(adapter, int(batch["input_ids"].shape[1]), max(prompts[start : start + batch_size], key=len))
        logits = adapter.model(**batch).logits
        picked = logits[torch.arange(len(last), device=logits.device), last]
        rows.append(torch.log_softmax(picked.float(), dim=-1).cpu())
    return torch.cat(rows)


def top_k_next_tokens(adapter: ModelAdapter, prompt: str, k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` most likely next tokens (decoded) with their probabilities."""
    probs = next_token_logprobs(adapter, [prompt])[0].exp()
    top = probs.topk(k)
    return [(adapter.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)]


@torch.no_grad()
def target_token_logprobs(
    adapter: ModelAdapter, prompts: Sequence[str], targets: Sequence[str], *, batch_size: int = 32
) -> list[torch.Tensor]:
    """Teacher-forced log-prob of each target token after its prompt; one 1-D tensor per pair."""
    if len(prompts) != len(targets):
        raise ValueError("prompts and targets must have the same length.")
    tokenizer = adapter.tokenizer
    out: list[torch.Tensor] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(zip(prompts[start : start + batch_size], targets[start : start + batch_size]))
        target_ids = [continuation_ids(tokenizer, p, t) for p, t in chunk]
        prompt_ids = [tokenizer(p)["input_ids"] for p, _ in chunk]
        seqs = [p + t for p, t in zip(prompt_ids, target_ids)]
        width = max(len(s) for s in seqs)
        check_length(adapter, width, max((p for p, _ in chunk), key=len))
        batch = pad_batch(seqs, pad_id(tokenizer))
        logits = adapter.model(**forward_inputs(adapter.model, batch, device=adapter.device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, (p_ids, t_ids) in enumerate(zip(prompt_ids, target_ids)):
            positions = torch.arange(len(p_ids) - 1, len(p_ids) - 1 + len(t_ids), device=logprobs.device)
            ids = torch.tensor(t_ids, device=logprobs.device)
            out.append(logprobs[row, positions, ids].cpu())
    return out


def target_nll(adapter: ModelAdapter, prompts: Sequence[str], targets: Sequence[str], **kwargs: Any) -> torch.Tensor:
    """Mean per-token negative log-likelihood of each target (ROME's multi-token comparison)."""
    return torch.stack([-lp.mean() for lp in target_token_logprobs(adapter, prompts, targets, **kwargs)])
