"""The Markdown report: header (command, model, data hashes, version, timings), then one section per artefact.

Usage::

    write_report(out, results, header)      # out/report.md, figures linked relative to out/
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factscope.reproduce.artefact import ArtefactResult
from factscope.reproduce.verdicts import RULE, tally

REPORT_NAME = "report.md"


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_report(results: Sequence[ArtefactResult], header: dict[str, Any]) -> str:
    lines = [f"# Reproduction report — {header['model']}", ""]
    lines += [
        f"* **Command:** `{header['command']}`",
        f"* **Model:** {header['model']} (fingerprint `{header['fingerprint']}`, {header['n_layers']} layers)",
        f"* **factscope version:** {header['version']}",
        f"* **Date:** {header['date']}",
        f"* **Sizes preset:** {header['sizes']['name']} (all sizes in `run.json`)",
        f"* **Total wall time:** {header['total_seconds']:.0f} s (this invocation; artefacts computed earlier were reused)",
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
              "| Artefact | n | wall time (s) | holds | does not hold | inconclusive |", "|---|---|---|---|---|---|"]
    for r in results:
        t = tally(r.claims)
        secs = header["seconds"].get(r.name, r.seconds)
        lines.append(f"| [{_esc(r.title)}](#{r.name}) | {_esc(r.n)} | {secs:.0f} | {t['holds']} | {t['does not hold']} | {t['inconclusive']} |")
    lines.append("")
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
            lines += [f"| {_esc(c.claim)} | {_esc(c.paper)} | {_esc(c.ours)} | **{_esc(c.verdict)}** | {_esc(c.why_not)} |" for c in r.claims]
            lines.append("")
    return "\n".join(lines)


def write_report(out: Path, results: Sequence[ArtefactResult], header: dict[str, Any]) -> Path:
    path = out / REPORT_NAME
    path.write_text(render_report(results, header))
    return path
