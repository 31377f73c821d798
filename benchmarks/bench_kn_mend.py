"""KN's and MEND's cost on the bundled model: one edit of each against one FT-L edit, and one MEND training step, in one run.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_kn_mend.py            # 5 timed repetitions (KN: 1)
    python benchmarks/bench_kn_mend.py --reps 10 --kn-reps 2 --threads 2
    python benchmarks/bench_kn_mend.py --device cuda

Prints seconds per MEND edit (gradient factors + network + low-rank delta), per FT-L
edit (its default Adam steps on one MLP weight), per MEND training step (batch of one
edit from ../shared/data/counterfact/counterfact-train.json: factor pass, edited pass
over paraphrases and unrelated prompts, backward into the network), and the ratios
FT-L / MEND edit and training step / MEND edit. A MEND edit runs with the trained
editor of the cache when there is one, else with an untrained network of the default
settings (same cost: the network's weights do not change the work). A KN edit (its
defaults: integrated gradients over every layer for the prompt and 4 context-prefixed
variants, then the value-vector change) is timed ``--kn-reps`` times after one
untimed call that generates and caches the context prefixes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "counterfact"


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--kn-reps", type=int, default=1, help="KN edits timed (each takes minutes on a CPU).")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from factscope.edit import edit
    from factscope.edit.mend import MENDHyperParams, delta_from_network, load_examples
    from factscope.edit.mend.store import build_network, find_editor, load_editor, resolve_mend_layers
    from factscope.edit.mend.training import _optimizer, train_step
    from factscope.models import load_model

    adapter = load_model(device=args.device).adapter
    load = os.getloadavg()[0]
    print(f"model {adapter.name} on {adapter.device}; torch threads {torch.get_num_threads()}; load average {load:.1f}",
          flush=True)
    examples = load_examples(DATA / "counterfact-train.json", adapter, n=args.reps + 2)
    hp_ = MENDHyperParams.for_model(adapter)
    found = find_editor(adapter, hp_)
    net = load_editor(found, adapter)[0] if found else build_network(adapter, resolve_mend_layers(adapter, hp_.layers), hp_)
    print(f"MEND editor: {found or 'untrained network (none in the cache)'}; layers {net.layers}", flush=True)
    requests = iter([ex.request for ex in examples] * 1000)

    mend = _time(lambda: delta_from_network(adapter, net, [next(requests)]), args.reps)
    ft = _time(lambda: edit(adapter, [next(requests)], editor="ft", probe="off"), args.reps)
    trainee = build_network(adapter, net.layers, hp_)
    optimizer = _optimizer(trainee, hp_)
    batches = iter(examples * 1000)
    step = _time(lambda: train_step(adapter, trainee, optimizer, [next(batches)], hp_), args.reps)
    kn = _time(lambda: edit(adapter, [next(requests)], editor="kn", probe="off"), args.kn_reps)
    print(f"MEND edit      {mend:7.3f} s")
    print(f"KN edit        {kn:7.3f} s   ({kn / mend:.1f}x a MEND edit, {kn / ft:.1f}x an FT-L edit)")
    print(f"FT-L edit      {ft:7.3f} s   ({ft / mend:.1f}x a MEND edit)")
    print(f"MEND train step {step:6.3f} s   ({step / mend:.1f}x a MEND edit; {hp_.steps} steps = {step * hp_.steps / 60:.1f} min)")


if __name__ == "__main__":
    main()
