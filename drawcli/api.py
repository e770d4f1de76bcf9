"""drawcli from Python: load a run, sample, reconstruct, score, classify and train.

The functions the command line runs, with tensors in and out. Each keeps the caller's global RNG
as it was (the draws come from `seed`), and returns tensors on the model's device.

    model = drawcli.load("runs/quickstart")        # model.config.kind: "draw" or "classifier"
    drawn = drawcli.sample(model, n=16, seed=0)     # drawn.images (16, C, H, W), drawn.canvases (T, 16, C, H, W)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from drawcli import kinds
from drawcli.classifier import ClassifierOutput
from drawcli.errors import ConfigError, DrawcliError
from drawcli.model import DrawOutput, Generation


@dataclass
class Bounds:
    """Per-image scores in nats: the variational bound and, with samples K > 0, the importance-weighted bound."""

    bound: torch.Tensor  # (N,) recon + sum_t KL_t
    recon: torch.Tensor  # (N,)
    kl: torch.Tensor  # (N, T) KL of each glimpse
    iw_bound: torch.Tensor | None  # (N,) with K posterior samples; None for K = 0


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model in a run folder or checkpoint file, in eval mode on `device` ("auto": CUDA when present).

    `model.config` is its kind's config (DrawConfig, ClassifierConfig); `model.config.kind` says what it is ("draw" or "classifier").
    """
    from drawcli import checkpoint
    from drawcli.devices import pick_device

    try:
        target = pick_device(device) if isinstance(device, str) and device in ("auto", "cpu", "cuda") else torch.device(device)
    except RuntimeError as exc:  # a malformed device string
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for, but no CUDA device is available here")
    model, _ = checkpoint.load_model(Path(path), target)
    return model.eval()


def _require(model: nn.Module, action: str, ability: str) -> None:
    """Refuse `action` on a model whose kind lacks `ability` ("draws" or "classifies", kinds.ModelKind)."""
    kind = kinds.of(model)
    if not getattr(kind, ability):
        able = [k.name for k in kinds.KINDS.values() if getattr(k, ability)]
        raise ConfigError(f"a {kind.name} model cannot {action}; that needs a {' or '.join(able)} model")


def _images(model: nn.Module, images: torch.Tensor, binary: bool) -> torch.Tensor:
    """Check (N, C, H, W) against the model and move it to the model's device as float32."""
    shape = tuple(model.config.image_shape)  # type: ignore[union-attr]
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != shape:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"images must be a tensor (N, {', '.join(map(str, shape))}); got {got}")
    if len(images) == 0:
        raise ConfigError("images is an empty batch")
    # uint8 grey levels are 0-255; uint8 bits (every pixel 0 or 1) are taken as they are.
    grey_levels = images.dtype == torch.uint8 and not (binary and bool((images <= 1).all()))
    x = images.float() / 255.0 if grey_levels else images.float()
    if binary and not bool(((x == 0) | (x == 1)).all()):
        raise ConfigError("DRAW scores binary images: every pixel 0 or 1 (binarize grey levels first, e.g. torch.bernoulli)")
    if not binary and not bool(((x >= 0) & (x <= 1)).all()):
        raise ConfigError("the classifier reads grey levels in [0, 1] (or uint8 0-255)")
    return x.to(next(model.parameters()).device)


def _at_least(**values: tuple[int, int]) -> None:
    """Refuse a count below its least value, as the command line's option ranges do: name=(value, least)."""
    for name, (value, least) in values.items():
        if not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an integer of at least {least}, got {value!r}")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fork the RNG of the CPU (and of every GPU in use) and seed it: the caller's stream is untouched."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def sample(model: nn.Module, n: int = 64, seed: int = 0) -> Generation:
    """Draw n images from the prior: `.images` (n, C, H, W) probabilities after the last glimpse,
    `.canvases` (T, n, C, H, W) after each glimpse, `.write_windows` (attention writers)."""
    _require(model, "sample", "draws")
    _at_least(n=(n, 1))
    with _seeded(seed):
        return model.generate(n)  # type: ignore[operator]


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, seed: int = 0) -> DrawOutput:
    """Rebuild binary images (N, C, H, W) glimpse by glimpse: `.canvases` (T, N, C, H, W), `.read_windows`
    and `.write_windows` (T windows each, attention components), `.recon` (N,) and `.kl` (N, T) in nats."""
    _require(model, "reconstruct", "draws")
    x = _images(model, images, binary=True)
    with _seeded(seed):
        return model(x, record=True)


