"""Build a RETS constraint pool from known_1000 that shares no subject with an evaluation set.

Usage::

    python scripts/disjoint_subject_pool.py ../shared/data/knowns/known_1000.json \
        ../shared/data/counterfact/counterfact_500.json pool.json
    factscope evaluate --editor rets --set constraint_pool=pool.json [--set constraint_templates=pool] ...

Keeps the known facts whose subject appears nowhere in the evaluation records (not as an
edited subject, not inside any paraphrase, neighbourhood, attribute or generation prompt),
with their relation id and template, so that ``K_r`` never holds a test subject's key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PROMPT_FIELDS = ("paraphrase_prompts", "neighborhood_prompts", "attribute_prompts", "generation_prompts")


def disjoint_pool(knowns: list[dict], evaluation: list[dict]) -> list[dict]:
    texts = []
    for record in evaluation:
        texts.append(record["requested_rewrite"]["subject"])
        for field in PROMPT_FIELDS:
            texts += record.get(field, [])
    blob = "\n".join(texts).lower()
    return [{"subject": k["subject"], "relation_id": k["relation_id"], "template": k["template"]}
            for k in knowns if k["subject"].lower() not in blob]


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    knowns, evaluation, out = (Path(a) for a in sys.argv[1:])
    pool = disjoint_pool(json.loads(knowns.read_text()), json.loads(evaluation.read_text()))
    out.write_text(json.dumps(pool))
    print(f"{len(pool)} subjects written to {out}")


if __name__ == "__main__":
    main()
