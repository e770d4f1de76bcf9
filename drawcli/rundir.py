"""The run folder: every file name in it, the newest run, run.json, and the one-commit save.

    RUN/checkpoint.safetensors   weights and config (what `sample`, `inspect`, ... read)
    RUN/resume.safetensors       optimizer, RNG states and loop position (what --resume reads)
    RUN/run.json                 the config and training settings the run was started with
    RUN/metrics.jsonl            one JSON record per line
    RUN/samples/*.gif            samples at epoch ends
    RUN/tensorboard/             the metrics again, pictures and hyperparameters, when tensorboard is installed
    RUN/.lock                    held by the one process training into the run (runlock.py), while it does

A save is one commit: the resume state is staged first, then the checkpoint, which names the
resume state it pairs with, replaces the old one in a single rename. Whatever instant a save
is killed at, the checkpoint on disk and one of the two resume files form a pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from drawcli import safetensors_io
from drawcli.atomic import atomic_write_bytes, check_writable_dir
from drawcli.errors import CheckpointError, DrawcliError, WriteError

CHECKPOINT = "checkpoint.safetensors"
RESUME = "resume.safetensors"
RESUME_STAGED = "resume.next.safetensors"  # the new resume state, until its checkpoint is in place
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
TENSORBOARD = "tensorboard"
LOCK = ".lock"  # the writer's advisory lock, with its pid and host (runlock.py)
UNSAVED = (RESUME, RESUME_STAGED, RUN_JSON, METRICS, SAMPLES, TENSORBOARD)  # what a run may write before its first checkpoint
RUN_NAMES = frozenset((CHECKPOINT, RESUME, RESUME_STAGED, RUN_JSON, METRICS, SAMPLES, TENSORBOARD, LOCK))  # all a run writes
DEFAULT_ROOT = Path("runs")
PAIR_KEY = "resume_sha256"  # checkpoint metadata: the SHA-256 of its resume file, every byte


def file_digest(blob: bytes) -> str:
    """SHA-256 of a whole file's bytes: what pairs a checkpoint with its resume state (the loop
    position lives in the header, so a checksum of the tensor data alone would not tell two apart)."""
    return hashlib.sha256(blob).hexdigest()


def checkpoint_file(path: Path) -> Path:
    """A checkpoint file, or a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        candidate = path / CHECKPOINT
        if not candidate.is_file():
            raise CheckpointError(f"{path} is a directory without {CHECKPOINT}")
        return candidate
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    return path


