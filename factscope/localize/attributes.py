"""Relation-related attribute token sets A(r) and the attributes rate (RETS, seed 000).

Usage::

    sets = AttributeSets.from_file(adapter.tokenizer, "relation_related_attributes.json")
    a_r = sets.ids("P103")                            # frozenset of token ids
    attributes_rate(top_ids=[11, 42, 7], attribute_ids=a_r)   # |top-k ∩ A(r)| / k

Tokenisation rule (RETS' released analysis code): every attribute string is
tokenised as it appears mid-sentence, i.e. after a space (``" French"``), and **all**
of its tokens enter A(r) — ``"Los Angeles"`` contributes ``" Los"`` and ``" Angeles"``.
Set membership is by token id. ``mode="first"`` keeps only each string's first token
(an option, not the paper's rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from factscope.scoring import EmptyTargetError, continuation_ids

# A neutral left context: the attribute is tokenised as the word that follows it.
_CONTEXT = "is"
ATTRIBUTE_TOKEN_MODES = ("all", "first")


class UnknownRelationError(KeyError):
    """A relation id that has no attribute set."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0])


def attribute_token_ids(tokenizer: Any, strings: Iterable[str], mode: str = "all") -> frozenset[int]:
    """Token ids of attribute ``strings`` as they follow a space (all tokens, or the first)."""
    if mode not in ATTRIBUTE_TOKEN_MODES:
        raise ValueError(f"Unknown attribute token mode {mode!r}; expected one of {ATTRIBUTE_TOKEN_MODES}.")
    ids: set[int] = set()
    for text in strings:
        try:
            tokens = continuation_ids(tokenizer, _CONTEXT, text)
        except EmptyTargetError:
            continue  # an empty attribute string contributes nothing
        ids.update(tokens if mode == "all" else tokens[:1])
    return frozenset(ids)


class AttributeSets:
    """Lazily tokenised A(r) for every relation of a ``relation_id -> [strings]`` mapping."""

    def __init__(self, tokenizer: Any, mapping: Mapping[str, Sequence[str]], mode: str = "all") -> None:
        if mode not in ATTRIBUTE_TOKEN_MODES:
            raise ValueError(f"Unknown attribute token mode {mode!r}; expected one of {ATTRIBUTE_TOKEN_MODES}.")
        self.tokenizer = tokenizer
        self.mapping = {str(k): list(v) for k, v in mapping.items()}
        self.mode = mode
        self._ids: dict[str, frozenset[int]] = {}
        self._masks: dict[str, torch.Tensor] = {}

    @classmethod
    def from_file(cls, tokenizer: Any, path: str | Path, mode: str = "all") -> "AttributeSets":
        from factscope.datasets import load_relation_attributes

        return cls(tokenizer, load_relation_attributes(path), mode=mode)

    def __contains__(self, relation_id: object) -> bool:
        return relation_id in self.mapping

    @property
    def relations(self) -> list[str]:
        return sorted(self.mapping)

    def strings(self, relation_id: str) -> list[str]:
        """The attribute strings of ``relation_id``."""
        self._check(relation_id)
        return self.mapping[relation_id]

    def ids(self, relation_id: str) -> frozenset[int]:
        """A(r) as token ids."""
        self._check(relation_id)
        if relation_id not in self._ids:
            self._ids[relation_id] = attribute_token_ids(self.tokenizer, self.mapping[relation_id], self.mode)
        return self._ids[relation_id]

    def mask(self, relation_id: str, vocab_size: int) -> torch.Tensor:
        """A(r) as a boolean vector over the vocabulary (``[vocab_size]``, CPU)."""
        key = f"{relation_id}\0{vocab_size}"
        if key not in self._masks:
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            ids = [i for i in self.ids(relation_id) if i < vocab_size]
            mask[torch.tensor(ids, dtype=torch.long)] = True
            self._masks[key] = mask
        return self._masks[key]

    def contains_string(self, relation_id: str, text: str) -> bool:
        """Whether ``text`` is one of the relation's attribute strings (case-insensitive)."""
        wanted = text.strip().casefold()
        return any(s.strip().casefold() == wanted for s in self.strings(relation_id))

    def _check(self, relation_id: str) -> None:
        if relation_id not in self.mapping:
            known = ", ".join(self.relations[:30])
            raise UnknownRelationError(
                f"Relation {relation_id!r} has no attribute set; known relations: {known}"
                + (" ..." if len(self.mapping) > 30 else "")
            )


def attributes_rate(top_ids: Sequence[int] | torch.Tensor, attribute_ids: Iterable[int]) -> float:
    """``AR = |top-k ∩ A(r)| / k`` for one list of top-k token ids (k = its length)."""
    top = [int(i) for i in (top_ids.tolist() if torch.is_tensor(top_ids) else top_ids)]
    if not top:
        raise ValueError("attributes_rate needs at least one top-k token.")
    attrs = set(int(i) for i in attribute_ids)
    return sum(1 for i in set(top) if i in attrs) / len(top)


def attributes_rate_batch(top_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """AR for every row of ``top_ids`` (``[..., k]``) against a vocabulary mask; returns ``[...]``."""
    return mask.to(top_ids.device)[top_ids].float().mean(dim=-1)
