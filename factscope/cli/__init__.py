"""The ``factscope`` command line.

Usage::

    factscope predict "The capital of France is" --k 5

Each module in this package that defines ``register(app)`` adds its commands; a new
command group is a new module here, with no central list to edit.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pkgutil
import sys
import threading

import typer

from factscope.gc_control import freeze_after_pauses

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
    freeze_after_pauses()  # this process runs one command: see factscope.gc_control
    _exit_now(_run_command())


def _run_command() -> int:
    """Run the command line's command; its exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="factscope", standalone_mode=False)
    except _UsageError as err:
        if not err.format_message():  # no arguments at all: the help was printed already
            return err.exit_code
        where = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
        typer.secho(f"error: {err.format_message()}{where}", fg=typer.colors.RED, err=True)
        return 2
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except SystemExit as done:
        return _exit_code(done.code)
    return code if isinstance(code, int) else 0


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` would give, printing a message code as sys.exit does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit_now(code: int) -> None:
    """Exit with ``code`` without tearing the interpreter down.

    Freeing torch's and transformers' modules and a loaded model object by object takes
    0.7 s at exit, longer than many commands' work. Everything a normal exit does that
    matters still happens: atexit handlers run (logging's flush, multiprocessing's
    cleanup) and standard streams are flushed; files the commands write are closed by
    their ``with`` blocks. A process with other live non-daemon threads exits normally,
    since a normal exit waits for them, and so does one run under a profiler or tracer
    (``python -m cProfile -o F -m factscope ...`` writes F after the command returns).
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`factscope ... | head`) or a closed stream
            code = code or 1
    os._exit(code)
