"""The training loop: Adam on the negative variational bound, with progress, checkpoints and resume.

Everything that makes a run repeatable lives in the run directory: `run.json` (settings),
`checkpoint.safetensors` (weights and config), `resume.safetensors` (optimizer, RNG, position)
and `metrics.jsonl` (one JSON object per line). Data order is derived from (seed, epoch), so a
resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from drawcli import checkpoint, data, distributed
from drawcli import evaluate as evaluation
from drawcli.config import DrawConfig
from drawcli.atomic import atomic_write_bytes
from drawcli.errors import CheckpointError, DrawcliError
from drawcli.metrics import MetricsLog
from drawcli.model import COMPILE_MODES, DRAW
from drawcli.progress import Reporter

EVAL_BATCH_SIZE = 500
METRICS_EVERY = 50  # steps between training-metric lines in metrics.jsonl
MAX_NONFINITE = 3  # non-finite steps in a row (each skipped) before training stops
# Steps between host reads of the metrics, by device type: on CUDA each read waits for the GPU, so
# steps are queued and read in groups; reading a CPU tensor costs nothing, so there it is every step.
SYNC_EVERY = {"cuda": 25}
AMP_MODES = ("off", "bf16")


@dataclass
class TrainSettings:
    """How to train (everything that is not the architecture)."""

    dataset: str = "mnist"
    data_dir: str | None = None
    binarize: str = "stochastic"
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    clip: float = 10.0
    beta1: float = 0.9
    kl_warmup: int = 0
    amp: str = "off"  # "bf16": autocast the forward to bfloat16; the loss, KL and canvas stay float32
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    compile: bool = False
    compile_mode: str = "default"  # or "reduce-overhead": CUDA graphs of the compiled glimpse on a GPU
    sample_every: int = 1
    sample_count: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compile = self.compile or self.compile_mode != "default"  # a compile mode implies --compile

    def total_steps(self, steps_per_epoch: int) -> int:
        """--steps wins when given; else --epochs (1 when neither is given)."""
        if self.steps is not None:
            return self.steps
        return (self.epochs or 1) * steps_per_epoch


class Interrupted(DrawcliError):
    """Training stopped by SIGINT/SIGTERM after saving a resumable checkpoint."""


class Diverged(DrawcliError):
    """The loss or gradient stayed non-finite; training stopped without saving over the last good checkpoint."""


def default_threads() -> int:
    """Half the usable cores, at least 1 and at most 8.

    DRAW's matmuls are small (64 x 520 x 1024): extra threads buy little, and a thread count
    equal to the core count collapses when another process holds a core (OpenMP threads spin
    at every barrier waiting for the one that was descheduled).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores // 2))


def pick_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DrawcliError("--device cuda was asked for, but no CUDA device is available here")
    return torch.device(name)


