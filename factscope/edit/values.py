"""Target values by optimisation: the vector δ that makes the model say ``target_new``.

Usage::

    result = optimize_values(adapter, requests, layer=7, kinds=("mlp",), lookup="subject_last",
                             contexts=contexts, hparams=hp)
    result.delta["mlp"]        # [n_requests, d_model], added at the lookup token of mlp.7
    result.init["mlp"]         # [n_requests, d_model], the unedited value there (bare prompt)

For each request, δ (one per site kind) is added at the lookup token to the output of
the edited site(s) of ``layer`` in every context-prefixed prompt and in the KL
prompt; Adam minimises

    mean NLL(target_new | prefixed prompts) + kl_factor · KL(edited ‖ original on "{s} is a")
    + v_weight_decay · ‖δ‖² / ‖h‖²

with ‖δ‖ clamped to ``clamp_norm_factor · ‖h‖`` (h = the unedited value at the bare
prompt). ``v_lr`` is an absolute step, or (``v_lr_units="rms"``) a step in units of
RMS(h), which keeps the optimisation alike on models whose activations differ in scale
by orders of magnitude. Requests are optimised together (their losses add, so their gradients are
independent); one whose NLL falls below ``early_stop_nll`` is frozen and its rows
leave the batch (``SuffixRunner.keep_rows``), so finished requests cost nothing more. Logits are
computed only at target positions, from the last layer's hidden state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from factscope.edit.contexts import BARE, fill_context
from factscope.edit.hparams import ValueOptimisation
from factscope.edit.keys import lookup_index
from factscope.edit.request import EditRequest
from factscope.edit.runner import SuffixRunner
from factscope.hooks import Site
from factscope.models.adapter import ModelAdapter
from factscope.scoring import continuation_ids

VALUE_KINDS = ("attn", "mlp", "resid")


@dataclass
class ValueResult:
    """Optimised δ and unedited values per site kind, each ``[n_requests, d_model]``."""

    layer: int
    init: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    nll: list[float] = field(default_factory=list)  # final target NLL per request
    steps: list[int] = field(default_factory=list)  # steps taken per request

    def target(self, kind: str) -> torch.Tensor:
        return self.init[kind] + self.delta[kind]


@dataclass
class _Row:
    ids: list[int]
    lookup: int
    request: int
    targets: list[int]  # empty for a KL row
    first_target_pos: int  # position whose next-token distribution predicts targets[0]


def build_rows(tokenizer: Any, requests: Sequence[EditRequest], contexts: Sequence[str], lookup: str,
               kl_prompt: str | None) -> list[_Row]:
    """Rewriting rows (every context) then one KL row per request."""
    rows: list[_Row] = []
    for r, req in enumerate(requests):
        for context in contexts:
            template = fill_context(context, req.prompt)
            ids, index = lookup_index(tokenizer, template, req.subject, lookup)
            prompt_text = template.replace(BARE, req.subject, 1)
            targets = continuation_ids(tokenizer, prompt_text, req.target_new)
            rows.append(_Row(ids + targets[:-1], index, r, targets, len(ids) - 1))
    if kl_prompt:
        for r, req in enumerate(requests):
            ids, index = lookup_index(tokenizer, kl_prompt, req.subject, lookup)
            rows.append(_Row(ids, index, r, [], len(ids) - 1))
    return rows


@dataclass
class _Active:
    """Index tensors over the rows still being run (rows of finished requests are dropped)."""

    rows: list[int]  # indices into the full row list, in runner order
    owner: torch.Tensor  # request of each active row
    lookup_pos: torch.Tensor  # suffix index of each active row's lookup token
    t_rows: torch.Tensor  # for every target token: its active row
    t_pos: torch.Tensor  # ... its suffix index
    t_ids: torch.Tensor  # ... its token id
    kl_rows: torch.Tensor  # active positions of KL rows
    kl_pos: torch.Tensor
    kl_owner: torch.Tensor
    kl_which: torch.Tensor  # index of each active KL row among all KL rows (for the unedited distribution)
    rows_per_request: torch.Tensor

    @classmethod
    def build(cls, all_rows: Sequence[_Row], active: list[int], runner: SuffixRunner, n: int, device: torch.device) -> "_Active":
        rows = [all_rows[i] for i in active]
        t_rows, t_pos, t_ids = [], [], []
        for j, row in enumerate(rows):
            for k, tok in enumerate(row.targets):
                t_rows.append(j)
                t_pos.append(runner.suffix_index(j, row.first_target_pos + k))
                t_ids.append(tok)
        kl = [j for j, row in enumerate(rows) if not row.targets]
        kl_all = [i for i, row in enumerate(all_rows) if not row.targets]

        def t(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, device=device, dtype=torch.long)

        owner = t([row.request for row in rows])
        rewrite_owner = t([row.request for row in rows if row.targets])
        return cls(
            rows=active,
            owner=owner,
            lookup_pos=t([runner.suffix_index(j, row.lookup) for j, row in enumerate(rows)]),
            t_rows=t(t_rows), t_pos=t(t_pos), t_ids=t(t_ids),
            kl_rows=t(kl),
            kl_pos=t([runner.suffix_index(j, rows[j].first_target_pos) for j in kl]),
            kl_owner=t([rows[j].request for j in kl]),
            kl_which=t([kl_all.index(active[j]) for j in kl]),
            rows_per_request=torch.bincount(rewrite_owner, minlength=n).float().clamp(min=1),
        )


def optimize_values(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    layer: int,
    *,
    kinds: Sequence[str] = ("mlp",),
    lookup: str = "subject_last",
    contexts: Sequence[str] = (BARE,),
    hparams: ValueOptimisation | None = None,
    progress: bool = False,
) -> ValueResult:
    """Optimise δ for every request at once (see module docstring)."""
    hp = hparams or ValueOptimisation()
    layer = adapter.check_layer(layer)
    for kind in kinds:
        if kind not in VALUE_KINDS:
            raise ValueError(f"Value site kind {kind!r} not in {VALUE_KINDS}.")
    n = len(requests)
    kl_on = hp.kl_factor > 0 and bool(hp.kl_prompt)
    rows = build_rows(adapter.tokenizer, requests, contexts, lookup, hp.kl_prompt if kl_on else None)
    runner = SuffixRunner(adapter, [r.ids for r in rows], [r.lookup for r in rows], start_layer=layer)
    device = adapter.device
    act = _Active.build(rows, list(range(len(rows))), runner, n, device)
    bare = [next(i for i, r in enumerate(rows) if r.targets and r.request == q) for q in range(n)]  # context 0 of each request

    # Adam moves θ; δ = unit · θ. With v_lr_units="rms" the unit is the RMS of each request's unedited
    # value, so v_lr is a relative step: an absolute step of 0.5 is 4 RMS on Gemma-3's pre-norm MLP
    # output (RMS ≈ 0.05-0.13) and 0.005 RMS on its residual stream (RMS ≈ 100).
    thetas = {k: torch.zeros(n, adapter.d_model, device=device, dtype=torch.float32, requires_grad=True) for k in kinds}
    units: dict[str, torch.Tensor] = {}
    init: dict[str, torch.Tensor] = {}
    optimizer = torch.optim.Adam(list(thetas.values()), lr=hp.v_lr)

    def delta_of(kind: str) -> torch.Tensor:
        return thetas[kind] * units[kind]

    def make_edit(kind: str):
        def edit(_site: Site, x: torch.Tensor) -> torch.Tensor:
            if kind not in init:  # first pass (all rows, δ = 0): record the unedited values at the bare prompt
                init[kind] = x[torch.tensor(bare, device=x.device), act.lookup_pos[bare]].detach().float().clone()
                units[kind] = (init[kind].pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-12)
                               if hp.v_lr_units == "rms" else torch.ones(n, 1, device=x.device))
            x = x.clone()
            rows_ = torch.arange(x.shape[0], device=x.device)
            x[rows_, act.lookup_pos] = x[rows_, act.lookup_pos] + delta_of(kind)[act.owner].to(x.dtype)
            return x

        return edit

    edits = {Site(k, layer): make_edit(k) for k in kinds}
    kl_init: torch.Tensor | None = None
    done = torch.zeros(n, dtype=torch.bool, device=device)
    final_nll = torch.full((n,), float("nan"))
    steps = torch.zeros(n, dtype=torch.long)
    bar = tqdm(range(max(1, hp.v_steps)), desc="value optimisation", disable=not progress, leave=False)
    for step in bar:
        hidden = runner.run(edits)
        if step == 0 and not all(bool(torch.isfinite(v).all()) for v in init.values()):
            raise FloatingPointError(
                f"The unedited model produced non-finite activations at layer {layer} for these prompts "
                "(padded batches in eager float64 attention do this). Load the model in float32 or with "
                "attn_implementation='sdpa'."
            )
        logits = adapter.project_to_vocab(hidden[act.t_rows, act.t_pos]).float()
        token_lp = torch.log_softmax(logits, dim=-1).gather(1, act.t_ids.unsqueeze(1)).squeeze(1)
        # mean per-token NLL per row, then mean over each request's rows
        n_active = len(act.rows)
        per_row = torch.zeros(n_active, device=device).index_add(0, act.t_rows, -token_lp)
        count = torch.zeros(n_active, device=device).index_add(0, act.t_rows, torch.ones_like(token_lp))
        row_nll = per_row / count.clamp(min=1)
        nll = torch.zeros(n, device=device).index_add(0, act.owner, row_nll * (count > 0)) / act.rows_per_request
        with torch.no_grad():
            newly = (nll.detach() < hp.early_stop_nll) & ~done
            final_nll[~done.cpu()] = nll.detach().cpu()[~done.cpu()]
            done |= newly
        loss = nll.sum()
        if len(act.kl_rows):
            kl_logp = torch.log_softmax(adapter.project_to_vocab(hidden[act.kl_rows, act.kl_pos]).float(), dim=-1)
            if kl_init is None:
                kl_init = kl_logp.detach().clone()
            kl = (kl_logp.exp() * (kl_logp - kl_init[act.kl_which])).sum(-1)  # KL(edited ‖ original) per request
            loss = loss + hp.kl_factor * torch.zeros(n, device=device).index_add(0, act.kl_owner, kl).sum()
        for kind in kinds:
            ratio = delta_of(kind).pow(2).sum(1) / init[kind].pow(2).sum(1).clamp(min=1e-12)
            loss = loss + hp.v_weight_decay * ratio.sum()
        if progress:
            bar.set_postfix(nll=float(nll.detach()[~done].mean()) if not bool(done.all()) else 0.0, done=int(done.sum()))
        if bool(done.all()) or step == hp.v_steps - 1 or hp.v_steps == 0:
            break
        frozen = {k: v.detach()[done].clone() for k, v in thetas.items()}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps[~done.cpu()] += 1
        with torch.no_grad():
            for kind, theta in thetas.items():
                theta[done] = frozen[kind]  # Adam momentum must not move finished requests
                max_norm = hp.clamp_norm_factor * init[kind].norm(dim=1)
                norm = delta_of(kind).norm(dim=1)
                scale = torch.where(norm > max_norm, max_norm / norm.clamp(min=1e-12), torch.ones_like(norm))
                theta.mul_(scale.unsqueeze(1))
        if bool(newly.any()):  # finished requests' rows no longer need running; the others are unaffected
            keep = [j for j, i in enumerate(act.rows) if not bool(done[rows[i].request])]
            if runner.keep_rows(keep):
                act = _Active.build(rows, [act.rows[j] for j in keep], runner, n, device)
    bar.close()
    return ValueResult(
        layer=layer,
        init={k: v.cpu() for k, v in init.items()},
        delta={k: delta_of(k).detach().cpu() for k in kinds},
        nll=final_nll.tolist(),
        steps=steps.tolist(),
    )
