"""Token-by-token decoding with a KV cache: after the prompt, each step runs only the new tokens.

Usage::

    decoder = Decoder(model, encode_texts(tokenizer, prompts, left=True).to(device))
    for _ in range(10):
        logits = decoder.step().logits[:, -1]       # next-token logits of every row
        decoder.append(logits.argmax(-1, keepdim=True))

The first :meth:`Decoder.step` runs the whole (left-padded) prompt batch; later steps
run the appended tokens at the next position of their row, with the attention mask
grown by one real token per step. Unpadded ``input_ids`` (no mask) work the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from factscope.models.batch import Batch
from factscope.models.forward import forward_inputs, returned_cache


class Decoder:
    """Incremental forward passes over a batch that grows by one token per row and step."""

    def __init__(self, model: Any, prompt: Batch | torch.Tensor) -> None:
        self.model = model
        self._pending: Batch | torch.Tensor = prompt
        self._mask = None if torch.is_tensor(prompt) else prompt.attention_mask
        self._last_position: torch.Tensor | None = None
        if not torch.is_tensor(prompt):
            positions = prompt.position_ids
            if positions is None:
                positions = torch.arange(prompt.input_ids.shape[1], device=prompt.input_ids.device).expand_as(prompt.input_ids)
            self._last_position = positions[:, -1:]
        self.cache: Any = None

    def step(self) -> Any:
        """Run the pending tokens (the prompt, then the last appended ones); returns the model output."""
        out = self.model(**forward_inputs(self.model, self._pending, cache=self.cache, use_cache=True))
        self.cache = returned_cache(out)
        return out

    def append(self, next_ids: torch.Tensor) -> None:
        """Queue ``next_ids`` ``[rows, 1]`` as every row's next token."""
        if self._mask is None or self._last_position is None:
            self._pending = next_ids
            return
        self._mask = torch.cat([self._mask, torch.ones_like(next_ids)], dim=1)
        self._last_position = self._last_position + 1
        self._pending = Batch(next_ids, self._mask, self._last_position)
