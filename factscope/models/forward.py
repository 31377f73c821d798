"""The keyword arguments of a causal LM's forward, across transformers versions.

Usage::

    out = model(**forward_inputs(model, batch, use_cache=True))          # batch: a models.batch.Batch
    cache = returned_cache(out)                                          # its KV cache
    logits = model(input_ids=rest, use_cache=True, **cache_kwargs(model, cache)).logits
    takes_argument(model, "position_ids")                                # probed once per model class

transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache`` (the old
name warns until its removal in 5.40) and returns the cache under ``"cache"``; older
releases use ``past_key_values`` for both. ``cache_kwargs`` and ``returned_cache`` pick
the name the loaded model's forward takes; ``forward_inputs`` passes position ids and
``logits_to_keep`` only to a forward that takes them.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import torch

from factscope.models.batch import Batch


@lru_cache(maxsize=None)
def _parameters(forward_owner: type) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(forward_owner.forward).parameters)
    except (TypeError, ValueError):
        return frozenset()


def takes_argument(model: Any, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name`` (read once per model class)."""
    return name in _parameters(type(model))


def _cache_argument(forward_owner: type) -> str:
    return "cache" if "cache" in _parameters(forward_owner) else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``, whichever ``model.forward`` takes."""
    return {_cache_argument(type(model)): cache}


def returned_cache(output: Any) -> Any:
    """The KV cache a forward with ``use_cache=True`` returned."""
    for key in ("cache", "past_key_values"):
        if key in output:
            return output[key]
    raise KeyError("The model output holds no KV cache; call the model with use_cache=True.")


def forward_inputs(
    model: Any,
    batch: Batch | torch.Tensor,
    *,
    cache: Any = None,
    use_cache: bool | None = None,
    last_logits_only: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``model(**...)`` on ``batch`` (a :class:`Batch` or bare ``input_ids``).

    ``cache``: a KV cache the batch continues (its mask must cover cache and batch);
    ``last_logits_only``: project only the last position when the forward can.
    """
    if torch.is_tensor(batch):
        kwargs: dict[str, Any] = {"input_ids": batch}
    else:
        kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.position_ids is not None and takes_argument(model, "position_ids"):
            kwargs["position_ids"] = batch.position_ids
    if device is not None:
        kwargs = {k: v.to(device) for k, v in kwargs.items()}
    if cache is not None:
        kwargs.update(cache_kwargs(model, cache))
    if use_cache is not None:
        kwargs["use_cache"] = use_cache
    if last_logits_only and takes_argument(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1
    return kwargs
