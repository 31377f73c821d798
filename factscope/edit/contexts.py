"""Context prefixes (ROME): the bare prompt plus short texts the model itself generates.

Usage::

    templates = context_templates(adapter, lengths=[[5, 10], [10, 10]], seed=0)
    templates[0]                      # "{}"  (the bare prompt)
    templates[1]                      # e.g. "The city has a long. {}"
    fill_context(templates[1], "The mother tongue of {} is")   # a template with "{}" for the subject

Keys and values are averaged over these prefixed prompts so that an edit holds in
many contexts. Generated texts are cached as JSON under ``cache_dir()/contexts``,
keyed by model fingerprint, seed and lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from factscope.edit.generate import sample_token_ids
from factscope.io_utils import quarantine, read_json_cache, write_json_cache
from factscope.models.adapter import ModelAdapter
from factscope.paths import cache_dir

BARE = "{}"


def _clean(text: str) -> str:
    # Braces would be mistaken for the subject slot; newlines make odd prompts.
    return " ".join(text.replace("{", " ").replace("}", " ").split())


def fill_context(context: str, prompt_template: str) -> str:
    """Put a prompt template (with its own ``{}``) into a context template."""
    return context.replace(BARE, prompt_template, 1)


def context_templates(
    adapter: ModelAdapter,
    lengths: Sequence[Sequence[int]] = ((5, 10), (10, 10)),
    *,
    seed: int = 0,
    cache: bool = True,
    root: Path | None = None,
) -> list[str]:
    """``["{}"]`` followed by ``count`` generated texts of ``tokens`` tokens for each pair."""
    pairs = [(int(t), int(c)) for t, c in lengths]
    if not pairs or all(c == 0 for _, c in pairs):
        return [BARE]
    tag = "_".join(f"{t}x{c}" for t, c in pairs)
    path = (root or cache_dir() / "contexts") / f"{adapter.fingerprint}-s{seed}-{tag}.json"
    if cache:
        data = read_json_cache(path, "contexts cache")  # a damaged file is moved aside and recomputed
        if isinstance(data, list) and data and data[0] == BARE and all(isinstance(t, str) for t in data):
            return data
        if data is not None:
            quarantine(path, "not a list of context templates", "contexts cache")
    templates = [BARE]
    for index, (tokens, count) in enumerate(pairs):
        ids = sample_token_ids(adapter, count, tokens, seed=seed * 1000 + index, top_k=5)
        for row in ids:
            text = _clean(adapter.tokenizer.decode(row, skip_special_tokens=True))
            templates.append(f"{text}. {BARE}" if text else BARE)
    if cache:
        write_json_cache(path, templates)
    return templates
