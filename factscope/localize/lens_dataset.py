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


@dataclass
class LensSettings:
    """What a lens-dataset run measures (``run_lens_dataset``'s keyword arguments)."""

    n: int | None = None
    k: int = 50
    raw: bool = False
    batch_size: int = 16
    knockout: bool = True
    knockout_n: int | None = None
    window: int = 10
    eval_layer: int | None = None
    kinds: Sequence[str] = KNOCKOUT_KINDS
    seed: int = 0

    def check(self, adapter: ModelAdapter) -> "LensSettings":
        """Validated, with ``eval_layer`` resolved (default: the last layer)."""
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        eval_layer = adapter.n_layers - 1 if self.eval_layer is None else adapter.check_layer(self.eval_layer)
        return LensSettings(**{**asdict(self), "eval_layer": eval_layer, "kinds": tuple(self.kinds)})


@dataclass
class LensPlan:
    """The usable facts, each one's random token, and the vocabulary size: the same in every shard."""

    prepared: list[PreparedFact]
    skipped: Counter
    random_ids: torch.Tensor
    vocab: int

    @classmethod
    def make(cls, adapter: ModelAdapter, facts: Sequence[KnownFact], attributes: AttributeSets,
             settings: LensSettings) -> "LensPlan":
        prepared, skipped = prepare_facts(adapter, facts, attributes, settings.n)
        if not prepared:
            raise ValueError(f"No usable fact among {len(facts)} (skipped: {dict(skipped)}).")
        vocab = adapter.project_to_vocab(torch.zeros(1, adapter.d_model, device=adapter.device, dtype=adapter.dtype)).shape[-1]
        generator = torch.Generator().manual_seed(settings.seed)
        return cls(prepared, skipped, torch.randint(0, vocab, (len(prepared),), generator=generator), vocab)


@torch.no_grad()
def lens_rows(adapter: ModelAdapter, plan: LensPlan, attributes: AttributeSets, settings: LensSettings,
              indices: Sequence[int], *, progress: bool = True) -> dict[int, dict[str, Any]]:
    """Per-fact records of ``plan.prepared[i]`` for ``i`` in ``indices`` (whole batches of the one-process run).

    ``indices`` must be unions of the blocks ``range(j * batch_size, (j + 1) * batch_size)``
    so that every forward pass sees the batch a single process sees.
    """
    L, vocab, k = adapter.n_layers, plan.vocab, settings.k
    rows: dict[int, dict[str, Any]] = {}
    wanted = list(indices)
    bar = tqdm(total=len(wanted), desc="lens", unit="fact", disable=not progress)
    for block in range(0, len(wanted), settings.batch_size):
        idx = wanted[block : block + settings.batch_size]
        chunk = [plan.prepared[i] for i in idx]
        states = hidden_states_at(adapter, [p.fact.prompt for p in chunk], [p.position for p in chunk])
        masks = torch.stack([attributes.mask(p.fact.relation_id, vocab) for p in chunk])  # [B, V]
        obj_ids = torch.tensor([p.object_id for p in chunk], device=adapter.device)
        rnd_ids = plan.random_ids[idx].to(adapter.device)
        ar, obj_rank, rnd_rank = (torch.empty(len(chunk), L) for _ in range(3))
        for layer in range(L):
            logits = adapter.project_to_vocab(states[:, layer].to(adapter.dtype), raw=settings.raw).float()
            top = logits.topk(min(k, vocab), dim=-1).indices.cpu()
            ar[:, layer] = masks.gather(1, top).float().mean(dim=1)
            obj_rank[:, layer] = token_ranks(logits, obj_ids).float().cpu()
            rnd_rank[:, layer] = token_ranks(logits, rnd_ids).float().cpu()
        final = adapter.project_to_vocab(states[:, L - 1].to(adapter.dtype)).float()  # the model's own logits
        correct = (final.argmax(dim=-1) == obj_ids).cpu()
        for j, (i, p) in enumerate(zip(idx, chunk)):
            rows[i] = {
                "known_id": p.fact.known_id,
                "relation_id": p.fact.relation_id,
                "prompt": p.fact.prompt,
                "object": p.fact.attribute,
                "object_id": p.object_id,
                "position": p.position,
                "correct": bool(correct[j]),
                "object_in_attributes_token": bool(attributes.mask(p.fact.relation_id, vocab)[p.object_id]),
                "object_in_attributes_string": attributes.contains_string(p.fact.relation_id, p.fact.attribute),
                "ar": ar[j].tolist(),
                "object_rank": [int(r) for r in obj_rank[j]],
                "random_id": int(plan.random_ids[i]),
                "random_rank": [int(r) for r in rnd_rank[j]],
            }
        bar.update(len(chunk))
    bar.close()
    n_knockout = (settings.knockout_n if settings.knockout_n is not None else len(plan.prepared)) if settings.knockout else 0
    ko_indices = [i for i in wanted if i < n_knockout]
    for i in tqdm(ko_indices, desc="knock-out", unit="fact", disable=not progress):
        p = plan.prepared[i]
        ko = knockout_decline(adapter, p.fact.prompt, p.position, attributes.mask(p.fact.relation_id, vocab),
                              kinds=settings.kinds, window=settings.window, eval_layer=settings.eval_layer, k=k,
                              raw=settings.raw)
        rows[i]["knockout_ar_clean"] = ko.ar_clean
        rows[i]["knockout_decline"] = {kind: ko.decline[kind] for kind in settings.kinds}
    return rows


