"""The resumable runner: modes, perspectives, resume after truncation and after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from factscope.datasets import load_cases
from factscope.edit.delta import WeightDelta
from factscope.evaluate.editors import named_editor, one_at_a_time, unedited
from factscope.evaluate.fixtures import random_delta_editor, tiny_counterfact_records, write_json
from factscope.evaluate.generation import GenerationConfig
from factscope.evaluate.runlog import CorruptRunError, RunConfigMismatch, RunLog, read_results
from factscope.evaluate.metrics import evaluate_case
from factscope.evaluate.runner import RunConfig, RunConfigError, load_run, run_evaluation
from factscope.evaluate.supplements import SupplementConfig, SupplementStore
from factscope.evaluate.text_metrics import Idf
from factscope.testing import same_weights, tiny_adapter, weights_snapshot

GEN = GenerationConfig(max_length=20)
pytestmark = pytest.mark.usefixtures("isolated_cache")
IDF = Idf.fit(["French is spoken in France", "football and basketball", "Paris is a city"])


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared, busy CPU torch's thread sync costs more than it gains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data(tmp_path):
    return write_json(tiny_counterfact_records(), tmp_path / "cf.json")


def _config(editor="random", **kw):
    base = dict(editor=editor, data="cf.json", format="counterfact", n=None, generation=True,
                generation_config=GEN.to_dict(), supplement=SupplementConfig(generation=GEN, r_spec_k=3).to_dict())  # fmt: skip
    base.update(kw)
    return RunConfig(**base)


def _run(adapter, data, out, editor, editor_name="random", **kw):
    cases = load_cases(data)
    return run_evaluation(adapter, cases, editor, _config(editor_name, **kw), out, idf=IDF, progress=False)


def _strip_timing(records):
    return sorted(
        (json.dumps({k: v for k, v in r.items() if k not in ("edit_seconds", "eval_seconds")}, sort_keys=True) for r in records)
    )


def test_single_mode_edits_evaluates_and_restores(tmp_path, data):
    adapter = tiny_adapter("llama")
    before = weights_snapshot(adapter)
    result = _run(adapter, data, tmp_path / "run", random_delta_editor(scale=2.0))
    assert (result.total, result.new, result.resumed) == (6, 6, False)
    assert same_weights(adapter, before)  # bit-exact revert
    manifest, records = load_run(tmp_path / "run")
    assert manifest["config"]["editor"] == "random" and len(manifest["case_ids"]) == 6
    assert [r["index"] for r in records] == list(range(6))
    assert all(r["error"] is None and r["metrics"]["fluency"] is not None for r in records)
    base = _run(adapter, data, tmp_path / "base", unedited, editor_name="none")
    _, base_records = load_run(tmp_path / "base")
    changed = [a["metrics"]["efficacy_magnitude"] != b["metrics"]["efficacy_magnitude"] for a, b in zip(records, base_records)]
    assert all(changed) and base.new == 6
    assert _run(adapter, data, tmp_path / "run", random_delta_editor(scale=2.0)).new == 0  # complete: nothing redone


def test_resume_after_truncated_line_equals_fresh_run(tmp_path, data):
    adapter = tiny_adapter("gpt2")
    editor = random_delta_editor()
    _run(adapter, data, tmp_path / "fresh", editor)
    fresh = load_run(tmp_path / "fresh")[1]
    _run(adapter, data, tmp_path / "cut", editor)
    path = tmp_path / "cut" / "results.jsonl"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][:25])  # 3 lines + a cut-off 4th
    assert len(read_results(path)) == 3
    result = _run(adapter, data, tmp_path / "cut", editor)
    assert result.resumed and result.new == 3
    resumed = read_results(path)
    assert [r["index"] for r in resumed] == list(range(6))  # nothing lost, nothing twice
    assert _strip_timing(resumed) == _strip_timing(fresh)


def test_damaged_middle_line_is_an_error(tmp_path, data):
    adapter = tiny_adapter("gpt2")
    _run(adapter, data, tmp_path / "run", unedited, editor_name="none", n=3)
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
    with pytest.raises(CorruptRunError, match="not valid JSON"):
        RunLog(tmp_path / "run").done()


def test_refuses_to_resume_with_another_config(tmp_path, data):
    adapter = tiny_adapter("gpt2")
    _run(adapter, data, tmp_path / "run", unedited, editor_name="none", generation=False)
    with pytest.raises(RunConfigMismatch, match="generation"):
        _run(adapter, data, tmp_path / "run", unedited, editor_name="none", generation=True)
    cases = load_cases(data)
    with pytest.raises(RunConfigMismatch, match="cases differ"):
        run_evaluation(adapter, cases[:4], unedited, _config(editor="none", generation=False), tmp_path / "run", progress=False)


def test_batch_mode_edits_each_chunk_at_once(tmp_path, data):
    adapter = tiny_adapter("qwen2")
    calls = []
    inner = random_delta_editor()

    def editor(a, requests):
        calls.append([r.case_id for r in requests])
        return inner(a, requests)

    _run(adapter, data, tmp_path / "run", editor, mode="batch", batch_size=4, generation=False)
    assert calls == [[100, 101, 102, 103], [104, 105]]
    assert len(list((tmp_path / "run" / "deltas" / "entity").glob("batch-*.safetensors"))) == 2
    records = load_run(tmp_path / "run")[1]
    assert len(records) == 6 and all(r["error"] is None for r in records)
    # case 0 was evaluated with the whole first chunk's edit applied
    cases = load_cases(data)
    store = SupplementStore(adapter, cases, dataset_key="cf.json", config=SupplementConfig(generation=GEN, r_spec_k=3), progress=False)
    sup = store.get(cases[:1])[100]
    delta = WeightDelta.load(tmp_path / "run" / "deltas" / "entity" / "batch-000000-000004.safetensors")
    with delta.applied(adapter):
        expected = evaluate_case(adapter, cases[0], sup)["metrics"]
    assert records[0]["metrics"] == expected


def test_batch_mode_checkpoints_value_chunks(tmp_path, data):
    adapter = tiny_adapter("llama")
    memit = named_editor("memit", layers=[1, 2], context_lengths=[[3, 1]], v_steps=2, mom2_n_tokens=64, value_chunk=2)
    _run(adapter, data, tmp_path / "run", memit, editor_name="memit", mode="batch", batch_size=4, generation=False)
    values = tmp_path / "run" / "deltas" / "entity" / "values"
    assert len(list(values.glob("values-*.safetensors"))) == 3  # chunks of 2 + 2, then 2


def test_grouped_single_edits_match_one_at_a_time(tmp_path, data):
    adapter = tiny_adapter("llama")
    rome = named_editor("rome", context_lengths=[[3, 1]], v_steps=3, mom2_n_tokens=64)
    together, real_each = [], rome.edit_each
    rome.edit_each = lambda a, requests: (together.append(len(requests)), real_each(a, requests))[1]
    cases = load_cases(data)
    runs = {}
    for group in (1, 4):
        config = _config("rome", generation=False)
        run_evaluation(adapter, cases, rome, config, tmp_path / f"g{group}", idf=IDF, progress=False, group=group)
        runs[group] = sorted(load_run(tmp_path / f"g{group}")[1], key=lambda r: r["index"])
    assert len(runs[1]) == len(runs[4]) == len(cases) == 6
    assert together == [4, 2]  # group 1 edits one at a time; group 4 computes 4 + 2 edits together
    for one, grouped in zip(runs[1], runs[4]):
        assert grouped["error"] is None and one["index"] == grouped["index"]
        for name, value in one["metrics"].items():
            expected = value if value is None else pytest.approx(value, rel=1e-3, abs=1e-4)
            assert grouped["metrics"][name] == expected, name
        assert grouped["metrics"] != {}


def test_sequential_mode_accumulates_and_resumes_from_saved_deltas(tmp_path, data):
    adapter = tiny_adapter("llama")
    before = weights_snapshot(adapter)
    seen_weights = []
    inner = random_delta_editor()

    def editor(a, requests):
        seen_weights.append(a.weight("mlp_key", 1).matrix.detach().clone())
        return inner(a, requests)

    _run(adapter, data, tmp_path / "run", editor, mode="sequential", generation=False)
    assert len(seen_weights) == 6
    assert not torch.equal(seen_weights[0], seen_weights[1])  # the second edit saw the first
    assert same_weights(adapter, before)
    path = tmp_path / "run" / "results.jsonl"
    full = read_results(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in full[:2]))
    seen_weights.clear()
    _run(adapter, data, tmp_path / "run", editor, mode="sequential", generation=False)
    assert seen_weights == []  # all six deltas were loaded from disk
    assert _strip_timing(read_results(path)) == _strip_timing(full)


def test_both_perspectives_write_a_line_each(tmp_path, data):
    adapter = tiny_adapter("gemma")
    requests_seen = []
    inner = random_delta_editor()

    def editor(a, requests):
        requests_seen.append([(r.prompt, r.target_new) for r in requests])
        return inner(a, requests)

    _run(adapter, data, tmp_path / "run", one_at_a_time(editor), perspective="both", generation=False, n=None)
    records = load_run(tmp_path / "run")[1]
    assert sorted((r["perspective"], r["index"]) for r in records) == sorted((p, i) for p in ("entity", "relation") for i in range(6))
    relation_calls = [c for c in requests_seen if c[0][0].startswith("The relation between")]
    assert len(relation_calls) == 12  # add and remove, one at a time, per case
    assert relation_calls[0][0] == ("The relation between {} and English is", "native language")
    assert relation_calls[1][0] == ("The relation between {} and French is", "None")
    rel = [r for r in records if r["perspective"] == "relation"]
    assert all(r["metrics"]["relation_reliability"] is not None for r in rel)


def test_failed_edit_is_recorded_not_retried(tmp_path, data):
    adapter = tiny_adapter("gpt2")

    def editor(a, requests):
        if requests[0].case_id == 102:
            raise ValueError("cannot edit this one")
        return random_delta_editor()(a, requests)

    _run(adapter, data, tmp_path / "run", editor, generation=False)
    records = load_run(tmp_path / "run")[1]
    bad = [r for r in records if r["error"]]
    assert [r["case_id"] for r in bad] == [102] and "cannot edit this one" in bad[0]["error"]


def test_config_errors(tmp_path, data):
    adapter = tiny_adapter("gpt2")
    flat = [{"case_id": 1, "prompt": "Toyota is in", "subject": "Toyota", "target_new": "Italy", "ground_truth": "Japan"}]
    cases = load_cases(write_json(flat, tmp_path / "flat.json"))
    with pytest.raises(RunConfigError, match="relation perspective needs a relation_id"):
        run_evaluation(adapter, cases, unedited, _config(perspective="relation"), tmp_path / "x", progress=False)
    with pytest.raises(RunConfigError, match="Unknown mode"):
        _run(adapter, data, tmp_path / "y", unedited, mode="parallel")
    with pytest.raises(Exception, match="Unknown editor"):
        named_editor("no-such-editor")


_CHILD = textwrap.dedent(
    """
    import sys
    import torch
    from factscope.datasets import load_cases
    from factscope.evaluate.fixtures import random_delta_editor
    from factscope.evaluate.generation import GenerationConfig
    from factscope.evaluate.runner import RunConfig, run_evaluation
    from factscope.evaluate.supplements import SupplementConfig
    from factscope.evaluate.text_metrics import Idf
    from factscope.testing import same_weights, tiny_adapter, weights_snapshot

    torch.set_num_threads(1)
    data, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    gen = GenerationConfig(max_length=20)
    config = RunConfig(editor="random", data="cf.json", format="counterfact", generation=True,
                       generation_config=gen.to_dict(), supplement=SupplementConfig(generation=gen, r_spec_k=3).to_dict())
    idf = Idf.fit(["French is spoken in France", "football and basketball", "Paris is a city"])
    run_evaluation(tiny_adapter("llama"), load_cases(data), random_delta_editor(delay=delay), config, out, idf=idf, progress=False)
    """
)


def test_kill_mid_run_then_resume(tmp_path, data):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = tmp_path / "killed"
    env = {**os.environ, "FACTSCOPE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(out), "1.0"], env=env)
    results = out / "results.jsonl"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if results.is_file() and len(read_results(results)) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"child exited early with {proc.returncode}")
            time.sleep(0.1)
        else:
            pytest.fail("child wrote no results in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = len(read_results(results))
    assert 2 <= done_before < 6
    subprocess.run([sys.executable, str(script), str(data), str(out), "0"], env=env, check=True, timeout=600)
    resumed = read_results(results)
    assert sorted(r["index"] for r in resumed) == list(range(6))
    _run(tiny_adapter("llama"), data, tmp_path / "fresh", random_delta_editor())  # uninterrupted, in-process
    assert _strip_timing(resumed) == _strip_timing(read_results(tmp_path / "fresh" / "results.jsonl"))


def test_evaluate_cli_end_to_end_and_resume(tmp_path, data):
    from typer.testing import CliRunner

    from factscope.cli import app
    from factscope.testing import tiny_model

    model, tokenizer = tiny_model("llama")
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    args = ["evaluate", "--editor", "none", "--data", str(data), "--model", str(tmp_path / "model"),
            "--out", str(tmp_path / "run"), "--no-generation", "--n", "4"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "started; 4 new line(s)" in first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "resumed; 0 new line(s)" in again.output
    changed = CliRunner().invoke(app, [*args[:-1], "5"])
    assert changed.exit_code == 2 and "another configuration" in changed.output
    summary = CliRunner().invoke(app, ["summarize", str(tmp_path / "run"), "--out", str(tmp_path / "sum")])
    assert summary.exit_code == 0 and "| none | 4 |" in summary.output
