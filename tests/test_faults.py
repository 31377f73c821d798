"""Fault injection: damaged deltas, originals and caches are detected and recovered; concurrent
writers never tear a cache; out-of-order reverts raise; deltas travel between paths and copies;
a killed conversion leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from factscope.cli import app
from factscope.edit.delta import DeltaEntry, DeltaError, WeightDelta
from factscope.io_utils import HASH_KEY, IntegrityError, load_tensors, read_json_cache, save_tensors, write_json_cache
from factscope.models import load_model
from factscope.models import loading
from factscope.testing import fake_gguf_converter, tiny_adapter, tiny_model


def _flip(path: Path, offsets: list[int], mask: int = 0x40) -> None:
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= mask
    path.write_bytes(bytes(data))


def _random_delta(adapter, layer: int = 1, scale: float = 0.1, seed: int = 0) -> WeightDelta:
    out_dim, in_dim = adapter.mlp_down_weight(layer).matrix.shape
    g = torch.Generator().manual_seed(seed)
    return WeightDelta([DeltaEntry("mlp_key", layer, torch.randn(out_dim, 1, generator=g) * scale,
                                   torch.randn(in_dim, 1, generator=g))],
                       {"editor": "test", "model_fingerprint": adapter.fingerprint})


@pytest.fixture
def saved_llama(tmp_path: Path) -> Path:
    model, tok = tiny_model("llama")
    model.save_pretrained(tmp_path / "T")
    tok.save_pretrained(tmp_path / "T")
    return tmp_path / "T"


# ---------------------------------------------------------------- deltas and originals
def test_flipped_delta_bytes_are_refused_on_load_and_by_check_delta(tmp_path: Path, isolated_cache: Path) -> None:
    adapter = tiny_adapter("gpt2")
    path = _random_delta(adapter).save(tmp_path / "d.safetensors")
    assert WeightDelta.load(path).verified
    _flip(path, [-4 * i for i in range(1, 51)])  # 50 data bytes, in the tensors' exponents
    with pytest.raises(DeltaError, match=r"d\.safetensors is damaged"):
        WeightDelta.load(path)
    adapter.model.save_pretrained(tmp_path / "m")
    adapter.tokenizer.save_pretrained(tmp_path / "m")
    result = CliRunner().invoke(app, ["check-delta", "--delta", str(path), "-m", str(tmp_path / "m")])
    assert result.exit_code == 2 and "damaged" in result.output and "restored" not in result.output


def test_check_delta_reports_a_verified_hash(tmp_path: Path, saved_llama: Path, isolated_cache: Path) -> None:
    adapter = load_model(str(saved_llama)).adapter
    path = _random_delta(adapter).save(tmp_path / "d.safetensors")
    result = CliRunner().invoke(app, ["check-delta", "--delta", str(path), "-m", str(saved_llama)])
    assert result.exit_code == 0, result.output
    assert "content hash: verified" in result.output and "restored bit-exactly" in result.output


def test_damaged_originals_are_refused_by_revert(tmp_path: Path, saved_llama: Path, isolated_cache: Path) -> None:
    adapter = load_model(str(saved_llama)).adapter
    delta = _random_delta(adapter).save(tmp_path / "d.safetensors")
    runner = CliRunner()
    applied = runner.invoke(app, ["apply", "--delta", str(delta), "--out", str(tmp_path / "edited"), "-m", str(saved_llama)])
    assert applied.exit_code == 0, applied.output
    originals = tmp_path / "edited" / "factscope-originals.safetensors"
    assert HASH_KEY in load_tensors(originals)[1]
    _flip(originals, [-8, -100, -1000])
    result = runner.invoke(app, ["revert", "-m", str(tmp_path / "edited"), "--out", str(tmp_path / "restored")])
    assert result.exit_code == 2 and "factscope-originals.safetensors is damaged" in result.output
    assert "original model written" not in result.output and not (tmp_path / "restored").exists()


def test_load_tensors_detects_a_single_flipped_mantissa_bit(tmp_path: Path) -> None:
    path = save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(64, dtype=torch.float64)})
    _flip(path, [-20], mask=0x01)
    with pytest.raises(IntegrityError, match="t.safetensors is damaged"):
        load_tensors(path)


# ---------------------------------------------------------------- out-of-order revert
def test_out_of_order_revert_raises_and_in_order_restores() -> None:
    adapter = tiny_adapter("llama")
    w0 = adapter.mlp_down_weight(1).parameter.detach().clone()
    d1, d2 = _random_delta(adapter, seed=1), _random_delta(adapter, seed=2)
    d1.apply(adapter)
    d2.apply(adapter)
    with pytest.raises(DeltaError, match="Out-of-order revert"):
        d1.revert(adapter)
    assert d1.is_applied  # nothing was changed by the refused revert
    d2.revert(adapter)
    d1.revert(adapter)
    assert torch.equal(adapter.mlp_down_weight(1).parameter, w0)


# ---------------------------------------------------------------- deltas travel
def test_delta_made_through_one_path_applies_through_another_and_on_a_copy(tmp_path: Path, saved_llama: Path,
                                                                           isolated_cache: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    made = load_model("./T").adapter
    delta = _random_delta(made).save(tmp_path / "d.safetensors")
    shutil.copytree(saved_llama, tmp_path / "copy")
    other_cache = tmp_path / "other-cache"
    runner = CliRunner()
    for i, spec in enumerate([str(saved_llama) + "/", str(saved_llama), "T", str(tmp_path / "copy")]):
        if i == 3:
            monkeypatch.setenv("FACTSCOPE_CACHE", str(other_cache))  # a colleague's machine: another cache
        result = runner.invoke(app, ["apply", "--delta", str(delta), "--out", str(tmp_path / f"out{i}"), "-m", spec])
        assert result.exit_code == 0, (spec, result.output)  # --strict (the default) compares fingerprints
    assert load_model(str(tmp_path / "copy")).adapter.fingerprint == made.fingerprint
    assert tiny_adapter("llama").fingerprint == made.fingerprint  # the same model built in memory


def test_fingerprint_changes_with_weights_tokenizer_or_config(saved_llama: Path) -> None:
    base = tiny_adapter("llama")
    assert tiny_adapter("llama", seed=1).fingerprint != base.fingerprint
    assert tiny_adapter("llama", tokenizer_kind="metaspace").fingerprint != base.fingerprint
    assert tiny_adapter("llama", n_layers=3).fingerprint != base.fingerprint
    edited = tiny_adapter("llama")
    _random_delta(edited).apply(edited)
    assert edited.fingerprint == base.fingerprint  # computed once, at construction


# ---------------------------------------------------------------- caches
def test_damaged_covariance_cache_is_moved_aside_and_recomputed(tmp_path: Path) -> None:
    from factscope.edit.covariance import key_second_moment

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": "The capital of France is Paris and of Italy Rome. " * 4})
                                for _ in range(6)))
    adapter = tiny_adapter("llama")
    kwargs = dict(corpus=corpus, n_tokens=150, seq_len=16, root=tmp_path / "stats", progress=False)
    good = key_second_moment(adapter, 2, **kwargs)
    path = next((tmp_path / "stats").rglob("mlp_key.2-*.safetensors"))
    _flip(path, [-3], mask=0x7F)  # an exponent byte of the last value
    with pytest.warns(UserWarning, match=rf"{path.name}.*moved it aside"):
        again = key_second_moment(adapter, 2, **kwargs)
    assert torch.equal(again, good)
    assert path.with_name(path.name + ".damaged").is_file() and load_tensors(path)[0]  # replaced by a valid file


def test_damaged_contexts_cache_is_recomputed(tmp_path: Path) -> None:
    from factscope.edit.contexts import context_templates

    adapter = tiny_adapter("gpt2")
    good = context_templates(adapter, [(3, 2)], root=tmp_path)
    path = next(tmp_path.glob("*.json"))
    path.write_text(path.read_text().replace("{}", "{} x", 1))  # valid JSON, wrong content
    with pytest.warns(UserWarning, match="contexts cache"):
        assert context_templates(adapter, [(3, 2)], root=tmp_path) == good
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.warns(UserWarning, match="contexts cache"):
        assert context_templates(adapter, [(3, 2)], root=tmp_path) == good
    assert read_json_cache(path) == good


def test_damaged_supplements_cache_is_rebuilt(tmp_path: Path) -> None:
    from factscope.datasets import load_cases
    from factscope.evaluate.fixtures import tiny_counterfact_records, write_json
    from factscope.evaluate.generation import GenerationConfig
    from factscope.evaluate.supplements import SupplementConfig, SupplementStore

    adapter = tiny_adapter("llama")
    cases = load_cases(write_json(tiny_counterfact_records(), tmp_path / "c.json"))
    cfg = SupplementConfig(generation=GenerationConfig(max_length=20), n_reference=1)
    store = SupplementStore(adapter, cases, dataset_key="t", config=cfg, cache_root=tmp_path / "cache", progress=False)
    good = {k: v.to_dict() for k, v in store.get(cases[:2], references=False).items()}
    data = json.loads(store.path.read_text())
    first = next(iter(data["payload"]["cases"]))
    data["payload"]["cases"][first]["r_specificity_dropped"] = 99  # silently wrong, still valid JSON
    store.path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="supplements cache"):
        again = SupplementStore(adapter, cases, dataset_key="t", config=cfg, cache_root=tmp_path / "cache", progress=False)
    assert {k: v.to_dict() for k, v in again.get(cases[:2], references=False).items()} == good


def test_damaged_idf_cache_is_refitted(tmp_path: Path, isolated_cache: Path) -> None:
    from factscope.evaluate.text_metrics import load_idf

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"title": str(i), "text": f"word{i} " * 25 + "common words here " * 3})
                                for i in range(5)))
    good = load_idf(corpus)
    cached = next((isolated_cache / "idf").glob("*.json"))
    data = json.loads(cached.read_text())
    data["payload"]["idf"]["common"] = 99.0  # a silently shifted value
    cached.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="IDF cache"):
        again = load_idf(corpus)
    assert again.values == good.values
    cached.write_text('{"idf": {"a": NaN}}')  # a cache from before hashes were recorded
    with pytest.warns(UserWarning, match="IDF cache"):
        assert load_idf(corpus).values == good.values


def test_damaged_converted_model_weights_are_reconverted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         isolated_cache: Path) -> None:
    folder = isolated_cache / "models" / "bundled"
    builds: list[Path] = []

    monkeypatch.setattr(loading, "bundled_gguf_path", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(loading, "_bundled_cache_folder", lambda _g: folder)
    monkeypatch.setattr(loading, "_convert_gguf", fake_gguf_converter("llama", builds))
    good = load_model().adapter.fingerprint
    _flip(folder / "model.safetensors", [-2, -6, -10])  # exponent bits: NaN/huge weights if trusted
    with pytest.warns(UserWarning, match=r"model\.safetensors does not match the SHA-256"):
        again = load_model().adapter
    assert len(builds) == 2 and again.fingerprint == good
    assert torch.isfinite(again.mlp_down_weight(0).parameter).all()


# ---------------------------------------------------------------- concurrency and leftovers
_WRITER = textwrap.dedent("""
    import sys
    from factscope.io_utils import write_json_cache
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(n):
        write_json_cache(path, {"writer": tag, "i": i, "blob": [tag * 50] * 40})
