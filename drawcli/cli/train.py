"""`drawcli train`: build the config and settings from the options (or a preset, or a run to resume) and train."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from drawcli.cli.app import app, debugging, err, fail, handles_errors
from drawcli.cli.component_checks import refuse_retired_options, refuse_windowless_sizes
from drawcli.cli.kindhelp import PerKindHelp
from drawcli.cli.options import (
    SEED_RANGE,
    Amp,
    Binarize,
    Canvas,
    Compile,
    CompileMode,
    CudaGraph,
    Device,
    LrSchedule,
    ModelKind,
    component,
    flag,
    from_command_line,
    key_values,
    plain,
    positive_float,
)
from drawcli.config import MAX_GLIMPSES, MAX_HIDDEN, MAX_IMAGE_SIDE, DrawConfig, ModelConfig, config_class
from drawcli.errors import ConfigError, DrawcliError
from drawcli.training.settings import TrainSettings

ARCH = "Architecture"
TRAINING = "Training"
DATA = "Data"
OUTPUT = "Output"
Positive = functools.partial(typer.Option, min=1)


def _preset_option(name: str | None) -> str | None:
    from drawcli import presets

    if name is not None and name not in presets.PRESETS:
        raise typer.BadParameter(f"unknown preset {name!r}; presets: {', '.join(presets.PRESETS)}")
    return name


NOT_SETTINGS = ("preset", "resume", "out_dir", "quiet")  # train's parameters that set no config field or setting


def _changes(ctx: typer.Context, preset: str | None) -> dict[str, Any]:
    """The options given on the command line, as changes by setting name to the preset (or the defaults):
    --rnn-size sets both LSTMs unless one is given, and a component's KEY=VALUE options merge with the
    preset's key by key, unless the command line names another component."""
    from drawcli import presets
    from drawcli.cli.options import SETTING_PARAMS
    from drawcli.cli.resume import COMPONENT_OPTIONS

    base = presets.get(preset).settings if preset is not None else {}
    kind = base.get("kind", DrawConfig.kind)
    if preset is not None and from_command_line(ctx, "model") and plain(ctx.params["model"]) != kind:
        fail(f"preset {preset} sets up a {kind} model; --model {plain(ctx.params['model'])} conflicts with it", code=2)
    kind = plain(ctx.params["model"]) if from_command_line(ctx, "model") else kind
    _refuse_unused_options(ctx, kind)
    given = {k: plain(v) for k, v in ctx.params.items() if k not in NOT_SETTINGS and from_command_line(ctx, k)}
    config_fields = set(config_class(kind).field_names())
    changes: dict[str, Any] = {}
    for param, value in given.items():
        if param == "model":
            changes["kind"] = value
        elif param in config_fields:
            changes[param] = value
        elif param != "rnn_size" and param not in COMPONENT_OPTIONS:
            changes[SETTING_PARAMS.get(param, param)] = value
    for size in ("enc_size", "dec_size"):  # the LSTMs the kind has
        if "rnn_size" in given and size in config_fields:
            changes.setdefault(size, given["rnn_size"])
    for param, field in COMPONENT_OPTIONS.items():
        if _replaced(ctx, param.removesuffix("_option"), base):  # the preset's options were for its own component
            changes[field] = key_values(ctx.params[param])
        elif param in given:
            changes[field] = {**base.get(field, {}), **key_values(ctx.params[param])}
    return changes


def _replaced(ctx: typer.Context, kind: str, options: dict[str, Any]) -> bool:
    """True if the command line names a different `kind` component (reader, ...) than the preset's."""
    from drawcli import registry

    if not from_command_line(ctx, kind) or kind not in options:
        return False
    try:
        return registry.resolve(kind, ctx.params[kind]).name != registry.resolve(kind, options[kind]).name
    except DrawcliError:
        return True  # an unknown name: the error comes with the config, not here


def _refuse_unused_options(ctx: typer.Context, kind: str) -> None:
    """One line for an option given on the command line that a `kind` model has no use for."""
    from drawcli import kinds

    for param, why in kinds.get(kind).unused_options:  # options with defaults: only their presence tells
        if from_command_line(ctx, param):
            fail(f"{flag(param)} {why}", code=2)


