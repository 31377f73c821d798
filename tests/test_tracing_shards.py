"""Dataset tracing split into shards gives the records and summary of one process."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from factscope.datasets.knowns import KnownFact
from factscope.localize.tracing_dataset import greedy_matches, trace_dataset
from factscope.localize.tracing_shards import merged_trace, trace_share, traced_prefix
from factscope.parallel.ranks import Shard
from factscope.testing import tiny_adapter

PROMPTS = [("The capital of France is", "France"), ("Michael Jordan plays", "Michael Jordan"),
           ("The capital of Italy is", "Italy"), ("Lionel Messi plays", "Lionel Messi"),
           ("The official language of Germany is", "Germany"), ("Marie Curie was born in", "Marie Curie"),
           ("Windows was developed by", "Windows"), ("Albert Einstein worked in", "Albert Einstein")]
SETTINGS = dict(corrupts=("subject", "relation"), kinds=("mlp",), window=2, samples=2, seed=3)


@pytest.fixture(scope="module")
def adapter():
    torch.set_num_threads(1)
    adapter = tiny_adapter("llama")
    with torch.no_grad():
        for param in adapter.model.parameters():
            if param.dim() == 2:
                param.mul_(8)
    return adapter


@pytest.fixture(scope="module")
def facts(adapter):
    """Known facts (the attribute is the model's own greedy word) between facts it gets wrong."""
    known = []
    for prompt, subject in PROMPTS:
        ids = torch.tensor([adapter.tokenizer(prompt)["input_ids"]])
        word = adapter.tokenizer.decode([int(adapter.model(input_ids=ids).logits[0, -1].argmax())]).strip() or "x"
        if greedy_matches(adapter, KnownFact(known_id=0, subject=subject, prompt=prompt, attribute=word))[0]:
            known.append((prompt, subject, word))
    assert len(known) >= 2, "the tiny model should predict a whole word after two of the prompts"
    wrong = [(prompt, subject, "Zzzz") for prompt, subject in PROMPTS[:3]]
    order = [wrong[0], known[0], wrong[1], known[1], wrong[2]]
    return [KnownFact(known_id=i, subject=s, prompt=p, attribute=a) for i, (p, s, a) in enumerate(order)]


def _comparable(run):
    return json.dumps(run.to_dict(with_records=True), sort_keys=True, default=str)


@pytest.mark.parametrize("n", [None, 1])
def test_shards_merge_to_the_one_process_run(adapter, facts, tmp_path, n):
    whole = trace_dataset(adapter, facts, out_dir=tmp_path / "one", progress=False, max_traced=n, **SETTINGS)
    visited = traced_prefix(adapter, facts, n, SETTINGS["corrupts"])
    assert merged_trace(visited, tmp_path / "split", model=adapter.name, settings=whole.settings) is None
    parts = [trace_share(adapter, visited, Shard(k, 3), tmp_path / "split", progress=False, **SETTINGS) for k in range(3)]
    assert sum(len(p.records) + len(p.skipped) for p in parts) == len(whole.records) + len(whole.skipped)
    merged = merged_trace(visited, tmp_path / "split", model=adapter.name, settings=parts[0].settings)
    assert merged is not None and _comparable(merged) == _comparable(whole)


def test_cli_trace_dataset_shards(adapter, facts, tmp_path, monkeypatch):
    from factscope.cli import app
    import factscope.cli.trace as cli_trace

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli_trace, "load_adapter", lambda *a, **k: adapter)
    data = tmp_path / "knowns.json"
    data.write_text(json.dumps([{"known_id": f.known_id, "subject": f.subject, "prompt": f.prompt,
                                 "attribute": f.attribute} for f in facts]))
    args = ["trace-dataset", "--data", str(data), "--n", "2", "--kind", "mlp", "--samples", "1", "--window", "2"]
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")]).exit_code == 0
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two"), "--shard", "0/2"])
    assert first.exit_code == 0 and "rerun any shard" in first.output
    second = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two"), "--shard", "1/2"])
    assert second.exit_code == 0, second.output
    assert (tmp_path / "two" / "summary.json").read_text() == (tmp_path / "one" / "summary.json").read_text()
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "three"), "--shard", "2/2"])
    assert bad.exit_code == 2 and "shard" in bad.output and not (tmp_path / "three").exists()
