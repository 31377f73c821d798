"""The vocabulary lens over many known facts: RETS Figure 3 (a, b, c) and Table 2.

Usage::

    facts = load_knowns("known_1000.json")
    sets = AttributeSets.from_file(adapter.tokenizer, "relation_related_attributes.json")
    res = run_lens_dataset(adapter, facts, sets, n=200)
    res.ar_mean, res.spearman_rho, res.knockout["decline_mean"]["mlp"]

Everything is measured at the last relation token (``lr``, the last prompt token):
per layer, the attributes rate ``AR^l`` against A(r) of the fact's relation, the
1-based rank of the object's first token, and the rank of one random token per fact
(drawn once from a seeded generator, as RETS' "random token" curve); Spearman ρ
between the mean negative object rank and the mean AR across layers; the share of
objects contained in their relation's attributes; and the AR decline at the
evaluation layer after knocking out MLP / attention windows (see ``knockout``).
Facts whose relation has no attribute set, or whose prompt ends with the subject,
are skipped and counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from factscope.datasets import KnownFact
from factscope.localize.attributes import AttributeSets, attributes_rate_batch
from factscope.localize.knockout import KNOCKOUT_KINDS, knockout_decline
from factscope.localize.lens import hidden_states_at, resolve_position, token_ranks
from factscope.models.adapter import ModelAdapter
from factscope.scoring import EmptyTargetError, continuation_ids
from factscope.tokens import EmptyRelationError, SubjectNotFoundError


@dataclass
class PreparedFact:
    """A usable fact with its token positions and ids."""

    fact: KnownFact
    position: int
    object_id: int


@dataclass
class LensDatasetResult:
    """Means over the facts used (per layer) and the per-fact values behind them."""

    model: str
    k: int
    raw: bool
    n_used: int
    skipped: dict[str, int]
    layers: list[int]
    ar_mean: list[float]
    ar_std: list[float]
    object_rank_mean: list[float]
    random_rank_mean: list[float]
    spearman_rho: float
    spearman_p: float
    ar_layer0: float
    ar_max: float
    ar_max_layer: int
    plateau_layer: int
    plateau_layer_before_last: int
    objects_included: dict[str, Any]
    knockout: dict[str, Any] = field(default_factory=dict)
    per_fact: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, per_fact: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not per_fact:
            data.pop("per_fact")
        return data

    def summary(self) -> dict[str, Any]:
        """The headline figures (what docs and reports quote)."""
        ko = self.knockout
        out: dict[str, Any] = {
            "n_used": self.n_used,
            "ar_layer0": self.ar_layer0,
            "ar_max": self.ar_max,
            "ar_max_layer": self.ar_max_layer,
            "plateau_layer": self.plateau_layer,
            "plateau_layer_before_last": self.plateau_layer_before_last,
            "spearman_rho": self.spearman_rho,
            "spearman_p": self.spearman_p,
            "objects_included": self.objects_included,
        }
        if ko:
            out["knockout"] = {
                "n": ko["n"],
                "eval_layer": ko["eval_layer"],
                "window": ko["window"],
                "ar_clean_mean": ko["ar_clean_mean"],
                "mean_decline": {kind: _mean(v) for kind, v in ko["decline_mean"].items()},
                "max_decline": {kind: max(v) for kind, v in ko["decline_mean"].items()},
            }
        return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def plateau_layer(curve: Sequence[float], fraction: float = 0.9) -> int:
    """First layer where the curve has covered ``fraction`` of its rise from layer 0 to its maximum."""
    values = [float(v) for v in curve]
    target = values[0] + fraction * (max(values) - values[0])
    return next(i for i, v in enumerate(values) if v >= target - 1e-12)


def prepare_facts(
    adapter: ModelAdapter, facts: Sequence[KnownFact], attributes: AttributeSets, n: int | None = None
) -> tuple[list[PreparedFact], Counter]:
    """The first ``n`` usable facts (relation has attributes, prompt has relation tokens) and skip counts."""
    used: list[PreparedFact] = []
    skipped: Counter = Counter()
    for fact in facts:
        if n is not None and len(used) >= n:
            break
        if fact.relation_id is None or fact.relation_id not in attributes:
            skipped["relation_without_attributes"] += 1
            continue
        try:
            position = resolve_position(adapter, fact.prompt, "lr", fact.subject)
            object_id = continuation_ids(adapter.tokenizer, fact.prompt, fact.attribute)[0]
        except (EmptyRelationError, SubjectNotFoundError, EmptyTargetError):
            skipped["no_relation_tokens_or_empty"] += 1
            continue
        used.append(PreparedFact(fact, position, object_id))
    return used, skipped


@torch.no_grad()
def run_lens_dataset(
    adapter: ModelAdapter,
    facts: Sequence[KnownFact],
    attributes: AttributeSets,
    *,
    n: int | None = None,
    k: int = 50,
    raw: bool = False,
    batch_size: int = 16,
    knockout: bool = True,
    knockout_n: int | None = None,
    window: int = 10,
    eval_layer: int | None = None,
    kinds: Sequence[str] = KNOCKOUT_KINDS,
    seed: int = 0,
    progress: bool = True,
) -> LensDatasetResult:
    """Attributes rate, object/random ranks, Spearman ρ, objects included and knock-out declines."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    eval_layer = adapter.n_layers - 1 if eval_layer is None else adapter.check_layer(eval_layer)
    prepared, skipped = prepare_facts(adapter, facts, attributes, n)
    if not prepared:
        raise ValueError(f"No usable fact among {len(facts)} (skipped: {dict(skipped)}).")
    vocab = adapter.project_to_vocab(torch.zeros(1, adapter.d_model, device=adapter.device, dtype=adapter.dtype)).shape[-1]
    generator = torch.Generator().manual_seed(seed)
    random_ids = torch.randint(0, vocab, (len(prepared),), generator=generator)
    L = adapter.n_layers
    ar = torch.empty(len(prepared), L)
    obj_rank = torch.empty(len(prepared), L)
    rnd_rank = torch.empty(len(prepared), L)
    correct = torch.zeros(len(prepared), dtype=torch.bool)

    bar = tqdm(total=len(prepared), desc="lens", unit="fact", disable=not progress)
    for start in range(0, len(prepared), batch_size):
        chunk = prepared[start : start + batch_size]
        rows = slice(start, start + len(chunk))
        states = hidden_states_at(adapter, [p.fact.prompt for p in chunk], [p.position for p in chunk])
        masks = torch.stack([attributes.mask(p.fact.relation_id, vocab) for p in chunk])  # [B, V]
        obj_ids = torch.tensor([p.object_id for p in chunk], device=adapter.device)
        rnd_ids = random_ids[rows].to(adapter.device)
        for layer in range(L):
            logits = adapter.project_to_vocab(states[:, layer].to(adapter.dtype), raw=raw).float()
            top = logits.topk(min(k, vocab), dim=-1).indices.cpu()
            ar[rows, layer] = masks.gather(1, top).float().mean(dim=1)
            obj_rank[rows, layer] = token_ranks(logits, obj_ids).float().cpu()
            rnd_rank[rows, layer] = token_ranks(logits, rnd_ids).float().cpu()
        final = adapter.project_to_vocab(states[:, L - 1].to(adapter.dtype)).float()  # the model's own logits
        correct[rows] = (final.argmax(dim=-1) == obj_ids).cpu()
        bar.update(len(chunk))
    bar.close()

    ar_mean = ar.mean(dim=0)
    rank_mean = obj_rank.mean(dim=0)
    rho, p_value = _spearman((-rank_mean).tolist(), ar_mean.tolist())
    in_tokens = torch.tensor([bool(attributes.mask(p.fact.relation_id, vocab)[p.object_id]) for p in prepared])
    in_strings = torch.tensor([attributes.contains_string(p.fact.relation_id, p.fact.attribute) for p in prepared])

    def share(flags: torch.Tensor, where: torch.Tensor) -> float | None:
        return float(flags[where].float().mean()) if bool(where.any()) else None

    everyone = torch.ones(len(prepared), dtype=torch.bool)
    included = {
        "rule": "object's first token in A(r) (token) / object string among the relation's attribute strings (string)",
        "n_correct": int(correct.sum()),
        "token_all": share(in_tokens, everyone),
        "token_correct": share(in_tokens, correct),
        "string_all": share(in_strings, everyone),
        "string_correct": share(in_strings, correct),
    }
    result = LensDatasetResult(
        model=adapter.name,
        k=k,
        raw=raw,
        n_used=len(prepared),
        skipped=dict(skipped),
        layers=list(range(L)),
        ar_mean=ar_mean.tolist(),
        ar_std=ar.std(dim=0, unbiased=False).tolist(),
        object_rank_mean=rank_mean.tolist(),
        random_rank_mean=rnd_rank.mean(dim=0).tolist(),
        spearman_rho=rho,
        spearman_p=p_value,
        ar_layer0=float(ar_mean[0]),
        ar_max=float(ar_mean.max()),
        ar_max_layer=int(ar_mean.argmax()),
        plateau_layer=plateau_layer(ar_mean.tolist()),
        plateau_layer_before_last=plateau_layer(ar_mean.tolist()[:-1]) if L > 1 else 0,
        objects_included=included,
    )
    declines: dict[str, list[list[float]]] = {kind: [] for kind in kinds}
    ko_facts = prepared[: knockout_n if knockout_n is not None else len(prepared)] if knockout else []
    ko_clean: list[float] = []
    for p in tqdm(ko_facts, desc="knock-out", unit="fact", disable=not progress):
        ko = knockout_decline(
            adapter, p.fact.prompt, p.position, attributes.mask(p.fact.relation_id, vocab),
            kinds=kinds, window=window, eval_layer=eval_layer, k=k, raw=raw,
        )
        ko_clean.append(ko.ar_clean)
        for kind in kinds:
            declines[kind].append(ko.decline[kind])
    if ko_facts:
        result.knockout = {
            "n": len(ko_facts),
            "eval_layer": eval_layer,
            "window": window,
            "starts": list(range(eval_layer + 1)),
            "ar_clean_mean": _mean(ko_clean),
            "decline_mean": {kind: torch.tensor(v).mean(dim=0).tolist() for kind, v in declines.items()},
        }
    for i, p in enumerate(prepared):
        row: dict[str, Any] = {
            "known_id": p.fact.known_id,
            "relation_id": p.fact.relation_id,
            "prompt": p.fact.prompt,
            "object": p.fact.attribute,
            "object_id": p.object_id,
            "position": p.position,
            "correct": bool(correct[i]),
            "object_in_attributes_token": bool(in_tokens[i]),
            "object_in_attributes_string": bool(in_strings[i]),
            "ar": ar[i].tolist(),
            "object_rank": [int(r) for r in obj_rank[i]],
            "random_id": int(random_ids[i]),
            "random_rank": [int(r) for r in rnd_rank[i]],
        }
        if i < len(ko_facts):
            row["knockout_decline"] = {kind: declines[kind][i] for kind in kinds}
        result.per_fact.append(row)
    return result


def _spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan"), float("nan")  # undefined for a constant curve
    res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    return (rho if not math.isnan(rho) else float("nan")), p
