"""The cached conversions' tokenizer loads from tokenizer.json through a verified recipe, and behaves the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factscope.models import load_model, loading
from factscope.models.adapter import tokenizer_identity
from factscope.models.fast_tokenizer import (
    COMPACT_FILE,
    RECIPE_FILE,
    compact_tokenizer_json,
    behaviour_of,
    load_cached_tokenizer,
    recipe_of,
    write_recipe_if_equivalent,
)
from factscope.testing import fake_gguf_converter, tiny_tokenizer


def _saved_gemma_style_tokenizer(folder: Path) -> None:
    """A tiny tokenizer of a class with its own ``__init__`` and a left padding side (as GemmaTokenizer)."""
    from transformers import AutoTokenizer, GemmaTokenizer

    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:  # transformers 4: GemmaTokenizer is the SentencePiece class
        pytest.skip("this transformers builds GemmaTokenizer from SentencePiece (a tokenizers-backed class is needed)")
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in "▁abcdehilnorstuw":
        vocab.setdefault(ch, len(vocab))
    for piece in ("▁t", "he", "▁the", "▁w", "or", "ld"):
        vocab[piece] = len(vocab)
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "w"), ("o", "r"), ("l", "d")]
    GemmaTokenizer(vocab=vocab, merges=merges).save_pretrained(folder)
    assert type(AutoTokenizer.from_pretrained(folder)).__name__ == "GemmaTokenizer"


def test_recipe_tokenizer_behaves_like_the_class_it_replaces(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    _saved_gemma_style_tokenizer(tmp_path)
    slow = AutoTokenizer.from_pretrained(tmp_path)
    assert slow.padding_side == "left"
    assert write_recipe_if_equivalent(tmp_path, slow)
    fast = load_cached_tokenizer(tmp_path)
    assert type(fast).__name__ != "GemmaTokenizer"  # the generic class, loaded from tokenizer.json in Rust
    assert fast.padding_side == "left"
    assert behaviour_of(fast) == behaviour_of(slow)
    assert tokenizer_identity(fast) == tokenizer_identity(slow)
    assert fast("the world")["input_ids"] == slow("the world")["input_ids"]


def test_a_recipe_that_changes_behaviour_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    from factscope.models import fast_tokenizer

    _saved_gemma_style_tokenizer(tmp_path)
    slow = AutoTokenizer.from_pretrained(tmp_path)

    def wrong_side(tokenizer, *file):  # a recipe that forgets the class's left padding
        return {**recipe_of(tokenizer, *file), "padding_side": "right"}

    monkeypatch.setattr(fast_tokenizer, "recipe_of", wrong_side)
    assert not write_recipe_if_equivalent(tmp_path, slow)
    assert not (tmp_path / RECIPE_FILE).exists()
    assert type(load_cached_tokenizer(tmp_path)).__name__ == "GemmaTokenizer"


@pytest.mark.parametrize("damage", ["not json", json.dumps({"version": 999}), json.dumps({"version": 1})])
def test_a_damaged_recipe_falls_back_to_the_slow_load(tmp_path: Path, damage: str) -> None:
    _saved_gemma_style_tokenizer(tmp_path)
    (tmp_path / RECIPE_FILE).write_text(damage)
    tokenizer = load_cached_tokenizer(tmp_path)
    assert type(tokenizer).__name__ == "GemmaTokenizer" and tokenizer.padding_side == "left"


def test_cached_conversion_gets_a_recipe_and_keeps_its_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cache" / "models" / "bundled"
    builds: list[Path] = []
    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "bundled_gguf_path", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(loading, "_bundled_cache_folder", lambda _g: folder)
    monkeypatch.setattr(loading, "_convert_gguf", fake_gguf_converter("llama", builds))
    first = load_model()
    assert (folder / RECIPE_FILE).is_file()  # written once, after verification
    second = load_model()
    assert second.adapter.fingerprint == first.adapter.fingerprint
    assert tokenizer_identity(second.tokenizer) == tokenizer_identity(first.tokenizer)
    memo = json.loads((tmp_path / "cache" / "tokenizer-identities.json").read_text())
    assert memo  # the identity is memoised by the tokenizer files


def test_plain_fast_tokenizer_round_trips(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    tok.save_pretrained(tmp_path)
    assert write_recipe_if_equivalent(tmp_path, tok)
    assert behaviour_of(load_cached_tokenizer(tmp_path)) == behaviour_of(tok)


def test_recipe_reads_the_compact_copy_with_string_merges(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    _saved_gemma_style_tokenizer(tmp_path)
    slow = AutoTokenizer.from_pretrained(tmp_path)
    assert write_recipe_if_equivalent(tmp_path, slow)
    recipe = json.loads((tmp_path / RECIPE_FILE).read_text())
    assert recipe["tokenizer_file"] == COMPACT_FILE
    compact = json.loads((tmp_path / COMPACT_FILE).read_text(encoding="utf-8"))
    assert compact["model"]["merges"][:3] == ["▁ t", "h e", "▁t he"]
    assert behaviour_of(load_cached_tokenizer(tmp_path)) == behaviour_of(slow)


def test_merges_with_a_space_stay_pairs() -> None:
    spec = {"model": {"type": "BPE", "vocab": {}, "merges": [["a b", "c"], ["d", "e"]]}}
    assert json.loads(compact_tokenizer_json(json.dumps(spec)))["model"]["merges"] == [["a b", "c"], ["d", "e"]]
    spec["model"]["merges"] = [["a", "c"], ["d", "e"]]
    assert json.loads(compact_tokenizer_json(json.dumps(spec, indent=2)))["model"]["merges"] == ["a c", "d e"]


def test_an_older_recipe_is_rewritten_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cache" / "models" / "bundled"
    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "bundled_gguf_path", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(loading, "_bundled_cache_folder", lambda _g: folder)
    monkeypatch.setattr(loading, "_convert_gguf", fake_gguf_converter("llama", []))
    load_model()
    old = {**json.loads((folder / RECIPE_FILE).read_text()), "version": 1}
    del old["tokenizer_file"]
    (folder / RECIPE_FILE).write_text(json.dumps(old))
    load_model()
    assert json.loads((folder / RECIPE_FILE).read_text())["version"] == 2
