"""Padded batches of token rows: the one pad-id rule, attention masks and position ids.

Usage::

    batch = pad_batch([[5, 6, 7], [8, 9]], pad_id(tokenizer), left=True)
    batch.input_ids, batch.attention_mask, batch.position_ids   # [[5,6,7],[p,8,9]], [[1,1,1],[0,1,1]], [[0,1,2],[0,0,1]]
    batch = encode_texts(tokenizer, ["The capital of France is", "Paris is"])   # right-padded

Every padded batch factscope feeds a model is built here. Padding never changes a
real token's result: padded positions are masked out of attention, and with left
padding (or rows that continue a cached prefix) explicit position ids keep each
token's position what it would be in its row alone. Right-padded rows that start at
position 0 need no position ids (the model's default ``0..T-1`` is already right), so
``position_ids`` is ``None`` for them and the model computes exactly what it did before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

_PAD_SOURCES = ("pad_token_id", "eos_token_id", "bos_token_id")


def pad_id(tokenizer: Any) -> int:
    """The id padded positions hold: the tokenizer's PAD, else EOS, else BOS, else 0.

    The value cannot change a real token's result (padding is masked); one rule keeps
    padded batches identical wherever they are built.
    """
    for name in _PAD_SOURCES:
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def positions_from_mask(attention_mask: torch.Tensor, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """Position of every token counted over the real tokens of its row, from ``offset`` (pads get 0 or the last)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0) + offset


@dataclass
class Batch:
    """``input_ids`` and ``attention_mask`` ``[rows, width]``; ``position_ids`` when the default would be wrong."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per row."""
        return self.attention_mask.sum(dim=1)

    @property
    def last_index(self) -> torch.Tensor:
        """Index of each row's last real token (right padding)."""
        return self.lengths - 1

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.position_ids))

    def rows(self, index: torch.Tensor) -> "Batch":
        """The batch of rows ``index`` (in that order)."""
        pick = lambda t: None if t is None else t[index.to(t.device)]  # noqa: E731
        return Batch(pick(self.input_ids), pick(self.attention_mask), pick(self.position_ids))


def pad_rows(seqs: Sequence[Sequence[int]], pad: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as ``input_ids`` and ``attention_mask`` ``[len(seqs), max(1, longest)]`` (empty rows: all padding)."""
    width = max(1, max((len(s) for s in seqs), default=0))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if not len(seq):
            continue
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def pad_batch(
    seqs: Sequence[Sequence[int]], pad: int, *, left: bool = False, offsets: Sequence[int] | None = None
) -> Batch:
    """A padded :class:`Batch`; ``offsets`` = position of each row's first token (rows after a cached prefix).

    Position ids are set for left padding and for offsets, else left to the model.
    """
    ids, mask = pad_rows(seqs, pad, left=left)
    positions = None
    if left or offsets is not None:
        start = torch.zeros(len(seqs), 1, dtype=torch.long)
        if offsets is not None:
            start = torch.as_tensor(list(offsets), dtype=torch.long).reshape(-1, 1)
        # Right-padded rows after a prefix: the suffix token j sits at offset + j.
        positions = positions_from_mask(mask, start) if left else start + torch.arange(ids.shape[1])
    return Batch(ids, mask, positions)


def encode_texts(tokenizer: Any, texts: Sequence[str], *, left: bool = False) -> Batch:
    """Tokenize ``texts`` (special tokens as the tokenizer adds them) into a padded :class:`Batch`."""
    ids = tokenizer(list(texts))["input_ids"]
    return pad_batch(ids, pad_id(tokenizer), left=left)
