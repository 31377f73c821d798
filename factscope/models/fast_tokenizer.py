"""Load a cached conversion's tokenizer straight from ``tokenizer.json`` (Rust), not through its Python class.

Usage::

    tokenizer = load_cached_tokenizer(folder)      # fast when a verified recipe is there
    write_recipe_if_equivalent(folder, tokenizer)  # once, after a slow AutoTokenizer load

transformers 5 builds most tokenizers (GemmaTokenizer, GPT2Tokenizer, ...) by parsing
``tokenizer.json`` in Python and rebuilding the Rust tokenizer from its vocabulary and
merges: 3.4 s for Gemma-3's 33 MB file, against 1.0 s for ``Tokenizer.from_file``. For
the folders factscope converts itself, the class-specific settings that matter
(special tokens, padding and truncation side, maximum length, chat template) are
written to a small recipe next to ``tokenizer.json``, but only after the fast
tokenizer built from it was checked to encode, decode and pad exactly like the slow
one. A folder without a recipe, or whose recipe does not load, takes the slow path.

The recipe also names a compact copy of ``tokenizer.json`` (no indentation; BPE merges
as ``"a b"`` strings, when no merge part holds a space) that the Rust parser reads
faster: 0.72 s instead of 0.98 s for Gemma-3's 514,906 merges (in `factscope predict`). The same equivalence
check is made on the tokenizer built from that copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factscope.io_utils import atomic_write_text

RECIPE_FILE = "factscope-tokenizer.json"
COMPACT_FILE = "factscope-tokenizer.compact.json"
_RECIPE_VERSION = 2
_TOKENIZER_FILE = "tokenizer.json"
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token", "cls_token")
# Texts on which the fast tokenizer must agree with the slow one before a recipe is written.
_PROBE_TEXTS = (
    "The mother tongue of Danielle Darrieux is",
    " English",
    "Paris, France's capital, has 2,102,650 inhabitants (2023).",
    "héllo  wörld\n\tnaïve café — Zürich 東京 🙂",
    "   leading spaces and trailing   ",
    "x<bos>y</s><|endoftext|><eos>z",
    "",
)


def recipe_of(tokenizer: Any, tokenizer_file: str = _TOKENIZER_FILE) -> dict[str, Any]:
    """The settings of ``tokenizer`` that a :class:`PreTrainedTokenizerFast` needs to behave like it."""
    specials = {key: str(getattr(tokenizer, key)) for key in _SPECIAL_KEYS if getattr(tokenizer, key, None) is not None}
    extra = [str(t) for t in getattr(tokenizer, "additional_special_tokens", None) or []]
    return {
        "version": _RECIPE_VERSION,
        "tokenizer_file": tokenizer_file,
        "specials": specials,
        "additional_special_tokens": extra,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "model_max_length": int(tokenizer.model_max_length) if tokenizer.model_max_length < 2**63 else None,
        "chat_template": getattr(tokenizer, "chat_template", None),
    }


def _from_recipe(folder: Path, recipe: dict[str, Any]) -> Any:
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = dict(recipe["specials"])
    if recipe["additional_special_tokens"]:
        kwargs["additional_special_tokens"] = list(recipe["additional_special_tokens"])
    if recipe["model_max_length"] is not None:
        kwargs["model_max_length"] = recipe["model_max_length"]
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / recipe["tokenizer_file"]),
                                        padding_side=recipe["padding_side"],
                                        truncation_side=recipe["truncation_side"], **kwargs)
    if recipe["chat_template"] is not None:
        tokenizer.chat_template = recipe["chat_template"]
    return tokenizer


def _read_recipe(folder: Path) -> dict[str, Any] | None:
    try:
        recipe = json.loads((folder / RECIPE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(recipe, dict) or recipe.get("version") != _RECIPE_VERSION:
        return None
    if recipe.get("tokenizer_file") not in (_TOKENIZER_FILE, COMPACT_FILE):
        return None
    return recipe


def has_current_recipe(folder: Path) -> bool:
    """Whether ``folder`` holds a recipe this factscope reads (else the next load writes one)."""
    return _read_recipe(Path(folder)) is not None


def load_cached_tokenizer(folder: Path) -> Any:
    """The tokenizer saved in ``folder``: from its verified recipe when there is one, else via AutoTokenizer."""
    from transformers import AutoTokenizer

    recipe = _read_recipe(folder)
    if recipe is not None and (folder / recipe["tokenizer_file"]).is_file():
        try:
            return _from_recipe(folder, recipe)
        except Exception:  # an unusable recipe only costs the slow load
            pass
    return AutoTokenizer.from_pretrained(folder)


def behaviour_of(tokenizer: Any) -> dict[str, Any]:
    """What a tokenizer does on the probe texts (ids, decodes, padding), for comparing two of them."""
    ids = [tokenizer(text)["input_ids"] for text in _PROBE_TEXTS]
    bare = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in _PROBE_TEXTS]
    padded = tokenizer(list(_PROBE_TEXTS[:3]), padding=True)
    vocab_size = len(tokenizer)
    sample_ids = list(range(0, vocab_size, max(1, vocab_size // 997)))
    return {
        "ids": ids,
        "bare": bare,
        "decoded": [tokenizer.decode(row) for row in ids],
        "pieces": tokenizer.convert_ids_to_tokens(sample_ids),
        "padded": [padded["input_ids"], padded["attention_mask"]],
        "special_ids": {key: getattr(tokenizer, key + "_id", None) for key in _SPECIAL_KEYS},
        "all_special_tokens": sorted(map(str, tokenizer.all_special_tokens)),
        "len": vocab_size,
        "sides": [tokenizer.padding_side, tokenizer.truncation_side, tokenizer.model_max_length],
    }


def compact_tokenizer_json(text: str) -> str:
    """``tokenizer.json``'s text without indentation and with BPE merges as ``"a b"`` strings where that is exact."""
    spec = json.loads(text)
    model = spec.get("model") or {}
    merges = model.get("merges")
    if model.get("type") == "BPE" and isinstance(merges, list) and all(
            isinstance(m, list) and len(m) == 2 and " " not in m[0] + m[1] for m in merges):
        model["merges"] = [f"{a} {b}" for a, b in merges]
    return json.dumps(spec, ensure_ascii=False, separators=(",", ":"))


