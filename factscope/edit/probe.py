"""A cheap check, after every edit, that the edit did not wreck the model.

Usage::

    report = side_effect_probe(adapter, delta, requests)     # the model is left unchanged
    print(report.summary())
    report.wrecked, report.reasons                            # True and why, for a destructive edit

The probe compares the model with and without ``delta`` on a handful of prompts:
neutral prompts of other relations, and each request's own prompt filled with other
subjects (a few requests at most), plus the perplexity of a short neutral text.
It flags an edit as destructive when the neutral text's perplexity grows by more
than ``PPL_RATIO_LIMIT``, when the top-1 token of most neutral prompts changes, or
when the target becomes the confident top-1 token for most other subjects (the edit
leaked into the whole relation). It costs four small forward passes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from factscope.edit.delta import WeightDelta
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter
from factscope.scoring import continuation_ids, next_token_logprobs
from factscope.tokens import fill_template

NEUTRAL_PROMPTS = (
    "The capital of Japan is",
    "The Eiffel Tower is located in",
    "Water is made of hydrogen and",
    "The first president of the United States was",
    "A week has seven",
    "The largest planet in the solar system is",
)
OTHER_SUBJECTS = ("Albert Einstein", "Tokyo", "Toyota", "Leo Tolstoy", "the Amazon River", "Taylor Swift")
NEUTRAL_TEXT = (
    "The river flows through a wide valley before it reaches the sea. In spring the snow on the "
    "mountains melts, and farmers plant wheat along its banks."
)
PPL_RATIO_LIMIT = 1.5  # a local edit moves the neutral text's perplexity by a few per cent
MAJORITY = 0.5
# An other subject counts as overwritten when the target becomes its confident top-1: a weak top-1
# (e.g. "The mother tongue of Toyota is" -> " English" at 0.3) is a nudge, not a leak.
LEAK_PROBABILITY = 0.5
MAX_REQUESTS_PROBED = 4


PROBE_MODES = ("warn", "strict", "record", "off")


class EditSideEffectError(RuntimeError):
    """An edit whose side-effect probe says it wrecked the model (raised in strict mode)."""


class EditSideEffectWarning(UserWarning):
    """A side-effect probe flagged an edit as destructive (``probe="warn"``)."""


@dataclass
class SideEffectReport:
    """Top-1 tokens, target probabilities and perplexity without and with an edit."""

    prompts: list[str]
    kinds: list[str]  # "neutral" or "other subject"
    top1_before: list[str]
    top1_after: list[str]
    target_prob_before: list[float]
    target_prob_after: list[float]
    target_is_top1_after: list[bool]
    perplexity_before: float
    perplexity_after: float
    reasons: list[str] = field(default_factory=list)

    @property
    def wrecked(self) -> bool:
        return bool(self.reasons)

    @property
    def perplexity_ratio(self) -> float:
        return self.perplexity_after / self.perplexity_before if self.perplexity_before > 0 else math.inf

    def changed(self, kind: str) -> tuple[int, int]:
        """(prompts of ``kind`` whose top-1 changed, prompts of ``kind``)."""
        rows = [i for i, k in enumerate(self.kinds) if k == kind]
        return sum(self.top1_before[i] != self.top1_after[i] for i in rows), len(rows)

    def summary(self) -> str:
        """A few lines for a terminal."""
        neutral, n_neutral = self.changed("neutral")
        other, n_other = self.changed("other subject")
        leaked = self.leaked()
        lines = [
            f"side-effect probe: top-1 changed on {neutral}/{n_neutral} neutral and {other}/{n_other} other-subject "
            f"prompts; target top-1 on {leaked}/{n_other} other subjects; neutral-text perplexity "
            f"{self.perplexity_before:.2f} -> {self.perplexity_after:.2f} (x{self.perplexity_ratio:.2f})",
        ]
        lines += [f"  WARNING: {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "wrecked": self.wrecked, "perplexity_ratio": self.perplexity_ratio}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SideEffectReport":
        """The report stored by :meth:`to_dict` (e.g. in a delta's metadata)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def leaked(self) -> int:
        """Other-subject prompts whose top-1 after the edit is the target."""
        return sum(t for t, k in zip(self.target_is_top1_after, self.kinds) if k == "other subject")


@torch.no_grad()
def _perplexity(adapter: ModelAdapter, text: str) -> float:
    ids = adapter.tokenizer(text)["input_ids"][: adapter.max_positions or None]
    ids = torch.tensor([ids], device=adapter.device)
    logits = adapter.model(input_ids=ids).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:])
    return float(nll.exp())


