"""Read or replace activations at named sites for the duration of a ``with`` block.

Usage::

    with SiteTrace(adapter, read=["mlp_key.3", "resid.5"], stop=True) as tr:
        adapter.model(**batch)            # stops right after the deepest site
    keys = tr["mlp_key.3"]                # [batch, tokens, d_mlp]

    def zero_last(site, x):               # edit functions return the new activation
        x = x.clone(); x[:, -1] = 0; return x
    with SiteTrace(adapter, edit={"mlp.4": zero_last}):
        logits = adapter.model(**batch).logits

Hooks are always removed on exit, even when the forward pass raises. With
``stop=True`` the forward pass is aborted (by an exception the context swallows)
once the deepest traced site has been computed, so ``model(...)`` returns nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from factscope.hooks.sites import Site

if TYPE_CHECKING:
    from factscope.models.adapter import ModelAdapter

EditFn = Callable[[Site, torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early; swallowed by ``SiteTrace``."""


class SiteTrace:
    """Context manager that reads (``read``) and/or replaces (``edit``) site activations."""

    def __init__(
        self,
        adapter: "ModelAdapter",
        read: Iterable[Site | str] = (),
        edit: Mapping[Site | str, EditFn] | None = None,
        *,
        stop: bool = False,
        detach: bool = True,
        clone: bool = False,
    ) -> None:
        self.adapter = adapter
        self.read_sites = [Site.parse(s) for s in read]
        self.edits = {Site.parse(s): fn for s, fn in (edit or {}).items()}
        self.detach = detach
        self.clone = clone
        self.values: dict[str, torch.Tensor] = {}
        sites = set(self.read_sites) | set(self.edits)
        if stop and not sites:
            raise ValueError("stop=True needs at least one site to stop after.")
        self._stop_site = max(sites, key=lambda s: s.order) if stop else None
        self._handles: list[Any] = []
        self._sites = sorted(sites, key=lambda s: s.order)

    def __getitem__(self, site: Site | str) -> torch.Tensor:
        return self.values[str(Site.parse(site))]

    # ------------------------------------------------------------------ hooks
    def _process(self, site: Site, value: torch.Tensor) -> torch.Tensor | None:
        flat_shape = None
        if value.dim() == 2 and site.layer in self._layer_shapes:
            flat_shape = value.shape  # OPT runs its MLP on [batch*tokens, d]
            value = value.view(*self._layer_shapes[site.layer], -1)
        new_value = self._process_3d(site, value)
        if new_value is not None and flat_shape is not None:
            new_value = new_value.reshape(flat_shape)
        return new_value

    def _process_3d(self, site: Site, value: torch.Tensor) -> torch.Tensor | None:
        new_value = None
        if site in self.edits:
            new_value = self.edits[site](site, value)
            value = new_value
        if site in self.read_sites:
            kept = value.detach() if self.detach else value
            self.values[str(site)] = kept.clone() if self.clone else kept
        return new_value

    def _make_output_hook(self, site: Site) -> Callable:
        def hook(_module, _args, output):
            tensor = output[0] if isinstance(output, tuple) else output
            new = self._process(site, tensor)
            if site == self._stop_site:
                raise StopForward
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    def _make_input_hook(self, site: Site) -> Callable:
        def hook(_module, args, kwargs):
            if args:
                new = self._process(site, args[0])
                result = None if new is None else ((new, *args[1:]), kwargs)
            else:  # called with a keyword argument
                key = next(iter(kwargs))
                new = self._process(site, kwargs[key])
                result = None if new is None else (args, {**kwargs, key: new})
            if site == self._stop_site:
                # Stop after the module itself has run so its output is complete.
                self._stop_pending = True
            return result

        return hook

    def _make_stop_after_hook(self) -> Callable:
        def hook(_module, _args, _output):
            if getattr(self, "_stop_pending", False):
                raise StopForward

        return hook

    def _make_shape_hook(self, layer: int) -> Callable:
        def hook(_module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            self._layer_shapes[layer] = tuple(hidden.shape[:2])

        return hook

    def __enter__(self) -> "SiteTrace":
        self._stop_pending = False
        self._layer_shapes: dict[int, tuple[int, int]] = {}
        try:
            if self.adapter.spec.flat_mlp:
                for layer in sorted({s.layer for s in self._sites if s.kind in ("mlp", "mlp_key")}):
                    module = self.adapter.module(Site("resid", layer))
                    self._handles.append(
                        module.register_forward_pre_hook(self._make_shape_hook(layer), with_kwargs=True)
                    )
            for site in self._sites:
                module = self.adapter.module(site)
                if site.is_input:
                    handle = module.register_forward_pre_hook(self._make_input_hook(site), with_kwargs=True)
                    self._handles.append(handle)
                    if site == self._stop_site:
                        self._handles.append(module.register_forward_hook(self._make_stop_after_hook()))
                else:
                    self._handles.append(module.register_forward_hook(self._make_output_hook(site)))
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._remove()
        return exc_type is not None and issubclass(exc_type, StopForward)


def replace_positions(
    values: torch.Tensor, positions: Sequence[int] | torch.Tensor, *, batch_index: Any = slice(None)
) -> EditFn:
    """Edit function that writes ``values`` at token ``positions``.

    ``values`` broadcasts against ``x[batch_index, positions]``.
    """
    pos = torch.as_tensor(positions, dtype=torch.long)

    def edit(_site: Site, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[batch_index, pos.to(x.device)] = values.to(x.device, x.dtype)
        return x

    return edit


def add_at_positions(
    delta: torch.Tensor, positions: Sequence[int] | torch.Tensor, *, batch_index: Any = slice(None)
) -> EditFn:
    """Edit function that adds ``delta`` at token ``positions`` (keeps autograd)."""
    pos = torch.as_tensor(positions, dtype=torch.long)

    def edit(_site: Site, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[batch_index, pos.to(x.device)] = x[batch_index, pos.to(x.device)] + delta.to(x.dtype)
        return x

    return edit


def zero_positions(positions: Sequence[int] | torch.Tensor) -> EditFn:
    """Edit function that zeroes the activation at token ``positions`` (knock-out)."""
    pos = torch.as_tensor(positions, dtype=torch.long)

    def edit(_site: Site, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, pos.to(x.device)] = 0
        return x

    return edit
