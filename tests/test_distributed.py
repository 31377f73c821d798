"""Two gloo ranks under torchrun on this CPU: evaluation, covariance, and a rank killed mid-run.

Each test launches ``python -m torch.distributed.run --standalone --nproc-per-node 2`` on a
tiny model saved to a temporary folder, one thread per rank.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from factscope.evaluate.runlog import read_results

ROOT = Path(__file__).resolve().parents[1]
ROME = ["--editor", "rome", "--set", "v_steps=3", "--set", "mom2_n_tokens=64", "--set", "context_lengths=[[3,2]]"]


@pytest.fixture
def setup(saved_tiny_run_inputs):
    return saved_tiny_run_inputs


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "FACTSCOPE_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]


def _evaluate_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["evaluate", *ROME, "--data", str(data), "--model", str(model), "--out", str(out), "--n", "6",
            "--no-generation", "--threads", "1"]


def _strip(records):
    return [json.dumps({k: v for k, v in r.items() if k not in ("edit_seconds", "eval_seconds")}, sort_keys=True) for r in records]


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_ranks_evaluate_like_one_process(tmp_path, setup):
    model, data = setup
    env = _env(tmp_path)
    _run([sys.executable, "-m", "factscope", *_evaluate_args(model, data, tmp_path / "one")], env)
    two = _run(_torchrun("-m", "factscope", "--", *_evaluate_args(model, data, tmp_path / "two")), env)
    assert "merged 6 record(s) of 2 part file(s)" in two.stdout
    parts = sorted((tmp_path / "two" / "parts").iterdir())
    assert [p.name for p in parts] == ["0-of-2", "1-of-2"]
    assert [r["index"] for r in read_results(parts[0] / "results.jsonl")] == [0, 2, 4]
    assert [r["index"] for r in read_results(parts[1] / "results.jsonl")] == [1, 3, 5]
    one = read_results(tmp_path / "one" / "results.jsonl")
    assert len(one) == 6 and all(r["error"] is None for r in one)
    assert _strip(read_results(tmp_path / "two" / "results.jsonl")) == _strip(one)


_SLOW_CHILD = textwrap.dedent(
    """
    import sys
    from factscope.cli._ranks import finish
    from factscope.datasets import load_cases
    from factscope.evaluate.fixtures import random_delta_editor
    from factscope.evaluate.runner import RunConfig, run_evaluation
    from factscope.parallel.ranks import Ranks
    from factscope.testing import tiny_adapter

    data, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    config = RunConfig(editor="random", data="cf.json", format="counterfact", generation=False)
    with Ranks.start(threads=1) as ranks:
        run_evaluation(tiny_adapter("llama"), load_cases(data), random_delta_editor(delay=delay), config, out,
                       progress=False, shard=ranks.shard)
        finish(ranks, __import__("pathlib").Path(out))
    """
)


def test_rank_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path, setup):
    _, data = setup
    env = _env(tmp_path)
    script = tmp_path / "child.py"
    script.write_text(_SLOW_CHILD)
    out = tmp_path / "killed"
    part = out / "parts" / "1-of-2"
    proc = subprocess.Popen(_torchrun(str(script), str(data), str(out), "1.0"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # rank 1 has finished one of its three cases: kill it
            if (part / "results.jsonl").is_file() and len(read_results(part / "results.jsonl")) >= 1:
                break
            assert proc.poll() is None, f"torchrun exited early with {proc.returncode}"
            time.sleep(0.05)
        else:
            pytest.fail("rank 1 wrote no result in time")
        pid = int((part / ".factscope.lock").read_text().split()[-1])
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=120) != 0  # torchrun stops the other rank and fails
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert not (out / "results.jsonl").exists()
    before = {p.name: len(read_results(p / "results.jsonl")) for p in (out / "parts").iterdir()}
    assert 1 <= before["1-of-2"] < 3
    _run(_torchrun(str(script), str(data), str(out), "0"), env)  # restarted: each rank resumes its part
    lines = [r for p in sorted((out / "parts").iterdir()) for r in read_results(p / "results.jsonl")]
    assert sorted(r["index"] for r in lines) == list(range(6))  # none lost, none twice
    merged = read_results(out / "results.jsonl")
    assert [r["index"] for r in merged] == list(range(6))
    fresh = subprocess.run([sys.executable, str(script), str(data), str(tmp_path / "fresh"), "0"], env=env, timeout=300)
    assert fresh.returncode == 0
    assert _strip(merged) == _strip(read_results(tmp_path / "fresh" / "results.jsonl"))


def _corpus(path: Path) -> Path:
    texts = ["The capital of France is Paris. " * (3 + i % 5) + "Michael Jordan plays basketball. " * (i % 3) for i in range(40)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


_COV_CHILD = textwrap.dedent(
    """
    import logging, os, signal, sys
    import torch
    from factscope.edit import covariance
    from factscope.edit.covariance import key_second_moments
    from factscope.models import load_model
    from factscope.parallel.ranks import Ranks

    model, corpus, out, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = []
    real = covariance._file_batch

    def batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at and os.environ["RANK"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)  # dies after checkpointing its earlier batches
        return real(*args, **kwargs)

    covariance._file_batch = batch
    logging.basicConfig(level=logging.INFO)
    with Ranks.start(threads=1) as ranks:
        stats = key_second_moments(load_model(model).adapter, [1, 2], corpus=corpus, n_tokens=1500, batch_size=1,
                                   checkpoint_every=1, progress=False, ranks=ranks)
        torch.save({"stats": stats, "calls": len(calls)}, f"{out}.rank{ranks.shard.index}.pt")
    """
)


def test_distributed_covariance_equals_one_process_and_resumes(tmp_path, setup, monkeypatch):
    from safetensors.torch import load_file

    from factscope.edit.covariance import key_second_moments
    from factscope.models import load_model

    model, _ = setup
    corpus = _corpus(tmp_path / "corpus.jsonl")
    env = _env(tmp_path)
    script = tmp_path / "cov.py"
    script.write_text(_COV_CHILD)
    killed = subprocess.run(_torchrun(str(script), str(model), str(corpus), str(tmp_path / "out"), "3"), env=env,
                            capture_output=True, timeout=300)
    assert killed.returncode != 0
    stats_dir = tmp_path / "cache" / "stats"
    partials = sorted(p.name for p in stats_dir.rglob("*.partial.safetensors"))
    assert any(".rank1-of-2." in p for p in partials)  # rank 1's own checkpoint survived the kill
    resumed = _run(_torchrun(str(script), str(model), str(corpus), str(tmp_path / "out"), "0"), env)
    resumed_from = re.findall(r"Resuming covariance from (\S+)", resumed.stderr)
    assert any(".rank1-of-2.partial" in path for path in resumed_from)  # rank 1 went on from its checkpoint
    assert not list(stats_dir.rglob("*.partial.safetensors"))
    ranks_out = [torch.load(tmp_path / f"out.rank{r}.pt") for r in range(2)]

    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    adapter = load_model(str(model)).adapter
    single = key_second_moments(adapter, [1, 2], corpus=corpus, n_tokens=1500, batch_size=1, cache=False, progress=False)
    for layer in (1, 2):
        for got in (ranks_out[0]["stats"][layer], ranks_out[1]["stats"][layer]):
            assert got.dtype == torch.float64
            assert torch.allclose(got, single[layer], rtol=1e-9, atol=0)
            assert float((got - single[layer]).norm() / single[layer].norm()) < 1e-9
        [cached] = [p for p in stats_dir.rglob(f"mlp_key.{layer}-file-*-n1500-*.safetensors")]  # written once, by rank 0
        assert torch.allclose(load_file(cached)["mom2"], single[layer], rtol=1e-9, atol=0)
