"""zsRE editing data in ROME's format (``zsre_eval_1037.json``).

Usage::

    cases = load_zsre("../shared/data/zsre/zsre_eval_1037.json", n=50)
    cases[0].prompt          # "When was the inception of {}?"
    cases[0].target_new      # "2006" (the record's ``alt``)

Fields used: ``subject``, ``src`` (question containing the subject), ``alt`` (new
answer), ``answers`` (true answers), ``rephrase``, ``loc`` (an unrelated NQ question),
``loc_ans``.
"""

from __future__ import annotations

from pathlib import Path

from factscope.datasets._io import FieldReader, read_json_list, template_from_prompt
from factscope.datasets.records import ZsreCase


def parse_zsre(record: object, index: int, source: str = "<records>") -> ZsreCase:
    """One zsRE record → :class:`ZsreCase` (``case_id`` = record index unless given)."""
    f = FieldReader(source, index, record)
    subject = f.text("subject")
    template = template_from_prompt(f, "src", f.text("src"), subject)
    answers = tuple(a.strip() for a in f.text_list("answers", required=False))
    return ZsreCase(
        case_id=f.case_id(),
        prompt=template,
        subject=subject,
        target_new=f.text("alt").strip(),
        answers=answers,
        rephrase_prompt=f.text("rephrase"),
        loc_prompt=f.text("loc"),
        loc_answer=f.text("loc_ans").strip(),
    )


def load_zsre(path: str | Path, n: int | None = None) -> list[ZsreCase]:
    """zsRE edits (first ``n`` records)."""
    records = read_json_list(path)
    if n is not None:
        records = records[:n]
    return [parse_zsre(r, i, str(path)) for i, r in enumerate(records)]
