"""A shared prefix run once and continued by many suffix passes (the KV cache, behind one interface).

Usage::

    prefix = PrefixCache.build(model, pad_batch(prefix_rows, pad, left=True))
    suffix = pad_batch(suffix_rows, pad, offsets=prefix_lengths)
    logits = model(**prefix.inputs(suffix)).logits       # equals the full rows' forward at those tokens
    prefix.select(torch.tensor([2, 0]))                  # keep rows 2 and 0 (False if the cache cannot)
    keys, values = layer_key_values(returned_cache(out), n_layers, n_tokens) or (None, None)

A causal LM's tokens never see later ones, so a prefix shared by many passes needs to
run only once; every suffix pass hands the model a copy of the prefix's cache (the model
appends the suffix's keys and values to the cache it receives). This module and
``models/stepping.py`` are the only places that touch transformers cache objects.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from factscope.models.batch import Batch
from factscope.models.forward import forward_inputs, returned_cache


class PrefixCache:
    """The KV cache of prefix rows and their attention mask (``None``: every prefix token is real)."""

    def __init__(self, model: Any, cache: Any, attention_mask: torch.Tensor | None, length: int) -> None:
        self.model = model
        self.cache = cache
        self.attention_mask = attention_mask
        self.length = length

    @classmethod
    @torch.no_grad()
    def build(cls, model: Any, prefix: Batch | torch.Tensor, *, device: torch.device | str | None = None) -> "PrefixCache":
        """Run ``prefix`` (a padded :class:`Batch` or unpadded ``input_ids``) once and keep its cache."""
        out = model(**forward_inputs(model, prefix, use_cache=True, last_logits_only=True, device=device))
        ids = prefix if torch.is_tensor(prefix) else prefix.input_ids
        mask = None if torch.is_tensor(prefix) else prefix.attention_mask.to(device or ids.device)
        return cls(model, returned_cache(out), mask, int(ids.shape[1]))

    def continue_with(self, suffix: Batch) -> Batch:
        """``suffix`` with its attention mask extended over the prefix tokens."""
        prefix_mask = self.attention_mask
        if prefix_mask is None:
            prefix_mask = torch.ones(suffix.input_ids.shape[0], self.length, dtype=torch.long)
        mask = torch.cat([prefix_mask.to(suffix.attention_mask.device), suffix.attention_mask], dim=1)
        return Batch(suffix.input_ids, mask, suffix.position_ids)

    def inputs(
        self, suffix: Batch | torch.Tensor, *, reuse: bool = False, device: torch.device | str | None = None,
        last_logits_only: bool = False,
    ) -> dict[str, Any]:
        """Forward kwargs running ``suffix`` after the prefix.

        The model extends the cache it is given, so each call hands it a copy unless
        ``reuse`` (the last pass over this prefix: the cache is consumed).
        """
        cache = self.cache if reuse else copy.deepcopy(self.cache)
        batch = suffix if torch.is_tensor(suffix) else self.continue_with(suffix)
        return forward_inputs(self.model, batch, cache=cache, use_cache=True, device=device,
                              last_logits_only=last_logits_only)

    def repeat(self, n: int) -> None:
        """Every row ``n`` times in a row (``r0, r0, ..., r1, ...``), in place."""
        self.cache.batch_repeat_interleave(n)
        if self.attention_mask is not None:
            self.attention_mask = self.attention_mask.repeat_interleave(n, dim=0)

    def select(self, rows: torch.Tensor) -> bool:
        """Keep only ``rows`` (in that order), in place; ``False`` (nothing changed) if the cache cannot."""
        if not hasattr(self.cache, "batch_select_indices"):
            return False
        self.cache.batch_select_indices(rows)  # rows on the model's device
        if self.attention_mask is not None:
            self.attention_mask = self.attention_mask[rows.to(self.attention_mask.device)]
        return True


def layer_key_values(cache: Any, n_layers: int, n_tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
    """Per-layer keys and values ``[rows, heads, n_tokens, head_dim]`` of a returned cache, or ``None``.

    ``None`` when the cache does not hold every token of every layer (e.g. a sliding-window
    layer that dropped early tokens) or is of a kind without per-layer tensors. transformers
    has no public accessor for these tensors, so this reads the cache layers' ``keys`` and
    ``values`` (transformers >= 4.56; an encoder-decoder cache keeps them in ``self_attention_cache``).
    """
    cache = getattr(cache, "self_attention_cache", cache)
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) < n_layers:
        return None
    keys, values = [], []
    for layer in layers[:n_layers]:
        k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not torch.is_tensor(k) or not torch.is_tensor(v) or k.shape[-2] != n_tokens or v.shape[-2] != n_tokens:
            return None
        keys.append(k)
        values.append(v)
    return keys, values
