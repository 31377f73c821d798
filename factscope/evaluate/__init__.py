"""Evaluation: per-case metrics, per-model supplements, resumable runs, summaries.

Usage::

    from factscope.evaluate import RunConfig, named_editor, run_evaluation, summarize_runs
"""

from factscope.evaluate.editors import EditorFn, named_editor, one_at_a_time, unedited
from factscope.evaluate.generation import GenerationConfig, generate_texts
from factscope.evaluate.metrics import evaluate_case, evaluate_counterfact, evaluate_zsre
from factscope.evaluate.runlog import CorruptRunError, RunConfigMismatch, RunLog
from factscope.evaluate.runner import RunConfig, RunConfigError, load_run, run_evaluation
from factscope.evaluate.supplements import CaseSupplement, SupplementConfig, SupplementStore
from factscope.evaluate.targets import TargetScore, score_targets

__all__ = [
    "CaseSupplement", "CorruptRunError", "EditorFn", "GenerationConfig", "RunConfig", "RunConfigError",
    "RunConfigMismatch", "RunLog", "SupplementConfig", "SupplementStore", "TargetScore", "evaluate_case",
    "evaluate_counterfact", "evaluate_zsre", "generate_texts", "load_run", "named_editor", "one_at_a_time",
    "run_evaluation", "score_targets", "unedited",
]  # fmt: skip
