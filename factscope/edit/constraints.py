"""RETS subject constraints: keys of *other* subjects, from records (the authors') or the edited template.

Usage::

    records = load_constraint_records("counterfact_500.json")        # or default_constraint_records()
    prompts = record_constraint_prompts(records, request, n=500, seed=0)  # other subjects' rewrite prompts
    K_r = record_constraint_keys(adapter, prompts, layer=22)          # [n, d_mlp], bare last-token keys

    subjects = constraint_subjects(request, n=30, seed=0)            # the per-template pool (older default)
    K_r = constraint_keys(adapter, request, layer=22, subjects=subjects)   # [n, d_mlp]

``records`` (RETS's ``constraint_source`` default): as the authors' released code
(``compute_ur.get_rel_cov_from_known``) builds ``K_r``: every record's rewrite
prompt filled with its own subject, all relations mixed, one bare-prompt key at the
last token each, added as ``K_rᵀK_r`` unnormalised to ``C``. Here every record of
the edited subject is left out and the records are a seeded sample of size ``n``.
With no records file the shipped default is the example facts' rewrite prompts
plus ``data/rets_constraint_prompts.json`` (canonical templates of every relation
filled with well-known subjects of its type).

``template``: the per-template pool described below.

RETS (seed 000, eq. 12) adds ``‖W̃ K_r − V_r‖²`` to ROME's objective, where the
columns of ``K_r`` are down-projection inputs at the last prompt token of prompts
with *different* subjects. The solution (eq. 14) replaces ``C`` by ``C + K_r K_rᵀ``.
We form ``K_r`` from the request's own template filled with other subjects, so
that the constraint protects exactly the prompts an edit at the last relation
token would otherwise over-generalise to ("The mother tongue of <anyone> is").
Keys are read from the bare prompts (no context prefixes), one per subject; the
rank-one terms are added unscaled to the normalised ``C = E[kkᵀ]``, as in the
authors' released code, so each constraint key weighs as much as the whole corpus
in its own direction.

The default subject pool is the example facts' subjects (when the package has them)
plus a built-in list of well-known people, places, organisations and works. A pool
file (``load_subject_pool``: a JSON list of names, or known_1000 / COUNTERFACT
records) gives subjects with their relation; the subjects of the request's own
relation are then used, so that ``K_r`` holds keys of subjects of the edited
subject's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from factscope.datasets import DatasetFormatError, read_json_list
from factscope.edit.keys import PromptRow, read_at_rows, site_at_lookup
from factscope.edit.request import EditRequest
from factscope.hooks import Site
from factscope.models.adapter import ModelAdapter

BUILTIN_SUBJECTS = (
    "Albert Einstein", "Marie Curie", "Isaac Newton", "Charles Darwin", "Leonardo da Vinci", "William Shakespeare",
    "Wolfgang Amadeus Mozart", "Ludwig van Beethoven", "Pablo Picasso", "Vincent van Gogh", "Napoleon Bonaparte",
    "Julius Caesar", "Cleopatra", "Abraham Lincoln", "Winston Churchill", "Nelson Mandela", "Mahatma Gandhi",
    "Queen Victoria", "Frida Kahlo", "Jane Austen", "Leo Tolstoy", "Gabriel García Márquez", "Haruki Murakami",
    "Lionel Messi", "Cristiano Ronaldo", "Serena Williams", "Michael Jordan", "Roger Federer", "Usain Bolt",
    "Barack Obama", "Angela Merkel", "Vladimir Putin", "Taylor Swift", "Elvis Presley", "Madonna", "Bob Dylan",
    "Steve Jobs", "Bill Gates", "Elon Musk", "Nikola Tesla", "Galileo Galilei", "Sigmund Freud", "Confucius",
    "Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Moscow", "Cairo", "Sydney", "Toronto", "Mumbai",
    "Brazil", "Canada", "Japan", "Germany", "Italy", "Egypt", "Mexico", "India", "Australia", "Sweden",
    "Toyota", "Microsoft", "Apple", "Google", "Nokia", "Volkswagen", "Samsung", "Sony", "IBM", "BMW",
    "the Eiffel Tower", "the Amazon River", "Mount Everest", "the Louvre", "Harvard University", "the BBC",
    "Harry Potter", "Star Wars", "The Beatles", "Mona Lisa", "the Bible", "Windows", "the iPhone", "Python",
)


def _example_subjects() -> list[str]:
    from factscope.datasets import load_example_facts

    return [case.subject.strip() for case in load_example_facts() if case.subject.strip()]


def default_subject_pool() -> list[str]:
    """Example-fact subjects followed by the built-in list, without duplicates."""
    seen: dict[str, None] = {}
    for subject in [*_example_subjects(), *BUILTIN_SUBJECTS]:
        seen.setdefault(subject, None)
    return list(seen)


PoolEntry = str | tuple[str, str | None]  # a subject, or (subject, relation_id)


class SubjectPoolError(ValueError):
    """A constraint-subject pool file that cannot be read or holds no subjects."""


def _json_list(path: Path, what: str) -> list:
    try:
        return read_json_list(path)
    except DatasetFormatError as err:
        raise SubjectPoolError(f"{what} {path} cannot be read or must be a JSON list of names or records: {err}") from err


def _fact(record: dict) -> dict:
    """The fact fields of a known_1000 record, or of a COUNTERFACT record's ``requested_rewrite``."""
    rewrite = record.get("requested_rewrite", record)
    return rewrite if isinstance(rewrite, dict) else {}


