"""The run's metrics log: one JSON object per line, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drawcli.atomic import append_line

SCALARS = ("loss", "recon", "kl", "train_loss", "test_bound", "test_recon", "test_kl")


class MetricsLog:
    """Appends records to RUN_DIR/metrics.jsonl; with `tensorboard` installed, also to RUN_DIR/tensorboard."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        append_line(self.path, json.dumps(record))  # a full disk raises WriteError naming the file
        if self._tb is not None:
            for key in SCALARS:
                if key in record:
                    self._tb.add_scalar(f"{record.get('event', 'train')}/{key}", record[key], record["step"])
            self._tb.flush()