def summarise_rows(model: str, n_layers: int, rows: Sequence[dict[str, Any]], skipped: Counter,
                   settings: LensSettings) -> LensDatasetResult:
    """The result of a run from its per-fact records, in dataset order (one process's or merged shards')."""
    L = n_layers
    ar = torch.tensor([r["ar"] for r in rows], dtype=torch.float32)
    obj_rank = torch.tensor([r["object_rank"] for r in rows], dtype=torch.float32)
    rnd_rank = torch.tensor([r["random_rank"] for r in rows], dtype=torch.float32)
    correct = torch.tensor([r["correct"] for r in rows])
    in_tokens = torch.tensor([r["object_in_attributes_token"] for r in rows])
    in_strings = torch.tensor([r["object_in_attributes_string"] for r in rows])
    ar_mean = ar.mean(dim=0)
    rank_mean = obj_rank.mean(dim=0)
    rho, p_value = _spearman((-rank_mean).tolist(), ar_mean.tolist())

    def share(flags: torch.Tensor, where: torch.Tensor) -> float | None:
        return float(flags[where].float().mean()) if bool(where.any()) else None

    everyone = torch.ones(len(rows), dtype=torch.bool)
    included = {
        "rule": "object's first token in A(r) (token) / object string among the relation's attribute strings (string)",
        "n_correct": int(correct.sum()),
        "token_all": share(in_tokens, everyone),
        "token_correct": share(in_tokens, correct),
        "string_all": share(in_strings, everyone),
        "string_correct": share(in_strings, correct),
    }
    result = LensDatasetResult(
        model=model,
        k=settings.k,
        raw=settings.raw,
        n_used=len(rows),
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
        per_fact=[{k: v for k, v in r.items() if k != "knockout_ar_clean"} for r in rows],
    )
    knocked = [r for r in rows if "knockout_decline" in r]
    if knocked:
        result.knockout = {
            "n": len(knocked),
            "eval_layer": settings.eval_layer,
            "window": settings.window,
            "starts": list(range(settings.eval_layer + 1)),
            "ar_clean_mean": _mean([r["knockout_ar_clean"] for r in knocked]),
            "decline_mean": {kind: torch.tensor([r["knockout_decline"][kind] for r in knocked]).mean(dim=0).tolist()
                             for kind in settings.kinds},
        }
    return result


def run_lens_dataset(
    adapter: ModelAdapter,
    facts: Sequence[KnownFact],
    attributes: AttributeSets,
    *,
    progress: bool = True,
    **settings: Any,
) -> LensDatasetResult:
    """Attributes rate, object/random ranks, Spearman ρ, objects included and knock-out declines.

    ``settings``: the fields of :class:`LensSettings` (n, k, raw, batch_size, knockout, knockout_n,
    window, eval_layer, kinds, seed).
    """
    checked = LensSettings(**settings).check(adapter)
    plan = LensPlan.make(adapter, facts, attributes, checked)
    rows = lens_rows(adapter, plan, attributes, checked, range(len(plan.prepared)), progress=progress)
    return summarise_rows(adapter.name, adapter.n_layers, [rows[i] for i in range(len(plan.prepared))], plan.skipped,
                          checked)


def _spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan"), float("nan")  # undefined for a constant curve
    res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    return (rho if not math.isnan(rho) else float("nan")), p
