"""One process per run folder (drawcli/runlock.py): a second writer refuses in one line naming the
holder's pid and host, a killed holder blocks no one, readers keep working. The holders here are
real processes: a `drawcli train`, or a small script that takes the lock and sleeps."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from helpers import TINY_ARGS, error_line, invoke, metric_records, write_idx_dataset

from drawcli import checkpoint, rundir
from drawcli.errors import RunInUseError
from drawcli.runlock import RunLock

HOST = socket.gethostname()
HOLD = "import sys, time; from drawcli.runlock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"


def refusal(folder: Path, pid: int) -> str:
    return (f"error: {folder} is in use: process {pid} on {HOST} is training into it; two processes in one run folder "
            "would interleave its metrics and overwrite each other's checkpoints, so wait for it to end or stop it")  # fmt: skip


@pytest.fixture
def hold() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """hold(folder) -> a live process holding folder's lock; every one is killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def test_resume_is_refused_while_another_process_holds_the_run(run: Path, hold) -> None:
    """The issue's case: a second `train --resume` on a run that a live process holds stops at once,
    names that process, and changes nothing in the run."""
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != rundir.LOCK}
    holder = hold(run)
    line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"))
    assert line == refusal(run, holder.pid)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != rundir.LOCK} == before
    assert json.loads((run / rundir.LOCK).read_text()) == {"pid": holder.pid, "host": HOST}


def test_a_new_run_into_a_held_folder_is_refused_and_the_folder_kept(tmp_path: Path, data_dir: Path, hold) -> None:
    """`--out` of a folder another process holds (its first save not yet made) refuses too; the
    refused process writes nothing and removes nothing."""
    folder = tmp_path / "run"
    folder.mkdir()
    holder = hold(folder)
    line = error_line(invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", folder, "--steps", "3", "--quiet"))
    assert line == refusal(folder, holder.pid)
    assert [p.name for p in folder.iterdir()] == [rundir.LOCK]


def test_a_killed_holder_does_not_block(run: Path, hold) -> None:
    """SIGKILL leaves the lock file with the dead process's pid, but the kernel has dropped its lock:
    the resume goes ahead, and leaves no lock file once it is done."""
    kill(hold(run))
    assert (run / rundir.LOCK).is_file()
    result = invoke("train", "--resume", run, "--steps", "6", "--quiet")
    assert result.exit_code == 0, result.output
    assert checkpoint.read_info(run).training["steps"] == 6
    assert not (run / rundir.LOCK).exists()


def test_readers_work_while_a_run_is_held(run: Path, hold, tmp_path: Path) -> None:
    """inspect, sample, evaluate and plot read a run that a process is training into; none takes the lock."""
    hold(run)
    for args in (["inspect", run], ["sample", run, "--png", tmp_path / "s.png", "--n", "4", "--threads", "1"],
                 ["evaluate", run, "--limit", "8", "--threads", "1"], ["plot", run, "--png", tmp_path / "curves.png"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args[0], result.output)
    assert (tmp_path / "s.png").is_file() and (tmp_path / "curves.png").is_file()


def test_a_second_drawcli_train_is_refused_until_the_first_is_killed(run: Path, tmp_path: Path) -> None:
    """Two real `drawcli train --resume` processes on one run: the second refuses naming the first;
    once the first is killed (a scheduler's restart), the same command continues the run from its
    last save, with a metrics log in step order."""
    log = tmp_path / "first.txt"
    command = [sys.executable, "-m", "drawcli", "train", "--resume", str(run), "--steps", "1000000", "--compile", "off", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 60
            while "resuming at step" not in log.read_text() and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "resuming at step" in log.read_text(), log.read_text()
            assert RunLock(run).holder() == (first.pid, HOST)
            line = error_line(invoke("train", "--resume", run, "--steps", "1000000", "--quiet"))
            assert line == refusal(run, first.pid)
        finally:
            first.kill()
            first.wait()
    saved = checkpoint.read_info(run).training["steps"]
    result = invoke("train", "--resume", run, "--steps", saved + 3, "--quiet")
    assert result.exit_code == 0, result.output
    steps = [r["step"] for r in metric_records(run)]
    assert steps == sorted(steps) and steps[-1] == saved + 3


def test_the_lock_excludes_within_one_process_and_passes_on_when_released(tmp_path: Path) -> None:
    """flock belongs to an open file, so two RunLocks exclude each other even in one process; the
    holder's release removes the file, and the next one takes the lock and writes its own name."""
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    with first:
        with pytest.raises(RunInUseError, match=f"process {os.getpid()} on {HOST} is training into it"):
            second.acquire()
        assert not second.held
    assert not (tmp_path / rundir.LOCK).exists()
    with second:
        assert second.holder() == (os.getpid(), HOST)
    assert list(tmp_path.iterdir()) == []


def test_a_holder_that_recorded_no_name_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A garbled lock file (or a holder that locked but has not written yet) still refuses, without a pid."""
    monkeypatch.setattr("drawcli.runlock.HOLDER_WAIT_S", 0.05)
    with RunLock(tmp_path):
        (tmp_path / rundir.LOCK).write_text("garbage")
        with pytest.raises(RunInUseError, match=r"in use: another process \(its pid is not recorded\) is training"):
            RunLock(tmp_path).acquire()


def test_a_stale_lock_file_does_not_make_out_refuse_the_folder(tmp_path: Path, data_dir: Path, hold) -> None:
    """A lock file left by a killed process is a run's own file: `--out` trains into that folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    kill(hold(folder))
    result = invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", folder, "--steps", "3", "--quiet", "--sample-every", "0")
    assert result.exit_code == 0, result.output
    assert not (folder / rundir.LOCK).exists()


def test_torchrun_stops_every_rank_when_the_folder_is_held(tmp_path: Path, hold) -> None:
    """Under torchrun rank 0 takes the lock for the job; refused, it tells the other ranks, and the
    whole job stops with the refusal instead of hanging in a collective."""
    write_idx_dataset(tmp_path / "data", n_train=40, n_test=8)
    folder = tmp_path / "ddp"
    folder.mkdir()
    holder = hold(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "drawcli", "train", *TINY_ARGS, "--data-dir", str(tmp_path / "data"), "--steps", "4", "--quiet",
           "--out", str(folder)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert refusal(folder, holder.pid) in result.stderr, result.stderr[-3000:]
    assert [p.name for p in folder.iterdir()] == [rundir.LOCK]
