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
