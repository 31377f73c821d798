"""Repeated forward passes over a fixed batch, recomputing only what an edit can change.

Usage::

    runner = SuffixRunner(adapter, seqs, split=lookups, start_layer=7)
    hidden = runner.run(edit={Site("mlp", 7): add_delta})   # [rows, suffix_len, d], keeps autograd
    runner.suffix_index(row, absolute_position)             # where a token sits in ``hidden``

The value optimisation runs the same prompts 20-25 times with a vector added at one
token of one layer. Two things cannot change between those passes and are computed
once:

* tokens *before* the edited token (``split``): kept as a KV cache, so each pass
  only runs the few tokens from the edited one on;
* layers *below* ``start_layer``: their outputs for the suffix tokens are cached and
  those layers are replaced by stand-ins that return them.

Both are pure reuse — the result equals a full forward pass (tests check this for
every tiny architecture). The final hidden state (``resid`` of the last layer) is
returned instead of logits so that callers project only the positions they need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from factscope.hooks import Site, SiteTrace
from factscope.hooks.trace import EditFn
from factscope.models.adapter import ModelAdapter
from factscope.models.batch import pad_batch, pad_id
from factscope.models.forward import forward_inputs
from factscope.models.prefix import PrefixCache


class _CachedLayer(nn.Module):
    """Stands in for a decoder layer and returns a precomputed output."""

    def __init__(self, original: nn.Module, output: Any) -> None:
        super().__init__()
        object.__setattr__(self, "_original", original)  # not a submodule: no double registration
        object.__setattr__(self, "_output", output)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._output

    def __getattr__(self, name: str) -> Any:  # e.g. Gemma-2 reads decoder_layer.attention_type
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_original"), name)


class SuffixRunner:
    """Run rows ``seqs`` many times, reusing their prefixes (``split``) and layers below ``start_layer``."""

    def __init__(
        self,
        adapter: ModelAdapter,
        seqs: Sequence[Sequence[int]],
        split: Sequence[int],
        start_layer: int = 0,
        *,
        reuse_prefix: bool = True,
        reuse_lower_layers: bool = True,
    ) -> None:
        if len(seqs) != len(split):
            raise ValueError("seqs and split must have the same length.")
        self.adapter = adapter
        self.model = adapter.model
        self.start_layer = adapter.check_layer(start_layer)
        self.final_site = Site("resid", adapter.n_layers - 1)
        pad = pad_id(adapter.tokenizer)
        # A row whose edited token is its first (a one-token subject in "{} is a") has no
        # prefix; it is an all-padding row of the prefix cache, masked out like left padding.
        use_prefix = reuse_prefix and any(s >= 1 for s in split)
        self.split = [int(s) if use_prefix else 0 for s in split]
        self.prefix: PrefixCache | None = None
        if use_prefix:
            prefix_rows = pad_batch([list(q[:s]) for q, s in zip(seqs, self.split)], pad, left=True)
            self.prefix = PrefixCache.build(self.model, prefix_rows, device=adapter.device)
        self.suffix = pad_batch([list(q[s:]) for q, s in zip(seqs, self.split)], pad, offsets=self.split).to(adapter.device)
        self._lower: Any = None
        if reuse_lower_layers and self.start_layer > 0:
            self._lower = self._lower_output()

    @property
    def cache(self) -> Any:
        """The prefix's KV cache (``None`` without a reused prefix)."""
        return None if self.prefix is None else self.prefix.cache

    def _suffix_kwargs(self) -> dict[str, Any]:
        if self.prefix is not None:
            return self.prefix.inputs(self.suffix, last_logits_only=True)
        return forward_inputs(self.model, self.suffix, use_cache=False, last_logits_only=True)

    @torch.no_grad()
    def _lower_output(self) -> Any:
        """The output object of layer ``start_layer - 1`` for the suffix tokens."""
        captured: dict[str, Any] = {}
        layer = self.adapter.layers[self.start_layer - 1]

        def grab(_module: nn.Module, _args: Any, output: Any) -> None:
            captured["output"] = output

        handle = layer.register_forward_hook(grab)
        try:
            with SiteTrace(self.adapter, read=[Site("resid", self.start_layer - 1)], stop=True):
                self.model(**self._suffix_kwargs())
        finally:
            handle.remove()
        out = captured["output"]
        if isinstance(out, tuple):
            return (out[0].detach(), *out[1:])
        return out.detach()

    def suffix_index(self, row: int, position: int) -> int:
        """Index in the suffix (what :meth:`run` returns) of absolute token ``position`` of ``row``."""
        index = position - self.split[row]
        if index < 0:
            raise IndexError(f"Token {position} of row {row} lies in the reused prefix.")
        return index

    def keep_rows(self, rows: Sequence[int]) -> bool:
        """Run only ``rows`` (indices of the current rows) from now on; ``False`` if the cache type cannot.

        Rows never interact, so dropping some leaves the others' results unchanged;
        the value optimisation drops the rows of requests that have finished.
        Row ``j`` of later :meth:`run` results is the ``j``-th kept row.
        """
        old = self.suffix.input_ids.shape[0]
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.suffix.input_ids.device)
        if self.prefix is not None and not self.prefix.select(index):
            return False
        self.suffix = self.suffix.rows(index)
        self.split = [self.split[i] for i in rows]
        if self._lower is not None:
            pick = lambda t: t[index] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == old else t  # noqa: E731
            self._lower = tuple(pick(t) for t in self._lower) if isinstance(self._lower, tuple) else pick(self._lower)
        return True

    # --------------------------------------------------------------------- run
    def run(self, edit: Mapping[Site | str, EditFn] | None = None) -> torch.Tensor:
        """Final-layer hidden states ``[rows, suffix_len, d]`` with ``edit`` applied (autograd kept)."""
        edits = {Site.parse(s): fn for s, fn in (edit or {}).items()}
        if self._lower is not None:
            low = [s for s in edits if s.layer is None or s.layer < self.start_layer]
            if low:
                raise ValueError(f"Sites {low} lie below start_layer {self.start_layer}, whose outputs are reused.")
        layers = self.adapter.layers
        originals = [layers[i] for i in range(self.start_layer)] if self._lower is not None else []
        try:
            for i, original in enumerate(originals):
                layers[i] = _CachedLayer(original, self._lower)
            with SiteTrace(self.adapter, read=[self.final_site], edit=edits, stop=True, detach=False) as trace:
                self.model(**self._suffix_kwargs())
        finally:
            for i, original in enumerate(originals):
                layers[i] = original
        return trace[self.final_site]
