"""The Typer app, the two consoles and the one exit path for a user's mistakes.

Results go to stdout, progress and errors to stderr; a user's mistake ends in one line on
stderr and a non-zero exit, never a traceback (`drawcli --debug ...` shows it).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Callable, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from drawcli import __version__
from drawcli.errors import ConfigError, DrawcliError

# What the commands print quotes paths, class folders and checkpoint contents, whose brackets are
# text: these consoles read no markup, and the few styled words are Text objects.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

app = typer.Typer(
    name="drawcli",
    help="Train DRAW (Gregor et al. 2015), watch it draw, inspect its checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


class Failed(typer.Exit):
    """The exit `fail` raises: it carries the message, so `drawcli.train` from Python can raise it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(code)
        self.message = message


def fail(message: str, code: int = 1) -> NoReturn:
    """The one exit path for user errors: one line on stderr, no traceback."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise Failed(message, code)


def debugging(ctx: typer.Context | None) -> bool:
    """Whether this invocation asked for tracebacks (`drawcli --debug COMMAND`)."""
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def handles_errors(fn: F) -> F:
    """Turn DrawcliError (and a few OS errors) into `fail`, unless --debug asks for the traceback.

    The command takes `ctx: typer.Context` as its first parameter, through which --debug is read.
    """

    @functools.wraps(fn)
    def wrapper(ctx: typer.Context, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(ctx, *args, **kwargs)
        except (DrawcliError, OSError) as exc:
            if debugging(ctx):
                raise
            if isinstance(exc, OSError) and exc.filename:
                fail(f"{exc.strerror or exc}: {exc.filename}")
            fail(str(exc), code=2 if isinstance(exc, ConfigError) else 1)
        except KeyboardInterrupt:
            if debugging(ctx):
                raise
            fail("interrupted", code=130)

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"drawcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Train DRAW (Gregor et al. 2015), watch it draw, inspect its checkpoints."""
