"""Edit requests: what to change, validated before any work starts.

Usage::

    req = EditRequest("The mother tongue of {} is", "Danielle Darrieux", target_new="English",
                      target_true="French", relation_id="P103")
    req.validate(adapter)            # raises EditRequestError with a clear message
    req.filled                       # "The mother tongue of Danielle Darrieux is"
    relation_edit_requests(req, relation_name="native language")   # relation perspective
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from factscope.tokens import fill_template

if TYPE_CHECKING:
    from factscope.models.adapter import ModelAdapter

RELATION_TEMPLATE = "The relation between {} and {object} is"
NO_RELATION = "None"


class EditRequestError(ValueError):
    """An edit request that cannot be carried out as given."""


@dataclass(frozen=True)
class EditRequest:
    """Rewrite (subject, relation, object) → (subject, relation, target_new)."""

    prompt: str  # template with exactly one "{}" where the subject goes
    subject: str
    target_new: str
    target_true: str | None = None
    relation_id: str | None = None
    case_id: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def filled(self) -> str:
        return fill_template(self.prompt, self.subject)

    def validate(self, adapter: "ModelAdapter | None" = None) -> "EditRequest":
        """Check the request; with an adapter also check that it tokenizes sensibly."""
        where = f"edit request {self.case_id!r}" if self.case_id is not None else "edit request"
        if not isinstance(self.prompt, str) or self.prompt.count("{}") != 1:
            raise EditRequestError(f"{where}: prompt must contain exactly one '{{}}' for the subject: {self.prompt!r}")
        if not self.subject or not self.subject.strip():
            raise EditRequestError(f"{where}: subject is empty.")
        if not self.target_new or not self.target_new.strip():
            raise EditRequestError(f"{where}: target_new is empty.")
        if self.target_true is not None and not self.target_true.strip():
            raise EditRequestError(f"{where}: target_true is empty (give None to leave it out).")
        if self.target_true is not None and self.target_true.strip() == self.target_new.strip():
            raise EditRequestError(f"{where}: target_new equals target_true ({self.target_new!r}).")
        if adapter is not None:
            from factscope.scoring import continuation_ids
            from factscope.tokens import position_groups

            try:
                position_groups(adapter.tokenizer, self.prompt, self.subject)
                continuation_ids(adapter.tokenizer, self.filled, self.target_new)
            except ValueError as err:
                raise EditRequestError(f"{where}: {err}") from err
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EditRequest":
        known = {k: data[k] for k in ("prompt", "subject", "target_new", "target_true", "relation_id", "case_id", "extra") if k in data}
        return cls(**known)


def relation_edit_requests(request: EditRequest, relation_name: str) -> list[EditRequest]:
    """Relation-perspective requests (seed 001/002) for an entity request.

    Teach "The relation between {s} and {o*} is" → ``relation_name`` and remove the
    relation for the old object: "The relation between {s} and {o} is" → "None".
    """
    if request.target_true is None:
        raise EditRequestError("A relation-perspective edit needs target_true (the object to detach).")
    if not relation_name.strip():
        raise EditRequestError("relation_name is empty.")
    add = EditRequest(
        RELATION_TEMPLATE.replace("{object}", request.target_new.strip()),
        request.subject,
        target_new=relation_name,
        relation_id=request.relation_id,
        case_id=request.case_id,
        extra={"perspective": "relation", "kind": "add"},
    )
    remove = EditRequest(
        RELATION_TEMPLATE.replace("{object}", request.target_true.strip()),
        request.subject,
        target_new=NO_RELATION,
        target_true=relation_name,
        relation_id=request.relation_id,
        case_id=request.case_id,
        extra={"perspective": "relation", "kind": "remove"},
    )
    return [add, remove]