""")


def test_two_processes_writing_one_cache_1000_times_never_tear_it(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "cache.json"
    write_json_cache(path, {"writer": "seed", "i": -1, "blob": []})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, "500"], env=env,
                                stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    reads = 0
    while any(w.poll() is None for w in writers):
        payload = read_json_cache(path)  # a torn or missing file would warn and return None
        assert payload is not None and payload["writer"] in ("seed", "a", "b")
        reads += 1
    for w in writers:
        assert w.wait() == 0, w.stderr.read()
    assert read_json_cache(path)["i"] == 499 and reads > 0
    assert [p.name for p in path.parent.iterdir()] == ["cache.json"]  # no temporary files left


_HOLDER = textwrap.dedent("""
    import sys, time
    from factscope.io_utils import FolderLock
    FolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_second_evaluate_on_the_same_out_exits_cleanly(tmp_path: Path, saved_llama: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(app, ["evaluate", "--editor", "none", "--out", str(out), "--no-generation",
                                          "--n", "1", "-m", str(saved_llama)])
        assert result.exit_code == 2 and "is in use by process" in result.output, result.output
        assert not (out / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()


_KILLED_CONVERSION = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from factscope.io_utils import locked_temp_dir
    folder = Path(sys.argv[1])
    with locked_temp_dir(folder.parent, folder.name + ".") as tmp:
        (tmp / "model.safetensors").write_bytes(b"x" * 1_000_000)
        print(tmp, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_killed_conversion_leaves_nothing_after_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             isolated_cache: Path) -> None:
    folder = isolated_cache / "models" / "bundled"
    folder.parent.mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", _KILLED_CONVERSION, str(folder)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    leftover = Path(killed.stdout.strip())
    assert leftover.is_dir() and leftover.name.startswith("bundled.")

    monkeypatch.setattr(loading, "bundled_gguf_path", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(loading, "_bundled_cache_folder", lambda _g: folder)
    monkeypatch.setattr(loading, "_convert_gguf", fake_gguf_converter("gpt2"))
    load_model()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["bundled"]


def test_a_live_conversion_is_not_cleaned_up(tmp_path: Path) -> None:
    from factscope.io_utils import locked_temp_dir, remove_stale_temp_dirs

    with locked_temp_dir(tmp_path, "m.") as tmp:
        assert remove_stale_temp_dirs(tmp_path, "m.") == [] and tmp.is_dir()
    assert remove_stale_temp_dirs(tmp_path, "m.") == [tmp]  # not renamed into place, its creator gone: stale
    (tmp_path / "m.old").mkdir()  # no lock file (older factscope): removed only once it is old
    assert remove_stale_temp_dirs(tmp_path, "m.", older_than_s=60) == []
    os.utime(tmp_path / "m.old", (time.time() - 120, time.time() - 120))
    assert remove_stale_temp_dirs(tmp_path, "m.", older_than_s=60) == [tmp_path / "m.old"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_input_longer_than_the_context_is_a_clear_error(arch: str) -> None:
    from factscope.scoring import InputTooLongError, next_token_logprobs, target_nll

    adapter = tiny_adapter(arch)
    long = "The capital of France is Paris. " * 30
    with pytest.raises(InputTooLongError, match="longer than the 128 tokens"):
        next_token_logprobs(adapter, ["short", long])
    with pytest.raises(InputTooLongError, match="longer than the 128 tokens"):
        target_nll(adapter, [long], ["Paris"])
