"""Metrics on hand-made cases with known answers, target packing, generation and text metrics."""

from __future__ import annotations

import math

import pytest
import torch

from factscope.datasets import load_cases
from factscope.datasets.records import EditCase, ZsreCase
from factscope.datasets.supplements import relation_prompts
from factscope.evaluate import metrics as metrics_mod
from factscope.evaluate.fixtures import tiny_counterfact_records, write_json
from factscope.evaluate.generation import GenerationConfig, generate_texts
from factscope.evaluate.summary import RunStats, Stat, mean_ci
from factscope.evaluate.supplements import CaseSupplement, RSpecPrompt, SupplementConfig, SupplementStore
from factscope.evaluate.targets import TargetScore, first_content_phrase, greedy_object, score_targets
from factscope.evaluate.text_metrics import Idf, ngram_entropy, ngram_entropy_one, tfidf_cosine
from factscope.scoring import continuation_ids, next_token_logprobs, target_token_logprobs
from factscope.testing import tiny_adapter

TOKENIZERS = ("bytelevel", "metaspace")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared, busy CPU torch's thread sync costs more than it gains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------- teacher forcing
@pytest.mark.parametrize("arch, kind", [("llama", "bytelevel"), ("llama", "metaspace"), ("gemma2", "metaspace"), ("gpt2", "bytelevel"), ("opt", "bytelevel")])
def test_score_targets_matches_pairwise_scoring(arch, kind):
    adapter = tiny_adapter(arch, tokenizer_kind=kind)
    pairs = [
        ("The mother tongue of Danielle Darrieux is", "French"),
        ("The mother tongue of Danielle Darrieux is", "English"),
        ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux"),  # multi-token, shares the prompt
        ("Toyota is headquartered in", "Japan"),
        ("The capital of France is", "Paris, the capital of France"),
        ("Michael Jordan plays", " basketball "),  # surrounding spaces are stripped
    ]
    scores = score_targets(adapter, pairs, max_tokens_per_batch=40)  # forces several batches
    reference = target_token_logprobs(adapter, [p for p, _ in pairs], [t for _, t in pairs])
    assert any(len(s.target_ids) > 1 for s in scores)
    for (prompt, target), score, ref in zip(pairs, scores, reference):
        assert list(score.target_ids) == continuation_ids(adapter.tokenizer, prompt, target)
        torch.testing.assert_close(torch.tensor(score.logprobs), ref, atol=1e-5, rtol=1e-5)
        assert score.nll == pytest.approx(-ref.mean().item(), abs=1e-5)
        # the first top-1 is the argmax of the next-token distribution after the prompt
        assert score.top1[0] == int(next_token_logprobs(adapter, [prompt])[0].argmax())


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_leading_space_convention(kind):
    tok = tiny_adapter("gpt2", tokenizer_kind=kind).tokenizer
    prompt, target = "The capital of France is", "Paris"
    ids = continuation_ids(tok, prompt, target)
    full = tok(prompt + " " + target, add_special_tokens=False)["input_ids"]
    assert full[-len(ids):] == ids
    assert tok.decode(ids).strip() == target
    if kind == "bytelevel":
        assert tok.convert_ids_to_tokens(ids)[0].startswith("Ġ")
    else:
        assert tok.convert_ids_to_tokens(ids)[0].startswith("▁")


def test_exact_match_is_greedy_reproduction():
    adapter = tiny_adapter("gpt2")
    prompt = "The capital of France is"
    ids = adapter.tokenizer(prompt, return_tensors="pt")["input_ids"]
    greedy = []
    with torch.no_grad():
        for _ in range(3):
            nxt = adapter.model(input_ids=ids).logits[0, -1].argmax()
            greedy.append(int(nxt))
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    text = adapter.tokenizer.decode(greedy)
    if not text.startswith(" ") or not text.strip():
        pytest.skip("greedy continuation does not follow the target convention for this seed")
    target = text.strip()
    score = score_targets(adapter, [(prompt, target)])[0]
    assert score.exact == (list(score.target_ids) == greedy[: len(score.target_ids)])


