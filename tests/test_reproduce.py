"""The whole reproduction pipeline on a tiny random model with tiny sizes and hand-made data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from factscope.evaluate.fixtures import tiny_counterfact_records, write_json
from factscope.models.loading import cache_dir
from factscope.evaluate.summary import summarize_run
from factscope.reproduce import STEPS, TINY, DataFiles, reproduce
from factscope.reproduce.artefact import ArtefactResult
from factscope.reproduce.evaluation import n_cases
from factscope.reproduce.sizes import STANDARD
from factscope.reproduce.verdicts import FAILS, HOLDS, compare
from factscope.testing import tiny_adapter

PROMPTS = [  # (known_id, subject, prompt, relation)
    (0, "Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "P103"),
    (1, "Lionel Messi", "Lionel Messi plays the game of", "P641"),
    (2, "Toyota", "Toyota is headquartered in the city of", "P17"),
    (3, "Marie Curie", "Marie Curie was born in the city of", "P19"),
    (4, "Berlin", "Berlin is a city in the country of", "P17"),
    (5, "Michael Jordan", "Michael Jordan is a player of", "P641"),
]


def _knowns(adapter) -> list[dict]:
    """Known facts whose attribute is the tiny model's own greedy word (so tracing has facts to trace)."""
    facts = []
    for known_id, subject, prompt, rel in PROMPTS:
        ids = torch.tensor([adapter.tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            top = adapter.model(input_ids=ids).logits[0, -1].topk(50).indices.tolist()
        words = [adapter.tokenizer.decode([t]) for t in top]
        word = next((w for w in words if w.startswith(" ") and w.strip().isalpha()), None)
        if word is None:
            continue
        facts.append({"known_id": known_id, "subject": subject, "attribute": word.strip(), "prediction": word,
                      "template": prompt.replace(subject, "{}"), "prompt": prompt, "relation_id": rel, "_greedy": words[0] == word})
    return facts


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Run every step once; caches (covariance, contexts, supplements) go to a temporary FACTSCOPE_CACHE."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACTSCOPE_CACHE", str(cache))
        assert cache_dir() == cache
        yield (*_run_all(tmp_path_factory.mktemp("repro")), cache)
    # restored on leaving the context (FACTSCOPE_CACHE unset or back to its old value)
    assert cache_dir() != cache


def _run_all(root: Path):
    torch.manual_seed(0)
    adapter = tiny_adapter("llama", seed=0)
    facts = _knowns(adapter)
    greedy = [f for f in facts if f["_greedy"]]
    assert greedy, "no tiny fact is predicted greedily; tracing would have nothing to trace"
    # Copies of the greedy facts after the others: reaching trace_facts traced facts means reading past skipped ones.
    facts += [{**f, "known_id": len(facts) + i} for i, f in enumerate(greedy * (TINY.trace_facts + 1))]
    knowns = write_json([{k: v for k, v in f.items() if k != "_greedy"} for f in facts], root / "knowns.json")
    attributes = write_json({"P103": ["French", "English"], "P641": ["football", "basketball", "the"],
                             "P17": ["Japan", "Germany", "Italy", "city"], "P19": ["Paris", "Warsaw", "city"]},
                            root / "attributes.json")
    counterfact = write_json(tiny_counterfact_records(), root / "cf.json")
    corpus = root / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"title": str(i), "text": "The city of Paris is in France. Lionel Messi plays football. "
                                            "Marie Curie was born in Warsaw. Toyota is headquartered in Japan. " * 3})
                                for i in range(6)))
    data = DataFiles(knowns=knowns, attributes=attributes, counterfact=counterfact, corpus=corpus,
                     counterfact_train=counterfact)  # MEND trains 2 steps on the same tiny records
    out = root / "out"
    report = reproduce(adapter, out, data=data, sizes=TINY, command="test", progress=False)
    return adapter, data, out, report, [f["_greedy"] for f in facts]


