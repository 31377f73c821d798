"""Edit requests, kept importable from here; they live on the ground floor in :mod:`factscope.requests`.

Usage::

    from factscope.edit.request import EditRequest
    EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English").filled
"""

from factscope.requests import NO_RELATION, RELATION_TEMPLATE, EditRequest, EditRequestError, relation_edit_requests

__all__ = ["NO_RELATION", "RELATION_TEMPLATE", "EditRequest", "EditRequestError", "relation_edit_requests"]
