"""FT-L: fine-tune one MLP down-projection on the target, with an L∞ bound on the change.

Usage::

    from factscope.edit import edit
    from factscope.testing import example_requests, tiny_adapter
    adapter = tiny_adapter("llama")
    delta = edit(adapter, example_requests(2), editor="ft", layer=0.2, norm_constraint=1e-3, ft_steps=5)
    delta.entries[0].v is None                              # True: a dense delta of mlp_key.<layer>

Constrained fine-tuning (Zhu et al. 2020, as run by ROME/RETS): Adam on ``ΔW`` of the
down-projection of one layer, minimising the mean NLL of ``target_new`` after each
prompt; after every step each entry of ``ΔW`` is clipped to ``[−ε, ε]``. The change is
applied functionally (the MLP output gains ``k ΔWᵀ``), so the model's weights are
never touched; layers below the edited one are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.hparams import HyperParamError, SingleLayer, hp
from factscope.edit.runner import SuffixRunner
from factscope.hooks import Site
from factscope.scoring import continuation_ids


@dataclass
class FTHyperParams(SingleLayer):
    """FT-L: bounded fine-tuning of one MLP output weight (no context prefixes, no value search, no covariance)."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt2": {"layer": 0 / 48},
        "gptj": {"layer": 21 / 28},
        # eps 5e-4 (GPT-2 XL's) leaves the demo fact unchanged on this small model
        "smollm2-135m-instruct": {"layer": 5, "norm_constraint": 2e-3},
    }

    layer: int | float = hp(0.2, "Fine-tuned layer (its MLP down-projection): index or fraction of depth.")
    ft_lr: float = hp(5e-4, "Adam learning rate on the weight change.")
    ft_steps: int = hp(25, "Adam steps.")
    norm_constraint: float = hp(5e-4, "L-infinity bound epsilon on every entry of the weight change.")
    early_stop_nll: float = hp(0.01, "Stop once the mean target NLL is below this.")

    def validate(self) -> None:
        super().validate()
        if self.ft_steps < 0 or self.ft_lr <= 0 or self.norm_constraint <= 0:
            raise HyperParamError("ft_steps must be >= 0, ft_lr > 0 and norm_constraint > 0.")


def ft_edit(job: EditJob) -> WeightDelta:
    """Fine-tune on all requests of ``job`` together; returns a dense delta (the model is left unchanged)."""
    adapter, hp_, layer, requests = job.adapter, job.hparams, job.layer, job.requests
    tok = adapter.tokenizer
    seqs, first, targets = [], [], []
    for r in requests:
        prompt_ids = tok(r.filled)["input_ids"]
        tgt = continuation_ids(tok, r.filled, r.target_new)
        seqs.append(prompt_ids + tgt[:-1])
        first.append(len(prompt_ids) - 1)
        targets.append(tgt)
    # A weight change affects every token, so no prefix can be reused; lower layers can.
    runner = SuffixRunner(adapter, seqs, [0] * len(seqs), start_layer=layer, reuse_prefix=False)
    weight = adapter.mlp_down_weight(layer)
    change = torch.zeros_like(weight.matrix, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([change], lr=hp_.ft_lr)
    rows = torch.tensor([i for i, t in enumerate(targets) for _ in t])
    pos = torch.tensor([first[i] + j for i, t in enumerate(targets) for j in range(len(t))])
    ids = torch.tensor([x for t in targets for x in t])
    weights = torch.tensor([1.0 / len(t) for t in targets for _ in t]) / len(targets)
    key_site, out_site = Site("mlp_key", layer), Site("mlp", layer)
    keys: dict[str, torch.Tensor] = {}

    def grab_key(_s: Site, x: torch.Tensor) -> torch.Tensor:
        keys["k"] = x
        return x

    def add_change(_s: Site, x: torch.Tensor) -> torch.Tensor:
        return x + (keys["k"] @ change.T.to(x.dtype))

    nll_value = float("nan")
    steps = 0
    for step in range(hp_.ft_steps + 1):
        hidden = runner.run({key_site: grab_key, out_site: add_change})
        logp = torch.log_softmax(adapter.project_to_vocab(hidden[rows.to(hidden.device), pos.to(hidden.device)]).float(), -1)
        nll = -(logp.gather(1, ids.to(logp.device).unsqueeze(1)).squeeze(1) * weights.to(logp.device)).sum()
        nll_value = float(nll.detach())
        if nll_value < hp_.early_stop_nll or step == hp_.ft_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        nll.backward()
        optimizer.step()
        steps += 1
        with torch.no_grad():
            change.clamp_(-hp_.norm_constraint, hp_.norm_constraint)
    entry = DeltaEntry("mlp_key", layer, change.detach().to(weight.parameter.dtype))
    return WeightDelta([entry], {
        "editor": "ft",
        "hparams": hp_.to_dict(),
        "layer": layer,
        "requests": [r.to_dict() for r in requests],
        "model_fingerprint": adapter.fingerprint,
        "target_nll": nll_value,
        "steps": steps,
    })


EDITOR = EditorSpec("ft", FTHyperParams, ft_edit, summary="FT-L: fine-tune one MLP down-projection with an L-infinity bound")
