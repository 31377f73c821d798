"""Typed hyperparameters: field groups, Literal choices checked from the type, coercion by real types, legacy keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from factscope.edit import EDITORS, HyperParamError, editor_names, get_editor, hparams_for
from factscope.edit.ft import FTHyperParams
from factscope.edit.hparams import ContextPrefixes, Covariance, SingleLayer, ValueOptimisation, coerce, hp
from factscope.edit.memit import MEMITHyperParams
from factscope.edit.pmet import PMETHyperParams
from factscope.edit.rets import RETSHyperParams
from factscope.edit.rome import ROMEHyperParams
from factscope.testing import tiny_adapter


def test_ft_has_only_the_knobs_it_uses() -> None:
    assert FTHyperParams.field_names() == ["layer", "ft_lr", "ft_steps", "norm_constraint", "early_stop_nll"]
    assert not issubclass(FTHyperParams, (ValueOptimisation, ContextPrefixes, Covariance))
    with pytest.raises(HyperParamError, match="Valid fields: early_stop_nll, ft_lr, ft_steps, layer, norm_constraint"):
        FTHyperParams().override(v_steps=3)
    gemma = FTHyperParams.for_model(tiny_adapter("gemma3_text"))  # the shared Gemma v_lr table does not apply
    assert gemma == FTHyperParams()


def test_every_editor_combines_the_groups_it_uses() -> None:
    for cls in (ROMEHyperParams, RETSHyperParams, MEMITHyperParams, PMETHyperParams):
        assert issubclass(cls, (ValueOptimisation,)) and issubclass(cls, Covariance) and issubclass(cls, ContextPrefixes)
    assert MEMITHyperParams.takes_layer_range() and PMETHyperParams.takes_layer_range()
    assert not any(c.takes_layer_range() for c in (ROMEHyperParams, RETSHyperParams, FTHyperParams))
    assert set(EDITORS) == set(editor_names()) == {"rome", "rets", "memit", "pmet", "ft", "kn", "mend"}
    for name in editor_names():
        assert type(hparams_for(name)) is get_editor(name).hparams_class


def test_defaults_are_unchanged() -> None:
    rome, memit, pmet, ft = ROMEHyperParams(), MEMITHyperParams(), PMETHyperParams(), FTHyperParams()
    assert (rome.layer, rome.v_steps, rome.v_lr, rome.kl_factor, rome.context_lengths, rome.mom2_n_tokens) == (
        0.25, 20, 0.5, 0.0625, [[5, 10], [10, 10]], 4096)
    assert (memit.v_steps, memit.clamp_norm_factor, memit.v_weight_decay, memit.spread, memit.context_lengths) == (
        25, 0.75, 0.5, "even", [[10, 5]])
    assert pmet.spread == "sqrt" and (ft.layer, ft.ft_lr, ft.ft_steps, ft.early_stop_nll) == (0.2, 5e-4, 25, 0.01)
    assert (RETSHyperParams().layer, RETSHyperParams().lookup, RETSHyperParams().constraint_source) == (0.75, "last", "records")


@dataclass
class _Toy(SingleLayer):
    mode: Literal["a", "b"] = hp("a", "A choice.")
    flag: bool = hp(False, "A flag.")
    count: int = hp(1, "A count.")


def test_literal_choices_are_checked_from_the_type() -> None:
    assert _Toy().override(mode="b").mode == "b"
    with pytest.raises(HyperParamError, match="mode must be one of a, b, got 'c'"):
        _Toy().override(mode="c")
    with pytest.raises(HyperParamError, match="mode must be one of a, b"):
        _Toy(mode="c").validate()  # also a value set without override
    with pytest.raises(HyperParamError, match="spread must be one of even, sqrt"):
        PMETHyperParams().override(spread="cube")


def test_values_are_coerced_by_the_fields_real_types() -> None:
    toy = _Toy().override(flag="yes", count="3", layer="0.5")
    assert (toy.flag, toy.count, toy.layer) == (True, 3, 0.5)
    assert _Toy().override(layer="2").layer == 2 and isinstance(_Toy().override(layer="2").layer, int)
    assert coerce("layers", "1,2", list) == [1, 2] and coerce("layers", "[0.1, 0.2]", list) == [0.1, 0.2]
    for field, bad in (("flag", "maybe"), ("count", "2.5"), ("count", True), ("layer", "x")):
        with pytest.raises(HyperParamError, match=f"{field}="):
            _Toy().override(**{field: bad})


def test_pmet_spread_is_one_knob_and_old_keys_map_to_it() -> None:
    assert "even_spread" not in PMETHyperParams.field_names()
    assert PMETHyperParams().override(even_spread=True).spread == "even"
    assert PMETHyperParams().override(even_spread="false").spread == "sqrt"
    assert PMETHyperParams.from_dict({"even_spread": True, "layers": [1, 2]}).spread == "even"
    assert PMETHyperParams().override(even_spread=True, spread="sqrt").spread == "sqrt"  # the new key wins


def test_overrides_are_parsed_without_a_model() -> None:
    rets = get_editor("rets")
    assert rets.parse_overrides({"no_subject_constraints": "true", "corpus": "c.txt"}) == {
        "no_subject_constraints": True, "corpus": "c.txt"}
    with pytest.raises(HyperParamError, match="update_attn needs"):
        get_editor("pmet").parse_overrides({"update_attn": "true", "no_attn_delta": "true"})
    with pytest.raises(HyperParamError, match="Unknown RETSHyperParams field"):
        rets.parse_overrides({"subject_constraints": "false"})
