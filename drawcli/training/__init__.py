"""Training: a loop that knows steps, saves and ranks (loop.py), the interface a kind of model
implements for it (family.py), DRAW's implementation (draw.py), the attention classifier's (classify.py), the one training step (step.py),
the settings (settings.py), the loop's state and RNG streams (state.py), signals (signals.py)
and the weights' moving average of --ema (averaging.py).

Importing this package imports no torch (the command line reads the settings' defaults from it);
`train` imports the rest when called.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from drawcli.training.settings import TrainSettings

if TYPE_CHECKING:
    import torch

    from drawcli import distributed
    from drawcli.config import ModelConfig
    from drawcli.progress import Reporter
    from drawcli.rundir import RunDir
    from drawcli.training.loop import EpochEnd

__all__ = ["TrainSettings", "train"]


def train(config: ModelConfig, settings: TrainSettings, run_dir: Path, reporter: Reporter, resume: bool = False,
          on_epoch_end: EpochEnd | None = None, ctx: distributed.Dist | None = None,
          device: torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the model `config` describes (DRAW or the attention classifier) into `run_dir`; returns the training summary stored in the checkpoint.

    Under torchrun pass the job's `ctx` and `device` (distributed.init); otherwise the device
    and thread count come from the settings.
    """
    from drawcli import kinds
    from drawcli.devices import setup
    from drawcli.errors import ConfigError
    from drawcli.rundir import RunDir
    from drawcli.training.loop import Trainer

    kind = kinds.get(config.kind)
    refusal = kinds.unused_setting(kind, settings)
    if refusal:
        raise ConfigError(refusal)
    chosen = setup(settings.device, settings.threads)
    device = device or chosen
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    with _sole_writer(run, resume, ctx):
        family = kind.family_class()(config, settings, device, ctx)
        return Trainer(family, settings, run, reporter, device, ctx, on_epoch_end).fit(resume)


@contextlib.contextmanager
def _sole_writer(run: RunDir, resume: bool, ctx: distributed.Dist | None) -> Iterator[None]:
    """Hold the run folder's lock (runlock.py) while training, before anything is written into it.

    Under torchrun rank 0, the one rank that writes, holds it for the job and tells the other
    ranks whether it got it, so that a refused job stops on every rank at once.
    """
    from drawcli import distributed, runlock
    from drawcli.errors import RunInUseError

    lock = runlock.RunLock(run.path)
    refusal = ""
    if ctx is None or ctx.is_main:
        try:
            lock.acquire()
            if not resume and run.has_run():  # saved by a process that ended after the CLI's check
                refusal = f"{run.path} already holds a run, saved by another process meanwhile; continue it with --resume {run.path}"
        except RunInUseError as exc:
            refusal = str(exc)
    if ctx is not None:
        refusal = distributed.broadcast_text(refusal, ctx)
    try:
        if refusal:
            raise RunInUseError(refusal)
        yield
    finally:
        lock.release()
