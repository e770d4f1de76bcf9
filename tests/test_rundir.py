"""The run folder: names, the newest run, the pairing of checkpoint and resume state, metric trimming."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from drawcli import checkpoint, resume, rundir
from drawcli.errors import CheckpointError, DrawcliError
from drawcli.model import DRAW
from drawcli.rundir import RunDir
from drawcli.runlock import RunLock


def save_pair(run: RunDir, model: DRAW, step: int) -> bytes:
    """Commit a checkpoint at `step` with its resume state; returns the resume bytes."""
    optimizer = torch.optim.Adam(model.parameters())
    state = resume.to_bytes(optimizer, {"torch": torch.get_rng_state()}, {"step": step})
    ckpt = checkpoint.to_bytes(model, {"steps": step}, resume_sha256=rundir.file_digest(state))
    run.commit(ckpt, state)
    return state


def test_commit_leaves_a_pair_and_no_staged_file(tmp_path: Path, tiny_config) -> None:
    run = RunDir(tmp_path)
    state = save_pair(run, DRAW(tiny_config()), step=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.CHECKPOINT, rundir.RESUME]
    assert run.resume_file() == tmp_path / rundir.RESUME
    assert (tmp_path / rundir.RESUME).read_bytes() == state


def test_the_staged_resume_state_pairs_when_the_last_rename_did_not_happen(tmp_path: Path, tiny_config) -> None:
    """Killed between the checkpoint's rename and the resume state's: the staged file is the checkpoint's pair."""
    run = RunDir(tmp_path)
    model = DRAW(tiny_config())
    old = save_pair(run, model, step=3)
    new = save_pair(run, model, step=6)
    (tmp_path / rundir.RESUME_STAGED).write_bytes(new)
    (tmp_path / rundir.RESUME).write_bytes(old)
    assert run.resume_file() == tmp_path / rundir.RESUME_STAGED
    (tmp_path / rundir.RESUME_STAGED).unlink()
    with pytest.raises(CheckpointError, match="no resume state pairs with the checkpoint"):
        run.resume_file()
    (tmp_path / rundir.RESUME).unlink()
    with pytest.raises(CheckpointError, match="has a checkpoint but no resume.safetensors"):
        run.resume_file()


def test_a_checkpoint_from_before_pairing_uses_resume_safetensors(tmp_path: Path, tiny_config) -> None:
    model = DRAW(tiny_config())
    checkpoint.save_checkpoint(tmp_path / rundir.CHECKPOINT, model, {"steps": 1})
    (tmp_path / rundir.RESUME).write_bytes(resume.to_bytes(torch.optim.Adam(model.parameters()), {}, {"step": 1}))
    assert RunDir(tmp_path).resume_file() == tmp_path / rundir.RESUME
    (tmp_path / rundir.RESUME).write_bytes((tmp_path / rundir.RESUME).read_bytes()[:-4])  # a cut copy
    message = f"^{re.escape(str(tmp_path / rundir.RESUME))} is truncated: .*, so {re.escape(str(tmp_path))} cannot be resumed; "
    with pytest.raises(CheckpointError, match=message):
        RunDir(tmp_path).resume_file()


def test_trim_metrics_drops_records_after_the_save_and_torn_lines(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    lines = [json.dumps({"event": "train", "step": s}) for s in (50, 100, 150)] + ['{"event": "epo']
    run.metrics.write_text("\n".join(lines) + "\n")
    assert run.trim_metrics(100) == 2
    assert run.metrics.read_text() == "\n".join(lines[:2]) + "\n"
    assert run.trim_metrics(100) == 0


def test_newest_checkpoint_and_its_absence(tmp_path: Path, tiny_config) -> None:
    with pytest.raises(DrawcliError, match=f"no run found under {tmp_path}/"):
        rundir.newest_checkpoint(tmp_path)
    model = DRAW(tiny_config())
    for name, age in (("old", 100), ("new", 0)):
        (tmp_path / name).mkdir()
        path = tmp_path / name / rundir.CHECKPOINT
        checkpoint.save_checkpoint(path, model, {})
        os.utime(path, (time.time() - age, time.time() - age))
    assert rundir.newest_checkpoint(tmp_path) == tmp_path / "new" / rundir.CHECKPOINT


def test_sample_gif_names(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.sample_gif(epoch=3, step=120, mid_epoch=False) == tmp_path / "samples" / "epoch-0003.gif"
    assert run.sample_gif(epoch=3, step=120, mid_epoch=True) == tmp_path / "samples" / "step-0000120.gif"
    assert (tmp_path / "samples").is_dir()


def test_unreadable_run_json_says_the_run_cannot_resume(tmp_path: Path) -> None:
    (tmp_path / rundir.RUN_JSON).write_text("{not json")
    with pytest.raises(CheckpointError, match=f"^{tmp_path} is not a resumable run \\(run.json unreadable: "):
        RunDir(tmp_path).read_run_json()


def test_discard_unsaved_removes_what_the_run_made_and_nothing_else(tmp_path: Path, tiny_config) -> None:
    """A run that saved no checkpoint: its files and the folders it made go; files it found, files a run
    does not write (and so the folders holding them), and a saved run stay."""
    fresh = RunDir(tmp_path / "runs" / "a")
    claim = fresh.claim()
    assert claim == rundir.Claim((tmp_path / "runs" / "a", tmp_path / "runs"), frozenset())
    (fresh.path / rundir.RUN_JSON).write_text("{}")
    (fresh.path / rundir.TENSORBOARD / "x").mkdir(parents=True)
    fresh.discard_unsaved(claim)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    found = RunDir(tmp_path / "found")
    found.path.mkdir()
    (found.path / rundir.RUN_JSON).write_text("left by an earlier failure")
    claim = found.claim()
    assert claim == rundir.Claim((), frozenset([rundir.RUN_JSON]))
    (found.path / rundir.METRICS).write_text("{}\n")
    (found.path / "notes.txt").write_text("mine")
    found.discard_unsaved(claim)
    assert sorted(p.name for p in found.path.iterdir()) == ["notes.txt", rundir.RUN_JSON]
    other = RunDir(tmp_path / "other")
    claim = other.claim()
    (other.path / "notes.txt").write_text("mine")
    (other.path / rundir.METRICS).write_text("{}\n")
    other.discard_unsaved(claim)
    assert sorted(p.name for p in other.path.iterdir()) == ["notes.txt"]
    locked = RunDir(tmp_path / "locked")
    claim = locked.claim()
    holder = RunLock(locked.path)  # another process took the folder and trains there now
    holder.acquire()
    (locked.path / rundir.RUN_JSON).write_text("{}")
    locked.discard_unsaved(claim)
    assert sorted(p.name for p in locked.path.iterdir()) == [rundir.LOCK, rundir.RUN_JSON]
    holder.release()
    (locked.path / rundir.LOCK).write_text("")  # a lock file left by a killed process holds nothing
    locked.discard_unsaved(claim)
    assert not locked.path.exists()
    saved = RunDir(tmp_path / "saved")
    claim = saved.claim()
    save_pair(saved, DRAW(tiny_config()), step=1)
    (saved.path / rundir.METRICS).write_text("{}\n")
    saved.discard_unsaved(claim)
    assert sorted(p.name for p in saved.path.iterdir()) == [rundir.CHECKPOINT, rundir.METRICS, rundir.RESUME]