# ------------------------------------------------------------ COUNTERFACT metrics
def _fake_scores(table):
    """A score_targets stand-in: (prompt, target) → per-token log-probs and top-1 flags."""

    def score(adapter, pairs, **_):
        out = []
        for prompt, target in pairs:
            logprobs, exact = table.get((prompt, target), ([-5.0], False))
            ids = tuple(range(len(logprobs)))
            top1 = ids if exact else tuple(i + 1 for i in ids)
            out.append(TargetScore(ids, tuple(logprobs), top1))
        return out

    return score


def _case() -> EditCase:
    return EditCase(
        case_id=1, prompt="{} speaks", subject="Ann", target_new="Dutch Low", target_true="French",
        relation_id="P103", paraphrase_prompts=("P1 Ann speaks", "P2 Ann speaks"),
        neighborhood_prompts=("Bob speaks", "Cy speaks", "Di speaks", "Ed speaks"),
    )  # fmt: skip


def test_counterfact_metrics_known_answers(monkeypatch):
    case = _case()
    rel = relation_prompts(case)
    sup = CaseSupplement(1, r_specificity=[RSpecPrompt("Ann was born in", "P19", "Oslo"), RSpecPrompt("Ann works as", "P106", "poet")], relation=rel)
    table = {
        # Efficacy: o* has two tokens; mean NLL 0.9 beats o's 1.2 although the summed NLL (1.8) would not.
        ("Ann speaks", "Dutch Low"): ([-0.2, -1.6], True),
        ("Ann speaks", "French"): ([-1.2], False),
        # Generalization: one paraphrase of two moves to o*.
        ("P1 Ann speaks", "Dutch Low"): ([-0.1, -0.1], True),
        ("P1 Ann speaks", "French"): ([-2.0], False),
        ("P2 Ann speaks", "Dutch Low"): ([-3.0, -3.0], False),
        ("P2 Ann speaks", "French"): ([-0.5], True),
        # S-Specificity: three of four neighbours keep o.
        ("Bob speaks", "French"): ([-0.1], True), ("Bob speaks", "Dutch Low"): ([-4.0, -4.0], False),
        ("Cy speaks", "French"): ([-0.1], True), ("Cy speaks", "Dutch Low"): ([-4.0, -4.0], False),
        ("Di speaks", "French"): ([-0.1], True), ("Di speaks", "Dutch Low"): ([-4.0, -4.0], False),
        ("Ed speaks", "French"): ([-3.0], False), ("Ed speaks", "Dutch Low"): ([-1.0, -1.0], True),
        # R-Specificity: o2 survives on one of two prompts.
        ("Ann was born in", "Oslo"): ([-0.5], True), ("Ann was born in", "Dutch Low"): ([-2.0, -2.0], False),
        ("Ann works as", "poet"): ([-3.0], False), ("Ann works as", "Dutch Low"): ([-1.0, -1.0], True),
        # Relation knowledge: the name is produced on the add prompt and on 2 of 3 rephrasings.
        (rel.add_prompt, rel.name): ([-0.3, -0.3], True), (rel.add_prompt, "None"): ([-2.0], False),
        (rel.add_paraphrases[0], rel.name): ([-0.3, -0.3], True),
        (rel.add_paraphrases[1], rel.name): ([-0.3, -0.3], True),
        (rel.add_paraphrases[2], rel.name): ([-3.0, -0.3], False),
        (rel.remove_prompt, "None"): ([-0.1], True),
    }  # fmt: skip
    monkeypatch.setattr(metrics_mod, "score_targets", _fake_scores(table))
    m = metrics_mod.evaluate_counterfact(None, case, sup)["metrics"]
    p = math.exp
    assert m["efficacy"] == 1.0
    assert m["efficacy_magnitude"] == pytest.approx(p(-0.9) - p(-1.2))
    assert m["generalization"] == 0.5
    assert m["generalization_magnitude"] == pytest.approx(((p(-0.1) - p(-2.0)) + (p(-3.0) - p(-0.5))) / 2)
    assert m["s_specificity"] == 0.75
    assert m["r_specificity"] == 0.5
    assert m["r_specificity_magnitude"] == pytest.approx(((p(-0.5) - p(-2.0)) + (p(-3.0) - p(-1.0))) / 2)
    assert m["entity_reliability"] == 1.0
    assert m["entity_generality"] == 0.5  # only P1 reproduces o* (and the rewrite prompt does)
    assert m["relation_reliability"] == 1.0
    assert m["relation_generality"] == pytest.approx(2 / 3)
    assert m["relation_removal"] == 1.0
    assert m["r_efficacy"] == 1.0
    assert m["fluency"] is None and m["consistency"] is None  # no generation requested


