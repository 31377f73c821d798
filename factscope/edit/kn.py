"""KN: knowledge neurons (Dai et al. 2022) found by integrated gradients, edited through their value vectors.

Usage::

    from factscope.edit import EditRequest, edit
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    request = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French")
    delta = edit(adapter, [request], editor="kn", ig_steps=4, context_lengths=[[3, 1]])
    scores = integrated_gradients(adapter, "The mother tongue of Danielle Darrieux is", 7, steps=4)  # [layers, d_mlp]
    found = coarse_neurons(scores, list(range(adapter.n_layers)), adaptive_threshold=0.2)        # {(layer, unit): score}
    neurons, relaxed = select_neurons([found], share=0.5, max_neurons=5)

The method, as the paper defines it and seed 001 / RaKE ran it as a baseline:

1. **Attribution.** For a prompt x and the true object's first token o, the MLP
   intermediate activation w⁽ˡ⁾ (the down-projection input, site ``mlp_key``) at the
   last prompt token is scaled from 0 to its value; the attribution of neuron i is
   ``w_i · (1/m) Σ_{k=1..m} ∂P(o | x; α_k w)/∂w_i`` with α_k = k/m (a right Riemann sum
   of the path integral, so the attributions of a layer sum to P(o | w) − P(o | 0) up
   to the Riemann error). All m interpolation steps of all layers run as one batch,
   and the prompt's tokens before the last are run once and kept as a KV cache.
2. **Selection.** Per prompt, the neurons above ``adaptive_threshold`` × the largest
   attribution (over all layers); then those shared by more than ``share`` of the
   prompts (the prompt and its context-prefixed variants, plus any paraphrases in
   ``request.extra["paraphrases"]``), at most ``max_neurons`` by mean attribution.
3. **Edit.** Each selected neuron's value vector (its column of the down-projection
   in ``(out, in)`` orientation, whatever the module stores) moves by
   ``scale · (e(o*) − e(o))``, e the input word embedding of the first token (×2 as the
   knowledge-neurons code that EasyEdit runs). ``erase="argmax"`` subtracts the
   unedited model's top prediction instead of the true object, as that code does.

Several requests are edited independently on the unedited model and their changes
added. The delta is low-rank: one one-hot column per selected neuron.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import torch

from factscope.edit.contexts import context_templates, fill_context
from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.hparams import ContextPrefixes, HyperParamError, hp, resolve_layers
from factscope.edit.request import EditRequest
from factscope.edit.runner import SuffixRunner
from factscope.hooks import Site, SiteTrace
from factscope.models.adapter import ModelAdapter
from factscope.scoring import continuation_ids
from factscope.tokens import fill_template

Neuron = tuple[int, int]  # (layer, index of the MLP intermediate unit)


@dataclass
class KNHyperParams(ContextPrefixes):
    """Knowledge neurons: integrated-gradients attribution, shared-neuron selection, value-vector edit."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}

    context_lengths: list = hp([[5, 4]], "Context prefixes as [tokens, count] pairs: the extra prompts of the same fact.")
    layers: Union[Literal["all"], list] = hp("all", "Layers searched for knowledge neurons: 'all' or a list of indices / "
                                                    "fractions of depth.")
    ig_steps: int = hp(20, "Integrated-gradients steps m (interpolation points from 0 to the activation).")
    ig_layers_per_batch: int = hp(0, "Layers whose m steps share one batched forward (0: all layers at once).")
    adaptive_threshold: float = hp(0.2, "Per prompt, keep neurons above this fraction of the largest attribution.")
    share: float = hp(0.5, "Keep neurons found in more than this fraction of the prompts.")
    max_neurons: int = hp(5, "At most this many knowledge neurons (highest mean attribution).")
    scale: float = hp(2.0, "The value vector moves by scale * (e(o*) - e(o)).")
    erase: Literal["true", "argmax"] = hp("true", "Which embedding is subtracted: 'true' (the request's true object, as the "
                                                  "paper) or 'argmax' (the unedited model's top prediction, as the "
                                                  "knowledge-neurons code).")

    def validate(self) -> None:
        super().validate()
        if self.ig_steps < 1 or self.ig_layers_per_batch < 0 or self.max_neurons < 1:
            raise HyperParamError("ig_steps and max_neurons must be >= 1 and ig_layers_per_batch >= 0.")
        if not 0.0 < self.adaptive_threshold <= 1.0 or not 0.0 <= self.share < 1.0:
            raise HyperParamError("adaptive_threshold must lie in (0, 1] and share in [0, 1).")
        if self.layers != "all" and not isinstance(self.layers, (list, tuple)):
            raise HyperParamError("layers must be 'all' or a list of layer indices / fractions.")

    def edited_layers(self, adapter: ModelAdapter) -> list[int]:
        """The layers searched (and possibly edited): all of them, or the listed ones resolved."""
        return _layer_indices(adapter, self.layers)


