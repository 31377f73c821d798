"""Key covariance: correct values, cache keys, corrupt-file recovery, resume after interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from factscope.edit import covariance as cov
from factscope.edit.cache_files import write_tagged
from factscope.edit.corpus import TextFileCorpus
from factscope.edit.covariance import StatKey, key_second_moment, key_second_moments
from factscope.hooks import Site, SiteTrace
from factscope.testing import tiny_adapter

TEXTS = [
    "The capital of France is Paris and the capital of Italy is Rome. " * 3,
    "Michael Jordan plays basketball. Lionel Messi plays football in Paris. " * 3,
    "Marie Curie was born in Warsaw, Poland. Albert Einstein worked in Berlin. " * 3,
    "Toyota is headquartered in Japan. Windows was developed by Microsoft. " * 3,
]


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"title": str(i), "text": t}) for i, t in enumerate(TEXTS * 3)))
    return path


@pytest.fixture
def adapter():
    return tiny_adapter("llama")


def _direct(adapter, path: Path, layer: int, n_tokens: int, seq_len: int = 16) -> torch.Tensor:
    keys = []
    for ids in TextFileCorpus(path).documents(adapter.tokenizer):
        for s in range(0, len(ids), seq_len):
            chunk = ids[s : s + seq_len]
            if len(chunk) < 2:
                continue
            with SiteTrace(adapter, read=[Site("mlp_key", layer)]) as tr:
                adapter.model(input_ids=torch.tensor([chunk]))
            keys.append(tr[Site("mlp_key", layer)][0].double())
    K = torch.cat(keys)[:n_tokens]
    return K.T @ K / n_tokens


def test_matches_direct_computation(adapter, corpus_file, tmp_path) -> None:
    C = key_second_moment(adapter, 2, corpus=corpus_file, n_tokens=300, seq_len=16, batch_size=3, root=tmp_path, progress=False)
    assert C.dtype == torch.float64
    torch.testing.assert_close(C, _direct(adapter, corpus_file, 2, 300), rtol=1e-5, atol=1e-8)


def test_several_layers_in_one_pass_equal_single_layers(adapter, corpus_file, tmp_path) -> None:
    both = key_second_moments(adapter, [1, 3], corpus=corpus_file, n_tokens=200, seq_len=16, root=tmp_path / "a", progress=False)
    one = key_second_moment(adapter, 3, corpus=corpus_file, n_tokens=200, seq_len=16, root=tmp_path / "b", progress=False)
    torch.testing.assert_close(both[3], one)


def test_cache_key_names_what_produced_it(adapter, corpus_file, tmp_path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "Something else entirely. " * 40}))
    base = StatKey(adapter.fingerprint, "mlp_key", 2, TextFileCorpus(corpus_file).fingerprint, 300, "float64", 16)
    variants = [
        StatKey(adapter.fingerprint, "mlp_key", 2, TextFileCorpus(other).fingerprint, 300, "float64", 16),
        StatKey(adapter.fingerprint, "mlp_key", 3, base.corpus, 300, "float64", 16),
        StatKey(adapter.fingerprint, "mlp_key", 2, base.corpus, 301, "float64", 16),
        StatKey(adapter.fingerprint, "mlp_key", 2, base.corpus, 300, "float32", 16),
        StatKey("another-model", "mlp_key", 2, base.corpus, 300, "float64", 16),
    ]
    paths = {base.path(tmp_path)} | {v.path(tmp_path) for v in variants}
    assert len(paths) == 1 + len(variants)


def test_cached_value_is_reused(adapter, corpus_file, tmp_path, monkeypatch) -> None:
    first = key_second_moment(adapter, 2, corpus=corpus_file, n_tokens=150, seq_len=16, root=tmp_path, progress=False)
    monkeypatch.setattr(cov, "_compute", lambda *a, **k: pytest.fail("recomputed a cached statistic"))
    again = key_second_moment(adapter, 2, corpus=corpus_file, n_tokens=150, seq_len=16, root=tmp_path, progress=False)
    torch.testing.assert_close(first, again)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "wrong_key"])
def test_corrupt_cache_file_is_recomputed(adapter, corpus_file, tmp_path, damage) -> None:
    kwargs = dict(corpus=corpus_file, n_tokens=150, seq_len=16, root=tmp_path, progress=False)
    good = key_second_moment(adapter, 2, **kwargs)
    path = next(tmp_path.rglob("mlp_key.2-*.safetensors"))
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        write_tagged(path, {"mom2": torch.eye(good.shape[0], dtype=torch.float64)}, {"key": {"other": 1}, "count": 150})
    with pytest.warns(UserWarning):
        again = key_second_moment(adapter, 2, **kwargs)
    torch.testing.assert_close(again, good)
    torch.testing.assert_close(key_second_moment(adapter, 2, **kwargs), good)  # the rewritten file is valid


def test_interrupted_computation_resumes(adapter, corpus_file, tmp_path, monkeypatch) -> None:
    kwargs = dict(corpus=corpus_file, n_tokens=400, seq_len=16, batch_size=2, checkpoint_every=1, progress=False)
    expected = key_second_moment(adapter, 2, root=tmp_path / "ref", **kwargs)
    real = cov._file_batch
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(cov, "_file_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        key_second_moment(adapter, 2, root=tmp_path / "run", **kwargs)
    partial = list((tmp_path / "run").rglob("*.partial.safetensors"))
    assert len(partial) == 1
    seen = {"n": 0}

    def counting(*args, **kw):
        seen["n"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(cov, "_file_batch", counting)
    resumed = key_second_moment(adapter, 2, root=tmp_path / "run", **kwargs)
    torch.testing.assert_close(resumed, expected)
    total = -(-400 // 32) + 1  # batches of 2 rows x <=16 tokens, at least
    assert seen["n"] < total + 3 and seen["n"] > 0
    assert not list((tmp_path / "run").rglob("*.partial.safetensors"))


def test_generated_corpus_is_seeded_and_cached(adapter, tmp_path) -> None:
    a = key_second_moment(adapter, 1, n_tokens=120, seq_len=20, batch_size=4, root=tmp_path / "a", progress=False)
    b = key_second_moment(adapter, 1, n_tokens=120, seq_len=20, batch_size=4, root=tmp_path / "b", progress=False)
    torch.testing.assert_close(a, b)
    assert list((tmp_path / "a").rglob("mlp_key.1-generated-s0-*.safetensors"))


def test_too_small_corpus_and_bad_layer_raise(adapter, corpus_file, tmp_path) -> None:
    with pytest.raises(ValueError, match="tokens"):
        key_second_moment(adapter, 1, corpus=corpus_file, n_tokens=10**6, root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        key_second_moment(adapter, 9, corpus=corpus_file, n_tokens=10, root=tmp_path, progress=False)


def test_sampled_texts_fit_the_models_position_table(tmp_path) -> None:
    """seq_len longer than GPT-2's position table (128 here) is capped instead of indexing past it."""
    gpt2 = tiny_adapter("gpt2")
    assert gpt2.max_positions == 128
    with pytest.warns(UserWarning, match="below the key dimension"):
        C = key_second_moment(gpt2, 1, n_tokens=100, seq_len=400, batch_size=1, root=tmp_path, progress=False)
    assert torch.isfinite(C).all()
    assert list(tmp_path.rglob("*-ctx127.safetensors"))
