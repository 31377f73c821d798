"""The power calculation behind the ``standard`` preset: the n at which each claim can be decided.

Usage::

    from factscope.reproduce.power import PLANS, required_n, family_sizes
    required_n(PLANS[0])        # smallest n deciding that claim, None when no affordable n does
    family_sizes()              # {"eval_cases": 74, ...}: the n each size field needs
    print(power_table(sizes=preset("standard")))   # the table in docs/reproduction.md

The verdict rule (:mod:`factscope.reproduce.verdicts`) decides a two-sided claim when
the sample reaches its minimum and ``|a − b|`` exceeds the combined 95 % half-width
``t(0.975, n−1)·sqrt(sd_a² + sd_b²)/√n``. For each claim the planned means ``a`` and
``b`` come from our earlier measurements (quick run, docs/evaluation.md) or, where we
have none, from the paper's difference applied to our level; the per-unit standard
deviations from the measured 95 % half-widths, or, for a rate in [0, 1] without one,
the bound ``sqrt(m(1 − m))`` that any variable in [0, 1] with mean ``m`` respects. The
required n is the smallest with ``MARGIN × half-width < |a − b|``. A claim without
confidence intervals (localisation, scores) needs only its minimum, times
``MARGIN``, divided by the share of units that count (``yield_``: only correctly
predicted objects count for "objects included"). Claims whose planned difference is
too small for any n up to :data:`CAP` are reported as not decidable at affordable
sizes; they stay inconclusive in a standard run unless our effect is larger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from factscope.reproduce.verdicts import MIN_CASES, MIN_FACTS

MARGIN = 1.25  # the planned difference must exceed the half-width by 25 %
CAP = 1000  # largest n considered affordable for one claim on the 2-core CPU
MIN_KNOCKOUT = 10  # as factscope.reproduce.lens (imported lazily there; kept equal, see the test)
EVAL_MD = "docs/evaluation.md, 200 single edits (editor defaults)"
PERSPECTIVE_MD = "docs/evaluation.md, seed 001 perspectives, 100 cases"
KN_MEND_MD = "docs/evaluation.md, KN (bare prompt) and MEND, 100 cases per perspective"
BATCH_MD = "docs/evaluation.md, 1,000-fact batch"
QUICK_MD = "docs/reproduction/quick (n = 2-40)"


@dataclass(frozen=True)
class Plan:
    """One claim's planning numbers (means as fractions; ``ci_*`` measured 95 % half-widths at ``n_measured``)."""

    artefact: str
    size: str  # the Sizes field that sets this claim's n
    claim: str
    a: float | None = None
    b: float | None = None
    ci_a: float | None = None
    ci_b: float | None = None
    n_measured: int = 0
    source: str = ""
    min_n: int = MIN_CASES
    with_ci: bool = True  # False: the verdict compares without intervals (n needs only min_n)
    yield_: float = 1.0  # share of units that count towards n

    def sd(self, side: str) -> float:
        """Per-unit standard deviation of side ``a`` or ``b``."""
        mean, ci = (self.a, self.ci_a) if side == "a" else (self.b, self.ci_b)
        assert mean is not None
        if ci is not None and self.n_measured > 1:
            return ci * math.sqrt(self.n_measured) / t975(self.n_measured - 1)
        return math.sqrt(max(mean * (1 - mean), 0.0))


def t975(df: int) -> float:
    """Student's t quantile at 0.975 (as the summaries' intervals use)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def half_width(plan: Plan, n: int) -> float:
    """The combined 95 % half-width of ``plan``'s two means at ``n`` units each."""
    return t975(n - 1) * math.hypot(plan.sd("a"), plan.sd("b")) / math.sqrt(n)


def required_n(plan: Plan, margin: float = MARGIN, cap: int = CAP) -> int | None:
    """Smallest number of units deciding ``plan`` (see module docstring), or None above ``cap``."""
    floor = math.ceil(plan.min_n * margin)
    if not plan.with_ci:
        return math.ceil(floor / plan.yield_)
    assert plan.a is not None and plan.b is not None
    diff = abs(plan.a - plan.b)
    n = max(floor, 2)
    while n <= cap:
        if margin * half_width(plan, n) < diff:
            return math.ceil(n / plan.yield_)
        n += 1
    return None


def _pair(artefact: str, size: str, claim: str, a: tuple[float, float | None], b: tuple[float, float | None],
          n: int, source: str) -> Plan:
    return Plan(artefact, size, claim, a[0], b[0], a[1], b[1], n, source)