def test_generality_needs_the_rewrite_prompt_too(monkeypatch):
    case = _case()
    table = {("P1 Ann speaks", "Dutch Low"): ([-0.1, -0.1], True), ("P2 Ann speaks", "Dutch Low"): ([-0.1, -0.1], True),
             ("Ann speaks", "Dutch Low"): ([-0.1, -0.1], False)}  # fmt: skip
    monkeypatch.setattr(metrics_mod, "score_targets", _fake_scores(table))
    m = metrics_mod.evaluate_counterfact(None, case, CaseSupplement(1))["metrics"]
    assert m["entity_reliability"] == 0.0 and m["entity_generality"] == 0.0
    assert m["r_specificity"] is None and m["relation_reliability"] is None  # nothing to measure


def test_counterfact_metrics_on_a_tiny_model_agree_with_target_nll(tmp_path):
    from factscope.scoring import target_nll

    adapter = tiny_adapter("qwen2")
    case = load_cases(write_json(tiny_counterfact_records(), tmp_path / "c.json"))[0]
    sup = CaseSupplement(case.case_id, relation=relation_prompts(case))
    result = metrics_mod.evaluate_counterfact(adapter, case, sup)
    new = target_nll(adapter, [case.filled], [case.target_new])[0]
    true = target_nll(adapter, [case.filled], [case.target_true])[0]
    assert result["metrics"]["efficacy"] == float(new < true)
    assert result["metrics"]["efficacy_magnitude"] == pytest.approx(math.exp(-new) - math.exp(-true), abs=1e-6)
    nb_new = target_nll(adapter, list(case.neighborhood_prompts), [case.target_new] * 2)
    nb_true = target_nll(adapter, list(case.neighborhood_prompts), [case.target_true] * 2)
    assert result["metrics"]["s_specificity"] == pytest.approx((nb_true < nb_new).float().mean().item())


def test_generation_metrics_recorded(tmp_path):
    adapter = tiny_adapter("llama")
    case = load_cases(write_json(tiny_counterfact_records(), tmp_path / "c.json"))[0]
    sup = CaseSupplement(case.case_id, consistency_reference=["French is spoken in Paris"], consistency_source="corpus")
    idf = Idf.fit(["French is spoken in France", "Paris is a city"])
    cfg = GenerationConfig(max_length=24)
    result = metrics_mod.evaluate_counterfact(adapter, case, sup, generation=cfg, idf=idf, seed=3)
    texts = result["details"]["generations"]
    assert len(texts) == len(case.generation_prompts)
    assert result["metrics"]["fluency"] == pytest.approx(ngram_entropy(texts))
    assert result["metrics"]["consistency"] == pytest.approx(tfidf_cosine(" ".join(texts), "French is spoken in Paris", idf))
    again = metrics_mod.evaluate_counterfact(adapter, case, sup, generation=cfg, idf=idf, seed=3)
    assert again["details"]["generations"] == texts  # seeded


# ----------------------------------------------------------------------- zsRE
def test_zsre_metrics_known_answers():
    adapter = tiny_adapter("gpt_neox")
    case = ZsreCase(0, "Where was {} born?", "Marie Curie", "Warsaw", ("Paris",), "Which city was Marie Curie born in?",
                    "nq question: the capital of Italy", "Rome")  # fmt: skip
    store_sup = CaseSupplement(0, loc_top1=list(score_targets(adapter, [(case.loc_prompt, case.loc_answer)])[0].top1))
    m = metrics_mod.evaluate_zsre(adapter, case, store_sup)["metrics"]
    assert m["specificity"] == 1.0  # the unedited model agrees with itself
    # token accuracy computed independently from the full sequence's logits
    tok = adapter.tokenizer
    for prompt, key in ((case.filled, "efficacy"), (case.rephrase_prompt, "generalization")):
        p_ids = tok(prompt)["input_ids"]
        t_ids = continuation_ids(tok, prompt, case.target_new)
        with torch.no_grad():
            logits = adapter.model(input_ids=torch.tensor([p_ids + t_ids])).logits[0]
        hits = [int(logits[len(p_ids) - 1 + j].argmax()) == t for j, t in enumerate(t_ids)]
        assert m[key] == pytest.approx(sum(hits) / len(hits))
    wrong = CaseSupplement(0, loc_top1=[(t + 1) % len(tok) for t in store_sup.loc_top1])
    assert metrics_mod.evaluate_zsre(adapter, case, wrong)["metrics"]["specificity"] == 0.0