def test_every_artefact_and_report(setup):
    adapter, data, out, report, greedy, cache = setup
    text = report.read_text()
    for name in STEPS:
        folder = out / name
        assert (folder / "result.json").is_file(), name
        result = ArtefactResult.load(folder)
        assert result.claims, f"{name} checks no claim"
        for fig in result.figures:
            assert (out / fig).is_file() and (out / fig).stat().st_size > 0, fig
            assert f"]({fig})" in text
        assert result.title in text and f'id="{name}"' in text
    expected = {"rets_table1": [], "rets_fig2": ["aie_relation_mlp.png", "aie_relation_attn.png"],
                "rets_fig3_table2": ["attributes_rate.png", "rank_flow.png", "knockout.png"],
                "rets_fig5": ["layer_sweep.png"], "seed001_fig2": ["aie_relation_state.png"],
                "seed001_fig3": ["severed.png"], "pmet_fig2": ["dynamics.png"]}
    for name, files in expected.items():
        for f in files:
            assert (out / name / f).is_file(), f"{name}/{f}"
    assert str(data.counterfact) in text or data.counterfact.name in text  # data hashes listed
    run = json.loads((out / "run.json").read_text())
    assert run["fingerprint"] == adapter.fingerprint and set(run["seconds"]) == set(STEPS)
    # Tiny n: every claim must be inconclusive, never a verdict.
    verdicts = [c.verdict for name in STEPS for c in ArtefactResult.load(out / name).claims]
    assert all(v.startswith("inconclusive") for v in verdicts), verdicts
    # The summary gives each artefact's wall time and estimate, and the totals.
    assert "| **total** |" in text and "estimate (s)" in text and set(run["estimated_seconds"]) == set(STEPS)
    # The editors' caches were written to the temporary cache folder, not the user's.
    assert any((cache / "stats").rglob("*.safetensors")) and any((cache / "contexts").iterdir())


def _check_trace_counts(out: Path, greedy: list[bool], trace_facts: int) -> None:
    """trace_facts greedy facts traced, read in order; the wrongly predicted ones before them skipped."""
    counts = ArtefactResult.load(out / "rets_table1").data
    checked = [i for i, g in enumerate(greedy) if g][trace_facts - 1] + 1
    assert counts["n_traced"] == trace_facts, counts
    assert counts["n_checked"] == checked and counts["n_skipped_wrong_prediction"] == checked - trace_facts, counts
    assert counts["n_skipped_wrong_prediction"] > 0  # the data makes the skipping matter
    assert (f"{trace_facts} correctly predicted facts traced ({trace_facts} asked; {checked - trace_facts} of the "
            f"{checked} known facts checked skipped as wrongly predicted)") in (out / "report.md").read_text()


def test_trace_facts_counts_traced_facts(setup):
    adapter, data, out, report, greedy, cache = setup
    _check_trace_counts(out, greedy, TINY.trace_facts)


def test_trace_resume_tops_up(setup):
    """A larger trace_facts on an existing run folder keeps the traced facts and traces more."""
    adapter, data, out, report, greedy, cache = setup
    jsonl = out / "_work" / "tracing" / "traces.jsonl"
    before = jsonl.read_text().splitlines()
    (out / "rets_table1" / "result.json").unlink()
    sizes = TINY.override([f"trace_facts={TINY.trace_facts + 1}"])
    reproduce(adapter, out, data=data, sizes=sizes, command="test", progress=False, steps=["rets_table1"])
    after = jsonl.read_text().splitlines()
    assert after[: len(before)] == before
    keys = [(r["known_id"], r["corrupt"]) for r in map(json.loads, after)]
    assert len(keys) == len(set(keys))  # nothing traced twice
    _check_trace_counts(out, greedy, sizes.trace_facts)


def test_resume_skips_complete_steps(setup):
    adapter, data, out, report, greedy, cache = setup
    before = (out / "rets_table3" / "result.json").stat().st_mtime_ns
    (out / "pmet_fig2" / "result.json").unlink()
    partial = reproduce(adapter, out, data=data, sizes=TINY, command="test", progress=False, steps=["rets_table3", "pmet_fig2"])
    assert (out / "rets_table3" / "result.json").stat().st_mtime_ns == before
    assert (out / "pmet_fig2" / "result.json").is_file()
    left = partial.read_text().split("**Not run yet in this report**", 1)[1].split("\n", 1)[0]
    assert "`rets_table1`" in left and "`rets_table3`" not in left and "`pmet_fig2`" not in left


def test_figure5_reuses_table3_at_the_default_layer(setup):
    """RETS edits layer 3 of 4 by default, TINY sweeps layer 3: that point is Table 3's RETS run, not a new one."""
    adapter, data, out, report, greedy, cache = setup
    from factscope.reproduce.editing import default_layers

    assert default_layers(adapter)["rets"] == 3 and TINY.sweep_layer_indices(adapter.n_layers) == [3]
    fig5 = ArtefactResult.load(out / "rets_fig5")
    assert not (out / "rets_fig5" / "runs" / "rets-L03").exists() and (out / "rets_fig5" / "runs" / "rome-L03").is_dir()
    assert "Taken from RETS Table 3's runs" in fig5.notes and "RETS layer 3" in fig5.notes
    table3 = summarize_run(out / "rets_table3" / "runs" / "rets")
    assert TINY.sweep_cases == TINY.eval_cases == 1  # one case: Table 3's mean is Figure 5's point
    for metric in ("efficacy", "generalization", "s_specificity", "r_specificity"):
        assert fig5.data["rets"][metric]["3"] == pytest.approx(100 * table3.mean("entity", metric))