# Means and 95 % half-widths as fractions. Sources named per claim.
PLANS: tuple[Plan, ...] = (
    Plan("rets_table1", "trace_facts", "lr largest AIER (MLP / attention), ≥ 2× others", min_n=MIN_FACTS, with_ci=False),
    Plan("rets_fig2", "trace_facts", "peaks at lr; rp small; MLP peak middle-late", min_n=MIN_FACTS, with_ci=False),
    Plan("seed001_fig2", "trace_facts", "final-token h, MLP layer order, attention peak", min_n=MIN_FACTS, with_ci=False),
    Plan("seed001_fig3", "severed_facts", "severing MLP and attention each lowers AIE", min_n=MIN_FACTS, with_ci=False),
    Plan("rets_fig3_table2", "lens_facts", "AR rise, Spearman, rank flow", min_n=MIN_FACTS, with_ci=False),
    Plan("rets_fig3_table2", "lens_facts", "objects included (only correctly predicted objects count: 6 of 40)",
         min_n=MIN_FACTS, with_ci=False, yield_=6 / 40, source=QUICK_MD),
    Plan("rets_fig3_table2", "knockout_facts", "MLP knock-out lowers AR more than MHSA", min_n=MIN_KNOCKOUT, with_ci=False),
    Plan("pmet_fig2", "dynamics_facts", "MHSA keeps changing; FFN stabilises", min_n=MIN_FACTS, with_ci=False),
    _pair("rets_table3", "eval_cases", "R-Spec. RETS > ROME", (0.787, 0.033), (0.684, 0.037), 200, EVAL_MD),
    Plan("rets_table3", "eval_cases", "R-Spec. RETS > PMET* (single layer; PMET* ≈ unedited, 100.0 on 3 cases)",
         0.787, 0.95, 0.033, None, 200, QUICK_MD + "; PMET* planned at 95 % with the [0, 1] bound"),
    _pair("rets_table3", "eval_cases", "S-Spec. RETS > RETS w/o SC", (0.373, 0.040), (0.243, 0.039), 200, EVAL_MD),
    _pair("rets_table3", "eval_cases", "Generalization RETS < ROME", (0.818, 0.045), (0.975, 0.015), 200, EVAL_MD),
    _pair("rets_table3", "eval_cases", "Efficacy RETS > unedited", (1.0, 0.0), (0.31, 0.065), 200, EVAL_MD),
    Plan("rets_fig5", "sweep_cases", "RETS late vs ROME best Score; mean R-Spec. over layers", with_ci=False),
    _pair("seed001_tables12", "perspective_cases", "ROME entity edits: relation Generality < entity Generality",
          (0.0, 0.0), (0.56, 0.079), 100, PERSPECTIVE_MD),
    _pair("seed001_tables12", "perspective_cases", "MEMIT entity edits: relation Generality < entity Generality",
          (0.0, 0.0), (0.27, 0.078), 100, PERSPECTIVE_MD),
    _pair("seed001_tables12", "perspective_cases", "FT-L entity edits: relation Generality < entity Generality (0 vs 0)",
          (0.0, 0.0), (0.0, 0.0), 100, PERSPECTIVE_MD),
    _pair("seed001_tables12", "perspective_cases", "ROME / MEMIT relation edits: relation Reliability > entity Reliability (0 vs 1)",
          (0.0, 0.0), (0.01, 0.02), 100, PERSPECTIVE_MD),
    _pair("seed001_tables12", "perspective_cases", "FT-L relation edits: relation Reliability > entity Reliability (0 vs 0)",
          (0.0, 0.0), (0.0, 0.0), 100, PERSPECTIVE_MD),
    _pair("seed001_tables12", "perspective_cases", "KN relation edits: relation Reliability > entity Reliability (6 vs 0)",
          (0.06, 0.047), (0.0, 0.0), 100, KN_MEND_MD),
    _pair("seed001_tables12", "perspective_cases", "KN entity edits: relation Generality < entity Generality (0 vs 3)",
          (0.0, 0.0), (0.03, 0.034), 100, KN_MEND_MD),
    _pair("seed001_tables12", "perspective_cases", "MEND relation edits: relation Reliability > entity Reliability (13 vs 1)",
          (0.13, 0.067), (0.01, 0.02), 100, KN_MEND_MD),
    _pair("seed001_tables12", "perspective_cases", "MEND entity edits: relation Generality < entity Generality (0 vs 33)",
          (0.0, 0.0), (0.33, 0.079), 100, KN_MEND_MD),
    _pair("pmet_table1", "batch_cases", "Efficacy PMET ≥ MEMIT", (0.682, 0.029), (0.787, 0.025), 1000, BATCH_MD),
    _pair("pmet_table1", "batch_cases", "Generalization PMET ≥ MEMIT", (0.609, 0.030), (0.713, 0.028), 1000, BATCH_MD),
    _pair("pmet_table1", "batch_cases", "Specificity PMET ≤ MEMIT", (0.666, 0.029), (0.651, 0.030), 1000, BATCH_MD),
    Plan("pmet_table1", "batch_cases", "Score PMET ≥ MEMIT (no interval)", with_ci=False),
    Plan("pmet_table3", "ablation_cases", "even spread lowers Generalization (paper −9.4 pp on our PMET's 60.9)",
         0.609 - 0.094, 0.609, source="PMET Table 3 difference; [0, 1] bound"),
    Plan("pmet_table3", "ablation_cases", "even spread raises Specificity (paper +2.1 pp on our 66.6)",
         0.666 + 0.021, 0.666, source="PMET Table 3 difference; [0, 1] bound"),
    Plan("pmet_table3", "ablation_cases", "w/ W_O MHSA: Generalization up 0.7, Specificity down 1.2 pp",
         0.609 + 0.007, 0.609, source="PMET Table 3 difference; [0, 1] bound"),
    Plan("pmet_table3", "ablation_cases", "w/o δ_attn: Efficacy not higher (paper −0.2 pp)",
         0.682 - 0.002, 0.682, source="PMET Table 3 difference; [0, 1] bound"),
)


