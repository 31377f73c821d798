"""``--editor``, ``--hparams``, ``--set`` and ``--layer``: parsed and checked once, before any model loads.

Usage::

    from factscope.cli.editor_args import check_editor, editor_overrides, layer_override, model_hparams
    from factscope.testing import tiny_adapter
    spec = check_editor("rets")                                       # exit 2 naming the editors
    overrides = editor_overrides(spec, ["no_subject_constraints=true"], None)   # {'no_subject_constraints': True}
    adapter = tiny_adapter("llama")
    overrides.update(layer_override(spec, 2, adapter))                # after the model loads: --layer
    hp = model_hparams(spec, adapter, None, overrides)                # exit 2 on a layer the model lacks

The one ``--set KEY=VALUE`` parser of ``edit``, ``evaluate`` and every other command that
edits: VALUE is text, typed by the editor's hyperparameter class (``true``/``false`` for
a flag, ``[[3, 2]]`` or ``3,2`` for a list, a choice checked against its ``Literal``). A
bad key or value exits with code 2 and one ``error:`` line naming the valid fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from factscope.cli.common import check_corpus_file, check_hparams_file, check_layer_index, fail
from factscope.models.adapter import ModelAdapter

if TYPE_CHECKING:  # the editors load when a command needs one, not on every `factscope` start-up
    from factscope.edit.contract import Editor
    from factscope.edit.hparams import EditHyperParams


def check_editor(name: str, option: str = "--editor", *, extra: tuple[str, ...] = ()) -> Editor:
    """The registered editor ``name``; exit 2 naming the available ones (and ``extra`` names, e.g. ``none``)."""
    from factscope.edit.registry import UnknownEditorError, editor_names, get_editor

    try:
        return get_editor(name)
    except UnknownEditorError:
        fail(f"{option}: Unknown editor {name!r}; available: {', '.join([*extra, *editor_names()])}.")
        raise


def parse_set_items(items: list[str], option: str = "--set") -> dict[str, str]:
    """``KEY=VALUE`` items as ``{KEY: VALUE}`` text (exit 2 on an item without ``=``)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{option} expects key=value, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def editor_overrides(editor: Editor, items: list[str], hparams: Path | None, option: str = "--set") -> dict[str, Any]:
    """``--set`` items typed and checked against ``editor``'s hyperparameters (and ``--hparams``'s keys).

    No model is needed: unknown keys, values of the wrong type, choices outside a
    ``Literal`` and cross-field conflicts exit 2 here, before a run folder or model.
    """
    from factscope.edit.hparams import HyperParamError, read_hparams_file

    check_hparams_file(hparams)
    try:
        overrides = editor.parse_overrides(parse_set_items(items, option))
        if hparams is not None:
            editor.hparams(None, read_hparams_file(hparams), editor.split_options(overrides)[0])
    except (HyperParamError, TypeError) as err:
        source = f"--hparams {hparams} / {option}" if hparams is not None and items else (
            f"--hparams {hparams}" if hparams is not None else option)
        fail(f"{source}: {err}")
        raise
    corpus = overrides.get("corpus")
    if corpus is not None and corpus != "generated":  # a run option, so no hyperparameter check has seen it
        check_corpus_file(Path(str(corpus)), f"{option} corpus:")
    return overrides


def layer_override(editor: Editor, value: int | float, adapter: ModelAdapter, option: str = "--layer") -> dict[str, Any]:
    """``--layer``: the edited layer; for an editor of a layer range, the last layer of a range of its default length."""
    from factscope.edit.hparams import resolve_layer

    check_layer_index(adapter, value, option)
    cls = editor.hparams_class
    if not cls.takes_layer_range():
        return {"layer": value}
    try:
        top = resolve_layer(adapter, value)
        default = editor.hparams(adapter)
        listed = default.layers  # type: ignore[attr-defined]  # takes_layer_range(): the class has this field
        # The default list's length (as given, e.g. MEMIT's five fractions), or the layers "all" stands for (KN).
        count = len(listed) if isinstance(listed, list) else len(default.edited_layers(adapter))
    except ValueError as err:
        fail(f"{option}: {err}")
        raise
    return {"layers": list(range(max(0, top - count + 1), top + 1))}


def model_hparams(editor: Editor, adapter: ModelAdapter, hparams: Path | None, overrides: dict[str, Any],
                  option: str = "--set") -> EditHyperParams:
    """The hyperparameters for the loaded model; exit 2 on a value it cannot take (e.g. a layer it lacks)."""
    try:
        hp = editor.hparams(adapter, hparams, editor.split_options(overrides)[0])
        hp.edited_layers(adapter)
    except (ValueError, TypeError) as err:
        source = f"--hparams {hparams} / {option}" if hparams else option
        fail(f"{source}: {err}")
        raise
    return hp


__all__ = ["check_editor", "editor_overrides", "layer_override", "model_hparams", "parse_set_items"]
