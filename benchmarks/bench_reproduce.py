"""Per-artefact cost of ``factscope reproduce`` on the bundled model: seconds per work unit.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_reproduce.py --only rets_table1,seed001_fig3 \\
        --sizes trace_facts=3 --sizes severed_facts=2
    python benchmarks/bench_reproduce.py --only rets_table3,rets_fig5 --sizes eval_cases=2 --sizes sweep_cases=1
    python benchmarks/bench_reproduce.py --device cuda --only pmet_table1 --sizes batch_cases=50

Runs the chosen artefacts of the ``--preset`` (default ``standard``, so the editor
settings are the standard run's) with the ``--sizes`` overrides into a fresh folder,
one at a time, then prints, in one run, per artefact: the wall time, the process's CPU
time (on the shared machine the wall time depends on the other jobs; with one thread
the CPU time is what a quiet machine's wall time would be), its work units
(:func:`factscope.reproduce.cost.units`), CPU seconds per unit (fixed costs folded
in), and what that rate predicts for the ``--target`` preset (default ``standard``). The Figure 5 runs at ROME's and RETS's default layers reuse
Table 3's runs when both artefacts are run; the line "reuse" prints what that saved,
as the measured s/unit of Figure 5 times the units it did not compute. With
``pmet_table3`` it prints each batch run's edit time (wall, from the run records): the
even-spread and W_O runs load PMET's value checkpoints, w/o δ_attn optimises its own,
so their ratio is what sharing the values bought, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", required=True, help="Comma-separated artefacts to time.")
    parser.add_argument("--sizes", action="append", default=[], help="KEY=VALUE size override (repeatable).")
    parser.add_argument("--preset", default="standard", help="Preset whose settings are timed (default standard).")
    parser.add_argument("--target", default="standard", help="Preset to extrapolate to (default standard).")
    parser.add_argument("--device", default=None, help="e.g. cuda (default: the CPU).")
    parser.add_argument("--out", default=None, help="Run folder (default: a fresh temporary one).")
    parser.add_argument("--data-dir", default=str(DATA))
    args = parser.parse_args()

    import torch

    from factscope.models import load_model
    from factscope.reproduce import DataFiles, preset, reproduce
    from factscope.reproduce.cost import format_seconds, units
    from factscope.reproduce.editing import default_layers

    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    sizes = preset(args.preset).override(args.sizes)
    torch.set_num_threads(sizes.threads)
    adapter = load_model(device=args.device).adapter
    load = os.getloadavg()[0]
    print(f"model {adapter.name} on {adapter.device}; torch threads {torch.get_num_threads()}; "
          f"load average {load:.1f}; sizes {', '.join(args.sizes) or args.preset}", flush=True)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-reproduce-"))
    data = DataFiles.from_dir(args.data_dir)
    start = time.perf_counter()
    cpu: dict[str, float] = {}
    for name in steps:
        c0 = time.process_time()
        reproduce(adapter, out, data=data, sizes=sizes, command="bench_reproduce", steps=[name], progress=False)
        cpu[name] = time.process_time() - c0
    total = time.perf_counter() - start
    seconds = json.loads((out / "timings.json").read_text())
    layers = default_layers(adapter)
    measured = units(sizes, adapter.n_layers, layers)
    target = units(preset(args.target), adapter.n_layers, layers)
    predicted = 0.0
    print(f"{'artefact':18} {'wall s':>8} {'CPU s':>8} {'units':>6} {'CPU s/unit':>10} {args.target + ' units':>15} "
          f"{'predicted':>10}")
    rates = {}
    for name in steps:
        rate = cpu[name] / max(1, measured[name])
        rates[name] = rate
        predicted += rate * target[name]
        print(f"{name:18} {seconds[name]:8.1f} {cpu[name]:8.1f} {measured[name]:6d} {rate:10.2f} {target[name]:15d} "
              f"{format_seconds(rate * target[name]):>10}", flush=True)
    if "rets_fig5" in steps and "rets_table3" in steps:
        sweep = sizes.sweep_layer_indices(adapter.n_layers)
        shared = sum(1 for layer in layers.values() if layer in sweep)
        print(f"reuse: Figure 5 took {shared} of its {2 * len(sweep)} (editor, layer) runs from Table 3; saved "
              f"{format_seconds(shared * sizes.sweep_cases * rates['rets_fig5'])} here, "
              f"{format_seconds(shared * preset(args.target).sweep_cases * rates['rets_fig5'])} at {args.target} sizes")
    if "pmet_table3" in steps:
        edit_s = {}
        for run in sorted((out / "pmet_table3" / "runs").iterdir()) + [out / "_work" / "batch" / "pmet"]:
            lines = (run / "results.jsonl").read_text().splitlines() if (run / "results.jsonl").is_file() else []
            edit_s[run.name] = sum(json.loads(line).get("edit_seconds") or 0.0 for line in lines if line.strip())
        own = edit_s.get("no_attn_delta", 0.0)
        print("PMET batch edit wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in edit_s.items())
              + (f"; shared-value runs vs own optimisation (w/o δ_attn): "
                 + ", ".join(f"{k} {edit_s[k] / own:.2f}×" for k in ("even_spread", "update_attn") if k in edit_s)
                 if own else ""))
    print(f"total wall {total:.0f} s (load average now {os.getloadavg()[0]:.1f}); predicted for these artefacts at "
          f"{args.target} sizes: {format_seconds(predicted)}; rates: {json.dumps({k: round(v, 2) for k, v in rates.items()})}")


if __name__ == "__main__":
    main()
