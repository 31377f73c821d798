"""The Markdown report: header (command, model, data hashes, version, timings), then one section per artefact.

Usage::

    write_report(out, results, header)      # out/report.md, figures linked relative to out/
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factscope.reproduce.artefact import ArtefactResult
from factscope.reproduce.power import BEYOND_BUDGET, PLANS, required_n
from factscope.reproduce.verdicts import RULE, tally
from factscope.io_utils import atomic_write_text

REPORT_NAME = "report.md"


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _why(claim: Any) -> str:
    check = getattr(claim, "check", "")
    return (f"**Check:** {_esc(check)}. " if check else "") + _esc(claim.why_not)


def render_report(results: Sequence[ArtefactResult], header: dict[str, Any]) -> str:
    lines = [f"# Reproduction report — {header['model']}", ""]
    lines += [
        f"* **Command:** `{header['command']}`",
        f"* **Model:** {header['model']} (fingerprint `{header['fingerprint']}`, {header['n_layers']} layers)",
        f"* **factscope version:** {header['version']}",
        f"* **Date:** {header['date']}",
        f"* **Sizes preset:** {header['sizes']['name']} (all sizes in `run.json`)",
        f"* **Total wall time:** {header['total_seconds']:.0f} s this invocation; "
        f"{sum(header['seconds'].get(r.name, r.seconds) for r in results):.0f} s summed over the artefacts' own wall "
        "times (including invocations that computed them earlier)",
        "* **Data files (sha256):**",
        *(f"  * `{Path(p).name}`: `{h}`" for p, h in header["data_sha256"].items()),
        "",
    ]
    if header.get("deviations"):
        lines += ["**Deviations from the papers' settings in this run:** " + header["deviations"], ""]
    lines += ["## How verdicts are computed", "", RULE, ""]
    counts = tally([c for r in results for c in r.claims])
    lines += ["## Summary", "",
              f"{counts['holds']} claims hold, {counts['does not hold']} do not hold, {counts['inconclusive']} are inconclusive.", "",
              "| Artefact | n | wall time (s) | estimate (s) | holds | does not hold | inconclusive |",
              "|---|---|---|---|---|---|---|"]
    planned = header.get("estimated_seconds", {})
    for r in results:
        t = tally(r.claims)
        secs = header["seconds"].get(r.name, r.seconds)
        est = f"{planned[r.name]:.0f}" if r.name in planned else "–"
        lines.append(f"| [{_esc(r.title)}](#{r.name}) | {_esc(r.n)} | {secs:.0f} | {est} | {t['holds']} | "
                     f"{t['does not hold']} | {t['inconclusive']} |")
    total = sum(header["seconds"].get(r.name, r.seconds) for r in results)
    est_total = sum(planned.get(r.name, 0.0) for r in results)
    lines += [f"| **total** | | {total:.0f} | {est_total:.0f} | {counts['holds']} | {counts['does not hold']} | "
              f"{counts['inconclusive']} |", "",
              "*Estimate:* units × seconds per unit of the cost model (`factscope.reproduce.cost`, measured on the "
              "2-core development CPU); see docs/reproduction.md.", ""]
    if counts["inconclusive"] and header.get("sizes", {}).get("name") == "standard":
        lines += _beyond_budget_section({r.name for r in results})
    if header.get("not_run"):
        left = sum(planned.get(n, 0.0) for n in header["not_run"])
        lines += [f"**Not run yet in this report** (its claims are not counted above; estimate {left:.0f} s): "
                  + ", ".join(f"`{n}`" for n in header["not_run"])
                  + ". Rerun the command without `--only` to complete it (finished artefacts are kept).", ""]
    for r in results:
        lines += [f'<a id="{r.name}"></a>', f"## {r.title}", "", f"Folder: `{r.name}/` · n: {r.n} · wall time: "
                  f"{header['seconds'].get(r.name, r.seconds):.0f} s", ""]
        lines += ["### Paper", "", r.paper, "", "### Ours", "", r.ours, ""]
        for fig in r.figures:
            lines += [f"![{Path(fig).stem}]({fig})", ""]
        if r.notes:
            lines += [f"*Notes:* {r.notes}", ""]
        if r.claims:
            lines += ["### Claims", "", "| Claim | Paper | Ours | Verdict | Why it might not hold here |", "|---|---|---|---|---|"]
            lines += [f"| {_esc(c.claim)} | {_esc(c.paper)} | {_esc(c.ours)} | **{_esc(c.verdict)}** | {_why(c)} |" for c in r.claims]
            lines.append("")
    return "\n".join(lines)


def _beyond_budget_section(artefacts: set[str]) -> list[str]:
    """The claims of ``artefacts`` the standard preset is not sized to decide, with the n each needs (reproduce/power.py)."""
    lines = ["**Claims the standard preset is not sized to decide** (power calculation, docs/reproduction.md): "
             "an inconclusive verdict above is expected for these.", "",
             "| Artefact | Claim (as planned) | Required n | Why not in the standard run |", "|---|---|---|---|"]
    for plan in PLANS:
        if plan.claim in BEYOND_BUDGET and plan.artefact in artefacts:
            n = required_n(plan)
            lines.append(f"| `{plan.artefact}` | {_esc(plan.claim)} | {n if n is not None else '> 1000'} | "
                         f"{_esc(BEYOND_BUDGET[plan.claim])} |")
    return lines + [""]


def write_report(out: Path, results: Sequence[ArtefactResult], header: dict[str, Any]) -> Path:
    path = out / REPORT_NAME
    atomic_write_text(path, render_report(results, header))
    return path
