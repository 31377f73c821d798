"""``factscope demo``: one fact edited with ROME and with RETS on the bundled model.

Usage::

    factscope demo                       # Danielle Darrieux's mother tongue: French → English
    factscope demo --case 3 --corpus enwiki.jsonl --threads 1

Shows, before and after each edit, the prediction on the rewrite prompt, its
paraphrases, the same subject under other relations (does the edit over-generalise?)
and other subjects under the same relation. The other-relation prompts are chosen
by the R-Specificity rule: among the fact's own and the canonical prompts of
relations that fit the subject, those whose unedited next token is a content word
(not blank, not a stop word, not o or o*); for each, that token o2 and P(o2) before
and after the edit are shown. The first run computes the key
covariance of both edited layers in one pass over model-generated text (cached;
later runs skip it).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from factscope.cli.common import check_corpus_file, fail, load_adapter, set_threads
from factscope.cli.options import CorpusOption, ModelOption, ThreadsOption
from factscope.cli.probes import Probe, example_facts, measure, print_comparison

FALLBACK_FACT = {
    "case_id": "demo-0",
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "subject": "Danielle Darrieux",
        "target_true": {"str": "French"},
        "target_new": {"str": "English"},
    },
    "paraphrase_prompts": ["Danielle Darrieux's mother tongue is", "Danielle Darrieux, a native speaker of"],
    "neighborhood_prompts": ["The mother tongue of Albert Einstein is", "The mother tongue of Angela Merkel is"],
    "other_relation_prompts": [
        {"prompt": "Danielle Darrieux was born in", "relation_id": "P19"},
        {"prompt": "Danielle Darrieux is a citizen of", "relation_id": "P27"},
        {"prompt": "Danielle Darrieux works as a", "relation_id": "P106"},
    ],
}


def _pick(case: Optional[int]) -> dict[str, Any]:
    facts = example_facts()
    if not facts:
        return FALLBACK_FACT
    if case is None:
        found = next((f for f in facts if f.get("requested_rewrite", {}).get("subject") == "Danielle Darrieux"), None)
        return found or facts[0]
    if not 0 <= case < len(facts):
        fail(f"--case must be in 0..{len(facts) - 1}.")
    return facts[case]


def other_relation_candidates(fact: dict[str, Any]) -> list[str]:
    """The fact's other-relation prompts, then the canonical templates of relations that fit its subject."""
    from factscope.datasets.relations import RELATIONS, fits_subject_of

    rw = fact["requested_rewrite"]
    subject, relation = rw["subject"], rw.get("relation_id")
    texts = [item["prompt"] if isinstance(item, dict) else str(item) for item in fact.get("other_relation_prompts", [])]
    if relation in RELATIONS:
        texts += [info.template for rid, info in RELATIONS.items() if fits_subject_of(rid, relation)]
    own = rw["prompt"].replace("{}", subject)
    filled = (t.replace("{}", subject) if "{}" in t else t for t in texts)
    return [p for p in dict.fromkeys(filled) if p != own]


def side_effect_prompts(adapter: Any, candidates: list[str], objects: list[str], k: int = 4) -> list[tuple[str, int]]:
    """Up to ``k`` ``(prompt, o2 token id)`` whose unedited top-1 next token is a content word.

    o2 must not be blank or a stop word (``factscope.evaluate.stopwords``, the R-Specificity
    reference rule) nor the first token of one of ``objects`` (o, o*): such a prompt would
    show the edit's own target, not a side effect."""
    from factscope.evaluate.stopwords import is_reference_stopword
    from factscope.scoring import continuation_ids, next_token_logprobs

    if not candidates:
        return []
    chosen = []
    for prompt, row in zip(candidates, next_token_logprobs(adapter, candidates)):
        top = int(row.argmax())
        blocked = {continuation_ids(adapter.tokenizer, prompt, o)[0] for o in objects if o.strip()}
        if top not in blocked and not is_reference_stopword(adapter.tokenizer.decode([top])):
            chosen.append((prompt, top))
        if len(chosen) == k:
            break
    return chosen


