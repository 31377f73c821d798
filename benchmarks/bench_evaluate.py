"""Evaluation throughput on the bundled model: single-edit ROME, with and without generation.

Usage::

    python benchmarks/bench_evaluate.py --n 3 --threads 1
    python benchmarks/bench_evaluate.py --editor none --n 10        # evaluation alone

Prints cases per minute for ``factscope evaluate``'s loop (edit → evaluate → revert →
append) without the generation metrics and with them, the split between editing and
evaluation, and the scoring of one case's prompts batched (``score_targets``) against
the straightforward pair-by-pair method (``target_token_logprobs`` per pair).
Supplements (o2, Consistency references) are built before the clock starts: they
are computed once per model and dataset and cached.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3, help="cases per setting")
    parser.add_argument("--editor", default="rome")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", type=Path, default=DATA / "counterfact" / "counterfact_500.json")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"dataset {args.data} not found")
    if args.threads:
        torch.set_num_threads(args.threads)

    from factscope.datasets import load_cases
    from factscope.evaluate.editors import named_editor
    from factscope.evaluate.metrics import evaluate_case
    from factscope.evaluate.runner import RunConfig, load_run, run_evaluation
    from factscope.evaluate.supplements import SupplementConfig, SupplementStore, dataset_key
    from factscope.evaluate.targets import score_targets
    from factscope.evaluate.text_metrics import load_idf
    from factscope.models import load_model
    from factscope.scoring import target_token_logprobs

    adapter = load_model().adapter
    all_cases = load_cases(args.data)
    cases = all_cases[: args.n]
    key = dataset_key(args.data, "counterfact")
    store = SupplementStore(adapter, all_cases, dataset_key=key, config=SupplementConfig())
    sups = store.get(cases, references=True)  # cached per model: not part of the timing
    idf = load_idf()
    editor = named_editor(args.editor)
    print(f"model {adapter.name}, torch threads {torch.get_num_threads()}, editor {args.editor}, {len(cases)} cases")

    # 1. scoring one case: batched vs pair by pair
    case, sup = cases[0], sups[cases[0].case_id]
    pairs = [(case.filled, case.target_new), (case.filled, case.target_true)]
    pairs += [(p, t) for p in case.paraphrase_prompts for t in (case.target_new, case.target_true)]
    pairs += [(p, t) for p in case.neighborhood_prompts for t in (case.target_new, case.target_true)]
    pairs += [(r.prompt, t) for r in sup.r_specificity for t in (r.o2, case.target_new)]
    start = time.perf_counter()
    batched = score_targets(adapter, pairs)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    naive = [target_token_logprobs(adapter, [p], [t])[0] for p, t in pairs]
    t_naive = time.perf_counter() - start
    diff = max(float((torch.tensor(b.logprobs) - n).abs().max()) for b, n in zip(batched, naive))
    print(f"scoring {len(pairs)} prompt/target pairs of one case: batched {t_batched:.2f} s, pair by pair {t_naive:.2f} s "
          f"({t_naive / t_batched:.1f}x), max |Δ log p| {diff:.1e}")
    start = time.perf_counter()
    evaluate_case(adapter, case, sup)
    print(f"all non-generation metrics of one case (unedited): {time.perf_counter() - start:.2f} s")

    # 2. the runner loop, without and with generation metrics
    for generation in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            config = RunConfig(editor=args.editor, data=str(args.data), format="counterfact", n=len(cases),
                               generation=generation, model_fingerprint=adapter.fingerprint, dataset_key=key)  # fmt: skip
            start = time.perf_counter()
            run_evaluation(adapter, cases, editor, config, tmp, all_cases=all_cases, idf=idf, supplement_store=store, progress=False)
            wall = time.perf_counter() - start
            records = load_run(tmp)[1]
        edit_s = sum(r["edit_seconds"] or 0 for r in records)
        eval_s = sum(r["eval_seconds"] or 0 for r in records)
        label = "with generation (Fluency, Consistency)" if generation else "without generation"
        print(f"{label}: {len(records) / wall * 60:.2f} cases/min "
              f"(wall {wall:.1f} s; editing {edit_s / len(records):.1f} s/case, evaluation {eval_s / len(records):.1f} s/case)")
        print(json.dumps({"generation": generation, "cases_per_min": len(records) / wall * 60, "edit_s_per_case": edit_s / len(records),
                          "eval_s_per_case": eval_s / len(records)}))  # fmt: skip


if __name__ == "__main__":
    main()
