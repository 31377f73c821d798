"""The dataset lens split into shards gives the per-fact records and result of one process."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from factscope.datasets import load_knowns
from factscope.localize.attributes import AttributeSets
from factscope.localize.lens_dataset import LensSettings, run_lens_dataset
from factscope.localize.lens_shards import PART_NAME, PARTS, LensPartError, lens_share, merged_lens
from factscope.parallel.ranks import Shard
from factscope.testing import LENS_FACTS, LENS_RICH_ATTRIBUTES, tiny_adapter

MANY = [{**f, "known_id": i} for i, f in enumerate(LENS_FACTS * 3)]  # 18 facts, 12 usable


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter("llama")


@pytest.fixture()
def knowns(tmp_path):
    path = tmp_path / "knowns.json"
    path.write_text(json.dumps(MANY))
    return path


def test_shards_merge_to_the_one_process_result(adapter, knowns, tmp_path):
    facts, sets = load_knowns(knowns), AttributeSets(adapter.tokenizer, LENS_RICH_ATTRIBUTES)
    options = dict(k=8, batch_size=5, window=2, knockout_n=5)  # batches of 5, 5, 2: shard 0 gets two
    whole = run_lens_dataset(adapter, facts, sets, progress=False, **options)
    settings = LensSettings(**options).check(adapter)
    lens_share(adapter, facts, sets, settings, Shard(0, 2), tmp_path / "split", progress=False)
    assert merged_lens(adapter, facts, sets, settings, tmp_path / "split") is None  # shard 1 missing
    lens_share(adapter, facts, sets, settings, Shard(1, 2), tmp_path / "split", progress=False)
    merged = merged_lens(adapter, facts, sets, settings, tmp_path / "split")
    assert merged is not None and json.dumps(merged.to_dict()) == json.dumps(whole.to_dict())
    assert merged.knockout["n"] == 5 and merged.n_used == 12
    # A part of another run (other k) is refused with its file named.
    other = LensSettings(**{**options, "k": 5}).check(adapter)
    with pytest.raises(LensPartError, match=PART_NAME):
        merged_lens(adapter, facts, sets, other, tmp_path / "split")


def test_cli_lens_dataset_shards(adapter, knowns, tmp_path, monkeypatch):
    from factscope.cli import app
    import factscope.cli.lens as cli_lens

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli_lens, "load_adapter", lambda *a, **k: adapter)
    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps(LENS_RICH_ATTRIBUTES))
    args = ["lens-dataset", "--data", str(knowns), "--attributes", str(attrs), "--k", "8", "--batch-size", "3",
            "--window", "2", "--knockout-n", "2"]
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")]).exit_code == 0
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two"), "--shard", "1/2"])
    assert first.exit_code == 0 and "rerun any shard" in first.output
    second = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two"), "--shard", "0/2"])
    assert second.exit_code == 0, second.output
    for name in ("summary.json", "lens_dataset.json"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    (tmp_path / "two" / PARTS / "0-of-2" / PART_NAME).write_text("{not json")
    broken = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "two"), "--shard", "0/2"])
    assert broken.exit_code == 2 and PART_NAME in broken.output and "Traceback" not in broken.output
