"""Evaluation tables (Markdown, CSV, JSON) and a bar chart, in the layout of the papers.

Usage::

    runs = summarize_runs(["runs/none", "runs/rome", "runs/rets"])
    print(render_markdown(runs))                 # RETS Table 3 layout + perspective/zsRE tables
    write_csv(runs, "summary.csv"); write_json(runs, "summary.json")
    plot_criteria(runs, "summary.png")

Figures are percentages (mean over cases ± 95 % CI half-width); Fluency and
Consistency are ×100 as in ROME/RETS/PMET. Each table ends with a footnote per
criterion saying how it was measured.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from factscope.evaluate.summary import R_SPEC_RULES, RunStats, Stat
from factscope.io_utils import atomic_write_text


@dataclass(frozen=True)
class Column:
    key: str  # metric name, or "score_hm" / "score_mean"
    title: str
    note: str
    perspective: str = "entity"
    scale: float = 100.0


COUNTERFACT_COLUMNS = (
    Column("score_hm", "Score (HM)", "ROME/PMET Score: harmonic mean of the Efficacy, Generalization and S-Specificity means."),
    Column("score_mean", "Score (RETS)", "RETS Score: arithmetic mean of Efficacy, Generalization, S-Specificity and R-Specificity (ours)."),
    Column("score_mean_reference", "Score (RETS, ref.)", "RETS Score with R-Specificity by the reference rule."),
    Column("efficacy", "Efficacy", "share of cases with P(o*) > P(o) on the rewrite prompt; multi-token targets by mean per-token NLL."),
    Column("generalization", "Generalization", "same comparison on the paraphrase prompts (mean per case, then over cases)."),
    Column("s_specificity", "S-Specificity", "P(o) > P(o*) on the neighbourhood prompts (other subjects, same relation, true object o)."),
    Column("r_specificity", "R-Specificity (ours)", "P(o2) > P(o*) on prompts about the same subject under other relations fitting its type; o2 = the unedited model's greedy continuation through its first content word (≈100 % for the unedited model by construction). Built per model, see docs/evaluation.md."),
    Column("r_specificity_reference", "R-Specificity (reference)", "the RETS authors' rule (evaluate_rs.py) on the same prompts: o2 = the first of the unedited model's top-20 next tokens that is not blank and not a stop word; NLL(o2) < NLL(o*). '–' for runs evaluated before this rule existed."),
    Column("fluency", "Fluency", "weighted bi/tri-gram entropy (bits, ×100) of texts sampled (top-5, 100 tokens incl. prompt) from generation_prompts (ROME)."),
    Column("consistency", "Consistency", "TF-IDF cosine (×100) between those texts and reference texts about o*: the unedited model's samples continuing '<attribute prompt> <o*>' (other subjects whose true object is o*); corpus paragraphs mentioning o* when a case has no attribute prompts. IDF from the enwiki sample's paragraphs."),
)
PERSPECTIVE_COLUMNS = (
    Column("entity_reliability", "Entity Reliability", "exact match (greedy = target tokens) of o* on the rewrite prompt."),
    Column("entity_generality", "Entity Generality", "exact match of o* on a paraphrase and on the rewrite prompt (seed 001, eq. 7)."),
    Column("relation_reliability", "Relation Reliability", "exact match of the relation's Wikidata name after 'The relation between s and o* is'."),
    Column("relation_generality", "Relation Generality", "exact match of the relation name on three rephrasings of that prompt and on the prompt itself."),
    Column("relation_removal", "Relation Removal", "exact match of 'None' after 'The relation between s and o is'."),
    Column("relation_reliability_token_acc", "Relation Reliability (token acc.)", "token-level accuracy (share of the name's tokens that are top-1 under teacher forcing; EasyEdit / ROME zsRE convention) on that prompt."),
    Column("relation_generality_token_acc", "Relation Generality (token acc.)", "token-level accuracy of the name on the three rephrasings."),
    Column("relation_removal_token_acc", "Relation Removal (token acc.)", "token-level accuracy of 'None' on the remove prompt."),
)
RAKE_COLUMNS = (
    Column("efficacy", "E-Efficacy", "entity edits: P(o*) > P(o) on the rewrite prompt.", "entity"),
    Column("entity_reliability", "E-Efficacy (EM)", "entity edits: exact match of o* on the rewrite prompt.", "entity"),
    Column("r_efficacy", "R-Efficacy", "relation edits: P(name) > P('None') after 'The relation between s and o* is'.", "relation"),
    Column("relation_reliability", "R-Efficacy (EM)", "relation edits: exact match of the relation name on that prompt.", "relation"),
)
ZSRE_COLUMNS = (
    Column("efficacy", "Efficacy", "token-level top-1 accuracy of o* under teacher forcing on the question."),
    Column("generalization", "Generalization", "the same on the rephrased question."),
    Column("specificity", "Specificity", "share of loc_ans positions (teacher forced) where the top-1 token equals the unedited model's."),
    Column("specificity_vs_answer", "Spec. vs loc_ans", "ROME's variant: token accuracy against loc_ans itself."),
)


def _value(run: RunStats, col: Column, perspective: str | None = None) -> tuple[float | None, float | None, int | None]:
    p = perspective or col.perspective
    if col.key == "score_hm":
        v = run.score_hm(p)
        return (None if v is None else v * col.scale), None, None
    if col.key in ("score_mean", "score_mean_reference"):
        v = run.score_mean(p, "reference" if col.key == "score_mean_reference" else "ours")
        return (None if v is None else v * col.scale), None, None
    stat: Stat | None = run.stats.get(p, {}).get(col.key)
    if stat is None:
        return None, None, None
    return stat.mean * col.scale, stat.ci * col.scale, stat.n


def _cell(run: RunStats, col: Column, perspective: str | None = None) -> str:
    mean, ci, _ = _value(run, col, perspective)
    if mean is None:
        return "–"
    return f"{mean:.1f}" if ci is None else f"{mean:.1f} ± {ci:.1f}"


def _n_cell(run: RunStats, perspective: str) -> str:
    n, errors = run.n_cases.get(perspective, 0), run.n_errors.get(perspective, 0)
    text = str(n) + (f" (+{errors} failed)" if errors else "")
    return text + (f" of {run.n_planned}" if n + errors < run.n_planned else "")


def _table(title: str, runs: Sequence[RunStats], columns: Sequence[Column], rows: Callable) -> list[str]:  # type: ignore[type-arg]
    lines = [f"### {title}", ""]
    head = ["Editor", *rows.header, *(f"{c.title}<sup>{i + 1}</sup>" for i, c in enumerate(columns))]  # type: ignore[attr-defined]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        for extra, cells in rows(run):
            lines.append("| " + " | ".join([run.label, *extra, *cells]) + " |")
    lines += ["", *(f"<sup>{i + 1}</sup> {c.title}: {c.note}" for i, c in enumerate(columns)), ""]
    return lines


_RULE_KEYS = {"ours": ("r_specificity", "score_mean"), "reference": ("r_specificity_reference", "score_mean_reference")}


def counterfact_columns(r_spec_rule: str = "both") -> tuple[Column, ...]:
    """The COUNTERFACT columns showing R-Specificity (and the RETS Score) by ``r_spec_rule``: both, ours or reference."""
    if r_spec_rule not in R_SPEC_RULES:
        raise ValueError(f"r_spec_rule must be one of {', '.join(R_SPEC_RULES)}, got {r_spec_rule!r}.")
    hidden = {k for rule, keys in _RULE_KEYS.items() if r_spec_rule not in ("both", rule) for k in keys}
    return tuple(c for c in COUNTERFACT_COLUMNS if c.key not in hidden)


def render_markdown(runs: Sequence[RunStats], r_spec_rule: str = "both") -> str:
    """All tables that the given runs can fill, with footnotes (R-Specificity by ``r_spec_rule``)."""
    columns = counterfact_columns(r_spec_rule)
    out: list[str] = []
    cf = [r for r in runs if r.kind == "counterfact"]
    entity = [r for r in cf if "entity" in r.stats]
    if entity:

        def cf_rows(run: RunStats):  # type: ignore[no-untyped-def]
            yield [_n_cell(run, "entity")], [_cell(run, c) for c in columns]

        cf_rows.header = ["n"]  # type: ignore[attr-defined]
        out += _table("COUNTERFACT, entity edits (layout of RETS Table 3; %, mean ± 95 % CI)", entity, columns, cf_rows)
    with_rel = [r for r in cf if any(r.stats.get(p, {}).get("relation_reliability") for p in r.stats)]
    if with_rel:

        def p_rows(run: RunStats):  # type: ignore[no-untyped-def]
            for p in ("entity", "relation"):
                if p in run.stats:
                    yield [f"{p} edit", _n_cell(run, p)], [_cell(run, c, p) for c in PERSPECTIVE_COLUMNS]

        p_rows.header = ["Edited knowledge", "n"]  # type: ignore[attr-defined]
        out += _table("Entity vs relation knowledge (seed 001 Tables 1-2; %, exact match and token accuracy)", with_rel, PERSPECTIVE_COLUMNS, p_rows)
        both = [r for r in with_rel if {"entity", "relation"} <= set(r.stats)]
        if both:

            def r_rows(run: RunStats):  # type: ignore[no-untyped-def]
                yield [], [_cell(run, c) for c in RAKE_COLUMNS]

            r_rows.header = []  # type: ignore[attr-defined]
            out += _table("R-Efficacy vs E-Efficacy (RaKE; %)", both, RAKE_COLUMNS, r_rows)
    zs = [r for r in runs if r.kind == "zsre"]
    if zs:

        def z_rows(run: RunStats):  # type: ignore[no-untyped-def]
            yield [_n_cell(run, "entity")], [_cell(run, c) for c in ZSRE_COLUMNS]

        z_rows.header = ["n"]  # type: ignore[attr-defined]
        out += _table("zsRE (PMET Table 2 layout; %, mean ± 95 % CI)", zs, ZSRE_COLUMNS, z_rows)
    if not out:
        return "No finished cases in these runs.\n"
    return "\n".join(out)


def summary_rows(runs: Sequence[RunStats]) -> list[dict[str, object]]:
    """One flat row per (run, perspective, metric), plus the two Score rows; raw fractions."""
    rows: list[dict[str, object]] = []
    for run in runs:
        for perspective, stats in run.stats.items():
            base = {"run": str(run.folder), "label": run.label, "editor": run.editor, "kind": run.kind, "perspective": perspective}
            for metric, stat in sorted(stats.items()):
                rows.append({**base, "metric": metric, "mean": stat.mean, "ci95": stat.ci, "n": stat.n})
            if run.kind == "counterfact":
                for name, value in (("score_hm", run.score_hm(perspective)), ("score_mean", run.score_mean(perspective)),
                                    ("score_mean_reference", run.score_mean(perspective, "reference"))):
                    if value is not None:
                        rows.append({**base, "metric": name, "mean": value, "ci95": None, "n": run.n_cases.get(perspective)})
    return rows


def write_csv(runs: Sequence[RunStats], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(runs)
    fields = ["run", "label", "editor", "kind", "perspective", "metric", "mean", "ci95", "n"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_json(runs: Sequence[RunStats], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = {c.title: c.note for c in (*COUNTERFACT_COLUMNS, *PERSPECTIVE_COLUMNS, *RAKE_COLUMNS, *ZSRE_COLUMNS)}
    atomic_write_text(path, json.dumps({"runs": [r.to_dict() for r in runs], "notes": notes}, indent=2, default=str))
    return path


def plot_criteria(runs: Sequence[RunStats], path: str | Path) -> Path:
    """Grouped bars (criterion × editor) with 95 % CI error bars; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    cf = [r for r in runs if r.kind == "counterfact" and "entity" in r.stats]
    columns = [c for c in COUNTERFACT_COLUMNS if c.key in ("efficacy", "generalization", "s_specificity", "r_specificity",
                                                           "r_specificity_reference")]
    if not cf:
        cf, columns = [r for r in runs if r.kind == "zsre"], list(ZSRE_COLUMNS[:3])
    if not cf:
        raise ValueError("No runs with results to plot.")
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(columns), 4))
    width = 0.8 / len(cf)
    for j, run in enumerate(cf):
        means, cis = [], []
        for col in columns:
            mean, ci, _ = _value(run, col)
            means.append(mean or 0.0)
            cis.append(ci or 0.0)
        xs = [i + (j - (len(cf) - 1) / 2) * width for i in range(len(columns))]
        ax.bar(xs, means, width, yerr=cis, capsize=3, label=run.label)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([c.title for c in columns])
    ax.set_ylabel("% (mean ± 95 % CI)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Editing criteria by editor")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
