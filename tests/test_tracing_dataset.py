"""Dataset-mode tracing (aggregation per position group, skipping, resume) and the trace CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from factscope.datasets.knowns import KnownFact
from factscope.localize.tracing import trace
from factscope.localize.tracing_dataset import JSONL_NAME, aggregate, greedy_matches, trace_dataset
from factscope.reports.heatmaps import plot_group_grid, plot_trace, text_heatmap
from factscope.testing import tiny_adapter
from factscope.tokens import GROUP_NAMES


@pytest.fixture(scope="module")
def adapter():
    adapter = tiny_adapter("llama")
    with torch.no_grad():
        for param in adapter.model.parameters():
            if param.dim() == 2:
                param.mul_(8)
    return adapter


CANDIDATES = [
    ("The capital of France is", "France"), ("Michael Jordan plays", "Michael Jordan"),
    ("The capital of Italy is", "Italy"), ("Lionel Messi plays", "Lionel Messi"),
    ("The official language of Germany is", "Germany"), ("Toyota is headquartered in", "Toyota"),
    ("Marie Curie was born in", "Marie Curie"), ("The iPhone is made by", "The iPhone"),
    ("Windows was developed by", "Windows"), ("Albert Einstein worked in", "Albert Einstein"),
]


def _facts(adapter) -> list[KnownFact]:
    """Two facts whose attribute is the model's own greedy token (so 'known') and one it gets wrong."""
    facts = []
    for prompt, subject in CANDIDATES:
        ids = torch.tensor([adapter.tokenizer(prompt)["input_ids"]])
        greedy = int(adapter.model(input_ids=ids).logits[0, -1].argmax())
        word = adapter.tokenizer.decode([greedy]).strip()
        fact = KnownFact(known_id=len(facts), subject=subject, prompt=prompt, attribute=word or "x")
        if word and greedy_matches(adapter, fact)[0]:
            facts.append(fact)
        if len(facts) == 2:
            break
    assert len(facts) == 2, "the tiny model should predict a whole word after two candidate prompts"
    facts.append(KnownFact(known_id=7, subject="Toyota", prompt="Toyota is headquartered in", attribute="Zzzz"))
    return facts


def test_aggregate_averages_groups_then_facts(adapter):
    a = trace(adapter, "The capital of France is", "France", samples=2, window=2)
    b = trace(adapter, "Michael Jordan plays basketball", "Michael Jordan", samples=2, window=2)
    agg = aggregate([a, b])
    ie_a, ie_b = a.ie.numpy(), b.ie.numpy()
    k = GROUP_NAMES.index("ls")
    expected = (ie_a[a.groups["ls"]].mean(0) + ie_b[b.groups["ls"]].mean(0)) / 2
    np.testing.assert_allclose(agg["grid"][k], expected, rtol=1e-6, atol=1e-9)
    assert agg["per_group"]["ls"] == pytest.approx(float(expected.mean()))
    # "rp" exists only in the first prompt: its row averages that fact alone
    np.testing.assert_allclose(agg["grid"][GROUP_NAMES.index("rp")], ie_a[a.groups["rp"]].mean(0), atol=1e-9)
    assert agg["counts"][GROUP_NAMES.index("rp")] == (1 if not b.groups["rp"] else 2)


def test_dataset_skips_wrong_facts_and_resumes(adapter, tmp_path):
    facts = _facts(adapter)
    assert greedy_matches(adapter, facts[0])[0] and not greedy_matches(adapter, facts[2])[0]
    run = trace_dataset(adapter, facts, kinds=("state", "mlp"), samples=2, window=2, out_dir=tmp_path, progress=False)
    assert [s["known_id"] for s in run.skipped] == [7]
    assert {(r["known_id"], r["corrupt"]) for r in run.records} == {(0, "subject"), (0, "relation"),
                                                                   (1, "subject"), (1, "relation")}
    assert all(r["traces"]["state"]["target_id"] == r["traces"]["mlp"]["target_id"] for r in run.records)
    summary = run.to_dict(with_records=False)
    assert summary["n_traced"] == {"subject": 2, "relation": 2}
    assert summary["n_skipped_wrong_prediction"] == 1
    assert set(summary["summary"]["relation"]["table"]["lr"]) == {"state", "mlp"}
    assert summary["summary"]["relation"]["corrupted_groups"] == ["fr", "mr", "lr"]
    json.dumps(summary)  # JSON-ready
    lines = (tmp_path / JSONL_NAME).read_text().splitlines()
    again = trace_dataset(adapter, facts, kinds=("state", "mlp"), samples=2, window=2, out_dir=tmp_path,
                          progress=False)
    assert (tmp_path / JSONL_NAME).read_text().splitlines() == lines  # nothing recomputed or duplicated
    assert len(again.records) == 4


