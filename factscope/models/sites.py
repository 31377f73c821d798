"""Architecture-independent names for the places one can read or patch.

Usage::

    Site("mlp", 5)            # m^5, output of layer 5's MLP
    Site.parse("mlp_key.5")   # input of layer 5's MLP down-projection (ROME's key)
    str(Site("resid", 3))     # "resid.3"

Kinds (shape ``[batch, tokens, d]`` unless said otherwise):

``embed``    output of the token embedding (no layer)
``resid``    h^l, the residual stream after layer l (the decoder layer's output)
``attn``     a^l, the attention output that is added to the residual stream
``mlp``      m^l, the MLP output that is added to the residual stream
``mlp_key``  k^l, the *input* of the MLP down-projection, ``[batch, tokens, d_mlp]``
``attn_key`` the *input* of the attention output projection (concatenated heads)
"""

from __future__ import annotations

from dataclasses import dataclass

SITE_KINDS = ("embed", "attn_key", "attn", "mlp_key", "mlp", "resid")
INPUT_SITE_KINDS = frozenset({"mlp_key", "attn_key"})
# Order in which sites of one layer are reached in a forward pass (embed first).
_KIND_ORDER = {kind: i for i, kind in enumerate(SITE_KINDS)}


@dataclass(frozen=True, order=False)
class Site:
    """A named place in the network: a kind and (except ``embed``) a layer index."""

    kind: str
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ValueError(f"Unknown site kind {self.kind!r}; expected one of {SITE_KINDS}.")
        if self.kind == "embed" and self.layer is not None:
            raise ValueError("The 'embed' site has no layer.")
        if self.kind != "embed" and self.layer is None:
            raise ValueError(f"Site kind {self.kind!r} needs a layer index.")

    @classmethod
    def parse(cls, name: "str | Site") -> "Site":
        """Parse ``"kind.layer"`` or ``"embed"``; a ``Site`` is returned unchanged."""
        if isinstance(name, Site):
            return name
        if name == "embed":
            return cls("embed")
        kind, sep, layer = name.rpartition(".")
        if not sep or not layer.lstrip("-").isdigit():
            raise ValueError(f"Cannot parse site {name!r}; expected e.g. 'mlp.5' or 'embed'.")
        return cls(kind, int(layer))

    @property
    def is_input(self) -> bool:
        """True when the site is a module's input (read with a pre-hook)."""
        return self.kind in INPUT_SITE_KINDS

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: position in the forward pass."""
        return (-1 if self.layer is None else self.layer, _KIND_ORDER[self.kind])

    def __str__(self) -> str:
        return self.kind if self.layer is None else f"{self.kind}.{self.layer}"
