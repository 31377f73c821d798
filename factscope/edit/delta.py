"""Weight deltas: what every editor returns, applied and reverted bit-exactly.

Usage::

    from factscope.edit import WeightDelta, edit
    from factscope.testing import example_requests, tiny_adapter
    adapter = tiny_adapter("llama")
    delta = edit(adapter, example_requests(1), editor="rome", v_steps=3, mom2_n_tokens=64)  # the model is untouched
    delta.apply(adapter)                       # keeps a copy of every weight it changes
    delta.revert(adapter)                      # restores those copies (bit-exact)
    with delta.applied(adapter):               # apply for a block, always revert
        ...
    delta.save("edit.safetensors"); WeightDelta.load("edit.safetensors")

An entry is low-rank (``dW = u @ v.T`` with ``u: [out, r]``, ``v: [in, r]``) or dense
(``u`` holds ``[out, in]``, ``v`` is None), always in the (out, in) orientation of
``LinearWeight.matrix`` whatever the module stores.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from factscope.io_utils import HASH_KEY, IntegrityError, load_tensors, save_tensors
from factscope.models.adapter import LinearWeight, ModelAdapter

# Per model: the deltas applied to it, oldest first. Reverting restores saved copies of
# the weights, so only the most recently applied delta may be reverted.
_APPLIED: "weakref.WeakKeyDictionary[nn.Module, list[WeightDelta]]" = weakref.WeakKeyDictionary()


class DeltaError(RuntimeError):
    """A delta that does not fit the model, or is applied/reverted out of order."""


@dataclass
class DeltaEntry:
    """A change to one weight matrix: ``site_kind`` names the input site of the module."""

    site_kind: str  # "mlp_key" (MLP down-projection) or "attn_key" (attention output projection)
    layer: int
    u: torch.Tensor  # [out, r] low-rank factor, or the dense [out, in] delta
    v: torch.Tensor | None = None  # [in, r] or None for dense

    def dense(self) -> torch.Tensor:
        """The full ``[out, in]`` change."""
        return self.u if self.v is None else self.u @ self.v.T

    @property
    def key(self) -> str:
        return f"{self.site_kind}.{self.layer}"


@contextlib.contextmanager
def applied_in_turn(adapter: ModelAdapter) -> Iterator[Callable[["WeightDelta"], None]]:
    """``with applied_in_turn(adapter) as apply: apply(d1); apply(d2)`` — every applied delta reverted, last first, on exit.

    The one place for "apply edits one after another, always restore the model"
    (sequential evaluation, MEMIT's layer loop, several requests edited in turn).
    """
    applied: list[WeightDelta] = []

    def apply(delta: "WeightDelta") -> None:
        delta.apply(adapter)
        applied.append(delta)

    try:
        yield apply
    finally:
        for delta in reversed(applied):
            delta.revert(adapter)


@dataclass
class WeightDelta:
    """A set of weight changes plus metadata (editor, hyperparameters, requests, fingerprint)."""

    entries: list[DeltaEntry]
    metadata: dict[str, Any] = field(default_factory=dict)
    _originals: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _applied_to: int | None = field(default=None, repr=False)
    verified: bool = field(default=False, repr=False)  # loaded from a file whose content hash matched
    source: str | None = field(default=None, repr=False)  # the file it was loaded from

    # ------------------------------------------------------------- apply/revert
    def _weights(self, adapter: ModelAdapter) -> list[tuple[DeltaEntry, LinearWeight]]:
        pairs = []
        origin = f"Delta {self.source}: " if self.source else ""
        for entry in self.entries:
            try:
                weight = adapter.weight(entry.site_kind, adapter.check_layer(entry.layer))
            except ValueError as err:  # a layer the model does not have, or an unknown site kind
                raise DeltaError(f"{origin}entry {entry.key} does not fit this model ({err}); "
                                 "it was made for another model.") from None
            out_dim, in_dim = weight.matrix.shape
            u_ok = entry.u.shape[0] == out_dim
            v_ok = entry.u.shape[1] == in_dim if entry.v is None else (entry.v.shape[0] == in_dim and entry.v.shape[1] == entry.u.shape[1])
            if not (u_ok and v_ok):
                raise DeltaError(
                    f"{origin or 'Delta '}entry {entry.key} has shape {tuple(entry.dense().shape)} but the model's weight is "
                    f"{(out_dim, in_dim)}: this delta was made for another model."
                )
            pairs.append((entry, weight))
        return pairs

    def check_model(self, adapter: ModelAdapter, *, strict: bool = False) -> None:
        """Raise if shapes do not fit; with ``strict`` also if the model fingerprint differs."""
        self._weights(adapter)
        fp = self.metadata.get("model_fingerprint")
        if strict and fp and fp != adapter.fingerprint:
            name = f"Delta {self.source}" if self.source else "Delta"
            raise DeltaError(f"{name} was made for model fingerprint {fp}, this model is {adapter.fingerprint}.")

    @torch.no_grad()
    def apply(self, adapter: ModelAdapter) -> None:
        """Add the delta to the model's weights, keeping a copy of each changed weight."""
        if self._applied_to is not None:
            raise DeltaError("This delta is already applied; revert it first.")
        pairs = self._weights(adapter)  # validates every entry before anything changes
        originals: dict[str, torch.Tensor] = {}
        try:
            for entry, weight in pairs:
                name = entry.key
                if name not in originals:
                    originals[name] = weight.parameter.detach().clone()
                dense = entry.dense().to(weight.parameter.device, weight.parameter.dtype)
                weight.parameter.add_(weight.to_storage(dense))
        except BaseException:
            for entry, weight in pairs:
                if entry.key in originals:
                    weight.parameter.copy_(originals[entry.key])
            raise
        self._originals = originals
        self._applied_to = id(adapter.model)
        _APPLIED.setdefault(adapter.model, []).append(self)

    @torch.no_grad()
    def revert(self, adapter: ModelAdapter) -> None:
        """Restore the weights saved by :meth:`apply` (bit-exact)."""
        if self._applied_to is None:
            raise DeltaError("This delta is not applied; nothing to revert.")
        if self._applied_to != id(adapter.model):
            raise DeltaError("This delta was applied to a different model object.")
        stack = _APPLIED.get(adapter.model, [])
        if stack and stack[-1] is not self:
            later = len(stack) - 1 - next((i for i, d in enumerate(stack) if d is self), -1)
            raise DeltaError(
                f"Out-of-order revert: {later} delta(s) applied to this model after this one are still applied; "
                "revert them first (last applied, first reverted), or the model would keep their changes."
            )
        for entry in self.entries:
            if entry.key in self._originals:
                adapter.weight(entry.site_kind, entry.layer).parameter.copy_(self._originals[entry.key])
        if stack and stack[-1] is self:
            stack.pop()
        self._originals = {}
        self._applied_to = None

    @contextlib.contextmanager
    def applied(self, adapter: ModelAdapter) -> Iterator["WeightDelta"]:
        """Apply for the duration of a ``with`` block; always revert."""
        self.apply(adapter)
        try:
            yield self
        finally:
            self.revert(adapter)

    @property
    def is_applied(self) -> bool:
        return self._applied_to is not None

    def original_weights(self) -> dict[str, torch.Tensor]:
        """While applied: entry key (``"mlp_key.5"``) → the weight as it was before :meth:`apply`."""
        if self._applied_to is None:
            raise DeltaError("This delta is not applied; there are no original weights to give.")
        return dict(self._originals)

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> Path:
        """Write tensors as safetensors, metadata as JSON and the tensors' SHA-256 in the header (atomically)."""
        path = Path(path)
        tensors: dict[str, torch.Tensor] = {}
        layout = []
        for i, entry in enumerate(self.entries):
            tensors[f"{i}.u"] = entry.u.detach().cpu().contiguous()
            if entry.v is not None:
                tensors[f"{i}.v"] = entry.v.detach().cpu().contiguous()
            layout.append({"site_kind": entry.site_kind, "layer": entry.layer})
        header = {"factscope": json.dumps({"entries": layout, "metadata": self.metadata}, default=str)}
        return save_tensors(path, tensors, header)

    @classmethod
    def load(cls, path: str | Path) -> "WeightDelta":
        """Read a delta written by :meth:`save`; its content hash is verified (``DeltaError`` naming the file)."""
        path = Path(path)
        if not path.is_file():
            raise DeltaError(f"Delta file {path} does not exist.")
        try:
            tensors, header = load_tensors(path, require_hash=False)
            if "factscope" not in header:
                raise DeltaError(f"{path} is a safetensors file but not a factscope delta (no delta header); "
                                 "deltas are written by `factscope edit --save`.")
            info = json.loads(header["factscope"])
            entries = [
                DeltaEntry(str(e["site_kind"]), int(e["layer"]), tensors[f"{i}.u"], tensors.get(f"{i}.v"))
                for i, e in enumerate(info["entries"])
            ]
        except IntegrityError as err:
            raise DeltaError(f"Delta file {err}") from None
        except (KeyError, ValueError, TypeError) as err:
            raise DeltaError(f"{path} is not a readable factscope delta file (bad header: {err}).") from None
        if HASH_KEY not in header:
            warnings.warn(f"Delta file {path} carries no content hash (older factscope); it cannot be checked for damage.",
                          stacklevel=2)
        delta = cls(entries, info.get("metadata", {}) if isinstance(info.get("metadata"), dict) else {})
        delta.verified = HASH_KEY in header
        delta.source = str(path)
        return delta

    # ---------------------------------------------------------------- combining
    @classmethod
    def concatenate(cls, deltas: list["WeightDelta"], metadata: dict[str, Any] | None = None) -> "WeightDelta":
        """One delta holding all entries of ``deltas`` (e.g. a sequence of edits)."""
        entries = [entry for delta in deltas for entry in delta.entries]
        return cls(entries, metadata or {"parts": [d.metadata for d in deltas]})
