"""Shares of the cases (``--shard K/N``), part folders and their merge, in one process."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from factscope.cli import app
from factscope.evaluate.parts import all_records, merge_parts, part_folder
from factscope.evaluate.runlog import read_results
from factscope.parallel.ranks import Shard, ShardError, gpu_block, parse_shard, resolve_shard, shard_indices


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "cache"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def setup(saved_tiny_run_inputs):
    return saved_tiny_run_inputs


ROME = ["--editor", "rome", "--set", "v_steps=3", "--set", "mom2_n_tokens=64", "--set", "context_lengths=[[3,2]]"]


def _args(model, data, out, *extra):
    return ["evaluate", *ROME, "--data", str(data), "--model", str(model), "--out", str(out), "--no-generation", "--n", "6", *extra]


def _strip(records):
    return [json.dumps({k: v for k, v in r.items() if k not in ("edit_seconds", "eval_seconds")}, sort_keys=True) for r in records]


def test_parse_shard():
    assert parse_shard("1/3") == Shard(1, 3)
    assert parse_shard(" 0 / 1 ").whole
    for bad in ("3/2", "2/2", "1/0", "-1/2", "a/b", "1", "1/2/3"):
        with pytest.raises(ShardError):
            parse_shard(bad)


def test_resolve_shard_from_torchrun_env(monkeypatch):
    assert resolve_shard(None) == Shard()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert resolve_shard(None) == Shard(2, 4)
    with pytest.raises(ShardError, match="torchrun"):
        resolve_shard("0/2")


@pytest.mark.parametrize("n,count,block", [(6, 2, 1), (7, 3, 2), (5, 4, 1), (10, 3, 4), (2, 5, 1)])
def test_shares_are_disjoint_and_cover_every_index(n, count, block):
    shares = [shard_indices(n, Shard(k, count), block) for k in range(count)]
    flat = sorted(i for share in shares for i in share)
    assert flat == list(range(n))
    for share in shares:  # whole blocks only: a batch chunk or an edit group stays on one rank
        assert all(i // block == j // block or j % block == 0 for i, j in zip(share, share[1:]))


def test_gpu_blocks():
    assert [gpu_block(8, r, 2) for r in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [gpu_block(2, r, 2) for r in range(2)] == [[0], [1]]
    assert gpu_block(1, 1, 2) == [0]  # more ranks than GPUs: they share


def test_bad_shard_exits_2_before_anything_is_written(tmp_path, setup):
    model, data = setup
    for bad in ("3/2", "x"):
        result = CliRunner().invoke(app, _args(model, data, tmp_path / "run", "--shard", bad))
        assert result.exit_code == 2
        assert "shard" in result.output
        assert not (tmp_path / "run").exists()
    seq = CliRunner().invoke(app, _args(model, data, tmp_path / "run", "--shard", "0/2", "--mode", "sequential"))
    assert seq.exit_code == 2 and "cannot be split" in seq.output
    assert not (tmp_path / "run").exists()


def test_shards_then_merge_equal_one_process(tmp_path, setup):
    model, data = setup
    whole = CliRunner().invoke(app, _args(model, data, tmp_path / "one"))
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "split"
    first = CliRunner().invoke(app, _args(model, data, out, "--shard", "1/2"))
    assert first.exit_code == 0, first.output
    assert "other shards are still missing" in first.output
    assert [r["index"] for r in read_results(part_folder(out, Shard(1, 2)) / "results.jsonl")] == [1, 3, 5]
    refused = CliRunner().invoke(app, ["merge", str(out)])
    assert refused.exit_code == 2 and "3 case line(s) not done" in refused.output
    second = CliRunner().invoke(app, _args(model, data, out, "--shard", "0/2"))
    assert second.exit_code == 0, second.output
    assert "merged 6 record(s) of 2 part file(s)" in second.output
    assert _strip(read_results(out / "results.jsonl")) == _strip(read_results(tmp_path / "one" / "results.jsonl"))
    again = CliRunner().invoke(app, ["merge", str(out)])
    assert again.exit_code == 0 and "6 record(s) from 2 part file(s) (complete)" in again.output
    summary = CliRunner().invoke(app, ["summarize", str(out), "--out", str(tmp_path / "sum")])
    assert summary.exit_code == 0 and "| 6 |" in summary.output


def test_summary_reads_parts_without_a_merge_and_a_resume_with_other_n_keeps_them(tmp_path, setup):
    model, data = setup
    out = tmp_path / "split"
    assert CliRunner().invoke(app, _args(model, data, out, "--shard", "0/3")).exit_code == 0
    assert not (out / "results.jsonl").exists()
    assert sorted(r["index"] for r in all_records(out)) == [0, 3]
    # Resumed with 2 shards: cases 0 and 3 (done by 0/3) are not redone.
    done = CliRunner().invoke(app, _args(model, data, out, "--shard", "1/2"))
    assert "2 new line(s), 3 planned" in done.output  # 1 and 5 (3 was done)
    assert CliRunner().invoke(app, _args(model, data, out, "--shard", "0/2")).exit_code == 0  # 2 and 4
    records = all_records(out)
    assert [r["index"] for r in records] == list(range(6))
    report = merge_parts(out)
    assert report.complete and report.records == 6 and report.parts == 3


def test_shard_lock_is_per_part(tmp_path, setup):
    import subprocess
    import sys

    model, data = setup
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from factscope.io_utils import FolderLock; "
        "FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"), str(out / "parts" / "0-of-2")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # shard 0 is running elsewhere
        busy = CliRunner().invoke(app, _args(model, data, out, "--shard", "0/2"))
        assert busy.exit_code == 2 and "in use" in busy.output
        other = CliRunner().invoke(app, _args(model, data, out, "--shard", "1/2"))
        assert other.exit_code == 0, other.output
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_visible_gpus_of_a_rank(monkeypatch):
    from factscope.parallel.ranks import restrict_visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6")
    restrict_visible_gpus(gpu_block(4, 1, 2))  # rank 1 of 2 on a node whose job sees GPUs 3-6
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "5,6"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    restrict_visible_gpus(gpu_block(8, 3, 4))
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "6,7"


def test_delta_goes_to_each_weights_own_device():
    """Layers on different devices (one on 'meta' here, the only second device a CPU has): applying a delta changes
    each weight in place, where it lives, and never moves a weight to another device; revert is bit-exact."""
    from factscope.edit.delta import DeltaEntry, WeightDelta
    from factscope.testing import tiny_adapter

    adapter = tiny_adapter("llama")
    adapter.model.model.layers[2].mlp.to("meta")
    w1, w2 = adapter.weight("mlp_key", 1), adapter.weight("mlp_key", 2)
    assert w1.parameter.device.type == "cpu" and w2.parameter.device.type == "meta"
    before = w1.parameter.detach().clone()
    rows, cols = w1.matrix.shape
    gen = torch.Generator().manual_seed(0)
    entries = [DeltaEntry("mlp_key", layer, torch.randn(rows, 1, generator=gen), torch.randn(cols, 1, generator=gen))
               for layer in (1, 2)]
    delta = WeightDelta(entries, {"editor": "test"})
    delta.apply(adapter)
    assert w2.parameter.device.type == "meta"
    w1 = adapter.weight("mlp_key", 1)
    assert torch.allclose(w1.parameter - before, w1.to_storage(entries[0].dense()), atol=1e-6)
    delta.revert(adapter)
    assert torch.equal(adapter.weight("mlp_key", 1).parameter, before)
