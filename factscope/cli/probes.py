"""Before/after probes of one edit, shown by ``factscope edit`` and ``factscope demo``.

Usage::

    from factscope.cli.probes import measure, print_comparison, probes_for
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    probes = probes_for("Danielle Darrieux", "The mother tongue of {} is", [], [], [])
    before = measure(adapter, probes, "English", "French")   # top-1 and P(target) per probe
    print_comparison(before, before, "English")              # before → after table

``example_facts()`` are the package's COUNTERFACT-like example records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import typer

# Prompts about the same subject under other relations (over-generalisation check)
# when the example facts have none for the subject.
GENERIC_OTHER_RELATIONS = ("{} was born in", "{} is a citizen of", "{} works as a", "{} is famous for")


@dataclass
class Probe:
    """A prompt to show before/after an edit, and why it is shown."""

    kind: str  # "rewrite", "paraphrase", "other relation", "other subject"
    prompt: str


def example_facts() -> list[dict[str, Any]]:
    """The package's example facts (COUNTERFACT-like records), or [] when not shipped."""
    from importlib import resources

    try:
        text = resources.files("factscope").joinpath("data/example_facts.json").read_text(encoding="utf-8")
        data = json.loads(text)
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return []
    return data if isinstance(data, list) else []


def probes_for(subject: str, prompt: str, paraphrases: list[str], others: list[str], neighbours: list[str]) -> list[Probe]:
    """Rewrite prompt, paraphrases and other-relation prompts (from the example facts when the subject matches)."""
    from factscope.tokens import fill_template

    record = next((r for r in example_facts() if r.get("requested_rewrite", {}).get("subject") == subject), None)
    if record is not None:
        paraphrases = paraphrases or list(record.get("paraphrase_prompts", []))[:3]
        others = others or [p["prompt"] if isinstance(p, dict) else str(p) for p in record.get("other_relation_prompts", [])][:4]
        neighbours = neighbours or list(record.get("neighborhood_prompts", []))[:2]
    if not others:
        others = [fill_template(t, subject) for t in GENERIC_OTHER_RELATIONS]
    probes = [Probe("rewrite", fill_template(prompt, subject))]
    probes += [Probe("paraphrase", p) for p in paraphrases]
    probes += [Probe("other relation", fill_template(p, subject) if "{}" in p else p) for p in others]
    probes += [Probe("other subject", p) for p in neighbours]
    return probes


def measure(adapter: Any, probes: list[Probe], target_new: str, target_true: str | None) -> list[dict[str, Any]]:
    """Top-1 next token and P(first token of target_new / target_true) for each probe."""
    from factscope.scoring import continuation_ids, next_token_logprobs

    logprobs = next_token_logprobs(adapter, [p.prompt for p in probes])
    rows = []
    for probe, lp in zip(probes, logprobs):
        probs = lp.exp()
        top = int(probs.argmax())
        row = {"kind": probe.kind, "prompt": probe.prompt, "top": adapter.tokenizer.decode([top]), "p_top": float(probs[top])}
        row["p_new"] = float(probs[continuation_ids(adapter.tokenizer, probe.prompt, target_new)[0]])
        if target_true:
            row["p_true"] = float(probs[continuation_ids(adapter.tokenizer, probe.prompt, target_true)[0]])
        rows.append(row)
    return rows


def print_comparison(before: list[dict[str, Any]], after: list[dict[str, Any]], target_new: str) -> None:
    """A before → after table of top-1 predictions."""
    typer.echo(f"  {'':15} {'prompt':48} {'before':>22}   {'after':>22}   P({target_new.strip()}) before→after")
    for b, a in zip(before, after):
        changed = "*" if b["top"] != a["top"] else " "
        typer.echo(
            f"{changed} {b['kind']:15} {b['prompt'][:48]:48} {b['top']!r:>14} {b['p_top']:5.2f}   "
            f"{a['top']!r:>14} {a['p_top']:5.2f}   {b['p_new']:.3f} → {a['p_new']:.3f}"
        )
