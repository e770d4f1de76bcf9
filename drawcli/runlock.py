"""One writer per run folder: an advisory lock held for as long as a process trains into it.

Two `drawcli train` processes on one folder (a scheduler restarting a job whose old process
still runs) would interleave metrics.jsonl and overwrite each other's saves, and both report
success. The writer holds flock on RUN/.lock (rundir.LOCK) and writes its pid and host into
it; a second writer fails at once with a RunInUseError naming them. The kernel drops a flock
when its process dies, however it dies, so a lock file left by a killed process blocks no one
and is simply taken over. Readers (sample, evaluate, inspect, plot) never touch the lock.

The holder removes the file as it lets go, so a finished run folder holds no trace of it and a
failed run's empty folder can be removed. Because of that, a process that wins the flock checks
that the file it locked is still the one at the path (a holder may have unlinked it meanwhile).

Where there is no fcntl (Windows), or the file system refuses flock, the run is not locked.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from drawcli.errors import RunInUseError, WriteError
from drawcli.rundir import LOCK

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here
    fcntl = None  # type: ignore[assignment]

HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)  # what a non-blocking flock says when another holds it
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)  # file systems without flock
HOLDER_WAIT_S = 0.5  # how long a refusal waits for a holder that has just locked to write its name


class RunLock:
    """The lock of one run folder; `with RunLock(folder):` holds it, or raises RunInUseError."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"RunLock({str(self.folder)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting, and write this process's pid and host into the file.

        Raises RunInUseError if another live process holds it; a folder whose file system cannot
        lock is left unlocked.
        """
        if fcntl is None or self.held:
            return
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in HELD:
                    raise RunInUseError(self._refusal()) from None
                if exc.errno in UNSUPPORTED:
                    self._remove()
                    return
                raise WriteError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
            if self._still_at_path(fd):
                break
            os.close(fd)  # the holder removed the file as it let go: lock the one now at the path
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode() + b"\n")

    def release(self) -> None:
        """Remove the file, then let go (in that order, see the module docstring); a no-op when not held."""
        if self._fd is None:
            return
        self._remove()
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def holder(self) -> tuple[int, str] | None:
        """The (pid, host) written into the lock file, or None if it is missing, empty or garbled."""
        try:
            record = json.loads(self.path.read_text())
            pid, host = record["pid"], record["host"]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not isinstance(pid, int) or not isinstance(host, str):
            return None
        return pid, host

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by programs it starts
        except OSError as exc:
            raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def _still_at_path(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass  # already gone; the flock alone is what excludes

    def _refusal(self) -> str:
        """The one line that says who holds the folder; waits briefly for a holder that has just locked."""
        deadline = time.monotonic() + HOLDER_WAIT_S
        holder = self.holder()
        while holder is None and time.monotonic() < deadline:
            time.sleep(0.02)
            holder = self.holder()
        who = f"process {holder[0]} on {holder[1]}" if holder else "another process (its pid is not recorded)"
        return (f"{self.folder} is in use: {who} is training into it; two processes in one run folder would "
                "interleave its metrics and overwrite each other's checkpoints, so wait for it to end or stop it")
