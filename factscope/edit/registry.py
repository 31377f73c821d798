"""The one registry of editors: name → :class:`~factscope.edit.contract.Editor`.

Usage::

    from factscope.edit.registry import EDITORS, editor_names, get_editor
    editor_names()                        # ['ft', 'kn', 'mend', 'memit', 'pmet', 'rets', 'rome']
    get_editor("memit").hparams_class     # MEMITHyperParams
    get_editor("memit").hparams_class.takes_layer_range()   # True

``factscope.edit.edit`` / ``edit_each``, the evaluation (``factscope.evaluate.editors``),
the reproduction and every CLI command find editors here, so a new one is known to all
of them at once.

Adding an editor:

1. Write ``factscope/edit/<name>.py`` with a hyperparameter dataclass that combines the
   field groups of ``factscope.edit.hparams`` it uses (``SingleLayer`` or ``LayerRange``,
   ``ContextPrefixes``, ``ValueOptimisation``, ``Covariance``) plus its own fields
   (``hp(default, help)``; a choice is a ``Literal[...]``; cross-field checks in ``validate``),
   a function ``edit(job: EditJob) -> WeightDelta`` that reads the already checked
   ``job.requests``, ``job.hparams`` and ``job.layers``, optionally ``edit_each(job)``, and
   ``EDITOR = EditorSpec("<name>", YourHyperParams, edit, ...)``.
2. Add the module's name to ``_MODULES`` below (one line).

``tests/test_editor_matrix.py`` then runs it on every tiny architecture, and
``factscope edit --editor <name>``, ``edit-params <name>`` and ``evaluate --editor <name>`` work.
"""

from __future__ import annotations

import importlib

from factscope.edit.contract import Editor

# One entry per editor module of factscope/edit/; each module's EDITOR is registered.
_MODULES = ("rome", "rets", "memit", "pmet", "ft", "kn", "mend")

EDITORS: dict[str, Editor] = {}
for _name in _MODULES:
    _editor = importlib.import_module(f"factscope.edit.{_name}").EDITOR
    EDITORS[_editor.name] = _editor


class UnknownEditorError(ValueError):
    """An editor name the registry does not know."""


def editor_names() -> list[str]:
    """The registered editor names, sorted."""
    return sorted(EDITORS)


def get_editor(name: str) -> Editor:
    """The editor registered as ``name`` (case-insensitive); :class:`UnknownEditorError` names the others."""
    editor = EDITORS.get(str(name).lower())
    if editor is None:
        raise UnknownEditorError(f"Unknown editor {name!r}; available: {', '.join(editor_names())}.")
    return editor


__all__ = ["EDITORS", "UnknownEditorError", "editor_names", "get_editor"]
