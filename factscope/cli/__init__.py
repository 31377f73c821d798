"""The ``factscope`` command line.

Usage::

    factscope predict "The capital of France is" --k 5

Each module in this package that defines ``register(app)`` adds its commands; a new
command group is a new module here, with no central list to edit.
"""

from __future__ import annotations

import importlib
import sys
import pkgutil

import typer

app = typer.Typer(
    name="factscope",
    help="Locate where a language model stores a fact, edit it, and measure what the edit changed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    """Locate where a language model stores a fact, edit it, and measure what the edit changed."""
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


# click's UsageError (typer vendors click; BadParameter, which typer exports, derives from it).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main() -> None:
    """Console-script entry point: usage errors print one ``error:`` line and exit 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="factscope", standalone_mode=False)
    except _UsageError as err:
        if not err.format_message():  # no arguments at all: the help was printed already
            sys.exit(err.exit_code)
        where = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
        typer.secho(f"error: {err.format_message()}{where}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
