"""Evaluation throughput on the bundled model: single-edit ROME, with and without generation.

Usage::

    python benchmarks/bench_evaluate.py --n 8 --group 8
    python benchmarks/bench_evaluate.py --editor none --n 10        # evaluation alone

Prints cases per minute for ``factscope evaluate``'s loop (edit → evaluate → revert →
append) without the generation metrics, editing one case at a time (the
straightforward way) and with ``--group`` cases' edits computed together, the
largest difference between the two runs' metrics, and the grouped loop with the
generation metrics; the split between editing and evaluation; and the scoring of one
case's prompts batched (``score_targets``) against the straightforward pair-by-pair
method (``target_token_logprobs`` per pair).
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
    parser.add_argument("--n", type=int, default=8, help="cases per setting")
    parser.add_argument("--group", type=int, default=8, help="cases whose edits are computed together")
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

    # 2. the runner loop: one at a time vs grouped edits (no generation), then grouped with generation
    metrics = {}
    rates = {}
    for group, generation in ((1, False), (args.group, False), (args.group, True)):
        with tempfile.TemporaryDirectory() as tmp:
            config = RunConfig(editor=args.editor, data=str(args.data), format="counterfact", n=len(cases),
                               generation=generation, model_fingerprint=adapter.fingerprint, dataset_key=key)  # fmt: skip
            start = time.perf_counter()
            run_evaluation(adapter, cases, editor, config, tmp, all_cases=all_cases, idf=idf, supplement_store=store,
                           progress=False, group=group)
            wall = time.perf_counter() - start
            records = sorted(load_run(tmp)[1], key=lambda r: r["index"])
        edit_s = sum(r["edit_seconds"] or 0 for r in records)
        eval_s = sum(r["eval_seconds"] or 0 for r in records)
        rates[(group, generation)] = len(records) / wall * 60
        if not generation:
            metrics[group] = [r["metrics"] for r in records]
        label = f"{'with' if generation else 'without'} generation, edits {'one at a time' if group == 1 else f'in groups of {group}'}"
        print(f"{label}: {rates[(group, generation)]:.2f} cases/min "
              f"(wall {wall:.1f} s; editing {edit_s / len(records):.1f} s/case, evaluation {eval_s / len(records):.1f} s/case)")
        print(json.dumps({"generation": generation, "group": group, "cases_per_min": rates[(group, generation)],
                          "edit_s_per_case": edit_s / len(records), "eval_s_per_case": eval_s / len(records)}))  # fmt: skip
    if args.group > 1:
        diff = max((abs(a[k] - b[k]) for a, b in zip(metrics[1], metrics[args.group]) for k in a
                    if isinstance(a[k], (int, float)) and isinstance(b.get(k), (int, float))), default=0.0)
        print(f"grouped vs one at a time (no generation): {rates[(args.group, False)] / rates[(1, False)]:.2f}x cases/min, "
              f"max |metric difference| {diff:.1e}")


if __name__ == "__main__":
    main()
