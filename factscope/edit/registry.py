"""The one registry of editors: name → :class:`~factscope.edit.contract.Editor`.

Usage::

    from factscope.edit.registry import EDITORS, editor_names, get_editor
    editor_names()                        # ['ft', 'memit', 'pmet', 'rets', 'rome']
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
2. Add its ``EDITOR`` to ``_MODULES`` below (one line).

``tests/test_editor_matrix.py`` then runs it on every tiny architecture, and
``factscope edit --editor <name>``, ``edit-params <name>`` and ``evaluate --editor <name>`` work.
"""

from __future__ import annotations

from factscope.edit import ft, memit, pmet, rets, rome
from factscope.edit.contract import Editor

_MODULES = (rome, rets, memit, pmet, ft)  # one line per editor module: its EDITOR is registered

EDITORS: dict[str, Editor] = {module.EDITOR.name: module.EDITOR for module in _MODULES}


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