def _refuse_unused(ctx: typer.Context, config: ModelConfig, settings: Any) -> None:
    """One line for a component option or setting given on the command line that this run would silently ignore."""
    for param in ("teacher_weight", "teacher_temperature"):
        if from_command_line(ctx, param) and not settings.teachers:
            fail(f"{flag(param)} shapes what the teachers teach: give --teacher RUN too", code=2)
    refuse_windowless_sizes(ctx, config)
    refuse_retired_options(config)


def _new_run(ctx: typer.Context, preset: str | None) -> tuple[ModelConfig, Any]:
    """Config and settings of a new run: presets.build of the preset with the command line's changes."""
    from drawcli import presets

    try:
        config, settings = presets.build(preset, **_changes(ctx, preset))
    except ConfigError as exc:
        fail(str(exc), code=2)
    _refuse_unused(ctx, config, settings)
    return config, settings


def _sample_writer(run: Any, settings: Any, run_kind: str, board: Any) -> Any:
    """The epoch-end hook: a GIF of samples (DRAW) and the TensorBoard pictures (`board`, rank 0's
    tensorboard.RunBoard or None) every `sample_every` epochs, and at a mid-epoch end."""
    from drawcli import kinds
    from drawcli.cli.draw import draw_samples

    def write(model: Any, state: Any) -> None:
        if not state.batch and state.epoch % settings.sample_every:
            return
        if draws:
            gif = run.sample_gif(state.epoch, state.step, mid_epoch=bool(state.batch))
            draw_samples(model, gif, None, n=settings.sample_count, seed=settings.seed, fps=8, scale=2, boxes=False)
        if board is not None:
            board.pictures(model, state.step)

    draws = kinds.get(run_kind).draws
    return write if settings.sample_every and (draws or board is not None) else None


