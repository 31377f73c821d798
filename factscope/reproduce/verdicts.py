"""Claims and the rule that turns our numbers into a verdict.

Usage::

    c = compare_claim("RETS R-Specificity > ROME R-Specificity", paper="78.5 vs 41.1",
                      ours_a=stat_rets, ours_b=stat_rome, n=20, min_n=MIN_CASES)
    c.verdict   # "holds" | "does not hold" | "inconclusive (...)"

The rule (printed in every report, :data:`RULE`): a claim **holds** when the stated
comparison is true on our numbers, the sample has at least the stated minimum size,
and, where both sides carry a 95 % confidence interval, the difference is larger than
the combined half-width ``sqrt(ci_a² + ci_b²)``; it **does not hold** when the
comparison is false under the same conditions; otherwise it is **inconclusive** and
the reason is given (too few facts/cases, or a difference within the noise).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

HOLDS, FAILS = "holds", "does not hold"
MIN_FACTS = 20  # traced / lens facts below which a localisation claim is inconclusive
MIN_CASES = 20  # edited cases below which an editing claim is inconclusive

RULE = (
    "A claim **holds** when the comparison stated in the claim is true on our numbers, the sample "
    f"reaches the stated minimum (localisation: {MIN_FACTS} facts; editing: {MIN_CASES} cases), and, "
    "where both sides have a 95 % confidence interval, the difference exceeds the combined half-width "
    "sqrt(ci_a² + ci_b²). It **does not hold** when the comparison is false under the same conditions. "
    "Otherwise it is **inconclusive** and the reason is stated. Verdicts are computed from the numbers "
    "by `factscope.reproduce.verdicts`, never written by hand."
)


@dataclass
class Claim:
    """One paper claim checked on our numbers."""

    claim: str
    paper: str
    ours: str
    verdict: str
    why_not: str = ""  # why the claim may not transfer to this model / setting
    check: str = ""  # for a claim that does not hold: a one-line check of why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def judge(true: bool | None, n: int, min_n: int, *, noise: str | None = None) -> str:
    """The verdict for a boolean outcome on ``n`` units (``noise``: reason it is within the noise)."""
    if true is None:
        return "inconclusive (not measurable)"
    if n < min_n:
        return f"inconclusive (n = {n} < {min_n}; direction {'agrees' if true else 'disagrees'})"
    if noise:
        return f"inconclusive ({noise}; direction {'agrees' if true else 'disagrees'})"
    return HOLDS if true else FAILS


def compare(a: float | None, b: float | None, op: str, n: int, min_n: int,
            ci_a: float | None = None, ci_b: float | None = None) -> str:
    """Verdict of ``a op b`` (op ``>``, ``<``, ``>=``, ``<=``) under the rule above."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return judge(None, n, min_n)
    true = {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
    noise = None
    if ci_a is not None and ci_b is not None:
        width = math.sqrt(ci_a**2 + ci_b**2)
        if abs(a - b) <= width:
            noise = f"|difference| {abs(a - b):.3g} ≤ combined 95 % CI {width:.3g}"
    return judge(true, n, min_n, noise=noise)


def gap_check(a: float, b: float, ci_a: float | None, ci_b: float | None, n: int, scale: float = 100.0) -> str:
    """One line on a failed comparison: the observed gap against its combined half-width."""
    width = math.sqrt((ci_a or 0.0) ** 2 + (ci_b or 0.0) ** 2)
    return (f"observed difference {scale * (a - b):+.1f} against a combined 95 % half-width of {scale * width:.1f} "
            f"at n = {n}: the opposite direction is measured, not noise")


def is_positive(verdict: str) -> bool:
    return verdict == HOLDS


def tally(claims: list[Claim]) -> dict[str, int]:
    """How many claims hold, do not hold, are inconclusive."""
    out = {HOLDS: 0, FAILS: 0, "inconclusive": 0}
    for c in claims:
        key = c.verdict if c.verdict in (HOLDS, FAILS) else "inconclusive"
        out[key] += 1
    return out


__all__ = ["Claim", "FAILS", "HOLDS", "MIN_CASES", "MIN_FACTS", "RULE", "compare", "gap_check", "judge", "tally", "_fmt"]