def _layer_indices(adapter: ModelAdapter, layers: Any) -> list[int]:
    if layers == "all":
        return list(range(adapter.n_layers))
    return resolve_layers(adapter, layers)


def integrated_gradients(
    adapter: ModelAdapter,
    text: str,
    token_id: int,
    *,
    steps: int = 20,
    layers: Sequence[int] | None = None,
    layers_per_batch: int = 0,
) -> torch.Tensor:
    """``[len(layers), d_mlp]`` attributions of the last-token MLP units of ``text`` for next token ``token_id``."""
    layers = list(range(adapter.n_layers)) if layers is None else list(layers)
    ids = adapter.tokenizer(text)["input_ids"]
    last = len(ids) - 1
    key_sites = [Site("mlp_key", layer) for layer in layers]
    with torch.no_grad(), SiteTrace(adapter, read=key_sites) as trace:
        adapter.model(input_ids=torch.tensor([ids], device=adapter.device))
    activations = torch.stack([trace[site][0, last].float() for site in key_sites])  # [L, d_mlp]
    alphas = torch.arange(1, steps + 1, dtype=torch.float32, device=adapter.device) / steps
    chunk = layers_per_batch or len(layers)
    scores = []
    for start in range(0, len(layers), chunk):
        block = list(range(start, min(start + chunk, len(layers))))
        scores.append(_ig_block(adapter, ids, token_id, [layers[b] for b in block], activations[block], alphas))
    return torch.cat(scores)