def load_subject_pool(path: str | Path) -> list[tuple[str, str | None]]:
    """``(subject, relation_id)`` pairs from a JSON list of names or of known_1000 / COUNTERFACT records."""
    path = Path(path)
    records = _json_list(path, "Subject pool")
    pool: list[tuple[str, str | None]] = []
    for index, record in enumerate(records):
        if isinstance(record, str):
            subject, relation = record, None
        elif isinstance(record, dict):
            subject, relation = _fact(record).get("subject"), _fact(record).get("relation_id")
        else:
            subject, relation = None, None
        if not isinstance(subject, str) or not subject.strip():
            raise SubjectPoolError(f"Subject pool {path}, record {index}: no non-empty 'subject' string.")
        pool.append((subject.strip(), relation if isinstance(relation, str) else None))
    if not pool:
        raise SubjectPoolError(f"Subject pool {path} is empty.")
    return pool


def constraint_subjects(request: EditRequest, n: int, *, seed: int = 0, pool: Sequence[PoolEntry] | None = None) -> list[str]:
    """``n`` subjects other than the request's (a seeded sample of ``pool``, in pool order).

    Pool entries that carry a relation id are narrowed to the request's relation when
    the pool has any subject of it.
    """
    own = request.subject.strip().lower()
    entries = [(e, None) if isinstance(e, str) else (e[0], e[1]) for e in (pool if pool is not None else default_subject_pool())]
    if request.relation_id and any(rel == request.relation_id for _, rel in entries):
        entries = [(s, rel) for s, rel in entries if rel == request.relation_id]
    unique = dict.fromkeys(s for s, _ in entries if s.strip() and s.strip().lower() != own)
    candidates = list(unique)
    if n >= len(candidates):
        return list(candidates)
    generator = torch.Generator().manual_seed(int(seed))
    chosen = sorted(torch.randperm(len(candidates), generator=generator)[:n].tolist())
    return [candidates[i] for i in chosen]


def load_relation_templates(path: str | Path) -> dict[str, list[str]]:
    """Relation id → the distinct prompt templates (``{}`` = subject) of a known_1000 / COUNTERFACT records file.

    Templates that end with the subject are left out: they have no relation token to read.
    """
    path = Path(path)
    templates: dict[str, dict[str, None]] = {}
    for record in _json_list(path, "Template file"):
        if not isinstance(record, dict):
            continue
        fact = _fact(record)
        template, relation = fact.get("template", fact.get("prompt")), fact.get("relation_id")
        if isinstance(template, str) and isinstance(relation, str) and template.count("{}") == 1 \
                and not template.rstrip().endswith("{}"):
            templates.setdefault(relation, {})[template] = None
    if not templates:
        raise SubjectPoolError(f"{path} holds no records with a 'relation_id' and a '{{}}' template or prompt.")
    return {relation: list(found) for relation, found in templates.items()}


def constraint_keys(
    adapter: ModelAdapter, request: EditRequest, layer: int, subjects: Sequence[str], *, lookup: str = "last",
    templates: Sequence[str] = (),
) -> torch.Tensor:
    """``[len(subjects) × (1 + extra templates), d]`` keys at the lookup token of the request's template,
    and of each other template in ``templates``, filled with each subject."""
    if not subjects:
        return torch.zeros(0, adapter.mlp_down_weight(layer).matrix.shape[1])
    site = Site("mlp_key", layer)
    keys = []
    for template in dict.fromkeys([request.prompt, *templates]):
        others = [EditRequest(template, s, request.target_new) for s in subjects]
        keys.append(site_at_lookup(adapter, others, [site], lookup=lookup)[site])
    return torch.cat(keys)


@dataclass(frozen=True)
class ConstraintRecord:
    """One fact of a ``K_r`` records pool: a rewrite template (``{}`` = subject) and its subject."""

    subject: str
    template: str
    relation_id: str | None = None

    @property
    def prompt(self) -> str:
        return self.template.replace("{}", self.subject, 1)