def test_max_traced_stops_early(adapter):
    run = trace_dataset(adapter, _facts(adapter), corrupts=("subject",), kinds=("attn",), samples=1, window=2,
                        progress=False, max_traced=1)
    assert len(run.records) == 1


def test_plots_and_text_heatmap(adapter, tmp_path):
    result = trace(adapter, "The capital of France is", "France", corrupt="relation", samples=2)
    assert plot_trace(result, tmp_path / "t.png").stat().st_size > 1000
    text = text_heatmap(result)
    assert text.count("\n") == len(result.tokens) + 1 and "*" in text
    grid = np.full((len(GROUP_NAMES), result.n_layers), np.nan)
    grid[-1] = result.ie.numpy()[-1]
    assert plot_group_grid(grid, GROUP_NAMES, "mlp", tmp_path / "g.png", corrupted={"lr"}).exists()


def test_cli_trace_writes_outputs_and_reports_errors(adapter, tmp_path, monkeypatch):
    from factscope.cli import app
    import factscope.cli.trace as cli_trace

    monkeypatch.setattr(cli_trace, "load_adapter", lambda *a, **k: adapter)
    runner = CliRunner()
    out = tmp_path / "trace"
    res = runner.invoke(app, ["trace", "The capital of France is", "--subject", "France", "--kind", "all",
                              "--severed", "mlp", "--samples", "2", "--window", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "trace.json").read_text())
    assert set(data) == {"state", "mlp", "attn", "severed_mlp"}
    assert (out / "trace_all.png").exists() and "restore mlp" in res.output
    bad = runner.invoke(app, ["trace", "The capital of France", "--subject", "France", "--corrupt", "relation",
                              "--out", str(out)])
    assert bad.exit_code != 0 and "no relation tokens" in bad.output
    missing = runner.invoke(app, ["trace", "The capital of France is", "--subject", "Spain", "--out", str(out)])
    assert missing.exit_code != 0 and "does not occur" in missing.output


def test_cli_trace_dataset(adapter, tmp_path, monkeypatch):
    from factscope.cli import app
    import factscope.cli.trace as cli_trace

    monkeypatch.setattr(cli_trace, "load_adapter", lambda *a, **k: adapter)
    data = tmp_path / "knowns.json"
    data.write_text(json.dumps([{"known_id": f.known_id, "subject": f.subject, "prompt": f.prompt,
                                 "attribute": f.attribute} for f in _facts(adapter)[::-1]]))
    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["trace-dataset", "--data", str(data), "--n", "2", "--kind", "mlp",
                                   "--samples", "1", "--window", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "aie_relation_mlp.png").exists() and (out / "summary.json").exists()
    assert "lr" in res.output and "skipped 1 wrongly predicted" in res.output


def test_cli_trace_json_and_threads(adapter, tmp_path, monkeypatch):
    from factscope.cli import app
    import factscope.cli.trace as cli_trace

    monkeypatch.setattr(cli_trace, "load_adapter", lambda *a, **k: adapter)
    threads = torch.get_num_threads()
    try:
        res = CliRunner().invoke(app, ["trace", "The capital of France is", "--subject", "France", "--kind", "state",
                                       "--samples", "1", "--out", str(tmp_path / "t"), "--json", "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed == json.loads((tmp_path / "t" / "trace.json").read_text()) and set(printed) == {"state"}


def test_long_trace_titles_are_wrapped_to_the_figure():
    from factscope.reports.heatmaps import fit_title

    short, size = fit_title("'The capital of France is' → ' Paris'", 4.2)
    assert "\n" not in short and size == 9
    text = "'" + "The mother tongue of Danielle Darrieux, the French actress and singer, is " * 2 + "' → ' French'"
    wrapped, size = fit_title(text, 4.2)
    lines = wrapped.split("\n")
    assert len(lines) > 1 and size >= 7
    assert all(len(line) * 0.6 * size <= 4.2 * 72 for line in lines)  # each line fits the figure's width
    assert " ".join(lines).replace("  ", " ") == " ".join(text.split())
