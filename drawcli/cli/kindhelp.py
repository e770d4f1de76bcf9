"""`train --help` for one kind of model: the options a kind cannot use are left out of its help.

`drawcli train --help` shows DRAW's options; `drawcli train --model classifier --help` (or a
classifier's `--preset`) shows the attention classifier's. The options themselves are declared once,
in `train`'s signature; which ones a kind cannot use is declared once, in `kinds.ModelKind.unused_options`.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand

from drawcli import kinds, presets


def kind_asked(args: list[str]) -> str:
    """The model kind a `train` command line asks for: --model, else its --preset's, else DRAW's."""
    def value(name: str) -> str | None:
        found = None  # the last one given wins, as when the options are parsed
        for i, arg in enumerate(args):
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "="):
                found = arg.split("=", 1)[1]
        return found

    model, preset = value("--model"), value("--preset")
    if model in kinds.KINDS:
        return model
    if preset in presets.PRESETS:
        return str(presets.PRESETS[preset].settings.get("kind", "draw"))
    return "draw"


class PerKindHelp(TyperCommand):
    """A Typer command whose help leaves out the options of the other model kinds (they still parse)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        unused = {param for param, _ in kinds.get(kind_asked(args)).unused_options}
        for param in self.params:
            if param.name in unused or getattr(param, "hidden", False):
                param.hidden = param.name in unused  # type: ignore[attr-defined]
        return super().parse_args(ctx, args)
