"""Seeded sampling of short texts from the model itself (context prefixes, default corpus).

Usage::

    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    ids = sample_token_ids(adapter, n_texts=10, length=5, seed=0)     # list of token-id lists
    ids = sample_token_ids(adapter, 4, 16, seed=1, top_k=50,
                           on_step=lambda step: step >= 7)            # called after each step; True stops early

Sampling is top-k from the model's next-token distribution with an explicit
``torch.Generator``; texts start from the tokenizer's BOS (or EOS) token, as ROME
started from GPT-2's ``<|endoftext|>``. A KV cache keeps each step one token long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from factscope.models.adapter import ModelAdapter
from factscope.models.decoding import Decoder


def start_token_id(tokenizer: Any) -> int:
    """The token texts are sampled after: EOS (a document boundary) when known, else BOS."""
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    raise ValueError("The tokenizer has neither an EOS, BOS nor PAD token to start sampling from.")


@torch.no_grad()
def sample_token_ids(
    adapter: ModelAdapter,
    n_texts: int,
    length: int,
    *,
    seed: int = 0,
    top_k: int = 5,
    batch_size: int = 32,
    start_ids: Sequence[int] | None = None,
    on_step: Callable[[int], bool | None] | None = None,
    progress: Any = None,
) -> list[list[int]]:
    """``n_texts`` sampled continuations of ``length`` tokens each (start token excluded).

    ``on_step(step)`` is called right after the forward pass of every step (a caller
    that wraps this call in a ``SiteTrace`` reads that step's activations there; a true
    return value ends sampling early);
    ``progress`` is an optional tqdm bar advanced by the number of new tokens.
    """
    if n_texts <= 0 or length <= 0:
        return []
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    start = list(start_ids) if start_ids else [start_token_id(adapter.tokenizer)]
    results: list[list[int]] = []
    for first in range(0, n_texts, batch_size):
        rows = min(batch_size, n_texts - first)
        ids = torch.tensor([start] * rows, dtype=torch.long, device=adapter.device)
        out_ids: list[torch.Tensor] = []
        decoder = Decoder(adapter.model, ids)
        for step in range(length):
            out = decoder.step()
            if on_step is not None and on_step(step):
                break  # the caller has what it needs
            logits = out.logits[:, -1].float().cpu()
            top = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
            probs = torch.softmax(top.values, dim=-1)
            choice = torch.multinomial(probs, 1, generator=generator)
            nxt = top.indices.gather(1, choice)
            out_ids.append(nxt)
            decoder.append(nxt.to(adapter.device))
            if progress is not None:
                progress.update(rows)
        results.extend(torch.cat(out_ids, dim=1).tolist())
    return results
