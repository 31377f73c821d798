"""Wikidata relations of COUNTERFACT / known_1000: names, a canonical template, subject types.

Usage::

    RELATIONS["P103"].name               # "native language"
    relation_name("P103")                # same, with a clear error for unknown ids
    fits_subject_of("P1412", "P103")     # True: a person who has a native language also speaks languages

Names are the Wikidata property labels. The *subject type* of a relation is the
most specific kind of thing COUNTERFACT uses as its subject (checked by reading the
subjects of each relation in ``counterfact_500.json``); the *domain* of a relation is
the set of types it can be asked about. Types form a small hierarchy: ``athlete``
and ``musician`` are ``person``s; ``country`` and ``city`` are ``place``s;
``company`` is an ``organization``.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_PARENT: dict[str, str | None] = {
    "person": None,
    "athlete": "person",
    "musician": "person",
    "place": None,
    "country": "place",
    "city": "place",
    "organization": None,
    "company": "organization",
    "work": None,
    "product": None,
}


@dataclass(frozen=True)
class RelationInfo:
    """One relation: Wikidata label, a canonical template, its subjects' type and its domain."""

    relation_id: str
    name: str
    template: str
    subject_type: str
    domain: tuple[str, ...]


def _r(rid: str, name: str, template: str, subject_type: str, *domain: str) -> RelationInfo:
    return RelationInfo(rid, name, template, subject_type, tuple(domain) or (subject_type,))


RELATIONS: dict[str, RelationInfo] = {
    r.relation_id: r
    for r in [
        # people
        _r("P19", "place of birth", "{} was born in", "person"),
        _r("P20", "place of death", "{} died in the city of", "person"),
        _r("P27", "country of citizenship", "{} is a citizen of", "person"),
        _r("P39", "position held", "{} holds the position of", "person"),
        _r("P101", "field of work", "{} works in the field of", "person", "person", "organization"),
        _r("P103", "native language", "The mother tongue of {} is", "person"),
        _r("P106", "occupation", "{} works as a", "person"),
        _r("P108", "employer", "{} is employed by", "person"),
        _r("P140", "religion", "The religion of {} is", "person", "person", "organization", "country"),
        _r("P937", "work location", "{} worked in the city of", "person"),
        _r("P1412", "languages spoken, written or signed", "{} speaks the language", "person"),
        _r("P413", "position played on team / speciality", "{} plays in the position of", "athlete"),
        _r("P641", "sport", "{} is a professional", "athlete", "athlete", "organization"),
        _r("P54", "member of sports team", "{} plays for", "athlete"),
        _r("P1303", "instrument", "{} plays the instrument", "musician"),
        _r("P264", "record label", "{}'s record label is", "musician"),
        _r("P136", "genre", "The genre played by {} is", "musician", "musician", "work"),
        # places
        _r("P17", "country", "{} is located in the country of", "place", "city", "place"),
        _r("P30", "continent", "{} is located in the continent of", "place", "place"),
        _r("P36", "capital", "The capital of {} is", "country"),
        _r("P37", "official language", "The official language of {} is", "city", "country", "city"),
        _r("P47", "shares border with", "{} shares a border with", "country"),
        _r("P131", "located in the administrative territorial entity", "{} can be found in", "place", "city", "place"),
        _r("P190", "twinned administrative body", "The twin city of {} is", "city"),
        _r("P276", "location", "{} is in", "place"),
        _r("P138", "named after", "{} is named after", "place", "place", "organization", "product"),
        # organisations
        _r("P159", "headquarters location", "{} is headquartered in", "organization"),
        _r("P740", "location of formation", "{} was founded in", "organization", "organization", "musician"),
        _r("P127", "owned by", "{} is owned by", "organization", "organization", "product", "work"),
        _r("P463", "member of", "{} is a member of", "organization", "organization", "country"),
        _r("P112", "founded by", "{} was founded by", "company", "organization"),
        # products and works
        _r("P176", "manufacturer", "{} is produced by", "product"),
        _r("P178", "developer", "{} was developed by", "product"),
        _r("P495", "country of origin", "{} originated in", "work", "work", "product"),
        _r("P364", "original language of film or TV show", "The original language of {} is", "work"),
        _r("P407", "language of work or name", "{} was written in", "work"),
        _r("P449", "original broadcaster", "{} premiered on", "work"),
    ]
}


class UnknownRelationError(KeyError):
    """A relation id without an entry in :data:`RELATIONS`."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def relation_info(relation_id: str) -> RelationInfo:
    """The table entry for ``relation_id``; a clear error when it is missing."""
    try:
        return RELATIONS[relation_id]
    except KeyError:
        raise UnknownRelationError(
            f"No entry for relation {relation_id!r} in factscope.datasets.relations.RELATIONS; "
            f"known: {', '.join(sorted(RELATIONS))}."
        ) from None


def relation_name(relation_id: str) -> str:
    """Wikidata label of a relation, e.g. ``"P103" → "native language"``."""
    return relation_info(relation_id).name


def type_ancestors(kind: str) -> list[str]:
    """``kind`` and its parents, most specific first."""
    chain = []
    current: str | None = kind
    while current is not None:
        chain.append(current)
        current = TYPE_PARENT[current]
    return chain


def fits_subject_of(other: str, relation_id: str) -> bool:
    """Whether relation ``other`` can be asked about the subjects of ``relation_id``.

    True when the subject type of ``relation_id`` (or one of its parent types) is in
    the domain of ``other``.
    """
    if other == relation_id:
        return False
    subject_type = relation_info(relation_id).subject_type
    return any(t in relation_info(other).domain for t in type_ancestors(subject_type))
