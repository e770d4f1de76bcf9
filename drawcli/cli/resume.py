"""`train --resume RUN`: the run's own config and settings, with what the command line may change.

The rules come from the settings' tags (training/settings.py): an execution option given on
the command line replaces the run's value; a run-defining option or an architecture option
must match the run, or the resume is refused with the option named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from drawcli import registry
from drawcli.cli.app import fail
from drawcli.cli.options import flag, from_command_line, key_values, plain, setting_param
from drawcli.config import ModelConfig

# Architecture options of `train`, each compared with the config of the run being resumed.
ARCH_OPTIONS = ("reader", "writer", "sampler", "glimpses", "rnn_size", "enc_size", "dec_size", "z_size",
                "read_size", "write_size", "channels", "height", "width", "canvas")  # fmt: skip
COMPONENT_OPTIONS = {"reader_option": "reader_options", "writer_option": "writer_options", "sampler_option": "sampler_options"}
LENGTH = ("epochs", "steps")  # given on resume, either one replaces both: the run's new length


def _shown(value: Any) -> Any:
    """A setting as the user typed it: a repeated option's values joined, 'none' for none."""
    return (", ".join(map(str, value)) or "none") if isinstance(value, tuple) else value


def _conflict(param: str, value: Any, name: str, stored: Any, hint: str = "") -> None:
    fail(f"{flag(param)} {_shown(value)} conflicts with the run being resumed ({name} = {_shown(stored)}){hint}", code=2)


def _check_teachers(teachers: tuple[str, ...], recorded: list[str]) -> None:
    """Refuse a resume whose teachers' checkpoints differ from the ones the run started with."""
    from drawcli.training.distill import digests

    for path, then, now in zip(teachers, recorded, digests(teachers)):
        if then != now:
            fail(f"--teacher {path} has changed since the run started (its checkpoint's SHA-256 differs), so the run "
                 "would go on learning from other targets; start a new run with --out", code=2)  # fmt: skip


def _check_architecture(ctx: typer.Context, config: ModelConfig, components: dict[str, Any]) -> None:
    from drawcli import kinds

    for param, why in kinds.get(config.kind).unused_options:
        if from_command_line(ctx, param):
            fail(f"{flag(param)} {why}, and the run being resumed is {kinds.get(config.kind).title}", code=2)
    given = {name: plain(ctx.params[name]) for name in ARCH_OPTIONS if from_command_line(ctx, name)}
    params = {name: name for name in given}  # the option each value came from, for the message
    fields = config.field_names()
    for size in ("enc_size", "dec_size"):  # the LSTMs the kind has
        if "rnn_size" in given and size in fields and size not in given:
            given[size], params[size] = given["rnn_size"], "rnn_size"
    given.pop("rnn_size", None)
    for name, value in given.items():
        stored = getattr(config, name)
        if name in ("reader", "writer", "sampler"):
            same = registry.resolve(name, value).name == components.get(name, {}).get("name", stored)
        else:
            same = value == stored
        if not same:
            _conflict(params[name], value, name, stored)
    if from_command_line(ctx, "model") and plain(ctx.params["model"]) != config.kind:
        _conflict("model", plain(ctx.params["model"]), "kind", config.kind)
    for component in kinds.get(config.kind).components:
        param, name = f"{component}_option", f"{component}_options"
        stored = getattr(config, name)  # options given again must agree with the run's; unnamed ones keep theirs
        if from_command_line(ctx, param) and {**stored, **key_values(ctx.params[param])} != stored:
            _conflict(param, " ".join(ctx.params[param]), name, stored)


def resumed(ctx: typer.Context, run_dir: Path) -> tuple[ModelConfig, Any]:
    """The config and settings to continue `run_dir` with, after checking the command line against them."""
    from drawcli import checkpoint
    from drawcli.errors import ConfigError
    from drawcli.rundir import RunDir
    from drawcli.training.settings import EXECUTION, RUN, TrainSettings

    if from_command_line(ctx, "preset"):
        fail("--preset sets up a new run; a resumed run keeps its own settings (drop --preset)", code=2)
    if run_dir.is_file():
        fail(f"--resume takes the run's folder, not a file in it: --resume {run_dir.parent}", code=2)
    info = checkpoint.read_info(run_dir)
    try:
        settings = TrainSettings.from_dict(RunDir(run_dir).read_run_json()["settings"])
    except (ConfigError, TypeError) as exc:
        fail(f"{run_dir} is not a resumable run (run.json unreadable: {exc})")
    _check_architecture(ctx, info.config, info.components)
    _check_teachers(settings.teachers, info.training.get("teacher_sha256", []))
    for name in TrainSettings.fields_tagged(RUN):
        param = setting_param(name)
        value = plain(ctx.params.get(param))
        if param in ctx.params and from_command_line(ctx, param) and value != getattr(settings, name):
            _conflict(param, value, name, getattr(settings, name), "; start a new run with --out to change it")
    changes = {name: plain(ctx.params[setting_param(name)]) for name in TrainSettings.fields_tagged(EXECUTION)
               if setting_param(name) in ctx.params and from_command_line(ctx, setting_param(name))}  # fmt: skip
    if any(name in changes for name in LENGTH):
        changes = {**dict.fromkeys(LENGTH), **changes}
    # replace() reruns TrainSettings' checks, such as a compile mode implying --compile.
    return info.config, dataclasses.replace(settings, **changes)
