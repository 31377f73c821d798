"""R-Specificity by both rules, token-level relation accuracy, ROME's add-only and joint relation edits."""

from __future__ import annotations

import math

import pytest
import torch

from factscope.datasets import load_cases
from factscope.datasets.supplements import relation_prompts, relation_requests
from factscope.edit import edit
from factscope.evaluate.editors import dataset_editor_kwargs
from factscope.evaluate.fixtures import tiny_counterfact_records, write_json
from factscope.evaluate.metrics import evaluate_counterfact, reference_r_spec
from factscope.evaluate.runner import RunConfig, RunConfigError, requests_for
from factscope.evaluate.stopwords import is_reference_stopword
from factscope.evaluate.summary import RunStats, Stat
from factscope.evaluate.supplements import CaseSupplement, RSpecPrompt, SupplementStore
from factscope.evaluate.targets import TargetScore, first_content_phrase, pick_reference_o2, score_targets
from factscope.reports.tables import render_markdown
from factscope.scoring import next_token_logprobs
from factscope.testing import tiny_adapter

VOCAB = {0: " the", 1: ",", 2: " Paris", 3: " ", 4: "The", 5: " of", 6: " French", 7: "\n"}


def _logits(order: list[int]) -> torch.Tensor:
    """A row whose ranking is ``order`` (first = most likely)."""
    row = torch.full((len(VOCAB),), -10.0)
    for rank, token in enumerate(order):
        row[token] = 10.0 - rank
    return row


def test_both_rules_pick_o2_on_hand_made_logits() -> None:
    logits = torch.stack([_logits([0, 3, 2, 6]), _logits([1, 2]), _logits([4, 6]), _logits([0, 5, 2]), _logits([7, 2])])
    decode = VOCAB.__getitem__
    # reference: skip blank and (case-sensitive) stop words; punctuation and line breaks are not stop words
    assert pick_reference_o2(logits, decode) == [2, 1, 4, 2, 7]
    assert pick_reference_o2(logits[3:4], decode, k=2) == [0]  # every top-k token a stop word: the top-1
    # ours: the greedy text through its first content word, "" when punctuation comes first
    greedy = ["".join(decode(t) for t in seq) for seq in ([0, 2], [1, 2], [4, 6], [0, 5, 2], [7, 2])]
    assert [first_content_phrase(t) for t in greedy] == ["the Paris", "", "The French", "the of Paris", ""]
    assert not is_reference_stopword(" The") and is_reference_stopword(" the") and is_reference_stopword("  ")


def test_reference_success_compares_nll_of_o2_and_o_star() -> None:
    wins, gap = reference_r_spec([0.5, 2.0, 1.0], [1.0, 1.0, 1.0])
    assert wins == pytest.approx(1 / 3)  # only strictly lower NLL wins (a tie loses)
    assert gap == pytest.approx(((math.exp(-0.5) - math.exp(-1)) + (math.exp(-2) - math.exp(-1))) / 3)
    assert reference_r_spec([], []) == (None, None)


def test_token_accuracy_on_a_hand_made_example() -> None:
    score = TargetScore(target_ids=(5, 6, 7), logprobs=(-0.1, -2.0, -0.3), top1=(5, 9, 7))
    assert score.token_accuracy == pytest.approx(2 / 3) and not score.exact


@pytest.fixture(scope="module")
def cf(tmp_path_factory):
    path = write_json(tiny_counterfact_records(), tmp_path_factory.mktemp("cf") / "cf.json")
    return path, load_cases(path, format="counterfact")


