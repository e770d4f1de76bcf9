"""The `drawcli` command line: train, sample, inspect, evaluate, reconstruct, plot, presets, plugins.

Results go to stdout, progress and errors to stderr; a user's mistake ends in one line on
stderr and a non-zero exit, never a traceback (`--debug` shows it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drawcli import __version__, registry
from drawcli.config import DrawConfig
from drawcli.errors import ConfigError, DrawcliError

DEFAULT_RUNS = Path("runs")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="drawcli",
    help="Train DRAW (Gregor et al. 2015), watch it draw, inspect its checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])
_debug = {"on": False}


def fail(message: str, code: int = 1) -> NoReturn:
    """The one exit path for user errors: one line on stderr, no traceback."""
    # The message may quote a file's contents or a path: its brackets are text, not rich markup.
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Turn DrawcliError (and a few OS errors) into `fail`, unless --debug asks for the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DrawcliError, OSError) as exc:
            if _debug["on"]:
                raise
            if isinstance(exc, OSError) and exc.filename:
                fail(f"{exc.strerror or exc}: {exc.filename}")
            fail(str(exc), code=2 if isinstance(exc, ConfigError) else 1)
        except KeyboardInterrupt:
            if _debug["on"]:
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
    _debug["on"] = debug


def _component_option(kind: str) -> Callable[[str], str]:
    def check(name: str) -> str:
        known = registry.names(kind)
        if name not in known:
            raise typer.BadParameter(f"unknown {kind} {name!r}; installed {kind}s: {', '.join(known) or 'none'}")
        return name

    return check


def _positive_float(value: float) -> float:
    if not value > 0 or value == float("inf"):
        raise typer.BadParameter(f"must be a positive number, got {value}")
    return value


def _check_outputs(*paths: Path | None) -> None:
    """Fail on an output file that cannot be written, before any model is loaded or run."""
    from drawcli.atomic import check_writable_file

    for path in paths:
        if path is not None:
            check_writable_file(path)


def _options(pairs: list[str] | None) -> dict[str, Any]:
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


def _preset_option(name: str | None) -> str | None:
    from drawcli import presets

    if name is not None and name not in presets.PRESETS:
        raise typer.BadParameter(f"unknown preset {name!r}; presets: {', '.join(presets.PRESETS)}")
    return name


def _apply_preset(ctx: typer.Context, name: str | None) -> dict[str, Any]:
    """The command's parameters with the preset's values filled in where not given explicitly."""
    from drawcli import presets

    params = dict(ctx.params)
    if name is not None:
        for key, value in presets.get(name).options.items():
            if not _from_command_line(ctx, key):
                params[key] = value
    return params


class Binarize(str, Enum):
    stochastic = "stochastic"
    threshold = "threshold"


class Amp(str, Enum):
    off = "off"
    bf16 = "bf16"


class CompileMode(str, Enum):
    default = "default"
    reduce_overhead = "reduce-overhead"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


ARCH = "Architecture"
TRAINING = "Training"
DATA = "Data"
OUTPUT = "Output"
Positive = functools.partial(typer.Option, min=1)


@app.command()
@handles_errors
def train(
    ctx: typer.Context,
    reader: Annotated[str, typer.Option(help="Reader component (see `drawcli plugins`).", callback=_component_option("reader"), rich_help_panel=ARCH)] = DrawConfig.reader,
    writer: Annotated[str, typer.Option(help="Writer component.", callback=_component_option("writer"), rich_help_panel=ARCH)] = DrawConfig.writer,
    sampler: Annotated[str, typer.Option(help="Latent sampler component.", callback=_component_option("sampler"), rich_help_panel=ARCH)] = DrawConfig.sampler,
    glimpses: Annotated[int, Positive(help="T, the number of glimpses (paper: 64).", rich_help_panel=ARCH)] = DrawConfig.glimpses,
    rnn_size: Annotated[int, Positive(help="Hidden size of both LSTMs (paper: 256).", rich_help_panel=ARCH)] = DrawConfig.enc_size,
    enc_size: Annotated[Optional[int], Positive(help="Encoder LSTM size; overrides --rnn-size.", rich_help_panel=ARCH)] = None,
    dec_size: Annotated[Optional[int], Positive(help="Decoder LSTM size; overrides --rnn-size.", rich_help_panel=ARCH)] = None,
    z_size: Annotated[int, Positive(help="Latent size per glimpse (paper: 100).", rich_help_panel=ARCH)] = DrawConfig.z_size,
    read_size: Annotated[int, Positive(help="N of the read filterbank, N x N (paper: 2).", rich_help_panel=ARCH)] = DrawConfig.read_size,
    write_size: Annotated[int, Positive(help="N of the write filterbank, N x N (paper: 5).", rich_help_panel=ARCH)] = DrawConfig.write_size,
    reader_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE option for the reader (VALUE parsed as JSON when it can be); repeatable.", rich_help_panel=ARCH)] = None,
    writer_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE option for the writer; repeatable.", rich_help_panel=ARCH)] = None,
    sampler_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE option for the sampler; repeatable.", rich_help_panel=ARCH)] = None,
    channels: Annotated[Optional[int], Positive(help="Image channels (1 or 3); default: the data set's.", rich_help_panel=ARCH)] = None,
    height: Annotated[Optional[int], Positive(help="Image height; default: the data set's (28 for a folder).", rich_help_panel=ARCH)] = None,
    width: Annotated[Optional[int], Positive(help="Image width; default: the data set's (28 for a folder).", rich_help_panel=ARCH)] = None,
    dataset: Annotated[str, typer.Option(help="Data set (see `drawcli plugins`).", callback=_component_option("dataset"), rich_help_panel=DATA)] = "mnist",
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with the data (idx files, torchvision layout or images). Without it: the cache, then a download.", rich_help_panel=DATA)] = None,
    binarize: Annotated[Binarize, typer.Option(help="stochastic: fresh Bernoulli sample per batch; threshold: pixel > 0.5.", rich_help_panel=DATA)] = Binarize.stochastic,
    epochs: Annotated[Optional[int], Positive(help="Epochs to train (default 1 when --steps is not given).", rich_help_panel=TRAINING)] = None,
    steps: Annotated[Optional[int], Positive(help="Optimizer steps to train; wins over --epochs.", rich_help_panel=TRAINING)] = None,
    batch_size: Annotated[int, Positive(help="Images per step.", rich_help_panel=TRAINING)] = 64,
    lr: Annotated[float, typer.Option(callback=_positive_float, help="Adam learning rate.", rich_help_panel=TRAINING)] = 1e-3,
    clip: Annotated[float, typer.Option(callback=_positive_float, help="Clip the gradient's global norm to this.", rich_help_panel=TRAINING)] = 10.0,
    beta1: Annotated[float, typer.Option(min=0.0, max=0.9999, help="Adam's beta1 (momentum).", rich_help_panel=TRAINING)] = 0.9,
    kl_warmup: Annotated[int, typer.Option(min=0, help="Steps over which the KL weight of the training objective rises to 1 (the reported bound always has full KL).", rich_help_panel=TRAINING)] = 0,
    seed: Annotated[int, typer.Option(help="Seed for weights, data order, binarization and noise.", rich_help_panel=TRAINING)] = 0,
    device: Annotated[Device, typer.Option(help="auto takes CUDA when present.", rich_help_panel=TRAINING)] = Device.auto,
    threads: Annotated[Optional[int], Positive(help="CPU threads; default half the cores (robust when the machine is shared).", rich_help_panel=TRAINING)] = None,
    amp: Annotated[Amp, typer.Option(help="bf16: run the forward in bfloat16 autocast (fast on recent GPUs); the loss, KL and reported bound stay float32.", rich_help_panel=TRAINING)] = Amp.off,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the glimpse (faster steps after a compile of about a minute per batch shape).", rich_help_panel=TRAINING)] = False,
    compile_mode: Annotated[CompileMode, typer.Option(help="torch.compile mode; reduce-overhead (implies --compile) replays each glimpse as a CUDA graph on a GPU, one launch instead of dozens; on the CPU it is the same as default.", rich_help_panel=TRAINING)] = CompileMode.default,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory where it stopped.", rich_help_panel=TRAINING)] = None,
    preset: Annotated[Optional[str], typer.Option(help="Start from a named setting (see `drawcli presets`); explicit options win.", callback=_preset_option, rich_help_panel=ARCH)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default runs/<date-time>).", rich_help_panel=OUTPUT)] = None,
    sample_every: Annotated[int, typer.Option(min=0, help="Write a sample GIF every N epochs; 0 turns them off.", rich_help_panel=OUTPUT)] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar: a few plain lines, for logs.", rich_help_panel=OUTPUT)] = False,
) -> None:
    """Train a DRAW model and save a safetensors checkpoint in a run directory."""
    from drawcli import data, train as training
    from drawcli.atomic import check_writable_dir
    from drawcli import distributed
    from drawcli.progress import SilentReporter, make_reporter

    dist_ctx, dist_device = distributed.init(device.value)  # a no-op unless launched by torchrun
    if resume is not None:
        config, settings, run_dir = _resume_setup(ctx, resume, epochs, steps, threads, device.value)
    else:
        p = _apply_preset(ctx, preset)
        native = data.open_dataset(p["dataset"]).image_shape or (1, 28, 28)
        try:
            config = DrawConfig(
                channels=p["channels"] or native[0], height=p["height"] or native[1], width=p["width"] or native[2],
                glimpses=p["glimpses"], enc_size=p["enc_size"] or p["rnn_size"], dec_size=p["dec_size"] or p["rnn_size"],
                z_size=p["z_size"], read_size=p["read_size"], write_size=p["write_size"],
                reader=p["reader"], writer=p["writer"], sampler=p["sampler"],
                reader_options=_options(p["reader_option"]), writer_options=_options(p["writer_option"]),
                sampler_options=_options(p["sampler_option"]),
            )  # fmt: skip
        except ConfigError as exc:
            fail(str(exc), code=2)
        settings = training.TrainSettings(
            dataset=p["dataset"], data_dir=str(data_dir) if data_dir else None, binarize=binarize.value,
            epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, clip=clip, seed=seed,
            beta1=p["beta1"], kl_warmup=p["kl_warmup"], amp=amp.value,
            device=device.value, threads=threads, sample_every=sample_every, compile=compile_model,
            compile_mode=compile_mode.value,
        )  # fmt: skip
        run_dir = out_dir or DEFAULT_RUNS / datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(distributed.broadcast_text(str(run_dir), dist_ctx))  # rank 0's clock names the run
        if (run_dir / "checkpoint.safetensors").exists():
            fail(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out", code=2)

    def write_samples(model: Any, state: Any) -> None:
        if state.batch:  # a run that ends mid-epoch
            name = f"step-{state.step:07d}.gif"
        elif state.epoch % settings.sample_every == 0:
            name = f"epoch-{state.epoch:04d}.gif"
        else:
            return
        (run_dir / "samples").mkdir(exist_ok=True)
        _draw_samples(model, run_dir / "samples" / name, None, n=settings.sample_count, seed=settings.seed,
                      fps=8, scale=2, boxes=False)  # fmt: skip

    check_writable_dir(run_dir)  # fail now, not after the first epoch
    reporter = make_reporter(err, quiet) if dist_ctx.is_main else SilentReporter(err)
    try:
        training.train(config, settings, run_dir, reporter, resume=resume is not None,
                       on_epoch_end=write_samples if settings.sample_every else None,
                       dist_ctx=dist_ctx, device=dist_device)  # fmt: skip
    except training.Interrupted as exc:
        reporter.close()
        if not dist_ctx.is_main:  # rank 0 tells the user how to resume
            raise typer.Exit(130) from None
        fail(str(exc), code=130)
    except KeyboardInterrupt:  # a second Ctrl-C: StopFlag gives up waiting for the step to end
        reporter.close()
        if _debug["on"]:
            raise
        if (run_dir / "checkpoint.safetensors").is_file():
            fail(f"stopped at once by a second interrupt; the last saved checkpoint in {run_dir} is intact; "
                 f"resume with: drawcli train --resume {run_dir}", code=130)  # fmt: skip
        fail(f"stopped at once by a second interrupt, before any checkpoint was saved in {run_dir}", code=130)
    finally:
        reporter.close()
        distributed.close(dist_ctx)


def _resume_setup(ctx: typer.Context, run_dir: Path, epochs: int | None, steps: int | None, threads: int | None, device: str) -> tuple[DrawConfig, Any, Path]:
    from drawcli import checkpoint, train as training

    info = checkpoint.read_info(run_dir)
    try:
        saved = json.loads((run_dir / "run.json").read_text())
        settings = training.TrainSettings(**saved["settings"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"{run_dir} is not a resumable run (run.json unreadable: {exc})")
    given = {name: ctx.params[name] for name in ARCH_OPTIONS if _from_command_line(ctx, name)}
    if "rnn_size" in given:
        given.setdefault("enc_size", given["rnn_size"])
        given.setdefault("dec_size", given.pop("rnn_size"))
    for name, value in given.items():
        stored = getattr(info.config, name)
        if name in ("reader", "writer", "sampler"):
            same = registry.resolve(name, value).name == info.components.get(name, {}).get("name", stored)
        else:
            same = value == stored
        if not same:
            fail(f"--{name.replace('_', '-')} {value} conflicts with the run being resumed ({name} = {stored})", code=2)
    for name in RUN_OPTIONS:
        value = _setting_value(ctx.params[name])
        if _from_command_line(ctx, name) and value != getattr(settings, name):
            fail(f"--{name.replace('_', '-')} {value} conflicts with the run being resumed ({name} = "
                 f"{getattr(settings, name)}); start a new run with --out to change it", code=2)  # fmt: skip
    if epochs is not None or steps is not None:
        settings.epochs, settings.steps = epochs, steps
    if threads is not None:
        settings.threads = threads
    if device != "auto":
        settings.device = device
    # How the run executes may change on resume; what it computes may not (RUN_OPTIONS).
    # replace() reruns TrainSettings' checks, such as a compile mode implying --compile.
    changes = {field: _setting_value(ctx.params[name]) for name, field in EXECUTION_OPTIONS.items()
               if _from_command_line(ctx, name)}  # fmt: skip
    return info.config, dataclasses.replace(settings, **changes), run_dir


ARCH_OPTIONS = ("reader", "writer", "sampler", "glimpses", "rnn_size", "enc_size", "dec_size", "z_size",
                "read_size", "write_size", "channels", "height", "width")  # fmt: skip
# Training options that define what a run computes: given on resume, they must match the run.
RUN_OPTIONS = ("dataset", "binarize", "batch_size", "lr", "clip", "beta1", "kl_warmup", "seed")
# Command-line parameter -> TrainSettings field of the options that may change on resume.
EXECUTION_OPTIONS = {"data_dir": "data_dir", "amp": "amp", "sample_every": "sample_every",
                     "compile_model": "compile", "compile_mode": "compile_mode"}  # fmt: skip


def _setting_value(value: Any) -> Any:
    """A command-line value as TrainSettings stores it (enums by value, paths as strings)."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _newest_run(root: Path = DEFAULT_RUNS) -> Path:
    candidates = sorted(root.glob("*/checkpoint.safetensors"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not candidates:
        fail(f"no checkpoint given and no run found under {root}/; train one with `drawcli train` or pass a path")
    return candidates[-1]


def _draw_samples(model: Any, gif: Path | None, png: Path | None, n: int, seed: int, fps: float, scale: int, boxes: bool) -> None:
    import torch

    from drawcli import render

    torch.manual_seed(seed)
    generation = model.generate(n)
    windows = generation.write_windows if boxes else None
    frames = render.canvas_frames(generation.canvases, scale=scale, windows=windows)
    if gif is not None:
        render.write_gif(gif, frames, fps=fps)
    if png is not None:
        render.write_png(png, render.frame(generation.canvases[-1], scale=scale))


@app.command()
@handles_errors
def sample(
    checkpoint_path: Annotated[Optional[Path], typer.Argument(metavar="[CHECKPOINT]", help="Checkpoint file or run directory (default: the newest run under runs/).")] = None,
    gif: Annotated[Optional[Path], typer.Option(help="Write the drawing, one frame per glimpse, to this GIF (default samples.gif when --png is not given).")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Write the final grid to this PNG.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=4096, help="Images to draw (laid out in a square grid).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for the prior samples.")] = 0,
    fps: Annotated[float, typer.Option(min=0.1, max=100.0, help="GIF frames per second (the last frame is held 2 s).")] = 8.0,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Pixel upscaling (nearest neighbour).")] = 2,
    boxes: Annotated[bool, typer.Option("--boxes", help="Draw each glimpse's write window (attention writers).")] = False,
    device: Annotated[Device, typer.Option(help="auto takes CUDA when present.")] = Device.auto,
) -> None:
    """Draw images from the prior and write a GIF of the canvases evolving glimpse by glimpse."""
    from drawcli import checkpoint
    from drawcli.train import pick_device

    if checkpoint_path is None:
        checkpoint_path = _newest_run()
        err.print(f"using the newest run: {checkpoint_path}")
    if gif is None and png is None:
        gif = Path("samples.gif")
    _check_outputs(gif, png)
    model, info = checkpoint.load_model(checkpoint_path, pick_device(device.value))
    model.eval()
    if boxes and info.config.writer in registry.resolve("writer", "no-attention").names:
        fail("--boxes needs an attention writer; this model's writer has no window")
    start = time.perf_counter()
    _draw_samples(model, gif, png, n=n, seed=seed, fps=fps, scale=scale, boxes=boxes)
    wrote = " and ".join(str(p) for p in (gif, png) if p is not None)
    out.print(f"wrote {wrote}: {n} samples, {info.config.glimpses} glimpses, {time.perf_counter() - start:.1f} s")


@app.command()
@handles_errors
def inspect(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Show what a checkpoint holds: config, components, parameters, tensors, training summary."""
    from drawcli import checkpoint
    from drawcli.report import checkpoint_report, print_report

    report = checkpoint_report(checkpoint.read_info(checkpoint_path))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, out)


def _test_images(
    info: Any, dataset: str | None, data_dir: Path | None, split: str, binarize: str | None, limit: int | None = None
) -> tuple[Any, str]:
    """The split binarized with the fixed test seed, and a sentence saying how it was binarized."""
    from drawcli import data

    name = dataset or info.training.get("dataset") or "mnist"
    folder = data_dir or (Path(info.training["data_dir"]) if info.training.get("data_dir") else None)
    mode = binarize or info.training.get("binarize") or "stochastic"
    images = data.load_images(data.open_dataset(name), split, folder, info.config.image_shape)[:limit]
    how = (
        f"{name} {split} split, {len(images)} images, binarized "
        + (f"stochastically once with the fixed seed {data.TEST_BINARIZATION_SEED}" if mode == "stochastic" else "by threshold (pixel > 0.5)")
    )
    return data.binarize_fixed(images, mode), how


@app.command()
@handles_errors
def evaluate(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")],
    dataset: Annotated[Optional[str], typer.Option(help="Data set (default: the one it was trained on).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder (default: the one it was trained with).")] = None,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    binarize: Annotated[Optional[Binarize], typer.Option(help="Binarization (default: the training run's).")] = None,
    samples: Annotated[int, typer.Option(min=0, max=100000, help="K posterior samples for the importance-weighted bound; 0 skips it.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 250,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N images.")] = None,
    device: Annotated[Device, typer.Option(help="auto takes CUDA when present.")] = Device.auto,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads (default: half the cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """The variational bound (and with --samples K the importance-weighted bound) in nats per image."""
    import torch
    from rich.progress import Progress

    from drawcli import checkpoint
    from drawcli import evaluate as evaluation
    from drawcli.train import default_threads, pick_device

    torch.set_num_threads(threads or default_threads())
    target = pick_device(device.value)
    model, info = checkpoint.load_model(checkpoint_path, target)
    images, how = _test_images(info, dataset, data_dir, split, binarize.value if binarize else None, limit)
    start = time.perf_counter()
    with Progress(console=err, disable=as_json or not err.is_terminal, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(images))
        result = evaluation.per_image(model, images, target, batch_size, samples, lambda n: progress.advance(task, n))
    report = {"checkpoint": str(info.path), "data": how, "samples": samples, **evaluation.summarize(result),
              "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    if as_json:
        print(json.dumps(report, indent=2))
        return
    out.print(f"[bold]{info.path}[/bold]: {how}")
    out.print(f"bound        {report['bound']:.2f} ± {report['bound_se']:.2f} nats  (recon {report['recon']:.2f}, KL {report['kl']:.2f})")
    if samples:
        out.print(f"IW bound K={samples:<4d}{report['iw_bound']:.2f} ± {report['iw_bound_se']:.2f} nats  ({report['iw_gain']:.2f} tighter)")
    per_glimpse = report["kl_per_glimpse"]
    out.print("KL per glimpse: " + " ".join(f"{v:.1f}" for v in per_glimpse))
    out.print(f"{report['images']} images in {report['seconds']:.1f} s")


@app.command()
@handles_errors
def reconstruct(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")],
    gif: Annotated[Path, typer.Option(help="GIF: originals with the read window (green) beside the canvas with the write window (red).")] = Path("reconstruction.gif"),
    png: Annotated[Optional[Path], typer.Option(help="Also write the final frame as a PNG.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="Test images to reconstruct.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed choosing the images and the posterior noise.")] = 0,
    fps: Annotated[float, typer.Option(min=0.1, max=100.0, help="Frames per second (the last frame is held 2 s).")] = 8.0,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Pixel upscaling (nearest neighbour).")] = 3,
    dataset: Annotated[Optional[str], typer.Option(help="Data set (default: the one it was trained on).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder (default: the one it was trained with).")] = None,
    device: Annotated[Device, typer.Option(help="auto takes CUDA when present.")] = Device.auto,
) -> None:
    """Reconstruct test images glimpse by glimpse, with the attention windows drawn (the paper's Figure 1)."""
    import torch

    from drawcli import checkpoint, render
    from drawcli.train import pick_device

    _check_outputs(gif, png)
    target = pick_device(device.value)
    model, info = checkpoint.load_model(checkpoint_path, target)
    model.eval()
    images, _ = _test_images(info, dataset, data_dir, "test", None)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    x = images[pick].to(target)
    torch.manual_seed(seed)
    with torch.no_grad():
        result = model(x, record=True)
    frames = []
    for t in range(info.config.glimpses):
        read = result.read_windows[t] if result.read_windows else None
        write = result.write_windows[t] if result.write_windows else None
        left = render.frame(x, scale, read, render.READ_COLOUR)
        right = render.frame(result.canvases[t], scale, write, render.WRITE_COLOUR)
        frames.append(render.side_by_side(left, right))
    render.write_gif(gif, frames, fps=fps)
    if png is not None:
        render.write_png(png, frames[-1])
    bound = result.loss.mean().item()
    out.print(f"wrote {gif}: {len(x)} test images, {len(frames)} frames, bound {bound:.2f} nats on these images")


@app.command()
@handles_errors
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="Run directories (or metrics.jsonl files) to draw together.")],
    png: Annotated[Path, typer.Option(help="Output PNG (1000 x 400 pixels).")] = Path("curves.png"),
    ymax: Annotated[Optional[float], typer.Option(help="Upper limit of the nats axis (the first steps are far above the rest).")] = None,
) -> None:
    """Draw learning curves: training loss and test bound against steps and wall time."""
    from drawcli.atomic import atomic_path
    from drawcli.plot import plot_curves, read_metrics

    _check_outputs(png)
    runs = {path.name if path.is_dir() else path.parent.name: read_metrics(path) for path in run_dirs}
    floor = min(r.get("test_bound", r.get("loss", 0.0)) for records in runs.values() for r in records)
    with atomic_path(png) as tmp:
        plot_curves(runs, tmp, (floor * 0.9, ymax) if ymax else None)
    out.print(f"wrote {png}")


@app.command("presets")
def list_presets() -> None:
    """List the named settings `drawcli train --preset` accepts."""
    from drawcli import presets

    table = Table(title="presets")
    table.add_column("name")
    table.add_column("description")
    table.add_column("options")
    for name, preset in presets.PRESETS.items():
        options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in preset.options.items())
        table.add_row(name, preset.description, options)
    out.print(table)


@app.command()
@handles_errors
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON on stdout.")] = False,
) -> None:
    """List installed readers, writers, samplers and data sets, with aliases and distributions."""
    listing = {
        kind: [{"name": s.name, "aliases": list(s.aliases), "target": s.value, "distribution": s.distribution,
                "version": s.version} for s in registry.find(kind)]  # fmt: skip
        for kind in registry.GROUPS
    }
    if as_json:
        print(json.dumps(listing, indent=2))
        return
    table = Table(title="drawcli components")
    for col in ("kind", "name", "aliases", "provided by", "target"):
        table.add_column(col)
    for kind, specs in listing.items():
        for s in specs:
            table.add_row(kind, s["name"], ", ".join(s["aliases"]), f"{s['distribution']} {s['version']}", s["target"])
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app()