def make_optimizer(model: torch.nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Adam:
    """Adam, fused (one kernel for all parameters) on CPU and CUDA, where it can also skip a step on-device."""
    options = {"lr": settings.lr, "betas": (settings.beta1, 0.999)}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.Adam(model.parameters(), **options, fused=True)
        except RuntimeError:  # a parameter dtype or device without a fused kernel
            pass
    return torch.optim.Adam(model.parameters(), **options)


def optimizer_step(optimizer: torch.optim.Adam, finite: torch.Tensor) -> None:
    """Apply the step only if `finite` (a 0-dim bool tensor); fused Adam decides on the device, without a sync."""
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()  # read by fused Adam: skips the update and the step count
        optimizer.step()
    elif bool(finite):
        optimizer.step()


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`, a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def held_out_bound(model: DRAW, images: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Mean per-image bound on binarized images (N, C, H, W): {'bound', 'recon', 'kl'} in nats."""
    summary = evaluation.summarize(evaluation.per_image(model, images, device, EVAL_BATCH_SIZE))
    return {key: summary[key] for key in ("bound", "recon", "kl")}


def kl_annealed(out: Any, step: int, warmup: int) -> torch.Tensor:
    """Per image recon + beta KL, beta rising linearly from 1/warmup to 1 over `warmup` steps.

    Only the gradient sees beta < 1; the loss that is logged and evaluated is the true bound.
    """
    beta = (step + 1) / warmup
    return out.recon + beta * out.kl.sum(dim=1)


class StopFlag:
    """SIGINT/SIGTERM handler: the first signal asks the loop to stop after this step; a second exits at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class RunState:
    """Where the loop is: saved in resume.safetensors."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within `epoch`
    wall_time: float = 0.0
    last_test: dict[str, float] | None = None


def _rng_state(bin_gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "binarize": bin_gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict[str, torch.Tensor], bin_gen: torch.Generator, device: torch.device) -> bool:
    """Restore the RNG streams; False when the run moved between CPU and CUDA, whose binarization
    generators differ: that stream then restarts from a seed derived from the saved state."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    saved = state["binarize"]
    if saved.numel() != bin_gen.get_state().numel():
        bin_gen.manual_seed(int(saved.to(torch.int64).sum()))
        return False
    bin_gen.set_state(saved)
    return True


def batches(n: int, batch_size: int, seed: int, epoch: int, start: int,
            device: torch.device | None = None) -> Iterator[tuple[int, torch.Tensor]]:  # fmt: skip
    """(batch index, image indices on `device`) of one epoch, from batch `start`; the last batch may be short."""
    order = epoch_order(n, seed, epoch).to(device or "cpu")  # one copy per epoch, none per step
    for b in range(start, math.ceil(n / batch_size)):
        yield b, order[b * batch_size : (b + 1) * batch_size]


def train(
    config: DrawConfig,
    settings: TrainSettings,
    run_dir: Path,
    reporter: Reporter,
    resume: bool = False,
    on_epoch_end: Callable[[DRAW, RunState], None] | None = None,
    dist_ctx: distributed.Dist | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Train a DRAW model into run_dir; returns the training summary stored in the checkpoint.

    `on_epoch_end(model, state)` runs after each epoch and at the end of a run that stops
    mid-epoch (state.batch > 0 then), with the RNG forked so it cannot change training.
    Under torchrun pass the job's `dist_ctx` and `device`: only rank 0 writes anything.
    """
    ctx = dist_ctx or distributed.Dist()
    if settings.amp not in AMP_MODES:
        raise DrawcliError(f"unknown --amp {settings.amp!r}; expected one of {', '.join(AMP_MODES)}")
    if settings.compile_mode not in COMPILE_MODES:
        raise DrawcliError(f"unknown --compile-mode {settings.compile_mode!r}; expected one of {', '.join(COMPILE_MODES)}")
    device = device or pick_device(settings.device)
    torch.set_num_threads(settings.threads or default_threads())
    run_dir.mkdir(parents=True, exist_ok=True)

    dataset = data.open_dataset(settings.dataset)
    data_dir = Path(settings.data_dir) if settings.data_dir else None
    train_images = data.load_images(dataset, "train", data_dir, config.image_shape)
    test_set = data.binarize_fixed(data.load_images(dataset, "test", data_dir, config.image_shape), settings.binarize)

    torch.manual_seed(settings.seed)  # the same on every rank: identical weights, noise, binarization
    model = DRAW(config).to(device)
    if settings.compile:
        model.compile_glimpses(settings.compile_mode)
    net = distributed.wrap(model, ctx, device)
    optimizer = make_optimizer(model, settings, device)
    if device.type == "cuda":  # the whole training set on the GPU, binarized there: no copies per step
        train_images = train_images.to(device)
    bin_gen = torch.Generator(device=train_images.device).manual_seed(settings.seed + 1)
    sync_every = SYNC_EVERY.get(device.type, 1)
    stop_flag = torch.zeros((), device=device)
    state = RunState()
    if resume:
        weights, info = checkpoint.load_model(run_dir / checkpoint.CHECKPOINT_NAME, device)
        model.load_state_dict(weights.state_dict())
        rng, saved = checkpoint.load_resume(run_dir / checkpoint.RESUME_NAME, optimizer)
        try:
            exact = _restore_rng(rng, bin_gen, device)
            state = RunState(**saved)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{run_dir / checkpoint.RESUME_NAME} holds no usable loop state: {exc}") from None
        if not exact:
            reporter.warn(f"{run_dir} was saved on another kind of device: training continues, but with a new "
                          "binarization stream, so not bit for bit as an uninterrupted run")  # fmt: skip
        if info.training.get("steps") != state.step:  # a save cut short between the two files
            raise CheckpointError(
                f"{run_dir}: the checkpoint (step {info.training.get('steps')}) and the resume state "
                f"(step {state.step}) disagree, so the run cannot continue exactly"
            )
    elif ctx.is_main:
        atomic_write_bytes(
            run_dir / "run.json",
            json.dumps({"config": config.to_dict(), "settings": asdict(settings)}, indent=2, sort_keys=True).encode(),
        )

    n = len(train_images)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = settings.total_steps(steps_per_epoch)
    log = MetricsLog(run_dir).write if ctx.is_main else (lambda record: None)

    def summary() -> dict[str, Any]:
        return {
            "steps": state.step,
            "epochs": state.step / steps_per_epoch,
            "wall_time_s": round(state.wall_time, 3),
            "last_test": state.last_test,
            "dataset": settings.dataset,
            "data_dir": settings.data_dir,
            "binarize": settings.binarize,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "kl_warmup": settings.kl_warmup,
            "seed": settings.seed,
            "device": device.type,
            "world_size": ctx.world_size,
        }

    saved_step = state.step if resume else None
    nonfinite = 0  # non-finite steps in a row

    def save() -> None:
        nonlocal saved_step
        if ctx.is_main:
            checkpoint.save_checkpoint(run_dir / checkpoint.CHECKPOINT_NAME, model, summary())
            checkpoint.save_resume(run_dir / checkpoint.RESUME_NAME, optimizer, _rng_state(bin_gen, device), asdict(state))
        saved_step = state.step

    def skip_nonfinite(step: int, loss_value: float, grad_norm: float) -> None:
        if nonfinite < MAX_NONFINITE:
            reporter.warn(f"step {step}: loss {loss_value}, gradient norm {grad_norm}; the step was not applied")
            return
        kept = (f"the last good checkpoint (step {saved_step}) is unchanged in {run_dir}" if saved_step is not None
                else "no checkpoint had been saved yet")  # fmt: skip
        raise Diverged(
            f"training stopped at step {step}: the loss or gradient was not finite for {MAX_NONFINITE} steps "
            f"in a row (steps {step - MAX_NONFINITE + 1}-{step}, none applied); {kept}; "
            f"try a lower --lr or a smaller --clip"
        )

    def interrupted() -> Interrupted:
        save()
        reporter.interrupted(state.step, run_dir)
        return Interrupted(f"interrupted at step {state.step}; resume with: drawcli train --resume {run_dir}")

    reporter.start(total=total, done=state.step, device=str(device), threads=torch.get_num_threads(), params=sum(p.numel() for p in model.parameters()))
    model.train()
    compile_reported = False
    with StopFlag() as stop:
        while state.step < total:
            epoch_sums = [0.0, 0.0, 0.0]  # loss, recon, KL summed over the epoch's applied steps
            epoch_images = 0
            stopping = False
            reporter.epoch_start(state.epoch, steps_in_epoch=min(steps_per_epoch - state.batch, total - state.step))
            pending: list[tuple[int, int, torch.Tensor]] = []  # (step, images, metrics) not yet read on the host
            for b, idx in batches(n, settings.batch_size, settings.seed, state.epoch, state.batch, train_images.device):
                tick = time.perf_counter()
                model.start_step()
                # The global batch, its binarization and its noise, identical on every rank; then this rank's shard.
                x = data.binarize(train_images[idx], settings.binarize, bin_gen)
                noise = model.noise(len(idx), device)
                x = distributed.shard(x, ctx).to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.amp == "bf16"):
                    out = net(x, noise=distributed.shard(noise, ctx, dim=1))
                per_image = out.loss if state.step >= settings.kl_warmup else kl_annealed(out, state.step, settings.kl_warmup)
                optimizer.zero_grad(set_to_none=True)
                (per_image.sum() * distributed.objective_scale(len(idx), ctx)).backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
                # One small reduction per step carries the metrics, every rank's stop request and the
                # objective and gradient norm: a NaN or inf on any rank survives the sum, so all ranks skip together.
                if stop.signal is not None:
                    stop_flag.fill_(1.0)  # a device-side write: making a new tensor from the host would sync
                sums = torch.stack([out.loss.detach().sum(), out.recon.detach().sum(), out.kl.detach().sum(), stop_flag,
                                    per_image.detach().sum(), grad_norm.to(device)]).float()  # fmt: skip
                sums = distributed.all_sum(sums, ctx)
                optimizer_step(optimizer, torch.isfinite(sums).all())
                seconds = time.perf_counter() - tick
                state.wall_time += seconds
                if settings.compile and not compile_reported:
                    compile_reported = True
                    reporter.warn(f"first step took {seconds:.1f} s, most of it compiling the glimpse")
                    log({"event": "compile", "step": state.step + 1, "seconds": round(seconds, 3)})
                state.step += 1
                state.batch = b + 1
                pending.append((state.step, len(idx), sums))
                if len(pending) < sync_every and state.step < total and state.batch < steps_per_epoch:
                    continue  # on CUDA, the host reads the metrics every few steps, not after each one
                tick = time.perf_counter()
                rows = torch.stack([row for _, _, row in pending]).double().cpu().tolist()
                state.wall_time += time.perf_counter() - tick  # on CUDA, the wait for the queued steps
                for (step, images, _), row in zip(pending, rows):
                    stopping = stopping or row[3] > 0
                    finite = all(math.isfinite(v) for v in row)
                    if finite:
                        nonfinite = 0
                        epoch_sums = [acc + v for acc, v in zip(epoch_sums, row[:3])]
                        epoch_images += images
                    else:
                        nonfinite += 1
                        skip_nonfinite(step, row[0] / images, row[5] / ctx.world_size)
                    means = [v / images for v in row[:3]]
                    reporter.step(step, loss=means[0], recon=means[1], kl=means[2], images=images)
                    if finite and step % METRICS_EVERY == 0:
                        log({"event": "train", "step": step, "epoch": state.epoch, "loss": means[0], "recon": means[1],
                             "kl": means[2], "grad_norm": row[5] / ctx.world_size,
                             "wall_time_s": round(state.wall_time, 3)})  # fmt: skip
                pending.clear()
                if stopping or state.step >= total:
                    break
            epoch_done = state.batch >= steps_per_epoch
            if stopping and not epoch_done:
                raise interrupted()
            train_means = [acc / max(epoch_images, 1) for acc in epoch_sums]
            if ctx.is_main:
                state.last_test = held_out_bound(model, test_set, device)
            if epoch_done:
                state.epoch += 1
                state.batch = 0
            if ctx.is_main:
                record = {"event": "epoch", "step": state.step, "epochs": round(state.step / steps_per_epoch, 4),
                          "train_loss": train_means[0], "train_recon": train_means[1], "train_kl": train_means[2],
                          "test_bound": state.last_test["bound"], "test_recon": state.last_test["recon"],
                          "test_kl": state.last_test["kl"], "wall_time_s": round(state.wall_time, 3)}  # fmt: skip
                log(record)
                save()
                reporter.epoch_end(record)
                if on_epoch_end is not None and (epoch_done or state.step >= total):
                    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                        on_epoch_end(model, state)
            if stopping:
                raise interrupted()
    distributed.check_identical(model, ctx)
    final = summary()
    reporter.finish(final, run_dir)
    return final
