"""The standard preset against the verdict minimums and the power calculation; the cost model's units."""

from __future__ import annotations

import math
import re

import pytest
import torch

from factscope.reproduce import STEPS, preset
from factscope.reproduce.cost import SECONDS_PER_UNIT, estimate, units
from factscope.reproduce.lens import MIN_KNOCKOUT
from factscope.reproduce.power import (BEYOND_BUDGET, MARGIN, PLANS, Plan, family_sizes, half_width, power_table,
                                       required_n)
from factscope.reproduce import power
from factscope.reproduce.verdicts import MIN_CASES, MIN_FACTS

STANDARD = preset("standard")


def _size(name: str) -> int:
    return STANDARD.n_ablation if name == "ablation_cases" else getattr(STANDARD, name)


def test_standard_meets_verdict_minimums():
    assert power.MIN_KNOCKOUT == MIN_KNOCKOUT
    for name in ("trace_facts", "severed_facts", "lens_facts", "dynamics_facts"):
        assert getattr(STANDARD, name) >= MIN_FACTS, name
    assert STANDARD.knockout_facts >= MIN_KNOCKOUT
    for name in ("eval_cases", "sweep_cases", "perspective_cases", "batch_cases", "ablation_cases"):
        assert _size(name) >= MIN_CASES, name


def test_standard_meets_power_calculation():
    """Every claim the power calculation can decide gets its n, unless listed as beyond the budget."""
    sized = {plan.size for plan in PLANS}
    assert sized <= {"trace_facts", "severed_facts", "lens_facts", "knockout_facts", "dynamics_facts", "eval_cases",
                     "sweep_cases", "perspective_cases", "batch_cases", "ablation_cases"}
    assert {p.artefact for p in PLANS} == set(STEPS)  # every artefact's claims are planned
    claims = {p.claim for p in PLANS}
    assert set(BEYOND_BUDGET) <= claims  # no stale names
    for plan in PLANS:
        n = required_n(plan)
        if plan.claim in BEYOND_BUDGET:
            assert n is None or n > _size(plan.size), f"{plan.claim}: fits after all (n = {n}); size it"
            quoted = re.search(r"needs (\d+) ", BEYOND_BUDGET[plan.claim])  # the reason's n is the computed one
            assert quoted is None or int(quoted.group(1)) == n, f"{plan.claim}: says {quoted.group(1)}, needs {n}"
        else:
            assert n is not None and _size(plan.size) >= n, f"{plan.claim}: needs {n}, standard has {_size(plan.size)}"


def test_required_n_is_the_smallest_deciding_n():
    plan = Plan("rets_table3", "eval_cases", "x", 0.6, 0.45)
    n = required_n(plan)
    assert n is not None and n > math.ceil(MIN_CASES * MARGIN)
    assert MARGIN * half_width(plan, n) < 0.15 <= MARGIN * half_width(plan, n - 1)
    # sd from a measured half-width: ci·√n / t(n − 1)
    measured = Plan("a", "eval_cases", "y", 0.7, 0.3, 0.05, 0.05, 100)
    assert measured.sd("a") == pytest.approx(0.05 * 10 / 1.984, rel=1e-3)
    # no interval: the minimum with margin, over the yield
    assert required_n(Plan("a", "lens_facts", "z", min_n=20, with_ci=False, yield_=0.25)) == math.ceil(25 / 0.25)
    assert required_n(Plan("a", "eval_cases", "w", 0.5, 0.5)) is None  # no n decides a zero difference
    assert family_sizes((plan,)) == {"eval_cases": n}
    assert "not decidable" in power_table((Plan("a", "eval_cases", "w", 0.5, 0.5),))


def test_units_share_work():
    layers = STANDARD.sweep_layer_indices(30)
    alone = units(STANDARD, 30)
    shared = units(STANDARD, 30, {"rome": layers[0], "rets": layers[-1]})
    assert alone["rets_fig5"] - shared["rets_fig5"] == 2 * STANDARD.sweep_cases
    # a default layer outside the sweep shares nothing; nor when Figure 5 has more cases than Table 3
    assert units(STANDARD, 30, {"rome": 29})["rets_fig5"] == alone["rets_fig5"]
    more = STANDARD.override([f"sweep_cases={STANDARD.eval_cases + 1}"])
    assert units(more, 30, {"rome": layers[0]})["rets_fig5"] == 2 * len(layers) * more.sweep_cases
    # PMET Table 3 reuses Table 1's unedited and PMET batches only when the batch sizes agree
    other = STANDARD.override([f"ablation_cases={STANDARD.batch_cases + 10}"])
    assert units(other, 30)["pmet_table3"] == 5 * (STANDARD.batch_cases + 10)
    assert units(STANDARD, 30)["pmet_table3"] == 3 * STANDARD.n_ablation
    rows = estimate(STANDARD, 30, per_unit={"rets_table3": 2.0})
    assert set(rows) == set(STEPS) == set(SECONDS_PER_UNIT)
    assert rows["rets_table3"] == (alone["rets_table3"], 2.0, 2.0 * alone["rets_table3"])


def test_spread_ablations_reuse_pmet_values(tmp_path, monkeypatch, isolated_cache):
    """Even spread and the W_O update load PMET's value checkpoints and give the delta they give alone."""
    import factscope.edit.memit as memit_mod
    from factscope.edit import checkpoint_values, edit
    from factscope.reproduce.batch import share_values
    from factscope.testing import example_requests, tiny_adapter

    adapter = tiny_adapter("llama")
    reqs = example_requests(2)
    fast = dict(context_lengths=[[3, 1]], v_steps=3, mom2_n_tokens=64, value_chunk=2, layers=[1, 2])
    pmet_run = tmp_path / "pmet"
    with checkpoint_values(pmet_run / "deltas" / "entity" / "values"):
        edit(adapter, reqs, editor="pmet", **fast)
    real, calls = memit_mod.optimize_values, []
    monkeypatch.setattr(memit_mod, "optimize_values", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    for flag, optimised in (("even_spread", 0), ("update_attn", 0), ("no_attn_delta", 1)):
        calls.clear()
        run = tmp_path / flag
        assert share_values(pmet_run, run) == 1
        with checkpoint_values(run / "deltas" / "entity" / "values"):
            shared = edit(adapter, reqs, editor="pmet", **{flag: True}, **fast)
        assert len(calls) == optimised, flag
        alone = edit(adapter, reqs, editor="pmet", **{flag: True}, **fast)
        assert len(shared.entries) == len(alone.entries)
        assert all(torch.equal(x.dense(), y.dense()) for x, y in zip(shared.entries, alone.entries)), flag
