"""Seeded top-k sampling of free text (ROME's ``generate_fast``), batched with a KV cache.

Usage::

    cfg = GenerationConfig(max_length=100, top_k=5)
    texts = generate_texts(adapter, ["Angola's surroundings include"] * 3, cfg, seed=7)

Like ROME, each prompt is extended to ``max_length`` tokens *including the prompt*
(all rows of a batch get the same number of new tokens: ``max_length`` minus the
longest prompt), the next token is sampled from the top ``top_k`` tokens, end-of-text
does not stop the sample, and the returned text includes the prompt. Rows are
left-padded with explicit position ids, so padding does not change a row's tokens.
Randomness comes only from a ``torch.Generator`` seeded with ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from factscope.models.adapter import ModelAdapter
from factscope.models.batch import encode_texts
from factscope.models.decoding import Decoder
from factscope.models.forward import takes_argument


@dataclass(frozen=True)
class GenerationConfig:
    """How texts are generated for Fluency and Consistency."""

    max_length: int = 100  # tokens, prompt included (ROME: max_out_len=100)
    top_k: int = 5
    batch_size: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


def accepts_position_ids(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes ``position_ids`` (older name of ``takes_argument(model, "position_ids")``)."""
    return takes_argument(model, "position_ids")


@torch.no_grad()
def generate_texts(
    adapter: ModelAdapter, prompts: Sequence[str], config: GenerationConfig = GenerationConfig(), *, seed: int = 0
) -> list[str]:
    """One sampled text per prompt (prompt included), reproducible for a given ``seed``."""
    if config.top_k < 1 or config.max_length < 1:
        raise ValueError("top_k and max_length must be positive.")
    gen = torch.Generator(device=adapter.device).manual_seed(seed)
    texts: list[str] = []
    for start in range(0, len(prompts), config.batch_size):
        texts.extend(_generate_batch(adapter, list(prompts[start : start + config.batch_size]), config, gen))
    return texts


def _generate_batch(adapter: ModelAdapter, prompts: list[str], config: GenerationConfig, gen: torch.Generator) -> list[str]:
    tokenizer = adapter.tokenizer
    prompt = encode_texts(tokenizer, prompts, left=True).to(adapter.device)
    decoder = Decoder(adapter.model, prompt)
    out_tokens = [prompt.input_ids]
    for _ in range(max(0, config.max_length - prompt.input_ids.shape[1])):
        logits = decoder.step().logits[:, -1].float()
        top = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1)
        probs = torch.softmax(top.values, dim=-1)
        choice = torch.multinomial(probs, 1, generator=gen)
        nxt = top.indices.gather(1, choice)
        out_tokens.append(nxt)
        decoder.append(nxt)
    full = torch.cat(out_tokens, dim=1)
    n_pad = (prompt.attention_mask == 0).sum(dim=1).tolist()
    return [tokenizer.decode(row[pad:].tolist(), skip_special_tokens=True) for row, pad in zip(full, n_pad)]
