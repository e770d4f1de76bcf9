"""How to train: every setting that is not the architecture, each tagged with what resume may do to it.

A field tagged RUN defines what a run computes (the data, the optimizer, the seed): a resumed
run keeps it, and a different value given on resume is refused. A field tagged EXECUTION only
says how or how long the run executes (device, threads, compilation, length, where the data
live): it may change when a run is resumed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from drawcli.choices import (
    AMP_MODES,
    BINARIZE_MODES,
    COMPILE_CHOICES,
    COMPILE_MODES,
    CUDA_GRAPHS,
    DEVICES,
    LR_SCHEDULES,
)
from drawcli.config import Retired, complete
from drawcli.errors import ConfigError

RUN = "run"
EXECUTION = "execution"
# Fields of run.json that earlier versions wrote and this one no longer has, dropped whatever their value.
RETIRED_FIELDS = ("extra",)
# Classifier objective terms removed after 0.1.0: a run that trained without them (0.0) resumes the same.
RETIRED = Retired("0.1.0", {"label_smoothing": 0.0, "glimpse_loss": 0.0})
# Settings added after run.json's first form, each with the value every older run implies (they
# trained without it); a run.json lacking any other setting is refused, never given a default.
ADDED_LATER: dict[str, Any] = {
    "beta1": 0.9, "beta2": 0.999, "kl_warmup": 0, "amp": "off", "compile": "off", "compile_mode": "default",
    "redraw": False, "lr_schedule": "constant", "window_lr": 1.0, "ema": 0.0, "teachers": (), "teacher_weight": 0.5,
    "teacher_temperature": 2.0, "locate_loss": 0.0, "cuda_graph": "off",
}  # fmt: skip


def _setting(default: Any, tag: str) -> Any:
    return field(default=default, metadata={"resume": tag})


@dataclass
class TrainSettings:
    """How to train (everything that is not the architecture); saved as run.json's "settings"."""

    dataset: str = _setting("mnist", RUN)
    data_dir: str | None = _setting(None, EXECUTION)
    binarize: str = _setting("stochastic", RUN)
    redraw: bool = _setting(False, RUN)  # a new composition of the training set every epoch (classifier)
    epochs: int | None = _setting(None, EXECUTION)
    steps: int | None = _setting(None, EXECUTION)
    batch_size: int = _setting(64, RUN)
    lr: float = _setting(1e-3, RUN)
    lr_schedule: str = _setting("constant", RUN)
    window_lr: float = _setting(1.0, RUN)  # the attention windows' placement layers learn at window_lr x lr
    clip: float = _setting(10.0, RUN)
    beta1: float = _setting(0.9, RUN)
    beta2: float = _setting(0.999, RUN)  # Adam's decay of its mean of squared gradients
    kl_warmup: int = _setting(0, RUN)
    ema: float = _setting(0.0, RUN)  # decay of the weights' moving average (training/averaging.py); 0: none
    teachers: tuple[str, ...] = _setting((), RUN)  # classifier checkpoints to distil from (training/distill.py)
    teacher_weight: float = _setting(0.5, RUN)  # share of the teachers' soft targets in the objective
    teacher_temperature: float = _setting(2.0, RUN)  # softmax temperature of teachers and student in that term
    locate_loss: float = _setting(0.0, RUN)  # classifier: weight of the read windows' distance to the object (classifier.py)
    amp: str = _setting("off", EXECUTION)  # "bf16": the LSTM matmuls in bf16; weights, state, loss and KL float32
    seed: int = _setting(0, RUN)
    device: str = _setting("auto", EXECUTION)
    threads: int | None = _setting(None, EXECUTION)
    compile: str = _setting("auto", EXECUTION)  # "auto": when the run repays it (training/execution.py)
    compile_mode: str = _setting("default", EXECUTION)  # "reduce-overhead": CUDA graphs of the compiled unit on a GPU
    # The whole step captured once and replayed on CUDA (training/graphed.py); off by default: not yet
    # checked against the eager step on a GPU.
    cuda_graph: str = _setting("off", EXECUTION)
    sample_every: int = _setting(1, EXECUTION)
    sample_count: int = _setting(64, EXECUTION)

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # run.json of versions where --compile was a flag
            self.compile = "on" if self.compile else "off"
        for name, allowed in (("amp", AMP_MODES), ("compile", COMPILE_CHOICES), ("compile_mode", COMPILE_MODES),
                              ("cuda_graph", CUDA_GRAPHS), ("binarize", BINARIZE_MODES), ("device", DEVICES), ("lr_schedule", LR_SCHEDULES)):  # fmt: skip
            if getattr(self, name) not in allowed:
                flag = name.replace("_", "-")
                raise ConfigError(f"unknown --{flag} {getattr(self, name)!r}; expected one of {', '.join(allowed)}")
        if not 0.0 < self.lr <= 1.0:
            raise ConfigError(f"--lr {self.lr} must be a rate above 0 and at most 1 (Adam moves each weight by about the rate every step), e.g. 1e-3")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"--ema {self.ema} is not a decay: give one in [0, 1), e.g. 0.999 (0 turns averaging off)")
        self.teachers = tuple(self.teachers or ())  # run.json holds a list
        if not 0.0 < self.teacher_weight <= 1.0:
            raise ConfigError(f"--teacher-weight {self.teacher_weight} is not a share: give one in (0, 1], e.g. 0.5")
        if not 0.0 < self.teacher_temperature < math.inf:
            raise ConfigError(f"--teacher-temperature {self.teacher_temperature} must be a finite number above 0, e.g. 2")
        if not 0.0 < self.window_lr <= 1e3:
            raise ConfigError(f"--window-lr {self.window_lr} must be a factor above 0 (and at most 1000), e.g. 0.1 (1: the same rate as the rest)")
        if not 0.0 <= self.locate_loss <= 100.0:
            raise ConfigError(f"--locate-loss {self.locate_loss} must be a weight from 0 to 100, e.g. 0.1 (0 turns it off)")
        if self.compile_mode != "default":  # a compile mode implies --compile on
            if self.compile == "off":
                raise ConfigError(f"--compile-mode {self.compile_mode} compiles, and --compile off says not to: drop one of them")
            self.compile = "on"
        if self.cuda_graph == "on" and self.compile_mode == "reduce-overhead":
            raise ConfigError("--cuda-graph on captures the whole step as one CUDA graph, and --compile-mode reduce-overhead "
                              "has torch.compile capture each glimpse in graphs of its own: choose one of them")  # fmt: skip

    def steps_per_epoch(self, train_size: int) -> int:
        """Optimizer steps in one pass over `train_size` examples (the last batch may be short)."""
        return math.ceil(train_size / self.batch_size)

    def total_steps(self, steps_per_epoch: int) -> int:
        """--steps wins when given; else --epochs (1 when neither is given)."""
        if self.steps is not None:
            return self.steps
        return (self.epochs or 1) * steps_per_epoch

    def lr_at(self, step: int, total: int) -> float:
        """Adam's learning rate for optimizer step `step` (0-based) of a `total`-step run.

        cosine: lr (1 + cos(pi step / total)) / 2 (SGDR's curve without restarts, Loshchilov and
        Hutter 2017), lr at the first step and near 0 at the last.
        """
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * (1 + math.cos(math.pi * min(step, total) / max(total, 1))) / 2

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able: run.json's "settings" (tuples as the lists JSON reads back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        """Rebuild from run.json; unknown fields are an error, retired ones are dropped (those of RETIRED
        only at their neutral value), and a missing one is an error unless ADDED_LATER records its value."""
        data = RETIRED.drop(data, "training setting")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names) - set(RETIRED_FIELDS))
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        kept = {k: v for k, v in data.items() if k in names}
        return cls(**complete(kept, names, ADDED_LATER, "training setting"))

    @classmethod
    def fields_tagged(cls, tag: str) -> tuple[str, ...]:
        """Names of the fields with this resume tag (RUN or EXECUTION), in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume") == tag)

    def run_defining(self) -> dict[str, Any]:
        """The RUN fields and their values: what the checkpoint's training summary records."""
        return {name: getattr(self, name) for name in self.fields_tagged(RUN)}