def test_metrics_report_both_rules_and_token_accuracy(cf, tmp_path) -> None:
    adapter = tiny_adapter("gpt2")
    _, cases = cf
    store = SupplementStore(adapter, cases, dataset_key="tiny", cache_root=tmp_path, progress=False)
    case = next(c for c in cases if relation_prompts(c) is not None)
    sup = store.get([case], references=False)[case.case_id]
    assert sup.r_specificity_reference and all(isinstance(p.o2_id, int) for p in sup.r_specificity_reference)
    assert all(adapter.tokenizer.decode([p.o2_id]) == p.o2 for p in sup.r_specificity_reference)
    result = evaluate_counterfact(adapter, case, sup)
    m, details = result["metrics"], result["details"]
    # reference: NLL of the o2 token at the next position vs mean per-token NLL of o*
    prompts = [p.prompt for p in sup.r_specificity_reference]
    logprobs = next_token_logprobs(adapter, prompts)
    new_nll = [s.nll for s in score_targets(adapter, [(p, case.target_new) for p in prompts])]
    o2_nll = [-float(logprobs[i, p.o2_id]) for i, p in enumerate(sup.r_specificity_reference)]
    assert [d["nll_target"] for d in details["r_specificity_reference"]] == pytest.approx(o2_nll, abs=1e-5)
    assert m["r_specificity_reference"] == pytest.approx(reference_r_spec(o2_nll, new_nll)[0])
    assert m["r_specificity"] is None or 0 <= m["r_specificity"] <= 1
    rel = relation_prompts(case)
    add, remove = score_targets(adapter, [(rel.add_prompt, rel.name), (rel.remove_prompt, rel.none_target)])
    assert m["relation_reliability_token_acc"] == pytest.approx(add.token_accuracy)
    assert m["relation_removal_token_acc"] == pytest.approx(remove.token_accuracy)
    assert m["relation_reliability"] == float(add.exact)


def test_an_old_cache_gets_the_reference_rule_without_new_references(cf, tmp_path) -> None:
    adapter = tiny_adapter("gpt2")
    _, cases = cf
    store = SupplementStore(adapter, cases, dataset_key="tiny", cache_root=tmp_path, progress=False)
    store.get(cases[:1], references=False)
    entry = store._data[str(cases[0].case_id)]
    entry.pop("r_specificity_reference")  # as written before the field existed
    entry.update(references_done=True, consistency_reference=["kept as it was"])
    again = SupplementStore(adapter, cases, dataset_key="tiny", cache_root=tmp_path, progress=False)
    again._data = store._data
    sup = again.get(cases[:1], references=True)[cases[0].case_id]
    assert sup.r_specificity_reference and sup.consistency_reference == ["kept as it was"]
    assert CaseSupplement.from_dict({"case_id": 1}).r_specificity_reference is None


def _run(label: str, metrics: dict[str, float]) -> RunStats:
    stats = {m: Stat(v, 0.0, 4) for m, v in metrics.items()}
    return RunStats("f", label, label.lower(), "counterfact", {}, stats={"entity": stats}, n_cases={"entity": 4})  # type: ignore[arg-type]


def test_tables_show_the_rule_asked_for_and_read_old_runs() -> None:
    base = {"efficacy": 1.0, "generalization": 0.5, "s_specificity": 0.5}
    new, old = _run("New", {**base, "r_specificity": 0.9, "r_specificity_reference": 0.7}), _run("Old", {**base, "r_specificity": 0.9})
    both = render_markdown([new, old])
    assert "R-Specificity (ours)" in both and "R-Specificity (reference)" in both and "Score (RETS, ref.)" in both
    assert "| 72.5 | 67.5 |" in both  # Score (RETS) with ours, then with the reference rule
    ours = render_markdown([new], "ours")
    assert "R-Specificity (reference)" not in ours and "Score (RETS, ref.)" not in ours
    reference = render_markdown([new, old], "reference")
    assert "R-Specificity (ours)" not in reference and "70.0 ± 0.0" in reference
    rows = {line.split(" |")[0]: line for line in reference.splitlines() if line.startswith(("| Old", "| New"))}
    assert rows["| Old"].count("–") == rows["| New"].count("–") + 2  # an old run: no reference R-Spec, no Score
    with pytest.raises(ValueError, match="r_spec_rule"):
        render_markdown([new], "mine")


