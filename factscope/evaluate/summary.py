"""Summaries of runs: means with 95 % confidence intervals, and the papers' Score figures.

Usage::

    runs = [summarize_run(p) for p in ["runs/none", "runs/rome", "runs/rets"]]
    runs[1].stats["entity"]["efficacy"]          # Stat(mean=0.98, ci=0.02, n=20)
    runs[1].score_hm("entity"), runs[1].score_mean("entity")

Every criterion is averaged per case first (over the case's prompts), then over
cases. The confidence interval is the half-width ``t(0.975, n−1) · s / √n`` of
Student's t over cases (PMET/ROME report 95 % intervals; with few cases t is wider
than the normal 1.96). Cases whose edit failed are counted in ``n_errors`` and left
out of the means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factscope.evaluate.runner import load_run

R_SPEC_RULES = ("both", "ours", "reference")  # which R-Specificity a table shows (summarize --r-spec-rule)
R_SPEC_METRIC = {"ours": "r_specificity", "reference": "r_specificity_reference"}


@dataclass(frozen=True)
class Stat:
    """Mean over cases with the half-width of its 95 % confidence interval."""

    mean: float
    ci: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci95": self.ci, "n": self.n}


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Stat | None:
    """Mean and t-based confidence half-width (0 for a single value); None for no values."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    n = len(vals)
    mean = sum(vals) / n
    if n < 2:
        return Stat(mean, 0.0, n)
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    return Stat(mean, float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n), n)


@dataclass
class RunStats:
    """Aggregated results of one run folder."""

    folder: Path
    label: str
    editor: str
    kind: str  # "counterfact" or "zsre"
    config: dict[str, Any]
    stats: dict[str, dict[str, Stat]] = field(default_factory=dict)  # perspective -> metric -> Stat
    n_cases: dict[str, int] = field(default_factory=dict)
    n_errors: dict[str, int] = field(default_factory=dict)
    n_planned: int = 0
    consistency_sources: dict[str, int] = field(default_factory=dict)

    def mean(self, perspective: str, metric: str) -> float | None:
        stat = self.stats.get(perspective, {}).get(metric)
        return stat.mean if stat else None

    def score_hm(self, perspective: str = "entity") -> float | None:
        """ROME/PMET Score: harmonic mean of Efficacy, Generalization and (S-)Specificity."""
        parts = [self.mean(perspective, m) for m in ("efficacy", "generalization", "s_specificity")]
        if any(p is None for p in parts):
            return None
        if any(p == 0 for p in parts):
            return 0.0
        return len(parts) / sum(1 / p for p in parts)  # type: ignore[operator]

    def score_mean(self, perspective: str = "entity", r_spec_rule: str = "ours") -> float | None:
        """RETS Score: arithmetic mean of Efficacy, Generalization, S- and R-Specificity (``r_spec_rule``: ours or reference)."""
        r_spec = R_SPEC_METRIC[r_spec_rule]
        parts = [self.mean(perspective, m) for m in ("efficacy", "generalization", "s_specificity", r_spec)]
        if any(p is None for p in parts):
            return None
        return sum(parts) / len(parts)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "label": self.label,
            "editor": self.editor,
            "kind": self.kind,
            "n_planned": self.n_planned,
            "n_cases": self.n_cases,
            "n_errors": self.n_errors,
            "consistency_sources": self.consistency_sources,
            "scores": {
                p: {"score_hm": self.score_hm(p), "score_mean": self.score_mean(p),
                    "score_mean_reference": self.score_mean(p, "reference")} for p in self.stats if self.kind == "counterfact"
            },
            "stats": {p: {m: s.to_dict() for m, s in ms.items()} for p, ms in self.stats.items()},
            "config": self.config,
        }


def summarize_run(folder: str | Path) -> RunStats:
    """Aggregate one run folder (complete or not)."""
    manifest, records = load_run(folder)
    config = manifest["config"]
    label = config.get("label") or (records[0]["editor"] if records else config["editor"])
    kinds = {r.get("kind", "counterfact") for r in records} or {"counterfact"}
    run = RunStats(Path(folder), label, config["editor"], kinds.pop(), config, n_planned=len(manifest.get("case_ids", [])))
    by_perspective: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_perspective.setdefault(record["perspective"], []).append(record)
    for perspective, recs in by_perspective.items():
        ok = [r for r in recs if not r.get("error")]
        run.n_cases[perspective] = len(ok)
        run.n_errors[perspective] = len(recs) - len(ok)
        metrics = sorted({m for r in ok for m in (r.get("metrics") or {})})
        run.stats[perspective] = {}
        for metric in metrics:
            stat = mean_ci([r["metrics"].get(metric) for r in ok if r["metrics"].get(metric) is not None])
            if stat is not None:
                run.stats[perspective][metric] = stat
        for r in ok:
            source = (r.get("details") or {}).get("consistency_source")
            if source:
                run.consistency_sources[source] = run.consistency_sources.get(source, 0) + 1
    return run


def summarize_runs(folders: Sequence[str | Path]) -> list[RunStats]:
    """Aggregate several runs; the unedited baseline (editor ``none``) first."""
    runs = [summarize_run(f) for f in folders]
    return sorted(runs, key=lambda r: (r.editor != "none", r.kind))
