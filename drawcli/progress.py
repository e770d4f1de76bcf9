"""Training progress: a rich bar on a terminal, plain log lines otherwise (or with --quiet)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

PLAIN_LINES_PER_EPOCH = 10


def _fmt_epoch(record: dict[str, Any], text: str) -> str:
    return f"epoch {record['epochs']:.2f} (step {record['step']}): {text} | {record['wall_time_s']:.0f} s"


class Reporter:
    """Receives training events; this base class prints plain lines to a console (stderr).

    Metrics arrive as text the model family formatted (`ModelFamily.describe`), so the
    reporter works for any family.
    """

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._epoch_images = 0
        self._epoch_start = 0.0
        self._epoch_steps = 0
        self._epoch_done = 0

    def start(self, total: int, done: int, device: str, threads: int, params: int, execution: str = "") -> None:
        self.total = total
        verb = "resuming at step" if done else "training for"
        count = f"{done}/{total}" if done else f"{total} steps"
        self.console.print(f"{verb} {count} on {device} ({threads} threads), {params:,} parameters"
                           + (f"; {execution}" if execution else ""), highlight=False)

    def epoch_start(self, epoch: int, steps_in_epoch: int) -> None:
        self._epoch, self._epoch_steps, self._epoch_done = epoch, steps_in_epoch, 0
        self._epoch_images, self._epoch_start = 0, time.perf_counter()

    def images_per_s(self) -> float:
        return self._epoch_images / max(time.perf_counter() - self._epoch_start, 1e-9)

    def step(self, step: int, text: str, images: int) -> None:
        """One step done: `text` its metrics, `images` the examples it took."""
        self._epoch_images += images
        self._epoch_done += 1
        every = max(1, self._epoch_steps // PLAIN_LINES_PER_EPOCH)
        if not self.quiet and (self._epoch_done % every == 0):
            self.console.print(f"step {step}/{self.total}: {text}, {self.images_per_s():.0f} img/s", highlight=False)

    def epoch_end(self, record: dict[str, Any], text: str) -> None:
        """An epoch (or a run's last part) done: its metrics log record and the metrics as text."""
        self.console.print(_fmt_epoch(record, text) + f" | {self.images_per_s():.0f} img/s", highlight=False)

    def interrupted(self, step: int, run_dir: Path) -> None:
        self.console.print(f"stopped after step {step}; checkpoint saved in {run_dir}")

    def warn(self, message: str) -> None:
        """A problem training survives (e.g. one skipped non-finite step)."""
        self.console.print(Text.assemble(("warning:", "yellow"), " ", message), highlight=False)

    def close(self) -> None:
        """Stop any live display; safe to call more than once, and after `finish`."""

    def finish(self, summary: dict[str, Any], checkpoint: Path, test: str) -> None:
        """The run ended: its training summary, where the checkpoint is, the held-out metrics as text."""
        self.console.print(
            f"done: {summary['steps']} steps ({summary['epochs']:.2f} epochs) in {summary['wall_time_s']:.0f} s; "
            f"test {test}; checkpoint {checkpoint}",
            highlight=False,
        )


class RichReporter(Reporter):
    """A live bar per epoch with loss, reconstruction and KL nats, images per second and ETA."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[text]}"),
            TextColumn("{task.fields[ips]:.0f} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task: Any = None

    def start(self, total: int, done: int, device: str, threads: int, params: int, execution: str = "") -> None:
        super().start(total, done, device, threads, params, execution)
        self.progress.start()

    def epoch_start(self, epoch: int, steps_in_epoch: int) -> None:
        super().epoch_start(epoch, steps_in_epoch)
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("", total=steps_in_epoch, epoch=epoch + 1, text="", ips=0.0)

    def step(self, step: int, text: str, images: int) -> None:
        self._epoch_images += images
        self.progress.update(self.task, advance=1, text=text, ips=self.images_per_s())

    def epoch_end(self, record: dict[str, Any], text: str) -> None:
        self.progress.console.print(_fmt_epoch(record, text) + f" | {self.images_per_s():.0f} img/s", highlight=False)

    def interrupted(self, step: int, run_dir: Path) -> None:
        self.progress.stop()
        super().interrupted(step, run_dir)

    def close(self) -> None:
        self.progress.stop()  # idempotent

    def finish(self, summary: dict[str, Any], checkpoint: Path, test: str) -> None:
        self.progress.stop()
        super().finish(summary, checkpoint, test)


class SilentReporter(Reporter):
    """For ranks other than 0 in a torchrun job: only rank 0 reports."""

    def start(self, total: int, done: int, device: str, threads: int, params: int, execution: str = "") -> None:
        self.total = total

    def step(self, step: int, text: str, images: int) -> None:
        pass

    def epoch_end(self, record: dict[str, Any], text: str) -> None:
        pass

    def interrupted(self, step: int, run_dir: Path) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def finish(self, summary: dict[str, Any], checkpoint: Path, test: str) -> None:
        pass


def make_reporter(console: Console, quiet: bool) -> Reporter:
    """The live bar on a terminal; plain lines when quiet or when stderr is not a terminal."""
    if quiet or not console.is_terminal:
        return Reporter(console, quiet=quiet)
    return RichReporter(console)
