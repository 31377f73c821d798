"""Per-architecture module paths: the only place in factscope that names them.

Usage::

    spec = architecture_for(model.config)      # ArchitectureSpec
    spec.layers                                # "model.layers"
    spec.mlp_down                              # "mlp.down_proj" (relative to a layer)

Everything else in the package speaks of *sites* (see ``factscope.models.sites``);
adding an architecture means adding one entry to ``ARCHITECTURES``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where the parts of one decoder-only architecture live.

    Paths of ``layers``, ``embed``, ``final_norm`` and ``unembed`` are relative to the
    ``*ForCausalLM`` model; the others are relative to one decoder layer.
    """

    name: str  # paths may list alternatives as "a|b" (names differ across transformers versions)
    layers: str
    embed: str
    final_norm: str | None
    unembed: str
    attn: str  # module whose output is the attention output a^l
    attn_out_proj: str  # attention output projection (input = concatenated heads)
    mlp: str  # module whose output is the MLP output m^l
    mlp_down: str  # MLP down-projection; its input is the editing key k^l
    parallel_residual: bool = False  # MLP reads h^{l-1}, not h^{l-1} + a^l
    # Paths to a module applied between final_norm and unembed (OPT's project_out).
    pre_unembed: str | None = None
    logit_softcap_attr: str | None = None  # config attribute holding a final soft-cap
    flat_mlp: bool = False  # MLP sees [batch*tokens, d] (OPT); sites are reshaped to [batch, tokens, d]
    default_edit_layer_fraction: float = 0.25  # ROME-style early-middle layer
    # RMS norms between the attn/mlp sites and the residual stream (Gemma-2/3's "sandwich" norms):
    # the residual receives norm(site value), not the site value itself.
    attn_post_norm: str | None = None
    mlp_post_norm: str | None = None
    notes: str = ""


_LLAMA_LIKE = ArchitectureSpec(
    name="llama",
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    attn="self_attn",
    attn_out_proj="self_attn.o_proj",
    mlp="mlp",
    mlp_down="mlp.down_proj",
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "gpt2": ArchitectureSpec(
        name="gpt2",
        layers="transformer.h",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        attn="attn",
        attn_out_proj="attn.c_proj",
        mlp="mlp",
        mlp_down="mlp.c_proj",
        notes="Conv1D weights are stored (in, out).",
    ),
    "gptj": ArchitectureSpec(
        name="gptj",
        layers="transformer.h",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        attn="attn",
        attn_out_proj="attn.out_proj",
        mlp="mlp",
        mlp_down="mlp.fc_out",
        parallel_residual=True,
    ),
    "gpt_neox": ArchitectureSpec(
        name="gpt_neox",
        layers="gpt_neox.layers",
        embed="gpt_neox.embed_in",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head|embed_out",
        attn="attention",
        attn_out_proj="attention.dense",
        mlp="mlp",
        mlp_down="mlp.dense_4h_to_h",
        parallel_residual=True,  # refined from config.use_parallel_residual
    ),
    "llama": _LLAMA_LIKE,
    "mistral": replace(_LLAMA_LIKE, name="mistral"),
    "qwen2": replace(_LLAMA_LIKE, name="qwen2"),
    "qwen3": replace(_LLAMA_LIKE, name="qwen3"),
    "smollm3": replace(_LLAMA_LIKE, name="smollm3"),
    "gemma": replace(_LLAMA_LIKE, name="gemma", notes="Embedding scaled by sqrt(d) inside embed_tokens."),
    "gemma2": replace(
        _LLAMA_LIKE,
        name="gemma2",
        logit_softcap_attr="final_logit_softcapping",
        attn_post_norm="post_attention_layernorm",
        mlp_post_norm="post_feedforward_layernorm",
        notes="attn/mlp sites are read before Gemma-2's post-attention/post-feedforward norms.",
    ),
    "gemma3_text": replace(
        _LLAMA_LIKE,
        name="gemma3_text",
        logit_softcap_attr="final_logit_softcapping",
        attn_post_norm="post_attention_layernorm",
        mlp_post_norm="post_feedforward_layernorm",
        notes="attn/mlp sites are read before Gemma-3's post-attention/post-feedforward norms.",
    ),
    "opt": ArchitectureSpec(
        name="opt",
        layers="model.decoder.layers",
        embed="model.decoder.embed_tokens",
        final_norm="model.decoder.final_layer_norm",
        unembed="lm_head",
        attn="self_attn",
        attn_out_proj="self_attn.out_proj",
        mlp="fc2",
        mlp_down="fc2",
        pre_unembed="model.decoder.project_out",
        flat_mlp=True,
        notes="OPT has no MLP module; fc2's output is the MLP output.",
    ),
}


class UnknownArchitectureError(ValueError):
    """Raised for a model whose module layout factscope does not know."""


def architecture_for(config: Any, override: ArchitectureSpec | None = None) -> ArchitectureSpec:
    """Return the spec for a HF config (by ``config.model_type``), or ``override``.

    Config flags refine the static entry (GPT-NeoX's ``use_parallel_residual``).
    """
    if override is not None:
        return override
    model_type = getattr(config, "model_type", None)
    spec = ARCHITECTURES.get(model_type)
    if spec is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownArchitectureError(
            f"factscope has no module map for model_type={model_type!r}. Known: {known}. "
            "Pass `architecture=ArchitectureSpec(name=..., layers='model.layers', embed=..., "
            "final_norm=..., unembed=..., attn=..., attn_out_proj=..., mlp=..., mlp_down=...)` "
            "to load_model/ModelAdapter, or register one in "
            "factscope.models.architectures.ARCHITECTURES."
        )
    if model_type == "gpt_neox":
        spec = replace(spec, parallel_residual=bool(getattr(config, "use_parallel_residual", True)))
    return spec
