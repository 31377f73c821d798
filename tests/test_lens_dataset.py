"""Dataset mode of the vocabulary lens (RETS Fig. 3 / Table 2) and the lens CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

from factscope.datasets import load_knowns
from factscope.localize.attributes import AttributeSets
from factscope.localize.knockout import knockout_decline
from factscope.localize.lens import vocab_lens
from factscope.localize.lens_dataset import plateau_layer, run_lens_dataset
from factscope.scoring import continuation_ids
from factscope.testing import LENS_ATTRIBUTES, LENS_FACTS, LENS_RICH_ATTRIBUTES, tiny_adapter, tiny_model, tiny_tokenizer

FACTS, ATTRIBUTES, RICH = LENS_FACTS, LENS_ATTRIBUTES, LENS_RICH_ATTRIBUTES


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    data, attrs = tmp_path / "knowns.json", tmp_path / "attrs.json"
    data.write_text(json.dumps(FACTS))
    attrs.write_text(json.dumps(ATTRIBUTES))
    return data, attrs


def test_dataset_lens_agrees_with_the_single_prompt_lens(files) -> None:
    adapter = tiny_adapter("llama")
    facts = load_knowns(files[0])
    sets = AttributeSets(adapter.tokenizer, RICH)
    res = run_lens_dataset(adapter, facts, sets, k=10, batch_size=3, knockout=False, progress=False)
    assert len(set(res.ar_mean)) > 1  # a non-constant curve, so that rho is defined
    assert res.n_used == 4
    assert res.skipped == {"relation_without_attributes": 1, "no_relation_tokens_or_empty": 1}
    assert [row["known_id"] for row in res.per_fact] == [0, 1, 3, 5]
    for row in res.per_fact:
        fact = facts[row["known_id"]]
        single = vocab_lens(adapter, fact.prompt, subject=fact.subject, position="lr", k=10, object=fact.attribute,
                            attribute_ids=sets.ids(fact.relation_id))
        assert row["ar"] == pytest.approx([layer.attributes_rate for layer in single.layers])
        assert row["object_rank"] == [layer.object_rank for layer in single.layers]
        assert 1 <= min(row["random_rank"]) and max(row["random_rank"]) <= len(adapter.tokenizer)
    ar = torch.tensor([row["ar"] for row in res.per_fact])
    ranks = torch.tensor([row["object_rank"] for row in res.per_fact], dtype=torch.float)
    assert res.ar_mean == pytest.approx(ar.mean(0).tolist())
    assert res.object_rank_mean == pytest.approx(ranks.mean(0).tolist())
    expected = spearmanr((-ranks.mean(0)).tolist(), ar.mean(0).tolist()).statistic
    assert res.spearman_rho == pytest.approx(expected)
    assert res.ar_layer0 == pytest.approx(res.ar_mean[0]) and res.ar_max == pytest.approx(max(res.ar_mean))
    assert res.plateau_layer == plateau_layer(res.ar_mean)
    assert res.plateau_layer_before_last == plateau_layer(res.ar_mean[:-1])
    assert res.knockout == {}


def test_objects_included_shares(files) -> None:
    adapter = tiny_adapter("gpt2")
    facts = load_knowns(files[0])
    sets = AttributeSets.from_file(adapter.tokenizer, files[1])
    res = run_lens_dataset(adapter, facts, sets, k=5, knockout=False, progress=False)
    tok = adapter.tokenizer
    token_in = [continuation_ids(tok, facts[i].prompt, facts[i].attribute)[0] in sets.ids(facts[i].relation_id)
                for i in (0, 1, 3, 5)]
    assert token_in[0] and token_in[1]  # " French" and " Paris" are attributes' first tokens
    inc = res.objects_included
    assert inc["string_all"] == pytest.approx(0.5)  # French, Paris yes; German, Rome no
    assert inc["token_all"] == pytest.approx(sum(token_in) / 4)
    assert inc["n_correct"] == sum(row["correct"] for row in res.per_fact)
    for row in res.per_fact:
        ids = torch.tensor([tok(row["prompt"])["input_ids"]])
        top1 = int(adapter.model(input_ids=ids).logits[0, -1].argmax())
        assert row["correct"] == (top1 == row["object_id"])


def test_dataset_knockout_is_the_mean_of_per_fact_declines(files) -> None:
    adapter = tiny_adapter("gpt_neox")
    facts = load_knowns(files[0])
    sets = AttributeSets.from_file(adapter.tokenizer, files[1])
    res = run_lens_dataset(adapter, facts, sets, n=3, k=8, window=2, knockout_n=2, progress=False)
    assert res.n_used == 3 and res.knockout["n"] == 2 and res.knockout["starts"] == [0, 1, 2, 3]
    manual = [knockout_decline(adapter, facts[i].prompt, row["position"], sets.ids(facts[i].relation_id), window=2, k=8)
              for i, row in zip((0, 1), res.per_fact)]
    for kind in ("mlp", "attn"):
        mean = torch.tensor([m.decline[kind] for m in manual]).mean(0).tolist()
        assert res.knockout["decline_mean"][kind] == pytest.approx(mean, abs=1e-6)
    assert "knockout_decline" in res.per_fact[1] and "knockout_decline" not in res.per_fact[2]
    summary = res.summary()
    assert summary["knockout"]["mean_decline"]["mlp"] == pytest.approx(sum(res.knockout["decline_mean"]["mlp"]) / 4)


def test_dataset_without_usable_facts_is_an_error(files) -> None:
    adapter = tiny_adapter("gpt2")
    facts = load_knowns(files[0])
    sets = AttributeSets(adapter.tokenizer, {"P999": ["Paris"]})
    with pytest.raises(ValueError, match="No usable fact"):
        run_lens_dataset(adapter, facts, sets, progress=False)


def test_plateau_layer() -> None:
    assert plateau_layer([0.1, 0.2, 0.5, 0.58, 0.6, 0.59]) == 3  # 0.1 + 0.9 * 0.5 = 0.55
    assert plateau_layer([0.3, 0.3, 0.3]) == 0


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_llama")
    model, tokenizer = tiny_model("llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _invoke(*args: str):
    from factscope.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_lens_json_and_table(model_dir) -> None:
    prompt = "The mother tongue of Danielle Darrieux is"
    res = _invoke("lens", prompt, "--subject", "Danielle Darrieux", "--position", "lr", "--k", "5",
                  "--object", "French", "--json", "--model", str(model_dir))
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert len(data["layers"]) == 4 and len(data["layers"][0]["top_tokens"]) == 5
    assert data["object_id"] == continuation_ids(tiny_tokenizer("bytelevel"), prompt, "French")[0]
    table = _invoke("lens", prompt, "--k", "3", "--model", str(model_dir))
    assert table.exit_code == 0 and table.stdout.count("\n") == 5


def test_cli_lens_errors(model_dir, files) -> None:
    res = _invoke("lens", "The capital of France is", "--position", "99", "--model", str(model_dir))
    assert res.exit_code == 2 and "out of range" in res.output
    res = _invoke("lens", "The capital of France is", "--attributes", str(files[1]), "--relation", "P9",
                  "--model", str(model_dir))
    assert res.exit_code == 2 and "no attribute set" in res.output
    res = _invoke("lens", "The capital of France is", "--position", "lr", "--model", str(model_dir))
    assert res.exit_code == 2 and "needs the subject" in res.output


def test_cli_lens_dataset_and_dynamics_write_outputs(model_dir, files, tmp_path) -> None:
    out = tmp_path / "lens"
    res = _invoke("lens-dataset", "--data", str(files[0]), "--attributes", str(files[1]), "--n", "3", "--k", "5",
                  "--window", "2", "--out", str(out), "--model", str(model_dir))
    assert res.exit_code == 0, res.output
    for name in ("lens_dataset.json", "summary.json", "attributes_rate.png", "rank_flow.png", "knockout.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_used"] == 3 and summary["knockout"]["window"] == 2
    dyn = tmp_path / "dyn"
    res = _invoke("dynamics", "--data", str(files[0]), "--n", "4", "--out", str(dyn), "--model", str(model_dir))
    assert res.exit_code == 0, res.output
    data = json.loads((dyn / "dynamics.json").read_text())
    assert data["n"] == 4 and len(data["cos"]["mlp"]) == 4 and (dyn / "dynamics.png").stat().st_size > 0