def _probes(fact: dict[str, Any], others: list[tuple[str, int]]) -> list[Probe]:
    rw = fact["requested_rewrite"]
    probes = [Probe("rewrite", rw["prompt"].replace("{}", rw["subject"]))]
    probes += [Probe("paraphrase", p) for p in fact.get("paraphrase_prompts", [])[:2]]
    probes += [Probe("other relation", p) for p, _ in others]
    probes += [Probe("other subject", p) for p in fact.get("neighborhood_prompts", [])[:2]]
    return probes


def _o2_probs(adapter: Any, others: list[tuple[str, int]]) -> list[float]:
    from factscope.scoring import next_token_logprobs

    if not others:
        return []
    rows = next_token_logprobs(adapter, [p for p, _ in others])
    return [float(row[token].exp()) for row, (_, token) in zip(rows, others)]


def print_o2(adapter: Any, others: list[tuple[str, int]], before: list[float], after: list[float]) -> None:
    """o2 of each other-relation prompt with P(o2) before → after."""
    if not others:
        typer.echo("  (no other-relation prompt has a content word as its unedited next token)")
        return
    typer.echo(f"  {'other relation (o2 = unedited top-1 content token)':52} {'o2':>14}   P(o2) before→after")
    for (prompt, token), b, a in zip(others, before, after):
        typer.echo(f"  {prompt[:52]:52} {adapter.tokenizer.decode([token])!r:>14}   {b:.3f} → {a:.3f}")


def demo(
    case: Annotated[Optional[int], typer.Option("--case", help="Index into the example facts (default: Danielle Darrieux).")] = None,
    corpus: CorpusOption = None,
    threads: ThreadsOption = None,
    model: ModelOption = None,
) -> None:
    """Edit one example fact with ROME and RETS and show efficacy and side effects."""
    from factscope.edit import EditRequest, edit, hparams_for
    from factscope.edit.covariance import key_second_moments
    from factscope.edit.hparams import resolve_layer

    start = time.perf_counter()
    fact = _pick(case)
    check_corpus_file(corpus)
    set_threads(threads)
    adapter = load_adapter(model)
    rw = fact["requested_rewrite"]
    request = EditRequest(rw["prompt"], rw["subject"], rw["target_new"]["str"], rw["target_true"]["str"],
                          relation_id=rw.get("relation_id"), case_id=fact.get("case_id"))
    request.validate(adapter)
    rome_hp, rets_hp = hparams_for("rome", adapter), hparams_for("rets", adapter)
    layers = {"rome": resolve_layer(adapter, rome_hp.layer), "rets": resolve_layer(adapter, rets_hp.layer)}
    typer.echo(f"model {adapter.name} ({adapter.n_layers} layers); fact: {request.filled!r} "
               f"{request.target_true!r} → {request.target_new!r}")
    typer.echo(f"ROME edits layer {layers['rome']} at the last subject token; "
               f"RETS edits layer {layers['rets']} at the last relation token with subject constraints.")
    # Both layers' covariance in one pass (cached after the first run).
    key_second_moments(adapter, sorted(set(layers.values())), corpus=corpus, n_tokens=rome_hp.mom2_n_tokens,
                       dtype=rome_hp.mom2_dtype)
    others = side_effect_prompts(adapter, other_relation_candidates(fact), [request.target_new, request.target_true or ""])
    probes = _probes(fact, others)
    before = measure(adapter, probes, request.target_new, request.target_true)
    o2_before = _o2_probs(adapter, others)
    for name in ("rome", "rets"):
        t0 = time.perf_counter()
        delta = edit(adapter, [request], editor=name, corpus=corpus)
        with delta.applied(adapter):
            after = measure(adapter, probes, request.target_new, request.target_true)
            o2_after = _o2_probs(adapter, others)
        typer.echo(f"\n{name.upper()} (layer {layers[name]}, {time.perf_counter() - t0:.1f} s); * = top prediction changed")
        print_comparison(before, after, request.target_new)
        print_o2(adapter, others, o2_before, o2_after)
        ok = after[0]["top"].strip() == request.target_new.split()[0]
        kept = [a["top"] == b["top"] for a, b in zip(after, before) if a["kind"] in ("other relation", "other subject")]
        typer.echo(f"  efficacy: {'new target is top-1' if ok else 'new target NOT top-1'}; "
                   f"unrelated prompts unchanged: {sum(kept)}/{len(kept)}")
    typer.echo(f"\ntotal {time.perf_counter() - start:.1f} s")


def register(app: typer.Typer) -> None:
    app.command()(demo)
