"""The ``factscope`` command line.

Usage::

    factscope predict "The capital of France is" --k 5

Each module in this package that defines ``register(app)`` adds its commands; a new
command group is a new module here, with no central list to edit.
"""

from __future__ import annotations

import importlib
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


def main() -> None:
    """Console-script entry point."""
    app()
