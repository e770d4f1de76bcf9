"""Nothing lost: failed writes keep the previous files, non-finite steps stop or are skipped,
and an interrupt saves a resumable run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ENOSPC, TINY_ARGS, error_line, invoke, make_losses_nan, no_temp_files, snapshot, write_idx_dataset
from safetensors.torch import load_file

from drawcli import checkpoint
from drawcli.atomic import atomic_write_bytes
from drawcli.errors import WriteError
from drawcli.model import DRAW
from drawcli.training.signals import StopFlag

# --- failed writes --------------------------------------------------------------------------------


def fail_replace(monkeypatch: pytest.MonkeyPatch, name: str, exc: BaseException) -> None:
    """os.replace raises `exc` when the destination is called `name` (the final rename of an atomic write)."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name == name:
            raise exc
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the rename, or a second Ctrl-C mid-write, leaves the old bytes and no temp file."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    fail_replace(monkeypatch, "f.bin", ENOSPC)
    with pytest.raises(WriteError, match=r"^cannot write .*f\.bin: No space left on device \(the previous version"):
        atomic_write_bytes(path, b"new")
    fail_replace(monkeypatch, "f.bin", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and no_temp_files(tmp_path)


def test_full_disk_at_checkpoint_keeps_the_previous_one(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while saving the epoch's checkpoint: one line naming it; both files keep their old bytes."""
    before = snapshot(run)
    with monkeypatch.context() as m:
        fail_replace(m, "checkpoint.safetensors", ENOSPC)
        line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"))
    ckpt = run / "checkpoint.safetensors"
    assert line == f"error: cannot write {ckpt}: No space left on device (the previous version, if any, is unchanged)"
    assert snapshot(run) == before and no_temp_files(run)
    assert invoke("train", "--resume", run, "--steps", "6", "--quiet").exit_code == 0  # the run goes on


class Killed(BaseException):
    """The process dies here: nothing catches it, no clean-up runs."""


def save_operations(monkeypatch: pytest.MonkeyPatch, kill_at: int | None = None) -> list[str]:
    """Record each fsync (the end of a file's write) and rename of the process, by file name; the
    `kill_at`-th of them (1-based) raises Killed before it happens."""
    done: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def step(what: str) -> None:
        if kill_at is not None and len(done) + 1 == kill_at:
            raise Killed(what)
        done.append(what)

    def fsync(fd: int) -> None:
        temporary = Path(os.readlink(f"/proc/self/fd/{fd}")).name  # .NAME.RANDOM.tmpSUFFIX (atomic_path)
        step(f"write {temporary[1:].split('.tmp')[0].rsplit('.', 1)[0]}")
        real_fsync(fd)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        step(f"rename to {Path(dst).name}")
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return done


def test_a_save_is_one_commit_whatever_write_it_dies_at(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the process at each write and rename of a save in turn: the run always resumes, from the
    previous save or the new one, and ends bit for bit where an uninterrupted run ends, its log without repeats.

    The save writes each file once: the resume state staged, the checkpoint (the commit), the rename into place.
    """
    straight = Path(shutil.copytree(run, tmp_path / "straight"))
    assert invoke("train", "--resume", straight, "--steps", "9", "--quiet").exit_code == 0
    with monkeypatch.context() as m:
        counted = Path(shutil.copytree(run, tmp_path / "counted"))
        operations = save_operations(m)
        assert invoke("train", "--resume", counted, "--steps", "6", "--quiet").exit_code == 0  # one save, at step 6
    assert operations == ["write resume.next.safetensors", "rename to resume.next.safetensors",
                          "write checkpoint.safetensors", "rename to checkpoint.safetensors",
                          "rename to resume.safetensors"]  # fmt: skip
    committed = operations.index("rename to checkpoint.safetensors") + 1
    for kill_at in range(1, len(operations) + 1):
        killed = Path(shutil.copytree(run, tmp_path / f"killed{kill_at}"))
        with monkeypatch.context() as m:
            save_operations(m, kill_at)
            with pytest.raises(Killed):
                invoke("train", "--resume", killed, "--steps", "6", "--quiet")
        assert checkpoint.read_info(killed).training["steps"] == (6 if kill_at > committed else 3), kill_at
        result = invoke("train", "--resume", killed, "--steps", "9", "--quiet")
        assert result.exit_code == 0, (kill_at, result.output)
        a, b = load_file(straight / "checkpoint.safetensors"), load_file(killed / "checkpoint.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), kill_at
        epochs = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [3, 6, 9], kill_at


def test_resume_without_a_pairing_resume_state_is_refused(run: Path) -> None:
    """A resume state that is not the checkpoint's (here an older run's) is named, not silently used."""
    other = Path(shutil.copytree(run, run.parent / "other"))
    assert invoke("train", "--resume", other, "--steps", "6", "--quiet").exit_code == 0
    shutil.copy(run / "resume.safetensors", other / "resume.safetensors")
    line = error_line(invoke("train", "--resume", other, "--steps", "9", "--quiet"))
    assert line == f"error: {other}: no resume state pairs with the checkpoint, so the run cannot continue exactly"


def test_a_truncated_resume_file_is_named_and_the_checkpoint_still_evaluates(run: Path, data_dir: Path) -> None:
    """It said only that no resume state pairs with the checkpoint: not which file, nor what still works."""
    resume = run / "resume.safetensors"
    raw = resume.read_bytes()
    tensor_bytes = len(raw) - 8 - int.from_bytes(raw[:8], "little")
    resume.write_bytes(raw[:-100])  # an interrupted copy
    line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"))
    assert line == (f"error: {resume} is truncated: its header needs {tensor_bytes} bytes of tensor data, the file holds "
                    f"{tensor_bytes - 100}, so {run} cannot be resumed; the checkpoint does not need that file (sample, evaluate "
                    f"and inspect still work on {run}): to train on, restore resume.safetensors from a copy of the run, or start a new run")  # fmt: skip
    result = invoke("evaluate", run, "--data-dir", data_dir, "--limit", "4", "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0, result.output


def test_unwritable_metrics_log(run: Path) -> None:
    """metrics.jsonl that cannot be appended to (here a directory is in the way) is one line naming it."""
    before = snapshot(run)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"))
    assert line == f"error: cannot write {run / 'metrics.jsonl'}: Is a directory"
    assert snapshot(run) == before


def test_unwritable_sample_gif_during_training(data_dir: Path, tmp_path: Path) -> None:
    """The epoch's sample GIF cannot replace a directory: one line naming it; the checkpoint is saved."""
    run = tmp_path / "run"
    (run / "samples" / "epoch-0001.gif").mkdir(parents=True)
    line = error_line(invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", run, "--steps", "3", "--quiet"))
    assert line.startswith(f"error: cannot write {run / 'samples' / 'epoch-0001.gif'}: Is a directory")
    assert checkpoint.load_model(run)[1].training["steps"] == 3


# --- non-finite steps -----------------------------------------------------------------------------


def test_nonfinite_loss_stops_after_three_steps(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN losses are skipped with a warning; the third in a row stops training, the checkpoint untouched."""
    before = snapshot(run)
    make_losses_nan(monkeypatch)
    result = invoke("train", "--resume", run, "--steps", "12", "--quiet")
    line = error_line(result)
    assert line == (
        "error: training stopped at step 6: the loss or gradient was not finite for 3 steps in a row (steps 4-6, "
        f"none applied); the last good checkpoint (step 3) is unchanged in {run}; try a lower --lr or a smaller --clip"
    )
    assert "warning: step 4: loss nan, gradient norm nan; the step was not applied" in result.stderr
    assert "warning: step 5:" in result.stderr
    assert snapshot(run) == before


def test_one_nonfinite_gradient_is_skipped(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An infinite gradient norm at step 2 skips that update only: 4 steps run, Adam applied 3."""
    clip = torch.nn.utils.clip_grad_norm_
    calls = []

    def clip_inf_once(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        norm = clip(*args, **kwargs)
        return norm * float("inf") if len(calls) == 2 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_inf_once)
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", run, "--steps", "4", "--quiet", "--sample-every", "0")
    assert result.exit_code == 0, result.output
    assert re.search(r"warning: step 2: loss [0-9.]+, gradient norm inf; the step was not applied", result.stderr)
    assert checkpoint.read_info(run).training["steps"] == 4
    adam_steps = {v.item() for k, v in load_file(run / "resume.safetensors").items() if k.endswith(".step")}
    assert adam_steps == {3.0}


# --- interrupts -----------------------------------------------------------------------------------


def test_second_interrupt_exits_130_in_one_line(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The KeyboardInterrupt of a second Ctrl-C is one line with exit 130, the checkpoint as it was."""
    before = snapshot(run)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("drawcli.training.train", interrupted)
    line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"), code=130)
    assert line == (f"error: stopped at once by a second interrupt; the last saved checkpoint in {run} is intact; "
                    f"resume with: drawcli train --resume {run}")  # fmt: skip
    assert snapshot(run) == before


def test_stop_flag_second_signal_raises() -> None:
    """The first signal only sets the flag; the second raises KeyboardInterrupt at once."""
    flag = StopFlag()
    flag._handle(signal.SIGINT, None)
    assert flag.signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        flag._handle(signal.SIGINT, None)


def test_sigint_during_real_training(tmp_path: Path) -> None:
    """SIGINT to a `drawcli train` process: exit 130, a resume hint, a loadable checkpoint, a resumable run."""
    data = tmp_path / "data"
    write_idx_dataset(data, n_train=480, n_test=20)  # 30 steps per epoch: the signal usually lands mid-epoch
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "drawcli", "train", *TINY_ARGS, "--data-dir", str(data), "--out", str(run),
               "--steps", "1000000", "--quiet", "--sample-every", "0"]  # fmt: skip
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while "training for" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "training for" in log.read_text(), log.read_text()
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code == 130, text
    match = re.search(rf"error: interrupted at step (\d+); resume with: drawcli train --resume {re.escape(str(run))}$", text.rstrip())
    assert match, text
    step = int(match.group(1))
    model, info = checkpoint.load_model(run)
    assert info.training["steps"] == step >= 1 and isinstance(model, DRAW)
    result = invoke("train", "--resume", run, "--steps", step + 2, "--quiet")
    assert result.exit_code == 0, result.output
    assert checkpoint.read_info(run).training["steps"] == step + 2
