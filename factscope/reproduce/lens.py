"""Vocabulary-lens artefacts: RETS Figure 3 with Table 2, and PMET Figure 2.

Usage::

    result, _ = run_step(ctx, "rets_fig3_table2", rets_fig3_table2)

Both reuse :func:`factscope.localize.lens_dataset.run_lens_dataset` /
:func:`factscope.localize.dynamics.component_dynamics` and their plots; each step is
one computation whose result is written once it is complete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from factscope.reproduce import paper
from factscope.reproduce.artefact import ArtefactResult
from factscope.reproduce.context import ReproContext
from factscope.reproduce.verdicts import MIN_FACTS, Claim, _fmt, judge
from factscope.io_utils import atomic_write_text

MIN_KNOCKOUT = 10
WHY_LENS = ("SmolLM2-135M has 30 layers and a 49k-token vocabulary (GPT2-XL: 48 layers, 50k); a small model may "
            "build attributes later and promote the object only near the output.")


def rets_fig3_table2(ctx: ReproContext, folder: Path) -> ArtefactResult:
    """RETS Figure 3 (AR by layer, knock-out decline, object rank flow) and Table 2 (objects included, Spearman)."""
    from factscope.datasets import load_knowns
    from factscope.localize.attributes import AttributeSets
    from factscope.localize.lens_dataset import run_lens_dataset
    from factscope.reports.lens_plots import plot_attributes_rate, plot_knockout, plot_rank_flow

    adapter = ctx.adapter
    facts = load_knowns(ctx.data.path("knowns"))
    sets = AttributeSets.from_file(adapter.tokenizer, ctx.data.path("attributes"))
    ko_n = ctx.sizes.knockout_facts
    res = run_lens_dataset(adapter, facts, sets, n=ctx.sizes.lens_facts, knockout=ko_n > 0, knockout_n=ko_n,
                           window=min(10, adapter.n_layers), seed=ctx.seed, progress=ctx.progress)
    atomic_write_text(folder / "lens_dataset.json", json.dumps(res.to_dict(per_fact=False), indent=1))
    figures = [plot_attributes_rate(res, folder / "attributes_rate.png"), plot_rank_flow(res, folder / "rank_flow.png")]
    if res.knockout:
        figures.append(plot_knockout(res, folder / "knockout.png"))
    L, n = adapter.n_layers, res.n_used
    inc = res.objects_included
    claims = []
    plateau = res.plateau_layer_before_last
    true = res.ar_max > res.ar_layer0 and 0.5 <= plateau / max(L - 1, 1) <= 0.9
    claims.append(Claim(
        "AR rises from layer 0 until a middle-late layer (90 % of the rise reached, ignoring the output layer, between 50 % and 90 % of depth)",
        "rises from layer 0 till the 36-th layer of 48 (75 %), stable afterwards",
        f"AR {100 * res.ar_layer0:.1f} % at layer 0 → max {100 * res.ar_max:.1f} % (layer {res.ar_max_layer}); "
        f"plateau (without the last layer) at layer {plateau} of {L}", judge(true, n, MIN_FACTS), WHY_LENS))
    rho = res.spearman_rho
    true = None if math.isnan(rho) else (rho >= 0.5 and res.spearman_p < 0.05)
    claims.append(Claim("Spearman ρ(−mean object rank, mean AR) across layers is strongly positive (ρ ≥ 0.5, p < 0.05)",
                        "ρ = 0.97 (GPT2-XL), 0.73 (GPT-J)", f"ρ = {_fmt(rho, 1, 2)} (p = {res.spearman_p:.2g})",
                        judge(true, n, MIN_FACTS), WHY_LENS))
    share = inc.get("token_correct")
    true = None if share is None else share >= 0.5
    claims.append(Claim("most correctly predicted objects are in A(r) (≥ 50 %)", "68 % (GPT2-XL), 83 % (GPT-J)",
                        f"{_fmt(share, 100)} % of {inc['n_correct']} correctly predicted objects (token rule)",
                        judge(true, inc["n_correct"], MIN_FACTS), WHY_LENS))
    last_obj, last_rnd = res.object_rank_mean[-1], res.random_rank_mean[-1]
    true = last_obj < res.object_rank_mean[0] and last_obj * 10 < last_rnd
    claims.append(Claim("the object's rank rises through the layers while a random token stays low (final object rank ≥ 10× better)",
                        "object rank rises from early to middle-late layers; random tokens stay low",
                        f"object mean rank {res.object_rank_mean[0]:.0f} → {last_obj:.0f}; random {last_rnd:.0f} at the last layer",
                        judge(true, n, MIN_FACTS), WHY_LENS))
    if res.knockout:
        dm = res.knockout["decline_mean"]
        mlp, attn = dm["mlp"], dm["attn"]
        wins = sum(m > a for m, a in zip(mlp, attn))
        true = sum(mlp) > sum(attn) and wins >= 2 * len(mlp) / 3
        claims.append(Claim("blocking MLP lowers AR more than blocking MHSA across layers (larger mean, and for ≥ 2/3 of start layers)",
                            "MLP drop much more significant than MHSA across layers (GPT2-XL, AR at layer 48)",
                            f"mean decline MLP {100 * sum(mlp) / len(mlp):.1f} pp vs attention {100 * sum(attn) / len(attn):.1f} pp; "
                            f"MLP larger for {wins} of {len(mlp)} start layers",
                            judge(true, res.knockout["n"], MIN_KNOCKOUT), WHY_LENS))
    paper_md = (paper.RETS_FIG3 + "\n\n" + paper.markdown_table(["Model", "Objects Included(%)", "ρ"],
                                                               [[m, *v] for m, v in paper.RETS_TABLE2.items()]))
    ours = paper.markdown_table(["Model", "Objects Included(%) (correct, token rule)", "ρ", "n"],
                                [[adapter.name, _fmt(share, 100), _fmt(rho, 1, 2), str(n)]])
    return ArtefactResult("rets_fig3_table2", "RETS Figure 3 and Table 2 — attributes rate, knock-out, rank flow, Spearman",
                          paper_md, ours, claims, [str(Path(f).relative_to(ctx.out)) for f in figures],
                          n=f"{n} facts for the lens (first usable of known_1000), {res.knockout.get('n', 0) if res.knockout else 0} for the knock-out, k = 50",
                          data=res.summary())


def pmet_fig2(ctx: ReproContext, folder: Path) -> ArtefactResult:
    """PMET Figure 2: cosine / top-50 Jaccard of h^{l-1} vs a^l and vs m^l at the last token."""
    from factscope.datasets import load_knowns
    from factscope.localize.dynamics import component_dynamics, dynamics_summary
    from factscope.reports.lens_plots import plot_dynamics

    facts = load_knowns(ctx.data.path("knowns"), n=ctx.sizes.dynamics_facts)
    dyn = component_dynamics(ctx.adapter, [f.prompt for f in facts], k=50, progress=ctx.progress)
    L = ctx.adapter.n_layers
    numbers = dynamics_summary(dyn, L)  # the rule `factscope dynamics` prints
    stable = numbers["ffn_stable_layer"]["both"]
    figure = plot_dynamics(dyn, folder / "dynamics.png", stable_layer=stable)
    atomic_write_text(folder / "dynamics.json", json.dumps(dyn.to_dict(), indent=1))
    half = L // 2
    moves = {f"{m}.{c}": numbers["mean_abs_change_by_half"][m][c]["second_half"] for m in ("cos", "jaccard") for c in ("attn", "mlp")}
    n = dyn.n
    claims = [
        Claim("in the second half of the layers MHSA's states keep changing more than FFN's (mean |Δ cosine| and |Δ Jaccard| larger for MHSA)",
              "after the 15th layer (of 28) FFN changes slowly while MHSA continues to change frequently",
              f"mean |Δ| over layers {half + 1}-{L - 2}: cosine MHSA {moves['cos.attn']:.3f} vs FFN {moves['cos.mlp']:.3f}; "
              f"Jaccard MHSA {moves['jaccard.attn']:.3f} vs FFN {moves['jaccard.mlp']:.3f}",
              judge(moves["cos.attn"] > moves["cos.mlp"] and moves["jaccard.attn"] > moves["jaccard.mlp"], n, MIN_FACTS),
              "PMET measured GPT-J (28 layers, parallel attention/MLP); SmolLM2 is sequential and far smaller."),
        Claim("FFN curves stabilise by ~60 % of depth (10 %-of-range rule, later of cosine and Jaccard)",
              "FFN stabilises after the 15th of 28 layers (54 %)", f"FFN stable from layer {stable} of {L} ({stable / L:.0%})",
              judge(stable / L <= 0.6, n, MIN_FACTS),
              "The stabilisation rule is ours (PMET reads it off the figure)."),
    ]
    return ArtefactResult("pmet_fig2", "PMET Figure 2 — MHSA / FFN hidden-state dynamics", paper.PMET_FIG2,
                          "See the figure; numbers in dynamics.json.", claims, [str(figure.relative_to(ctx.out))],
                          n=f"{n} prompts (first of known_1000), k = 50", data={"stable_layer": stable, "mean_abs_change_second_half": moves, "rule": numbers["rule"]})
