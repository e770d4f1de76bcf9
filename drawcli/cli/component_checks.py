"""`train`'s checks of a new run's component options: a size for a component without a window, and an
option drawcli removed, are refused in one line rather than ignored."""

from __future__ import annotations

import typer

from drawcli.cli.app import fail
from drawcli.cli.options import flag, from_command_line
from drawcli.config import ModelConfig


def refuse_windowless_sizes(ctx: typer.Context, config: ModelConfig) -> None:
    """--read-size / --write-size given on the command line for a component without a window (it would ignore it).

    Only an explicit size is refused: a preset's sizes fall silently away when --reader replaces its reader.
    """
    from drawcli import kinds, registry

    components = kinds.get(config.kind).components
    for kind, param in (("reader", "read_size"), ("writer", "write_size")):
        if kind not in components:
            continue
        name = getattr(config, kind)
        if from_command_line(ctx, param) and not getattr(registry.load(kind, name), "produces_windows", False):
            fail(f"{flag(param)} sizes the {kind}'s window, but {kind} {name!r} has no window, so it would be ignored: "
                 f"drop {flag(param)}, or pick a {kind} with a window (see `drawcli plugins`)", code=2)  # fmt: skip


def refuse_retired_options(config: ModelConfig) -> None:
    """A component option removed from drawcli: a new run refuses it (old files drop it at its neutral value)."""
    from drawcli import kinds, registry

    for kind in kinds.get(config.kind).components:
        retired = getattr(registry.load(kind, getattr(config, kind)), "retired_options", None)
        for key in set(getattr(config, f"{kind}_options")) & set(retired.neutral if retired else ()):
            fail(f"--{kind}-option {key} was removed after drawcli {retired.last_version} (it did not help; "  # type: ignore[union-attr]
                 "docs/reproducing.md, 'Measured and not adopted')", code=2)  # fmt: skip
