"""Typed editor hyperparameters: field groups, defaults per model family, files, overrides.

Usage::

    from factscope.edit.rome import ROMEHyperParams
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    hp = ROMEHyperParams.for_model(adapter)              # defaults for the adapter's family
    hp = hp.override(layer=2, v_steps="25")              # typed ("25" -> 25), validated copy
    hp.edited_layers(adapter)                            # [2]; LayerOutOfRangeError before any work
    field_help(ROMEHyperParams, "kl_factor")             # the CLI help text
    ROMEHyperParams.takes_layer_range()                  # False: ROME edits one layer (MEMIT: True)

An editor's class combines the field groups it uses (dataclass mixins):
:class:`SingleLayer` or :class:`LayerRange`, :class:`ContextPrefixes`,
:class:`ValueOptimisation`, :class:`Covariance`; FT-L takes none of the last three.
A choice is a ``Literal[...]`` field, checked from its type by :meth:`override` and
:meth:`validate`; :func:`coerce` turns CLI/YAML text into a field's real type.

Layers may be given as absolute indices (ints) or as fractions of depth (floats in
[0, 1)), so one default fits models of any depth. ``FAMILY_DEFAULTS`` of each editor
class (and of ``EditHyperParams`` for all editors, each applied only to the fields a
class has) maps ``adapter.spec.name`` or ``adapter.name`` to overrides of the generic
defaults. ``LEGACY_KEYS`` maps keys of older files to today's fields.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_type_hints

if TYPE_CHECKING:
    from factscope.models.adapter import ModelAdapter

H = TypeVar("H", bound="EditHyperParams")


class HyperParamError(ValueError):
    """A hyperparameter key or value that the editor's class refuses."""