def _same_behaviour(folder: Path, recipe: dict[str, Any], tokenizer: Any, expected: dict[str, Any]) -> bool:
    try:
        fast = _from_recipe(folder, recipe)
        return behaviour_of(fast) == expected and fast.get_vocab() == tokenizer.get_vocab()
    except Exception:
        return False


def write_recipe_if_equivalent(folder: Path, tokenizer: Any) -> bool:
    """Write ``folder``'s recipe when the fast tokenizer built from it behaves exactly like ``tokenizer``.

    The recipe points at the compact copy when that one passes the check too, else at ``tokenizer.json``.
    """
    source = folder / _TOKENIZER_FILE
    if not source.is_file():
        return False
    expected = behaviour_of(tokenizer)
    recipe = None
    try:
        atomic_write_text(folder / COMPACT_FILE, compact_tokenizer_json(source.read_text(encoding="utf-8")))
        compact = recipe_of(tokenizer, COMPACT_FILE)
        if _same_behaviour(folder, compact, tokenizer, expected):
            recipe = compact
    except (OSError, ValueError, UnicodeDecodeError):
        pass  # no compact copy: the plain file may still do
    if recipe is None:
        plain = recipe_of(tokenizer)
        if not _same_behaviour(folder, plain, tokenizer, expected):
            return False
        recipe = plain
    try:
        atomic_write_text(folder / RECIPE_FILE, json.dumps(recipe, indent=1))
    except OSError:
        return False  # a read-only cache keeps the slow load
    return True
