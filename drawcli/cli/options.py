"""Option types and checks shared by the commands; every list of choices comes from its one home."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, TypeAlias

import typer

from drawcli import registry
from drawcli.choices import (
    AMP_MODES,
    BINARIZE_MODES,
    CANVAS_STARTS,
    COMPILE_CHOICES,
    COMPILE_MODES,
    CUDA_GRAPHS,
    DEVICES,
    LR_SCHEDULES,
    MODEL_KINDS,
)


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum for Typer whose members are `values`, so --help and checks follow the source list."""
    return Enum(name, [(v, v) for v in values], type=str)  # type: ignore[return-value]


if TYPE_CHECKING:  # built at run time, so a type checker sees each as a plain Enum
    Binarize: TypeAlias = Enum
    Amp: TypeAlias = Enum
    Canvas: TypeAlias = Enum
    Compile: TypeAlias = Enum
    CompileMode: TypeAlias = Enum
    CudaGraph: TypeAlias = Enum
    Device: TypeAlias = Enum
    LrSchedule: TypeAlias = Enum
    ModelKind: TypeAlias = Enum
else:
    Binarize = choices("Binarize", BINARIZE_MODES)
    Amp = choices("Amp", AMP_MODES)
    Canvas = choices("Canvas", CANVAS_STARTS)
    Compile = choices("Compile", COMPILE_CHOICES)
    CompileMode = choices("CompileMode", COMPILE_MODES)
    CudaGraph = choices("CudaGraph", CUDA_GRAPHS)
    Device = choices("Device", DEVICES)
    LrSchedule = choices("LrSchedule", LR_SCHEDULES)
    ModelKind = choices("ModelKind", MODEL_KINDS)

# `train` parameter -> TrainSettings field, where the two names differ.
SETTING_PARAMS = {"compile_model": "compile", "teacher": "teachers"}

DeviceOption = Annotated[Device, typer.Option(help="auto takes CUDA when present.")]  # type: ignore[valid-type]
ThreadsOption = Annotated[Optional[int], typer.Option(min=1, help="CPU threads (default: half the cores).")]
DatasetOption = Annotated[Optional[str], typer.Option(help="Data set (default: the one it was trained on).")]
DataDirOption = Annotated[Optional[Path], typer.Option(help="Data folder (default: the one it was trained with).")]
PngOption = Annotated[Optional[Path], typer.Option(help="Also write the last frame as a PNG.")]
ScaleOption = Annotated[int, typer.Option(min=1, max=16, help="Pixel upscaling (nearest neighbour).")]
FpsOption = Annotated[float, typer.Option(min=0.1, max=100.0, help="GIF frames per second (the last frame is held 2 s).")]
# Seeds: 32 bits, so that what is derived from them (an epoch's order: seed * 1_000_003 + epoch)
# stays within the 64-bit integers torch.manual_seed takes.
SEED_RANGE = {"min": 0, "max": 2**32 - 1}


def as_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Values by setting name (a preset's) as `train`'s options: kind is --model, equal LSTM sizes (or a
    classifier's one) one --rnn-size, a component's options KEY=VALUE words, a training setting its parameter."""
    from drawcli.config import config_class

    one_lstm = "enc_size" not in config_class(settings.get("kind", "draw")).field_names()
    options: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "kind":
            options["model"] = value
        elif key == "enc_size" and settings.get("dec_size") == value:
            options["rnn_size"] = value
        elif key == "dec_size" and (one_lstm or settings.get("enc_size") == value):
            if one_lstm:
                options["rnn_size"] = value
        elif key.endswith("_options"):
            options[key.removesuffix("s")] = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()]
        else:
            options[setting_param(key)] = value
    return options


def setting_param(field: str) -> str:
    """The `train` parameter that sets TrainSettings field `field`."""
    return {v: k for k, v in SETTING_PARAMS.items()}.get(field, field)


def plain(value: Any) -> Any:
    """A command-line value as settings store it (enums by value, paths as strings, lists as tuples)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):  # a repeatable option: a tuple, as settings store it
        return tuple(plain(v) for v in value)
    return str(value) if isinstance(value, Path) else value


def component(kind: str) -> Callable[[str], str]:
    """A callback accepting only installed components of `kind` (aliases too)."""

    def check(name: str) -> str:
        known = registry.names(kind)
        if name not in known:
            raise typer.BadParameter(f"unknown {kind} {name!r}; installed {kind}s: {', '.join(known) or 'none'}")
        return name

    return check


def positive_float(value: float) -> float:
    if not value > 0 or value == float("inf"):
        raise typer.BadParameter(f"must be a positive number, got {value}")
    return value


def key_values(pairs: list[str] | None) -> dict[str, Any]:
    """["init=torch", "k=3"] -> {"init": "torch", "k": 3}: values are JSON when they parse, else strings."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"component options are KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def check_outputs(**paths: Path | None) -> None:
    """Fail on an output file that cannot be written, or whose name does not end in its format
    (the keyword: gif=..., png=...), before any model is loaded or run."""
    from drawcli.atomic import check_writable_file
    from drawcli.errors import WriteError

    for fmt, path in paths.items():
        if path is None:
            continue
        check_writable_file(path)
        if path.suffix.lower() != f".{fmt}":
            raise WriteError(f"--{fmt} {path}: this writes a {fmt.upper()}, so its name must end in .{fmt}")


def flag(param: str) -> str:
    """The command-line spelling of parameter `param`: enc_size -> --enc-size."""
    return "--" + param.replace("_", "-")


def from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether parameter `name` was given explicitly (not a default, not a preset)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