def bound(model: nn.Module, images: torch.Tensor, samples: int = 0, batch_size: int = 250) -> Bounds:
    """Per-image variational bound of binary images (N, C, H, W) and, with samples = K > 0, the
    importance-weighted bound over K posterior draws; with the fixed noise `drawcli evaluate` uses."""
    from drawcli.bounds import per_image

    _require(model, "bound", "draws")
    _at_least(samples=(samples, 0), batch_size=(batch_size, 1))
    x = _images(model, images, binary=True)
    result = per_image(model, x, x.device, batch_size, samples)  # type: ignore[arg-type]
    return Bounds(bound=result.bound.float(), recon=result.recon.float(), kl=result.kl.float(),
                  iw_bound=None if result.iw is None else result.iw.float())  # fmt: skip


def evaluate(run: str | Path, split: str = "test", samples: int = 0, dataset: str | None = None,
             data_dir: str | Path | None = None, limit: int | None = None, device: str | torch.device = "cpu",
             batch_size: int = 250) -> dict[str, Any]:  # fmt: skip
    """Score a run on a whole split, as `drawcli evaluate RUN --json` does: a DRAW model's mean bound
    (and with samples = K, the importance-weighted bound) in nats with standard errors and the KL per
    glimpse; a classifier's test error in % with its standard error, per class and as a confusion matrix.
    The data set and its folder default to the ones the run trained on."""
    from drawcli import checkpoint
    from drawcli.heldout import bound_report, classifier_report, finite

    _at_least(samples=(samples, 0), batch_size=(batch_size, 1), limit=(1 if limit is None else limit, 1))
    model = load(run, device)
    info = checkpoint.read_info(Path(run))
    folder = None if data_dir is None else Path(data_dir)
    target = next(model.parameters()).device
    if kinds.of(model).classifies:
        if samples:
            raise ConfigError("samples is for DRAW models: the importance-weighted bound is DRAW's")
        return finite(classifier_report([(model, info)], target, dataset, folder, split, batch_size, limit, [(0, 0)]))
    return finite(bound_report(model, info, target, dataset, folder, split, None, batch_size, samples, limit))


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor) -> ClassifierOutput:
    """A classifier's reading of grey images (N, C, H, W), floats in [0, 1] or uint8: `.logits` (N, classes)
    and `.read_windows` (T windows, readers with windows); `.logits.argmax(1)` is the predicted class."""
    _require(model, "classify", "classifies")
    return model(_images(model, images, binary=False), record=True)


def train(preset: str | None = None, out: str | Path | None = None, *, progress: bool = False, **options: Any) -> Path:
    """Train exactly as `drawcli train` does, through the same command; returns the run folder.

    `options` are `drawcli train`'s flags with underscores for dashes (`glimpses=10, rnn_size=128,
    steps=100, data_dir="data/mnist", reader_option=["init=cover"], redraw=True, compile="off"`); a
    None is left out. `resume="runs/x"` continues a run. A mistake raises DrawcliError with the command
    line's message. Torch's thread count and the global random stream are as they were afterwards.
    """
    from drawcli.presets import command_words
    from drawcli.rundir import new_run_path

    for key in ("quiet", "help", "out_dir", "preset"):
        if key in options:
            raise ConfigError(f"{key} is not an option of drawcli.train: progress=True shows the progress bar, "
                              "out names the run's folder, preset is the first argument")  # fmt: skip
    options = {key: value for key, value in options.items() if value is not None}

    if "resume" in options:
        if out is not None:
            raise ConfigError("resume continues a run in its own folder; out names a new run's folder (drop one)")
        run = Path(options["resume"])
    else:
        run = Path(out) if out is not None else new_run_path()
        options = {"out": run, **options}
    if preset is not None:
        options = {"preset": preset, **options}
    words = ["train", *command_words(options), *([] if progress else ["--quiet"])]
    threads = torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            _run_command(words)
    finally:
        torch.set_num_threads(threads)
    return run


def _run_command(words: list[str]) -> None:
    """Run `drawcli WORDS...` in this process; a refusal or usage error becomes a DrawcliError."""
    import typer.main

    from drawcli.cli import app
    from drawcli.cli.app import Failed

    command = typer.main.get_command(app)
    try:
        with command.make_context("drawcli", list(words)) as ctx:
            command.invoke(ctx)
    except Failed as exc:
        raise DrawcliError(exc.message) from None
    except Exception as exc:  # click's usage errors: an unknown option, a value out of range
        message = getattr(exc, "format_message", None)
        if message is None:
            raise
        raise ConfigError(message()) from None