@app.command(cls=PerKindHelp)
@handles_errors
def train(
    ctx: typer.Context,
    model: Annotated[ModelKind, typer.Option("--model", help="draw: the generative model; classifier: the attention classifier of section 4.1, trained on a labelled data set's grey levels.", rich_help_panel=ARCH)] = ModelKind(DrawConfig.kind),  # type: ignore[valid-type]
    reader: Annotated[str, typer.Option(help="Reader component (see `drawcli plugins`).", callback=component("reader"), rich_help_panel=ARCH)] = DrawConfig.reader,
    writer: Annotated[str, typer.Option(help="Writer component.", callback=component("writer"), rich_help_panel=ARCH)] = DrawConfig.writer,
    sampler: Annotated[str, typer.Option(help="Latent sampler component.", callback=component("sampler"), rich_help_panel=ARCH)] = DrawConfig.sampler,
    glimpses: Annotated[int, Positive(max=MAX_GLIMPSES, help="T, the number of glimpses (paper: 64).", rich_help_panel=ARCH)] = DrawConfig.glimpses,
    rnn_size: Annotated[int, Positive(max=MAX_HIDDEN, help="LSTM hidden size: DRAW's encoder and decoder, or the classifier's one LSTM (paper: 256).", rich_help_panel=ARCH)] = DrawConfig.enc_size,
    enc_size: Annotated[Optional[int], Positive(max=MAX_HIDDEN, help="Encoder LSTM size; overrides --rnn-size.", rich_help_panel=ARCH)] = None,
    dec_size: Annotated[Optional[int], Positive(max=MAX_HIDDEN, help="Decoder LSTM size; overrides --rnn-size.", rich_help_panel=ARCH)] = None,
    z_size: Annotated[int, Positive(max=MAX_HIDDEN, help="Latent size per glimpse (paper: 100).", rich_help_panel=ARCH)] = DrawConfig.z_size,
    read_size: Annotated[int, Positive(help="N of the read filterbank, N x N (paper: 2).", rich_help_panel=ARCH)] = DrawConfig.read_size,
    write_size: Annotated[int, Positive(help="N of the write filterbank, N x N (paper: 5).", rich_help_panel=ARCH)] = DrawConfig.write_size,
    canvas: Annotated[Canvas, typer.Option(help="c_0, where the canvas starts: zero (logit 0; the paper's) or learned (a logit per pixel, started at the training images' mean).", rich_help_panel=ARCH)] = Canvas(DrawConfig.canvas),  # type: ignore[valid-type]
    reader_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE option for the reader (VALUE parsed as JSON when it can be); repeatable.", rich_help_panel=ARCH)] = None,
    writer_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE option for the writer; repeatable.", rich_help_panel=ARCH)] = None,
    sampler_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE option for the sampler; repeatable.", rich_help_panel=ARCH)] = None,
    channels: Annotated[Optional[int], Positive(help="Image channels (1 or 3); default: the data set's.", rich_help_panel=ARCH)] = None,
    height: Annotated[Optional[int], Positive(max=MAX_IMAGE_SIDE, help="Image height; default: the data set's (28 for a folder).", rich_help_panel=ARCH)] = None,
    width: Annotated[Optional[int], Positive(max=MAX_IMAGE_SIDE, help="Image width; default: the data set's (28 for a folder).", rich_help_panel=ARCH)] = None,
    preset: Annotated[Optional[str], typer.Option(help="Start from a named setting (see `drawcli presets`); options given explicitly win (a --reader-option KEY=VALUE over the preset's value of KEY only). Not with --resume.", callback=_preset_option, rich_help_panel=ARCH)] = None,
    dataset: Annotated[str, typer.Option(help="Data set (see `drawcli plugins`).", callback=component("dataset"), rich_help_panel=DATA)] = TrainSettings.dataset,
    data_dir: Annotated[Optional[Path], typer.Option(resolve_path=True, help="Folder with the data (idx files, torchvision layout or images), recorded in the run as an absolute path. Without it: the cache, then a download.", rich_help_panel=DATA)] = None,
    binarize: Annotated[Optional[Binarize], typer.Option(help="stochastic: a fresh Bernoulli sample per batch; threshold: pixel > 0.5; fixed: a binarized data set's own bits. Default: fixed for a binarized data set, else stochastic.", rich_help_panel=DATA)] = None,  # type: ignore[valid-type]
    redraw: Annotated[bool, typer.Option("--redraw/--no-redraw", help="Classifiers only: compose a new training set every epoch, for data sets that compose their images (cluttered-mnist); the test set stays the same.", rich_help_panel=DATA)] = TrainSettings.redraw,
    epochs: Annotated[Optional[int], Positive(help="Epochs to train (default 1 when --steps is not given).", rich_help_panel=TRAINING)] = None,
    steps: Annotated[Optional[int], Positive(help="Optimizer steps to train; wins over --epochs.", rich_help_panel=TRAINING)] = None,
    batch_size: Annotated[int, Positive(help="Images per step.", rich_help_panel=TRAINING)] = TrainSettings.batch_size,
    lr: Annotated[float, typer.Option(callback=positive_float, help="Adam learning rate.", rich_help_panel=TRAINING)] = TrainSettings.lr,
    lr_schedule: Annotated[LrSchedule, typer.Option(help="constant: --lr throughout; cosine: from --lr down to 0 along half a cosine over the run's length (--epochs or --steps).", rich_help_panel=TRAINING)] = LrSchedule(TrainSettings.lr_schedule),  # type: ignore[valid-type]
    window_lr: Annotated[float, typer.Option(metavar="S", help="The layers that place attention windows (the filterbank's window layer, the stn's transform) learn at S x --lr, on the same schedule. Refused for models without such a layer.", rich_help_panel=TRAINING)] = TrainSettings.window_lr,
    clip: Annotated[float, typer.Option(callback=positive_float, help="Clip the gradient's global norm to this.", rich_help_panel=TRAINING)] = TrainSettings.clip,
    beta1: Annotated[float, typer.Option(min=0.0, max=0.9999, help="Adam's beta1 (momentum).", rich_help_panel=TRAINING)] = TrainSettings.beta1,
    beta2: Annotated[float, typer.Option(min=0.0, max=0.99999, help="Adam's beta2: the decay of its running mean of squared gradients.", rich_help_panel=TRAINING)] = TrainSettings.beta2,
    kl_warmup: Annotated[int, typer.Option(min=0, help="Steps over which the KL weight of the training objective rises to 1 (the reported bound always has full KL).", rich_help_panel=TRAINING)] = TrainSettings.kl_warmup,
    ema: Annotated[float, typer.Option(metavar="DECAY", help="Keep an exponential moving average of the weights with this decay (0.9998: about the last 5,000 steps); the checkpoint holds the average, and each epoch also reports the raw weights' held-out metrics (raw_*). 0: no average.", rich_help_panel=TRAINING)] = TrainSettings.ema,
    teacher: Annotated[Optional[list[Path]], typer.Option("--teacher", metavar="RUN", exists=True, resolve_path=True, help="Classifiers only: also learn from this trained classifier of the same classes (knowledge distillation); repeat for several, whose probabilities are averaged. The objective becomes (1 - W) x the labels' cross-entropy + W x T^2 x the cross-entropy with the teachers' probabilities at temperature T.", rich_help_panel=TRAINING)] = None,
    teacher_weight: Annotated[float, typer.Option(metavar="W", help="With --teacher: the teachers' share W of the objective, in (0, 1].", rich_help_panel=TRAINING)] = TrainSettings.teacher_weight,
    teacher_temperature: Annotated[float, typer.Option(metavar="T", help="With --teacher: the softmax temperature T of teachers and student in their term.", rich_help_panel=TRAINING)] = TrainSettings.teacher_temperature,
    locate_loss: Annotated[float, typer.Option(metavar="W", help="Classifiers on data sets that record where each object is (cluttered-mnist): add to the objective W x the mean Huber distance (in units of 10 pixels) from each read window's centre, glimpses 2 to T, to the object's. Not in the paper. 0: off.", rich_help_panel=TRAINING)] = TrainSettings.locate_loss,
    seed: Annotated[int, typer.Option(help="Seed for weights, data order, binarization and noise.", rich_help_panel=TRAINING, **SEED_RANGE)] = TrainSettings.seed,
    device: Annotated[Device, typer.Option(help="auto takes CUDA when present.", rich_help_panel=TRAINING)] = Device(TrainSettings.device),  # type: ignore[valid-type]
    threads: Annotated[Optional[int], Positive(help="CPU threads; default half the cores (robust when the machine is shared).", rich_help_panel=TRAINING)] = None,
    amp: Annotated[Amp, typer.Option(help="bf16: the LSTM matmuls of training in bfloat16 (the classifier: its forward under autocast, and its objective's cross-entropy); weights, Adam and every reported number stay float32. Fast only where bf16 matmuls are native (CUDA, or a CPU with AMX or AVX512-BF16).", rich_help_panel=TRAINING)] = Amp(TrainSettings.amp),  # type: ignore[valid-type]
    compile_model: Annotated[Compile, typer.Option("--compile", help="torch.compile DRAW's glimpse or the classifier's glimpse loop, once per batch shape. auto: when the run repays it (steps x batch x glimpses of 1 million or more; the classifier: up to 16 glimpses) and a compiler is there. A compiler failure warns and trains on eagerly.", rich_help_panel=TRAINING)] = Compile(TrainSettings.compile),  # type: ignore[valid-type]
    compile_mode: Annotated[CompileMode, typer.Option(help="torch.compile mode; reduce-overhead (implies --compile on) replays each compiled unit as a CUDA graph on a GPU, after recording one per glimpse position (a slow start); on the CPU it is the same as default.", rich_help_panel=TRAINING)] = CompileMode(TrainSettings.compile_mode),  # type: ignore[valid-type]
    cuda_graph: Annotated[CudaGraph, typer.Option(help="On CUDA, capture the whole training step as one CUDA graph per batch shape and replay it. auto: for DRAW in one process, unless --compile-mode reduce-overhead; on: the same, saying why when it cannot; off: never. A failed capture warns and trains on without it.", rich_help_panel=TRAINING)] = CudaGraph(TrainSettings.cuda_graph),  # type: ignore[valid-type]
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory where it stopped; options that define the run must match it.", rich_help_panel=TRAINING)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default runs/<date-time>).", rich_help_panel=OUTPUT)] = None,
    sample_every: Annotated[int, typer.Option(min=0, help="Write a sample GIF (DRAW) every N epochs, and TensorBoard's pictures when tensorboard is installed; 0 turns them off.", rich_help_panel=OUTPUT)] = TrainSettings.sample_every,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar: a few plain lines, for logs.", rich_help_panel=OUTPUT)] = False,
) -> None:
    """Train a DRAW model or a classifier and save a safetensors checkpoint in a run directory.

    This help lists DRAW's options; `drawcli train --model classifier --help` lists the attention classifier's.
    """
    _in_process_group(ctx, device.value, resume, preset, out_dir, quiet)