def _ig_block(adapter: ModelAdapter, ids: list[int], token_id: int, layers: list[int],
              activations: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Attributions for ``layers``: row block j (``len(alphas)`` rows) scales layer ``layers[j]`` only."""
    steps = len(alphas)
    rows = steps * len(layers)
    runner = SuffixRunner(adapter, [ids] * rows, [len(ids) - 1] * rows, start_layer=min(layers))
    scaled = [(alphas[:, None] * activations[j][None, :]).requires_grad_(True) for j in range(len(layers))]

    def replace(j: int):
        def edit(_site: Site, x: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            block = slice(j * steps, (j + 1) * steps)
            x[block, -1] = scaled[j].to(x.dtype)
            return x

        return edit

    hidden = runner.run({Site("mlp_key", layer): replace(j) for j, layer in enumerate(layers)})
    probs = torch.softmax(adapter.project_to_vocab(hidden[:, -1]).float(), dim=-1)[:, token_id]
    grads = torch.autograd.grad(probs.sum(), scaled)
    return torch.stack([activations[j] * grads[j].mean(0) for j in range(len(layers))]).detach()


def coarse_neurons(scores: torch.Tensor, layers: Sequence[int], adaptive_threshold: float) -> dict[Neuron, float]:
    """Neurons of one prompt above ``adaptive_threshold`` × its largest attribution, with their scores."""
    threshold = float(scores.max()) * adaptive_threshold
    if threshold <= 0:
        return {}
    picked = torch.nonzero(scores > threshold)
    return {(int(layers[r]), int(c)): float(scores[r, c]) for r, c in picked.tolist()}


def select_neurons(per_prompt: Sequence[dict[Neuron, float]], *, share: float, max_neurons: int) -> tuple[list[Neuron], bool]:
    """Neurons found in more than ``share`` of the prompts, best ``max_neurons`` by mean score.

    Returns ``(neurons, relaxed)``; ``relaxed`` is True when no neuron was shared widely
    enough and the most frequent ones were taken instead (the paper adjusts its
    threshold per fact for the same reason).
    """
    counts: Counter[Neuron] = Counter(n for found in per_prompt for n in found)
    if not counts:
        return [], False
    mean = {n: sum(found.get(n, 0.0) for found in per_prompt) / len(per_prompt) for n in counts}
    shared = [n for n, c in counts.items() if c > share * len(per_prompt)]
    relaxed = not shared
    pool = shared or [n for n, c in counts.items() if c == max(counts.values())]
    return sorted(pool, key=lambda n: (-mean[n], n))[:max_neurons], relaxed


def _prompts(adapter: ModelAdapter, request: EditRequest, hp_: KNHyperParams) -> list[str]:
    templates = context_templates(adapter, hp_.context_lengths, seed=hp_.context_seed)
    prompts = [fill_template(fill_context(t, request.prompt), request.subject) for t in templates]
    extra = request.extra.get("paraphrases") if isinstance(request.extra, dict) else None
    return prompts + [str(p) for p in extra or []]


def _first_token(adapter: ModelAdapter, prompt: str, target: str) -> int:
    return continuation_ids(adapter.tokenizer, prompt, target)[0]


def _erased_token(adapter: ModelAdapter, request: EditRequest, erase: str) -> int:
    if erase == "true" and request.target_true is not None:
        return _first_token(adapter, request.filled, request.target_true)
    ids = adapter.tokenizer(request.filled)["input_ids"]
    with torch.no_grad():
        logits = adapter.model(input_ids=torch.tensor([ids], device=adapter.device)).logits[0, -1]
    return int(logits.argmax())


def knowledge_neurons(adapter: ModelAdapter, request: EditRequest, hp_: KNHyperParams,
                      layers: Sequence[int] | None = None) -> dict[str, Any]:
    """The knowledge neurons of ``request``'s fact (searched in ``layers``, default ``hp_.layers``) and how they were chosen."""
    layers = _layer_indices(adapter, hp_.layers) if layers is None else list(layers)
    true_token = _erased_token(adapter, request, "true" if request.target_true is not None else "argmax")
    found = []
    for prompt in _prompts(adapter, request, hp_):
        scores = integrated_gradients(adapter, prompt, true_token, steps=hp_.ig_steps, layers=layers,
                                      layers_per_batch=hp_.ig_layers_per_batch)
        found.append(coarse_neurons(scores, layers, hp_.adaptive_threshold))
    neurons, relaxed = select_neurons(found, share=hp_.share, max_neurons=hp_.max_neurons)
    return {"neurons": neurons, "relaxed": relaxed, "n_prompts": len(found),
            "n_coarse": [len(f) for f in found], "attributed_token": true_token}


def kn_edit(job: EditJob) -> WeightDelta:
    """Find each request's knowledge neurons and move their value vectors from e(o) to e(o*)."""
    adapter, hp_, requests = job.adapter, job.hparams, job.requests
    embeddings = adapter.embedding.weight.detach()
    changes: dict[int, dict[int, torch.Tensor]] = {}
    found = []
    for request in requests:
        info = knowledge_neurons(adapter, request, hp_, job.layers)
        new = embeddings[_first_token(adapter, request.filled, request.target_new)].float()
        old = embeddings[_erased_token(adapter, request, hp_.erase)].float()
        for layer, unit in info["neurons"]:
            column = changes.setdefault(layer, {})
            column[unit] = column.get(unit, torch.zeros_like(new)) + hp_.scale * (new - old)
        found.append({**info, "neurons": [list(n) for n in info["neurons"]]})
    entries = []
    for layer in sorted(changes):
        weight = adapter.mlp_down_weight(layer)
        units = sorted(changes[layer])
        u = torch.stack([changes[layer][i] for i in units], dim=1).to(weight.parameter.dtype)  # [out, r]
        v = torch.zeros(weight.matrix.shape[1], len(units), dtype=weight.parameter.dtype)
        v[units, range(len(units))] = 1
        entries.append(DeltaEntry("mlp_key", layer, u.to(weight.parameter.device), v.to(weight.parameter.device)))
    return WeightDelta(entries, {
        "editor": "kn",
        "hparams": hp_.to_dict(),
        "requests": [r.to_dict() for r in requests],
        "model_fingerprint": adapter.fingerprint,
        "knowledge_neurons": found,
    })


EDITOR = EditorSpec("kn", KNHyperParams, kn_edit,
                    summary="KN: knowledge neurons by integrated gradients, edited through their value vectors")