def test_table3_claims_both_r_spec_rules_and_kn_mend_rows(setup):
    adapter, data, out, report, greedy, cache = setup
    table3 = ArtefactResult.load(out / "rets_table3")
    names = [c.claim for c in table3.claims]
    for other in ("ROME", "PMET* (single layer)"):
        assert f"RETS has higher R-Specificity than {other} (our rule)" in names
        assert f"RETS has higher R-Specificity than {other} (reference rule)" in names
    assert "RETS keeps S-Specificity above MEND's" in names
    assert "not available" not in table3.ours and "| MEND |" in table3.ours
    assert (out / "rets_table3" / "runs" / "mend" / "results.jsonl").is_file()
    seed001 = ArtefactResult.load(out / "seed001_tables12")
    assert "not available" not in seed001.ours and "| KN (bare prompt) |" in seed001.ours and "| MEND |" in seed001.ours
    assert any(c.claim.startswith("KN (bare prompt), relation edits") for c in seed001.claims)
    kn = summarize_run(out / "seed001_tables12" / "runs" / "kn")
    assert n_cases(kn, "entity") == n_cases(kn, "relation") == TINY.perspective_cases


def test_mend_rows_without_training_file_say_so(tmp_path):
    from factscope.reproduce.context import ReproContext
    from factscope.reproduce.editing import NO_MEND, mend_overrides

    ctx = ReproContext(None, out=tmp_path, data=DataFiles(tmp_path, tmp_path, tmp_path, tmp_path), sizes=STANDARD)
    assert mend_overrides(ctx) is None and "counterfact-train.json" in NO_MEND
    ctx.data.counterfact_train = tmp_path / "train.json"
    assert mend_overrides(ctx) == {"train_if_missing": True, "train_data": str(tmp_path / "train.json")}


def test_verdict_rule():
    assert compare(0.9, 0.4, ">", 30, 20, 0.05, 0.05) == HOLDS
    assert compare(0.4, 0.9, ">", 30, 20, 0.05, 0.05) == FAILS
    assert compare(0.9, 0.4, ">", 5, 20).startswith("inconclusive (n = 5")
    assert compare(0.52, 0.5, ">", 30, 20, 0.1, 0.1).startswith("inconclusive (|difference|")


def test_bad_input():
    with pytest.raises(ValueError):
        TINY.override(["nonsense=3"])
    with pytest.raises(ValueError):
        TINY.override(["sweep_layers=[2.5]"])
    with pytest.raises(FileNotFoundError):
        DataFiles.from_dir("/nonexistent")


def _results_without_times(out: Path) -> dict[str, dict]:
    from dataclasses import asdict

    return {name: {k: v for k, v in asdict(ArtefactResult.load(out / name)).items() if k != "seconds"} for name in STEPS}


def test_two_shares_give_the_one_process_results(setup, tmp_path):
    """--shard 0/2 and 1/2 split the artefacts by work group; the last share writes the report; results as one process."""
    from factscope.parallel.ranks import Shard
    from factscope.reproduce.shares import WORK_GROUPS

    adapter, data, _out, _report, _greedy, _cache = setup
    whole = reproduce(adapter, tmp_path / "whole", data=data, sizes=TINY, command="test", progress=False)
    split = tmp_path / "split"
    first = reproduce(adapter, split, data=data, sizes=TINY, command="test", progress=False, shard=Shard(0, 2))
    assert first is None and not (split / "report.md").exists()
    done_first = {n for n in STEPS if (split / n / "result.json").is_file()}
    assert done_first and done_first != set(STEPS)
    assert all(set(g) <= done_first or not set(g) & done_first for g in WORK_GROUPS)  # groups stay whole
    second = reproduce(adapter, split, data=data, sizes=TINY, command="test", progress=False, shard=Shard(1, 2))
    assert second == split / "report.md" and second.is_file()
    assert _results_without_times(split) == _results_without_times(whole.parent)
    run = json.loads((split / "run.json").read_text())
    assert set(run["seconds"]) == set(STEPS)  # each share's timings reach the report


def test_artefact_shares_cover_every_artefact_once():
    from factscope.parallel.ranks import Shard
    from factscope.reproduce.shares import artefact_share, assign_groups, work_groups

    names = list(STEPS)
    cost = {n: float(i + 1) for i, n in enumerate(names)}
    for count in (1, 2, 3, 5, 12):
        shares = [artefact_share(names, Shard(k, count), cost) for k in range(count)]
        assert sorted(n for s in shares for n in s) == sorted(names)
    groups = work_groups(["pmet_fig2", "rets_fig2", "rets_table1"])
    assert groups == [["pmet_fig2"], ["rets_fig2", "rets_table1"]]
    assert assign_groups([["a"], ["b"], ["c"]], 2, {"a": 5.0, "b": 3.0, "c": 3.0}) == [["a"], ["b", "c"]]
