"""One object that hides architecture differences from analysis and editing code.

Usage::

    adapter = ModelAdapter(model, tokenizer)          # architecture from config
    adapter.n_layers, adapter.d_model
    adapter.module(Site("mlp_key", 3))                # the nn.Module hooked for a site
    w = adapter.mlp_down_weight(3)                    # LinearWeight, (out, in) view
    logits = adapter.project_to_vocab(hidden)         # final norm + unembedding
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from factscope.models.sites import Site
from factscope.io_utils import tensors_sha256
from factscope.models.architectures import ArchitectureSpec, architecture_for

FINGERPRINT_VERSION = 2  # 2: from config without paths, tokenizer and a full weights hash (1 hashed the load path)
# Config entries that say where or how a model was loaded, not what it is.
_NON_IDENTITY_CONFIG_KEYS = {"name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype",
                             "use_cache", "return_dict", "output_hidden_states", "output_attentions"}


class LayerOutOfRangeError(ValueError):
    """A layer index outside ``[0, n_layers)``."""


@dataclass
class LinearWeight:
    """A linear map's weight seen as ``(out_features, in_features)`` whatever its storage.

    GPT-2's ``Conv1D`` stores ``(in, out)``; ``nn.Linear`` stores ``(out, in)``. The
    orientation is decided by the module's type, never by comparing shapes.
    """

    module: nn.Module
    parameter: nn.Parameter
    transposed: bool  # True when storage is (in, out)

    @classmethod
    def of(cls, module: nn.Module) -> "LinearWeight":
        if isinstance(module, nn.Linear):
            return cls(module, module.weight, transposed=False)
        if type(module).__name__ == "Conv1D":  # transformers.pytorch_utils.Conv1D
            return cls(module, module.weight, transposed=True)
        raise TypeError(
            f"Don't know the weight orientation of {type(module).__name__}; "
            "expected nn.Linear or transformers' Conv1D."
        )

    @property
    def matrix(self) -> torch.Tensor:
        """The weight as an ``(out, in)`` view sharing storage with the parameter."""
        return self.parameter.T if self.transposed else self.parameter

    def to_storage(self, delta_out_in: torch.Tensor) -> torch.Tensor:
        """Turn an ``(out, in)`` delta into the parameter's storage orientation."""
        return delta_out_in.T if self.transposed else delta_out_in


def _get_submodule(root: nn.Module, path: str) -> nn.Module:
    """Resolve ``path``; ``"a|b"`` tries alternatives (names differ across transformers versions)."""
    for alternative in path.split("|"):
        try:
            return root.get_submodule(alternative)
        except AttributeError:
            continue
    raise AttributeError(
        f"Module path {path!r} not found in {type(root).__name__}. "
        "The architecture map in factscope/models/architectures.py may not match this model."
    )


