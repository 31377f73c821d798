"""Summaries: means with CIs, Score figures, Markdown/CSV/JSON tables, plot, and the CLI."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from factscope.cli import app
from factscope.evaluate.runlog import RunLog
from factscope.evaluate.summary import summarize_run, summarize_runs
from factscope.reports.tables import plot_criteria, render_markdown, write_csv, write_json


def _write_run(folder, editor, rows, perspective="entity", kind="counterfact", label=None):
    log = RunLog(folder)
    log.start({"editor": editor, "label": label}, list(range(len(rows))))
    for i, metrics in enumerate(rows):
        record = {"perspective": perspective, "index": i, "case_id": i, "editor": label or editor, "kind": kind,
                  "metrics": metrics, "details": {"consistency_source": "attribute_generations"}, "error": None}  # fmt: skip
        if metrics is None:
            record.update(error="ValueError: no", details=None)
        log.append(record)


CF = ["efficacy", "generalization", "s_specificity", "r_specificity", "fluency", "consistency"]


def _cf(*values):
    return dict(zip(CF, values))


@pytest.fixture
def runs(tmp_path):
    _write_run(tmp_path / "none", "none", [_cf(0, 0, 1, 1, 6.2, 0.2), _cf(0, 0.5, 0.8, 1, 6.0, 0.3)])
    _write_run(tmp_path / "rome", "rome", [_cf(1, 1, 0.8, 0.2, 6.1, 0.4), _cf(1, 0.5, 0.6, 0.4, 6.0, 0.5), None])
    return [tmp_path / "none", tmp_path / "rome"]


def test_summarize_run_means_errors_and_scores(runs):
    rome = summarize_run(runs[1])
    assert rome.n_cases["entity"] == 2 and rome.n_errors["entity"] == 1
    assert rome.stats["entity"]["efficacy"].mean == 1.0
    assert rome.stats["entity"]["generalization"].mean == 0.75
    assert rome.stats["entity"]["s_specificity"].mean == pytest.approx(0.7)
    assert rome.score_hm() == pytest.approx(3 / (1 / 1 + 1 / 0.75 + 1 / 0.7))
    assert rome.score_mean() == pytest.approx((1 + 0.75 + 0.7 + 0.3) / 4)
    assert rome.consistency_sources == {"attribute_generations": 2}


def test_markdown_layout_and_footnotes(runs):
    stats = summarize_runs(list(reversed(runs)))
    assert [r.editor for r in stats] == ["none", "rome"]  # the unedited model first
    text = render_markdown(stats)
    header = next(line for line in text.splitlines() if line.startswith("| Editor"))
    for title in ("Score (HM)", "Score (RETS)", "Efficacy", "Generalization", "S-Specificity", "R-Specificity", "Fluency", "Consistency"):
        assert title in header
    rome_row = next(line for line in text.splitlines() if line.startswith("| rome"))
    assert "100.0 ± 0.0" in rome_row and "2 (+1 failed)" in rome_row
    assert "610.0 ±" in next(line for line in text.splitlines() if line.startswith("| none"))  # fluency ×100
    for i in range(1, 9):
        assert f"<sup>{i}</sup>" in text.split("| rome")[1]  # a footnote per criterion


def test_csv_json_and_plot(runs, tmp_path):
    stats = summarize_runs(runs)
    rows = list(csv.DictReader(open(write_csv(stats, tmp_path / "s.csv"))))
    eff = next(r for r in rows if r["label"] == "rome" and r["metric"] == "efficacy")
    assert float(eff["mean"]) == 1.0 and eff["n"] == "2"
    assert any(r["metric"] == "score_hm" for r in rows)
    data = json.loads(write_json(stats, tmp_path / "s.json").read_text())
    assert data["runs"][1]["scores"]["entity"]["score_mean"] == pytest.approx((1 + 0.75 + 0.7 + 0.3) / 4)
    assert "Efficacy" in data["notes"]
    png = plot_criteria(stats, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_perspective_and_zsre_tables(tmp_path):
    rel = {"entity_reliability": 0.2, "entity_generality": 0.1, "relation_reliability": 1.0, "relation_generality": 0.5,
           "relation_removal": 1.0, "r_efficacy": 1.0, "efficacy": 0.3}  # fmt: skip
    _write_run(tmp_path / "both", "rome", [rel, rel])
    log = RunLog(tmp_path / "both")
    for i in range(2):
        log.append({"perspective": "relation", "index": i, "case_id": i, "editor": "rome", "kind": "counterfact", "metrics": rel, "error": None})
    _write_run(tmp_path / "zs", "memit", [{"efficacy": 0.9, "generalization": 0.8, "specificity": 0.95, "specificity_vs_answer": 0.3}], kind="zsre")
    text = render_markdown(summarize_runs([tmp_path / "both", tmp_path / "zs"]))
    assert "Entity vs relation knowledge" in text and "| rome | relation edit |" in text
    assert "R-Efficacy vs E-Efficacy" in text and "zsRE" in text
    assert "| memit | 1 | 90.0 ± 0.0 | 80.0 ± 0.0 | 95.0 ± 0.0 | 30.0 ± 0.0 |" in text


def test_summarize_cli(runs, tmp_path):
    out = tmp_path / "summary"
    result = CliRunner().invoke(app, ["summarize", *map(str, runs), str(tmp_path / "not-a-run"), "--out", str(out), "--plot"])
    assert result.exit_code == 0, result.output
    assert "| rome |" in result.output
    for name in ("summary.md", "summary.csv", "summary.json", "summary.png"):
        assert (out / name).is_file()


def test_evaluate_cli_rejects_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    result = CliRunner().invoke(app, ["evaluate", "--editor", "none", "--data", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "record 0" in result.output
    good = tmp_path / "g.json"
    good.write_text('[{"case_id": 1, "prompt": "A is", "subject": "A", "target_new": "b", "ground_truth": "c"}]')
    result = CliRunner().invoke(app, ["evaluate", "--editor", "no-such", "--data", str(good), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Unknown editor" in result.output