def _records_of(records: list, where: str) -> list[ConstraintRecord]:
    found = []
    for index, record in enumerate(records):
        fact = _fact(record) if isinstance(record, dict) else {}
        subject, template = fact.get("subject"), fact.get("prompt", fact.get("template"))
        if not isinstance(subject, str) or not subject.strip() or not isinstance(template, str) or template.count("{}") != 1:
            raise SubjectPoolError(f"{where}, record {index}: needs a 'subject' and a 'prompt' (or 'template') with one '{{}}'.")
        relation = fact.get("relation_id")
        found.append(ConstraintRecord(subject.strip(), template, relation if isinstance(relation, str) else None))
    if not found:
        raise SubjectPoolError(f"{where} holds no records.")
    return found


def load_constraint_records(path: str | Path) -> list[ConstraintRecord]:
    """Facts of a COUNTERFACT / known_1000 file (or of records ``{subject, prompt, relation_id}``)."""
    path = Path(path)
    return _records_of(_json_list(path, "Constraint records"), f"Constraint records {path}")


def default_constraint_records() -> list[ConstraintRecord]:
    """The shipped pool: the example facts' rewrite prompts, then ``data/rets_constraint_prompts.json``."""
    found: list[ConstraintRecord] = []
    for name in ("example_facts.json", "rets_constraint_prompts.json"):
        path = Path(str(resources.files("factscope") / "data" / name))
        found += _records_of(read_json_list(path), f"factscope/data/{name}")
    return list(dict.fromkeys(found))


def record_constraint_prompts(records: Sequence[ConstraintRecord], request: EditRequest, n: int, *,
                              seed: int = 0, keep_own: bool = False) -> list[str]:
    """Up to ``n`` filled rewrite prompts of records whose subject is not the request's.

    The records are put in a seeded order (the same for every request) and the first
    ``n`` of other subjects are kept, in file order; a prompt that repeats is kept once.
    ``keep_own``: the request's subject's records count too (as the authors' code).
    """
    own = None if keep_own else request.subject.strip().lower()
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(records), generator=generator).tolist()
    kept = [i for i in order if records[i].subject.lower() != own][: max(0, n)]
    return list(dict.fromkeys(records[i].prompt for i in sorted(kept)))


_KEY_CACHE: dict[tuple, torch.Tensor] = {}
_KEY_CACHE_LIMIT = 20_000  # keys kept per process (a few hundred per evaluation file)


def _state_token(adapter: ModelAdapter, layer: int) -> tuple:
    """Model identity for the key cache: fingerprint, and the MLP down-projections up to ``layer``
    (so keys read on a model edited below the layer, e.g. in sequential runs, are not reused)."""
    with torch.no_grad():
        sums = tuple(round(float(adapter.mlp_down_weight(l).matrix.float().sum()), 6) for l in range(layer))
    return adapter.fingerprint, layer, sums


def _prompt_keys(adapter: ModelAdapter, prompts: Sequence[str], layer: int, lookup: str) -> dict[str, torch.Tensor]:
    """Bare keys of each prompt at its last token (``lookup='last'`` only: records carry no lookup subject)."""
    if lookup != "last":
        raise ValueError("constraint_source=records reads keys at the last token; use lookup=last or constraint_source=template.")
    state = _state_token(adapter, layer)
    found = {p: _KEY_CACHE[(state, p)] for p in dict.fromkeys(prompts) if (state, p) in _KEY_CACHE}
    missing = [p for p in dict.fromkeys(prompts) if p not in found]
    if missing:
        # The prompt as the authors read it: tokenized whole (the tokenizer's own BOS), key at its last token.
        site = Site("mlp_key", layer)
        token_ids = [adapter.tokenizer(p)["input_ids"] for p in missing]
        rows = [PromptRow(list(ids), len(ids) - 1, i, 0) for i, ids in enumerate(token_ids)]
        keys = read_at_rows(adapter, rows, [site])[site]
        if len(_KEY_CACHE) + len(missing) > _KEY_CACHE_LIMIT:
            _KEY_CACHE.clear()
        for prompt, key in zip(missing, keys):
            found[prompt] = _KEY_CACHE[(state, prompt)] = key
    return found


def record_constraint_keys(adapter: ModelAdapter, prompts: Sequence[str], layer: int, *, lookup: str = "last") -> torch.Tensor:
    """``[len(prompts), d]`` bare keys at the last token of each prompt (cached per model, layer and prompt)."""
    if not prompts:
        return torch.zeros(0, adapter.mlp_down_weight(layer).matrix.shape[1])
    keys = _prompt_keys(adapter, prompts, layer, lookup)
    return torch.stack([keys[p] for p in prompts])
