"""``factscope.cli.common``: the shared model options and ``@model_options``."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

from factscope.cli import common
from factscope.cli.common import ModelSpec, model_options


def _app(device_map: bool = True) -> tuple[typer.Typer, list[ModelSpec]]:
    seen: list[ModelSpec] = []
    app = typer.Typer()

    @app.command()
    @model_options(device_map=device_map)
    def cmd(k: int = 1, model: ModelSpec = ModelSpec(), last: bool = False) -> None:
        seen.append(model)
        typer.echo(f"k={k} last={last}")

    @app.command()
    def other() -> None:  # a second command keeps `cmd` a subcommand
        pass

    return app, seen


def test_model_options_replace_the_model_parameter_in_place() -> None:
    app, seen = _app()
    params = list(inspect.signature(app.registered_commands[0].callback).parameters)
    assert params == ["k", "model", "device", "dtype", "device_map", "last"]
    res = CliRunner().invoke(app, ["cmd", "-m", "some/model", "--device", "cpu", "--dtype", "float16",
                                   "--device-map", "auto", "--k", "3", "--last"])
    assert res.exit_code == 0, res.output
    assert "k=3 last=True" in res.output
    assert seen == [ModelSpec("some/model", "cpu", "float16", "auto")]
    assert CliRunner().invoke(app, ["cmd"]).exit_code == 0 and seen[-1] == ModelSpec()


def test_model_options_without_device_map() -> None:
    app, seen = _app(device_map=False)
    assert CliRunner().invoke(app, ["cmd", "--model", "x", "--dtype", "bfloat16"]).exit_code == 0
    assert seen == [ModelSpec("x", None, "bfloat16", None)]
    res = CliRunner().invoke(app, ["cmd", "--device-map", "auto"])
    assert res.exit_code != 0 and "No such option" in res.output


def test_model_options_needs_a_model_parameter() -> None:
    with pytest.raises(TypeError, match="ModelSpec"):
        model_options()(lambda k=1: None)


def test_load_adapter_accepts_a_spec_or_a_bare_model(monkeypatch) -> None:
    import factscope.models as models

    calls = []

    class Loaded:
        adapter = "adapter"

    def fake_load(name, **kwargs):
        calls.append((name, kwargs))
        return Loaded()

    monkeypatch.setattr(models, "load_model", fake_load)
    assert common.load_adapter(ModelSpec("a", "cpu", "float32", "auto")) == "adapter"
    assert common.load_adapter("b") == "adapter"
    assert common.load_adapter(None) == "adapter"
    assert calls == [("a", {"device": "cpu", "dtype": "float32", "device_map": "auto"}),
                     ("b", {"device": None, "dtype": None, "device_map": None}),
                     (None, {"device": None, "dtype": None, "device_map": None})]


def test_load_adapter_turns_load_errors_into_a_clean_exit(monkeypatch) -> None:
    import factscope.models as models

    def broken(name, **kwargs):
        raise models.ModelLoadError("no such model")

    monkeypatch.setattr(models, "load_model", broken)
    with pytest.raises(typer.Exit) as exit_info:
        common.load_adapter(ModelSpec("missing"))
    assert exit_info.value.exit_code == 2


def _options(command: str) -> set[str]:
    from factscope.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {opt for p in cmd.params if p.param_type_name == "option" for opt in p.opts}


@pytest.mark.parametrize("command", ["predict", "trace", "trace-dataset", "lens", "lens-dataset", "dynamics", "edit",
                                     "evaluate", "reproduce", "demo"])
def test_every_computing_command_takes_threads_and_model(command: str) -> None:
    opts = _options(command)
    assert {"--threads", "--model"} <= opts, opts


@pytest.mark.parametrize("command", ["predict", "trace", "trace-dataset", "lens", "edit", "edit-params", "evaluate"])
def test_commands_with_a_result_to_print_take_json(command: str) -> None:
    assert "--json" in _options(command)


def test_layer_option_asks_the_hparams_class_for_a_range() -> None:
    from factscope.cli.editor_args import layer_override
    from factscope.edit import get_editor
    from factscope.testing import tiny_adapter

    adapter = tiny_adapter("llama")  # 4 layers
    assert layer_override(get_editor("rome"), 2, adapter) == {"layer": 2}
    assert layer_override(get_editor("ft"), 0.5, adapter) == {"layer": 0.5}
    memit_default = len(get_editor("memit").hparams(adapter).layers)
    assert layer_override(get_editor("memit"), 3, adapter) == {"layers": list(range(max(0, 4 - memit_default), 4))}
    assert layer_override(get_editor("pmet"), 1, adapter)["layers"][-1] == 1
    assert layer_override(get_editor("kn"), 2, adapter) == {"layers": [0, 1, 2]}  # "all": a range as deep as the model


def test_one_set_parser_types_values_for_the_editor() -> None:
    from factscope.cli.editor_args import editor_overrides
    from factscope.edit import get_editor

    assert editor_overrides(get_editor("rets"), ["no_subject_constraints=true", "layer=0.5", "n_constraint_records=7"], None) == {
        "no_subject_constraints": True, "layer": 0.5, "n_constraint_records": 7}
    assert editor_overrides(get_editor("memit"), ["layers=[1, 2]", "context_lengths=[[3, 1]]"], None) == {
        "layers": [1, 2], "context_lengths": [[3, 1]]}
    assert editor_overrides(get_editor("pmet"), ["even_spread=true"], None) == {"spread": "even"}
    with pytest.raises(typer.Exit):
        editor_overrides(get_editor("ft"), ["v_steps=3"], None)


def test_edit_params_lists_only_the_editors_own_fields(monkeypatch) -> None:
    import json

    import factscope.cli.edit as cli_edit
    from factscope.cli import app
    from factscope.testing import tiny_adapter

    adapter = tiny_adapter("llama")
    monkeypatch.setattr(cli_edit, "load_adapter", lambda *a, **k: adapter)
    res = CliRunner().invoke(app, ["edit-params", "ft"])
    assert res.exit_code == 0, res.output
    names = [line.split()[0] for line in res.output.splitlines() if line.strip()]
    assert names == ["layer", "ft_lr", "ft_steps", "norm_constraint", "early_stop_nll"]
    res = CliRunner().invoke(app, ["edit-params", "pmet", "--json"])
    fields = {f["name"]: f["default"] for f in json.loads(res.stdout)["fields"]}
    assert fields["spread"] == "sqrt" and "even_spread" not in fields