def _in_process_group(ctx: typer.Context, device: str, resume: Path | None, preset: str | None, out_dir: Path | None,
                      quiet: bool) -> None:  # fmt: skip
    """Join the torchrun job when there is one (else a single process), then set up and train the run."""
    from drawcli import distributed

    with distributed.process_group(device) as (dist_ctx, dist_device):
        config, settings, run_dir = _run_to_train(ctx, resume, preset, out_dir, dist_ctx)
        _train(ctx, config, settings, run_dir, resume is not None, quiet, dist_ctx, dist_device)


def _run_to_train(ctx: typer.Context, resume: Path | None, preset: str | None, out_dir: Path | None,
                  dist_ctx: Any) -> tuple[ModelConfig, Any, Path]:  # fmt: skip
    """The config, settings and folder of the run: the resumed run's, or a new one's."""
    from drawcli.cli.resume import resumed

    if resume is not None:
        if out_dir is not None:
            fail(f"--resume continues {resume} in place; --out names a new run's folder (drop one of them)", code=2)
        return (*resumed(ctx, resume), resume)
    return (*_new_run(ctx, preset), _new_run_dir(out_dir, dist_ctx))


def _new_run_dir(out_dir: Path | None, dist_ctx: Any) -> Path:
    from drawcli import distributed, rundir

    path = Path(distributed.broadcast_text(str(out_dir or rundir.new_run_path()), dist_ctx))  # rank 0's clock names it
    run = rundir.RunDir(path)
    if run.has_run():
        fail(f"{path} already holds a run; continue it with --resume {path} or pick another --out", code=2)
    if run.holds_other_files():
        fail(f"{path.absolute()} holds files a run does not write; --out names a folder for the run alone: pick a new or empty one", code=2)
    return path


