"""MEND training examples from COUNTERFACT (original or flattened) or zsRE files, in a resumable order.

Usage::

    examples = load_examples("../shared/data/counterfact/counterfact-train.json", adapter)
    train, val = split_examples(examples, val_size=50)
    order = DataOrder(len(train), seed=0)
    order.batch(step=12, size=2)                # example indices of training step 12

An example is an edit request, the prompts that should give its new target after
the edit (paraphrases / rephrased question) and unrelated prompts whose predictions
should not change (neighbourhood prompts / zsRE ``loc`` questions). The data order
is a fresh seeded permutation per epoch, a pure function of (seed, step): a resumed
run needs only the step count to continue where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from factscope.datasets import DatasetFormatError, load_cases
from factscope.datasets.records import Case, EditCase
from factscope.models.adapter import ModelAdapter
from factscope.requests import EditRequest, EditRequestError


class MENDDataError(ValueError):
    """A training file MEND cannot train on; the message names the file."""


@dataclass(frozen=True)
class MENDExample:
    """One training edit with its equivalence and locality prompts."""

    request: EditRequest
    equivalents: tuple[str, ...]  # filled prompts that should give target_new after the edit
    unrelated: tuple[str, ...]  # prompts whose next-token distributions should not change


def example_from_case(case: Case) -> MENDExample:
    if isinstance(case, EditCase):
        return MENDExample(case.request, tuple(case.paraphrase_prompts), tuple(case.neighborhood_prompts))
    return MENDExample(case.request, tuple(p for p in [case.rephrase_prompt] if p), tuple(p for p in [case.loc_prompt] if p))


def load_examples(path: str | Path, adapter: ModelAdapter | None = None, *, format: str = "auto",
                  n: int | None = None) -> list[MENDExample]:
    """Examples of a COUNTERFACT/zsRE file; with ``adapter`` every request is checked against its tokenizer."""
    path = Path(path)
    if not path.is_file():
        raise MENDDataError(f"MEND training file {path} does not exist.")
    try:
        cases = load_cases(path, format=format, n=n)
    except (DatasetFormatError, OSError, ValueError) as err:
        raise MENDDataError(f"MEND training file {path}: {err}") from None
    examples = [example_from_case(c) for c in cases]
    if adapter is not None:
        for i, ex in enumerate(examples):
            try:
                ex.request.validate(adapter)
            except EditRequestError as err:
                raise MENDDataError(f"MEND training file {path}, record {i}: {err}") from None
    if not any(ex.unrelated for ex in examples):
        raise MENDDataError(f"MEND training file {path} has no unrelated prompts (neighbourhood / loc) for the locality loss.")
    return examples


def split_examples(examples: list[MENDExample], val_size: int) -> tuple[list[MENDExample], list[MENDExample]]:
    """The last ``val_size`` examples are held out for validation (at least one stays for training)."""
    val_size = min(val_size, len(examples) - 1)
    if val_size <= 0:
        return list(examples), []
    return list(examples[:-val_size]), list(examples[-val_size:])


class DataOrder:
    """Which examples each step edits: epoch e visits a permutation seeded by (seed, e)."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("No training examples.")
        self.n = n
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=generator).tolist()}
        return self._perms[epoch]

    def batch(self, step: int, size: int) -> list[int]:
        return [self._perm(p // self.n)[p % self.n] for p in range(step * size, (step + 1) * size)]
