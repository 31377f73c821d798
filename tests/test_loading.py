"""Loading: bad names fail clearly, a corrupt cache is rebuilt, and the bundled model works."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from factscope.models import ModelLoadError, load_model
from factscope.models import loading
from factscope.testing import fake_gguf_converter, tiny_model


def test_missing_local_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))


def test_folder_without_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_device_and_device_map_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either device or device_map"):
        load_model("x", device="cpu", device_map="auto")


def test_bad_dtype() -> None:
    with pytest.raises(ValueError, match="Unknown dtype"):
        load_model(None, dtype="float7")


def test_local_folder_loads(tmp_path: Path) -> None:
    model, tok = tiny_model("gpt2")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    model2, tok2, adapter = loaded
    assert adapter.n_layers == 4 and adapter.spec.name == "gpt2"
    assert not model2.training


def test_corrupt_bundled_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    folder = tmp_path / "bundled"
    builds = []

    monkeypatch.setattr(loading, "bundled_gguf_path", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(loading, "_bundled_cache_folder", lambda _g: folder)
    monkeypatch.setattr(loading, "_convert_gguf", fake_gguf_converter("llama", builds))
    load_model()
    assert len(builds) == 1
    load_model()  # served from the cache
    assert len(builds) == 1
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="damaged"):
        loaded = load_model()
    assert len(builds) == 2 and loaded.adapter.n_layers == 4
    (folder / loading._COMPLETE_MARKER).write_text("{}")  # a conversion by an older factscope: no weights hash
    with pytest.warns(UserWarning, match="unverifiable"):
        load_model()
    assert len(builds) == 3


@pytest.mark.bundled
def test_bundled_model_predicts_french(bundled) -> None:
    from factscope.scoring import top_k_next_tokens

    top = top_k_next_tokens(bundled, "Danielle Darrieux's mother tongue is", k=3)
    assert top[0][0] == " French"
    assert bundled.n_layers == 30 and bundled.d_model == 576 and bundled.d_mlp == 1536


@pytest.mark.bundled
def test_bundled_model_loads_fast_from_cache(bundled) -> None:
    # The session fixture already built the cache; a reload reads safetensors only.
    start = time.perf_counter()
    load_model()
    elapsed = time.perf_counter() - start
    print(f"bundled reload: {elapsed:.2f}s")
    assert (loading._bundled_cache_folder(loading.bundled_gguf_path()) / "model.safetensors").is_file()


def _gguf_with_flag(path: Path, adds_bos: bool | None) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    if adds_bos is not None:
        writer.add_add_bos_token(adds_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("flag", [False, True])
def test_a_converted_tokenizer_adds_bos_as_the_gguf_says(tmp_path: Path, flag: bool) -> None:
    """transformers 4.56 always adds BOS to a GGUF llama tokenizer; the file's flag wins."""
    from types import SimpleNamespace

    gguf = _gguf_with_flag(tmp_path / "m.gguf", flag)
    assert loading.gguf_adds_bos(gguf) is flag
    tokenizer = SimpleNamespace(add_bos_token=not flag)
    loading._match_gguf_bos(tokenizer, gguf)
    assert tokenizer.add_bos_token is flag
    silent = _gguf_with_flag(tmp_path / "silent.gguf", None)
    assert loading.gguf_adds_bos(silent) is None
    untouched = SimpleNamespace(add_bos_token=True)
    loading._match_gguf_bos(untouched, silent)
    assert untouched.add_bos_token is True


def test_a_conversion_leaves_its_weights_hash_memoised_at_the_final_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         isolated_cache: Path) -> None:
    """The weights are hashed in the temporary folder; after the rename the next load must not read them again."""
    import hashlib
    import json

    import transformers

    from factscope.models.file_hash import file_identity

    model, tokenizer = tiny_model("llama")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: model)
    folder = isolated_cache / "models" / "tiny"
    loading._convert_gguf(_gguf_with_flag(tmp_path / "m.gguf", False), folder)
    weights = folder / "model.safetensors"
    memo = json.loads(loading._hash_memo().read_text())
    assert memo[file_identity(weights)] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert loading._conversion_problem(folder) is None