# Claims the standard preset is not sized for: no n up to CAP decides them, or the n they need
# would take the run past its 4-hour budget (docs/reproduction.md). They stay inconclusive in a
# standard run unless our effect turns out larger than planned.
BEYOND_BUDGET = {
    "FT-L entity edits: relation Generality < entity Generality (0 vs 0)": "no n: both sides are 0",
    "ROME / MEMIT relation edits: relation Reliability > entity Reliability (0 vs 1)": "needs 613 cases per run",
    "FT-L relation edits: relation Reliability > entity Reliability (0 vs 0)": "no n: both sides are 0",
    "KN relation edits: relation Reliability > entity Reliability (6 vs 0)": "needs 96 cases per run",
    "KN entity edits: relation Generality < entity Generality (0 vs 3)": "needs 199 cases per run",
    "MEND relation edits: relation Reliability > entity Reliability (13 vs 1)": "needs 55 cases per run",
    "Specificity PMET ≤ MEMIT": "no n ≤ 1000: 1.5-point gap",
    "even spread lowers Generalization (paper −9.4 pp on our PMET's 60.9)": "needs 334 facts per batch; Table 3 shares Table 1's 250",
    "even spread raises Specificity (paper +2.1 pp on our 66.6)": "no n ≤ 1000",
    "w/ W_O MHSA: Generalization up 0.7, Specificity down 1.2 pp": "no n ≤ 1000",
    "w/o δ_attn: Efficacy not higher (paper −0.2 pp)": "no n ≤ 1000",
}


def family_sizes(plans: tuple[Plan, ...] = PLANS) -> dict[str, int]:
    """Per size field, the largest required n over its claims that the preset is sized for."""
    out: dict[str, int] = {}
    for plan in plans:
        n = required_n(plan)
        if n is not None and plan.claim not in BEYOND_BUDGET:
            out[plan.size] = max(out.get(plan.size, 0), n)
    return out


def power_table(plans: tuple[Plan, ...] = PLANS, sizes: Any = None) -> str:
    """Markdown: per claim its planned a vs b, per-unit sds, the required n and (with ``sizes``) the preset's n."""
    head = ["artefact", "size", "claim", "planned a vs b", "sd a, b", "required n", *(["n in " + sizes.name] if sizes else []), "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in plans:
        n = required_n(p)
        if p.with_ci:
            ab = f"{100 * p.a:.1f} vs {100 * p.b:.1f}"  # type: ignore[operator]
            sds = f"{p.sd('a'):.2f}, {p.sd('b'):.2f}"
        else:
            ab, sds = "no interval", "–"
        need = f"> {CAP} (not decidable at affordable n)" if n is None else str(n)
        have = []
        if sizes is not None:
            got = sizes.n_ablation if p.size == "ablation_cases" else getattr(sizes, p.size)
            have = [f"{got}" + (f" (beyond budget: {BEYOND_BUDGET[p.claim]})" if p.claim in BEYOND_BUDGET else "")]
        cells = [f"`{p.artefact}`", f"`{p.size}`", p.claim, ab, sds, need, *have, p.source or "verdict minimum"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