def _probe_prompts(requests: Sequence[EditRequest]) -> tuple[list[str], list[str], list[int]]:
    """Prompts, their kinds and the index of the request whose target each one watches."""
    probed = list(requests[:MAX_REQUESTS_PROBED])
    own = {r.subject.strip().lower() for r in requests}
    others = [s for s in OTHER_SUBJECTS if s.lower() not in own][:3]
    prompts = list(NEUTRAL_PROMPTS)
    kinds = ["neutral"] * len(prompts)
    watched = [0] * len(prompts)
    for i, request in enumerate(probed):
        for subject in others:
            prompts.append(fill_template(request.prompt, subject))
            kinds.append("other subject")
            watched.append(i)
    return prompts, kinds, watched


def _top1_and_target(adapter: ModelAdapter, prompts: list[str], target_ids: list[int]) -> tuple[list[str], list[float], list[bool]]:
    logprobs = next_token_logprobs(adapter, prompts)
    top = logprobs.argmax(-1)
    probs = logprobs.exp()
    names = [adapter.tokenizer.decode([int(i)]) for i in top]
    target_p = [float(probs[j, t]) for j, t in enumerate(target_ids)]
    is_top = [int(top[j]) == t for j, t in enumerate(target_ids)]
    return names, target_p, is_top


def side_effect_probe(adapter: ModelAdapter, delta: WeightDelta, requests: Sequence[EditRequest]) -> SideEffectReport:
    """Compare the model without and with ``delta`` (applied for the probe only)."""
    prompts, kinds, watched = _probe_prompts(requests)
    target_ids = [continuation_ids(adapter.tokenizer, p, requests[w].target_new)[0] for p, w in zip(prompts, watched)]
    before = _top1_and_target(adapter, prompts, target_ids)
    ppl_before = _perplexity(adapter, NEUTRAL_TEXT)
    with delta.applied(adapter):
        after = _top1_and_target(adapter, prompts, target_ids)
        ppl_after = _perplexity(adapter, NEUTRAL_TEXT)
    report = SideEffectReport(prompts, kinds, before[0], after[0], before[1], after[1], after[2], ppl_before, ppl_after)
    report.reasons = _verdict(report, before[2])
    return report


def _verdict(report: SideEffectReport, target_top1_before: list[bool]) -> list[str]:
    reasons = []
    if report.perplexity_ratio > PPL_RATIO_LIMIT:
        reasons.append(f"the perplexity of a neutral text grew x{report.perplexity_ratio:.2f} (limit x{PPL_RATIO_LIMIT})")
    neutral, n_neutral = report.changed("neutral")
    if n_neutral and neutral / n_neutral > MAJORITY:
        reasons.append(f"the top-1 token changed on {neutral}/{n_neutral} neutral prompts of other relations")
    rows = [i for i, k in enumerate(report.kinds) if k == "other subject"]
    leaked = sum(report.target_is_top1_after[i] and not target_top1_before[i]
                 and report.target_prob_after[i] >= LEAK_PROBABILITY for i in rows)
    if rows and leaked / len(rows) > MAJORITY:
        reasons.append(f"the target became the top-1 token, with P >= {LEAK_PROBABILITY}, for {leaked}/{len(rows)} "
                       "other subjects (the edit leaked into the whole relation)")
    return reasons


def check_side_effects(adapter: ModelAdapter, delta: WeightDelta, requests: Sequence[EditRequest], mode: str) -> None:
    """Probe ``delta`` and store the report in ``delta.metadata["side_effects"]``.

    A destructive edit warns (``mode="warn"``), raises :class:`EditSideEffectError`
    (``"strict"``) or is only recorded (``"record"``); ``"off"`` skips the probe.
    """
    check_probe_mode(mode)
    if mode == "off":
        return
    report = side_effect_probe(adapter, delta, requests)
    delta.metadata["side_effects"] = report.to_dict()
    if report.wrecked:
        message = "This edit looks destructive: " + "; ".join(report.reasons) + "."
        if mode == "strict":
            raise EditSideEffectError(message)

        if mode == "warn":
            warnings.warn(message, EditSideEffectWarning, stacklevel=3)


def check_probe_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`PROBE_MODES`, else a ``ValueError``."""
    if mode not in PROBE_MODES:
        raise ValueError(f"probe mode must be one of {', '.join(PROBE_MODES)}, not {mode!r}.")
    return mode



def side_effect_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a stored report (``SideEffectReport.to_dict()``) that a results line keeps."""
    parsed = SideEffectReport.from_dict(report)
    return {
        "wrecked": parsed.wrecked,
        "reasons": list(parsed.reasons),
        "perplexity_ratio": parsed.perplexity_ratio,
        "neutral_top1_changed": list(parsed.changed("neutral")),
        "other_subject_top1_changed": list(parsed.changed("other subject")),
        "other_subject_target_top1": parsed.leaked(),
    }
