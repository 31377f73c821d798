"""The KV-cache argument of a causal LM's forward, across transformers versions.

Usage::

    out = model(input_ids=prefix, use_cache=True)
    cache = returned_cache(out)                                  # the prefix's KV cache
    logits = model(input_ids=rest, use_cache=True, **cache_kwargs(model, cache)).logits

transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache`` (the old
name warns until its removal in 5.40) and returns the cache under ``"cache"``; older
releases use ``past_key_values`` for both. These two helpers pick the name the loaded
model's forward takes.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def _cache_argument(forward_owner: type) -> str:
    parameters = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``, whichever ``model.forward`` takes."""
    return {_cache_argument(type(model)): cache}


def returned_cache(output: Any) -> Any:
    """The KV cache a forward with ``use_cache=True`` returned."""
    for key in ("cache", "past_key_values"):
        if key in output:
            return output[key]
    raise KeyError("The model output holds no KV cache; call the model with use_cache=True.")
