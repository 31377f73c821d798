"""Tiny random models of every supported architecture, built offline from configs.

Usage::

    from factscope.edit import edit
    adapter = tiny_adapter("llama")                 # ModelAdapter over a 4-layer random model
    adapter = tiny_adapter("gpt2", tokenizer_kind="metaspace")
    requests = example_requests(3)                  # EditRequests about facts of the training text
    fast = fast_overrides("memit", layers=[1, 2])   # small, quick settings the editor takes
    delta = assert_edit_contract(adapter, lambda: edit(adapter, requests, editor="memit", **fast))

:func:`assert_edit_contract` is the one check of the editor contract every test uses:
the model is untouched by computing an edit, the delta changes the weights when applied,
reverts them bit-exactly, and survives a save/load round trip.

The tokenizer is a small BPE trained in memory on a fixed text, so tests need no
network. ``"bytelevel"`` mimics GPT-2-style BPE (leading-space tokens, ``Ġ``);
``"metaspace"`` mimics SentencePiece (``▁``). Weights are seeded.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from factscope.models.adapter import ModelAdapter

TINY_ARCHITECTURES = ("gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "opt")

_TRAINING_TEXT = """
The mother tongue of Danielle Darrieux is French. Danielle Darrieux was born in Bordeaux.
The capital of France is Paris. The capital of Italy is Rome. Paris is the capital of France.
Michael Jordan plays basketball. Lionel Messi plays football. The Eiffel Tower is in Paris.
Toyota is headquartered in Japan. The iPhone is made by Apple. Windows was developed by Microsoft.
The official language of Germany is German. Berlin is a city in Germany. English and Spanish.
Albert Einstein was a physicist who worked in Berlin. Marie Curie was born in Warsaw, Poland.
The relation between them is none. He is a native speaker of English. She speaks fluent Italian.
""" * 4


@functools.lru_cache(maxsize=4)
def tiny_tokenizer(kind: str = "bytelevel", vocab_size: int = 400) -> Any:
    """A fast tokenizer trained in memory (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token=None if kind == "bytelevel" else "<unk>"))
    if kind == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif kind == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        specials.append("<unk>")
        alphabet = sorted(set(_TRAINING_TEXT.replace(" ", "▁")) | set("▁'?!\",;:-0123456789"))
    else:
        raise ValueError(f"Unknown tiny tokenizer kind {kind!r}")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet)
    tok.train_from_iterator([_TRAINING_TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<pad>",
        unk_token=None if kind == "bytelevel" else "<unk>",
    )
    return fast


def tiny_config(arch: str, vocab_size: int, n_layers: int = 4) -> Any:
    """A small config for ``arch`` (d_model 32, 4 heads)."""
    from transformers import AutoConfig

    d, heads = 32, 4
    common: dict[str, Any] = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    if arch == "gpt2":
        kw = dict(n_layer=n_layers, n_embd=d, n_head=heads, n_positions=128)
    elif arch == "gptj":
        kw = dict(n_layer=n_layers, n_embd=d, n_head=heads, n_positions=128, rotary_dim=4)
    elif arch == "gpt_neox":
        kw = dict(num_hidden_layers=n_layers, hidden_size=d, num_attention_heads=heads, intermediate_size=64,
                  max_position_embeddings=128, use_parallel_residual=True)
    elif arch in ("llama", "mistral", "qwen2"):
        kw = dict(num_hidden_layers=n_layers, hidden_size=d, num_attention_heads=heads, num_key_value_heads=2,
                  intermediate_size=64, max_position_embeddings=128)
    elif arch in ("gemma", "gemma2", "gemma3_text"):
        kw = dict(num_hidden_layers=n_layers, hidden_size=d, num_attention_heads=heads, num_key_value_heads=2,
                  head_dim=8, intermediate_size=64, max_position_embeddings=128)
        if arch != "gemma":
            kw.update(final_logit_softcapping=30.0, sliding_window=16)
    elif arch == "opt":
        kw = dict(num_hidden_layers=n_layers, hidden_size=d, num_attention_heads=heads, ffn_dim=64,
                  max_position_embeddings=128, word_embed_proj_dim=d)
    else:
        raise ValueError(f"No tiny config for {arch!r}; known: {TINY_ARCHITECTURES}")
    return AutoConfig.for_model(arch, **common, **kw)


def tiny_model(arch: str, *, seed: int = 0, tokenizer_kind: str = "bytelevel", n_layers: int = 4) -> tuple[Any, Any]:
    """A seeded random ``*ForCausalLM`` of ``arch`` and its tokenizer, in eval mode, float32."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer(tokenizer_kind)
    config = tiny_config(arch, vocab_size=len(tokenizer), n_layers=n_layers)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def tiny_adapter(arch: str, **kwargs: Any) -> ModelAdapter:
    """``ModelAdapter`` over :func:`tiny_model`."""
    model, tokenizer = tiny_model(arch, **kwargs)
    return ModelAdapter(model, tokenizer, name=f"tiny-{arch}")


_EXAMPLE_FACTS = [
    ("The mother tongue of {} is", "Danielle Darrieux", "English", "French"),
    ("{} plays the sport of", "Michael Jordan", "football", "basketball"),
    ("The capital of {} is", "Italy", "Paris", "Rome"),
    ("{} was born in", "Barack Obama", "Berlin", "Honolulu"),
]


def sharpened_tiny_adapter(arch: str = "llama", factor: float = 30.0) -> ModelAdapter:
    """A tiny model whose MLPs matter: every down-projection scaled by ``factor`` (random tiny MLPs barely move the logits)."""
    adapter = tiny_adapter(arch)
    with torch.no_grad():
        for layer in range(adapter.n_layers):
            adapter.mlp_down_weight(layer).parameter.mul_(factor)
    return adapter


def example_requests(n: int = 3, *, with_true: bool = True) -> list[Any]:
    """The first ``n`` (≤ 4) edit requests about facts of the tiny tokenizer's training text."""
    from factscope.edit.request import EditRequest

    if not 1 <= n <= len(_EXAMPLE_FACTS):
        raise ValueError(f"n must be 1..{len(_EXAMPLE_FACTS)}")
    return [EditRequest(p, s, new, true if with_true else None) for p, s, new, true in _EXAMPLE_FACTS[:n]]


def fake_gguf_converter(arch: str = "llama", builds: list[Any] | None = None) -> Any:
    """A stand-in for ``loading._convert_gguf`` that writes a tiny model and the completion marker (with its weights hash).

    Usage: ``monkeypatch.setattr(loading, "_convert_gguf", fake_gguf_converter("llama", builds))``;
    each conversion appends its target folder to ``builds``.
    """
    import json
    from pathlib import Path

    from factscope.models import loading

    def convert(_gguf: Path, target: Path) -> None:
        model, tok = tiny_model(arch)
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        tok.save_pretrained(target)
        digest = loading.file_sha256(target / "model.safetensors", loading._hash_memo())
        (target / loading._COMPLETE_MARKER).write_text(json.dumps({"weights_sha256": digest}))
        if builds is not None:
            builds.append(target)

    return convert


# Small, quick hyperparameters for tests: each editor gets the ones its class has.
# Known facts and relation attributes for the dataset-lens tests (two facts are unusable on purpose).
LENS_FACTS: list[dict[str, Any]] = [
    {"known_id": 0, "subject": "Danielle Darrieux", "attribute": "French",
     "prompt": "The mother tongue of Danielle Darrieux is", "relation_id": "P103"},
    {"known_id": 1, "subject": "France", "attribute": "Paris", "prompt": "The capital of France is", "relation_id": "P36"},
    {"known_id": 2, "subject": "Michael Jordan", "attribute": "basketball", "prompt": "Michael Jordan plays",
     "relation_id": "P641"},
    {"known_id": 3, "subject": "Germany", "attribute": "German", "prompt": "The official language of Germany is",
     "relation_id": "P37"},
    {"known_id": 4, "subject": "Paris", "attribute": "France", "prompt": "The capital of France is Paris",
     "relation_id": "P36"},
    {"known_id": 5, "subject": "Italy", "attribute": "Rome", "prompt": "The capital of Italy is", "relation_id": "P36"},
]
LENS_ATTRIBUTES = {"P103": ["French", "English", "Italian"], "P36": ["Paris", "Berlin", "Warsaw, Poland"],
              "P37": ["English", "Spanish"]}
# Common words of the tiny tokenizer's training text, so that AR varies across layers of a random model.
_LENS_WORDS = "French English Italian Spanish German Paris Berlin Rome Warsaw Poland capital city language born in the of is was and"
LENS_RICH_ATTRIBUTES = {rel: strings + _LENS_WORDS.split() for rel, strings in LENS_ATTRIBUTES.items()}


FAST_HPARAMS: dict[str, Any] = {
    "context_lengths": [[3, 2]],
    "v_steps": 4,
    "mom2_n_tokens": 64,
    "ft_steps": 4,
    "ig_steps": 4,
    "n_constraint_records": 20,
    # MEND: train a tiny editor on the shipped example facts the first time one is needed
    "rank": 8,
    "steps": 2,
    "val_size": 1,
    "val_every": 0,
    "train_if_missing": True,
    "train_data": str(Path(__file__).parent / "data" / "example_facts.json"),
}


def fast_overrides(editor: str, **extra: Any) -> dict[str, Any]:
    """:data:`FAST_HPARAMS` restricted to the fields of ``editor``'s hyperparameter class, then ``extra``."""
    from factscope.edit.registry import get_editor

    names = set(get_editor(editor).hparams_class.field_names())
    return {**{k: v for k, v in FAST_HPARAMS.items() if k in names}, **extra}


def weights_snapshot(adapter: ModelAdapter) -> dict[str, torch.Tensor]:
    """A copy of every tensor of the model's state."""
    return {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}


def same_weights(adapter: ModelAdapter, snapshot: dict[str, torch.Tensor]) -> bool:
    """Whether the model's state equals ``snapshot`` bit for bit."""
    state = adapter.model.state_dict()
    return state.keys() == snapshot.keys() and all(torch.equal(v, snapshot[k]) for k, v in state.items())


def assert_edit_contract(adapter: ModelAdapter, make_delta: Callable[[], Any], *, folder: str | Path | None = None) -> Any:
    """Run ``make_delta()`` and check the editor contract; returns the delta.

    The model is unchanged after the edit is computed; applying the delta changes it;
    reverting restores every tensor bit-exactly; the delta saved and loaded again (in
    ``folder``, else a temporary one) has the same entries and applies to the same weights.
    """
    from factscope.edit.delta import WeightDelta

    before = weights_snapshot(adapter)
    delta = make_delta()
    assert isinstance(delta, WeightDelta) and delta.entries, "the editor returned no weight changes"
    assert same_weights(adapter, before), "computing the edit changed the model"
    delta.apply(adapter)
    edited = weights_snapshot(adapter)
    assert not same_weights(adapter, before), "applying the delta changed nothing"
    delta.revert(adapter)
    assert same_weights(adapter, before), "reverting the delta did not restore the weights bit-exactly"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(folder or tmp) / "delta.safetensors"
        delta.save(path)
        loaded = WeightDelta.load(path)
    assert [e.key for e in loaded.entries] == [e.key for e in delta.entries], "entries changed in the round trip"
    assert all(torch.equal(a.dense(), b.dense()) for a, b in zip(loaded.entries, delta.entries)), "values changed in the round trip"
    assert loaded.metadata.get("editor") == delta.metadata.get("editor"), "metadata changed in the round trip"
    with loaded.applied(adapter):
        assert same_weights(adapter, edited), "the loaded delta applies to other weights"
    assert same_weights(adapter, before), "reverting the loaded delta did not restore the weights bit-exactly"
    return delta