class ModelAdapter:
    """Architecture-independent access to a Hugging Face causal LM and its tokenizer."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        name: str | None = None,
        architecture: ArchitectureSpec | None = None,
        weights_hash: str | None = None,
        tokenizer_hash: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config
        self.spec = architecture_for(model.config, architecture)
        self.name = name or getattr(model.config, "_name_or_path", "") or self.spec.name
        self.layers: nn.ModuleList = _get_submodule(model, self.spec.layers)  # type: ignore[assignment]
        self.n_layers = len(self.layers)
        self.embedding = _get_submodule(model, self.spec.embed)
        self.final_norm = _get_submodule(model, self.spec.final_norm) if self.spec.final_norm else None
        self.pre_unembed = None
        if self.spec.pre_unembed:
            try:
                self.pre_unembed = model.get_submodule(self.spec.pre_unembed)
            except AttributeError:
                self.pre_unembed = None
        self.unembed = _get_submodule(model, self.spec.unembed)
        # Resolve every per-layer site once so that a bad map fails at load time.
        for kind in ("attn", "attn_key", "mlp", "mlp_key"):
            self.module(Site(kind, 0))
        # A SHA-256 of every parameter's bytes; load_model passes one memoised by the weight files' identity.
        self.weights_hash = weights_hash or parameters_sha256(model)
        self._tokenizer_hash = tokenizer_hash  # tokenizer_identity(tokenizer), when the loader memoised it
        self.fingerprint = self._compute_fingerprint()

    # ----------------------------------------------------------------- shapes
    @property
    def d_model(self) -> int:
        return int(self.embedding.weight.shape[1])

    @property
    def d_mlp(self) -> int:
        return int(self.mlp_down_weight(0).matrix.shape[1])

    @property
    def max_positions(self) -> int | None:
        """The longest input the config allows (``max_position_embeddings`` or GPT-2's ``n_positions``), or ``None``."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the token embedding (first shard)."""
        return self.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    @property
    def parallel_residual(self) -> bool:
        return self.spec.parallel_residual

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` if valid, else raise ``LayerOutOfRangeError``."""
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise LayerOutOfRangeError(
                f"Layer {layer!r} is out of range for {self.name} with {self.n_layers} layers "
                f"(valid: 0..{self.n_layers - 1})."
            )
        return layer

    # ---------------------------------------------------------------- modules
    def module(self, site: Site | str) -> nn.Module:
        """The module whose output (or input, for ``*_key`` sites) is ``site``."""
        site = Site.parse(site)
        if site.kind == "embed":
            return self.embedding
        layer = self.layers[self.check_layer(site.layer)]  # type: ignore[arg-type]
        path = {
            "resid": None,
            "attn": self.spec.attn,
            "attn_key": self.spec.attn_out_proj,
            "mlp": self.spec.mlp,
            "mlp_key": self.spec.mlp_down,
        }[site.kind]
        return layer if path is None else _get_submodule(layer, path)

    def mlp_down_weight(self, layer: int) -> LinearWeight:
        """The MLP down-projection weight of ``layer`` (what ROME/MEMIT edit)."""
        return LinearWeight.of(self.module(Site("mlp_key", layer)))

    def attn_out_weight(self, layer: int) -> LinearWeight:
        """The attention output projection weight of ``layer``."""
        return LinearWeight.of(self.module(Site("attn_key", layer)))

    def weight(self, site_kind: str, layer: int) -> LinearWeight:
        """Weight read by an input site: ``"mlp_key"`` or ``"attn_key"``."""
        if site_kind == "mlp_key":
            return self.mlp_down_weight(layer)
        if site_kind == "attn_key":
            return self.attn_out_weight(layer)
        raise ValueError(f"No editable weight behind site kind {site_kind!r}.")

    # ------------------------------------------------------------ post-norms
    def post_norm(self, kind: str, layer: int) -> nn.Module | None:
        """The norm between site ``kind`` ("attn" or "mlp") of ``layer`` and the residual stream, or ``None``."""
        path = {"attn": self.spec.attn_post_norm, "mlp": self.spec.mlp_post_norm}[kind]
        return None if path is None else _get_submodule(self.layers[self.check_layer(layer)], path)

    def site_value_for_residual_change(self, kind: str, layer: int, value: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """The value of site ``kind`` that adds ``change`` to the residual stream where it now adds f(``value``).

        Without a post-norm, f is the identity and the answer is ``value + change``. With
        an RMS post-norm f(m) = g ⊙ m / rms(m) (Gemma-2/3), which is scale-invariant:
        the residual can only receive vectors y with rms(y / g) = 1. The answer is then
        the pre-norm vector, of ``value``'s RMS, pointing along (f(value) + change) / g,
        whose image is f(value) + change rescaled onto that set; callers that re-measure
        the residual afterwards (MEMIT's layer loop) correct the rest. Rows are
        independent: ``value`` and ``change`` are ``[n, d_model]``.
        """
        norm = self.post_norm(kind, layer)
        if norm is None:
            return value + change
        with torch.no_grad():
            param = next(norm.parameters())
            x = value.to(param.dtype)
            # The gain g (1 + w on Gemma) read from the module itself: f(c·1) = g for large c.
            gain = norm(torch.full((1, x.shape[-1]), 1e3, dtype=param.dtype, device=param.device))[0].to(torch.float64)
            value64, change64 = value.to(torch.float64), change.to(torch.float64)
            wanted = norm(x).to(torch.float64) + change64.to(value64.device)
            live = gain.abs() > 1e-3 * gain.abs().max()  # coordinates the norm can still move
            rms = value64.pow(2).mean(-1, keepdim=True).sqrt()
            direction = torch.where(live, wanted / torch.where(live, gain, torch.ones_like(gain)), value64 / rms)
            target = direction * (rms / direction.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-30))
        return target.to(value.dtype)

    # --------------------------------------------------------- vocabulary lens
    @property
    def logit_softcap(self) -> float | None:
        attr = self.spec.logit_softcap_attr
        value = getattr(self.config, attr, None) if attr else None
        return float(value) if value else None

    def project_to_vocab(self, hidden: torch.Tensor, *, raw: bool = False) -> torch.Tensor:
        """Logits of a residual-stream state, as the model's own head computes them.

        ``raw=True`` skips the final norm (RETS' plain unembedding projection).
        Applying this to the last layer's output reproduces the model's logits.
        """
        x = hidden
        if not raw and self.final_norm is not None:
            x = self.final_norm(x)
        if self.pre_unembed is not None:
            x = self.pre_unembed(x)
        logits = self.unembed(x)
        cap = self.logit_softcap
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def embedding_std(self) -> float:
        """Std of the token-embedding output scale (matrix std × any embedding scale)."""
        weight = self.embedding.weight.detach().float()
        scale = getattr(self.embedding, "scalar_embed_scale", None)
        if scale is None:
            scale = getattr(self.embedding, "embed_scale", 1.0)
        scale = float(scale.item() if torch.is_tensor(scale) else scale)
        return float(weight.std().item()) * scale

    # ------------------------------------------------------------ identity
    def _compute_fingerprint(self) -> str:
        """A short hash of what the model *is*: architecture config without paths, tokenizer and weights.

        Independent of the path or name it was loaded by, so deltas and caches travel between
        folders, copies and machines. Computed once at construction so that later edits do not
        change it; used in cache keys (covariance statistics, contexts, supplements) and deltas.
        """
        digest = hashlib.sha256(f"factscope-model-v{FINGERPRINT_VERSION}|{self.spec.name}|".encode())
        digest.update(json.dumps(config_identity(self.config), sort_keys=True, default=str).encode())
        digest.update((self._tokenizer_hash or tokenizer_identity(self.tokenizer)).encode())
        digest.update(self.weights_hash.encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"ModelAdapter({self.name!r}, arch={self.spec.name}, layers={self.n_layers}, "
            f"d_model={self.d_model}, parallel_residual={self.parallel_residual})"
        )


def parameters_sha256(model: nn.Module) -> str:
    """SHA-256 of every parameter's name, dtype, shape and bytes (tied weights once)."""
    with torch.no_grad():
        return tensors_sha256(dict(model.named_parameters()))


def config_identity(config: Any) -> dict[str, Any]:
    """The config as a dict without paths, versions and runtime switches (recursively)."""
    try:
        data = config.to_dict()
    except Exception:  # configs with unserialisable fields
        data = dict(vars(config))

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()
                    if not str(k).startswith("_") and k not in _NON_IDENTITY_CONFIG_KEYS}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(data)


def tokenizer_identity(tokenizer: Any) -> str:
    """SHA-256 of a tokenizer's vocabulary and special tokens (not its class or where it was loaded from)."""
    digest = hashlib.sha256()
    try:
        vocab = tokenizer.get_vocab()
    except Exception:
        vocab = {}
    digest.update(json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), ensure_ascii=False).encode())
    specials = getattr(tokenizer, "special_tokens_map", {}) or {}
    digest.update(json.dumps(specials, sort_keys=True, default=str).encode())
    return digest.hexdigest()
