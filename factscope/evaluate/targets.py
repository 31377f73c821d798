"""Teacher-forced scoring of many (prompt, target) pairs in few forward passes.

Usage::

    scores = score_targets(adapter, [("The capital of France is", "Paris"), ...])
    scores[0].nll          # mean per-token NLL (ROME's multi-token comparison)
    scores[0].prob         # exp(-nll): the per-token geometric-mean probability
    scores[0].exact        # every target token is the model's top-1 under teacher forcing
    scores[0].token_accuracy, scores[0].top1

Targets follow ``factscope.scoring``'s convention (``prompt + " " + target``; token ids
from ``continuation_ids``). Pairs that share a prompt share a row when their targets allow it
(see ``_pack_rows``); rows are sorted by length and packed into batches, so a whole
case is scored in one or two forwards. ``factscope.scoring.target_token_logprobs``
gives the same log-probs pair by pair (tested).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from factscope.hooks import Site, SiteTrace
from factscope.models.adapter import ModelAdapter
from factscope.models.batch import Batch, encode_texts, pad_batch, pad_id, positions_from_mask
from factscope.models.forward import forward_inputs
from factscope.scoring import continuation_ids


@dataclass(frozen=True)
class TargetScore:
    """Teacher-forced result for one (prompt, target) pair."""

    target_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # log P(target token t | prompt, target tokens < t)
    top1: tuple[int, ...]  # the model's argmax at the same positions

    @property
    def nll(self) -> float:
        return -sum(self.logprobs) / len(self.logprobs)

    @property
    def prob(self) -> float:
        return math.exp(-self.nll)

    @property
    def matches(self) -> list[bool]:
        return [a == b for a, b in zip(self.top1, self.target_ids)]

    @property
    def exact(self) -> bool:
        return all(self.matches)

    @property
    def token_accuracy(self) -> float:
        return sum(self.matches) / len(self.matches)


@dataclass
class _Row:
    prompt_ids: list[int]
    carrier: list[int]  # target tokens appended to the prompt in this row
    members: list[int]  # indices of the pairs read off this row

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.carrier)


def _pack_rows(tokenizer, pairs: Sequence[tuple[str, str]]) -> tuple[list[_Row], list[list[int]]]:  # type: ignore[no-untyped-def]
    """One row per prompt and target family: a target whose tokens but the last are a
    prefix of a row's appended target is read off that row (every target token then
    sees exactly the context it would see alone), so (prompt, o) and (prompt, o*) with
    one-token targets cost one sequence."""
    prompt_cache: dict[str, list[int]] = {}
    targets = [continuation_ids(tokenizer, p, t) for p, t in pairs]
    rows: list[_Row] = []
    by_prompt: dict[str, list[_Row]] = {}
    for i in sorted(range(len(pairs)), key=lambda i: -len(targets[i])):
        prompt = pairs[i][0]
        if prompt not in prompt_cache:
            prompt_cache[prompt] = tokenizer(prompt)["input_ids"]
        t_ids = targets[i]
        for row in by_prompt.get(prompt, []):
            if t_ids[:-1] == row.carrier[: len(t_ids) - 1]:
                row.members.append(i)
                break
        else:
            row = _Row(prompt_cache[prompt], t_ids, [i])
            rows.append(row)
            by_prompt.setdefault(prompt, []).append(row)
    return rows, targets


@torch.no_grad()
def score_targets(
    adapter: ModelAdapter, pairs: Sequence[tuple[str, str]], *, max_tokens_per_batch: int = 4096
) -> list[TargetScore]:
    """Score every pair; batches hold at most ``max_tokens_per_batch`` padded tokens."""
    tokenizer = adapter.tokenizer
    rows, targets = _pack_rows(tokenizer, pairs)
    last_site = Site("resid", adapter.n_layers - 1)
    rows.sort(key=lambda r: r.length)
    results: list[TargetScore | None] = [None] * len(pairs)
    pad = pad_id(tokenizer)
    start = 0
    while start < len(rows):
        # Grow the batch while the padded size (rows × longest row) stays within budget.
        stop = start + 1
        while stop < len(rows) and rows[stop].length * (stop - start + 1) <= max_tokens_per_batch:
            stop += 1
        batch = rows[start:stop]
        padded = pad_batch([row.prompt_ids + row.carrier for row in batch], pad)
        # Run the layers only; the head is applied to the target positions alone (most
        # positions are prompt tokens whose logits nobody needs).
        with SiteTrace(adapter, read=[last_site], stop=True) as trace:
            adapter.model(**forward_inputs(adapter.model, padded, device=adapter.device))
        hidden = trace[str(last_site)]
        spans = [(b, len(row.prompt_ids) - 1, len(row.carrier)) for b, row in enumerate(batch)]
        picked_hidden = torch.cat([hidden[b, first : first + n] for b, first, n in spans])
        logprobs = torch.log_softmax(adapter.project_to_vocab(picked_hidden).float(), dim=-1)
        offset = 0
        for (b, first, n), row in zip(spans, batch):
            row_lp = logprobs[offset : offset + n]
            offset += n
            top1 = row_lp.argmax(dim=-1).tolist()
            for i in row.members:
                t_ids = targets[i]
                picked = row_lp[torch.arange(len(t_ids)), torch.tensor(t_ids, device=row_lp.device)]
                results[i] = TargetScore(tuple(t_ids), tuple(picked.tolist()), tuple(top1[: len(t_ids)]))
        start = stop
    return results  # type: ignore[return-value]


FUNCTION_WORDS = frozenset(
    """a an the of in on at to for by with from and or as its his her their this that these those is was are were
    be been being it he she they we you i also which who whom whose one not no very more most some many all both
    each such into about over under between after before during than then there here our your my has have had
    known called located based""".split()
)


def greedy_object(adapter: ModelAdapter, prompts: Sequence[str], *, max_tokens: int = 6) -> list[str]:
    """The unedited model's greedy continuation of each prompt through its first content word.

    Greedy-decodes ``max_tokens`` tokens (batched, left-padded), strips leading
    whitespace and keeps the text up to the end of the first word that is not a
    function word (``FUNCTION_WORDS``), e.g. "the southern" or "Chinese". Returns ""
    when a punctuation mark or line break comes first, or no content word appears.
    """
    if not prompts:
        return []
    tokenizer = adapter.tokenizer
    with torch.no_grad():
        enc = encode_texts(tokenizer, prompts, left=True).to(adapter.device)
        ids, mask = enc.input_ids, enc.attention_mask
        generated = []
        for _ in range(max_tokens):
            # The whole rows each step (no cache), with positions that skip the left padding.
            batch = Batch(ids, mask, positions_from_mask(mask))
            logits = adapter.model(**forward_inputs(adapter.model, batch)).logits.float()
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            generated.append(nxt)
            ids = torch.cat([ids, nxt], dim=1)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
        gen = torch.cat(generated, dim=1).tolist()
    return [first_content_phrase(tokenizer.decode(row, skip_special_tokens=True)) for row in gen]


_WORD = re.compile(r"[^\s.,;:!?\"()\[\]{}<>|/\\]+")


def first_content_phrase(text: str) -> str:
    """``" the southern part"`` → ``"the southern"``; "" if punctuation or a line break comes first."""
    text = text.lstrip(" ")
    pos = 0
    while True:
        match = _WORD.match(text, pos)
        if match is None:
            return ""
        word = match.group(0)
        if word.lower() not in FUNCTION_WORDS and any(ch.isalnum() for ch in word):
            return text[: match.end()]
        pos = match.end()
        if text[pos : pos + 1] != " ":
            return ""
        pos += 1


REFERENCE_TOP_K = 20  # evaluate_rs.py's k


def pick_reference_o2(logits: torch.Tensor, decode, *, k: int = REFERENCE_TOP_K) -> list[int]:  # type: ignore[no-untyped-def]
    """The reference rule's o2 per row of next-token ``logits`` (``[n, vocab]``): the first of the
    top-``k`` tokens whose text (``decode(id)``, spaces stripped) is neither blank nor a stop word;
    the top-1 token when all ``k`` are."""
    from factscope.evaluate.stopwords import is_reference_stopword

    picked = []
    for row in logits:
        top = torch.topk(row.float(), min(k, row.shape[-1])).indices.tolist()
        picked.append(next((t for t in top if not is_reference_stopword(decode(t))), top[0]))
    return picked


def reference_o2(adapter: ModelAdapter, prompts: Sequence[str], *, k: int = REFERENCE_TOP_K) -> list[tuple[int, str]]:
    """``(token id, token text)`` of the reference o2 of each prompt on the current (unedited) model."""
    if not prompts:
        return []
    from factscope.scoring import next_token_logprobs

    tokenizer = adapter.tokenizer
    ids = pick_reference_o2(next_token_logprobs(adapter, list(prompts)), lambda t: tokenizer.decode([t]), k=k)
    return [(t, tokenizer.decode([t])) for t in ids]
