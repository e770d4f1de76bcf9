"""Training: a loop that knows steps, saves and ranks (loop.py), the interface a kind of model
implements for it (family.py), DRAW's implementation (draw.py), the attention classifier's (classify.py), the one training step (step.py),
the settings (settings.py), the loop's state and RNG streams (state.py), signals (signals.py)
and the weights' moving average of --ema (averaging.py).

Importing this package imports no torch (the command line reads the settings' defaults from it);
`train` imports the rest when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from drawcli.training.settings import TrainSettings

if TYPE_CHECKING:
    import torch

    from drawcli import distributed
    from drawcli.config import DrawConfig
    from drawcli.progress import Reporter
    from drawcli.training.loop import EpochEnd

__all__ = ["TrainSettings", "train"]


def train(config: DrawConfig, settings: TrainSettings, run_dir: Path, reporter: Reporter, resume: bool = False,
          on_epoch_end: EpochEnd | None = None, ctx: distributed.Dist | None = None,
          device: torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the model `config` describes (DRAW or the attention classifier) into `run_dir`; returns the training summary stored in the checkpoint.

    Under torchrun pass the job's `ctx` and `device` (distributed.init); otherwise the device
    and thread count come from the settings.
    """
    from drawcli.devices import setup
    from drawcli.rundir import RunDir
    from drawcli.training.classify import ClassifierFamily
    from drawcli.training.draw import DrawFamily
    from drawcli.training.loop import Trainer

    chosen = setup(settings.device, settings.threads)
    device = device or chosen
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    family = {"draw": DrawFamily, "classifier": ClassifierFamily}[config.kind](config, settings, device, ctx)
    return Trainer(family, settings, run, reporter, device, ctx, on_epoch_end).fit(resume)
