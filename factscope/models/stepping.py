"""Decoder layers called one at a time on token suffixes, attending to given prefix keys/values.

Usage::

    stepper = LayerStepper(adapter, input_ids, (keys, values))   # keys[l]: [S, heads, T, head_dim]
    stepper.prepare(start)                                       # one model forward; outside any edit
    h = stepper.run(layer, hidden, start, rows)                  # hidden [B, T-start, d]; rows [B] = sample per row

Used by causal tracing to resume many restorations from a layer's cached input. The
layers are called with exactly the arguments the model itself passes them for the
suffix ``start..T-1`` (captured from one forward of ``input_ids`` after its prefix
cache), so positions, rotary embeddings and masks are the model's own. Only the
cache argument is swapped: for :class:`_RowPrefixKV`, which prepends the given prefix
keys/values of each batch row's sample (``rows``), e.g. a corrupted run's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from factscope.models.adapter import ModelAdapter
from factscope.models.prefix import PrefixCache
from factscope.models.sites import Site

KeyValues = tuple[list[torch.Tensor], list[torch.Tensor]]


class _RowPrefixKV:
    """What an attention layer needs of a KV cache, ``update``, serving fixed prefixes chosen per batch row.

    A transformers cache cannot serve it: its ``update`` appends in place and its rows
    are fixed, while here every call picks its rows and must leave the prefix unchanged.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], start: int) -> None:
        self.keys = [k[..., :start, :] for k in keys]
        self.values = [v[..., :start, :] for v in values]
        self.rows: torch.Tensor | None = None  # prefix sample of every batch row

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        keys = self.keys[layer_idx].index_select(0, self.rows)
        values = self.values[layer_idx].index_select(0, self.rows)
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


def _is_cache(obj: Any) -> bool:
    return hasattr(obj, "update") and hasattr(obj, "get_seq_length")


def _map(obj: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    if isinstance(obj, list):
        return [_map(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return fn(obj)


@dataclass
class _LayerCall:
    """How the model calls one decoder layer for a given token suffix."""

    positional: bool  # hidden states passed as args[0] (else as kwargs["hidden_states"])
    args: tuple
    kwargs: dict


class LayerStepper:
    """Decoder layers on batches of token suffixes ``start..T-1``; ``prefix_kv=None``: only ``start=0``."""

    def __init__(self, adapter: ModelAdapter, input_ids: torch.Tensor, prefix_kv: KeyValues | None) -> None:
        self.adapter = adapter
        self.input_ids = input_ids.to(adapter.device)
        self.prefix_kv = prefix_kv
        self._calls: dict[int, list[_LayerCall]] = {}
        self._caches: dict[int, _RowPrefixKV] = {}

    @property
    def prefix_reuse(self) -> bool:
        """Whether suffixes can start after token 0 (prefix keys/values were given)."""
        return self.prefix_kv is not None

    @torch.no_grad()
    def _capture(self, start: int) -> list[_LayerCall]:
        if start > 0 and self.prefix_kv is None:
            raise ValueError("LayerStepper without prefix keys/values runs only start=0.")
        adapter, model = self.adapter, self.adapter.model
        captured: dict[int, _LayerCall] = {}

        def make_hook(layer: int):
            def hook(_module, args, kwargs):
                if args:
                    captured[layer] = _LayerCall(True, tuple(args[1:]), dict(kwargs))
                else:
                    rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                    captured[layer] = _LayerCall(False, (), rest)

            return hook

        if start == 0:
            feed: dict[str, Any] = {"input_ids": self.input_ids, "use_cache": False}
        else:
            feed = PrefixCache.build(model, self.input_ids[:, :start]).inputs(self.input_ids[:, start:], reuse=True)
        handles = [
            adapter.module(Site("resid", l)).register_forward_pre_hook(make_hook(l), with_kwargs=True)
            for l in range(adapter.n_layers)
        ]
        try:
            model(**feed)
        finally:
            for handle in handles:
                handle.remove()
        if start > 0:
            keys, values = self.prefix_kv  # type: ignore[misc]
            cache = _RowPrefixKV(keys, values, start)
            self._caches[start] = cache
            swap = lambda obj: cache if _is_cache(obj) else obj  # noqa: E731
            for call in captured.values():
                call.args = _map(call.args, swap)
                call.kwargs = _map(call.kwargs, swap)
        return [captured[l] for l in range(adapter.n_layers)]

    def prepare(self, start: int) -> None:
        """Capture the layer arguments for suffix ``start`` (a model forward: call it outside any edit)."""
        if start not in self._calls:
            self._calls[start] = self._capture(start)

    def run(self, layer: int, hidden: torch.Tensor, start: int, rows: torch.Tensor) -> torch.Tensor:
        """Layer ``layer`` on ``hidden`` ``[B, T-start, d]``; ``rows`` = prefix sample per batch row."""
        if start not in self._calls:
            raise RuntimeError(f"LayerStepper.prepare({start}) must run before run(..., start={start}).")
        call = self._calls[start][layer]
        if start in self._caches:
            self._caches[start].rows = rows
        batch = hidden.shape[0]

        def expand(obj: Any) -> Any:
            if torch.is_tensor(obj) and obj.dim() >= 2 and obj.shape[0] == 1 and batch > 1:
                return obj.expand(batch, *obj.shape[1:])
            return obj

        args, kwargs = _map(call.args, expand), _map(call.kwargs, expand)
        module = self.adapter.module(Site("resid", layer))
        out = module(hidden, *args, **kwargs) if call.positional else module(hidden_states=hidden, **kwargs)
        return out[0] if isinstance(out, tuple) else out
