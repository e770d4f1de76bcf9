"""Atomic file replacement: a crash mid-write leaves the previous good file in place.

Every failure to write (read-only folder, full disk, a directory in the way) becomes a
`WriteError` that names the file, so the CLI prints one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from drawcli.errors import WriteError


def _write_error(path: Path, exc: OSError, kept: bool = True) -> WriteError:
    note = " (the previous version, if any, is unchanged)" if kept else ""
    return WriteError(f"cannot write {path}: {exc.strerror or exc}{note}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces `path` in one rename."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets normal permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def append_line(path: Path, line: str) -> None:
    """Append one line (a log record) to `path`; failures raise WriteError."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise _write_error(Path(path), exc, kept=False) from exc


def check_writable_dir(path: Path) -> None:
    """Create `path` if needed and prove a file can be made in it, before any long work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".drawcli-write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WriteError(f"cannot write to {path}: {exc.strerror or exc}") from exc


def check_writable_file(path: Path) -> None:
    """Check that `path` could be written atomically: its folder exists and takes new files."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise WriteError(f"cannot write {path}: {path.parent} {what}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _write_error(path, exc, kept=False) from exc