def newest_checkpoint(root: Path = DEFAULT_ROOT) -> Path:
    """The checkpoint of the most recently saved run under `root`."""
    candidates = sorted(root.glob(f"*/{CHECKPOINT}"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not candidates:
        raise DrawcliError(f"no checkpoint given and no run found under {root}/; train one with `drawcli train` or pass a path")
    return candidates[-1]


def new_run_path(root: Path = DEFAULT_ROOT) -> Path:
    """RUNS/<date-time> for a run started now."""
    return root / datetime.now().strftime("%Y%m%d-%H%M%S")


def _damage(path: Path) -> str | None:
    """Why the safetensors file `path` cannot be read (cut short, not safetensors, data not matching its
    checksum), or None when it reads (or is not there)."""
    if not path.is_file():
        return None
    try:
        _, metadata, _ = safetensors_io.read_header(path)
        safetensors_io.load_tensors(path, metadata)
    except CheckpointError as exc:
        return str(exc)
    return None


class Claim(NamedTuple):
    """What `RunDir.claim` found: the folders it made (innermost first) and the names the run folder held already."""

    made: tuple[Path, ...]
    held: frozenset[str]


class RunDir:
    """One run's folder and the files in it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    def has_run(self) -> bool:
        """True once a first save has landed."""
        return self.checkpoint.is_file()

    def holds_other_files(self) -> bool:
        """True if the folder holds anything a run does not write: a data folder, or the current one
        for `--out ''`, where a new run must not mix its files in."""
        if not self.path.is_dir():
            return False
        # Dot-files: atomic writes' temporaries, or another torchrun rank's write test, for a moment.
        return any(entry.name not in RUN_NAMES and not entry.name.startswith(".") for entry in self.path.iterdir())

    def prepare(self) -> None:
        """Create the folder and prove it takes files, before any long work starts."""
        check_writable_dir(self.path)

    def claim(self) -> Claim:
        """Create the folder of a new run, with any missing parents, and note what it held before:
        all that `discard_unsaved` may take away again. mkdir is atomic, so a folder that another
        process made at the same moment is not counted as this one's."""
        missing = [folder for folder in (self.path, *self.path.parents) if not folder.exists()]  # innermost first
        made = []
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except OSError:
                break  # prepare() says why
            made.append(folder)
        held = frozenset(entry.name for entry in self.path.iterdir()) if self.path.is_dir() else frozenset()
        return Claim(tuple(reversed(made)), held)

    def discard_unsaved(self, claim: Claim) -> None:
        """After a run that saved no checkpoint, remove what it wrote (UNSAVED files the folder did not
        hold when claimed) and the folders it made, if nothing else is left in them: a failed run leaves no trace."""
        from drawcli.errors import RunInUseError
        from drawcli.runlock import RunLock

        if self.has_run() or not self.path.is_dir():
            return
        lock = RunLock(self.path)  # held while removing: a process that took the folder meanwhile keeps its files
        try:
            lock.acquire()
        except (RunInUseError, DrawcliError):
            return
        try:
            if not self.has_run():
                self._remove_unsaved(claim)
        finally:
            lock.release()
        for folder in claim.made:  # innermost first
            try:
                folder.rmdir()  # refuses a folder that holds anything: a lock taken since, a file of someone else's
            except OSError:
                break

    def _remove_unsaved(self, claim: Claim) -> None:
        for name in UNSAVED:
            entry = self.path / name
            if name in claim.held or not (entry.exists() or entry.is_symlink()):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def write_run_json(self, config: dict[str, Any], settings: dict[str, Any]) -> None:
        payload = {"config": config, "settings": settings}
        atomic_write_bytes(self.path / RUN_JSON, json.dumps(payload, indent=2, sort_keys=True).encode())

    def read_run_json(self) -> dict[str, Any]:
        """run.json's {"config": ..., "settings": ...}; an unreadable one says the run cannot resume."""
        try:
            saved = json.loads((self.path / RUN_JSON).read_text())
            if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
                raise ValueError("no settings object")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.path} is not a resumable run (run.json unreadable: {exc})") from None
        return saved

    def sample_gif(self, epoch: int, step: int, mid_epoch: bool) -> Path:
        """Where the samples of an epoch end (or of a run's mid-epoch end) go; creates samples/."""
        (self.path / SAMPLES).mkdir(exist_ok=True)
        name = f"step-{step:07d}.gif" if mid_epoch else f"epoch-{epoch:04d}.gif"
        return self.path / SAMPLES / name

    def commit(self, checkpoint: bytes, resume: bytes) -> None:
        """Save a checkpoint and its resume state as one commit (see the module docstring).

        `checkpoint` must carry PAIR_KEY = file_digest(resume) in its metadata.
        """
        staged = self.path / RESUME_STAGED
        atomic_write_bytes(staged, resume)
        atomic_write_bytes(self.checkpoint, checkpoint)  # the commit point
        try:
            os.replace(staged, self.path / RESUME)
        except OSError as exc:
            raise WriteError(f"cannot write {self.path / RESUME}: {exc.strerror or exc}") from exc

    def resume_file(self) -> Path:
        """The resume state that pairs with the checkpoint on disk: the settled one or the staged one."""
        _, metadata, _ = safetensors_io.read_header(checkpoint_file(self.path))
        wanted = metadata.get(PAIR_KEY)
        candidates = [self.path / RESUME, self.path / RESUME_STAGED]
        if wanted is None:  # a checkpoint from before paired saves
            candidates = candidates[:1]
        for path in candidates:
            if not path.is_file():
                continue
            if wanted is None and not _damage(path):
                return path
            if wanted is not None and file_digest(path.read_bytes()) == wanted:
                return path
        if not any(p.is_file() for p in candidates):
            raise CheckpointError(f"{self.path} has a checkpoint but no {RESUME}, so it cannot be resumed")
        damage = _damage(self.path / RESUME)
        if damage:  # a cut copy, a full disk: say which file, and that the weights are fine
            raise CheckpointError(f"{damage}, so {self.path} cannot be resumed; the checkpoint does not need that file (sample, "
                                  f"evaluate and inspect still work on {self.path}): to train on, restore {RESUME} from a copy "
                                  "of the run, or start a new run")  # fmt: skip
        raise CheckpointError(f"{self.path}: no resume state pairs with the checkpoint, so the run cannot continue exactly")

    def trim_metrics(self, step: int) -> int:
        """Drop metric records after `step` (logged after the last save by a run that was killed).

        A resumed run logs those steps again; returns how many records were dropped.
        """
        if not self.metrics.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line torn by the kill
                record = None
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)) and record["step"] <= step:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            atomic_write_bytes(self.metrics, "".join(f"{line}\n" for line in kept).encode())
        return dropped