def hp(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - "help" mirrors argparse/typer
    """A dataclass field whose ``help`` metadata doubles as CLI help."""
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def field_help(cls: type, name: str) -> str:
    """The ``help`` text of field ``name`` of hyperparameter class ``cls``."""
    for f in fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    raise KeyError(name)


def resolve_layer(adapter: "ModelAdapter", layer: int | float) -> int:
    """An absolute layer index from an int or a fraction of depth (checked against the model)."""
    if isinstance(layer, bool):
        raise TypeError("A layer is an int index or a float fraction of depth, not a bool.")
    if isinstance(layer, float):
        if not 0.0 <= layer < 1.0:
            raise ValueError(f"A layer fraction must lie in [0, 1), got {layer}.")
        return adapter.check_layer(min(adapter.n_layers - 1, int(round(layer * adapter.n_layers))))
    return adapter.check_layer(int(layer))


def resolve_layers(adapter: "ModelAdapter", layers: typing.Sequence[int | float]) -> list[int]:
    """Sorted distinct absolute indices of ``layers`` (ints or fractions of depth)."""
    return sorted({resolve_layer(adapter, layer) for layer in layers})


@dataclass
class EditHyperParams:
    """The machinery every editor's hyperparameters share; the field groups below add the fields."""

    # Shared by every editor (subclasses add their own tables, applied after this one), each entry
    # only where the class has the field. Gemma-2/3 activations span orders of magnitude between
    # sites (pre-norm MLP output RMS ~0.1, residual ~100), so an absolute Adam step fits none of
    # them: steps are relative. Elsewhere the absolute 0.5 of the ROME/MEMIT code is kept, since it
    # reproduces their numbers.
    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "gemma2": {"v_lr_units": "rms", "v_lr": 0.1},
        "gemma3_text": {"v_lr_units": "rms", "v_lr": 0.1},
    }
    # Keys of older files and calls: old key -> function of its value giving today's fields.
    LEGACY_KEYS: ClassVar[dict[str, Callable[[Any], dict[str, Any]]]] = {}

    # ------------------------------------------------------------------ build
    @classmethod
    def for_model(cls: type[H], adapter: "ModelAdapter | None" = None, family: str | None = None) -> H:
        """Generic defaults updated with the family's, then the specific model's.

        ``FAMILY_DEFAULTS`` is looked up by ``adapter.spec.name`` (or ``family``) and then
        by ``adapter.name`` (e.g. the bundled ``"smollm2-135m-instruct"``).
        """
        names = [family] if family else []
        if adapter is not None:
            names = [adapter.spec.name, adapter.name] if not family else [family]
        result = cls()
        own = {f.name for f in fields(cls)}
        # The shared table, then the editor's own (which wins); a subclass's table replaces its parent's.
        tables = [EditHyperParams.FAMILY_DEFAULTS] + ([cls.FAMILY_DEFAULTS] if cls.FAMILY_DEFAULTS is not
                                                      EditHyperParams.FAMILY_DEFAULTS else [])
        for name in names:
            for table in tables:
                entry = table.get(name or "", {})
                result = result.override(**{k: v for k, v in entry.items() if k in own})
        return result

    @classmethod
    def from_dict(cls: type[H], data: dict[str, Any], adapter: "ModelAdapter | None" = None) -> H:
        """Family defaults overridden by ``data`` (unknown keys are an error)."""
        return cls.for_model(adapter).override(**data)

    @classmethod
    def from_file(cls: type[H], path: str | Path, adapter: "ModelAdapter | None" = None) -> H:
        """Load YAML (``.yaml``/``.yml``) or JSON; fields not in the file keep their defaults."""
        return cls.from_dict(read_hparams_file(path), adapter)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def takes_layer_range(cls) -> bool:
        """Whether the editor edits a range of layers (a ``layers`` list) rather than one ``layer``."""
        return "layers" in cls.field_names()

    @classmethod
    def upgrade_keys(cls, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes`` with the keys of ``LEGACY_KEYS`` replaced by today's fields."""
        out = {k: v for k, v in changes.items() if k not in cls.LEGACY_KEYS}
        for key, value in changes.items():
            if key in cls.LEGACY_KEYS:
                for new_key, new_value in cls.LEGACY_KEYS[key](value).items():
                    out.setdefault(new_key, new_value)  # an explicit new key wins over the old one
        return out

    @classmethod
    def parse_changes(cls, changes: dict[str, Any]) -> dict[str, Any]:
        """Keys checked against the fields (legacy keys mapped) and values coerced to the fields' types.

        Raises :class:`HyperParamError` naming the valid fields or the field's type/choices.
        """
        changes = cls.upgrade_keys({k: v for k, v in changes.items() if v is not None})
        names = cls.field_names()
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise HyperParamError(f"Unknown {cls.__name__} field(s): {', '.join(unknown)}. Valid fields: {', '.join(sorted(names))}.")
        hints = get_type_hints(cls)
        return {key: coerce(key, value, hints[key]) for key, value in changes.items()}

    def override(self: H, **changes: Any) -> H:
        """A copy with ``changes`` applied (``None`` values are ignored), type-checked and validated."""
        new = dataclasses.replace(self, **type(self).parse_changes(changes))
        new.validate()
        return new

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`HyperParamError` for values that cannot work (each group adds its checks)."""
        hints = get_type_hints(type(self))
        for f in fields(self):
            choices = literal_choices(hints[f.name])
            if choices and getattr(self, f.name) not in choices:
                raise HyperParamError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {getattr(self, f.name)!r}.")

    def edited_layers(self, adapter: "ModelAdapter") -> list[int]:
        """The absolute layers this editor changes (raises ``LayerOutOfRangeError`` before any work)."""
        if isinstance(self, LayerRange):
            return resolve_layers(adapter, self.layers)
        if isinstance(self, SingleLayer):
            return [resolve_layer(adapter, self.layer)]
        return []

    def request_lookups(self) -> tuple[str, ...]:
        """Lookup tokens every request must have (checked once before any work)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def help_table(cls) -> dict[str, str]:
        """Field name → help text (for ``--help`` listings and docs)."""
        return {f.name: str(f.metadata.get("help", "")) for f in fields(cls)}


# ---------------------------------------------------------------------- field groups
@dataclass
class SingleLayer(EditHyperParams):
    """One edited layer."""

    layer: int | float = hp(0.25, "Edited layer: an index, or a fraction of depth (e.g. 0.25).")


@dataclass
class LayerRange(EditHyperParams):
    """A range of edited layers (values are optimised at the last)."""

    layers: list = hp([0.1, 0.15, 0.2, 0.25], "Edited layers (indices or fractions of depth); values are optimised at the last.")

    def validate(self) -> None:
        super().validate()
        if not self.layers:
            raise HyperParamError("layers must not be empty.")

    @property
    def layer(self) -> Any:
        """The last layer of the range (where the values are optimised)."""
        return self.layers[-1]


@dataclass
class ContextPrefixes(EditHyperParams):
    """Context prefixes generated by the model (ROME: the bare prompt + 10 texts of 5 tokens + 10 of 10)."""

    context_lengths: list = hp([[5, 10], [10, 10]], "Context prefixes as [tokens, count] pairs generated by the model.")
    context_seed: int = hp(0, "Seed of the context-prefix sampler.")

    def validate(self) -> None:
        super().validate()
        for pair in self.context_lengths:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or int(pair[0]) < 1 or int(pair[1]) < 0:
                raise HyperParamError(f"context_lengths entries are [tokens >= 1, count >= 0], got {pair!r}.")


@dataclass
class ValueOptimisation(EditHyperParams):
    """The Adam search for the value vector δ (``factscope.edit.values``)."""

    v_lr: float = hp(0.5, "Adam learning rate of the value vector delta, in the units of v_lr_units.")
    v_lr_units: Literal["absolute", "rms"] = hp(
        "absolute", "Units of v_lr: absolute (activation units, as the ROME/MEMIT code) or rms (fractions "
                    "of the RMS of the unedited value, the same relative step on every model).")
    v_steps: int = hp(20, "Maximum Adam steps of the value optimisation.")
    v_weight_decay: float = hp(0.05, "Weight of ||delta||^2 / ||h||^2 in the value loss.")
    kl_factor: float = hp(0.0625, "Weight of KL(edited || original) on '{subject} is a'.")
    clamp_norm_factor: float = hp(4.0, "||delta|| is clamped to this factor times ||h||.")
    early_stop_nll: float = hp(0.05, "Stop the value optimisation once the target NLL is below this.")
    kl_prompt: str = hp("{} is a", "Template (with '{}') of the prompt whose distribution the KL term preserves.")

    def validate(self) -> None:
        super().validate()
        if self.v_steps < 0 or self.v_lr <= 0:
            raise HyperParamError("v_steps must be >= 0 and v_lr > 0.")
        if self.clamp_norm_factor <= 0:
            raise HyperParamError("clamp_norm_factor must be > 0.")


@dataclass
class Covariance(EditHyperParams):
    """The key second moment C = E[k kᵀ] (``factscope.edit.covariance``)."""

    mom2_n_tokens: int = hp(4096, "Number of corpus tokens for the key covariance C = E[k k^T] (more is better, slower).")
    mom2_dtype: Literal["float64", "float32"] = hp("float64", "Accumulation dtype of the covariance.")

    def validate(self) -> None:
        super().validate()
        if self.mom2_n_tokens <= 0:
            raise HyperParamError("mom2_n_tokens must be > 0.")


# ---------------------------------------------------------------------- typed coercion
def literal_choices(hint: Any) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` hint, else ``()``."""
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def _union_members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return ()


def _type_name(hint: Any) -> str:
    choices = literal_choices(hint)
    if choices:
        return "one of " + ", ".join(map(str, choices))
    members = _union_members(hint)
    if members:
        return " or ".join(_type_name(m) for m in members)
    return getattr(hint, "__name__", str(hint))


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off"):
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, int):
        return value
    raise ValueError(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise ValueError(value)


def _to_number(value: Any) -> int | float:
    """A layer: an int index or a float fraction (text with a '.' or an exponent is a float)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        return float(text) if any(c in text for c in ".eE") else int(text)
    raise ValueError(value)


def _to_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return parsed
            raise ValueError(value)
        return [_to_number(part) for part in text.split(",") if part.strip()]
    raise ValueError(value)


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` (CLI/YAML text or a Python value) as the field's type; :class:`HyperParamError` if it does not fit."""
    try:
        choices = literal_choices(hint)
        if choices:
            text = value.strip() if isinstance(value, str) else value
            if text not in choices:
                raise HyperParamError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}.")
            return text
        members = _union_members(hint)
        if set(members) == {int, float}:
            return _to_number(value)
        if members:  # the first member the value fits, in the order declared
            for member in members:
                try:
                    return coerce(name, value, member)
                except HyperParamError:
                    continue
            raise ValueError(value)
        converters: dict[Any, Callable[[Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, list: _to_list}
        base = typing.get_origin(hint) or hint
        if base in converters:
            return converters[base](value)
        if base is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except HyperParamError:
        raise
    except (TypeError, ValueError, json.JSONDecodeError) as err:
        raise HyperParamError(f"Hyperparameter {name}={value!r} does not fit its type ({_type_name(hint)}).") from err
    return value


def read_hparams_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON hyperparameter file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise HyperParamError(f"{path}: expected a mapping of hyperparameters, got {type(data).__name__}.")
    return data


__all__ = [
    "ContextPrefixes", "Covariance", "EditHyperParams", "HyperParamError", "LayerRange", "SingleLayer", "ValueOptimisation",
    "coerce", "field_help", "hp", "literal_choices", "read_hparams_file", "resolve_layer", "resolve_layers",
]