def _train(ctx: typer.Context, config: ModelConfig, settings: Any, run_dir: Path, resuming: bool, quiet: bool,
           dist_ctx: Any, dist_device: Any) -> None:  # fmt: skip
    """Run training with the reporter, and turn its stops into the CLI's exits."""
    from drawcli import distributed, tensorboard, training
    from drawcli.progress import SilentReporter, make_reporter
    from drawcli.rundir import RunDir
    from drawcli.training.loop import Interrupted

    run = RunDir(run_dir)
    claim = run.claim()  # the folders and files a run that fails before its first save takes away again
    reporter = make_reporter(err, quiet) if dist_ctx.is_main else SilentReporter(err)
    board = tensorboard.RunBoard(run, settings) if dist_ctx.is_main else None  # writes nothing without tensorboard
    try:
        run.prepare()  # fail now, not after the first epoch
        summary = training.train(config, settings, run_dir, reporter, resume=resuming, on_epoch_end=_sample_writer(run, settings, config.kind, board),
                                 ctx=dist_ctx, device=dist_device)  # fmt: skip
        if board is not None:
            board.finish(summary)
    except Interrupted as exc:
        reporter.close()
        # Every rank stopped after the same step (the stop request is all-reduced), so all of them
        # meet at close's barrier, which keeps a rank from aborting at exit (distributed.close).
        distributed.close(dist_ctx)
        if not dist_ctx.is_main:  # rank 0 tells the user how to resume
            raise typer.Exit(130) from None
        fail(str(exc), code=130)
    except KeyboardInterrupt:  # a second Ctrl-C: StopFlag gives up waiting for the step to end
        reporter.close()
        if debugging(ctx):
            raise
        if run.has_run():
            fail(f"stopped at once by a second interrupt; the last saved checkpoint in {run_dir} is intact; "
                 f"resume with: drawcli train --resume {run_dir}", code=130)  # fmt: skip
        fail(f"interrupted before the first checkpoint was saved; nothing of the run is kept in {run_dir}", code=130)
    finally:
        reporter.close()
        tensorboard.close(run.tensorboard)
        run.discard_unsaved(claim)