# ------------------------------------------------------------------ generation
@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_batched_generation_equals_single_rows(arch):
    adapter = tiny_adapter(arch)
    cfg = GenerationConfig(max_length=30, top_k=1)  # greedy: rows are comparable across batches
    prompts = ["Paris", "The mother tongue of Danielle Darrieux is"]
    together = generate_texts(adapter, prompts, cfg)
    alone = [generate_texts(adapter, [p], cfg)[0] for p in prompts]
    assert together[1] == alone[1]
    assert alone[0].startswith(together[0])  # the short row got fewer new tokens in the batch
    # uncached greedy decoding of the long prompt gives the same text
    ids = adapter.tokenizer(prompts[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        while ids.shape[1] < 30:
            nxt = adapter.model(input_ids=ids).logits[0, -1].argmax().view(1, 1)
            ids = torch.cat([ids, nxt], dim=1)
    assert adapter.tokenizer.decode(ids[0], skip_special_tokens=True) == together[1]


def test_sampling_is_seeded():
    adapter = tiny_adapter("llama")
    cfg = GenerationConfig(max_length=20, top_k=5)
    a = generate_texts(adapter, ["Paris is", "Paris is"], cfg, seed=1)
    assert a == generate_texts(adapter, ["Paris is", "Paris is"], cfg, seed=1)
    assert a != generate_texts(adapter, ["Paris is", "Paris is"], cfg, seed=2)


def test_greedy_object_follows_the_greedy_path():
    adapter = tiny_adapter("mistral", tokenizer_kind="metaspace")
    prompts = ["The capital of France is", "Toyota"]
    objects = greedy_object(adapter, prompts, max_tokens=6)
    for prompt, obj in zip(prompts, objects):
        ids = adapter.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            for _ in range(6):
                ids = torch.cat([ids, adapter.model(input_ids=ids).logits[0, -1].argmax().view(1, 1)], dim=1)
        greedy = adapter.tokenizer.decode(ids[0], skip_special_tokens=True)[len(prompt):]
        assert obj == first_content_phrase(greedy)


@pytest.mark.parametrize(
    "text, expected",
    [(" the southern part of Africa", "the southern"), (" Chinese.", "Chinese"), (" FC Barcelona", "FC"),
     (" the\nnext", ""), (", and", ""), (" the the", ""), (" St. Louis", "St"), (" 1998 in", "1998")],
)  # fmt: skip
def test_first_content_phrase(text, expected):
    assert first_content_phrase(text) == expected


# ---------------------------------------------------------------- text metrics
def test_ngram_entropy_known_value():
    # "a b a b": bigrams ab, ba, ab → H = h(1/3); trigrams aba, bab → H = 1 bit
    h2 = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    assert ngram_entropy_one("a b a b") == pytest.approx((h2 * 2 / 3 + 1.0 * 4 / 3) / 2)
    assert ngram_entropy_one("word") == 0.0
    assert ngram_entropy(["a b a b", "word"]) == pytest.approx(ngram_entropy_one("a b a b") / 2)
    repetitive = ngram_entropy_one("the cat " * 20)
    varied = ngram_entropy_one(" ".join(f"w{i}" for i in range(40)))
    assert varied > repetitive


def test_tfidf_known_values():
    idf = Idf.fit(["paris france city", "berlin germany city", "rome italy city"])
    assert idf["city"] == pytest.approx(math.log(4 / 4) + 1)
    assert idf["paris"] == pytest.approx(math.log(4 / 2) + 1)
    assert idf["unseen"] == pytest.approx(math.log(4) + 1)
    assert tfidf_cosine("Paris city", "paris CITY", idf) == pytest.approx(1.0)
    assert tfidf_cosine("paris", "berlin", idf) == 0.0
    a, c = idf["paris"], idf["city"]
    expected = (c * c) / (math.sqrt(a * a + c * c) * math.sqrt(idf["rome"] ** 2 + c * c))
    assert tfidf_cosine("paris city", "rome city", idf) == pytest.approx(expected)
    assert tfidf_cosine("", "paris", idf) == 0.0


# ----------------------------------------------------------------- supplements
def test_supplements_cached_per_model(tmp_path):
    adapter = tiny_adapter("llama")
    cases = load_cases(write_json(tiny_counterfact_records(), tmp_path / "c.json"))
    cfg = SupplementConfig(generation=GenerationConfig(max_length=24), n_reference=2)
    store = SupplementStore(adapter, cases, dataset_key="tiny", config=cfg, cache_root=tmp_path / "cache", progress=False)
    sups = store.get(cases[:3])
    assert store.path.is_file() and adapter.fingerprint in str(store.path)
    for case in cases[:3]:
        sup = sups[case.case_id]
        assert sup.relation is not None and sup.consistency_source == "attribute_generations"
        assert len(sup.consistency_reference) == min(2, len(set(case.attribute_prompts)))
        assert all(case.target_new in text for text in sup.consistency_reference)
        for rs in sup.r_specificity:
            assert rs.o2 and case.subject in rs.prompt and rs.relation_id != case.relation_id
    again = SupplementStore(adapter, cases, dataset_key="tiny", config=cfg, cache_root=tmp_path / "cache", progress=False)
    again.build = lambda case: (_ for _ in ()).throw(AssertionError("rebuilt a cached supplement"))  # type: ignore[method-assign]
    assert {k: v.to_dict() for k, v in again.get(cases[:3]).items()} == {k: v.to_dict() for k, v in sups.items()}
    other = SupplementStore(tiny_adapter("llama", seed=1), cases, dataset_key="tiny", config=cfg, cache_root=tmp_path / "cache")
    assert other.path != store.path  # another model, another cache file


def test_r_specificity_drops_degenerate_o2(tmp_path, monkeypatch):
    from factscope.evaluate import supplements as sup_mod

    adapter = tiny_adapter("llama")
    cases = load_cases(write_json(tiny_counterfact_records(), tmp_path / "c.json"))
    case = cases[0]  # o = French, o* = English
    fake = ["the English", "", "French", "the Paris"]
    monkeypatch.setattr(sup_mod, "greedy_object", lambda a, prompts, **k: fake[: len(prompts)])
    store = SupplementStore(adapter, cases, dataset_key="t", cache_root=tmp_path, config=SupplementConfig(r_spec_k=4), progress=False)
    sup = store.build(case)
    # o2 = o*, punctuation only, o2 = o are dropped; a real other object is kept
    assert [r.o2 for r in sup.r_specificity] == ["the Paris"]
    assert sup.r_specificity_dropped == 3


# ------------------------------------------------------------------ statistics
def test_mean_ci_and_scores():
    stat = mean_ci([0, 1, 0, 1])
    assert stat.mean == 0.5 and stat.n == 4
    assert stat.ci == pytest.approx(3.182446 * math.sqrt(1 / 3) / 2, rel=1e-5)
    assert mean_ci([0.3]).ci == 0.0 and mean_ci([]) is None
    run = RunStats(folder=None, label="x", editor="x", kind="counterfact", config={})  # type: ignore[arg-type]
    run.stats["entity"] = {k: Stat(v, 0, 10) for k, v in
                           {"efficacy": 1.0, "generalization": 0.5, "s_specificity": 0.25, "r_specificity": 0.75}.items()}  # fmt: skip
    assert run.score_hm() == pytest.approx(3 / (1 + 2 + 4))
    assert run.score_mean() == pytest.approx(0.625)
    run.stats["entity"]["s_specificity"] = Stat(0.0, 0, 10)
    assert run.score_hm() == 0.0
