"""``factscope demo``: one fact edited with ROME and with RETS on the bundled model.

Usage::

    factscope demo                       # Danielle Darrieux's mother tongue: French → English
    factscope demo --case 3 --corpus enwiki.jsonl

Shows, before and after each edit, the prediction on the rewrite prompt, its
paraphrases, the same subject under other relations (does the edit over-generalise?)
and other subjects under the same relation. The first run computes the key
covariance of both edited layers in one pass over model-generated text (cached;
later runs skip it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from factscope.cli.common import ModelOption, check_input_file, fail, load_adapter
from factscope.cli.edit import Probe, example_facts, measure, print_comparison

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


def _probes(fact: dict[str, Any]) -> list[Probe]:
    rw = fact["requested_rewrite"]
    probes = [Probe("rewrite", rw["prompt"].replace("{}", rw["subject"]))]
    probes += [Probe("paraphrase", p) for p in fact.get("paraphrase_prompts", [])[:2]]
    for item in fact.get("other_relation_prompts", [])[:4]:
        text = item["prompt"] if isinstance(item, dict) else str(item)
        probes.append(Probe("other relation", text.replace("{}", rw["subject"])))
    probes += [Probe("other subject", p) for p in fact.get("neighborhood_prompts", [])[:2]]
    return probes


def demo(
    case: Annotated[Optional[int], typer.Option("--case", help="Index into the example facts (default: Danielle Darrieux).")] = None,
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Text/JSONL corpus for the key covariance (default: model-generated text).")] = None,
    model: ModelOption = None,
) -> None:
    """Edit one example fact with ROME and RETS and show efficacy and side effects."""
    from factscope.edit import EditRequest, edit, hparams_for
    from factscope.edit.covariance import key_second_moments
    from factscope.edit.hparams import resolve_layer

    start = time.perf_counter()
    fact = _pick(case)
    check_input_file(corpus, "--corpus")
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
    probes = _probes(fact)
    before = measure(adapter, probes, request.target_new, request.target_true)
    for name in ("rome", "rets"):
        t0 = time.perf_counter()
        delta = edit(adapter, [request], editor=name, corpus=corpus)
        with delta.applied(adapter):
            after = measure(adapter, probes, request.target_new, request.target_true)
        typer.echo(f"\n{name.upper()} (layer {layers[name]}, {time.perf_counter() - t0:.1f} s); * = top prediction changed")
        print_comparison(before, after, request.target_new)
        ok = after[0]["top"].strip() == request.target_new.split()[0]
        kept = [a["top"] == b["top"] for a, b in zip(after, before) if a["kind"] in ("other relation", "other subject")]
        typer.echo(f"  efficacy: {'new target is top-1' if ok else 'new target NOT top-1'}; "
                   f"unrelated prompts unchanged: {sum(kept)}/{len(kept)}")
    typer.echo(f"\ntotal {time.perf_counter() - start:.1f} s")


def register(app: typer.Typer) -> None:
    app.command()(demo)