def test_relation_requests_add_only(cf) -> None:
    _, cases = cf
    case = next(c for c in cases if relation_prompts(c) is not None)
    both, add = requests_for(case, "relation"), requests_for(case, "relation", "add")
    assert len(both) == 2 and add == both[:1] and add[0].extra["kind"] == "add"
    with pytest.raises(RunConfigError, match="relation_requests"):
        RunConfig("rome", None, "counterfact", relation_requests="remove").validate()
    assert "relation_requests" not in {k for k, v in RunConfig("rome", None, "counterfact").to_dict().items() if v}


def test_rome_joint_solve_stores_the_mean_at_a_shared_key(cf) -> None:
    adapter = tiny_adapter("gpt2")
    _, cases = cf
    case = next(c for c in cases if relation_prompts(c) is not None)
    add, remove = relation_requests(case)
    fast = dict(layer=1, v_steps=3, context_lengths=[[3, 1]], mom2_n_tokens=64, probe="off")
    joint = edit(adapter, [add, remove], editor="rome", requests_solve="joint", **fast)
    [entry] = joint.entries
    assert entry.u.shape[1] == 2 and joint.metadata["requests_solve"] == "joint"
    # both prompts read "The relation between s": one key, so both V columns coincide and
    # the change at that key is along δ_add + δ_remove, with weight a / (1 + 2a) < 1/2 each.
    torch.testing.assert_close(entry.v[:, 0], entry.v[:, 1], rtol=1e-4, atol=1e-6)
    sequential = edit(adapter, [add, remove], editor="rome", **fast)
    assert sum(e.u.shape[1] for e in sequential.entries) == 2 and "requests_solve" not in sequential.metadata
    with pytest.raises(ValueError, match="requests_solve"):
        edit(adapter, [add], editor="rome", requests_solve="together", **fast)


def test_evaluate_passes_its_counterfact_file_to_rets(cf) -> None:
    path, _ = cf
    assert dataset_editor_kwargs("rets", path, "counterfact", {}) == {"constraint_records": str(path.resolve())}
    assert dataset_editor_kwargs("rets", path, "flat", {}) == {}
    assert dataset_editor_kwargs("rome", path, "counterfact", {}) == {}
    assert dataset_editor_kwargs("rets", path, "counterfact", {"constraint_source": "template"}) == {}
    assert dataset_editor_kwargs("rets", path, "counterfact", {"constraint_records": "x.json"}) == {}


def test_demo_picks_other_relation_prompts_with_a_content_word_next() -> None:
    from factscope.cli.demo import other_relation_candidates, side_effect_prompts
    from factscope.cli.probes import example_facts
    from factscope.scoring import continuation_ids

    fact = example_facts()[0]
    candidates = other_relation_candidates(fact)
    rw = fact["requested_rewrite"]
    assert rw["prompt"].replace("{}", rw["subject"]) not in candidates and len(candidates) > len(fact["other_relation_prompts"])
    assert all(rw["subject"] in c for c in candidates)
    adapter = tiny_adapter("gpt2")
    objects = [rw["target_new"]["str"], rw["target_true"]["str"]]
    chosen = side_effect_prompts(adapter, candidates, objects, k=3)
    logprobs = next_token_logprobs(adapter, candidates)
    for prompt, token in chosen:
        assert token == int(logprobs[candidates.index(prompt)].argmax())
        assert not is_reference_stopword(adapter.tokenizer.decode([token]))
        assert all(token != continuation_ids(adapter.tokenizer, prompt, o)[0] for o in objects)
    skipped = [c for c in candidates[: candidates.index(chosen[-1][0])] if c not in dict(chosen)] if chosen else candidates
    for prompt in skipped:  # every earlier candidate left out had a stop word or an object next
        top = int(logprobs[candidates.index(prompt)].argmax())
        assert is_reference_stopword(adapter.tokenizer.decode([top])) or any(
            top == continuation_ids(adapter.tokenizer, prompt, o)[0] for o in objects)
