"""The training loop: Adam on a model family's objective, with progress, checkpoints, resume and ranks.

It knows nothing of DRAW: steps, epochs, the metrics log, the one-commit save, signals,
non-finite steps, DDP and when to read the device are its whole job. Data order is a function
of (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from typing import Any, Callable

import torch
from torch import nn

from drawcli import checkpoint, distributed, resume, rundir
from drawcli.errors import CheckpointError, DrawcliError
from drawcli.metrics import MetricsLog
from drawcli.progress import Reporter
from drawcli.training.averaging import WeightAverage, describe_held_out, held_out
from drawcli.training.execution import Execution, bf16_warning
from drawcli.training.family import ModelFamily
from drawcli.training.graphed import Steps
from drawcli.training.settings import TrainSettings
from drawcli.training.signals import StopFlag
from drawcli.training.state import RunState, batches, restore_rng, rng_state
from drawcli.training.step import StepOutput, make_optimizer, set_rate

METRICS_EVERY = 50  # steps between training-metric lines in metrics.jsonl
MAX_NONFINITE = 3  # non-finite steps in a row (each skipped) before training stops
# Steps between host reads of the metrics, by device type: on CUDA each read waits for the GPU, so
# steps are queued and read in groups; reading a CPU tensor costs nothing, so there it is every step.
SYNC_EVERY = {"cuda": 25}

EpochEnd = Callable[[nn.Module, RunState], None]


class Interrupted(DrawcliError):
    """Training stopped by SIGINT/SIGTERM after saving a resumable checkpoint."""


class Diverged(DrawcliError):
    """The loss or gradient stayed non-finite; training stopped without saving over the last good checkpoint."""


class Trainer:
    """Trains one family's model into a run folder; `fit` runs it to the end or to a signal.

    `on_epoch_end(model, state)` runs after each epoch and at the end of a run that stops
    mid-epoch (state.batch > 0 then), with the RNG forked so it cannot change training.
    Under torchrun pass the job's `ctx`: only rank 0 writes anything.
    """

    def __init__(self, family: ModelFamily, settings: TrainSettings, run: rundir.RunDir, reporter: Reporter,
                 device: torch.device, ctx: distributed.Dist | None = None,
                 on_epoch_end: EpochEnd | None = None) -> None:  # fmt: skip
        self.family, self.settings, self.run, self.reporter = family, settings, run, reporter
        self.device, self.ctx = device, ctx or distributed.Dist()
        self.on_epoch_end = on_epoch_end
        self.state = RunState()
        self.saved_step: int | None = None  # the step of the last save, None before the first
        self.nonfinite = 0  # non-finite steps in a row
        self.compile_planned = family.execution().compiled
        self.reported: Execution | None = None  # the execution last reported, once a compiled run has stepped
        self.steps_per_epoch = settings.steps_per_epoch(family.train_size)
        self.total = settings.total_steps(self.steps_per_epoch)
        self.log: Callable[[dict[str, Any]], None] = lambda record: None  # rank 0's metrics log, opened by fit

    def _build(self) -> None:
        torch.manual_seed(self.settings.seed)  # the same on every rank: identical weights, noise, binarization
        self.model = self.family.build()
        self.net = distributed.wrap(self.model, self.ctx, self.device)
        self.optimizer = make_optimizer(self.model, self.settings.lr, self.settings.beta1, self.device, self.settings.beta2,
                                        self.settings.window_lr)
        self.average = WeightAverage(self.model, self.settings.ema) if self.settings.ema else None
        self.family.prepare(self.model)
        self.stop_flag = torch.zeros((), device=self.device)
        self.steps = Steps(self.family, self.settings, self.model, self.net, self.optimizer, self.device, self.ctx, self.reporter.warn)

    def _resume(self) -> None:
        """Load the last save: weights, optimizer, RNG streams and position."""
        weights, info = checkpoint.load_model(self.run.checkpoint, self.device)
        self.model.load_state_dict(weights.state_dict())
        path = self.run.resume_file()
        if self.average is not None:  # the checkpoint holds the average, the resume file the raw weights
            self.average.load(weights.state_dict())
            raw = resume.weights(path)
            if not raw:
                raise CheckpointError(f"{path} holds no training weights beside the checkpoint's averaged ones")
            self.model.load_state_dict(raw)
        rng, saved = resume.load(path, self.optimizer)
        try:
            exact = restore_rng(rng, self.family.generators(), self.device)
            self.state = RunState(**saved)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{path} holds no usable loop state: {exc}") from None
        if not exact:
            self.reporter.warn(f"{self.run.path} was saved on another kind of device: training continues, but with a "
                               "new RNG stream, so not bit for bit as an uninterrupted run")  # fmt: skip
        if info.training.get("steps") != self.state.step:  # a pre-pairing run whose save was cut short
            raise CheckpointError(f"{self.run.path}: the checkpoint (step {info.training.get('steps')}) and the resume "
                                  f"state (step {self.state.step}) disagree, so the run cannot continue exactly")  # fmt: skip
        self.saved_step = self.state.step
        if self.ctx.is_main:
            self.run.trim_metrics(self.state.step)

    def summary(self) -> dict[str, Any]:
        """The checkpoint's training summary: position, the last held-out metrics, what defines the run."""
        state, execution = self.state, self.family.execution()
        return {"steps": state.step, "epochs": state.step / self.steps_per_epoch, "wall_time_s": round(state.wall_time, 3),
                "last_test": state.last_test, **self.settings.run_defining(), **self.family.summary(),
                "precision": execution.precision, "compiled": execution.compiled,
                "device": self.device.type, "world_size": self.ctx.world_size}  # fmt: skip

    def save(self) -> None:
        """Checkpoint and resume state as one commit (rank 0 only); with --ema the checkpoint holds the average."""
        if self.ctx.is_main:
            raw = self.model.state_dict() if self.average is not None else None
            state = resume.to_bytes(self.optimizer, rng_state(self.family.generators(), self.device), asdict(self.state), raw)
            with self._averaged():
                ckpt = checkpoint.to_bytes(self.model, self.summary(), resume_sha256=rundir.file_digest(state))
            self.run.commit(ckpt, state)
        self.saved_step = self.state.step

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to settings' length; returns the training summary stored in the checkpoint."""
        self._build()
        if resume:
            self._resume()
        elif self.ctx.is_main:
            self.run.write_run_json(self.model.config.to_dict(), self.settings.to_dict())
        if self.ctx.is_main:
            self.log = MetricsLog(self.run.metrics, self.run.tensorboard).write
        params = sum(p.numel() for p in self.model.parameters())
        self.reporter.start(total=self.total, done=self.state.step, device=str(self.device),
                            threads=torch.get_num_threads(), params=params,
                            execution=self.family.execution().describe() + self.steps.note)  # fmt: skip
        if resume and self.state.step >= self.total:
            self.reporter.warn(f"the run already has {self.state.step} steps, at or past its length of {self.total}: "
                               "nothing to train (a longer --steps or --epochs goes on)")  # fmt: skip
        if self.settings.batch_size > self.family.train_size:
            self.reporter.warn(f"--batch-size {self.settings.batch_size} is more than the {self.family.train_size} "
                               "training images: each step takes all of them, one step per epoch")  # fmt: skip
        emulated = self.family.execution().precision != "float32" and bf16_warning(self.device)
        if emulated:
            self.reporter.warn(emulated)
        self.model.train()
        with StopFlag() as stop:
            while self.state.step < self.total:
                stopping = self._epoch(stop)
                epoch_done = self.state.batch >= self.steps_per_epoch
                if stopping and not epoch_done:
                    raise self._interrupted()
                self._end_epoch(epoch_done)
                if stopping:
                    raise self._interrupted()
        distributed.check_identical(self.model, self.ctx)
        final = self.summary()
        self.reporter.finish(final, self.run.checkpoint, describe_held_out(self.family.describe, self.state.last_test or {}))
        return final

    def _epoch(self, stop: StopFlag) -> bool:
        """Train until the epoch ends, the run's length is reached or a stop is asked; True if asked."""
        state, settings = self.state, self.settings
        self.epoch_sums: dict[str, float] = dict.fromkeys(self.family.metrics, 0.0)
        self.epoch_examples = 0
        tick = time.perf_counter()
        self.family.start_epoch(state.epoch)
        state.wall_time += time.perf_counter() - tick  # composing a redrawn training set is training time
        self.reporter.epoch_start(state.epoch, steps_in_epoch=min(self.steps_per_epoch - state.batch, self.total - state.step))
        pending: list[tuple[int, int, StepOutput]] = []  # (step, examples, sums) not yet read on the host
        stopping = False
        sync_every = SYNC_EVERY.get(self.device.type, 1)
        for b, idx in batches(self.family.train_size, settings.batch_size, settings.seed, state.epoch, state.batch,
                              self.family.index_device()):  # fmt: skip
            tick = time.perf_counter()
            set_rate(self.optimizer, settings.lr_at(state.step, self.total))  # times each group's lr_scale
            if stop.signal is not None:
                self.stop_flag.fill_(1.0)  # a device-side write: making a new tensor from the host would sync
            out = self.steps(idx, state.step, self.stop_flag)  # eager, or a CUDA graph's replay (graphed.py)
            if self.average is not None:
                self.average.update(state.step)
            self._timed(time.perf_counter() - tick)
            state.step += 1
            state.batch = b + 1
            pending.append((state.step, len(idx), out))
            if len(pending) < sync_every and state.step < self.total and state.batch < self.steps_per_epoch:
                continue  # on CUDA, the host reads the metrics every few steps, not after each one
            stopping = self._read(pending) or stopping
            pending.clear()
            if stopping or state.step >= self.total:
                break
        return stopping

    def _timed(self, seconds: float) -> None:
        """Count a step's time; in a compiled run, report the first step and any later fallback to eager."""
        self.state.wall_time += seconds
        if not self.compile_planned:
            return
        execution = self.family.execution()
        if execution == self.reported:
            return
        first, self.reported = self.reported is None, execution
        if not execution.compiled:
            self.reporter.warn(f"{execution.compile_reason}; training continues")
        elif first:
            self.reporter.warn(f"first step took {seconds:.1f} s, most of it compiling")
        self.log({"event": "compile", "step": self.state.step + 1, "seconds": round(seconds, 3),
                  "compiled": execution.compiled})

    def _read(self, pending: list[tuple[int, int, StepOutput]]) -> bool:
        """Read queued steps' sums on the host: progress, log, non-finite policy; True if a stop was asked."""
        tick = time.perf_counter()
        rows = torch.stack([out.sums for _, _, out in pending]).double().cpu().tolist()
        self.state.wall_time += time.perf_counter() - tick  # on CUDA, the wait for the queued steps
        stopping = False
        for (step, examples, out), row in zip(pending, rows):
            values = out.read(row)
            stopping = stopping or values["stop"] > 0
            finite = all(math.isfinite(v) for v in row)
            grad_norm = values["grad_norm"] / self.ctx.world_size
            if finite:
                self.nonfinite = 0
                for name in self.family.metrics:
                    self.epoch_sums[name] += values[name]
                self.epoch_examples += examples
            else:
                self.nonfinite += 1
                self._skip_nonfinite(step, values[self.family.metrics[0]] / examples, grad_norm)
            means = {name: values[name] / examples for name in self.family.metrics}
            self.reporter.step(step, self.family.describe(means), examples)
            if finite and step % METRICS_EVERY == 0:
                self.log({"event": "train", "step": step, "epoch": self.state.epoch, **means, "grad_norm": grad_norm,
                          "lr": self.settings.lr_at(step - 1, self.total), "wall_time_s": round(self.state.wall_time, 3)})  # fmt: skip
        return stopping

    def _skip_nonfinite(self, step: int, loss: float, grad_norm: float) -> None:
        if self.nonfinite < MAX_NONFINITE:
            self.reporter.warn(f"step {step}: loss {loss}, gradient norm {grad_norm}; the step was not applied")
            return
        raise Diverged(
            f"training stopped at step {step}: the loss or gradient was not finite for {MAX_NONFINITE} steps "
            f"in a row (steps {step - MAX_NONFINITE + 1}-{step}, none applied); {self._kept()}; "
            f"try a lower --lr or a smaller --clip"
        )

    def _kept(self) -> str:
        """What a run that stops on non-finite numbers leaves on disk."""
        if self.saved_step is None:
            return "no checkpoint had been saved yet"
        return f"the last good checkpoint (step {self.saved_step}) is unchanged in {self.run.path}"

    def _check_held_out(self, metrics: dict[str, float]) -> None:
        """A non-finite held-out metric means the weights themselves diverged (a finite loss can still
        take an update that overflows them): stop before saving them over the last good checkpoint."""
        bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
        if bad:
            raise Diverged(
                f"training stopped at step {self.state.step}: the held-out {', '.join(bad)} is not finite, so the "
                f"weights have diverged; {self._kept()}; try a lower --lr or a smaller --clip"
            )

    def _end_epoch(self, epoch_done: bool) -> None:
        """Held-out metrics, the epoch record, a save, and the epoch-end hook."""
        state = self.state
        train_means = {name: total / max(self.epoch_examples, 1) for name, total in self.epoch_sums.items()}
        if self.ctx.is_main:
            state.last_test = held_out(self.family.evaluate, self.model, self.average)
            self._check_held_out(state.last_test)
        if epoch_done:
            state.epoch += 1
            state.batch = 0
        if not self.ctx.is_main:
            return
        record = {"event": "epoch", "step": state.step, "epochs": round(state.step / self.steps_per_epoch, 4),
                  **{f"train_{k}": v for k, v in train_means.items()},
                  **{f"test_{k}": v for k, v in (state.last_test or {}).items()},
                  "wall_time_s": round(state.wall_time, 3)}  # fmt: skip
        self.log(record)
        self.save()
        line = f"train {self.family.describe(train_means)} | test {describe_held_out(self.family.describe, state.last_test or {})}"
        self.reporter.epoch_end(record, line)
        if self.on_epoch_end is not None and (epoch_done or state.step >= self.total):
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), self._averaged():
                self.on_epoch_end(self.model, state)

    def _averaged(self) -> contextlib.AbstractContextManager[None]:
        """The model as saved: with --ema its averaged weights inside the block, else as it is."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _interrupted(self) -> Interrupted:
        self.save()
        self.reporter.interrupted(self.state.step, self.run.path)
        return Interrupted(f"interrupted at step {self.state.step}; resume with: drawcli train --resume {self.run.path}")
